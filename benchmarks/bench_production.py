"""Production-run overheads: storage, the cost of a commit, scale-out of a scan.

    python benchmarks/bench_production.py [--sweeps 300] [--repeats 7] [--dir TMP] [--skip-scan]

(a) storage overhead: phi^4 checkerboard Metropolis (beta = 0.5, g = 0.1,
    step 1.2) at L = 64, 64 chains, float64, on NumPy, measuring every sweep:
    ``simulate(...)`` in memory against the same call with ``out=`` (every 10th
    configuration saved, a commit every 100 measurements), timed alternately in
    this one run of the script; the ratio is the median over adjacent pairs
    (target: at most 1.10).
(b) the cost of one commit: the same stored run with its ``EnsembleStore.append``
    (zarr writes, zstd + CRC32C) and ``EnsembleStore.commit`` (checkpoint .npz and
    commit record, each fsynced) timed per block, beside the time the block's
    sweeps take. (How long a resume takes against a straight run says nothing:
    a resume is a straight run from the last commit.)
(c) scale-out: a 4-point scan of the same card at L = 32 over beta, serially and on
    ``local:2`` (``runs.scan.scan``), in a child process with glibc's default
    allocator (the workers cannot inherit the pinned one); skipped with a note when
    that module is missing or the scan fails.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings

from bench_spine import pin_allocator  # beside this script: on sys.path when it is run

from portable_lattice import Phi4, simulate
from portable_lattice.runs import storage

RUN = dict(L=64, algorithm="checkerboard", backend="numpy", chains=64, therm=20, every=1, seed=1, step=1.2)
THEORY = (0.5, 0.1)
SAVE_EVERY, CHECKPOINT_EVERY = 10, 100


def _plain(sweeps):
    return simulate(Phi4.from_beta_g(*THEORY), sweeps=sweeps, progress=False, **RUN)


def _stored(sweeps, root, checkpoint_every=CHECKPOINT_EVERY):
    out = tempfile.mkdtemp(prefix="bench-store-", dir=root)
    shutil.rmtree(out)  # the run creates it
    return simulate(Phi4.from_beta_g(*THEORY), sweeps=sweeps, progress=False, out=out, save_every=SAVE_EVERY,
                    checkpoint_every=checkpoint_every, **RUN), out


def _timed(fn):
    t = time.perf_counter()
    r = fn()
    return time.perf_counter() - t, r


def _du(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def storage_overhead(sweeps, repeats, root):
    _plain(10)  # warm-up: imports, allocations
    shutil.rmtree(_stored(10, root)[1])
    plain, stored, ratios, size = [], [], [], 0
    for i in range(repeats):
        # alternate which goes first, so drift of this shared machine falls on both
        order = ("plain", "stored") if i % 2 == 0 else ("stored", "plain")
        t = {}
        for which in order:
            if which == "plain":
                t["plain"], _ = _timed(lambda: _plain(sweeps))
            else:
                t["stored"], (_, out) = _timed(lambda: _stored(sweeps, root))
                size = _du(out)
                shutil.rmtree(out)
        plain.append(t["plain"])
        stored.append(t["stored"])
        ratios.append(t["stored"] / t["plain"])
    return plain, stored, sorted(ratios), size


def commit_cost(sweeps, root):
    """Per block: the append (zarr) and the commit (checkpoint + record) of one stored run."""
    spent = {"append": [], "commit": []}
    # append is the format's (the zarr store's own method), commit the shared protocol's (with the
    # format's fsync of the block's chunks before the record)
    owners = {"append": storage.FORMATS["zarr"], "commit": storage.EnsembleStore}
    originals = {name: getattr(owners[name], name) for name in spent}

    def timing(name):
        def wrapper(self, *a, **k):
            t = time.perf_counter()
            try:
                return originals[name](self, *a, **k)
            finally:
                spent[name].append(time.perf_counter() - t)
        return wrapper

    for name in spent:
        setattr(owners[name], name, timing(name))
    try:
        total, (_, out) = _timed(lambda: _stored(sweeps, root))
    finally:
        for name, fn in originals.items():
            setattr(owners[name], name, fn)
    shutil.rmtree(out)
    return total, spent


def scale_out(sweeps, root, repeats):
    try:
        from portable_lattice.runs.scan import parse_sets, scan
    except Exception as e:  # noqa: BLE001 - the module is optional here
        return f"skipped: runs.scan is not available ({type(e).__name__}: {e})"
    card = {"model": "phi4", "beta": 0.5, "g": 0.1, "L": 32, "algorithm": "checkerboard", "step": 1.2,
            "chains": 32, "therm": 100, "sweeps": sweeps, "seed": 1, "checkpoint_every": 100}
    times, outs = {"serial": [], "local:2": []}, {}
    try:
        grid = parse_sets(["beta=0.45:0.6:4"])
        for i in range(repeats):
            for scheduler in (("serial", "local:2") if i % 2 == 0 else ("local:2", "serial")):
                shutil.rmtree(outs.get(scheduler, ""), ignore_errors=True)
                outs[scheduler] = tempfile.mkdtemp(prefix=f"bench-scan-{scheduler.replace(':', '')}-", dir=root)
                t0 = time.perf_counter()
                summary = scan(card, grid, out=outs[scheduler], scheduler=scheduler)
                times[scheduler].append(time.perf_counter() - t0)
                if summary.get("failed"):
                    raise RuntimeError(f"{summary['failed']} point(s) failed on {scheduler}")
        same = _same_scan(outs["serial"], outs["local:2"])
    except Exception as e:  # noqa: BLE001 - report and go on
        return f"skipped: the scan failed ({type(e).__name__}: {e})"
    finally:
        for path in outs.values():
            shutil.rmtree(path, ignore_errors=True)
    return {k: min(v) for k, v in times.items()}, same


def _same_scan(a, b):
    import numpy as np
    names = sorted(d for d in os.listdir(a) if os.path.isdir(os.path.join(a, d)))
    if names != sorted(d for d in os.listdir(b) if os.path.isdir(os.path.join(b, d))):
        return False
    for name in names:
        x, y = storage.open_ensemble(os.path.join(a, name)), storage.open_ensemble(os.path.join(b, name))
        if x["series"].keys() != y["series"].keys():
            return False
        if not all(np.array_equal(x["series"][k], y["series"][k]) for k in x["series"]):
            return False
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweeps", type=int, default=300, help="measurements per run in (a) and (b) (default 300)")
    ap.add_argument("--repeats", type=int, default=7, help="alternating pairs in (a) (default 7)")
    ap.add_argument("--scan-sweeps", type=int, default=2000, help="measurements per scan point in (c)")
    ap.add_argument("--dir", default=None, help="where the stores go (default: the system's temporary folder)")
    ap.add_argument("--scan-repeats", type=int, default=1, help="alternating scans of each kind in (c), best taken")
    ap.add_argument("--skip-scan", action="store_true")
    ap.add_argument("--scan-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--malloc", choices=["tuned", "default"], default="tuned")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    if args.scan_only:
        # a process of its own with glibc's default allocator: the Dask workers cannot inherit the
        # pinned one, so the serial scan must not have it either
        root = tempfile.mkdtemp(prefix="bench-production-", dir=args.dir)
        try:
            _print_scan(scale_out(args.scan_sweeps, root, args.scan_repeats))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    allocator = pin_allocator(args.malloc)
    root = tempfile.mkdtemp(prefix="bench-production-", dir=args.dir)
    try:
        _main(args, root, allocator)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _main(args, root, allocator):
    L, chains = RUN["L"], RUN["chains"]
    print(f"phi^4 beta={THEORY[0]} g={THEORY[1]} checkerboard step={RUN['step']} L={L} chains={chains} float64 on "
          f"{RUN['backend']}, therm={RUN['therm']}, {args.sweeps} measurements (one per sweep); stored runs save "
          f"every {SAVE_EVERY}th configuration and commit every {CHECKPOINT_EVERY} measurements")
    print(f"stores under {root}; {os.cpu_count()} CPUs (shared); malloc {allocator}; python {sys.version.split()[0]}")
    print()

    plain, stored, ratios, size = storage_overhead(args.sweeps, args.repeats, root)
    med = statistics.median
    print("(a) storage overhead")
    print(f"{'run':28s} {'best s':>8s} {'median s':>9s}")
    print(f"{'in memory':28s} {min(plain):8.2f} {med(plain):9.2f}")
    print(f"{'out= (zarr store)':28s} {min(stored):8.2f} {med(stored):9.2f}")
    print(f"ratio stored / in memory: median {med(ratios):.3f} (adjacent pairs {ratios[0]:.3f}-{ratios[-1]:.3f}), "
          f"best/best {min(stored) / min(plain):.3f}; target <= 1.10  -> "
          f"{'met' if med(ratios) <= 1.10 else 'NOT met'}")
    print(f"store size {size / 2**20:.1f} MiB ({args.sweeps // SAVE_EVERY} configurations of "
          f"{chains * L * L * 8 / 2**20:.1f} MiB raw)")
    print()

    total, spent = commit_cost(args.sweeps, root)
    blocks = len(spent["append"])
    sweep_time = min(plain) / (args.sweeps + RUN["therm"])
    print("(b) cost of a commit, per block of "
          f"{CHECKPOINT_EVERY} measurements ({CHECKPOINT_EVERY // SAVE_EVERY} configurations saved per block)")
    print(f"{'part':44s} {'ms per block':>13s}")
    print(f"{'append: zarr writes (compress + CRC32C)':44s} {1e3 * med(spent['append']):13.1f}")
    print(f"{'commit: chunks fsynced, checkpoint, record':44s} {1e3 * med(spent['commit'][1:]):13.1f}")
    print(f"{'the block sweeps and measurements (in memory)':44s} {1e3 * sweep_time * CHECKPOINT_EVERY:13.1f}")
    print(f"{blocks} blocks, {len(spent['commit'])} commits (the start and the end of thermalisation included); "
          f"the run took {total:.2f} s")
    print()

    print("(c) scale-out: a 4-point scan (beta = 0.45..0.6), L=32, 32 chains, "
          f"{args.scan_sweeps} measurements per point, in a process of its own (glibc's default malloc, as "
          f"the workers have); best of {args.scan_repeats}")
    if args.skip_scan:
        print("skipped (--skip-scan)")
        return
    sys.stdout.flush()
    import subprocess
    child = [sys.executable, os.path.abspath(__file__), "--scan-only", "--scan-sweeps", str(args.scan_sweeps),
             "--scan-repeats", str(args.scan_repeats)] + (["--dir", args.dir] if args.dir else [])
    done = subprocess.run(child, capture_output=True, text=True)
    print(done.stdout, end="")
    if done.returncode != 0:
        print(f"skipped: the scan's process failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")


def _print_scan(result):
    if isinstance(result, str):
        print(result)
        return
    times, same = result
    print(f"{'scheduler':12s} {'seconds':>8s}")
    for k, v in times.items():
        print(f"{k:12s} {v:8.2f}")
    speedup = times["serial"] / times["local:2"]
    print(f"speedup local:2 / serial: {speedup:.2f}x (target >= 1.6x)  -> {'met' if speedup >= 1.6 else 'NOT met'}; "
          f"stores of the two scans bit-identical: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
