"""Output paths are checked before any work: a missing or unwritable folder, a file where a folder
is meant (or the reverse), '-' where no stream is meant, and above all a place inside an ensemble
store's own files, each refused with exit 2 naming the flag; the store stays intact."""
from __future__ import annotations

import os
import time

import pytest

from portable_lattice.cli import main

pytest.importorskip("zarr")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("out") / "e")
    assert main(["simulate", "--beta", "0.5", "--g", "0.1", "--L", "4", "--chains", "2", "--therm", "5", "--sweeps",
                 "20", "--save-every", "10", "--out", path, "--json"]) == 0
    return path


def _refused(argv, capsys, *words):
    t = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return time.perf_counter() - t


def test_export_never_writes_into_a_store_nor_to_a_file_named_dash(store, tmp_path, capsys):
    capsys.readouterr()
    meta = os.path.join(store, "ensemble.zarr", "zarr.json")
    before = open(meta, "rb").read()
    _refused(["export", store, "--pyerrors", meta], capsys, "--pyerrors", "lies inside the ensemble store")
    _refused(["export", store, "--pyerrors", os.path.join(store, "commit.json")], capsys, "inside the ensemble")
    assert open(meta, "rb").read() == before
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        _refused(["export", store, "--pyerrors", "-"], capsys, "--pyerrors -", "give a file name")
        assert not os.path.exists("-")
    finally:
        os.chdir(cwd)
    _refused(["export", store, "--pyerrors", str(tmp_path / "nodir" / "x.json.gz")], capsys, "does not exist")
    _refused(["export", store, "--pyerrors", str(tmp_path)], capsys, "is a folder")
    assert main(["verify", store]) == 0


def test_run_outputs_are_checked_before_the_run(store, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("mine")
    base = ["simulate", "--beta", "0.5", "--g", "0.1", "--L", "4", "--sweeps", "10"]
    _refused(base + ["--out", str(text)], capsys, "exists and is not a folder")
    _refused(base + ["--out", "/proc/x"], capsys, "cannot be written")
    _refused(base + ["--out", os.path.join(store, "ensemble.zarr", "x")], capsys, "inside the ensemble store")
    pytest.importorskip("matplotlib")
    _refused(["plot", store, "--out", str(text)], capsys, "--out", "exists and is not a folder")


@pytest.mark.parametrize("argv", [
    ["upscale", "--k", "3", "--train-configs", "200", "--save-net", "{d}/x.json"],
    ["dcl", "train", "--model", "ising", "--L", "4", "--beta-obs", "0.3", "--net", "{d}/x.pt"],
    ["diffusion", "train", "--L", "4", "--kappa", "0.2", "--lam", "0.02", "--net", "{d}/y.pt"],
    ["pem", "--beta", "0.5", "--g", "0.1", "--save-ensemble", "{d}/ens.pt"],
])
def test_a_missing_folder_for_a_trained_model_is_found_before_training(argv, tmp_path, capsys):
    pytest.importorskip("torch")
    missing = str(tmp_path / "nodir")
    seconds = _refused([a.replace("{d}", missing) for a in argv], capsys, "does not exist")
    assert seconds < 20  # refused up front, not after the training


@pytest.mark.parametrize("extra, says", [([], "nothing was written"), (["--out", "X"], "resume X")])
def test_a_second_ctrl_c_says_what_was_kept(monkeypatch, capsys, extra, says):
    import portable_lattice.cli.simulate as sim

    def interrupted(args, ap):
        raise KeyboardInterrupt
    monkeypatch.setattr(sim, "main", interrupted)
    assert main(["simulate", "--beta", "0.5", "--g", "0.1"] + extra) == 130
    err = capsys.readouterr().err
    assert says in err and ("on disk" not in err or extra)
