"""Parameter scans: one task per grid point, each writing its own ensemble (Dask distributed).

    portable-lattice scan CARD.toml --set kappa=0.20:0.28:9 --set L=16,32 --scheduler local:2 --out DIR

* The grid is the product of the ``--set`` values (:func:`parse_sets`); each point
  is the card with those keys replaced, and it runs as one task into its own
  ensemble directory ``DIR/<key=value_...>`` (:func:`point_name`).
* Each task's seed is drawn from ``numpy.random.SeedSequence(card["seed"],
  spawn_key=(task_index,))`` (:func:`task_seed`), where the task index is the
  point's place in the grid, so a result never depends on which worker ran what:
  a scan on N workers writes the same bytes as the same scan run serially.
* Tasks are idempotent and resumable: a finished point is skipped, a point with
  a partial store continues from its last commit (:func:`runs.production.resume`),
  bit for bit. A worker killed mid-task is replaced by Dask, its task runs again
  and continues from the task's last commit; a rerun of a finished scan does
  nothing. A lock file per point (``DIR/.<name>.lock``) keeps two copies of one
  task from writing at once.
* Schedulers: ``serial`` (in this process), ``local:N`` (a
  ``distributed.LocalCluster`` of N single-threaded worker processes, closed at
  the end) or ``tcp://HOST:PORT`` (an existing cluster; ``DIR`` must then be on
  a file system every worker sees).
* Threads: every task sets its thread count (torch, OpenMP, MKL, OpenBLAS) so
  that the concurrent tasks on one machine times their threads never exceed
  the cores this process may use (``os.sched_getaffinity``); see
  :func:`thread_budget`. ``local:N`` workers start without Dask's
  ``MALLOC_TRIM_THRESHOLD_`` (it made sweeps at L = 64 2.5x slower); workers of
  an existing cluster that have it say so in the point's warnings: start them
  with ``distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_: null``.

Caveats: the task index is the point's place in the grid, so a scan rerun with
another grid (a value added in the middle) has other seeds, and a point made
by the old grid is refused by name rather than mixed in. Workers are spawned
processes: a script that runs a ``local:N`` scan needs the usual
``if __name__ == "__main__":`` guard.

The summary (:func:`scan`'s return value) is written to ``DIR/scan.json``, with
a plot of the main observables against the scanned parameter
(``DIR/scan.png``) when matplotlib is installed.
"""
from __future__ import annotations

import itertools
import json
import math
import numbers
import os
import re
import sys
import time
import warnings
from typing import Any

from .._json import json_ready
from ..theories.base import FAMILIES
from .cards import CARD_KEYS, PHYSICS_KEYS, PLACEMENT_KEYS, check_card
from .spec import MODEL_KEYS, RunSpec, family_of_card

__all__ = ["parse_sets", "scan", "print_scan", "grid_points", "point_card", "point_name", "task_seed",
           "thread_budget", "set_threads", "available_cores", "run_point", "SchedulerUnreachable",
           "DistributedUnavailable"]

SUMMARY = "scan.json"
PLOT = "scan.png"
#: seconds to wait for a scheduler given by address before giving up
CONNECT_TIMEOUT = 10.0
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class SchedulerUnreachable(ConnectionError):
    """The Dask scheduler named by address did not answer within the connection timeout."""


class DistributedUnavailable(ImportError, ValueError):
    """A Dask scheduler was asked for, and ``distributed`` is not installed (a ValueError too, so
    the command line reports it as a bad choice of --scheduler)."""


# --- the grid ---------------------------------------------------------------------------------
_INT = re.compile(r"[+-]?\d+")


