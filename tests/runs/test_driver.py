import io
import sys
import warnings

import numpy as np
import pytest

from portable_lattice import NonFiniteFieldError, Phi4, run, simulate
from portable_lattice.observables import measure_phi4, two_point
from portable_lattice.backends import get_backend
from portable_lattice.runs.driver import FrozenChainWarning, MemorySink, Progress
from portable_lattice.samplers import HMC, FieldState, Info


class Explodes:
    """A kernel that puts inf into chain 1 at its 25th step (to test the NaN guard)."""

    def __init__(self, at=25):
        self.at, self.n = at, 0

    def init(self, phi):
        return HMC(Phi4.from_beta_g(0.2, 0.1)).init(phi)

    def step(self, state, rng):
        self.n += 1
        phi = state.phi + 0.01
        if self.n >= self.at:
            phi = phi.copy()
            phi[1, 0, 0] = np.inf
        return FieldState(phi=phi), Info(acceptance=np.ones(phi.shape[0]))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.filterwarnings("ignore::portable_lattice.statistics.UnreliableErrorWarning")  # 19 drifting rows
def test_nonfinite_field_stops_and_keeps_measurements():
    action = Phi4.from_beta_g(0.2, 0.1)
    with pytest.raises(NonFiniteFieldError, match=r"chain\(s\) \[1\]") as err:
        run(Explodes(), np.zeros((3, 4, 4)), None, n_therm=5, n_measure=100,
            measure=lambda p: measure_phi4(p, action), to_host=np.asarray, flush_every=8)
    partial = err.value.partial
    assert err.value.chains == [1]
    # measurements 1..19 (steps 6..24) were finite and are kept
    assert partial.series["m"].shape == (19, 3)
    assert np.all(np.isfinite(partial.series["m"]))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nonfinite_in_thermalisation_names_it():
    action = Phi4.from_beta_g(0.2, 0.1)
    with pytest.raises(NonFiniteFieldError, match="thermalisation"):
        run(Explodes(at=3), np.zeros((2, 4, 4)), None, n_therm=20, n_measure=5,
            measure=lambda p: measure_phi4(p, action), to_host=np.asarray)


def test_progress_is_quiet_off_a_terminal():
    buf = io.StringIO()
    p = Progress(10, "x", enabled=None, stream=buf)
    p.update(5, force=True)
    p.close()
    assert buf.getvalue() == ""
    p = Progress(10, "x", enabled=True, stream=buf)
    p.update(5, force=True)
    assert "5/10" in buf.getvalue()


def test_simulate_result_and_throughput(backend):
    res = simulate(Phi4.from_beta_g(0.3, 0.0), L=6, algorithm="hmc", backend=backend.name,
                   device=backend.device if backend.name != "array_api_strict" else None,
                   chains=4, therm=10, sweeps=30, seed=1, n_steps=5)
    assert res.series["m"].shape == (30, 4)
    assert res.steps == 40 and res.volume == 36
    assert res.site_updates_per_second == pytest.approx(36 * 4 * 40 / res.seconds)
    for name in ("phi2", "m", "m_abs", "m2", "chi", "binder", "action", "acceptance"):
        assert np.isfinite(res.observables[name].value) and res.observables[name].error > 0
    # meta reproduces the run: the theory's parameters, sizes, the algorithm with its resolved knobs
    meta = res.meta
    assert meta["theory"] == {"name": "phi4", "form": "beta_g", "beta": 0.3, "g": 0.0}
    assert (meta["L"], meta["dim"], meta["algorithm"], meta["chains"], meta["therm"], meta["sweeps"]) == \
        (6, 2, "hmc", 4, 10, 30)
    assert meta["knobs"] == {"n_steps": 5, "traj_length": 1.0, "integrator": "leapfrog", "fused": False}


def test_simulate_bad_input_before_work():
    a = Phi4.from_beta_g(0.3, 0.1)
    with pytest.raises(ValueError, match="chains=0"):
        simulate(a, L=8, chains=0)
    with pytest.raises(ValueError, match="L=-2"):
        simulate(a, L=-2)
    with pytest.raises(TypeError, match="dt=0.1"):
        simulate(a, L=8, algorithm="hmc", dt=0.1)
    with pytest.raises(ValueError, match="algorithm='gibbs'"):
        simulate(a, L=8, algorithm="gibbs")
    with pytest.raises(ValueError, match="beta=0.5"):
        simulate(Phi4.from_beta_g(0.5, 0.0), L=8)
    with pytest.raises(ValueError, match="backend='numba'"):
        simulate(a, L=8, backend="numba")


