r"""Error analysis of Monte Carlo time series (pyerrors / NetKet ``stats`` style).

Estimates compose: each keeps its jackknife replicas per ensemble, so ratios,
exponents and fits of estimates get correct errors (:func:`combine`).

Series have shape ``(n_measurements, chains)``: several independent replica
chains of the same length. Everything here is pure and written against the
Array API (in practice it runs on host NumPy arrays handed over by the driver).

* :func:`gamma_method` - Wolff's Gamma method (U. Wolff, Comput. Phys. Commun.
  156 (2004) 143) with automatic windowing, S = 2 by default: mean, error,
  integrated autocorrelation time tau_int = 1/2 + sum_t Gamma(t)/Gamma(0)
  (Eq. 4.14 of [DMSQ]) and its error.
* :func:`chain_error` - the error from the scatter of independent chain means.
* :func:`derived` - a function of several means (susceptibility, Binder
  cumulant, ...) with a blocked delete-one jackknife error, and tau_int from the
  Gamma method on its linearised fluctuation.
"""
from __future__ import annotations

import math
import itertools
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from array_api_compat import array_namespace, device

from ._json import json_ready

__all__ = ["Estimate", "gamma_method", "chain_error", "derived", "combine", "split_rhat", "jackknife_blocks",
           "format_value", "jackknife_variance", "UnreliableErrorWarning", "new_ensemble_id", "common_bins", "autocorrelation"]


class UnreliableErrorWarning(UserWarning):
    """A Monte Carlo error could not be estimated honestly (too few measurements, or tau_int
    comparable to the run length); the error is NaN."""


_ENSEMBLES = itertools.count()


