"""The O(n) model through every path a user takes: the theory, its observables, simulate, cards, the CLI,
stored runs and the Philox stream; exact against the periodic chain."""
import json
import math

import numpy as np
import pytest

from portable_lattice import simulate
from portable_lattice.exact import on_chain
from portable_lattice.observables.on import ensemble_vector, measure_vector
from portable_lattice.runs.spec import RunSpec
from portable_lattice.theories import ON, VECTOR, family_of

# short runs warn that their error bars are unreliable; the checks here do not rely on those
pytestmark = pytest.mark.filterwarnings("ignore::portable_lattice.statistics.UnreliableErrorWarning")


def _unit(rng, shape):
    v = rng.standard_normal(shape)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_the_theory_checks_its_couplings_and_configurations():
    with pytest.raises(ValueError, match="n=1"):
        ON(1.0, n=1)
    with pytest.raises(ValueError, match="beta"):
        ON(-0.5)
    with pytest.raises(ValueError, match="dim=5"):
        ON(1.0, dim=5)
    t = ON(1.0, n=3)
    assert family_of(t) is VECTOR
    s = _unit(np.random.default_rng(0), (2, 3, 4, 4))
    t.check_field(s)
    with pytest.raises(ValueError, match="unit vectors"):
        t.check_field(1.01 * s)
    with pytest.raises(ValueError, match="n=3"):
        t.check_field(s[:, :2])
    with pytest.raises(TypeError, match="floating"):
        t.check_field(s.astype(np.int8))
    assert t.config_shape(5, 6, 2) == (5, 3, 6, 6)


def test_energy_magnetisation_and_observables_against_a_direct_sum():
    rng = np.random.default_rng(1)
    t = ON(0.7, n=2, J=1.3, h=0.4)
    s = _unit(rng, (3, 2, 5, 5))
    H = np.zeros(3)
    for x in range(5):
        for y in range(5):
            for dx, dy in ((1, 0), (0, 1)):
                H -= 1.3 * np.sum(s[:, :, x, y] * s[:, :, (x + dx) % 5, (y + dy) % 5], axis=1)
            H -= 0.4 * s[:, 0, x, y]
    np.testing.assert_allclose(t.energy(s), H, rtol=1e-12)
    M = s.sum(axis=(2, 3))
    np.testing.assert_allclose(t.magnetisation(s), M, rtol=1e-12)
    obs = measure_vector(s, t)
    np.testing.assert_allclose(obs["m2"], np.sum(M * M, axis=1) / 625, rtol=1e-12)
    theta = np.arctan2(s[:, 1], s[:, 0])
    cos_part = sum(np.cos(theta - np.roll(theta, -1, axis=a)).sum(axis=(1, 2)) for a in (1, 2)) / 2 / 25
    sin2 = sum(np.sin(theta - np.roll(theta, -1, axis=a)).sum(axis=(1, 2)) ** 2 for a in (1, 2)) / 2 / 25
    np.testing.assert_allclose(obs["helicity_c"], 1.3 * cos_part, rtol=1e-12)
    np.testing.assert_allclose(obs["helicity_s2"], 1.3 ** 2 * sin2, rtol=1e-12)
    assert "helicity_c" not in measure_vector(_unit(rng, (3, 3, 4, 4)), ON(0.7, n=3))


def test_a_frozen_ordered_state_has_the_ordered_values():
    """All spins along e_0: |m| = 1, chi = V, Binder cumulant 2 / (n + 2), C = 0."""
    s = np.zeros((40, 3, 4, 4))
    s[:, 0] = 1.0
    t = ON(1.0, n=3)
    series = {k: np.reshape(v, (-1, 1)) * np.ones((1, 2)) for k, v in measure_vector(s, t).items()}
    out = ensemble_vector(series, 16, t, 4)
    assert math.isclose(out["m_abs"].value, 1.0) and math.isclose(out["chi"].value, 16.0)
    assert math.isclose(out["binder"].value, 2.0 / 5.0)
    assert abs(out["heat_capacity"].value) < 1e-12


@pytest.mark.parametrize("n, algorithm, knobs", [(2, "heatbath", {"overrelax": 1}), (3, "checkerboard", {}),
                                                  (2, "wolff", {})])