def _number(text: str, spec: str) -> int | float:
    t = text.strip()
    if _INT.fullmatch(t):
        return int(t)
    try:
        v = float(t)
    except ValueError:
        raise ValueError(f"--set {spec!r}: {t!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"--set {spec!r}: {t!r} is not finite")
    return v


def _clean(x: float) -> float:
    """12 significant digits: 0.2 + 1 * 0.01 is 0.21, not 0.21000000000000002."""
    return float(f"{x:.12g}")


def _value(text: str, spec: str) -> Any:
    t = text.strip()
    if not t:
        raise ValueError(f"--set {spec!r}: an empty value")
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    try:
        return _number(t, spec)
    except ValueError:
        return t  # a string (algorithm, backend, dtype, ...); check_card decides


def parse_sets(specs: list[str]) -> dict[str, list]:
    """``--set`` specifications as {card key: values}; several keys make a product grid.

    ``KEY=a:b:n`` gives n evenly spaced values from a to b inclusive (floats; ints when a and b
    are integer literals and every value is whole), ``KEY=v1,v2,...`` the values listed (ints
    when every value is an integer literal, then floats, then strings; ``true``/``false`` are
    booleans). Each key must be a run-card key (:data:`runs.cards.CARD_KEYS`), given once, with
    distinct values of the key's type; a bad spec is a ValueError naming it.
    """
    if isinstance(specs, str):
        specs = [specs]
    grid: dict[str, list] = {}
    for spec in specs:
        if not isinstance(spec, str) or "=" not in spec:
            raise ValueError(f"--set {spec!r}: expected KEY=a:b:n or KEY=v1,v2,...")
        key, _, rhs = spec.partition("=")
        key = key.strip().replace("-", "_")
        if key not in CARD_KEYS:
            raise ValueError(f"--set {spec!r}: unknown key {key!r}; a card takes {', '.join(CARD_KEYS)}")
        if key in grid:
            raise ValueError(f"--set {spec!r}: {key} is already set; give each key once")
        if not rhs.strip():
            raise ValueError(f"--set {spec!r}: no values after '='")
        if ":" in rhs and "," not in rhs:
            parts = rhs.split(":")
            if len(parts) != 3:
                raise ValueError(f"--set {spec!r}: a range is a:b:n (from a to b, n points)")
            a, b = _number(parts[0], spec), _number(parts[1], spec)
            n = _number(parts[2], spec)
            if not isinstance(n, int) or n < 1:
                raise ValueError(f"--set {spec!r}: the number of points n in a:b:n must be a positive integer, "
                                 f"got {parts[2].strip()!r}")
            if n == 1 and a != b:
                raise ValueError(f"--set {spec!r}: one point from a to b needs a == b (or n >= 2)")
            values: list = [_clean(a + (b - a) * i / (n - 1)) if n > 1 else float(a) for i in range(n)]
            if isinstance(a, int) and isinstance(b, int) and all(v.is_integer() for v in values):
                values = [int(v) for v in values]
        else:
            values = [_value(t, spec) for t in rhs.split(",")]
            if any(isinstance(v, float) for v in values):
                values = [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in values]
        for v in values:
            try:
                check_card({"model": _model_of(key), key: v} if _model_of(key) else {key: v})
            except ValueError as e:
                raise ValueError(f"--set {spec!r}: {str(e).removeprefix('card: ')}") from None
        seen = set()
        for v in values:
            if (type(v), v) in seen:
                raise ValueError(f"--set {spec!r}: the value {v!r} is given twice")
            seen.add((type(v), v))
        grid[key] = values
    return grid


def _model_of(key: str) -> str | None:
    """A model that takes the coupling ``key`` (None for a key that is not a coupling)."""
    return next((m for m, keys in MODEL_KEYS.items() if key in keys), None)


def grid_points(grid: dict[str, list]) -> list[dict]:
    """The grid's points in task order: the product of the values, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return re.sub(r"[^A-Za-z0-9.+-]", "_", str(v))


def point_name(params: dict) -> str:
    """The directory name of a grid point, e.g. ``kappa=0.2_L=16`` (``base`` for an empty grid)."""
    return "_".join(f"{k}={_fmt(v)}" for k, v in params.items()) or "base"


def task_seed(seed: int, index: int) -> int:
    """The seed of task ``index``: ``SeedSequence(seed, spawn_key=(index,))``, as a 63-bit int."""
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer for a scan, got seed = {seed!r}")
    from ..backends.numpy_backend import spawn_seed
    return spawn_seed(seed, index)


def point_card(card: dict, params: dict, index: int) -> dict:
    """The run card of one grid point: the base card with the point's keys and the task's seed."""
    pc = dict(card, **params)
    pc["seed"] = task_seed(pc.get("seed", RunSpec.seed), index)
    if isinstance(pc.get("couplings"), str):
        pc["couplings"] = os.path.abspath(pc["couplings"])  # workers may run elsewhere
    return pc


def _check_point(pc: dict, name: str) -> RunSpec:
    """The checks a run makes before any work, without allocating a lattice (the client may be small)."""
    check_card(pc, source=f"grid point {name}")
    try:
        return RunSpec.from_card(pc)
    except (ValueError, TypeError) as e:
        raise type(e)(f"grid point {name}: {e}") from e


# --- threads ----------------------------------------------------------------------------------
def available_cores() -> int:
    """The cores this process may run on (its affinity mask), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def thread_budget(concurrent: int = 1, requested: int | None = None, cores: int | None = None) -> int:
    """Threads per task so that ``concurrent`` tasks on one machine never exceed its cores.

    ``requested`` (e.g. ``scan(threads=...)``) is honoured up to that budget and cut back to
    it with a warning; at least one thread. One run alone on a machine gets every core it may
    use; two concurrent runs on two cores one thread each (OpenMP threads of two processes
    spinning against each other slowed the torch checkerboard 30-fold here).
    """
    cores = available_cores() if cores is None else cores
    budget = max(1, cores // max(1, concurrent))
    if requested is None:
        return budget
    if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
        raise ValueError(f"threads must be a positive integer, got threads={requested!r}")
    if requested > budget:
        warnings.warn(f"threads={requested} x {concurrent} concurrent task(s) would exceed the {cores} core(s); "
                      f"using {budget} thread(s) per task", RuntimeWarning, stacklevel=2)
        return budget
    return requested


def set_threads(n: int, *, torch: bool | None = None, env: bool = True) -> int | None:
    """Set this process's compute threads to ``n``: torch's intra-op pool (when torch is loaded, or
    ``torch=True``) and, with ``env``, OMP/MKL/OpenBLAS for libraries loaded later. Returns torch's
    previous count (None when torch was not touched), for :func:`set_threads` to restore.

    A single run on a shared machine can call ``set_threads(thread_budget(k))`` with k the runs
    sharing it, so that their OpenMP threads do not spin against each other."""
    if env:
        for var in _THREAD_ENV:
            os.environ[var] = str(n)
    if torch is None:
        torch = "torch" in sys.modules
    if not torch:
        return None
    from ..backends.torch_backend import set_torch_threads
    return set_torch_threads(n, load=True)


# --- one task ---------------------------------------------------------------------------------
class _Lock:
    """An exclusive lock on a file beside the ensemble (released when the process dies)."""

    def __init__(self, path: str):
        self.path, self.fd = path, None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no second copy of a task to fear locally
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            import fcntl
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _json_number(x: float) -> float | None:
    return json_ready(float(x))


def _estimates(obs: dict) -> dict:
    return {k: {"value": _json_number(e.value), "error": _json_number(e.error)} for k, e in obs.items()}


def _prepare(pc: dict):
    """The point's prepared run (validated kernel, generator, start) and its resolved card."""
    prep = RunSpec.from_card(pc).prepare()
    return prep, prep.card()


def _run_point(pc: dict, path: str, progress: bool) -> tuple[str, Any]:
    """Run, resume or skip one point; returns (status, observables as Estimates)."""
    from .production import resume, run_to_store
    from .storage import COMMIT, EnsembleStore, remove_uncommitted
    prep, resolved = _prepare(pc)
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, COMMIT)):
        remove_uncommitted(path)  # a task killed before its first commit left nothing committed
    if not os.path.exists(path):
        result = run_to_store(prep, path, save_every=resolved["save_every"],
                              checkpoint_every=resolved["checkpoint_every"], progress=progress)
        return "done", result.observables
    store = EnsembleStore.open(path, "r")
    stored = store.card
    for key in sorted(set(stored) | set(resolved)):
        if key in PHYSICS_KEYS + PLACEMENT_KEYS and str(stored.get(key)) != str(resolved.get(key)):
            if key == "seed":
                raise ValueError(f"{path!r} was made by another grid (stored seed = {stored.get(key)}, this "
                                 f"scan's {resolved.get(key)}): a task's seed follows its place in the grid; "
                                 "rerun the original grid, or use another --out")
            raise ValueError(f"{path!r} holds another run: stored {key} = {stored.get(key)!r}, this scan's "
                             f"{key} = {resolved.get(key)!r}; use another --out or remove it")
    if store.commit_record.get("finished") and store.n_meas >= prep.sweeps:
        series = store.series()
        return "skipped", (prep.analyse(series) if series else {})
    del store
    result = resume(path, sweeps=prep.sweeps, save_every=resolved["save_every"],
                    checkpoint_every=resolved["checkpoint_every"], progress=progress)
    return "resumed", result.observables


