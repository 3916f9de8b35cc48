"""Parameter scans (runs/scan/): the grid, per-task seeds, serial == local:2 bit for bit,
idempotent reruns, a killed task finishing on rerun, an unreachable scheduler, the CLI."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("zarr")
from portable_lattice.runs.scan import (SchedulerUnreachable, grid_points, parse_sets, point_card,  # noqa: E402
                                        point_name, run_point, scan, task_seed, thread_budget)
from portable_lattice.runs.storage import open_ensemble  # noqa: E402

CARD = {"model": "phi4", "kappa": 0.2, "lam": 0.02, "L": 4, "chains": 2, "therm": 5, "sweeps": 30,
        "save_every": 5, "checkpoint_every": 10, "seed": 11}
GRID = {"kappa": [0.2, 0.25], "L": [4, 6]}


# --- the grid ---------------------------------------------------------------------------------
def test_parse_sets_ranges_lists_and_products():
    assert parse_sets(["kappa=0.20:0.28:9"]) == {"kappa": [0.2, 0.21, 0.22, 0.23, 0.24, 0.25, 0.26, 0.27, 0.28]}
    assert parse_sets(["L=16,32"]) == {"L": [16, 32]}
    assert all(type(v) is int for v in parse_sets(["L=16,32"])["L"])
    assert parse_sets(["L=8:32:4"]) == {"L": [8, 16, 24, 32]}
    assert parse_sets(["beta=1,2.5"]) == {"beta": [1.0, 2.5]}
    assert parse_sets(["algorithm=hmc,checkerboard"]) == {"algorithm": ["hmc", "checkerboard"]}
    assert parse_sets(["kappa=0.2:0.2:1"]) == {"kappa": [0.2]}
    grid = parse_sets(["kappa=0.2,0.25", "L=4,6"])
    assert list(grid) == ["kappa", "L"]
    points = grid_points(grid)
    assert points == [{"kappa": 0.2, "L": 4}, {"kappa": 0.2, "L": 6}, {"kappa": 0.25, "L": 4},
                      {"kappa": 0.25, "L": 6}]
    assert [point_name(p) for p in points] == ["kappa=0.2_L=4", "kappa=0.2_L=6", "kappa=0.25_L=4", "kappa=0.25_L=6"]
    assert point_name({}) == "base"


@pytest.mark.parametrize("spec, match", [
    ("kappa", "expected KEY="), ("kapa=0.2", "unknown key 'kapa'"), ("kappa=", "no values"),
    ("kappa=0.2:0.3", "a:b:n"), ("kappa=0.2:0.3:0", "positive integer"), ("kappa=0.2:0.3:2.5", "positive integer"),
    ("L=16.5", "L must be int"), ("kappa=a,b", "kappa must be float"), ("L=4,4", "given twice"),
    ("kappa=0.2:0.3:1", "a == b"), ("kappa=0.1,,0.2", "empty value"),
])
def test_parse_sets_errors_name_the_spec(spec, match):
    with pytest.raises(ValueError, match=match) as info:
        parse_sets([spec])
    assert repr(spec) in str(info.value)


def test_parse_sets_refuses_a_key_given_twice():
    with pytest.raises(ValueError, match="'kappa=0.3'.*already set"):
        parse_sets(["kappa=0.2", "kappa=0.3"])


def test_task_seeds_come_from_the_seed_sequence():
    s = np.random.SeedSequence(11, spawn_key=(3,)).generate_state(1, np.uint64)[0]
    assert task_seed(11, 3) == int(s) >> 1
    seeds = [task_seed(11, i) for i in range(50)]
    assert len(set(seeds)) == 50 and all(0 <= x < 2 ** 63 for x in seeds)
    assert point_card(CARD, {"L": 6}, 3) == dict(CARD, L=6, seed=task_seed(11, 3))
    with pytest.raises(ValueError, match="non-negative"):
        task_seed(-1, 0)


def test_thread_budget_never_exceeds_the_cores():
    assert thread_budget(1, cores=8) == 8
    assert thread_budget(2, cores=2) == 1
    assert thread_budget(3, cores=8) == 2
    assert thread_budget(4, cores=2) == 1  # never below one
    assert thread_budget(2, requested=2, cores=8) == 2
    with pytest.warns(RuntimeWarning, match="exceed"):
        assert thread_budget(2, requested=4, cores=4) == 2
    with pytest.raises(ValueError, match="threads"):
        thread_budget(1, requested=0)


# --- scans ------------------------------------------------------------------------------------
def _arrays(path):
    e = open_ensemble(path)
    return e["card"], e["series"], e["fields"], e["field_steps"]


def _same_store(a, b):
    ca, sa, fa, ta = _arrays(a)
    cb, sb, fb, tb = _arrays(b)
    assert ca == cb
    assert sorted(sa) == sorted(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype
        np.testing.assert_array_equal(sa[name], sb[name], err_msg=name)
    assert fa.dtype == fb.dtype and fa.shape == fb.shape
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(ta, tb)


def _files(root):
    """relative path -> (mtime_ns, bytes) of every file of every ensemble under ``root``."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)
            if rel in ("scan.json", "scan.png") or f.endswith(".lock"):
                continue
            with open(p, "rb") as fh:
                out[rel] = (os.stat(p).st_mtime_ns, fh.read())
    return out


