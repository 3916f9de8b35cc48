"""The fused measurements (one pass per configuration) against the generic measurement: equal up to
the order of summation for phi^4, exactly for Ising; theories without a fused twin run the generic path."""
import numpy as np
import pytest

from portable_lattice import EdwardsAnderson, Ising, Phi4, simulate
from portable_lattice._delegation import fused_kernel
from portable_lattice.backends import get_backend
from portable_lattice.observables import measure_phi4, measure_spins

pytest.importorskip("numba")
BACKENDS = [b for b in ("numpy", "torch") if b == "numpy" or pytest.importorskip("torch")]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", [(3, 5), (4, 6, 6), (2, 3, 3), (2, 4, 4, 4), (1, 2, 2, 2)])
def test_phi4_fused_measurement_equals_generic(backend, dtype, shape):
    be = get_backend(backend)
    phi = be.from_numpy(np.random.default_rng(len(shape)).normal(size=shape), dtype)
    assert fused_kernel("measure_phi4", phi) is not None
    theory = Phi4.from_kappa_lambda(0.21, 0.022)
    a, b = measure_phi4(phi, theory), measure_phi4(phi, theory, fused=True)
    assert a.keys() == b.keys()
    tol = 1e-12 if dtype == "float64" else 2e-5
    for k in a:
        x, y = be.to_numpy(a[k]), be.to_numpy(b[k])
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_allclose(y, x, rtol=tol, atol=tol * np.abs(x).max(), err_msg=k)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", [(3, 7), (4, 8, 8), (2, 3, 3), (2, 4, 4, 4)])
def test_ising_fused_measurement_is_exact(backend, dtype, shape):
    be = get_backend(backend)
    theory = Ising(beta=0.3, J=0.7, h=0.2)
    s = theory.random(be.rng(1), shape, be.xp.float64)
    dt = be.dtype(dtype)
    a, b = measure_spins(s, theory, dt), measure_spins(s, theory, dt, fused=True)
    for k in a:
        assert np.array_equal(be.to_numpy(a[k]), be.to_numpy(b[k])), k


def test_edwards_anderson_takes_the_generic_path():
    be = get_backend("numpy")
    theory = EdwardsAnderson.gaussian(4, 2, 3, beta=0.5, backend=be)
    s = theory.random(be.rng(0), (2, 4, 4), np.float64)
    a, b = measure_spins(s, theory, np.float64), measure_spins(s, theory, np.float64, fused=True)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_fused_run_measures_as_the_generic_run():
    """fused=True changes the sweep's implementation and the measurement's summation order only:
    the series agree with the generic run's to rounding (the chains are the same)."""
    kw = dict(L=8, chains=2, therm=3, sweeps=20, seed=4, stream="philox", algorithm="checkerboard", progress=False)
    with pytest.warns(Warning):
        a = simulate(Phi4.from_beta_g(0.5, 0.1), **kw)
        b = simulate(Phi4.from_beta_g(0.5, 0.1), fused=True, **kw)
    for k in a.series:
        np.testing.assert_allclose(b.series[k], a.series[k], rtol=1e-12, atol=1e-12, err_msg=k)
    c = simulate(Ising(beta=0.4), **kw)
    d = simulate(Ising(beta=0.4), fused=True, **kw)
    assert all(np.array_equal(c.series[k], d.series[k]) for k in c.series)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fused_hot_start_is_the_generic_draw(backend, dtype):
    """A fused Philox run draws its hot start with the fused normals: the same numbers, and the
    stream's counter where the generic draw leaves it."""
    from portable_lattice.runs.spec import RunSpec
    kw = dict(L=6, dim=3, chains=3, stream="philox", backend=backend, dtype=dtype, algorithm="hmc", seed=9)
    a = RunSpec(Phi4.from_beta_g(0.5, 0.1), **kw).prepare()
    b = RunSpec(Phi4.from_beta_g(0.5, 0.1), knobs={"fused": True}, **kw).prepare()
    be = get_backend(backend)
    assert np.array_equal(be.to_numpy(a.start), be.to_numpy(b.start)) and be.to_numpy(b.start).dtype == dtype
    assert a.rng.draws == b.rng.draws


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dim", [2, 3])
def test_fused_spin_hot_start_is_the_generic_draw(backend, dim):
    from portable_lattice.runs.spec import RunSpec
    kw = dict(L=6, dim=dim, chains=3, stream="philox", backend=backend, algorithm="checkerboard", seed=9)
    a = RunSpec(Ising(beta=0.4), **kw).prepare()
    b = RunSpec(Ising(beta=0.4), knobs={"fused": True}, **kw).prepare()
    be = get_backend(backend)
    assert np.array_equal(be.to_numpy(a.start), be.to_numpy(b.start)) and a.rng.draws == b.rng.draws


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(2, 7), (3, 4, 5), (1, 3, 3, 3)])
def test_fused_philox_uniforms_bit_for_bit(dtype, shape):
    from portable_lattice.philox import PhiloxGenerator
    from portable_lattice.samplers.fused import FusedUniforms
    a, b = PhiloxGenerator(np, 5), PhiloxGenerator(np, 5)
    a.uniform((3, 3), np.float64), b.uniform((3, 3), np.float64)  # not the first draw
    x = a.uniform(shape, getattr(np, dtype))
    y = FusedUniforms(b, np.zeros(1)).uniform(shape, getattr(np, dtype))
    assert x.dtype == y.dtype and np.array_equal(x, y) and a.draws == b.draws