def run_point(pc: dict, path: str, *, threads: int | dict | None = None, progress: bool = False,
              lock: bool = True) -> dict:
    """One scan task: the ensemble of run card ``pc`` at ``path``, made, continued or left as it is.

    ``threads``: this task's thread count; a dict {host: concurrent tasks} lets a worker of an
    existing cluster work out its share of its machine's cores. Never raises: a failure is
    reported as ``{"status": "failed", "error": ...}`` so the other points go on.
    """
    from .production import StopRequested
    t0 = time.perf_counter()
    if isinstance(threads, dict):
        threads = thread_budget(threads.get(_worker_host(), 1))
    elif threads is None:
        threads = thread_budget(1)
    # in a worker process the environment is the task's own; in the caller's (serial) it is not
    previous = set_threads(threads, torch=pc.get("backend") == "torch" or None, env=_worker_host() is not None)
    out: dict = {"dir": path, "seed": pc["seed"], "threads": threads}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with _Lock(os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock")) if lock else _NoLock():
                status, obs = _run_point(pc, path, progress)
        out.update(status=status, observables=_estimates(obs))
        messages = _warning_lines(caught)
        if messages:
            out["warnings"] = messages
    except StopRequested as e:
        out.update(status="failed", error=f"stopped: {e}; rerun the scan to continue", stopped=e.status)
    except Exception as e:  # noqa: BLE001 - one point's failure must not stop the scan
        out.update(status="failed", error=f"{type(e).__name__}: {e}")
    finally:
        if previous is not None:
            set_threads(previous, torch=True)
    out["seconds"] = time.perf_counter() - t0
    return out


def _warning_lines(caught) -> list[str]:
    """A task's warnings as a few lines: the worker's malloc setting first, then each distinct
    message once, estimates without an honest error counted on one line."""
    from ..statistics import UnreliableErrorWarning
    lines = []
    if os.environ.get(_SLOW_MALLOC) and _worker_host() is not None:
        lines.append(f"this worker runs with {_SLOW_MALLOC}={os.environ[_SLOW_MALLOC]} (Dask's default), which "
                     "slows sweeps on large lattices up to 2.5x: start the workers with "
                     f"distributed.nanny.pre-spawn-environ.{_SLOW_MALLOC} set to null")
    unreliable = [w for w in caught if issubclass(w.category, UnreliableErrorWarning)]
    if unreliable:
        lines.append(f"{len(unreliable)} estimate(s) have no honest error (e.g. {unreliable[0].message}); "
                     "run longer (sweeps) or measure less often")
    others = list(dict.fromkeys(str(w.message) for w in caught if not issubclass(w.category, UnreliableErrorWarning)))
    lines += others[:5] + ([f"... and {len(others) - 5} more"] if len(others) > 5 else [])
    return lines


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def _worker_host() -> str | None:
    """This worker's host, or None outside a Dask worker (no import of distributed for a serial scan)."""
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import get_worker
        addr = get_worker().address
    except (ImportError, ValueError):
        return None
    return _host_of(addr)


def _host_of(address: str) -> str:
    return address.split("://", 1)[-1].rsplit(":", 1)[0]


# --- the scan ---------------------------------------------------------------------------------
def _parse_scheduler(scheduler: str) -> tuple[str, Any]:
    if scheduler == "serial":
        return "serial", None
    if isinstance(scheduler, str) and scheduler.startswith("local:"):
        n = scheduler[len("local:"):]
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"--scheduler {scheduler!r}: local:N needs a positive number of workers N")
        return "local", int(n)
    if isinstance(scheduler, str) and re.fullmatch(r"(tcp|tls)://[^:/\s]+(:\d+)?", scheduler):
        return "address", scheduler
    raise ValueError(f"--scheduler {scheduler!r}: expected serial, local:N or tcp://HOST:PORT")


