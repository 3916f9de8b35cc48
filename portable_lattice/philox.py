r"""Philox4x32-10 (Salmon, Moraes, Dror and Shaw, SC'11), written once against the Array API.

A counter-based generator: the 128-bit output is a pure function of a 128-bit
counter and a 64-bit key, so any element of any draw can be computed anywhere
(a fused kernel in registers, another backend) and equal this one. Only int64
additions, products of 16-bit halves and bit operations are used, so nothing
overflows and every backend computes the same words bit for bit.

:class:`PhiloxGenerator` has the interface of the backends' generators. A draw
of shape ``(chains, ...)`` gives chain j, element i the counter
(i // 4, draw number, j, 0) for 32-bit outputs and (i // 2, draw number, j, 1)
for 64-bit ones; the key is the seed's two 32-bit halves. So the numbers of
one chain do not depend on how many chains run beside it.

What is bit-identical across numpy, torch, cupy and array_api_strict: the
32-bit words (:meth:`bits32`), the uniforms (53 or 24 bits of the words, exact)
and :meth:`integers`. Normals use the Box-Muller transform: they are identical
where the libraries' ``log``, ``sqrt`` and ``cos`` round alike (numpy and
array_api_strict), and within a few units in the last place elsewhere.
"""
from __future__ import annotations

import math
from typing import Any

from ._checks import nonnegative_int

__all__ = ["philox4x32", "PhiloxGenerator"]

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF
_MAX_COUNTER = 2 ** 32


def _mulhilo(m: int, c: Any) -> tuple[Any, Any]:
    """(high, low) 32-bit words of m * c for a constant m and int64 arrays c < 2^32, without
    overflow: the product from 16-bit halves, every partial sum below 2^35."""
    mh, ml = m >> 16, m & 0xFFFF
    ch, cl = c >> 16, c & 0xFFFF
    a = ml * cl
    t = mh * cl + ml * ch + (a >> 16)
    lo = ((t & 0xFFFF) << 16) | (a & 0xFFFF)
    hi = mh * ch + (t >> 16)
    return hi, lo


def philox4x32(c0: Any, c1: Any, c2: Any, c3: Any, k0: int, k1: int, rounds: int = 10) -> tuple:
    """Philox4x32-R of the counter words (int64 arrays holding values < 2^32, broadcastable)
    under the key (k0, k1): four int64 arrays of 32-bit words."""
    for _ in range(rounds):
        hi0, lo0 = _mulhilo(M0, c0)
        hi1, lo1 = _mulhilo(M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
    return c0, c1, c2, c3


class PhiloxGenerator:
    """Counter-based random numbers on any Array API namespace ``xp`` (and ``device``)."""

    kind = "philox4x32-10"

    def __init__(self, xp: Any, seed: int, device: Any = None):
        seed = nonnegative_int("seed", seed)
        if seed >= 2 ** 64:
            raise ValueError(f"seed must be below 2**64 for the 64-bit Philox key, got seed={seed}")
        self.xp, self.device, self.seed = xp, device, seed
        self.k0, self.k1 = seed & MASK32, (seed >> 32) & MASK32
        self.draws = 0

    def _words(self, shape: tuple, per_element: int) -> list:
        """``per_element`` int64 arrays of 32-bit words, each of ``shape``."""
        xp = self.xp
        shape = tuple(int(n) for n in shape)
        chains = shape[0] if len(shape) >= 2 else 1
        n = 1
        for s in shape:
            n *= s
        per_chain = n // chains if chains else 0
        if self.draws >= _MAX_COUNTER or per_chain * per_element > 4 * _MAX_COUNTER or chains > _MAX_COUNTER:
            raise ValueError(f"the Philox counter range is exhausted: draw {self.draws} of shape {shape}")
        i = xp.arange(per_chain, dtype=xp.int64, device=self.device)
        j = xp.reshape(xp.arange(chains, dtype=xp.int64, device=self.device), (chains, 1))
        out = []
        if per_element == 1:
            block, word = i // 4, i % 4
            c3 = 0
        else:
            block, word = i // 2, (i % 2) * 2
            c3 = 1
        c0 = xp.reshape(block, (1, per_chain))
        c1 = xp.asarray(self.draws, dtype=xp.int64, device=self.device)
        c2 = j
        c3 = xp.asarray(c3, dtype=xp.int64, device=self.device)
        x = philox4x32(c0 + 0 * c2, c1, c2 + 0 * c0, c3, self.k0, self.k1)
        w = xp.reshape(word, (1, per_chain))
        for e in range(per_element):
            # pick word (word + e) of each block: a where-cascade, no gather
            pick = w + e
            val = xp.where(pick == 0, x[0], xp.where(pick == 1, x[1], xp.where(pick == 2, x[2], x[3])))
            out.append(xp.reshape(val, shape))
        self.draws += 1
        return out

    def bits32(self, shape) -> Any:
        """int32 words uniform on [-2^31, 2^31)."""
        (w,) = self._words(shape, 1)
        return self.xp.astype(w - 2 ** 31, self.xp.int32)

    def uniform(self, shape, dtype) -> Any:
        """Uniform on [0, 1): 53 bits from two words (float64), 24 bits from one (float32); exact."""
        xp = self.xp
        if dtype == xp.float32:
            (w,) = self._words(shape, 1)
            return xp.astype(w >> 8, xp.float32) * (2.0 ** -24)
        a, b = self._words(shape, 2)
        return xp.astype((a >> 5) * 67108864 + (b >> 6), xp.float64) * (2.0 ** -53)

    def normal(self, shape, dtype) -> Any:
        """Standard normals by the Box-Muller transform of two uniforms (one draw of each)."""
        xp = self.xp
        u1 = 1.0 - self.uniform(shape, xp.float64)  # (0, 1]: log is finite
        u2 = self.uniform(shape, xp.float64)
        z = xp.sqrt(-2.0 * xp.log(u1)) * xp.cos((2.0 * math.pi) * u2)
        return xp.astype(z, dtype)

    def integers(self, high: int, shape) -> Any:
        """Integers uniform on [0, high): floor(u * high) from a 53-bit uniform (bias below high / 2^53)."""
        xp = self.xp
        if high > 2 ** 31:
            raise ValueError(f"high must be at most 2**31, got high={high}")
        u = self.uniform(shape, xp.float64)
        return xp.astype(xp.floor(u * high), xp.int64)

    def get_state(self) -> dict:
        return {"kind": self.kind, "seed": self.seed, "draws": self.draws}

    def set_state(self, state: dict) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(f"state is not a Philox state: kind={state.get('kind')!r}")
        if int(state["seed"]) != self.seed:
            raise ValueError(f"the Philox state is for seed {state['seed']}, this generator has seed {self.seed}")
        self.draws = int(state["draws"])
