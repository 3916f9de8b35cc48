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
from ..samplers.base import info_series  # recorded as series, averaged over the ``every`` steps
from ..statistics import Estimate, UnreliableErrorWarning, gamma_method

__all__ = ["run", "RunResult", "NonFiniteFieldError", "Progress", "FrozenChainWarning", "MemorySink",
           "StopRequested", "thermalise"]


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
    steps : kernel steps taken (sweeps, trajectories or Langevin steps), in all (a resumed run's
        earlier steps included)
    steps_timed : the steps this call took, in ``seconds`` (a resumed run: only its own)
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
    steps_timed: int | None = None

    @property
    def site_updates_per_second(self) -> float:
        """sites x chains x steps per second of sampling: the steps this call took, in its time."""
        steps = self.steps if self.steps_timed is None else self.steps_timed
        return self.volume * self.chains * steps / self.seconds if self.seconds > 0 else float("nan")


class Progress:
    """The one progress display of a run: tqdm on a terminal (where installed; else a status line
    rewritten in place); off a terminal silent unless ``enabled``, then a plain line every 5%
    (a batch job's log). ``initial`` continues a count (a resumed run)."""

    def __init__(self, total: int, label: str = "", enabled: bool | None = None, stream=None, *,
                 initial: int = 0, unit: str = "steps"):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = self.tty if enabled is None else enabled
        self.total, self.label, self.unit = total, label, unit
        self.done = self.first = initial
        self.start = time.perf_counter()
        self.last, self.next_line, self.bar = 0.0, 0.0, None
        if self.enabled and self.tty:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, initial=initial, desc=label, unit=unit, file=self.stream)
            except ImportError:
                self.bar = None

    def update(self, done: int, force: bool = False) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(done - self.done)
            self.done = done
            return
        self.done = done
        now = time.perf_counter()
        rate = (done - self.first) / max(now - self.start, 1e-9)
        if self.tty:
            if force or now - self.last >= 0.5:
                self.last = now
                eta = (self.total - done) / rate if rate > 0 else float("nan")
                self.stream.write(f"\r{self.label} {done}/{self.total} {self.unit}  {rate:.1f}/s  eta {eta:.0f}s   ")
                self.stream.flush()
        elif force or done / max(self.total, 1) >= self.next_line or done == self.total:
            self.stream.write(f"{self.label}: {done}/{self.total} {self.unit} "
                              f"({100 * done / max(self.total, 1):.0f}%, {rate:.3g}/s)\n")
            self.stream.flush()
            self.next_line = done / max(self.total, 1) + 0.05

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled and self.tty:
            self.update(self.done, force=True)
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
        for name, v in info_series(info).items():
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


class StopRequested(Exception):
    """The run stopped at a commit on request (signal or stop file); ``status`` is the exit code."""

    def __init__(self, status: int, message: str, result: "RunResult | None" = None):
        super().__init__(message)
        self.status, self.result = status, result


class MemorySink:
    """Measurements kept in host memory, moved off the device ``block`` rows at a time (one
    synchronisation per block, not per measurement)."""

    def __init__(self, block: int = 64):
        self.block = positive_int("flush_every", block)
        self.chunks: dict[str, list] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def thermalised(self, state, rng, counters) -> None:
        """Called once thermalisation is done."""

    def write(self, rows: dict, saved, saved_at: list, state, rng, counters, finished: bool) -> int | None:
        """Keep a block of host rows; returns a stop status (None: go on)."""
        self.keep(rows)
        return None

    def keep(self, rows: dict) -> None:
        """Keep rows measured before a failure (the partial result)."""
        for name, v in rows.items():
            self.chunks.setdefault(name, []).append(v)

    def series(self) -> dict:
        out = {}
        for name, chunks in self.chunks.items():
            hx = array_namespace(chunks[0])
            out[name] = hx.concat(chunks, axis=0)
        return out

    def where(self) -> dict:
        return {}


def _fresh_counters() -> dict:
    return {"n_meas": 0, "n_saved": 0, "steps": 0, "therm_done": False}


