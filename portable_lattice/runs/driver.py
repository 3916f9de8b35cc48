"""The thin driver over sampler kernels: thermalise, measure, watch for NaN, report progress.

Kernels know nothing of files or printing; this module does the bookkeeping.
Measurements are gathered on the device and copied to host NumPy in chunks
(one synchronisation per chunk, not per measurement), so a GPU run is not
stalled by reporting.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from array_api_compat import array_namespace

import warnings

from .._checks import nonnegative_int, positive_int
from ..lattice import lattice_axes, volume as volume_of
from ..samplers.base import INFO_SERIES  # recorded as series, each averaged over the ``every`` steps
from ..statistics import Estimate, UnreliableErrorWarning, gamma_method

__all__ = ["run", "RunResult", "NonFiniteFieldError", "Progress", "FrozenChainWarning"]


class NonFiniteFieldError(FloatingPointError, ValueError):
    """The field became NaN or infinite; ``.partial`` keeps everything measured before."""

    def __init__(self, message: str, step: int, chains: list[int], partial: "RunResult | None"):
        super().__init__(message)
        self.step, self.chains, self.partial = step, chains, partial


@dataclass
class RunResult:
    """What a run produced.

    series : name -> host array (n_measurements, chains) of per-configuration values
    observables : name -> Estimate (means with Gamma-method errors, derived with jackknife)
    acceptance : mean acceptance with its error
    seconds : wall time of the sampling loop (thermalisation included)
    steps : kernel steps taken (sweeps, trajectories or Langevin steps)
    """

    series: dict[str, Any]
    observables: dict[str, Estimate]
    acceptance: Estimate
    seconds: float
    steps: int
    chains: int
    volume: int
    state: Any = None
    meta: dict = field(default_factory=dict)

    @property
    def site_updates_per_second(self) -> float:
        """sites x chains x steps per second of sampling."""
        return self.volume * self.chains * self.steps / self.seconds if self.seconds > 0 else float("nan")


class Progress:
    """One status line on stderr, rewritten in place; silent when stderr is not a terminal."""

    def __init__(self, total: int, label: str = "", enabled: bool | None = None, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total, self.label = total, label
        self.start = time.perf_counter()
        self.last = 0.0

    def update(self, done: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self.last < 0.5:
            return
        self.last = now
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        self.stream.write(f"\r{self.label} {done}/{self.total} steps  {rate:.1f}/s  eta {eta:.0f}s   ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.update(self.total, force=True)
            self.stream.write("\n")
            self.stream.flush()


def _default_to_host(x):
    from ..backends import backend_of  # the backend layer owns host conversion
    return backend_of(x).to_numpy(x)




def measurement(kernel, state, rng, every: int, measure: Callable[[Any], dict]) -> tuple[Any, dict]:
    """``every`` kernel steps, then one measurement: the observables of the new configuration and
    the steps' Info series (acceptance, changed, cluster size, exp(-dH)) averaged over the steps."""
    xp = array_namespace(state.config)
    sums: dict[str, Any] = {}
    for _ in range(every):
        state, info = kernel.step(state, rng)
        for name in INFO_SERIES:
            v = getattr(info, name)
            if v is not None:
                sums[name] = v if name not in sums else sums[name] + v
        if info.delta_h is not None:
            e = xp.exp(-info.delta_h)
            sums["exp_minus_dh"] = e if "exp_minus_dh" not in sums else sums["exp_minus_dh"] + e
    values = dict(measure(state.config))
    for name, total in sums.items():
        values[name] = total / every
    return state, values


class FrozenChainWarning(UserWarning):
    """No proposal was accepted in the whole run: the measurements are those of the start configuration."""


