"""``simulate`` for spins: the start, the metadata, each algorithm's per-step series."""
import math

import numpy as np
import pytest

from portable_lattice import Ising, simulate
from portable_lattice.backends import get_backend
from portable_lattice.statistics import UnreliableErrorWarning

NUMPY = get_backend("numpy")


# --- simulate for spins ------------------------------------------------------------------------------
def test_simulate_spins_start_meta_and_info_series():
    theory = Ising(beta=0.6)
    start = NUMPY.from_numpy(np.ones((3, 8, 8), np.int8))
    with pytest.warns(UnreliableErrorWarning):  # 5 measurements cannot give an honest error
        res = simulate(theory, L=8, algorithm="metropolis", chains=3, therm=0, sweeps=5, start=start, seed=1,
                       progress=False)
    assert math.isnan(res.observables["chi"].error)
    # deep in the ordered phase (beta_c = 0.44), the cold start stays magnetised
    assert np.all(res.series["m"] > 0.7)
    meta = res.meta
    assert meta["theory"] == {"name": "ising", "beta": 0.6, "J": 1.0, "h": 0.0} == theory.params()
    assert (meta["L"], meta["dim"], meta["algorithm"], meta["knobs"], meta["therm"], meta["sweeps"]) == \
        (8, 2, "metropolis", {}, 0, 5)
    with pytest.raises(ValueError, match="start must have shape"):
        simulate(theory, L=8, chains=2, start=start)
    # each algorithm's per-step record: acceptance, the fraction changed, or the cluster size
    for algorithm, name in (("checkerboard", "acceptance"), ("heatbath", "changed"),
                            ("swendsen-wang", "changed"), ("wolff", "cluster_size")):
        res = simulate(Ising(beta=0.4), L=8, algorithm=algorithm, chains=2, therm=20, sweeps=200, seed=2,
                       progress=False)
        recorded = {k for k in ("acceptance", "changed", "cluster_size") if k in res.series}
        assert recorded == {name}, (algorithm, recorded)
        v = res.series[name]
        assert v.shape == (200, 2) and np.all((v >= 0) & (v <= 1))
        assert name in res.observables
