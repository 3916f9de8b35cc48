"""Threads of scan tasks: the cores this process may use (:func:`available_cores`), each task's
share of them (:func:`thread_budget`), setting them (:func:`set_threads`), and the environment
a ``local:N`` cluster's workers start with."""
from __future__ import annotations

import os
import sys
import warnings

from ...backends.torch_backend import set_torch_threads

_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

#: Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which also fixes glibc's mmap
#: threshold at 128 KiB: every field-sized temporary is then mmap'ed and zeroed afresh, which
#: makes sweeps on large lattices several times slower. Our workers start without it.
_SLOW_MALLOC = "MALLOC_TRIM_THRESHOLD_"


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
    return set_torch_threads(n, load=True)


class _worker_environment:
    """The environment a LocalCluster's workers start with: thread counts set before any library
    loads (``distributed.nanny.pre-spawn-environ``), no MALLOC_TRIM_THRESHOLD_; the caller's own
    ``os.environ``, which the nanny overwrites when it spawns, is given back afterwards."""

    def __init__(self, threads: int):
        self.env = {var: str(threads) for var in _THREAD_ENV}

    def __enter__(self) -> dict:
        import dask  # optional (the distributed extra): only a local:N scan gets here
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
