import json
import subprocess
import sys

import numpy as np
import pytest

from portable_lattice.cli import main


def test_json_output_schema(capsys):
    assert main(["simulate", "--kappa", "0.21", "--lam", "0.022", "--L", "8", "--algorithm", "hmc",
                 "--chains", "2", "--therm", "10", "--sweeps", "40", "--json", "--seed", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("backend", "device", "dtype", "model", "algorithm", "chains", "sweeps", "acceptance",
                "observables", "timing"):
        assert key in out
    assert out["model"]["kappa"] == 0.21 and out["sweeps"] == 40 and out["chains"] == 2
    for name in ("phi2", "m", "m_abs", "m2", "chi", "binder", "action"):
        assert {"value", "error", "tau_int"} <= set(out["observables"][name])
    assert out["timing"]["site_updates_per_second"] > 0
    # the JSON reproduces its run: sizes, resolved knobs, library version
    assert out["therm"] == 10 and out["knobs"] == {"n_steps": 10, "traj_length": 1.0, "integrator": "leapfrog",
                                                "fused": False}
    assert out["version"]


def test_table_output(capsys):
    assert main(["simulate", "--beta", "0.4", "--g", "0.1", "--L", "6", "--chains", "2", "--therm", "5",
                 "--sweeps", "30"]) == 0
    text = capsys.readouterr().out
    assert "chi" in text and "tau_int" in text and "site updates/s" in text


@pytest.mark.parametrize("args,message", [
    (["--beta", "0.6", "--g", "0"], "beta=0.6"),
    (["--beta", "0.3", "--g", "0.1", "--L", "0"], "L=0"),
    (["--beta", "0.3", "--g", "0.1", "--step", "-1"], "step=-1"),
    (["--beta", "0.3", "--g", "0.1", "--algorithm", "langevin", "--dt", "0"], "dt=0"),
    (["--beta", "0.3", "--g", "0.1", "--device", "cuda:7"], "cuda:7"),
    (["--beta", "0.3", "--g", "0.1", "--kappa", "0.2"], "not both"),
    (["--beta", "0.3"], "beta and g"),
])
def test_bad_input_exits_2_with_named_parameter(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(["simulate", *args])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "portable_lattice.cli", "simulate", "--beta", "0.3", "--g", "0.1",
                          "--L", "4", "--sweeps", "10", "--therm", "2", "--json"],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["model"]["beta"] == 0.3


def test_spin_json(capsys):
    assert main(["simulate", "--model", "ising", "--beta", "0.4", "--L", "8", "--algorithm", "swendsen-wang",
                 "--chains", "2", "--therm", "10", "--sweeps", "30", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["name"] == "ising" and out["algorithm"] == "swendsen-wang"
    for name in ("energy", "m_abs", "m2", "chi", "heat_capacity", "binder", "c_me"):
        assert {"value", "error", "tau_int"} <= set(out["observables"][name])
    assert out["model"]["beta"] == 0.4 and "changed" in out["sampler"]


def test_ea_couplings_file(tmp_path, capsys):
    import numpy as np
    path = tmp_path / "J.npy"
    np.save(path, np.random.default_rng(0).normal(size=(2, 4, 4)))
    assert main(["simulate", "--model", "ea", "--couplings", str(path), "--beta", "0.5", "--L", "4",
                 "--sweeps", "20", "--therm", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["name"] == "ea"
    np.save(path, np.zeros((3, 4, 4)))
    with pytest.raises(SystemExit):
        main(["simulate", "--model", "ea", "--couplings", str(path), "--beta", "0.5", "--L", "4"])
    assert "couplings" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--model", "potts", "--q", "1", "--beta", "1"], "q=1"),
    (["--model", "ising", "--beta", "-1"], "beta=-1"),
    (["--model", "ising", "--beta", "0.4", "--algorithm", "hmc"], "algorithm='hmc'"),
    (["--model", "ea", "--beta", "0.4"], "exactly one of couplings"),
    (["--model", "ising", "--beta", "0.4", "--algorithm", "swendsen-wang", "--h", "0.1"], "zero field"),
])
def test_spin_bad_input(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(["simulate", *args])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_mcrg_json(capsys):
    assert main(["mcrg", "--L", "16", "--configs", "400", "--chains", "20", "--therm", "20", "--levels", "2",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("y_h", "y_t", "redundant", "omega"):
        assert set(out["exponents"][key]) == {"value", "error"}
    assert out["L"] == 16 and out["configs"] == 400 and len(out["eigenvalues"]["odd"]) == 11
    assert 1.6 < out["exponents"]["y_h"]["value"] < 2.1  # 400 configs: loose, but it is the magnetic exponent
    with pytest.raises(SystemExit):
        main(["mcrg", "--L", "12", "--levels", "3"])


def test_pem_oracle_json(capsys):
    pytest.importorskip("torch")
    assert main(["pem", "--surrogate", "oracle", "--oracle-sigma", "1.0", "--L", "8", "--sweeps", "60",
                 "--therm", "20", "--chains", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["methods"]) == {"exact", "surrogate", "pem"}
    for m in out["methods"].values():
        for name in ("action", "m_abs", "chi"):
            assert set(m["observables"][name]) == {"value", "error"} and name in m["z"]
    assert "timing" in out and "training" in out


def test_pem_bad_input(capsys):
    pytest.importorskip("torch")
    with pytest.raises(SystemExit):
        main(["pem", "--surrogate", "oracle", "--ensemble", "1", "--L", "8"])
    assert "N >= 2" in capsys.readouterr().err


def test_mcrg_reads_npy_and_npz(tmp_path, capsys):
    """The same stored configurations as .npy, as a named array of a .npz and as booleans give
    the same analysis; bad files exit 2 naming --input."""
    rng = np.random.default_rng(0)
    s = np.where(rng.random((120, 8, 8)) < 0.5, -1, 1).astype(np.int8)
    np.save(tmp_path / "c.npy", s)
    np.savez(tmp_path / "c.npz", spins=s, other=s[:3])
    np.savez(tmp_path / "b.npz", s > 0)
    outs = []
    for path in (tmp_path / "c.npy", f"{tmp_path / 'c.npz'}:spins", tmp_path / "b.npz"):
        assert main(["mcrg", "--input", str(path), "--levels", "1", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        out.pop("seconds", None)
        outs.append(out)
    assert outs[0] == outs[1] == outs[2] and outs[0]["configs"] == 120 and outs[0]["basis"] == "symmetric"
    assert main(["mcrg", "--input", str(tmp_path / "c.npy"), "--levels", "1", "--basis", "oriented", "--json"]) == 0
    oriented = json.loads(capsys.readouterr().out)
    assert oriented["basis"] == "oriented" and oriented["exponents"] != outs[0]["exponents"]
    np.save(tmp_path / "zero.npy", np.zeros((4, 8, 8), np.int8))
    np.save(tmp_path / "flat.npy", s[:, 0, :])
    for path, message in ((tmp_path / "c.npz", "name one"), (f"{tmp_path / 'c.npz'}:nope", "no array 'nope'"),
                          (tmp_path / "zero.npy", "the value 0"), (tmp_path / "flat.npy", "shape"),
                          (tmp_path / "missing.npy", "cannot read")):
        with pytest.raises(SystemExit) as e:
            main(["mcrg", "--input", str(path), "--levels", "1"])
        assert e.value.code == 2 and "--input" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    # knobs of other algorithms or models are errors, never silently ignored
    (["--model", "ising", "--beta", "0.4", "--L", "8", "--algorithm", "checkerboard", "--hits", "5"], "hits does not apply"),
    (["--model", "ising", "--beta", "0.4", "--g", "0.3"], "g does not apply"),
    (["--model", "ising", "--beta", "0.4", "--kappa", "0.3"], "kappa does not apply"),
    (["--model", "ising", "--beta", "0.4", "--q", "3"], "q does not apply"),
    (["--model", "ising", "--beta", "0.4", "--couplings", "nope.npy"], "couplings does not apply"),
    (["--model", "ising", "--beta", "0.4", "--compile"], "compile"),
    (["--beta", "0.5", "--g", "0.1", "--algorithm", "hmc", "--step", "-3"], "step does not apply"),
    (["--beta", "0.5", "--g", "0.1", "--dim", "5"], "dim=5"),
    (["--model", "potts", "--beta", "1", "--q", "128"], "q=128"),
    (["--beta", "0.5", "--g", "0.1", "--L", "100000", "--chains", "1000"], "GiB"),
    (["--model", "ea", "--beta", "0.5", "--couplings", "/etc/hostname"], "not a NumPy"),
])
def test_flags_that_do_not_apply_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(["simulate", *args])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_nan_couplings_exit_2(tmp_path, capsys):
    path = tmp_path / "J.npy"
    J = np.zeros((2, 4, 4))
    J[0, 1, 1] = np.nan
    np.save(path, J)
    with pytest.raises(SystemExit) as e:
        main(["simulate", "--model", "ea", "--couplings", str(path), "--beta", "0.5", "--L", "4"])
    assert e.value.code == 2 and "NaN" in capsys.readouterr().err


def test_spin_dtype_is_honoured(capsys):
    assert main(["simulate", "--model", "ising", "--beta", "0.4", "--L", "8", "--algorithm", "checkerboard",
                 "--dtype", "float32", "--chains", "2", "--therm", "5", "--sweeps", "40", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dtype"] == "float32"


def test_zero_acceptance_and_short_runs_warn_with_nan_errors(capsys):
    assert main(["simulate", "--beta", "0.5", "--g", "0.1", "--L", "8", "--step", "1e6", "--sweeps", "50",
                 "--therm", "5", "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["observables"]["chi"]["error"] is None and "no proposal was accepted" in captured.err
    assert main(["simulate", "--beta", "0.5", "--g", "0.1", "--L", "8", "--sweeps", "1", "--therm", "2",
                 "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["observables"]["phi2"]["error"] is None and "no honest error" in captured.err


def test_mcrg_bad_pair_and_generation_flags_with_input(tmp_path, capsys):
    for pair in ("5", "-1"):
        with pytest.raises(SystemExit) as e:
            main(["mcrg", "--L", "16", "--pair", pair])
        assert e.value.code == 2 and "pair" in capsys.readouterr().err
    path = tmp_path / "c.npy"
    np.save(path, np.ones((40, 8, 8), np.int8))
    for flag in (["--L", "8"], ["--configs", "10"]):
        with pytest.raises(SystemExit) as e:
            main(["mcrg", "--input", str(path), "--levels", "1", *flag])
        assert e.value.code == 2 and flag[0] in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # no fluctuations: a clear message, not "Singular matrix"
        main(["mcrg", "--input", str(path), "--levels", "1"])
    assert e.value.code == 2 and "do not fluctuate" in capsys.readouterr().err


def test_pem_zero_channels_is_named(capsys):
    pytest.importorskip("torch")
    with pytest.raises(SystemExit) as e:
        main(["pem", "--channels", "0", "--L", "8"])
    assert e.value.code == 2 and "channels=0" in capsys.readouterr().err


def test_version_and_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "portable_lattice", "--version"], capture_output=True, text=True,
                         check=True)
    import portable_lattice
    assert portable_lattice.__version__ in out.stdout


def test_broken_pipe_is_quiet():
    proc = subprocess.run(f"{sys.executable} -m portable_lattice simulate --beta 0.3 --g 0.1 --L 4 --sweeps 3000 "
                          f"--therm 1 --json --chains 1 | head -c 1", shell=True, capture_output=True, text=True)
    assert "Traceback" not in proc.stderr


def test_numpy_integers_are_accepted():
    import portable_lattice as pl
    res = pl.simulate(pl.Ising(beta=0.3), L=np.int64(4), chains=np.int64(2), therm=np.int64(2),
                      sweeps=np.int64(20), seed=np.int64(3))
    assert res.meta["L"] == 4 and type(res.meta["seed"]) is int


def test_pem_saves_and_loads_a_trained_ensemble(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    path = str(tmp_path / "ens.pt")
    small = ["--surrogate", "cnn", "--L", "8", "--ensemble", "2", "--sweeps", "10", "--therm", "2", "--chains", "2",
             "--json"]
    assert main(["pem", *small, "--train-configs", "8", "--epochs", "1", "--channels", "4",
                 "--save-ensemble", path]) == 0
    capsys.readouterr()
    assert main(["pem", *small, "--beta", "0.45", "--load-ensemble", path]) == 0
    out = capsys.readouterr()
    assert "trained with beta=0.5" in out.err  # other parameters: warned, still run
    assert json.loads(out.out)["training"]["loaded_from"] == path  # strict JSON: NaN written as null
    blob = torch.load(path, weights_only=True)
    blob["architecture"] = dict(blob["architecture"], channels=8)  # another architecture: a clear error
    torch.save(blob, path)
    with pytest.raises(SystemExit) as e:
        main(["pem", *small, "--load-ensemble", path])
    assert e.value.code == 2 and "do not fit the architecture" in capsys.readouterr().err


def test_mcrg_reads_a_stored_ensemble(tmp_path, capsys):
    pytest.importorskip("zarr")
    import warnings

    import portable_lattice as pl
    out = str(tmp_path / "ens")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pl.simulate(pl.Ising(beta=0.44, dim=2), L=8, algorithm="swendsen-wang", chains=4, therm=10, sweeps=30,
                    save_every=1, out=out, seed=1)
    assert main(["mcrg", "--input", out, "--levels", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["configs"] == 120  # 30 saved x 4 chains
    empty = str(tmp_path / "nothing_saved")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pl.simulate(pl.Ising(beta=0.44, dim=2), L=8, chains=2, therm=1, sweeps=5, out=empty, seed=1)
    with pytest.raises(SystemExit) as e:
        main(["mcrg", "--input", empty, "--levels", "1"])
    assert e.value.code == 2 and "--save-every" in capsys.readouterr().err


def test_every_card_key_has_a_flag():
    """The CLI makes a flag for every coupling and knob a card takes, so a new theory's coupling
    or a new sampler's knob needs no CLI edit; the generated ones carry their help."""
    import argparse

    from portable_lattice.cli.simulate import add_parser
    from portable_lattice.runs.spec import KNOB_TYPES, MODEL_KEYS
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    sim = parser._subparsers._group_actions[0].choices["simulate"]
    dests = {a.dest: a for a in sim._actions}
    for key in [k for ks in MODEL_KEYS.values() for k in ks] + list(KNOB_TYPES):
        assert key in dests, key
        assert dests[key].help, key
    assert "Heisenberg" in dests["n"].help and dests["n"].type is int
    assert dests["overrelax"].type is int and "overrelax" in dests["overrelax"].help
