"""A writer SIGKILLed inside a commit, at each of its stages (a hook in the commit: the block
written, the block synced, the checkpoint written, the record written), on every CPU backend:
after `resume` the store holds the same bytes of data as a run made in one go."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from portable_lattice.runs.storage import open_ensemble

pytest.importorskip("zarr")
pytestmark = pytest.mark.filterwarnings("ignore::portable_lattice.statistics.UnreliableErrorWarning")

STAGES = ("written", "synced", "checkpoint", "recorded")
ARGS = ["--beta", "0.5", "--g", "0.1", "--L", "4", "--chains", "2", "--therm", "5", "--sweeps", "30",
        "--save-every", "3", "--checkpoint-every", "5", "--seed", "11", "--json"]


def _cli(argv, env=None):
    return subprocess.run([sys.executable, "-m", "portable_lattice"] + argv, capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=300)


def _same_data(a, b):
    da, db = open_ensemble(a), open_ensemble(b)
    assert da["commit"]["n_meas"] == db["commit"]["n_meas"] and da["commit"]["finished"] and db["commit"]["finished"]
    for name in da["series"]:
        assert np.asarray(da["series"][name]).tobytes() == np.asarray(db["series"][name]).tobytes(), name
    assert np.asarray(da["fields"]).tobytes() == np.asarray(db["fields"]).tobytes()
    assert list(da["field_steps"]) == list(db["field_steps"])


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    out = {}
    for backend in ("numpy", "torch", "array_api_strict"):
        path = str(root / backend)
        assert _cli(["simulate", "--backend", backend, "--out", path] + ARGS).returncode == 0
        out[backend] = path
    return out


@pytest.mark.parametrize("backend", ["numpy", "torch", "array_api_strict"])
@pytest.mark.parametrize("stage", STAGES)
def test_a_kill_inside_a_commit_then_resume_gives_the_same_data(stage, backend, references, tmp_path):
    if backend == "torch":
        pytest.importorskip("torch")
    path = str(tmp_path / "e")
    # commit 3: the second block of measurements (commit 0 is the start, 1 the end of thermalisation)
    killed = _cli(["simulate", "--backend", backend, "--out", path] + ARGS, {"PORTABLE_LATTICE_FAULT": f"{stage}:3"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-500:]
    first = open_ensemble(path)["commit"]  # a reader sees the last commit, whole
    assert first["number"] == (3 if stage == "recorded" else 2)
    assert _cli(["verify", path]).returncode == 0
    resumed = _cli(["resume", path, "--json"])
    assert resumed.returncode == 0, resumed.stderr[-500:]
    _same_data(references[backend], path)