def test_two_point_function(backend):
    phi = backend.rng(0).normal((2, 8, 8), backend.xp.float64)
    c = backend.to_numpy(two_point(phi))
    host = backend.to_numpy(phi)
    assert c.shape == (2, 5)
    np.testing.assert_allclose(c[:, 0], (host ** 2).mean(axis=(1, 2)))
    want = 0.5 * ((host * np.roll(host, -3, 1)).mean(axis=(1, 2)) + (host * np.roll(host, -3, 2)).mean(axis=(1, 2)))
    np.testing.assert_allclose(c[:, 3], want)


# --- one loop for every run: the store sink gets the same NaN guard, frozen-chain check and progress ---
def _store_sink(tmp_path, chains=3, L=4, checkpoint_every=4):
    pytest.importorskip("zarr")
    from portable_lattice.runs.production import StoreSink
    from portable_lattice.runs.storage import EnsembleStore
    store = EnsembleStore.create(str(tmp_path / "ens"), {"model": "phi4"}, "0" * 64, {}, (chains, L, L), "float64",
                                 None)
    return StoreSink(store, get_backend("numpy"), checkpoint_every), store


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.filterwarnings("ignore::portable_lattice.statistics.UnreliableErrorWarning")
@pytest.mark.parametrize("where,at", [("thermalisation", 3), ("measurement", 15)])
def test_store_sink_has_the_nan_guard(tmp_path, where, at):
    sink, store = _store_sink(tmp_path)
    theory = Phi4.from_beta_g(0.2, 0.1)
    with pytest.raises(NonFiniteFieldError, match=where) as err:
        run(Explodes(at), np.zeros((3, 4, 4)), get_backend("numpy").rng(0), n_therm=5, n_measure=20,
            measure=lambda p: measure_phi4(p, theory), to_host=np.asarray, sink=sink, progress=False)
    assert err.value.chains == [1]
    # the committed blocks stand (measurements 1..8 at steps 6..13; the block holding step 15 is not committed)
    assert store.n_meas == (0 if where == "thermalisation" else 8)
    assert err.value.partial.series.get("m", np.zeros((0, 3))).shape[0] == store.n_meas


@pytest.mark.parametrize("out", [False, True])
def test_frozen_chain_warns_in_memory_and_on_disk(tmp_path, out):
    if out:
        pytest.importorskip("zarr")
    kw = {"out": str(tmp_path / "ens")} if out else {}
    with pytest.warns(FrozenChainWarning):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = simulate(Phi4.from_beta_g(0.5, 0.1), L=4, chains=2, therm=2, sweeps=10, algorithm="checkerboard",
                           step=1e12, progress=False, **kw)
    assert np.isnan(res.observables["m"].error)


def test_memory_sink_blocks():
    sink = MemorySink(block=3)
    sink.keep({"m": np.ones((3, 2))})
    sink.keep({"m": np.zeros((2, 2))})
    assert sink.series()["m"].shape == (5, 2) and sink.where() == {}
    with pytest.raises(ValueError, match="flush_every"):
        MemorySink(0)


def test_progress_in_a_batch_log_and_on_resume():
    buf = io.StringIO()
    p = Progress(100, "run", enabled=True, stream=buf, initial=40, unit="steps")
    for i in range(41, 101):
        p.update(i)
    p.close()
    lines = buf.getvalue().splitlines()
    # a plain line about every 5% (a batch job's log), counting on from the resumed 40
    assert lines[0].startswith("run: 41/100 steps") and lines[-1].startswith("run: 100/100 steps")
    assert 10 <= len(lines) <= 22


def test_progress_quiet_by_default_off_a_terminal(capsys):
    res = simulate(Phi4.from_beta_g(0.5, 0.1), L=4, chains=2, therm=2, sweeps=5)
    assert res.observables and capsys.readouterr().err == "" and not sys.stderr.isatty()
