import json
import subprocess
import sys

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
        assert set(out["observables"][name]) == {"value", "error", "tau_int"}
    assert out["timing"]["site_updates_per_second"] > 0


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
    (["--beta", "0.3"], "--g"),
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