def run(kernel, start: Any, rng, *, n_therm: int, n_measure: int, every: int = 1,
        measure: Callable[[Any], dict] | None = None,
        analyse: Callable[[dict], dict] | None = None,
        to_host: Callable[[Any], Any] | None = None,
        progress: bool | None = None, flush_every: int = 64, label: str = "sampling",
        sink: Any = None, counters: dict | None = None, save_every: int = 0) -> RunResult:
    """Thermalise, then take ``n_measure`` measurements ``every`` kernel steps apart: the one
    loop of every run, in memory or into a store.

    Parameters
    ----------
    kernel : sampler with ``init``/``step``
    start : array (chains, L, ..., L), or a sampler state
        Start configuration (a field or spins), validated by ``kernel.init``; a state (a
        resumed run's checkpoint) is taken as it is.
    rng : backend generator
    n_therm, n_measure, every : int
        Thermalisation steps, number of measurements, steps between them.
    measure : callable phi -> {name: (chains,) array}
    analyse : callable series -> {name: Estimate}; default: Gamma method per series.
    to_host : callable array -> numpy array; default: the array's backend.
    progress : bool or None
        Progress on stderr; None shows it only on a terminal.
    flush_every : int
        Rows moved to the host at once (in memory).
    sink : where the measurements go: a :class:`MemorySink` (default) or a store sink
        (:class:`~portable_lattice.runs.production.StoreSink`: blocks committed with a checkpoint,
        stop on a signal or a STOP file).
    counters : a resumed run's counters (measurements, saved configurations, steps, whether
        thermalisation is done); default: a fresh run.
    save_every : int
        Hand every ``save_every``-th configuration to the sink (0: none).

    Raises
    ------
    NonFiniteFieldError
        When a chain's field becomes NaN/inf; it names the step and chains and
        carries everything kept before it (``.partial``).
    StopRequested
        The sink asked to stop at a commit (a signal, a STOP file).
    """
    nonnegative_int("n_therm", n_therm)
    positive_int("n_measure", n_measure)
    positive_int("every", every)
    nonnegative_int("save_every", save_every)
    if measure is None:
        raise ValueError("measure must be a callable phi -> dict of per-chain observables")
    state = start if hasattr(start, "config") else kernel.init(start)
    loop = _Loop(kernel, state, rng, n_therm, n_measure, every, measure, analyse, to_host or _default_to_host,
                 MemorySink(flush_every) if sink is None else sink,
                 _fresh_counters() if counters is None else counters, save_every, progress, label)
    with loop.sink:
        if not loop.counters["therm_done"]:
            loop.thermalise()
        loop.measure_all()
    return loop.finish()