@pytest.fixture(scope="module")
def serial_scan(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("serial") / "scan")
    return out, scan(CARD, GRID, out=out, scheduler="serial")


def test_serial_scan_writes_one_ensemble_per_point(serial_scan):
    out, summary = serial_scan
    assert summary["failed"] == 0 and summary["scheduler"] == "serial"
    assert [p["status"] for p in summary["points"]] == ["done"] * 4
    assert [p["params"] for p in summary["points"]] == grid_points(GRID)
    for i, p in enumerate(summary["points"]):
        assert p["dir"] == os.path.join(out, point_name(p["params"]))
        card = open_ensemble(p["dir"])["card"]
        assert card["seed"] == p["seed"] == task_seed(CARD["seed"], i)
        assert card["kappa"] == p["params"]["kappa"] and card["L"] == p["params"]["L"]
        assert {"m_abs", "chi", "action"} <= set(p["observables"])
        assert set(p["observables"]["chi"]) == {"value", "error"}
    with open(os.path.join(out, "scan.json")) as f:
        assert json.load(f) == json.loads(json.dumps(summary))


def test_local2_scan_is_bit_identical_to_the_serial_scan(serial_scan, tmp_path):
    pytest.importorskip("distributed")
    out_serial, serial = serial_scan
    out = str(tmp_path / "local")
    environ = dict(os.environ)
    summary = scan(CARD, GRID, out=out, scheduler="local:2")
    assert summary["failed"] == 0 and [p["status"] for p in summary["points"]] == ["done"] * 4
    assert dict(os.environ) == environ  # the nannies' pre-spawn settings do not leak into the caller
    # workers start without Dask's MALLOC_TRIM_THRESHOLD_ (2.5x slower sweeps on large lattices)
    assert not any("MALLOC" in w for p in summary["points"] for w in p.get("warnings", []))
    # each worker gets its share of the cores: 2 workers x threads <= cores
    assert all(p["threads"] * 2 <= max(2, len(os.sched_getaffinity(0))) for p in summary["points"])
    for p, q in zip(serial["points"], summary["points"]):
        _same_store(p["dir"], q["dir"])
        assert p["observables"] == q["observables"]


def test_rerun_of_a_finished_scan_does_nothing(serial_scan):
    out, _ = serial_scan
    before = _files(out)
    again = scan(CARD, GRID, out=out, scheduler="serial")
    assert [p["status"] for p in again["points"]] == ["skipped"] * 4
    assert _files(out) == before
    assert [p["observables"] for p in again["points"]] == [p["observables"] for p in serial_scan[1]["points"]]