def _distributed():
    try:
        import distributed
    except ImportError as e:
        raise DistributedUnavailable("a scan on a Dask scheduler needs distributed: "
                          "pip install 'portable_lattice[distributed]' (or use --scheduler serial)") from e
    return distributed


def scan(card: dict, grid: dict, *, out: str, scheduler: str = "serial", progress: bool = False,
         threads: int | None = None, connect_timeout: float = CONNECT_TIMEOUT) -> dict:
    """Run ``card`` at every point of ``grid`` ({key: values}, :func:`parse_sets`), one task and one
    ensemble directory under ``out`` per point; see the module's docstring.

    ``scheduler``: ``"serial"``, ``"local:N"`` or ``"tcp://HOST:PORT"``. ``threads``: threads per
    task (default: the cores shared out among the concurrent tasks, :func:`thread_budget`).
    ``progress``: a line on stderr per finished point (serial runs also show each run's bar).

    Returns the JSON-ready summary {"scheduler", "seconds", "out", "grid", "points": [{"params",
    "dir", "status" ("done", "skipped", "resumed" or "failed"), "error"?, "observables": {name:
    {"value", "error"}}, "seed", "seconds"}], "failed"} and writes it to ``out/scan.json``.
    """
    from .storage import COMMIT
    kind, arg = _parse_scheduler(scheduler)
    if kind != "serial":
        _distributed()  # installed, or a clear error before any work
    card = check_card(dict(card))
    grid = {k: list(v) for k, v in grid.items()}
    for k, values in grid.items():
        if k not in CARD_KEYS:
            raise ValueError(f"grid key {k!r} is not a run-card key; a card takes {', '.join(CARD_KEYS)}")
        if not values:
            raise ValueError(f"grid key {k!r} has no values")
    points = grid_points(grid)
    names = [point_name(p) for p in points]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"two grid points share the directory name {dup!r}; give distinct values")
    cards = [point_card(card, p, i) for i, p in enumerate(points)]
    for pc, name in zip(cards, names):
        _check_point(pc, name)
    if os.path.exists(os.path.join(out, COMMIT)):
        raise ValueError(f"--out {out!r} is an ensemble, not a folder for a scan's ensembles")
    if threads is not None:
        thread_budget(1, threads)  # a bad value is refused before any work
    client = _connect(_distributed(), arg, connect_timeout) if kind == "address" else None
    try:
        return _scan(kind, arg, scheduler, client, grid, points, names, cards, out, threads, progress)
    finally:
        if client is not None:
            client.close()


