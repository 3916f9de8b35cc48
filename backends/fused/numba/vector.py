"""The fused O(n) Metropolis half-sweep: one parity's proposals, tests and writes in one pass.

The twin of the generic :class:`~portable_lattice.samplers.VectorCheckerboard` Metropolis hit
on its blocked layout: ``mine`` and ``other`` are the two parities' blocks (C, n, B, M) with
M = (L/2)^d sites per block, ``g`` the generic path's normals (C, n, B, M) and ``log_u`` the
logarithms of its uniforms (C, B, M), drawn by the generic calls (so every stream, Philox
included, gives the generic numbers). Per site the kernel evaluates the generic expressions
in their order: the neighbour sum per direction as ``nb[X] + nb[X - step]`` (the generic
``nb + roll(nb, step)``), summed over directions in order; f = J sum (+ h on component 0);
t = s + step g; t / sqrt(sum_k t_k t_k) (the library's own square root under the Philox
stream in float64, as :func:`~portable_lattice.theories.on.normalise` takes it); the log
weight beta sum_k (t_k - s_k) f_k; accepted where log u is below it (NaN rejected).
"""
from __future__ import annotations

import functools

import numba as nb
import numpy as np

from portable_lattice.philox import sqrt_reduced_scalar

from .philox import _split4

__all__ = ["metropolis_half"]

_sqrt_reduced = nb.njit(inline="always", error_model="numpy")(sqrt_reduced_scalar)


@nb.njit(inline="always", error_model="numpy")
def _sqrt_exact(a):
    """:func:`~portable_lattice.philox.sqrt_nonnegative` of one float64 (its reductions read
    from the bits, as the Philox kernels do; 2^-128 <= a < 2^64, or 0)."""
    m, scale = _split4(a if a > 0.0 else 1.0)
    r = _sqrt_reduced(m, scale)
    return r if a > 0.0 else 0.0


@functools.lru_cache(maxsize=8)
def _kernel(exact: bool):
    @nb.njit(parallel=True, error_model="numpy")
    def half(mine, other, g, log_u, nbr_block, shifted, step, J, field, hflag, beta, counts):
        C, n, B, M = mine.shape
        d = nbr_block.shape[1]
        zero = mine.dtype.type(0.0)
        for task in nb.prange(C * B):
            c, i = task // B, task % B
            t = np.empty(n, dtype=mine.dtype)
            f = np.empty(n, dtype=mine.dtype)
            accepted = 0
            for X in range(M):
                for k in range(n):
                    tot = zero
                    for mu in range(d):
                        j = nbr_block[i, mu]
                        term = other[c, k, j, X] + other[c, k, j, shifted[i, mu, X]]
                        tot = term if mu == 0 else tot + term
                    fk = J * tot
                    if hflag:
                        fk = fk + (field if k == 0 else zero)
                    f[k] = fk
                    t[k] = mine[c, k, i, X] + step * g[c, k, i, X]
                norm2 = t[0] * t[0]
                for k in range(1, n):
                    norm2 = norm2 + t[k] * t[k]
                root = _sqrt_exact(norm2) if exact else np.sqrt(norm2)
                lw = zero
                for k in range(n):
                    t[k] = t[k] / root
                    term = (t[k] - mine[c, k, i, X]) * f[k]
                    lw = term if k == 0 else lw + term
                if log_u[c, i, X] < beta * lw:
                    for k in range(n):
                        mine[c, k, i, X] = t[k]
                    accepted += 1
            counts[c, i] = accepted
    return half


@functools.lru_cache(maxsize=32)
def _shifted(h: int, d: int, steps: tuple) -> np.ndarray:
    """shifted[i, mu, X]: the site X - step[i][mu] e_mu of a block (the generic roll's source)."""
    sites = np.arange(h ** d, dtype=np.int64).reshape((h,) * d)
    return np.stack([np.stack([np.roll(sites, st, axis=mu).ravel() for mu, st in enumerate(row)])
                     for row in steps])


def metropolis_half(mine, other, g, log_u, plan: dict):
    """One Metropolis hit on the parity ``mine`` (NumPy, written in place) given ``other``;
    the accepted count per chain."""
    C, n, B = mine.shape[:3]
    flat = lambda a: a.reshape(a.shape[:3] + (-1,))  # noqa: E731
    ft = mine.dtype.type
    counts = np.zeros((C, B), dtype=np.int64)
    shifted = _shifted(int(mine.shape[-1]), mine.ndim - 3, tuple(map(tuple, plan["nbr_step"])))
    _kernel(bool(plan["exact"]))(flat(mine), flat(other), flat(g), log_u.reshape(C, B, -1),
                                 np.asarray(plan["nbr_block"], dtype=np.int64), shifted, ft(plan["step_size"]),
                                 ft(plan["J"]), ft(plan["h"]), plan["h"] != 0.0, ft(plan["beta"]), counts)
    return counts.sum(axis=1)
