r"""U(1) gauge observables: plaquette, Wilson loops, Polyakov loop, topological charge (2D).

Per configuration (per chain), each invariant under the gauge transformations
theta_mu(x) -> theta_mu(x) + a(x) - a(x + e_mu) (each is a function of closed loops):

* ``plaquette`` = <cos theta_P>, the mean over all V d (d - 1) / 2 plaquettes;
* ``action_per_plaquette`` = S / (number of plaquettes) = -beta ``plaquette`` (the key of
  :func:`~portable_lattice.exact.u1_2d`);
* ``w11``, ``w12``, ``w22``: planar R x T Wilson loops Re W = cos(sum of the loop's angles),
  averaged over positions, planes and (for R != T) both orientations; ``w11`` is the plaquette;
* ``polyakov_abs`` = |V_s^-1 sum_xs exp(i sum_t theta_{d-1}(xs, t))|, the loop winding along the
  last axis (the "time" direction), averaged over the V_s = L^(d-1) spatial sites;
* in d = 2, the geometric charge ``q`` = (1/2pi) sum_P [theta_P] with [t] reduced into (-pi, pi]
  (an integer on the torus: every link enters two plaquettes with opposite signs; reported
  rounded to the nearest integer), and ``q2`` = q^2.

Ensemble quantities (:func:`ensemble_gauge`): Gamma-method means of the primaries and, in d = 2,
the topological susceptibility chi_top = <Q^2> / V with V = L^2 plaquettes (the ``chi_top`` of
:func:`~portable_lattice.exact.u1_2d`); its ``tau_int`` is the integrated autocorrelation time of
Q^2, and the Estimate of ``q`` carries that of Q itself (the slowest mode near the continuum).
"""
from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace

from ..lattice import shift
from ..statistics import Estimate, common_bins, derived, gamma_method, new_ensemble_id
from ..theories.u1 import link_axes, planes, reduce_angle

__all__ = ["measure_gauge", "ensemble_gauge", "wilson_loop", "polyakov_loop", "topological_charge"]

#: the per-chain series :func:`measure_gauge` returns in any dimension, and in d = 2 in addition
_PRIMARY = ("plaquette", "action_per_plaquette", "w11", "w12", "w22", "polyakov_abs")
_PRIMARY_2D = ("q", "q2")


def _line(t: Any, mu: int, n: int) -> Any:
    """sum_{k < n} t(x + k e_mu) for one direction's link angles ``t`` ``(chains, L, ..., L)``."""
    out = t
    for k in range(1, n):
        out = out + shift(t, mu, k)
    return out


def wilson_loop(theta: Any, R: int, T: int) -> Any:
    """Re W(R, T) per chain: cos of the angle around the R x T rectangle (R links along mu, T
    along nu), averaged over positions, planes mu < nu and, for R != T, both orientations."""
    xp = array_namespace(theta)
    d = theta.ndim - 2
    links = [theta[:, mu, ...] for mu in range(d)]
    sizes = [(R, T)] if R == T else [(R, T), (T, R)]
    total, count = None, 0
    for mu, nu in planes(d):
        for r, t in sizes:
            side_mu, side_nu = _line(links[mu], mu, r), _line(links[nu], nu, t)
            angle = side_mu + shift(side_nu, mu, r) - shift(side_mu, nu, t) - side_nu
            c = xp.mean(xp.cos(angle), axis=tuple(range(1, angle.ndim)))
            total, count = (c if total is None else total + c), count + 1
    return total / count


def polyakov_loop(theta: Any) -> tuple[Any, Any]:
    """(Re, Im) of the Polyakov loop exp(i sum_t theta_{d-1}(xs, t)) at every spatial site xs,
    each ``(chains, L, ..., L)`` with d - 1 lattice axes (t: the last axis)."""
    xp = array_namespace(theta)
    d = theta.ndim - 2
    angle = xp.sum(theta[:, d - 1, ...], axis=theta.ndim - 2)
    return xp.cos(angle), xp.sin(angle)


def topological_charge(theta: Any, theory: Any) -> Any:
    """The geometric charge (1/2pi) sum_P [theta_P] per chain in d = 2, [t] in (-pi, pi], as a
    float (an integer up to rounding of order 1e-15 V)."""
    xp = array_namespace(theta)
    d = theta.ndim - 2
    if d != 2:
        raise ValueError(f"the geometric topological charge is defined here in d = 2, got dim={d}")
    P = reduce_angle(theory.plaquettes(theta))
    return xp.sum(P, axis=link_axes(P)) / (2.0 * math.pi)


def measure_gauge(theta: Any, theory: Any, dtype: Any = None, fused: bool = False) -> dict:
    """Per-chain observables of one link configuration ``(chains, d, L, ..., L)``.

    ``dtype`` and ``fused`` are accepted for the family's common signature; the configuration's
    own float dtype is used, and there is no fused measurement for gauge fields."""
    xp = array_namespace(theta)
    d = theta.ndim - 2
    axes = tuple(range(1, theta.ndim))
    plaq = xp.mean(xp.cos(theory.plaquettes(theta)), axis=axes)
    pre, pim = polyakov_loop(theta)
    spatial = tuple(range(1, pre.ndim))
    out = {
        "plaquette": plaq,
        "action_per_plaquette": -theory.beta * plaq,
        "w11": plaq,  # the 1 x 1 loop is the plaquette
        "w12": wilson_loop(theta, 1, 2),
        "w22": wilson_loop(theta, 2, 2),
        "polyakov_abs": xp.sqrt(xp.mean(pre, axis=spatial) ** 2 + xp.mean(pim, axis=spatial) ** 2),
    }
    if d == 2:
        q = xp.round(topological_charge(theta, theory))
        out["q"] = q
        out["q2"] = q * q
    return out


def ensemble_gauge(series: dict, theory: Any, L: int, dim: int, S: float = 2.0) -> dict[str, Estimate]:
    """Means (Gamma method) of a gauge run's series ``{name: (n, chains)}`` and, in d = 2, the
    topological susceptibility chi_top = <Q^2> / L^2 (jackknife, its tau_int that of Q^2)."""
    names = [k for k in _PRIMARY + _PRIMARY_2D if k in series]
    kw = {"ensemble": new_ensemble_id("u1"), "bins": common_bins([series[k] for k in names], S)}
    out = {k: gamma_method(series[k], S, **kw) for k in names}
    if dim == 2 and "q2" in series:
        V = L * L
        out["chi_top"] = derived(lambda q2: q2 / V, [series["q2"]], S, **kw)
    return out
