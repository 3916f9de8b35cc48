r"""The Gaussian free field on a periodic lattice: exact expectation values ([DMSQ] Eq. 4.2 at lambda = 0).

S = sum_x [-beta sum_mu phi_x phi_{x+mu} + phi_x^2] = phi^T A phi / 2 with the
propagator C = A^(-1) diagonal in momentum space, c(k) = 1 / (2 - 2 beta sum_mu cos k_mu)
(beta = 2 kappa). Then <M> = 0, <M^2> = c(0)/V, chi = V<M^2> = c(0),
<|M|> = sqrt(2 <M^2> / pi), <phi^2> = V^-1 sum_k c(k), the Binder cumulant is 0
(M is Gaussian) and <S>/V = 1/2 (equipartition over V Gaussian modes).
"""
from __future__ import annotations

import itertools
import math

__all__ = ["free_field_exact", "free_field_propagator"]


def free_field_propagator(L: int, beta: float, dim: int = 2) -> dict[tuple[int, ...], float]:
    """c(k) for every momentum k = 2 pi n / L, keyed by the integer vector n."""
    if beta * dim >= 1.0:
        raise ValueError(f"the free field needs beta < 1/d = {1 / dim:g}, got beta={beta!r}")
    out = {}
    for n in itertools.product(range(L), repeat=dim):
        out[n] = 1.0 / (2.0 - 2.0 * beta * sum(math.cos(2.0 * math.pi * ni / L) for ni in n))
    return out


def free_field_exact(L: int, beta: float, dim: int = 2) -> dict[str, float]:
    """Exact m, m_abs, m2, phi2, chi, binder and action (per site) of the free field (g = 0)."""
    c = free_field_propagator(L, beta, dim)
    V = L ** dim
    m2 = c[(0,) * dim] / V
    return {"m": 0.0, "m_abs": math.sqrt(2.0 * m2 / math.pi), "m2": m2, "m4": 3.0 * m2 * m2,
            "phi2": sum(c.values()) / V, "chi": V * m2, "binder": 0.0, "action": 0.5}
