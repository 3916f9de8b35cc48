"""Compact U(1) through the run paths: simulate against the exact torus, cards, the CLI, stored runs,
and the bad input of the new theories refused by every path."""
import json

import numpy as np
import pytest

from portable_lattice import simulate
from portable_lattice.exact import u1_2d
from portable_lattice.runs.spec import RunSpec
from portable_lattice.theories import ON, U1


# short runs warn that their error bars are unreliable; the checks here do not rely on those
pytestmark = pytest.mark.filterwarnings("ignore::portable_lattice.statistics.UnreliableErrorWarning")


@pytest.mark.parametrize("algorithm, knobs", [("hmc", {}), ("heatbath", {"overrelax": 1})])
def test_simulate_is_exact_on_the_torus(algorithm, knobs):
    """Plaquette and chi_top against Z = sum_n I_n(beta)^V; |z| < 4.5 each (false alarm about 7e-6)."""
    res = simulate(U1(1.0), L=4, dim=2, algorithm=algorithm, chains=16, therm=100, sweeps=800, seed=4,
                   progress=False, **knobs)
    exact = u1_2d(4, 1.0)
    for name in ("plaquette", "chi_top"):
        e = res.observables[name]
        assert abs(e.value - exact[name]) < 4.5 * e.error, (name, e, exact[name])


def test_a_card_the_cli_and_a_stored_run(tmp_path, capsys):
    spec = RunSpec.from_card({"model": "u1", "beta": 2.0, "L": 4, "algorithm": "checkerboard", "step": 0.7})
    assert spec.theory == U1(2.0, dim=2) and spec.knobs["step"] == 0.7 and spec.knobs["overrelax"] == 0
    from portable_lattice.cli import main
    main(["simulate", "--model", "u1", "--beta", "1.0", "--L", "4", "--chains", "2", "--therm", "2", "--sweeps", "10",
          "--algorithm", "heatbath", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["name"] == "u1" and "chi_top" in out["observables"]
    pytest.importorskip("zarr")
    from portable_lattice.runs.production import resume
    from portable_lattice.runs.storage import open_ensemble
    kw = dict(L=4, chains=2, therm=5, seed=3, progress=False, checkpoint_every=5, save_every=5)
    simulate(U1(1.0), sweeps=20, out=str(tmp_path / "full"), **kw)
    simulate(U1(1.0), sweeps=10, out=str(tmp_path / "part"), **kw)
    resume(str(tmp_path / "part"), sweeps=20, progress=False)
    a, b = open_ensemble(str(tmp_path / "full")), open_ensemble(str(tmp_path / "part"))
    for k in a["series"]:
        assert np.array_equal(a["series"][k], b["series"][k]), k
    assert a["fields"].shape == (4, 2, 2, 4, 4) and np.array_equal(a["fields"], b["fields"])


#: one table of bad values for the new theories, fed through keyword arguments, a card and the CLI
BAD = [
    ({"model": "on", "beta": 1.0, "n": 1}, "n=1"),
    ({"model": "on", "beta": -1.0, "n": 2}, "beta"),
    ({"model": "u1", "beta": -0.5}, "beta"),
    ({"model": "u1", "beta": 1.0, "dim": 1}, "dim"),
    ({"model": "on", "beta": 1.0, "algorithm": "heatbath", "n": 4}, "n = 2, 3"),
    ({"model": "u1", "beta": 1.0, "algorithm": "wolff"}, "wolff"),
]


@pytest.mark.parametrize("card, match", BAD)
def test_bad_input_is_refused_by_every_path(card, match, capsys):
    with pytest.raises((ValueError, TypeError), match=match):
        RunSpec.from_card(card)
    from portable_lattice.cli import main
    argv = ["simulate"] + [x for k, v in card.items() for x in (f"--{k}", str(v))]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert match.split("=")[0] in err and "Traceback" not in err


def test_bad_starts_are_refused_before_any_work():
    s = np.random.default_rng(0).standard_normal((2, 2, 4, 4))
    with pytest.raises(ValueError, match="unit vectors"):
        simulate(ON(1.0), L=4, chains=2, start=s, sweeps=2, progress=False)
    with pytest.raises(ValueError, match="start must have shape"):
        simulate(U1(1.0), L=4, chains=2, start=np.zeros((2, 2, 4, 5)), sweeps=2, progress=False)
