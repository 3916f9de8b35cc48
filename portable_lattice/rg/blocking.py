"""Majority-rule blocking (Sec. II of [IRG]).

Each 2 x ... x 2 block of Ising spins becomes one spin, the sign of its sum; a
tied block (sum 0) picks +1 or -1 with probability 1/2. The blocking kernel
D(mu|sigma) of a configuration is the product over blocks of 1 (no tie) or 1/2
(tie), so log D = -n_ties ln 2: the weight the loss of Eq. 13 needs.
"""
from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace, device as device_of

from .._checks import positive_int
from ..lattice import block_split

__all__ = ["majority_block", "block_levels"]


def majority_block(s: Any, rng) -> tuple[Any, Any]:
    """One majority-rule blocking step.

    Parameters
    ----------
    s : int8 array (chains, L, ..., L) of +-1 spins, L even.
    rng : backend generator (tie-breaks).

    Returns
    -------
    (mu, log_weight): blocked spins (chains, L/2, ..., L/2), int8, and
    log D(mu|sigma) = -(number of tied blocks) ln 2 per chain.
    """
    xp = array_namespace(s)
    L = s.shape[1]
    if L % 2 or L < 2:
        raise ValueError(f"majority blocking needs an even L, got L={L}")
    sums = xp.sum(xp.astype(block_split(s, 2), xp.int32), axis=1)  # (chains, L/2, ...)
    tie = sums == 0
    coin = rng.uniform(tuple(sums.shape), xp.float64) < 0.5
    one = xp.asarray(1, dtype=xp.int8, device=device_of(s))
    mu = xp.where(tie, xp.where(coin, one, -one), xp.where(sums > 0, one, -one))
    n_ties = xp.sum(xp.astype(tie, xp.float64), axis=tuple(range(1, tie.ndim)))
    return mu, -math.log(2.0) * n_ties


def block_levels(s: Any, rng, levels: int) -> list:
    """[s, block(s), block(block(s)), ...]: ``levels`` blocking steps (L divisible by 2**levels)."""
    positive_int("levels", levels)
    L = s.shape[1]
    if L % (2 ** levels):
        raise ValueError(f"L must be divisible by 2**levels = {2 ** levels}, got L={L} and levels={levels}")
    out = [s]
    for _ in range(levels):
        out.append(majority_block(out[-1], rng)[0])
    return out
