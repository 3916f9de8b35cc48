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

from .philox import _split4

__all__ = ["metropolis_half"]

#: where the 1/sqrt cubic sits in the core's philox.KERNEL_CONSTANTS (the plan's "constants";
#: the Triton kernels read the same offsets)
_RSQRT_AT = 37


@nb.njit(inline="always", cache=True, error_model="numpy")
def _sqrt_exact(a, r0, r1, r2, r3):
    """:func:`~portable_lattice.philox.sqrt_nonnegative` of one float64, as the core's
    ``sqrt_reduced_scalar`` computes it after the exact power-of-two reduction (read from the
    bits, as the Philox kernels do; 2^-128 <= a < 2^64, or 0): the cubic for 1/sqrt(m), four
    Newton steps, m y scale."""
    m, scale = _split4(a if a > 0.0 else 1.0)
    y = ((r3 * m + r2) * m + r1) * m + r0
    h = 0.5 * m
    y = y * (1.5 - (h * y) * y)
    y = y * (1.5 - (h * y) * y)
    y = y * (1.5 - (h * y) * y)
    y = y * (1.5 - (h * y) * y)
    return (m * y) * scale if a > 0.0 else 0.0


@nb.njit(parallel=True, cache=True, error_model="numpy")
def _half(mine, other, g, log_u, nbr_block, row_src, inner_step, step, J, field, hflag, beta, exact, rsqrt, counts):
    """mine, other, g: (C, n, B, R, h), a block as R rows of h sites (the last axis);
    log_u (C, B, R, h). ``row_src[i, mu, r]``: the row holding site X - step e_mu for the
    outer axes mu < d - 1; ``inner_step[i]``: the step along the rows' own axis. One task
    per (chain, block); the loops over a row's sites have no indirection and vectorise.
    Compiled once and cached on disk (``exact``, the Philox square root, is an argument)."""
    C, n, B, R, h = mine.shape
    d = nbr_block.shape[1]
    dt = mine.dtype
    for task in nb.prange(C * B):
        c, i = task // B, task % B
        f = np.empty((n, h), dtype=dt)
        t = np.empty((n, h), dtype=dt)
        tot = np.empty(h, dtype=dt)
        term = np.empty(h, dtype=dt)
        norm2 = np.empty(h, dtype=dt)
        lw = np.empty(h, dtype=dt)
        s_in = inner_step[i]
        accepted = 0
        for r in range(R):
            for k in range(n):
                for mu in range(d):
                    a = other[c, k, nbr_block[i, mu], r]
                    if mu < d - 1:
                        b = other[c, k, nbr_block[i, mu], row_src[i, mu, r]]
                        for x in range(h):
                            term[x] = a[x] + b[x]
                    elif s_in == 1:  # a[x - 1], wrapping at x = 0
                        term[0] = a[0] + a[h - 1]
                        for x in range(1, h):
                            term[x] = a[x] + a[x - 1]
                    else:  # a[x + 1], wrapping at x = h - 1
                        for x in range(h - 1):
                            term[x] = a[x] + a[x + 1]
                        term[h - 1] = a[h - 1] + a[0]
                    if mu == 0:
                        for x in range(h):
                            tot[x] = term[x]
                    else:
                        for x in range(h):
                            tot[x] = tot[x] + term[x]
                fk = f[k]
                for x in range(h):
                    fk[x] = J * tot[x]
                if hflag and k == 0:
                    for x in range(h):
                        fk[x] = fk[x] + field
                s_row = mine[c, k, i, r]
                g_row = g[c, k, i, r]
                tk = t[k]
                for x in range(h):
                    tk[x] = s_row[x] + step * g_row[x]
            for x in range(h):
                norm2[x] = t[0, x] * t[0, x]
            for k in range(1, n):
                for x in range(h):
                    norm2[x] = norm2[x] + t[k, x] * t[k, x]
            for x in range(h):
                norm2[x] = _sqrt_exact(norm2[x], rsqrt[0], rsqrt[1], rsqrt[2], rsqrt[3]) if exact else np.sqrt(norm2[x])
            for k in range(n):
                s_row = mine[c, k, i, r]
                for x in range(h):
                    t[k, x] = t[k, x] / norm2[x]
                    if k == 0:
                        lw[x] = (t[k, x] - s_row[x]) * f[k, x]
                    else:
                        lw[x] = lw[x] + (t[k, x] - s_row[x]) * f[k, x]
            u_row = log_u[c, i, r]
            for x in range(h):
                acc = u_row[x] < beta * lw[x]
                lw[x] = 1.0 if acc else 0.0
                accepted += 1 if acc else 0
            for k in range(n):
                s_row = mine[c, k, i, r]
                for x in range(h):
                    s_row[x] = t[k, x] if lw[x] == 1.0 else s_row[x]
        counts[c, i] = accepted


@functools.lru_cache(maxsize=32)
def _row_tables(h: int, d: int, steps: tuple) -> tuple:
    """For each block i: the source row of X - step e_mu per row and outer axis mu < d - 1
    (the rows of a block are its first d - 1 axes in C order), and the inner axis's step."""
    R = h ** (d - 1)
    rows = np.arange(R, dtype=np.int64).reshape((h,) * (d - 1)) if d > 1 else np.zeros((), dtype=np.int64)
    src = np.zeros((len(steps), d, R), dtype=np.int64)
    for i, row in enumerate(steps):
        for mu in range(d - 1):
            src[i, mu] = np.roll(rows, row[mu], axis=mu).ravel()
    return src, np.asarray([row[d - 1] for row in steps], dtype=np.int64)


def metropolis_half(mine, other, g, log_u, plan: dict):
    """One Metropolis hit on the parity ``mine`` (NumPy, written in place) given ``other``;
    the accepted count per chain."""
    C, n, B = mine.shape[:3]
    ft = mine.dtype.type
    counts = np.zeros((C, B), dtype=np.int64)
    h, d = int(mine.shape[-1]), mine.ndim - 3
    src, inner = _row_tables(h, d, tuple(map(tuple, plan["nbr_step"])))
    rows = lambda a: a.reshape(a.shape[:3] + (-1, h))  # noqa: E731
    _half(rows(mine), rows(other), rows(g), log_u.reshape(C, B, -1, h), np.asarray(plan["nbr_block"], dtype=np.int64),
          src, inner, ft(plan["step_size"]), ft(plan["J"]), ft(plan["h"]), plan["h"] != 0.0, ft(plan["beta"]),
          bool(plan["exact"]), np.asarray(plan["constants"][_RSQRT_AT:_RSQRT_AT + 4], dtype=np.float64), counts)
    return counts.sum(axis=1)
