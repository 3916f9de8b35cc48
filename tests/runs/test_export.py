"""``export --pyerrors``: pyerrors reads the file and its Gamma method agrees with ours.

Tolerance of the error comparison: the values must agree to rounding (the file stores
the mean and value + delta reproduces every measurement), but the two Gamma methods
are not the same estimator: pyerrors subtracts each replica's own mean before forming
Gamma(t), ours the global mean (Wolff 2004, Eq. 31), and the bias corrections and the
windowing differ in detail. Both estimate the same error; on these runs (chains at
least ~50 tau_int long) the differences are O(tau_int / n) = a few per cent, so errors
must agree within 15%.
"""
from __future__ import annotations

import gzip
import json
import math
import warnings

import numpy as np
import pytest

pytest.importorskip("zarr")
pe = pytest.importorskip("pyerrors")

from portable_lattice import Ising, Phi4, simulate  # noqa: E402
from portable_lattice.cli import main  # noqa: E402
from portable_lattice.runs.export import export_pyerrors  # noqa: E402
from portable_lattice.runs.storage import open_ensemble  # noqa: E402
from portable_lattice.statistics import UnreliableErrorWarning, gamma_method  # noqa: E402

ERROR_RTOL = 0.15

RUNS = {
    # symmetric phase, away from the critical point: tau_int of M about 8 measurements
    "phi4": (Phi4.from_kappa_lambda(0.15, 0.02), dict(L=8, algorithm="checkerboard", chains=4, therm=100,
                                                      sweeps=600, seed=2)),
    "ising": (Ising(beta=0.44), dict(L=8, algorithm="swendsen-wang", chains=4, therm=20, sweeps=300, seed=1)),
}


@pytest.fixture(scope="module", params=sorted(RUNS))
def store(request, tmp_path_factory):
    theory, kwargs = RUNS[request.param]
    path = str(tmp_path_factory.mktemp("export") / f"{request.param}-ens")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableErrorWarning)
        simulate(theory, **kwargs, out=path, checkpoint_every=128)
    return path, kwargs


def _load(path):
    obs = pe.input.json.load_json(path, verbose=False)
    return {o.tag: o for o in (obs if isinstance(obs, list) else [obs])}


def test_pyerrors_round_trip(store, tmp_path):
    path, kwargs = store
    out = export_pyerrors(path, str(tmp_path / "out.json.gz"))
    series = open_ensemble(path)["series"]
    loaded = _load(out)
    assert set(loaded) == set(series)  # one Obs per primary stream, tagged by name
    ens = path.rsplit("/", 1)[-1]
    chains, n = kwargs["chains"], kwargs["sweeps"]
    for name, s in series.items():
        o = loaded[name]
        # one ensemble, one replica per chain, the measurement numbers 1..n as configuration numbers
        assert o.names == [f"{ens}|r{c:03d}" for c in range(chains)]
        assert all(list(o.idl[r]) == list(range(1, n + 1)) for r in o.names)
        assert o.value == pytest.approx(float(s.mean()), rel=1e-13, abs=1e-15)
        for c, r in enumerate(o.names):
            assert o.r_values[r] == pytest.approx(float(s[:, c].mean()), rel=1e-12, abs=1e-14)
        o.gamma_method()  # pyerrors' defaults: S = 2, no tau_exp
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnreliableErrorWarning)
            ours = gamma_method(s)
        if not math.isfinite(ours.error):
            continue
        assert o.dvalue == pytest.approx(ours.error, rel=ERROR_RTOL), (name, o.dvalue, ours.error)


def test_file_is_gzip_json_with_the_card(store, tmp_path):
    path, _ = store
    out = export_pyerrors(path, str(tmp_path / "x.json.gz"), ensemble="E1", discard=5)
    with gzip.open(out, "rt") as f:
        doc = json.load(f)
    assert doc["program"].startswith("portable_lattice") and doc["version"] == "1.1"
    assert doc["description"]["card"]["seed"] == open_ensemble(path)["card"]["seed"]
    entry = doc["obsdata"][0]
    assert entry["type"] == "Obs" and entry["layout"] == "1" and entry["data"][0]["id"] == "E1"
    assert entry["data"][0]["replica"][0]["name"] == "E1|r000"
    assert entry["data"][0]["replica"][0]["deltas"][0][0] == 6  # discard 5: configuration numbers go on


def test_bad_ensemble_name_and_discard(store, tmp_path):
    path, kwargs = store
    with pytest.raises(ValueError, match=r"\|"):
        export_pyerrors(path, str(tmp_path / "x.json.gz"), ensemble="a|b")
    with pytest.raises(ValueError, match="--discard"):
        export_pyerrors(path, str(tmp_path / "x.json.gz"), discard=kwargs["sweeps"])


def test_cli_export(store, tmp_path, capsys):
    path, _ = store
    out = str(tmp_path / "cli.json.gz")
    assert main(["export", path, "--pyerrors", out]) == 0
    assert capsys.readouterr().out == ""  # the path goes to stderr
    assert set(_load(out)) == set(open_ensemble(path)["series"])
    with pytest.raises(SystemExit) as e:
        main(["export", str(tmp_path), "--pyerrors", out])
    assert e.value.code == 2
    assert np.isfinite(_load(out)["m"].value)
