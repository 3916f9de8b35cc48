"""The scheduler side of a scan: the scheduler named by ``--scheduler``, the connection to it,
and :func:`scan`, which checks the whole grid before any work, hands out the tasks
(:func:`runs.scan.run_point`) and writes the summary.

Named after the scheduler library; imports are absolute, so ``import dask`` in this package
still finds Dask itself.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import warnings
from typing import Any

from ..cards import CARD_KEYS, check_card
from ..plots import plot_scan
from ..report import SCAN_SUMMARY
from ..spec import family_of_card
from ..storage import COMMIT, atomic_write
from .grid import _check_point, grid_points, point_card, point_name
from .tasks import _host_of, run_point
from .threads import _worker_environment, available_cores, thread_budget

#: the figure of the main observables against the scanned parameter, beside the summary
PLOT = "scan.png"
#: seconds to wait for a scheduler given by address before giving up
CONNECT_TIMEOUT = 10.0


class SchedulerUnreachable(ConnectionError):
    """The Dask scheduler named by address did not answer within the connection timeout."""


class DistributedUnavailable(ImportError, ValueError):
    """A Dask scheduler was asked for, and ``distributed`` is not installed (a ValueError too, so
    the command line reports it as a bad choice of --scheduler)."""


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
        import distributed  # optional (the distributed extra); a serial scan never loads it
    except ImportError as e:
        raise DistributedUnavailable("a scan on a Dask scheduler needs distributed: "
                          "pip install 'portable_lattice[distributed]' (or use --scheduler serial)") from e
    return distributed


def _connect(distributed, address: str, timeout: float):
    try:
        return distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError) as e:
        raise SchedulerUnreachable(f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
                                   f"({type(e).__name__}: {e}); is it running, and is the address right?") from None


def scan(card: dict, grid: dict, *, out: str, scheduler: str = "serial", progress: bool = False,
         threads: int | None = None, connect_timeout: float = CONNECT_TIMEOUT) -> dict:
    """Run ``card`` at every point of ``grid`` ({key: values}, :func:`parse_sets`), one task and one
    ensemble directory under ``out`` per point; see the docstring of :mod:`runs.scan`.

    ``scheduler``: ``"serial"``, ``"local:N"`` or ``"tcp://HOST:PORT"``. ``threads``: threads per
    task (default: the cores shared out among the concurrent tasks, :func:`thread_budget`).
    ``progress``: a line on stderr per finished point (serial runs also show each run's bar).

    Returns the JSON-ready summary {"scheduler", "seconds", "out", "grid", "points": [{"params",
    "dir", "status" ("done", "skipped", "resumed" or "failed"), "error"?, "observables": {name:
    {"value", "error"}}, "seed", "seconds"}], "failed"} and writes it to ``out/scan.json``.
    """
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
    os.makedirs(out, exist_ok=True)
    root = os.path.abspath(out)
    paths = [os.path.join(root, n) for n in names]
    note = _progress_note(names, progress)
    t0 = time.perf_counter()
    results: list[dict | None] = [None] * len(points)
    if kind == "serial":
        used_threads = _run_serial(cards, paths, threads, progress, results, note)
    elif kind == "local":
        used_threads = _run_local(_distributed(), arg, cards, paths, threads, results, note)
    else:
        per_host = _tasks_per_host(client)
        used_threads = threads if threads is not None else per_host
        _gather(_distributed(), client, cards, paths, used_threads, results, note)
    seconds = time.perf_counter() - t0
    summary = {"scheduler": scheduler, "seconds": seconds, "out": out, "grid": grid,
               "threads": used_threads if isinstance(used_threads, int) else None,
               "points": _summary_points(points, names, cards, results, out)}
    summary["failed"] = sum(pt["status"] == "failed" for pt in summary["points"])
    try:
        summary["plot"] = plot_scan(summary, os.path.join(out, PLOT))
    except ImportError:
        summary["plot"] = None
    except Exception as e:  # noqa: BLE001 - a plot must never lose the scan's summary
        summary["plot"] = None
        summary["plot_error"] = f"{type(e).__name__}: {e}"
    atomic_write(os.path.join(root, SCAN_SUMMARY), (json.dumps(summary, indent=1) + "\n").encode())
    return summary


def _progress_note(names: list[str], progress: bool):
    """A callback (index, task result) writing one line per finished point on stderr, with ``progress``."""
    def note(i, res):
        if progress:
            sys.stderr.write(f"scan: {names[i]}: {res['status']}"
                             + (f" ({res['error']})" if res.get("error") else f" in {res['seconds']:.1f} s") + "\n")
            sys.stderr.flush()
    return note


def _run_serial(cards, paths, threads, progress, results, note) -> int:
    """The tasks one after the other in this process, until one is stopped; the threads per task."""
    used_threads = thread_budget(1, threads)
    for i, (pc, path) in enumerate(zip(cards, paths)):
        results[i] = run_point(pc, path, threads=used_threads, progress=progress)
        note(i, results[i])
        if results[i].get("stopped"):
            break  # Ctrl-C / SIGTERM / a STOP file: the rest waits for the next run of the scan
    return used_threads


def _run_local(distributed, n, cards, paths, threads, results, note) -> int:
    """The tasks on a LocalCluster of ``n`` single-threaded worker processes, closed at the end."""
    used_threads = thread_budget(n, threads)
    if n > available_cores():
        # stacklevel 3: the warning is attributed to scan(), the entry point, not to a helper
        warnings.warn(f"local:{n}: {n} worker processes on {available_cores()} core(s) "
                      "oversubscribe the machine", RuntimeWarning, stacklevel=3)
    with _worker_environment(used_threads) as env:
        with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                      dashboard_address=None, env=env, silence_logs=logging.ERROR,
                                      # no dashboard; its HTTP server on a free port, not 8787
                                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster, \
                distributed.Client(cluster) as client:
            _gather(distributed, client, cards, paths, used_threads, results, note)
    return used_threads


def _tasks_per_host(client) -> dict[str, int]:
    """{host: concurrent tasks} of an existing cluster, for each task to take its share of its host."""
    per_host: dict[str, int] = {}
    for addr, info in client.scheduler_info()["workers"].items():
        host = _host_of(info.get("host") or addr)
        per_host[host] = per_host.get(host, 0) + int(info.get("nthreads", 1))
    return per_host


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


def _summary_points(points, names, cards, results, out) -> list[dict]:
    """One summary entry per grid point, in grid order; a point never run is failed."""
    entries = []
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
        entries.append(entry)
    return entries

