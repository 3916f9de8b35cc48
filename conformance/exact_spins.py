"""Exact spin-model references by brute-force enumeration (NumPy), for tiny lattices.

Enumerates every configuration (Ising/EA up to 4x4 = 65536, Potts/clock q = 3
up to 3x3 = 19683) and returns Boltzmann averages of the per-site energy e,
|m|, m^2, m^4, the Binder cumulant, heat capacity and chi, using the same
definitions as :mod:`portable_lattice.observables.spins`, but computed
independently here.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = ["enumerate_model"]


def _configs(values, L, dim):
    V = L ** dim
    return np.array(list(itertools.product(values, repeat=V)), dtype=np.int64).reshape((-1,) + (L,) * dim)


def enumerate_model(name: str, beta: float, L: int, dim: int = 2, q: int = 3, J: float = 1.0, h: float = 0.0,
                    couplings=None) -> dict:
    if name in ("ising", "ea"):
        s = _configs((-1, 1), L, dim)
        f = s.astype(float)
        if name == "ising":
            bonds = sum(f * np.roll(f, -1, axis=mu + 1) for mu in range(dim))
            E = -J * bonds.sum(axis=tuple(range(1, dim + 1))) - h * f.sum(axis=tuple(range(1, dim + 1)))
        else:
            C = np.asarray(couplings, dtype=float)
            bonds = sum(C[mu][None] * f * np.roll(f, -1, axis=mu + 1) for mu in range(dim))
            E = -bonds.sum(axis=tuple(range(1, dim + 1)))
        m = f.mean(axis=tuple(range(1, dim + 1)))
    else:
        s = _configs(range(q), L, dim)
        pair = (lambda a, b: (a == b).astype(float)) if name == "potts" else \
            (lambda a, b: np.cos(2 * math.pi * (a - b) / q))
        E = -J * sum(pair(s, np.roll(s, -1, axis=mu + 1)) for mu in range(dim)).sum(axis=tuple(range(1, dim + 1)))
        theta = 2 * math.pi * s / q
        m = np.hypot(np.cos(theta).mean(axis=tuple(range(1, dim + 1))), np.sin(theta).mean(axis=tuple(range(1, dim + 1))))
    V = L ** dim
    w = np.exp(-beta * (E - E.min()))
    w /= w.sum()
    e = E / V
    avg = lambda x: float((w * x).sum())  # noqa: E731
    m2, m4 = avg(m ** 2), avg(m ** 4)
    return {"energy": avg(e), "m_abs": avg(np.abs(m)), "m2": m2, "m4": m4,
            "binder": 1 - m4 / (3 * m2 ** 2), "heat_capacity": beta ** 2 * V * (avg(e ** 2) - avg(e) ** 2),
            "chi": V * (m2 - avg(m) ** 2)}
