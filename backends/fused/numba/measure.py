"""Fused measurements: every per-chain sum of a measurement in one pass over the configuration.

A run measures after every sweep; the generic measurement makes a dozen passes over memory
(means, squares, neighbour products, Fourier sums), as long as the fused sweep itself. These
kernels read each site once and accumulate every sum a measurement needs, in float64, one
chain per task. The phi^4 sums differ from the generic path's only in summation order
(a few ulps); the Ising sums are integers and equal the generic ones exactly. A chain is seen
as L^(d-1) rows of L sites, d = 1, 2 or 3.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

__all__ = ["phi4_sums", "ising_sums"]


@nb.njit(inline="always", cache=True)
def _row_forward(d, r, L):
    """The rows forward of row r along the row axes (x0, and x1 in 3d), and r's coordinates."""
    if d == 1:
        return r, r, 0, 0
    if d == 2:
        return (r + 1) % L, r, r, 0
    x0, x1 = r // L, r % L
    return ((x0 + 1) % L) * L + x1, x0 * L + (x1 + 1) % L, x0, x1


@nb.njit(parallel=True, cache=True)
def _phi4_sums(phi, d, cos_t, sin_t, out):
    """out[c] = (sum phi, sum phi^2, sum phi^4, sum phi_x sum_mu phi_{x+mu}, and per direction mu
    the Fourier sums sum phi cos(k x_mu), sum phi sin(k x_mu))."""
    chains, rows, L = phi.shape
    for c in nb.prange(chains):
        s1 = 0.0
        s2 = 0.0
        s4 = 0.0
        hop = 0.0
        fc = np.zeros(3)
        fs = np.zeros(3)
        for r in range(rows):
            f0, f1, x0, x1 = _row_forward(d, r, L)
            row_c = 0.0
            row_s = 0.0
            row_sum = 0.0
            for j in range(L):
                v = float(phi[c, r, j])
                v2 = v * v
                s1 += v
                s2 += v2
                s4 += v2 * v2
                jn = j + 1 if j + 1 < L else 0
                nb_sum = float(phi[c, r, jn])
                if d >= 2:
                    nb_sum += float(phi[c, f0, j])
                if d == 3:
                    nb_sum += float(phi[c, f1, j])
                hop += v * nb_sum
                row_c += v * cos_t[j]
                row_s += v * sin_t[j]
                row_sum += v
            # the row axis is the last lattice axis; x0 (and x1) are constant along a row
            fc[d - 1] += row_c
            fs[d - 1] += row_s
            if d >= 2:
                fc[0] += row_sum * cos_t[x0]
                fs[0] += row_sum * sin_t[x0]
            if d == 3:
                fc[1] += row_sum * cos_t[x1]
                fs[1] += row_sum * sin_t[x1]
        out[c, 0] = s1
        out[c, 1] = s2
        out[c, 2] = s4
        out[c, 3] = hop
        for mu in range(3):
            out[c, 4 + mu] = fc[mu]
            out[c, 7 + mu] = fs[mu]


def phi4_sums(phi: np.ndarray) -> np.ndarray:
    """(chains, 10) float64 sums of a phi^4 configuration (chains, L, ..., L), d = 1..3 (see
    :func:`_phi4_sums`)."""
    d = phi.ndim - 1
    if d > 3:
        raise ValueError(f"the fused measurement is written for d = 1..3, got d = {d}")
    L = phi.shape[1]
    k = np.arange(L) * (2.0 * math.pi / L)
    out = np.empty((phi.shape[0], 10))
    _phi4_sums(np.ascontiguousarray(phi).reshape(phi.shape[0], -1, L), d, np.cos(k), np.sin(k), out)
    return out


@nb.njit(parallel=True, cache=True)
def _ising_sums(s, d, out):
    """out[c] = (sum s, sum_x s_x sum_mu s_{x+mu}) as exact integers."""
    chains, rows, L = s.shape
    for c in nb.prange(chains):
        m = 0
        bonds = 0
        for r in range(rows):
            f0, f1, _, _ = _row_forward(d, r, L)
            for j in range(L):
                v = np.int64(s[c, r, j])
                jn = j + 1 if j + 1 < L else 0
                nb_sum = np.int64(s[c, r, jn])
                if d >= 2:
                    nb_sum += np.int64(s[c, f0, j])
                if d == 3:
                    nb_sum += np.int64(s[c, f1, j])
                m += v
                bonds += v * nb_sum
        out[c, 0] = m
        out[c, 1] = bonds


def ising_sums(s: np.ndarray) -> np.ndarray:
    """(chains, 2) int64: the magnetisation sum and the bond sum of +-1 spins, d = 1..3."""
    d = s.ndim - 1
    if d > 3:
        raise ValueError(f"the fused measurement is written for d = 1..3, got d = {d}")
    L = s.shape[1]
    out = np.empty((s.shape[0], 2), dtype=np.int64)
    _ising_sums(np.ascontiguousarray(s).reshape(s.shape[0], -1, L), d, out)
    return out
