"""One scan task (:func:`run_point`): a grid point's ensemble made, continued or left as it is,
under a lock so that two copies of one task never write at once. It runs on a Dask worker or in
the caller's process, and reports a failure instead of raising it."""
from __future__ import annotations

import os
import sys
import time
import warnings
from typing import Any

from ..._json import json_ready
from ...statistics import UnreliableErrorWarning
from ..cards import PHYSICS_KEYS, PLACEMENT_KEYS
from ..production import StopRequested, resume, run_to_store
from ..spec import RunSpec
from ..storage import COMMIT, EnsembleStore, remove_uncommitted
from .threads import _SLOW_MALLOC, set_threads, thread_budget

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no second copy of a task to fear locally
    fcntl = None


class _Lock:
    """An exclusive lock on a file beside the ensemble (released when the process dies)."""

    def __init__(self, path: str):
        self.path, self.fd = path, None

    def __enter__(self):
        if fcntl is None:  # pragma: no cover - Windows
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


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


def _worker_host() -> str | None:
    """This worker's host, or None outside a Dask worker (no import of distributed for a serial scan)."""
    if "distributed" not in sys.modules:
        return None
    try:
        # lazy: distributed is optional; outside a worker it is imported already or not at all
        from distributed import get_worker
        addr = get_worker().address
    except (ImportError, ValueError):
        return None
    return _host_of(addr)


def _host_of(address: str) -> str:
    return address.split("://", 1)[-1].rsplit(":", 1)[0]
