"""What every sampler kernel shares: its state, its per-step info, the accept test.

A kernel is a frozen dataclass of parameters with two methods (the BlackJAX
pattern): ``init(phi) -> State`` and ``step(state, rng) -> (State, Info)``.
The generator ``rng`` comes from :mod:`portable_lattice.backends`; it is the
only mutable thing a step touches, so checkpointing is (state, rng state).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace

from ..lattice import check_field

__all__ = ["State", "Info", "per_chain", "metropolis_accept", "check_action_field"]


@dataclass(frozen=True)
class State:
    """A batch of chains: field ``phi`` ``(chains, L, ..., L)`` and cached derivatives.

    ``action`` and ``grad`` are the exact S[phi] and dS/dphi where the kernel
    keeps them (HMC, Langevin), else None.
    """

    phi: Any
    action: Any = None
    grad: Any = None


@dataclass(frozen=True)
class Info:
    """What one step did, per chain.

    acceptance : (chains,) fraction of proposals accepted in this step
    delta_h : (chains,) energy violation dH of the trajectory (HMC) or None
    divergent : (chains,) bool, non-finite dH (HMC) or None
    """

    acceptance: Any
    delta_h: Any = None
    divergent: Any = None


def per_chain(v: Any, like: Any) -> Any:
    """Reshape a ``(chains,)`` array to broadcast against a field ``like``."""
    xp = array_namespace(v)
    return xp.reshape(v, (v.shape[0],) + (1,) * (like.ndim - 1))


def metropolis_accept(u: Any, log_ratio: Any) -> Any:
    """Accept with probability min(1, exp(log_ratio)); NaN log-ratios are rejected.

    Written as ``log u < log_ratio`` so a huge positive ratio never overflows.
    """
    xp = array_namespace(u, log_ratio)
    return xp.log(u) < log_ratio



def check_action_field(action: Any, phi: Any) -> Any:
    """Validate ``phi`` for ``action`` (its own check where it has one, e.g. phi^4 stability)."""
    return action.check_field(phi) if hasattr(action, "check_field") else check_field(phi)