def _scan(kind, arg, scheduler, client, grid, points, names, cards, out, threads, progress) -> dict:
    from .storage import atomic_write
    os.makedirs(out, exist_ok=True)
    root = os.path.abspath(out)
    paths = [os.path.join(root, n) for n in names]

    def note(i, res):
        if progress:
            sys.stderr.write(f"scan: {names[i]}: {res['status']}"
                             + (f" ({res['error']})" if res.get("error") else f" in {res['seconds']:.1f} s") + "\n")
            sys.stderr.flush()

    t0 = time.perf_counter()
    results: list[dict | None] = [None] * len(points)
    used_threads: Any
    if kind == "serial":
        used_threads = thread_budget(1, threads)
        for i, (pc, path) in enumerate(zip(cards, paths)):
            results[i] = run_point(pc, path, threads=used_threads, progress=progress)
            note(i, results[i])
            if results[i].get("stopped"):
                break  # Ctrl-C / SIGTERM / a STOP file: the rest waits for the next run of the scan
    else:
        distributed = _distributed()
        if kind == "local":
            used_threads = thread_budget(arg, threads)
            if arg > available_cores():
                warnings.warn(f"local:{arg}: {arg} worker processes on {available_cores()} core(s) "
                              "oversubscribe the machine", RuntimeWarning, stacklevel=2)
            with _worker_environment(used_threads) as env:
                import logging
                with distributed.LocalCluster(n_workers=arg, threads_per_worker=1, processes=True,
                                              dashboard_address=None, env=env, silence_logs=logging.ERROR,
                                              # no dashboard; its HTTP server on a free port, not 8787
                                              scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster, \
                        distributed.Client(cluster) as client:
                    _gather(distributed, client, cards, paths, used_threads, results, note)
        else:
            per_host: dict[str, int] = {}
            for addr, info in client.scheduler_info()["workers"].items():
                host = _host_of(info.get("host") or addr)
                per_host[host] = per_host.get(host, 0) + int(info.get("nthreads", 1))
            used_threads = threads if threads is not None else per_host
            _gather(distributed, client, cards, paths, used_threads, results, note)
    seconds = time.perf_counter() - t0

    summary_points = []
    for i, (p, name) in enumerate(zip(points, names)):
        res = results[i] or {"status": "failed", "error": "not run: the scan stopped before this point"}
        entry = {"params": p, "dir": os.path.join(out, name), "status": res["status"],
                 "family": family_of_card(cards[i]).name}
        if res.get("error"):
            entry["error"] = res["error"]
        entry["observables"] = res.get("observables", {})
        for k in ("seed", "threads", "seconds", "warnings"):
            if k in res:
                entry[k] = res[k]
        summary_points.append(entry)
    summary = {"scheduler": scheduler, "seconds": seconds, "out": out, "grid": grid,
               "threads": used_threads if isinstance(used_threads, int) else None,
               "points": summary_points, "failed": sum(pt["status"] == "failed" for pt in summary_points)}
    try:
        summary["plot"] = _plot(summary, os.path.join(out, PLOT))
    except ImportError:
        summary["plot"] = None
    except Exception as e:  # noqa: BLE001 - a plot must never lose the scan's summary
        summary["plot"] = None
        summary["plot_error"] = f"{type(e).__name__}: {e}"
    atomic_write(os.path.join(root, SUMMARY), (json.dumps(summary, indent=1) + "\n").encode())
    return summary


#: Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which also fixes glibc's mmap
#: threshold at 128 KiB: every field-sized temporary is then mmap'ed and zeroed afresh, and a
#: phi^4 checkerboard sweep at L = 64 x 16 chains ran 2.5x slower here (29 s a task instead of 3.5 s
#: in a local:2 scan on a loaded machine). Our workers start without it.
_SLOW_MALLOC = "MALLOC_TRIM_THRESHOLD_"


class _worker_environment:
    """The environment a LocalCluster's workers start with: thread counts set before any library
    loads (``distributed.nanny.pre-spawn-environ``), no MALLOC_TRIM_THRESHOLD_; the caller's own
    ``os.environ``, which the nanny overwrites when it spawns, is given back afterwards."""

    def __init__(self, threads: int):
        self.env = {var: str(threads) for var in _THREAD_ENV}

    def __enter__(self) -> dict:
        import dask
        self.saved = dict(os.environ)
        os.environ.update(self.env)  # the config yields to variables already set; these must win
        os.environ.pop(_SLOW_MALLOC, None)
        self.config = dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": v
                                       for k, v in dict(self.env, **{_SLOW_MALLOC: None}).items()})
        self.config.__enter__()
        return self.env

    def __exit__(self, *exc):
        self.config.__exit__(*exc)
        os.environ.clear()
        os.environ.update(self.saved)


