"""The fault suite's large run: SIGKILLs of stored runs at random moments and inside commits, on
every CPU backend; each run is resumed until it finishes and compared with a run made in one go.

    python benchmarks/fault_suite.py [--kills 100] [--inside 20] [--seed 0] [--sweeps 400]

``--inside`` of the kills are made inside a commit, at one of its stages (the store's fault hook,
``PORTABLE_LATTICE_FAULT=STAGE:N``: the block written, synced, the checkpoint written, the record
written), the others at a random moment of the run (a plain ``kill -9`` after a random delay).
Each killed run is resumed (and killed again, until its share of kills is spent), then finished,
and its data compared byte for byte with the reference run of its backend. Prints one row per
backend and the total; exit status 1 if any store differs.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

STAGES = ("written", "synced", "checkpoint", "recorded")
BACKENDS = ("numpy", "torch", "array_api_strict")


def _args(sweeps):
    return ["--beta", "0.5", "--g", "0.1", "--L", "8", "--chains", "4", "--therm", "10", "--sweeps", str(sweeps),
            "--save-every", "3", "--checkpoint-every", "5", "--seed", "7", "--json"]


def _start(argv, env=None):
    return subprocess.Popen([sys.executable, "-m", "portable_lattice"] + argv, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=dict(os.environ, **(env or {})))


def _data(path):
    from portable_lattice.runs.storage import open_ensemble
    d = open_ensemble(path)
    return ({k: np.asarray(v).tobytes() for k, v in d["series"].items()}, np.asarray(d["fields"]).tobytes(),
            list(d["field_steps"]), d["commit"]["n_meas"])


def _commit_number(path):
    import json
    try:
        with open(os.path.join(path, "commit.json")) as f:
            return int(json.load(f)["number"])
    except OSError:
        return -1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--inside", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sweeps", type=int, default=400)
    ap.add_argument("--per-run", type=int, default=3, help="kills per stored run before it is finished")
    args = ap.parse_args(argv)
    if not 0 <= args.inside <= args.kills or args.kills < 1 or args.per_run < 1:
        raise SystemExit(f"need 0 <= --inside <= --kills, --kills >= 1, --per-run >= 1; got --kills {args.kills} "
                         f"--inside {args.inside} --per-run {args.per_run}")
    rnd = random.Random(args.seed)
    root = tempfile.mkdtemp(prefix="fault-suite-")
    t0 = time.perf_counter()
    try:
        refs = {}
        for b in BACKENDS:
            refs[b] = os.path.join(root, f"ref-{b}")
            p = _start(["simulate", "--backend", b, "--out", refs[b]] + _args(args.sweeps))
            if p.wait() != 0:
                raise SystemExit(f"the reference run on {b} failed: {p.stderr.read().decode()[-400:]}")
        rows = {b: {"kills": 0, "inside": 0, "runs": 0, "identical": 0} for b in BACKENDS}
        done = {"inside": 0, "random": 0}
        want = {"inside": args.inside, "random": args.kills - args.inside}
        run_no = 0
        while sum(done.values()) < args.kills:
            b = BACKENDS[run_no % len(BACKENDS)]
            path = os.path.join(root, f"run-{run_no}")
            run_no += 1
            rows[b]["runs"] += 1
            cmd = ["simulate", "--backend", b, "--out", path] + _args(args.sweeps)
            for _ in range(args.per_run):
                left = {k: want[k] - done[k] for k in want}
                if sum(left.values()) == 0:
                    break
                kind = "inside" if rnd.random() < left["inside"] / sum(left.values()) else "random"
                if kind == "inside":
                    # a commit ahead of the last one: the hook fires in this process
                    current = _commit_number(path)
                    stage, number = rnd.choice(STAGES), current + rnd.randrange(1, 4)
                    p = _start(cmd, {"PORTABLE_LATTICE_FAULT": f"{stage}:{number}"})
                    rc = p.wait()
                else:
                    p = _start(cmd)
                    time.sleep(rnd.uniform(0.5, 5.0))
                    p.send_signal(signal.SIGKILL)
                    rc = p.wait()
                if rc != -signal.SIGKILL:
                    break  # the run finished before the kill: compare it as it is
                done[kind] += 1
                rows[b]["kills"] += 1
                rows[b]["inside"] += kind == "inside"
                if os.path.exists(os.path.join(path, "commit.json")):
                    cmd = ["resume", path, "--json"]
                elif os.path.exists(path):
                    shutil.rmtree(path)  # killed before its first commit: nothing committed, start again
            if os.path.exists(os.path.join(path, "commit.json")):
                p = _start(["resume", path, "--json"])
            else:
                shutil.rmtree(path, ignore_errors=True)
                p = _start(["simulate", "--backend", b, "--out", path] + _args(args.sweeps))
            if p.wait() != 0:
                print(f"run {run_no - 1} ({b}) did not finish: {p.stderr.read().decode()[-300:]}", file=sys.stderr)
                continue
            rows[b]["identical"] += _data(path) == _data(refs[b])
            shutil.rmtree(path)
        print(f"SIGKILLs of stored runs (phi^4 L=8, 4 chains, {args.sweeps} sweeps, a commit every 5 measurements), "
              f"seed {args.seed}; {time.perf_counter() - t0:.0f} s\n")
        print(f"{'backend':18s} {'kills':>6s} {'in a commit':>12s} {'runs':>5s} {'identical after resume':>23s}")
        for b, r in rows.items():
            print(f"{b:18s} {r['kills']:6d} {r['inside']:12d} {r['runs']:5d} {r['identical']:17d} of {r['runs']}")
        tot = {k: sum(r[k] for r in rows.values()) for k in ("kills", "inside", "runs", "identical")}
        print(f"{'total':18s} {tot['kills']:6d} {tot['inside']:12d} {tot['runs']:5d} {tot['identical']:17d} of "
              f"{tot['runs']}")
        return 0 if tot["identical"] == tot["runs"] else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
