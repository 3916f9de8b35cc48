"""The writer lock: one writer per store, refused at once with the holder named; readers never
blocked; a dead writer's lock taken over; the store unchanged by a refused writer."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from portable_lattice import simulate
from portable_lattice.runs.production import resume
from portable_lattice.runs.storage import EnsembleStore, StoreLockedError, open_ensemble, remove_uncommitted
from portable_lattice.theories import Phi4

pytest.importorskip("zarr")
# short runs: their error bars are not the point here
pytestmark = pytest.mark.filterwarnings("ignore::portable_lattice.statistics.UnreliableErrorWarning")
THEORY = Phi4.from_beta_g(0.6, 0.1)
RUN = dict(L=4, chains=2, therm=5, seed=3, progress=False, algorithm="checkerboard", checkpoint_every=5)


def _stored(path, sweeps=10):
    simulate(THEORY, sweeps=sweeps, out=path, **RUN)
    return path


def test_a_second_writer_in_the_same_process_is_refused_and_the_first_goes_on(tmp_path):
    path = _stored(str(tmp_path / "e"))
    before = open_ensemble(path)
    with EnsembleStore.open(path, "r+") as writer:
        for _ in range(20):
            with pytest.raises(StoreLockedError, match=f"pid {os.getpid()} on host"):
                EnsembleStore.open(path, "r+")
            with pytest.raises(StoreLockedError, match="being written by another process"):
                resume(path, sweeps=20, progress=False)
        reader = open_ensemble(path)  # readers take no lock
        assert reader["commit"] == before["commit"]
        assert writer.n_meas == 10
    res = resume(path, sweeps=20, progress=False)  # released on close
    assert res.series["m"].shape[0] == 20


def test_create_takes_the_lock_and_remove_uncommitted_respects_it(tmp_path):
    path = str(tmp_path / "new")
    store = EnsembleStore.create(path, {"model": "phi4"}, "h", {}, (2, 3, 3), "float64")
    with pytest.raises(StoreLockedError):
        remove_uncommitted(path)  # a live writer before its first commit
    assert os.path.isdir(path)
    store.close()
    remove_uncommitted(path)
    assert not os.path.exists(path)


_HOLDER = textwrap.dedent("""
    import sys, time
    from portable_lattice.runs.storage import EnsembleStore
    store = EnsembleStore.open(sys.argv[1], "r+")
    print("locked", flush=True)
    time.sleep(60)
""")


def _hold(path):
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, path], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_another_process_is_named_and_its_death_frees_the_store(tmp_path, capsys):
    from portable_lattice.cli import main
    path = _stored(str(tmp_path / "e"))
    before = open_ensemble(path)
    proc = _hold(path)
    try:
        with pytest.raises(SystemExit) as e:
            main(["resume", path, "--sweeps", "20"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and f"pid {proc.pid}" in err and "Traceback" not in err
        after = open_ensemble(path)
        assert after["commit"] == before["commit"] and np.array_equal(after["series"]["m"], before["series"]["m"])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert os.path.exists(os.path.join(path, "writer.lock"))  # the dead holder's file: no lock
    res = resume(path, sweeps=20, progress=False)
    assert res.series["m"].shape[0] == 20


def test_two_resumes_started_together_one_runs_one_is_refused(tmp_path):
    """The reported corruption: two `resume DIR` a moment apart both ran and interleaved their
    blocks. Now exactly one runs, and the store equals an uninterrupted run's."""
    # long enough (a few seconds) that the second copy's start-up cannot miss the first's run
    ref = _stored(str(tmp_path / "ref"), sweeps=1000)
    path = _stored(str(tmp_path / "e"))
    cmd = [sys.executable, "-m", "portable_lattice", "resume", path, "--sweeps", "1000", "--json"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(0.01)
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], (codes, [o[1][-300:] for o in outs])
    refused = next(o[1] for p, o in zip(procs, outs) if p.returncode == 2)
    assert "being written by another process" in refused and "Traceback" not in refused
    a, b = open_ensemble(ref), open_ensemble(path)
    for name in a["series"]:
        assert np.array_equal(a["series"][name], b["series"][name]), name


def test_the_throughput_after_resume_counts_only_the_resumed_steps(tmp_path):
    path = _stored(str(tmp_path / "e"), sweeps=10)
    res = resume(path, sweeps=20, progress=False)
    assert res.steps == 5 + 20 and res.steps_timed == 10
    assert res.site_updates_per_second == pytest.approx(16 * 2 * 10 / res.seconds)