def test_a_partial_point_resumes_to_the_same_bytes(serial_scan, tmp_path):
    out_ref, ref = serial_scan
    out = str(tmp_path / "partial")
    os.makedirs(out)
    # point 1 stopped after 10 of 30 measurements, with uncommitted rows after its last commit
    pc = point_card(CARD, grid_points(GRID)[1], 1)
    path = os.path.join(out, point_name(grid_points(GRID)[1]))
    first = run_point(dict(pc, sweeps=10), path)
    assert first["status"] == "done", first
    from portable_lattice.runs.storage import EnsembleStore
    store = EnsembleStore.open(path, "r+")
    store.append({name: np.full((3, CARD["chains"]), 9.0) for name in store.series()})
    store.close()  # the task dies: the operating system drops its writer lock
    # and point 2's task was killed before its first commit: a bare directory
    os.makedirs(os.path.join(out, point_name(grid_points(GRID)[2]), "ensemble.zarr"))
    summary = scan(CARD, GRID, out=out, scheduler="serial")
    assert [p["status"] for p in summary["points"]] == ["done", "resumed", "done", "done"]
    for p, q in zip(ref["points"], summary["points"]):
        _same_store(p["dir"], q["dir"])
        assert p["observables"] == q["observables"]


def _worker_holding(lock_name):
    """The pid of this process's child (a Dask worker) that holds the lock file ``lock_name``."""
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            if int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]) != os.getpid():
                continue
            fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if any(f.endswith(lock_name) for f in fds):
            return pid
    return None


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="finds the worker through /proc")
def test_a_killed_worker_is_replaced_and_its_task_resumes_to_the_same_bytes(tmp_path):
    """SIGKILL the local:2 worker running a point mid-run: Dask runs the task again, it continues
    from the point's last commit, and the scan ends with the bytes of an uninterrupted serial scan."""
    pytest.importorskip("distributed")
    card = dict(CARD, L=8, chains=4, sweeps=400, save_every=20, checkpoint_every=20)
    grid = {"kappa": [0.22]}
    ref = scan(card, grid, out=str(tmp_path / "ref"), scheduler="serial")
    out = tmp_path / "killed"
    name = point_name(grid_points(grid)[0])
    done = {}
    runner = threading.Thread(target=lambda: done.update(s=scan(card, grid, out=str(out), scheduler="local:2")))
    runner.start()
    killed_at, deadline = None, time.monotonic() + 90
    while runner.is_alive() and killed_at is None and time.monotonic() < deadline:
        time.sleep(0.01)
        try:
            with open(out / name / "commit.json") as f:
                rec = json.load(f)
        except (OSError, ValueError):
            continue
        if rec.get("n_meas", 0) >= 60 and not rec.get("finished"):
            pid = _worker_holding(f".{name}.lock")
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed_at = rec["n_meas"]
    runner.join(120)
    assert not runner.is_alive()
    if killed_at is None:
        pytest.skip("the task finished before its worker could be killed")
    point = done["s"]["points"][0]
    assert point["status"] == "resumed", point
    _same_store(ref["points"][0]["dir"], point["dir"])
    assert point["observables"] == ref["points"][0]["observables"]


def test_a_foreign_directory_fails_its_point_only(tmp_path):
    out = tmp_path / "scan"
    (out / "kappa=0.25").mkdir(parents=True)
    (out / "kappa=0.25" / "notes.txt").write_text("mine")
    summary = scan(dict(CARD, sweeps=10), {"kappa": [0.2, 0.25]}, out=str(out))
    assert [p["status"] for p in summary["points"]] == ["done", "failed"] and summary["failed"] == 1
    assert "holds no ensemble" in summary["points"][1]["error"]
    assert (out / "kappa=0.25" / "notes.txt").read_text() == "mine"


