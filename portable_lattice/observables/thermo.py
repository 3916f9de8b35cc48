r"""Entropy and free energy from a normalised model q with a known log-density.

Given n independent samples sigma_i ~ q with log q(sigma_i) and their energies
H(sigma_i) (the true Hamiltonian, or a learned one), two families of estimators:

**The model's own (Eqs. 10-11 of [DCL])**

    S_q = -E_q[ln q],    F_q = E_q[H + beta^-1 ln q] = U_q - S_q / beta.

They are the entropy and the variational free energy *of the model*: F_q >= F
(Gibbs' inequality), with equality only when q is the Boltzmann distribution;
S_q is the model's entropy, not the system's. Their bias is the model's
Kullback-Leibler divergence, which no number of samples removes.

**Importance-weighted (unbiased in the limit of many samples; NIS)**

    w_i = exp(-beta H_i - ln q_i),  Z ~ mean(w),  F = -beta^-1 ln mean(w),
    U = sum(w H) / sum(w),  S = beta (U - F),

consistent for any q that covers the support of exp(-beta H) (for a model with
a finite log q everywhere). The errors come from a delete-one-block jackknife over
the samples (the delta method, done numerically), and the Kish effective sample
size (sum w)^2 / sum w^2 says how much the weights cost. Below an ESS of 100 the
error bars themselves are unreliable (heavy-tailed weights), and a warning says so.

Everything is per site (divided by the volume); energies are in units of J,
entropies in units of k_B. Written against the Array API: the arrays may be
NumPy, CuPy, torch or array_api_strict.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

from array_api_compat import array_namespace

from .._checks import positive_float, positive_int
from ..statistics import Estimate, UnreliableErrorWarning, jackknife_variance, new_ensemble_id

#: below this Kish effective sample size the importance-weighted error bars are flagged
MIN_ESS = 100

__all__ = ["model_thermodynamics", "importance_weights"]


def _check(energy: Any, log_q: Any, beta: float, volume: int, bins: int) -> tuple[Any, int]:
    positive_float("beta", beta)
    positive_int("volume", volume)
    positive_int("bins", bins)
    xp = array_namespace(energy, log_q)
    if energy.ndim != 1 or log_q.ndim != 1 or energy.shape[0] != log_q.shape[0]:
        raise ValueError(f"energy and log_q must be 1-d arrays of one length (one entry per sample), got shapes "
                         f"{tuple(energy.shape)} and {tuple(log_q.shape)}")
    n = int(energy.shape[0])
    if n < 2:
        raise ValueError(f"the estimators need at least 2 samples, got {n}")
    for name, a in (("energy", energy), ("log_q", log_q)):
        bad = ~xp.isfinite(a)
        if bool(xp.any(bad)):
            first = int(xp.argmax(xp.astype(bad, xp.int32)))
            raise ValueError(f"{name} is not finite at sample {first} ({float(a[first])}): a model that gives "
                             f"probability 0 to a configuration cannot weight it")
    return xp, n


def importance_weights(energy: Any, log_q: Any, beta: float) -> Any:
    """log w = -beta H - log q per sample (unnormalised importance log-weights)."""
    positive_float("beta", beta)
    return -beta * energy - log_q


def _blocks(n: int, bins: int) -> list[tuple[int, int]]:
    bins = min(bins, n)
    edges = [round(i * n / bins) for i in range(bins + 1)]
    return [(edges[i], edges[i + 1]) for i in range(bins)]


def _estimate(value: float, replicas: list[float], n: int, label: str) -> Estimate:
    return Estimate(value, math.sqrt(jackknife_variance(replicas)), n=n, replicas={label: tuple(replicas)})


def model_thermodynamics(energy: Any, log_q: Any, beta: float, volume: int, *, bins: int = 100,
                         ensemble: str | None = None) -> dict:
    """Entropy, free energy and internal energy per site from samples of a normalised model.

    Parameters
    ----------
    energy : (n,) array
        H(sigma_i) of each sample (true or learned Hamiltonian), in units of J.
    log_q : (n,) array
        The model's exact log-probability of each sample (natural log).
    beta : float
        Inverse temperature at which F and S are wanted (> 0).
    volume : int
        Number of sites (the per-site normalisation).
    bins : int
        Jackknife blocks over the samples (the samples are independent; blocks only bound the cost).
    ensemble : str, optional
        Label of the jackknife replicas (so that derived quantities propagate errors).

    Returns
    -------
    dict with ``"paper"`` and ``"importance"`` (each ``{"entropy", "free_energy",
    "internal_energy"}`` of :class:`~portable_lattice.statistics.Estimate`),
    ``"ess"`` (Kish effective sample size of the weights) and ``"samples"`` (n).
    """
    xp, n = _check(energy, log_q, beta, volume, bins)
    label = ensemble or new_ensemble_id("model")
    f64 = xp.float64
    H = xp.astype(energy, f64)
    lq = xp.astype(log_q, f64)
    lw = -beta * H - lq
    shift = float(xp.max(lw))
    w = xp.exp(lw - shift)
    blocks = _blocks(n, bins)
    # per-block sums, pulled to the host once: a few hundred scalars
    sums = {name: [float(xp.sum(a[lo:hi])) for lo, hi in blocks]
            for name, a in (("H", H), ("lq", lq), ("w", w), ("wH", w * H), ("w2", w * w))}
    counts = [hi - lo for lo, hi in blocks]
    tot = {k: sum(v) for k, v in sums.items()}

    def paper(sH, slq, m):
        u = sH / m / volume
        s = -slq / m / volume
        return u, s, u - s / beta

    def importance(sw, swH, m):
        log_z = math.log(sw / m) + shift
        f = -log_z / (beta * volume)
        u = swH / sw / volume
        return u, beta * (u - f), f

    out = {}
    for kind, fn, keys in (("paper", paper, ("H", "lq")), ("importance", importance, ("w", "wH"))):
        full = fn(*(tot[k] for k in keys), n)
        reps = [fn(*(tot[k] - sums[k][b] for k in keys), n - counts[b]) for b in range(len(blocks))]
        out[kind] = {name: _estimate(full[i], [r[i] for r in reps], n, label)
                     for i, name in enumerate(("internal_energy", "entropy", "free_energy"))}
    out["ess"] = tot["w"] ** 2 / tot["w2"]
    out["samples"] = n
    if out["ess"] < MIN_ESS:
        warnings.warn(f"importance weights: effective sample size {out['ess']:.1f} of {n} samples (< {MIN_ESS}); "
                      f"the importance-weighted values and their errors are not reliable: draw more samples or "
                      f"improve the model", UnreliableErrorWarning, stacklevel=2)
    return out
