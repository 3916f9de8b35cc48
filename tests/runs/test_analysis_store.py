"""``analyse``: the analysis redone from a store equals the run's own, and --discard drops measurements."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

pytest.importorskip("zarr")

from portable_lattice import EdwardsAnderson, Ising, Phi4, simulate  # noqa: E402
from portable_lattice.backends import get_backend  # noqa: E402
from portable_lattice.cli import main  # noqa: E402
from portable_lattice.observables import ensemble_phi4  # noqa: E402
from portable_lattice.runs.analysis import analyse_store, autocorrelation, print_analysis  # noqa: E402
from portable_lattice.runs.storage import StoreError, open_ensemble  # noqa: E402
from portable_lattice.statistics import UnreliableErrorWarning, gamma_method  # noqa: E402

PHI4 = dict(L=8, algorithm="checkerboard", chains=4, therm=50, sweeps=240, seed=3)
SW = dict(L=8, algorithm="swendsen-wang", chains=4, therm=20, sweeps=160, seed=1)


def _quiet(f, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableErrorWarning)
        return f(*args, **kwargs)


@pytest.fixture(scope="module")
def phi4_run(tmp_path_factory):
    """The same run in memory and into a store (checkpoint blocks that do not divide sweeps)."""
    theory = Phi4.from_beta_g(0.5, 0.1)
    path = str(tmp_path_factory.mktemp("analyse") / "phi4")
    memory = _quiet(simulate, theory, **PHI4)
    stored = _quiet(simulate, theory, **PHI4, out=path, save_every=40, checkpoint_every=64)
    return memory, stored, path


def _same(a, b) -> bool:
    return a == b or (a is None and b is None) or (isinstance(a, float) and isinstance(b, float)
                                                   and math.isnan(a) and math.isnan(b))


def _check_equal(out: dict, observables: dict) -> None:
    reported = {**out["observables"], **out["sampler"]}
    assert set(reported) == set(observables)
    for name, est in observables.items():
        got = reported[name]
        # the same numbers from the same streams through the same analysis: equal, not close
        assert got["value"] == est.value, name
        for key, want in (("error", est.error), ("tau_int", est.tau_int), ("rhat", est.rhat)):
            assert _same(got[key], want if math.isfinite(want) else None), (name, key)


def test_analyse_reproduces_the_in_memory_run(phi4_run):
    memory, stored, path = phi4_run
    ens = open_ensemble(path)
    for name, s in memory.series.items():
        assert np.array_equal(ens["series"][name], s), name  # the store holds the run's streams
    out = _quiet(analyse_store, path)
    _check_equal(out, memory.observables)
    _check_equal(out, stored.observables)
    assert out["n_meas"] == PHI4["sweeps"] and out["n_saved"] == PHI4["sweeps"] // 40
    assert out["analysed"] == PHI4["sweeps"] and out["discard"] == 0 and out["finished"]
    assert out["card"]["beta"] == 0.5 and out["card"]["algorithm"] == "checkerboard"
    assert out["family"] == "field" and "acceptance" in out["sampler"]
    json.dumps(out, allow_nan=False)  # JSON-ready: NaN reported as None


@pytest.mark.parametrize("theory, kwargs", [
    (Ising(beta=0.44), SW),
    (EdwardsAnderson.gaussian(6, 2, 5, beta=0.8, backend=get_backend("numpy")),
     dict(L=6, algorithm="checkerboard", chains=4, therm=20, sweeps=100, seed=2)),
], ids=["ising-sw", "ea-couplings"])
def test_analyse_spin_models(tmp_path, theory, kwargs):
    """ensemble_spins from the card's theory (Edwards-Anderson: with the stored couplings)."""
    memory = _quiet(simulate, theory, **kwargs)
    path = str(tmp_path / "ens")
    _quiet(simulate, theory, **kwargs, out=path, checkpoint_every=50)
    out = _quiet(analyse_store, path)
    assert out["family"] == "spins"
    _check_equal(out, memory.observables)


def test_discard_drops_the_first_measurements(phi4_run):
    memory, _, path = phi4_run
    k = 40
    out = _quiet(analyse_store, path, discard=k)
    want = _quiet(ensemble_phi4, {n: s[k:] for n, s in memory.series.items()}, 64, 8)
    assert out["discard"] == k and out["analysed"] == PHI4["sweeps"] - k
    for name, est in want.items():
        assert out["observables"][name]["value"] == est.value, name
    acc = memory.series["acceptance"][k:]
    assert out["sampler"]["acceptance"]["value"] == gamma_method(acc).value
    assert out["observables"]["m"]["value"] != _quiet(analyse_store, path)["observables"]["m"]["value"]


@pytest.mark.parametrize("bad", [-1, PHI4["sweeps"], PHI4["sweeps"] + 7, 1.5, True, "3"])
def test_bad_discard_is_refused_by_name(phi4_run, bad):
    with pytest.raises(ValueError, match="--discard"):
        analyse_store(phi4_run[2], discard=bad)


def test_not_a_store(tmp_path):
    with pytest.raises(StoreError, match="not a portable_lattice ensemble|not a directory"):
        analyse_store(str(tmp_path))


def test_cli_analyse(phi4_run, capsys):
    path = phi4_run[2]
    assert main(["analyse", path, "--json", "--discard", "10"]) == 0
    out = json.loads(capsys.readouterr().out)  # nothing but the JSON on stdout
    assert out["discard"] == 10 and set(out["observables"]) >= {"m", "chi", "binder", "xi2nd"}
    assert main(["analyse", path]) == 0
    table = capsys.readouterr().out
    assert "R-hat" in table and "tau_int" in table and "240 measurements" in table
    with pytest.raises(SystemExit) as e:
        main(["analyse", path, "--discard", "240"])
    assert e.value.code == 2
    assert "--discard must be less than the 240 stored measurements" in capsys.readouterr().err


def test_print_analysis_marks_disagreeing_chains(phi4_run, capsys):
    out = _quiet(analyse_store, phi4_run[2])
    out["observables"]["m"]["rhat"] = 1.5
    print_analysis(out)
    assert "R-hat above 1.1 for m" in capsys.readouterr().out


def test_autocorrelation_window_is_the_gamma_methods(phi4_run):
    """The window the plots mark is the one the Gamma method used: same tau_int."""
    series = open_ensemble(phi4_run[2])["series"]
    for name, s in series.items():
        rho, W, tau = autocorrelation(s)
        assert rho[0] == pytest.approx(1.0) and 1 <= W < s.shape[0]
        assert tau == pytest.approx(_quiet(gamma_method, s).tau_int, rel=1e-12), name
