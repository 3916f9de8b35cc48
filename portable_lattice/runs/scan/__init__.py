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

The package, by job: :mod:`.grid` (the ``--set`` grid, names, seeds and cards of its points),
:mod:`.threads` (each task's share of the cores), :mod:`.tasks` (one task, :func:`run_point`)
and :mod:`.dask` (the schedulers and :func:`scan`); the table is :func:`runs.report.print_scan`
and the figure :func:`runs.plots.plot_scan`.
"""
from ..report import print_scan
from .dask import DistributedUnavailable, SchedulerUnreachable, scan
from .grid import grid_points, parse_sets, point_card, point_name, task_seed
from .tasks import run_point
from .threads import available_cores, set_threads, thread_budget

__all__ = ["parse_sets", "scan", "print_scan", "grid_points", "point_card", "point_name", "task_seed",
           "thread_budget", "set_threads", "available_cores", "run_point", "SchedulerUnreachable",
           "DistributedUnavailable"]