def new_ensemble_id(prefix: str = "ensemble") -> str:
    """A fresh label for an independent set of measurements (jackknife replicas of different
    labels are independent; replicas with the same label are correlated)."""
    return f"{prefix}-{next(_ENSEMBLES)}"


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo estimate: value +- error (one standard deviation).

    ``replicas`` maps an ensemble label to the delete-one jackknife values of this
    quantity on that ensemble (pyerrors' model): functions of estimates
    (:func:`combine`, and the arithmetic operators) evaluate the function on every
    replica, so correlations within an ensemble and independence across ensembles
    are propagated correctly. ``rhat`` is the split R-hat across chains (Gelman-Rubin;
    about 1 for converged chains).
    """

    value: float
    error: float
    tau_int: float = float("nan")
    tau_int_error: float = float("nan")
    n: int = 0
    rhat: float = float("nan")
    replicas: Mapping[str, tuple] | None = field(default=None, repr=False, compare=False)

    def z(self, exact: float) -> float:
        """(value - exact) / error."""
        return (self.value - exact) / self.error if self.error > 0 else (
            0.0 if self.value == exact else math.copysign(math.inf, self.value - exact))

    def as_dict(self) -> dict:
        """JSON-ready: value, error, tau_int (and rhat), with NaN as None (JSON has no NaN)."""
        out = {"value": self.value, "error": self.error, "tau_int": self.tau_int}
        if math.isfinite(self.rhat):
            out["rhat"] = self.rhat
        return json_ready(out)

    def __str__(self) -> str:
        return format_value(self.value, self.error)

    # --- composition ---------------------------------------------------------------------
    def _binary(self, other, f):
        return combine(f, self, other) if isinstance(other, Estimate) else combine(lambda a: f(a, other), self)

    def _rbinary(self, other, f):
        return combine(lambda a: f(other, a), self)

    def __add__(self, o): return self._binary(o, lambda a, b: a + b)
    def __radd__(self, o): return self._rbinary(o, lambda a, b: a + b)
    def __sub__(self, o): return self._binary(o, lambda a, b: a - b)
    def __rsub__(self, o): return self._rbinary(o, lambda a, b: a - b)
    def __mul__(self, o): return self._binary(o, lambda a, b: a * b)
    def __rmul__(self, o): return self._rbinary(o, lambda a, b: a * b)
    def __truediv__(self, o): return self._binary(o, lambda a, b: a / b)
    def __rtruediv__(self, o): return self._rbinary(o, lambda a, b: a / b)
    def __pow__(self, o): return self._binary(o, lambda a, b: a ** b)
    def __neg__(self): return combine(lambda a: -a, self)

    def log(self) -> "Estimate":
        return combine(math.log, self)


def jackknife_variance(replicas: Sequence[float]) -> float:
    """The jackknife variance (K - 1)/K sum (r_k - mean)^2 of K leave-one-out replicas (NaN for K < 2)."""
    K = len(replicas)
    if K < 2:
        return float("nan")
    mean = sum(replicas) / K
    return (K - 1) / K * sum((r - mean) ** 2 for r in replicas)


def combine(f: Callable[..., float], *estimates: Estimate) -> Estimate:
    """f(a, b, ...) of Estimates with its error from their jackknife replicas.

    For every ensemble any input was measured on, f is evaluated on that
    ensemble's replicas (inputs from other ensembles held at their values);
    the squared errors of independent ensembles add. This is exact error
    propagation to first order for correlated inputs of one ensemble (chi and
    <|m|> from one run) and for independent runs (an exponent from two sizes).

    Raises
    ------
    ValueError
        When an input carries no replicas (e.g. an Estimate built by hand).
    """
    for i, e in enumerate(estimates):
        if not isinstance(e, Estimate):
            raise TypeError(f"combine takes Estimates, got argument {i} of type {type(e).__name__}")
        if not e.replicas:
            raise ValueError(f"argument {i} ({e}) has no jackknife replicas to propagate its error")
    value = f(*(e.value for e in estimates))
    labels = []
    for e in estimates:
        labels += [k for k in e.replicas if k not in labels]
    variance, replicas = 0.0, {}
    for label in labels:
        sizes = {len(e.replicas[label]) for e in estimates if label in e.replicas}
        if len(sizes) > 1:
            raise ValueError(f"estimates of ensemble {label!r} have different jackknife binnings {sorted(sizes)}; "
                             "analyse them with one bins= value")
        K = sizes.pop()
        reps = tuple(f(*((e.replicas[label][k] if label in e.replicas else e.value) for e in estimates))
                     for k in range(K))
        replicas[label] = reps
        variance += jackknife_variance(reps)
    error = math.sqrt(variance) if math.isfinite(variance) else float("nan")
    return Estimate(value, error, n=sum(e.n for e in estimates), replicas=replicas)


def split_rhat(x: Any) -> float:
    """Split R-hat of a series (n, chains): each chain cut in two halves, then Gelman-Rubin's
    potential scale reduction over the 2 x chains sequences (Vehtari et al. 2021, without rank
    normalisation). NaN for fewer than 4 measurements per chain."""
    x = _as_2d(x)
    xp = array_namespace(x)
    n, chains = x.shape
    half = n // 2
    if half < 2:
        return float("nan")
    seqs = xp.concat([x[:half, :], x[n - half:, :]], axis=1)  # (half, 2 chains)
    means = xp.mean(seqs, axis=0)
    W = float(xp.mean(xp.var(seqs, axis=0, correction=1)))
    B = half * float(xp.var(means, correction=1))
    if not W > 0:
        return float("nan")
    var_plus = (half - 1) / half * W + B / half
    return math.sqrt(var_plus / W)


def format_value(value: float, error: float) -> str:
    """``1.2345(67)`` style, two significant digits of the error."""
    if not (math.isfinite(value) and math.isfinite(error)) or error <= 0:
        return f"{value:.6g} +- {error:.2g}"
    digits = max(0, 1 - int(math.floor(math.log10(error))))
    return f"{value:.{digits}f}({round(error * 10 ** digits):d})"


def _as_2d(x: Any) -> Any:
    xp = array_namespace(x)
    if x.ndim == 1:
        x = xp.reshape(x, (x.shape[0], 1))
    if x.ndim != 2:
        raise ValueError(f"series must have shape (n_measurements, chains), got shape={tuple(x.shape)}")
    return x


def _autocovariance(x: Any, mean: float) -> Any:
    """Gamma(t) for t = 0..n-1, pooled over chains (replicas) with the global mean."""
    xp = array_namespace(x)
    n, chains = x.shape
    dev = x - mean
    size = 1
    while size < 2 * n:
        size *= 2
    f = xp.fft.rfft(dev, n=size, axis=0)
    acf = xp.fft.irfft(f * xp.conj(f), n=size, axis=0)[:n, :]
    pairs = xp.astype(xp.arange(n, 0, -1, device=device(x)), x.dtype) * chains  # number of (i, i+t) pairs over all chains
    return xp.sum(acf, axis=1) / pairs


def _block_replicas(xs: list, bins: int) -> tuple[list, list]:
    """Delete-one-block means of each series (n, chains), blocks = ``bins`` bins per chain.

    Returns (means, replicas): the overall mean of each series over the used
    measurements, and per series the host list of its bins * chains replicas.
    """
    xp = array_namespace(xs[0])
    n, chains = xs[0].shape
    used = (n // bins) * bins
    per_block = used // bins
    count = used * chains
    block_sums = [xp.reshape(xp.sum(xp.reshape(s[:used, :], (bins, per_block, chains)), axis=1), (-1,))
                  for s in xs]
    totals = [float(xp.sum(b)) for b in block_sums]
    means = [t / count for t in totals]
    if bins * chains < 2:
        return means, [[m] for m in means]
    loo = [(t - b) / (count - per_block) for t, b in zip(totals, block_sums)]
    return means, [[float(v) for v in arr] for arr in loo]  # few scalars; f is scalar python code


def _unreliable(what: str) -> None:
    warnings.warn(f"{what}: no honest error estimate, reporting NaN", UnreliableErrorWarning, stacklevel=3)


def _wolff_window(rho: Any, N: int, S: float) -> int:
    """Wolff's automatic window: the first W with exp(-W/tau_W) - tau_W/sqrt(W N) < 0."""
    xp = array_namespace(rho)
    n = rho.shape[0]
    csum = xp.cumulative_sum(rho[1:])
    for w in range(1, n):
        tau_w = 0.5 + float(csum[w - 1])
        tau = S / math.log((2 * tau_w + 1) / (2 * tau_w - 1)) if tau_w > 0.5 else 1e-12
        if math.exp(-w / tau) - tau / math.sqrt(w * N) < 0:
            return w
    return n - 1


def autocorrelation(x: Any, S: float = 2.0) -> tuple[Any, int, float]:
    """The normalised autocorrelation function rho(t) of a series (n, chains), Wolff's window W,
    and tau_int (the same as :func:`gamma_method`'s): for plots of the window."""
    x = _as_2d(x)
    n, chains = x.shape
    N = n * chains
    xp = array_namespace(x)
    gamma = _autocovariance(x, float(xp.mean(x)))
    g0 = float(gamma[0])
    if not g0 > 0 or n < 2:
        return gamma * 0.0, 0, 0.5
    rho = gamma / g0
    W = _wolff_window(rho, N, S)
    cf = g0 + 2.0 * float(xp.sum(gamma[1:W + 1]))
    g0_corr, cf_corr = g0 + cf / N, cf + (2 * W + 1) * cf / N
    return rho, W, max(0.5 * cf_corr / g0_corr, 0.5)


def gamma_method(x: Any, S: float = 2.0, *, ensemble: str | None = None, bins: int | None = None) -> Estimate:
    """Mean of a series with its error from Wolff's Gamma method.

    Parameters
    ----------
    x : array, shape (n, chains) or (n,)
    S : float
        Wolff's window parameter (tau/tau_int ratio guess); the window W is the
        first W where exp(-W/tau_W) - tau_W/sqrt(W N) < 0.
    ensemble : str, optional
        Label of the run the series comes from (for composing with other
        estimates of the same run); default: a fresh label.
    bins : int, optional
        Jackknife bins per chain for the replicas; default from tau_int
        (:func:`jackknife_blocks`).

    Returns
    -------
    Estimate
        error^2 = 2 tau_int Gamma(0) / N_total with Wolff's bias correction;
        tau_int_error from the Madras-Sokal formula; split R-hat; replicas.

    Warns
    -----
    UnreliableErrorWarning
        Fewer than 2 measurements per chain, or tau_int longer than a tenth of
        the chain (n < 10 tau_int): the error is NaN.
    """
    x = _as_2d(x)
    xp = array_namespace(x)
    n, chains = x.shape
    N = n * chains
    mean = float(xp.mean(x))
    ensemble = ensemble or new_ensemble_id()
    if n < 2:
        _unreliable(f"a series of {n} measurement(s) per chain")
        return Estimate(mean, float("nan"), float("nan"), float("nan"), N)
    if not math.isfinite(mean):
        # a NaN or an infinity in the series: no error can be said (never a silent 0)
        _unreliable(f"a series with non-finite values (mean {mean})")
        return Estimate(mean, float("nan"), float("nan"), float("nan"), N)
    gamma = _autocovariance(x, mean)
    g0 = float(gamma[0])
    if not g0 > 0:
        # no fluctuation at all: the mean is exact for this run (a frozen chain is reported by the driver)
        return Estimate(mean, 0.0, 0.5, 0.0, N, replicas={ensemble: (mean,) * max(2, chains)})
    rho = gamma / g0
    W = _wolff_window(rho, N, S)
    # Wolff's bias correction of Gamma for the subtracted mean (Eq. 49 of Wolff 2004)
    cf = g0 + 2.0 * float(xp.sum(gamma[1:W + 1]))
    g0_corr = g0 + cf / N
    cf_corr = cf + (2 * W + 1) * cf / N
    tau_int = 0.5 * cf_corr / g0_corr
    tau_int = max(tau_int, 0.5) if math.isfinite(tau_int) else float("nan")
    # anticorrelated series (a Wolff flip reverses m) can drive the sum to <= 0; never
    # claim better than uncorrelated samples
    error = math.sqrt(max(cf_corr, g0_corr) / N)
    dtau = tau_int * math.sqrt(4.0 * (W + 0.5 - tau_int) / N) if W + 0.5 > tau_int else 0.0
    if 10.0 * tau_int > n:
        _unreliable(f"tau_int = {tau_int:.3g} is comparable to the chain length {n}")
        error = float("nan")
    bins = jackknife_blocks(n, chains, tau_int) if bins is None else bins
    _, (reps,) = _block_replicas([x], bins)
    return Estimate(mean, error, tau_int, dtau, N, rhat=split_rhat(x), replicas={ensemble: tuple(reps)})


def chain_error(x: Any) -> Estimate:
    """Mean with its error from the scatter of the independent chain means."""
    x = _as_2d(x)
    xp = array_namespace(x)
    n, chains = x.shape
    means = xp.mean(x, axis=0)
    value = float(xp.mean(means))
    if chains < 2:
        return Estimate(value, float("nan"), n=n * chains)
    err = float(xp.std(means, correction=1)) / math.sqrt(chains)
    return Estimate(value, err, n=n * chains)


def jackknife_blocks(n: int, chains: int, tau: float) -> int:
    """Bins per chain for the jackknife: bins at least 4 tau_int long, so they are
    (nearly) independent; whole chains when the series is shorter than that."""
    if not math.isfinite(tau):
        return 1
    length = max(1, math.ceil(4.0 * tau))
    return max(1, min(n // length, 64))


def common_bins(series: Sequence[Any], S: float = 2.0) -> int:
    """One jackknife binning for several series of one run (from the largest tau_int), so
    that their estimates compose with :func:`combine`."""
    xs = [_as_2d(x) for x in series]
    n, chains = xs[0].shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableErrorWarning)
        taus = [gamma_method(x, S).tau_int for x in xs]
    tau = max((t for t in taus if math.isfinite(t)), default=0.5)
    return jackknife_blocks(n, chains, tau)


def derived(f: Callable[..., float], series: Sequence[Any], S: float = 2.0, *, ensemble: str | None = None,
            bins: int | None = None) -> Estimate:
    """f(<a_1>, ..., <a_k>) with a blocked jackknife error.

    Parameters
    ----------
    f : callable
        Takes the k means (python floats) and returns a float.
    series : sequence of arrays (n, chains)
        The primary observables whose means enter f.
    ensemble, bins : as for :func:`gamma_method`.

    Notes
    -----
    Means are taken over all chains and measurements together. The jackknife
    deletes one block at a time; blocks are bins of each chain, at least
    4 tau_int long (tau_int the largest of the primaries'), so their
    correlation is negligible. tau_int of the result is the Gamma method's on
    the linearised fluctuation sum_i (df/da_i) a_i(t).
    """
    xs = [_as_2d(s) for s in series]
    n, chains = xs[0].shape
    ensemble = ensemble or new_ensemble_id()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableErrorWarning)  # judged below on the derived quantity
        taus = [gamma_method(s, S).tau_int for s in xs]
    tau = max((t for t in taus if math.isfinite(t)), default=0.5)
    bins = jackknife_blocks(n, chains, tau) if bins is None else bins
    means, loo = _block_replicas(xs, bins)
    value = f(*means)
    K = bins * chains
    if K < 2 or n < 2:
        _unreliable(f"a derived quantity from {K} jackknife block(s)")
        return Estimate(value, float("nan"), tau, n=n * chains)
    # delete-one values of f, block by block
    fk = [f(*vals) for vals in zip(*loo)]
    error = math.sqrt(jackknife_variance(fk))
    # tau_int of the linearised fluctuation
    grads = []
    for i, m in enumerate(means):
        h = 1e-6 * max(abs(m), 1e-8)
        up, dn = list(means), list(means)
        up[i] += h
        dn[i] -= h
        grads.append((f(*up) - f(*dn)) / (2 * h))
    proj = grads[0] * xs[0]
    for gi, s in zip(grads[1:], xs[1:]):
        proj = proj + gi * s
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableErrorWarning)
        g = gamma_method(proj, S)
    if 10.0 * tau > n or (math.isfinite(g.tau_int) and 10.0 * g.tau_int > n):
        _unreliable(f"tau_int = {max(tau, g.tau_int):.3g} is comparable to the chain length {n}")
        error = float("nan")
    return Estimate(value, error, g.tau_int, g.tau_int_error, n * chains, rhat=split_rhat(proj),
                    replicas={ensemble: tuple(fk)})
