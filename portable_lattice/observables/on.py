r"""O(n) observables: energy, magnetisation vector, susceptibility, Binder cumulant, xi_2nd, helicity.

Per configuration (per chain), with m = V^-1 sum_x s_x the magnetisation vector:
e = H/V, e^2, |m|, m^2 = m.m, m^4, the Fourier sum |M~(p1)|^2 / V at the smallest
momentum (averaged over the d directions, summed over components), and for n = 2 the
two parts of the helicity modulus.

Ensemble quantities, with blocked-jackknife errors:

* chi = V <m^2>: the symmetric phase's susceptibility, since <m> = 0 in a finite volume
  without a field (the exact references use it too); chi_abs = V (<m^2> - <|m|>^2)
* heat capacity C = beta^2 V (<e^2> - <e>^2)
* Binder cumulant U = 1 - n <m^4> / ((n + 2) <m^2>^2): 0 for Gaussian (disordered) spins,
  2 / (n + 2) in the ordered phase; n = 1 would give Ising's 1 - <m^4> / (3 <m^2>^2)
* xi_2nd = sqrt(chi / F - 1) / (2 sin(pi / L)), F = <|M~(p1)|^2> / V
* helicity modulus (n = 2; spin stiffness), averaged over the d directions:
  Upsilon = J <sum_x cos(theta_x - theta_{x+mu})> / V - beta J^2 <(sum_x sin(theta_x - theta_{x+mu}))^2> / V;
  the BKT criterion is beta Upsilon = 2 / pi at the transition.
"""
from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace

from ..statistics import Estimate, common_bins, derived, gamma_method, new_ensemble_id
from ..theories.on import site_volume, vector_shift
from .field import fourier_p1

__all__ = ["measure_vector", "ensemble_vector"]

_PRIMARY = ("energy", "e2", "m_abs", "m2", "m4", "g_p1")


def _fourier_p1(s: Any) -> Any:
    """|M~(p)|^2 / V at p = 2 pi / L e_mu, summed over components and averaged over directions:
    the scalar field's sum (:func:`~portable_lattice.observables.field.fourier_p1`) per component."""
    xp = array_namespace(s)
    chains, n = s.shape[0], s.shape[1]
    per_component = fourier_p1(xp.reshape(s, (chains * n,) + tuple(s.shape[2:])))
    return xp.sum(xp.reshape(per_component, (chains, n)), axis=1)


def _helicity_parts(s: Any, J: float) -> tuple[Any, Any]:
    """(J sum cos / V, J^2 (sum sin)^2 / V) per chain, each averaged over the d directions (n = 2)."""
    xp = array_namespace(s)
    d = s.ndim - 2
    volume = site_volume(s)
    axes = tuple(range(1, s.ndim - 1))
    cos_part, sin_part = None, None
    for mu in range(d):
        t = vector_shift(s, mu, 1)
        cos_sum = xp.sum(s[:, 0, ...] * t[:, 0, ...] + s[:, 1, ...] * t[:, 1, ...], axis=axes)
        # sin(theta_x - theta_{x+mu}) = s_x^1 t^0 - s_x^0 t^1
        sin_sum = xp.sum(s[:, 1, ...] * t[:, 0, ...] - s[:, 0, ...] * t[:, 1, ...], axis=axes)
        c, q = J * cos_sum / volume, J * J * sin_sum * sin_sum / volume
        cos_part = c if cos_part is None else cos_part + c
        sin_part = q if sin_part is None else sin_part + q
    return cos_part / d, sin_part / d


def measure_vector(s: Any, theory, dtype: Any = None, fused: bool = False) -> dict:
    """Per-chain observables of one O(n) configuration ``(chains, n, L, ..., L)``.

    ``dtype`` and ``fused`` are accepted for the family's common signature; the configuration's
    own float dtype is used, and there is no fused measurement for vector spins."""
    xp = array_namespace(s)
    volume = site_volume(s)
    e = theory.energy(s) / volume
    mvec = theory.magnetisation(s) / volume
    m2 = xp.sum(mvec * mvec, axis=1)
    out = {"energy": e, "e2": e * e, "m_abs": xp.sqrt(m2), "m2": m2, "m4": m2 * m2, "g_p1": _fourier_p1(s)}
    if theory.n == 2:
        out["helicity_c"], out["helicity_s2"] = _helicity_parts(s, theory.J)
    return out


def ensemble_vector(series: dict, volume: int, theory, L: int, S: float = 2.0) -> dict[str, Estimate]:
    """Means (Gamma method) and derived quantities (jackknife) of an O(n) run's series."""
    beta, n = theory.beta, theory.n
    names = [k for k in _PRIMARY + ("helicity_c", "helicity_s2") if k in series]
    kw = {"ensemble": new_ensemble_id("on"), "bins": common_bins([series[k] for k in names], S)}
    out = {k: gamma_method(series[k], S, **kw) for k in ("energy", "m_abs", "m2", "m4")}
    out["chi"] = derived(lambda m2: volume * m2, [series["m2"]], S, **kw)
    out["chi_abs"] = derived(lambda m2, ma: volume * (m2 - ma * ma), [series["m2"], series["m_abs"]], S, **kw)
    out["heat_capacity"] = derived(lambda e2, e: beta * beta * volume * (e2 - e * e),
                                   [series["e2"], series["energy"]], S, **kw)
    out["binder"] = derived(lambda m4, m2: 1.0 - n * m4 / ((n + 2.0) * m2 * m2) if m2 > 0 else float("nan"),
                            [series["m4"], series["m2"]], S, **kw)

    def xi(m2, g1):
        ratio = volume * m2 / g1 if g1 > 0 else float("nan")
        return math.sqrt(ratio - 1.0) / (2.0 * math.sin(math.pi / L)) if ratio >= 1.0 else float("nan")

    out["xi2nd"] = derived(xi, [series["m2"], series["g_p1"]], S, **kw)
    if "helicity_c" in series:
        out["helicity"] = derived(lambda c, q: c - beta * q, [series["helicity_c"], series["helicity_s2"]], S, **kw)
    return out
