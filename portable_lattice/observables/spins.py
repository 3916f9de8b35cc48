r"""Spin observables (Eq. 14 of [IRG]), finite-size scaling and P_L(m).

Per configuration: m (order parameter per site: the mean spin for Ising/EA,
|V^-1 sum exp(2 pi i s / q)| for Potts/clock), |m|, m^2, m^4, e = H/V, e^2 and
|m||e|.

Ensemble quantities, with blocked-jackknife errors:

* chi = V (<m^2> - <m><m>)
* c_me = V (<|m||e|> - <|m|><|e|>) / <|m|>
* heat capacity C = beta^2 V (<e^2> - <e>^2), the standard one. The paper's c
  in Eq. 14 omits beta^2 and uses e = V^-1 sum_<ij> s_i s_j = -H/V.
* U_4 = 1 - <m^4> / (3 <m^2>^2)
"""
from __future__ import annotations

import math
import warnings
from typing import Any

from array_api_compat import array_namespace, device

from .._delegation import fused_kernel
from ..lattice import volume as volume_of
from ..statistics import Estimate, combine, common_bins, derived, gamma_method, new_ensemble_id
from ..theories import EdwardsAnderson, Ising

__all__ = ["measure_spins", "ensemble_spins", "fss_exponent", "magnetisation_histogram"]


def measure_spins(s: Any, theory, dtype, fused: bool = False) -> dict:
    """Per-chain observables of one spin configuration.

    ``fused=True`` takes the Ising sums (magnetisation and bonds, exact integers) in one pass
    where a backend has the fused measurement (Numba on the CPU), giving exactly the generic
    path's values; other theories and backends run the generic path."""
    xp = array_namespace(s)
    V = volume_of(s)
    kernel = fused_kernel("measure_ising", s) if fused and _uniform_ising(theory) else None
    if kernel is not None:
        # the integer sums in the dtype, then the generic path's expressions: the same values
        # wherever the generic float sums are exact (below 2^24 for float32, 2^53 for float64)
        sums = xp.astype(kernel(s), dtype)
        m = sums[:, 0] / V
        e = (-theory.J * sums[:, 1] - theory.h * sums[:, 0]) / V
    else:
        m = theory.magnetisation(s, dtype)
        e = theory.energy(s, dtype) / V
    m2 = m * m
    return {"m": m, "m_abs": xp.abs(m), "m2": m2, "m4": m2 * m2, "energy": e, "e2": e * e,
            "me_abs": xp.abs(m) * xp.abs(e), "e_abs": xp.abs(e)}


def _uniform_ising(theory) -> bool:
    """Ising with one coupling for every bond (the fused sums' model), not Edwards-Anderson."""
    return isinstance(theory, Ising) and not isinstance(theory, EdwardsAnderson)


def ensemble_spins(series: dict, volume: int, theory, S: float = 2.0, *, ensemble: str | None = None,
                   bins: int | None = None) -> dict[str, Estimate]:
    """Means (Gamma method) and derived quantities (jackknife) from per-configuration series.

    The heat capacity uses the theory's inverse temperature: C = beta^2 V (<e^2> - <e>^2).
    ``ensemble`` and ``bins`` label and bin the estimates (default: a fresh label, bins from
    tau_int); pass the same values for series measured on correlated configurations (the
    levels of one upscaling) so that their estimates compose with the right correlations.
    """
    beta = theory.beta
    names = ("m", "m_abs", "m2", "m4", "energy", "e2", "me_abs", "e_abs")
    # one ensemble label and one binning: every estimate of this run composes with the others
    kw = {"ensemble": ensemble or new_ensemble_id("spins"),
          "bins": common_bins([series[n] for n in names], S) if bins is None else bins}
    out = {name: gamma_method(series[name], S, **kw) for name in ("m", "m_abs", "m2", "m4", "energy")}
    out["chi"] = derived(lambda m2, m: volume * (m2 - m * m), [series["m2"], series["m"]], S, **kw)
    out["heat_capacity"] = derived(lambda e2, e: beta * beta * volume * (e2 - e * e),
                                   [series["e2"], series["energy"]], S, **kw)
    out["binder"] = derived(lambda m4, m2: 1.0 - m4 / (3.0 * m2 * m2) if m2 > 0 else float("nan"),
                            [series["m4"], series["m2"]], S, **kw)
    out["c_me"] = derived(lambda me, ma, ea: volume * (me - ma * ea) / ma if ma > 0 else float("nan"),
                          [series["me_abs"], series["m_abs"], series["e_abs"]], S, **kw)
    return out


def fss_exponent(large: Estimate, small: Estimate, ratio: float = 4.0) -> Estimate:
    """Exponent from a size pair: ln(X(L) / X(L/ratio)) / ln(ratio), as an Estimate whose
    error comes from both runs' jackknife replicas (:func:`~portable_lattice.statistics.combine`).

    gamma/nu from chi and 1/nu from c_me with (L, L/4), as in Table II of [IRG].
    """
    if not (large.value > 0 and small.value > 0):
        # a model whose observable does not fluctuate (chi = 0 for frozen spins) has no exponent
        warnings.warn(f"fss_exponent: the observable must be positive at both sizes, got {large.value!r} and "
                      f"{small.value!r} (no fluctuations?): the exponent is NaN", DegenerateObservableWarning,
                      stacklevel=2)

    def exponent(a, b):
        return math.log(a / b) / math.log(ratio) if a > 0 and b > 0 else float("nan")
    return combine(exponent, large, small)


class DegenerateObservableWarning(RuntimeWarning):
    """An observable that does not fluctuate, so that a quantity derived from it is undefined (NaN)."""


def magnetisation_histogram(m: Any, L: int, bins: int = 41, beta_over_nu: float = 0.125,
                            m_max: float = 1.0) -> dict:
    """P_L(m) with errors from the spread across chains, and its scaled form (Eq. 16).

    Returns ``m`` (bin centres), ``p`` and ``p_err`` (density), and ``x = L^{b} m``,
    ``y = L^{-b} P_L(m)`` with b = beta/nu (1/8 for 2D Ising), which collapse onto
    one curve at criticality.
    """
    xp = array_namespace(m)
    n, chains = m.shape
    width = 2.0 * m_max / bins
    idx = xp.astype(xp.floor((m + m_max) / width), xp.int64)
    idx = xp.clip(idx, 0, bins - 1)
    counts = []
    for b in range(bins):
        counts.append(xp.sum(xp.astype(idx == b, xp.float64), axis=0) / (n * width))  # per chain
    per_chain = xp.stack(counts, axis=1)  # (chains, bins)
    p = xp.mean(per_chain, axis=0)
    p_err = xp.std(per_chain, axis=0, correction=1) / math.sqrt(chains) if chains > 1 else xp.zeros_like(p)
    centres = -m_max + width * (xp.astype(xp.arange(bins, device=device(m)), xp.float64) + 0.5)
    scale = float(L) ** beta_over_nu
    return {"m": centres, "p": p, "p_err": p_err, "x": centres * scale, "y": p / scale, "y_err": p_err / scale}