def _connect(distributed, address: str, timeout: float):
    try:
        return distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError) as e:
        raise SchedulerUnreachable(f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
                                   f"({type(e).__name__}: {e}); is it running, and is the address right?") from None


def _gather(distributed, client, cards, paths, threads, results, note) -> None:
    futures = {client.submit(run_point, pc, path, threads=threads, pure=False, key=f"scan-{i}-{os.urandom(4).hex()}"): i
               for i, (pc, path) in enumerate(zip(cards, paths))}
    for fut in distributed.as_completed(list(futures)):
        i = futures[fut]
        try:
            results[i] = fut.result()
        except Exception as e:  # noqa: BLE001 - a worker lost too often (KilledWorker), a cancelled task
            results[i] = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
        note(i, results[i])


# --- reporting --------------------------------------------------------------------------------
def _main_names(points: list[dict]) -> list[str]:
    have = set().union(*(set(p.get("observables", {})) for p in points)) if points else set()
    names = [n for fam in FAMILIES.values() if any(p.get("family") == fam.name for p in points)
             for n in fam.summary if n in have]
    return list(dict.fromkeys(names))


def _plot(summary: dict, path: str) -> str | None:
    """The main observables against the first scanned numeric key, one line per value of the others."""
    from matplotlib.figure import Figure
    grid = summary["grid"]
    xkey = next((k for k, v in grid.items() if len(v) > 1 and all(isinstance(x, (int, float)) for x in v)), None)
    pts = [p for p in summary["points"] if p["status"] != "failed"]
    names = _main_names(pts)
    if xkey is None or not names or not pts:
        return None
    others = [k for k in grid if k != xkey]
    ncols = min(3, len(names))
    nrows = -(-len(names) // ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(names):]:
        ax.set_visible(False)
    groups: dict[tuple, list] = {}
    for p in pts:
        groups.setdefault(tuple(p["params"][k] for k in others), []).append(p)
    for ax, name in zip(axes, names):
        for label, members in groups.items():
            members = sorted((m for m in members if name in m["observables"]), key=lambda m: m["params"][xkey])
            xs = [m["params"][xkey] for m in members]
            ys = [m["observables"][name]["value"] for m in members]
            es = [m["observables"][name]["error"] for m in members]
            ys = [math.nan if y is None else y for y in ys]
            es = [0.0 if e is None else e for e in es]
            ax.errorbar(xs, ys, yerr=es, marker="o", ms=3, capsize=2,
                        label=", ".join(f"{k}={v}" for k, v in zip(others, label)) or None)
        ax.set_xlabel(xkey)
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if others:
            ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    return path


def print_scan(summary: dict, file=None) -> None:
    """The scan as a table: one row per point, its status and main observables."""
    from ..statistics import format_value
    file = sys.stdout if file is None else file
    pts = summary["points"]
    keys = list(summary.get("grid") or (pts[0]["params"] if pts else {}))
    names = _main_names(pts)
    head = [*keys, "status", *names]
    rows = []
    for p in pts:
        obs = p.get("observables", {})
        cells = [str(p["params"].get(k)) for k in keys] + [p["status"]]
        for n in names:
            o = obs.get(n)
            cells.append("-" if o is None or o["value"] is None else
                         format_value(o["value"], o["error"] if o["error"] is not None else float("nan")))
        rows.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)), file=file)
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)), file=file)
    counts = {s: sum(p["status"] == s for p in pts) for s in ("done", "resumed", "skipped", "failed")}
    print(f"\n{len(pts)} point(s) on {summary['scheduler']} in {summary['seconds']:.1f} s: "
          + ", ".join(f"{n} {s}" for s, n in counts.items() if n), file=file)
    for p in pts:
        if p.get("error"):
            print(f"  {p['dir']}: {p['error']}", file=file)
    warned = [p for p in pts if p.get("warnings")]
    if warned:
        print(f"warnings at {len(warned)} point(s), e.g. {warned[0]['dir']}: {warned[0]['warnings'][0]}", file=file)
    out = summary.get("out")
    if out:
        print(f"summary: {os.path.join(out, SUMMARY)}" + (f"; plot: {summary['plot']}" if summary.get("plot") else ""),
              file=file)