def test_simulate_is_exact_on_the_periodic_chain(n, algorithm, knobs):
    """Energy and chi against the transfer-operator result; |z| < 4.5 each (false alarm about 7e-6)."""
    beta, L = 1.2, 8
    res = simulate(ON(beta, n=n, dim=1), L=L, dim=1, algorithm=algorithm, chains=32, therm=200, sweeps=1500,
                   seed=11, progress=False, **knobs)
    exact = on_chain(n, L, beta)
    for name in ("energy", "chi"):
        e = res.observables[name]
        z = (e.value - exact[name]) / e.error
        assert abs(z) < 4.5, (name, e, exact[name], z)


def test_a_card_and_the_cli_name_the_model(capsys):
    spec = RunSpec.from_card({"model": "on", "n": 3, "beta": 0.5, "L": 4, "sweeps": 10, "therm": 2,
                              "algorithm": "checkerboard", "overrelax": 2})
    assert spec.theory == ON(0.5, n=3, dim=2) and spec.knobs["overrelax"] == 2
    assert RunSpec.from_card(spec.theory.card() | {"L": 4}).theory == spec.theory
    with pytest.raises(ValueError, match="n=1"):
        RunSpec.from_card({"model": "on", "n": 1, "beta": 0.5})
    with pytest.raises(ValueError, match="q does not apply to model = 'on'"):
        RunSpec.from_card({"model": "on", "q": 3, "beta": 0.5})
    from portable_lattice.cli import main
    rc = main(["simulate", "--model", "on", "--n", "3", "--beta", "0.5", "--L", "4", "--chains", "2", "--therm", "2",
               "--sweeps", "20", "--overrelax", "1", "--json"])
    assert rc in (0, None)
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["name"] == "on" and out["model"]["n"] == 3 and "chi" in out["observables"]
    with pytest.raises(SystemExit) as e:
        main(["simulate", "--model", "on", "--n", "1", "--beta", "0.5"])
    assert e.value.code == 2
    assert "n=1" in capsys.readouterr().err


def test_a_stored_run_resumes_bit_for_bit(tmp_path):
    pytest.importorskip("zarr")
    from portable_lattice.runs.production import resume
    from portable_lattice.runs.storage import open_ensemble
    kw = dict(L=4, chains=2, therm=5, seed=3, progress=False, algorithm="checkerboard", checkpoint_every=5,
              save_every=5)
    full = simulate(ON(0.8, n=3), sweeps=20, out=str(tmp_path / "full"), **kw)
    simulate(ON(0.8, n=3), sweeps=10, out=str(tmp_path / "part"), **kw)
    resume(str(tmp_path / "part"), sweeps=20, progress=False)
    a, b = open_ensemble(str(tmp_path / "full")), open_ensemble(str(tmp_path / "part"))
    assert set(a["series"]) >= {"energy", "m2"}
    for k in a["series"]:
        assert np.array_equal(a["series"][k], b["series"][k]), k
    assert a["fields"].shape == (4, 2, 3, 4, 4) and np.array_equal(a["fields"], b["fields"])
    assert full.observables["energy"].n > 0


@pytest.mark.parametrize("knobs", [{}, {"overrelax": 1}])
def test_the_philox_stream_gives_the_same_chain_on_every_backend(backend, knobs):
    """Checkerboard Metropolis (and overrelaxation) use only correctly rounded arithmetic on the
    Philox numbers, so the chain is the same to the bit on every backend; the measured lattice
    sums are reduced in each library's own order (equal to rounding)."""
    kw = dict(L=4, chains=2, therm=3, sweeps=6, seed=5, progress=False, stream="philox", algorithm="checkerboard",
              **knobs)
    ref = simulate(ON(0.9, n=2), backend="numpy", **kw)
    got = simulate(ON(0.9, n=2), backend=backend.name, **kw)
    assert np.array_equal(np.asarray(ref.state.phi), backend.to_numpy(got.state.phi))
    for k in ref.series:
        np.testing.assert_allclose(np.asarray(got.series[k]), np.asarray(ref.series[k]), rtol=1e-12, atol=1e-14,
                                   err_msg=k)
