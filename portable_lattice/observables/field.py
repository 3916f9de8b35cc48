r"""Observables of the scalar field: per configuration, and ensemble quantities.

Per configuration (one value per chain): magnetisation M = V^-1 sum_x phi_x,
|M|, M^2, M^4, phi2 = V^-1 sum_x phi_x^2, the action density S/V, and the
momentum-space two-point function at the smallest non-zero momentum
(for the second-moment correlation length).

Ensemble quantities (functions of means, with jackknife errors):
chi = V(<M^2> - <M>^2) (Eq. 4.6 of [DMSQ]), its |M| variant
V(<M^2> - <|M|>^2), the Binder cumulant U = 1 - <M^4>/(3<M^2>^2) (Eq. 4.7 of
[DMSQ]), and xi_2nd = sqrt(G(0)/G(p1) - 1) / (2 sin(pi/L)) with the connected
G(0) = chi.
"""
from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace, device as device_of

from .._delegation import fused_kernel
from ..lattice import lattice_axes, volume as volume_of
from ..statistics import Estimate, common_bins, derived, gamma_method, new_ensemble_id

__all__ = ["measure_phi4", "two_point", "ensemble_phi4", "PRIMARY", "DERIVED"]

#: per-configuration observables measured by :func:`measure_phi4`
PRIMARY = ("m", "m_abs", "m2", "m4", "phi2", "action", "g_p1")
#: ensemble quantities computed by :func:`ensemble_phi4`
DERIVED = ("chi", "chi_abs", "binder", "xi2nd")


def fourier_p1(phi: Any) -> Any:
    """|phi~(p)|^2 / V at p = 2 pi / L e_mu, averaged over the d directions, per chain."""
    xp = array_namespace(phi)
    L, d = phi.shape[1], phi.ndim - 1
    volume = L ** d
    axes = lattice_axes(phi)
    k = xp.astype(xp.arange(L, device=device_of(phi)), phi.dtype) * (2.0 * math.pi / L)
    total = None
    for mu in range(d):
        shape = [1] * phi.ndim
        shape[mu + 1] = L
        c = xp.sum(phi * xp.reshape(xp.cos(k), tuple(shape)), axis=axes)
        s = xp.sum(phi * xp.reshape(xp.sin(k), tuple(shape)), axis=axes)
        term = (c * c + s * s) / volume
        total = term if total is None else total + term
    return total / d


def measure_phi4(phi: Any, theory, fused: bool = False) -> dict[str, Any]:
    """Per-chain observables of one configuration (arrays of shape ``(chains,)``).

    ``fused=True`` takes every sum in one pass where a backend has the fused measurement
    (Numba on the CPU: the runs with ``fused=True``), equal to this generic path up to the
    order of summation; elsewhere the generic path runs."""
    xp = array_namespace(phi)
    kernel = fused_kernel("measure_phi4", phi) if fused else None
    if kernel is not None:
        return _from_sums(kernel(phi), phi, theory)
    axes = lattice_axes(phi)
    volume = volume_of(phi)
    m = xp.mean(phi, axis=axes)
    m2 = m * m
    return {
        "m": m,
        "m_abs": xp.abs(m),
        "m2": m2,
        "m4": m2 * m2,
        "phi2": xp.mean(phi * phi, axis=axes),
        "action": theory.action(phi) / volume,
        "g_p1": fourier_p1(phi),
    }


def _from_sums(sums: Any, phi: Any, theory) -> dict[str, Any]:
    """The observables of :func:`measure_phi4` from the fused kernel's per-chain sums (chains, 10):
    sum phi, phi^2, phi^4, phi_x sum_mu phi_{x+mu}, the Fourier cosine and sine sums per direction."""
    xp = array_namespace(sums)
    d, volume = phi.ndim - 1, volume_of(phi)
    m = sums[:, 0] / volume
    m2 = m * m
    pot = (1.0 - 2.0 * theory.g) * sums[:, 1] + theory.g * sums[:, 2]
    g_p1 = None
    for mu in range(d):
        term = (sums[:, 4 + mu] * sums[:, 4 + mu] + sums[:, 7 + mu] * sums[:, 7 + mu]) / volume
        g_p1 = term if g_p1 is None else g_p1 + term
    out = {"m": m, "m_abs": xp.abs(m), "m2": m2, "m4": m2 * m2, "phi2": sums[:, 1] / volume,
           "action": (pot - theory.beta * sums[:, 3]) / volume + theory.constant_per_site, "g_p1": g_p1 / d}
    return {k: xp.astype(v, phi.dtype) for k, v in out.items()}


def two_point(phi: Any, max_distance: int | None = None) -> Any:
    """C(r) = V^-1 sum_x phi_x phi_{x + r e_mu}, averaged over mu, per chain.

    Returns shape ``(chains, max_distance + 1)`` for r = 0..L/2. The connected
    function is C(r) - <M>^2 with <M> over the whole ensemble.
    """
    xp = array_namespace(phi)
    L, d = phi.shape[1], phi.ndim - 1
    rmax = L // 2 if max_distance is None else max_distance
    axes = lattice_axes(phi)
    cols = []
    for r in range(rmax + 1):
        acc = None
        for mu in range(d):
            term = xp.mean(phi * xp.roll(phi, shift=-r, axis=mu + 1), axis=axes)
            acc = term if acc is None else acc + term
        cols.append(acc / d)
    return xp.stack(cols, axis=1)


def ensemble_phi4(series: dict[str, Any], volume: int, L: int, S: float = 2.0) -> dict[str, Estimate]:
    """Means with Gamma-method errors, and the derived quantities with jackknife errors.

    ``series[name]`` has shape ``(n_measurements, chains)``; means are over
    all chains and measurements together.
    """
    names = [name for name in PRIMARY if name in series]
    # one ensemble label and one binning: every estimate of this run composes with the others
    kw = {"ensemble": new_ensemble_id("phi4"), "bins": common_bins([series[n] for n in names], S)}
    out = {name: gamma_method(series[name], S, **kw) for name in names}
    out["chi"] = derived(lambda m2, m: volume * (m2 - m * m), [series["m2"], series["m"]], S, **kw)
    out["chi_abs"] = derived(lambda m2, ma: volume * (m2 - ma * ma), [series["m2"], series["m_abs"]], S, **kw)
    out["binder"] = derived(lambda m4, m2: 1.0 - m4 / (3.0 * m2 * m2) if m2 > 0 else float("nan"),
                            [series["m4"], series["m2"]], S, **kw)

    def xi(m2, m, g1):
        g0 = volume * (m2 - m * m)
        ratio = g0 / g1 if g1 > 0 else float("nan")
        return math.sqrt(ratio - 1.0) / (2.0 * math.sin(math.pi / L)) if ratio >= 1.0 else float("nan")

    out["xi2nd"] = derived(xi, [series["m2"], series["m"], series["g_p1"]], S, **kw)
    return out