def run(kernel, phi0: Any, rng, *, n_therm: int, n_measure: int, every: int = 1,
        measure: Callable[[Any], dict] | None = None,
        analyse: Callable[[dict], dict] | None = None,
        to_host: Callable[[Any], Any] | None = None,
        progress: bool | None = None, flush_every: int = 64, label: str = "sampling") -> RunResult:
    """Thermalise, then take ``n_measure`` measurements ``every`` kernel steps apart.

    Parameters
    ----------
    kernel : sampler with ``init``/``step``
    phi0 : array (chains, L, ..., L)
        Start configuration (a field or spins), validated by ``kernel.init``.
    rng : backend generator
    n_therm, n_measure, every : int
        Thermalisation steps, number of measurements, steps between them.
    measure : callable phi -> {name: (chains,) array}
    analyse : callable series -> {name: Estimate}; default: Gamma method per series.
    to_host : callable array -> numpy array; default: the array's backend.
    progress : bool or None
        Status line on stderr; None shows it only on a terminal.

    Raises
    ------
    NonFiniteFieldError
        When a chain's field becomes NaN/inf; it names the step and chains and
        carries everything measured before it (``.partial``).
    """
    nonnegative_int("n_therm", n_therm)
    positive_int("n_measure", n_measure)
    positive_int("every", every)
    if measure is None:
        raise ValueError("measure must be a callable phi -> dict of per-chain observables")
    state = kernel.init(phi0)
    xp = array_namespace(state.config)
    to_host = to_host or _default_to_host
    chains = state.config.shape[0]
    volume = volume_of(state.config)
    total = n_therm + n_measure * every
    bar = Progress(total, label, progress)

    host_chunks: dict[str, list] = {}
    pending: list[dict] = []
    steps = 0
    t0 = time.perf_counter()

    def flush():
        if not pending:
            return
        for name in pending[0]:
            stacked = xp.stack([p[name] for p in pending], axis=0)
            host_chunks.setdefault(name, []).append(to_host(stacked))
        pending.clear()

    def host_series():
        out = {}
        for name, chunks in host_chunks.items():
            hx = array_namespace(chunks[0])
            out[name] = hx.concat(chunks, axis=0)
        return out

    def partial_result(seconds):
        flush()
        series = host_series()
        obs = {}
        if series:
            try:
                obs = (analyse or _default_analyse)(series)
            except Exception:  # the partial result must survive a failing analysis
                obs = {}
        with warnings.catch_warnings():
            # the run's own acceptance summary; analyse() reports (and warns about) the observables
            warnings.simplefilter("ignore", UnreliableErrorWarning)
            acc = gamma_method(series["acceptance"]) if "acceptance" in series else Estimate(float("nan"), float("nan"))
        return RunResult(series, obs, acc, seconds, steps, chains, volume, state)

    def check_finite(values, where):
        """values: per-chain sums, shape (chains,) or (rows, chains) for pending measurements."""
        bad = to_host(~xp.isfinite(values))
        if not bool(bad.any()):
            return
        if bad.ndim == 2:  # keep the measurements taken before the first bad one
            first = int(bad.any(axis=1).nonzero()[0][0])
            del pending[first:]
            bad = bad.any(axis=0)
        idx = [int(i) for i in bad.nonzero()[0]]
        partial = partial_result(time.perf_counter() - t0)
        kept = next(iter(partial.series.values())).shape[0] if partial.series else 0
        raise NonFiniteFieldError(
            f"the field became non-finite by step {steps} ({where}) in chain(s) {idx[:10]}"
            f"{'...' if len(idx) > 10 else ''}; the {kept} measurements before it are kept in .partial",
            steps, idx, partial)

    def per_chain_total(values):
        """Sum of every measurement of one row, per chain (measurements may carry extra axes)."""
        total = None
        for v in values.values():
            v = xp.sum(v, axis=tuple(range(1, v.ndim))) if v.ndim > 1 else v
            total = v if total is None else total + v
        return total

    def pending_sums():
        return xp.stack([per_chain_total(p) for p in pending], axis=0)

    axes = lattice_axes(state.config)
    for _ in range(n_therm):
        state, _info = kernel.step(state, rng)
        steps += 1
        if steps % max(every, 10) == 0 or steps == n_therm:
            check_finite(xp.sum(state.config, axis=axes), "thermalisation")
        bar.update(steps)

    for _ in range(n_measure):
        state, values = measurement(kernel, state, rng, every, measure)
        steps += every
        pending.append(values)
        if len(pending) >= flush_every:
            # check before flushing so the non-finite rows are not mixed into the kept data
            check_finite(pending_sums(), "measurement")
            flush()
        bar.update(steps)
    if pending:
        check_finite(pending_sums(), "measurement")
    seconds = time.perf_counter() - t0
    bar.close()
    result = partial_result(seconds)
    result.seconds = seconds
    acc = result.series.get("acceptance")
    if acc is not None and not bool((acc > 0).any()):
        warnings.warn("no proposal was accepted in the whole run (acceptance 0): the measurements are those of "
                      "the start configuration, and their errors are reported as NaN", FrozenChainWarning, stacklevel=2)
        result.observables = {k: Estimate(e.value, float("nan"), e.tau_int, e.tau_int_error, e.n)
                              for k, e in result.observables.items()}
    return result


def _default_analyse(series: dict) -> dict:
    return {name: gamma_method(s) for name, s in series.items()}