class _Loop:
    """The state of one :func:`run`: the kernel's state, the counters, the rows not yet handed to
    the sink, and the progress display; its methods are the loop's phases."""

    def __init__(self, kernel, state, rng, n_therm, n_measure, every, measure, analyse, to_host, sink,
                 counters, save_every, progress, label):
        self.kernel, self.state, self.rng = kernel, state, rng
        self.n_therm, self.n_measure, self.every = n_therm, n_measure, every
        self.measure, self.analyse, self.to_host = measure, analyse, to_host
        self.sink, self.counters, self.save_every = sink, counters, save_every
        self.xp = array_namespace(state.config)
        self.chains = state.config.shape[0]
        self.volume = volume_of(state.config)
        self.therm_left = 0 if counters["therm_done"] else n_therm
        self.bar = Progress(n_measure * every + self.therm_left, label, progress,
                            initial=counters["n_meas"] * every if counters["therm_done"] else 0)
        self.pending: list[dict] = []
        self.saved: list = []
        self.saved_at: list[int] = []
        self.t0 = time.perf_counter()
        self.steps0 = counters["steps"]  # a resumed run's throughput counts its own steps only

    def thermalise(self) -> None:
        xp, counters, every = self.xp, self.counters, self.every
        axes = lattice_axes(self.state.config)
        for i in range(1, self.n_therm + 1):
            self.state, _info = self.kernel.step(self.state, self.rng)
            counters["steps"] += 1
            if i % max(every, 10) == 0 or i == self.n_therm:
                bad = self.to_host(~xp.isfinite(xp.sum(self.state.config, axis=axes)))
                if bool(bad.any()):
                    self.non_finite(bad, "thermalisation")
            self.bar.update(i)
        counters["therm_done"] = True
        self.sink.thermalised(self.state, self.rng, counters)

    def measure_all(self) -> None:
        counters, n_measure, every = self.counters, self.n_measure, self.every
        while counters["n_meas"] < n_measure:
            self.state, values = measurement(self.kernel, self.state, self.rng, every, self.measure)
            counters["steps"] += every
            counters["n_meas"] += 1
            self.pending.append(values)
            if self.save_every and counters["n_meas"] % self.save_every == 0:
                self.saved.append(self.state.config)
                self.saved_at.append(counters["n_meas"])
            self.bar.update(self.therm_left + counters["n_meas"] * every)
            if len(self.pending) >= self.sink.block or counters["n_meas"] == n_measure:
                status = self.write_block(counters["n_meas"] >= n_measure)
                if status is not None and counters["n_meas"] < n_measure:
                    self.bar.close()
                    raise StopRequested(status, f"stopped at measurement {counters['n_meas']} of {n_measure} "
                                                "(committed); continue with: portable-lattice resume "
                                                f"{self.sink.where().get('out', '')}")

    def write_block(self, finished: bool) -> int | None:
        xp, pending = self.xp, self.pending
        rows = {name: self.to_host(xp.stack([p[name] for p in pending], axis=0)) for name in pending[0]}
        bad = _bad_rows(rows)
        if bad is not None:
            self.non_finite(bad, "measurement", rows)
        configs = self.to_host(xp.stack(self.saved, axis=0)) if self.saved else None
        self.counters["n_saved"] += len(self.saved)
        status = self.sink.write(rows, configs, list(self.saved_at), self.state, self.rng, self.counters, finished)
        pending.clear(), self.saved.clear(), self.saved_at.clear()
        return status

    def result(self, series: dict, seconds: float) -> RunResult:
        obs = {}
        if series:
            try:
                obs = (self.analyse or _default_analyse)(series)
            except Exception:  # noqa: BLE001 - a partial result must survive a failing analysis
                obs = {}
        with warnings.catch_warnings():
            # the run's own acceptance summary; analyse() reports (and warns about) the observables
            warnings.simplefilter("ignore", UnreliableErrorWarning)
            acc = gamma_method(series["acceptance"]) if series.get("acceptance") is not None \
                and series["acceptance"].shape[0] else Estimate(float("nan"), float("nan"))
        return RunResult(series, obs, acc, seconds, self.counters["steps"], self.chains, self.volume, self.state,
                         dict(self.sink.where()), steps_timed=self.counters["steps"] - self.steps0)

    def non_finite(self, bad, where: str, rows: dict | None = None):
        """Stop: keep the rows before the first bad one (a memory sink keeps them; a store keeps
        what it committed), and name the step and the chains."""
        if bad.ndim == 2:
            first = int(bad.any(axis=1).nonzero()[0][0])
            if rows is not None and first:
                self.sink.keep({name: v[:first] for name, v in rows.items()})
            bad = bad.any(axis=0)
        idx = [int(i) for i in bad.nonzero()[0]]
        self.bar.close()
        partial = self.result(self.sink.series(), time.perf_counter() - self.t0)
        kept = next(iter(partial.series.values())).shape[0] if partial.series else 0
        where_out = self.sink.where()
        raise NonFiniteFieldError(
            f"the field became non-finite by step {self.counters['steps']} ({where}) in chain(s) {idx[:10]}"
            f"{'...' if len(idx) > 10 else ''}; the {kept} measurements before it are kept"
            + (f" in {where_out['out']}" if "out" in where_out else " in .partial"),
            self.counters["steps"], idx, partial)

    def finish(self) -> RunResult:
        """The result, with a warning (and NaN errors) where no proposal was accepted at all."""
        seconds = time.perf_counter() - self.t0
        self.bar.close()
        out = self.result(self.sink.series(), seconds)
        acc = out.series.get("acceptance")
        if acc is not None and acc.shape[0] and not bool((acc > 0).any()):
            warnings.warn("no proposal was accepted in the whole run (acceptance 0): the measurements are those "
                          "of the start configuration, and their errors are reported as NaN", FrozenChainWarning,
                          stacklevel=3)
            out.observables = {k: Estimate(e.value, float("nan"), e.tau_int, e.tau_int_error, e.n)
                               for k, e in out.observables.items()}
        return out


def thermalise(kernel, state: Any, rng, n: int, *, label: str = "thermalisation") -> Any:
    """``n`` kernel steps from ``state`` (a configuration is initialised first), with the run's NaN
    guard: the thermalisation of every data-collecting loop (training sets, reference ensembles)."""
    nonnegative_int("therm", n)
    state = state if hasattr(state, "config") else kernel.init(state)
    if n == 0:
        return state
    xp = array_namespace(state.config)
    axes = lattice_axes(state.config)
    for i in range(1, n + 1):
        state, _ = kernel.step(state, rng)
        if i % 10 == 0 or i == n:
            if not bool(xp.all(xp.isfinite(xp.sum(xp.astype(state.config, xp.float64), axis=axes)))):
                raise NonFiniteFieldError(f"the field became non-finite by step {i} of {label}", i, [], None)
    return state


def _bad_rows(rows: dict):
    """(rows, chains) booleans marking non-finite measurements, or None when all are finite."""
    bad = None
    for v in rows.values():
        hx = array_namespace(v)
        b = ~hx.isfinite(v)
        b = hx.any(b, axis=tuple(range(2, b.ndim))) if b.ndim > 2 else b
        bad = b if bad is None else bad | b
    return bad if bad is not None and bool(bad.any()) else None


def _default_analyse(series: dict) -> dict:
    return {name: gamma_method(s) for name, s in series.items()}
