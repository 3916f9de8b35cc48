"""One loop for every run: the in-memory sink and the store sink get the same NaN guard, the same
frozen-chain check and the same progress display."""
import io
import sys
import warnings

import numpy as np
import pytest

from portable_lattice import NonFiniteFieldError, Phi4, simulate
from portable_lattice.backends import get_backend
from portable_lattice.observables import measure_phi4
from portable_lattice.runs.driver import FrozenChainWarning, MemorySink, Progress, run
from portable_lattice.samplers import HMC, FieldState, Info

pytest.importorskip("zarr")


class Explodes:
    """inf in chain 1 from its ``at``-th step on."""

    def __init__(self, at):
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


def _store_sink(tmp_path, chains=3, L=4, checkpoint_every=4):
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
