"""Every kernel on array_api_strict with its strictest flags, and on read-only NumPy input.

The strict backend refuses boolean indexing and data-dependent shapes; a read-only
NumPy start configuration makes any write into the caller's array raise. Every
algorithm of every theory family runs a few steps under both.
"""
import numpy as np
import pytest

import portable_lattice as pl
from portable_lattice.backends import get_backend
from portable_lattice.runs.simulate import ALGORITHMS, make_kernel

THEORIES = {
    "phi4": lambda: pl.Phi4.from_beta_g(0.5, 0.1),
    "ising": lambda: pl.Ising(beta=0.4),
    "ising-h": lambda: pl.Ising(beta=0.4, h=0.2),
    "potts": lambda: pl.Potts(beta=1.0, q=3),
    "clock": lambda: pl.Clock(beta=1.0, q=4),
    "ea": lambda: pl.EdwardsAnderson.gaussian(4, 2, seed=1, beta=0.5, backend=get_backend("numpy")),
}


def _cases():
    for name, make in THEORIES.items():
        fam = "field" if name == "phi4" else "spins"
        for alg in ALGORITHMS[fam]:
            theory = make()
            try:
                make_kernel(theory, alg)
            except ValueError:
                continue  # not defined for this theory (clusters for clock/EA/field h)
            yield pytest.param(name, alg, id=f"{name}-{alg}")


def _start(theory, rng, be, shape):
    if isinstance(theory, pl.Phi4):
        return rng.normal(shape, be.xp.float64)
    return theory.random(rng, shape, be.xp.float64)


@pytest.mark.parametrize("name,alg", list(_cases()))
def test_kernel_on_strict_backend_with_strictest_flags(name, alg):
    be = get_backend("array_api_strict")
    theory = THEORIES[name]()
    if isinstance(theory, pl.EdwardsAnderson):
        theory = theory.with_couplings(be.from_numpy(np.asarray(theory.couplings)))
    kernel = make_kernel(theory, alg)
    rng = be.rng(2)
    state = kernel.init(_start(theory, rng, be, (2, 4, 4)))
    for _ in range(2):
        state, info = kernel.step(state, rng)
    assert tuple(state.config.shape) == (2, 4, 4)


@pytest.mark.parametrize("name,alg", list(_cases()))
def test_kernel_never_writes_into_a_read_only_start(name, alg):
    be = get_backend("numpy")
    theory = THEORIES[name]()
    kernel = make_kernel(theory, alg)
    rng = be.rng(2)
    start = np.array(_start(theory, rng, be, (2, 4, 4)))
    start.setflags(write=False)
    before = start.copy()
    state = kernel.init(start)
    for _ in range(2):
        state, _ = kernel.step(state, rng)
    np.testing.assert_array_equal(start, before)


def test_bad_spins_raise_value_error_under_strict_flags():
    be = get_backend("array_api_strict")
    bad = be.from_numpy(np.array([[[1, -1], [3, 1]]], dtype=np.int8))
    with pytest.raises(ValueError, match="e.g. 3"):
        pl.Ising(beta=0.3).check_spins(bad)
    with pytest.raises(ValueError, match="e.g. 5"):
        pl.Potts(beta=0.3, q=3).check_spins(be.from_numpy(np.array([[[0, 5], [1, 2]]], dtype=np.int8)))
