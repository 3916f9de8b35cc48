r"""Error analysis of Monte Carlo time series (pyerrors / NetKet ``stats`` style).

Series have shape ``(n_measurements, chains)``: several independent replica
chains of the same length. Everything here is pure and written against the
Array API (in practice it runs on host NumPy arrays handed over by the driver).

* :func:`gamma_method` - Wolff's Gamma method (U. Wolff, Comput. Phys. Commun.
  156 (2004) 143) with automatic windowing, S = 2 by default: mean, error,
  integrated autocorrelation time tau_int = 1/2 + sum_t Gamma(t)/Gamma(0)
  (Eq. 4.14 of the diffusion paper) and its error.
* :func:`chain_error` - the error from the scatter of independent chain means.
* :func:`derived` - a function of several means (susceptibility, Binder
  cumulant, ...) with a blocked delete-one jackknife error, and tau_int from the
  Gamma method on its linearised fluctuation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from array_api_compat import array_namespace, device

__all__ = ["Estimate", "gamma_method", "chain_error", "derived", "jackknife_blocks"]


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo estimate: value +- error (one standard deviation)."""

    value: float
    error: float
    tau_int: float = float("nan")
    tau_int_error: float = float("nan")
    n: int = 0

    def z(self, exact: float) -> float:
        """(value - exact) / error."""
        return (self.value - exact) / self.error if self.error > 0 else (
            0.0 if self.value == exact else math.copysign(math.inf, self.value - exact))

    def as_dict(self) -> dict:
        return {"value": self.value, "error": self.error, "tau_int": self.tau_int}

    def __str__(self) -> str:
        return format_value(self.value, self.error)


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


def gamma_method(x: Any, S: float = 2.0) -> Estimate:
    """Mean of a series with its error from Wolff's Gamma method.

    Parameters
    ----------
    x : array, shape (n, chains) or (n,)
    S : float
        Wolff's window parameter (tau/tau_int ratio guess); the window W is the
        first W where exp(-W/tau_W) - tau_W/sqrt(W N) < 0.

    Returns
    -------
    Estimate
        error^2 = 2 tau_int Gamma(0) / N_total with Wolff's bias correction;
        tau_int_error from the Madras-Sokal formula.
    """
    x = _as_2d(x)
    xp = array_namespace(x)
    n, chains = x.shape
    N = n * chains
    mean = float(xp.mean(x))
    if n < 2:
        return Estimate(mean, float("nan"), float("nan"), float("nan"), N)
    gamma = _autocovariance(x, mean)
    g0 = float(gamma[0])
    if not g0 > 0:
        return Estimate(mean, 0.0, 0.5, 0.0, N)
    rho = gamma / g0
    csum = xp.cumulative_sum(rho[1:])
    W = n - 1
    for w in range(1, n):
        tau_w = 0.5 + float(csum[w - 1])
        tau = S / math.log((2 * tau_w + 1) / (2 * tau_w - 1)) if tau_w > 0.5 else 1e-12
        if math.exp(-w / tau) - tau / math.sqrt(w * N) < 0:
            W = w
            break
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
    return Estimate(mean, error, tau_int, dtau, N)


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


def derived(f: Callable[..., float], series: Sequence[Any], S: float = 2.0) -> Estimate:
    """f(<a_1>, ..., <a_k>) with a blocked jackknife error.

    Parameters
    ----------
    f : callable
        Takes the k means (python floats) and returns a float.
    series : sequence of arrays (n, chains)
        The primary observables whose means enter f.

    Notes
    -----
    Means are taken over all chains and measurements together. The jackknife
    deletes one block at a time; blocks are bins of each chain, at least
    4 tau_int long (tau_int the largest of the primaries'), so their
    correlation is negligible. tau_int of the result is the Gamma method's on
    the linearised fluctuation sum_i (df/da_i) a_i(t).
    """
    xs = [_as_2d(s) for s in series]
    xp = array_namespace(xs[0])
    n, chains = xs[0].shape
    taus = [gamma_method(s, S).tau_int for s in xs]
    tau = max((t for t in taus if math.isfinite(t)), default=0.5)
    bins = jackknife_blocks(n, chains, tau)
    used = (n // bins) * bins
    # block sums, shape (bins * chains,) per primary
    block_sums = [xp.reshape(xp.sum(xp.reshape(s[:used, :], (bins, used // bins, chains)), axis=1), (-1,))
                  for s in xs]
    totals = [float(xp.sum(b)) for b in block_sums]
    count = used * chains
    per_block = (used // bins)
    means = [t / count for t in totals]
    value = f(*means)
    K = bins * chains
    if K < 2:
        return Estimate(value, float("nan"), tau, n=n * chains)
    # delete-one means for every block, as arrays, then f evaluated block by block
    loo = [(t - b) / (count - per_block) for t, b in zip(totals, block_sums)]
    loo_host = [[float(v) for v in arr] for arr in loo]  # K small scalars; f is scalar python code
    fk = [f(*vals) for vals in zip(*loo_host)]
    fbar = sum(fk) / K
    error = math.sqrt((K - 1) / K * sum((v - fbar) ** 2 for v in fk))
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
    g = gamma_method(proj, S)
    return Estimate(value, error, g.tau_int, g.tau_int_error, n * chains)