def test_a_changed_card_is_not_mistaken_for_a_finished_point(serial_scan):
    out, _ = serial_scan
    summary = scan(dict(CARD, lam=0.03), {"kappa": [0.2], "L": [4]}, out=out)
    assert summary["points"][0]["status"] == "failed"
    assert "lam" in summary["points"][0]["error"]


def test_bad_scheduler_and_grid_are_refused_before_any_work(tmp_path):
    out = tmp_path / "nothing"
    for sched in ("local:0", "local:x", "udp://x:1", "threads"):
        with pytest.raises(ValueError, match="--scheduler"):
            scan(CARD, GRID, out=str(out), scheduler=sched)
    with pytest.raises(ValueError, match="lam must be non-negative"):
        scan(CARD, {"lam": [0.02, -1.0]}, out=str(out))
    with pytest.raises(ValueError, match="not a run-card key"):
        scan(CARD, {"kapa": [0.2]}, out=str(out))
    assert not out.exists()


def test_a_dask_scheduler_without_distributed_is_a_clear_error(tmp_path, monkeypatch):
    from portable_lattice.runs.scan import DistributedUnavailable
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    with pytest.raises(DistributedUnavailable, match=r"pip install 'portable_lattice\[distributed\]'"):
        scan(CARD, GRID, out=str(tmp_path / "x"), scheduler="local:2")
    assert not (tmp_path / "x").exists()


def test_unreachable_scheduler_fails_clearly_within_30_seconds(tmp_path):
    pytest.importorskip("distributed")
    out = tmp_path / "unreached"
    t0 = time.monotonic()
    with pytest.raises(SchedulerUnreachable, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:1"):
        scan(CARD, GRID, out=str(out), scheduler="tcp://127.0.0.1:1")
    assert time.monotonic() - t0 < 30
    assert not out.exists()


def test_cli_scan_end_to_end_json(tmp_path):
    card = tmp_path / "card.toml"
    card.write_text('model = "phi4"\nkappa = 0.2\nlam = 0.02\nL = 4\nchains = 2\ntherm = 5\nsweeps = 20\n'
                    'checkpoint_every = 10\nseed = 5\n')
    out = tmp_path / "scan"
    argv = [sys.executable, "-m", "portable_lattice", "scan", str(card), "--set", "kappa=0.2:0.25:2", "--out", str(out)]
    p = subprocess.run(argv + ["--json"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)  # nothing but the JSON on stdout
    assert [pt["params"] for pt in summary["points"]] == [{"kappa": 0.2}, {"kappa": 0.25}]
    assert [pt["status"] for pt in summary["points"]] == ["done", "done"] and summary["failed"] == 0
    assert json.loads((out / "scan.json").read_text())["points"] == summary["points"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)  # the table; both points skipped
    assert p.returncode == 0, p.stderr
    assert "2 skipped" in p.stdout and "kappa" in p.stdout.splitlines()[0]
    p = subprocess.run(argv[:-4] + ["--set", "kapa=1", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "'kapa=1'" in p.stderr


# --- the torch.compile switch is per run --------------------------------------------------------
def test_compile_switch_is_per_thread():
    pytest.importorskip("torch")
    from portable_lattice.backends.torch_backend import compile_enabled, compile_for_run, use_compile
    previous = use_compile(False)
    try:
        inside, seen = threading.Event(), {}

        def compiled_run():
            with compile_for_run(True):
                seen["run"] = compile_enabled()
                inside.set()
                time.sleep(0.05)
            seen["after"] = compile_enabled()

        t = threading.Thread(target=compiled_run)
        t.start()
        inside.wait(5)
        seen["other"] = compile_enabled()  # another run in the same process, at the same time
        t.join()
        assert seen == {"run": True, "other": False, "after": False}
        use_compile(True)  # the process-wide switch still works, and a run may turn it off for itself
        assert compile_enabled()
        with compile_for_run(False):
            assert not compile_enabled()
        assert compile_enabled()
    finally:
        use_compile(previous)
