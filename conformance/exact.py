"""Exact references, computed independently of the code under test (NumPy/SciPy).

* Free field (g = 0) on an L^d torus, (beta, g) form: S = phi^T A phi / 2 with
  A's eigenvalues lambda_p = 2 - 2 beta sum_mu cos p_mu, so
  <phi^2> = V^-1 sum_p 1/lambda_p and chi = V<M^2> = 1/lambda_0.
* Unadjusted Langevin on the free field: each mode's stationary variance is
  1/(lambda_p (1 - dt lambda_p / 2)) (the Euler-Maruyama recursion solved
  exactly), which gives the O(dt) bias in closed form.
* Decoupled sites (beta = 0): every site independent with weight
  exp(-(1 - 2g) phi^2 - g phi^4), moments by quadrature; <M^4> follows from the
  single-site moments, so the Binder cumulant is exact too.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import integrate

__all__ = ["free_field_modes", "free_field", "free_field_langevin", "single_site_moments",
           "decoupled_phi4"]


def free_field_modes(beta: float, L: int, dim: int) -> np.ndarray:
    p = 2 * np.pi * np.arange(L) / L
    cos_sum = sum(np.meshgrid(*([np.cos(p)] * dim), indexing="ij"))
    lam = 2.0 - 2.0 * beta * cos_sum
    if lam.min() <= 0:
        raise ValueError(f"free field unstable: beta={beta} >= 1/d")
    return lam


def free_field(beta: float, L: int, dim: int) -> dict:
    lam = free_field_modes(beta, L, dim)
    V = L ** dim
    return {"phi2": float(np.mean(1.0 / lam)), "chi": float(1.0 / lam.flat[0]),
            "m2": float(1.0 / lam.flat[0] / V), "m": 0.0,
            # each mode is Gaussian, so <M^4> = 3<M^2>^2 and U = 0
            "binder": 0.0}


def free_field_langevin(beta: float, L: int, dim: int, dt: float) -> dict:
    lam = free_field_modes(beta, L, dim)
    if (dt * lam).max() >= 2:
        raise ValueError("Langevin unstable for this dt")
    var = 1.0 / (lam * (1.0 - 0.5 * dt * lam))
    V = L ** dim
    return {"phi2": float(np.mean(var)), "chi": float(var.flat[0]), "m2": float(var.flat[0] / V)}


def single_site_moments(g: float, orders=(2, 4)) -> dict[int, float]:
    """<phi^k> for the weight exp(-(1 - 2g) phi^2 - g phi^4) by adaptive quadrature."""
    w = lambda x: math.exp(-(1 - 2 * g) * x * x - g * x ** 4)
    z = integrate.quad(w, -np.inf, np.inf, epsabs=0, epsrel=1e-13)[0]
    return {k: integrate.quad(lambda x: x ** k * w(x), -np.inf, np.inf, epsabs=0, epsrel=1e-13)[0] / z
            for k in orders}


def decoupled_phi4(g: float, L: int, dim: int) -> dict:
    """beta = 0: sites independent; exact phi2, chi, <M^2>, <M^4>, Binder."""
    mom = single_site_moments(g)
    m2s, m4s = mom[2], mom[4]
    V = L ** dim
    m2 = m2s / V
    m4 = (V * m4s + 3 * V * (V - 1) * m2s ** 2) / V ** 4
    return {"phi2": m2s, "chi": m2s, "m2": m2, "m4": m4, "m": 0.0,
            "binder": 1.0 - m4 / (3 * m2 * m2)}


def brute_force_gaussian_check(beta: float, L: int, dim: int) -> float:
    """<phi^2> from the explicit covariance A^-1 (a second route to free_field)."""
    V = L ** dim
    sites = list(itertools.product(range(L), repeat=dim))
    index = {s: i for i, s in enumerate(sites)}
    A = 2.0 * np.eye(V)
    for s in sites:
        for mu in range(dim):
            t = list(s)
            t[mu] = (t[mu] + 1) % L
            A[index[s], index[tuple(t)]] -= beta
            A[index[tuple(t)], index[s]] -= beta
    return float(np.trace(np.linalg.inv(A)) / V)
