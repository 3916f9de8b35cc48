"""The O(n) kernels (:mod:`portable_lattice.samplers.vector`): exact energies on the periodic
chain, the 2D XY model by two algorithms, overrelaxation's invariants, the heat-bath draws,
reproducibility on every backend, and bad input.

Statistical checks: chains are independent, so the error of a mean of per-chain time averages
is the standard deviation of those averages over sqrt(chains) (autocorrelation included). Each
check asserts |z| < 4.5: a false alarm for a correct kernel has probability about 7e-6 per
check for a normal z (about 2e-5 with the t distribution of 128 estimated chain means). The
seeds are fixed, so an outcome is reproducible.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from portable_lattice.backends import capability, get_backend
from portable_lattice.exact import on_chain
from portable_lattice.samplers import Cycle, SwendsenWang
from portable_lattice.samplers.vector import (VectorCheckerboard, VectorRandomSite, VectorSwendsenWang, VectorWolff,
                                              heisenberg_cos, von_mises)
from portable_lattice.theories import ON, Ising

NUMPY = get_backend("numpy")
Z_MAX = 4.5  # two-sided normal tail 6.8e-6 per check


def _make(kind: str, theory: ON):
    return {"metropolis": lambda: VectorCheckerboard(theory, "metropolis", step_size=1.2),
            "heatbath": lambda: VectorCheckerboard(theory, "heatbath"),
            "random_site": lambda: VectorRandomSite(theory, step_size=1.2),
            "swendsen_wang": lambda: VectorSwendsenWang(theory),
            "wolff": lambda: VectorWolff(theory),
            "metropolis+overrelax": lambda: Cycle([VectorCheckerboard(theory, "metropolis", step_size=1.2),
                                                   VectorCheckerboard(theory, "overrelax")])}[kind]()


def _chain_means(kernel, backend, shape, therm, sweeps, seed, observables):
    """Per-chain time averages of each observable (a function of the numpy configuration)."""
    th = kernel.theory
    state = kernel.init(th.random(backend.rng(seed), shape, backend.dtype("float64")))
    rng = backend.rng(seed + 1000)
    for _ in range(therm):
        state, _ = kernel.step(state, rng)
    sums = [0.0] * len(observables)
    for _ in range(sweeps):
        state, _ = kernel.step(state, rng)
        s = backend.to_numpy(state.phi)
        sums = [acc + f(s) for acc, f in zip(sums, observables)]
    return [acc / sweeps for acc in sums]


def _energy_per_site(theory, L, d=1):
    return lambda s: -theory.J * sum(np.sum(s * np.roll(s, -1, axis=mu + 2), axis=tuple(range(1, s.ndim)))
                                     for mu in range(d)) / L ** d


def _z(means, want):
    m = np.mean(means)
    err = np.std(means, ddof=1) / np.sqrt(len(means))
    return (m - want) / err, m, err


KINDS = ["metropolis", "heatbath", "random_site", "swendsen_wang", "wolff", "metropolis+overrelax"]


def _chi(L):
    """<M . M> / L of a chain, per configuration."""
    return lambda s: np.sum(np.sum(s, axis=2) ** 2, axis=1) / L


def _check_exact(kernel, backend, n, L, chains, therm, sweeps, seed):
    theory = kernel.theory
    e, chi = _chain_means(kernel, backend, (chains, n, L), therm, sweeps, seed, [_energy_per_site(theory, L), _chi(L)])
    exact = on_chain(n, L, theory.beta, theory.J)
    for name, means in (("energy", e), ("chi", chi)):
        z, m, err = _z(means, exact[name])
        assert abs(z) < Z_MAX, f"{name}: {m:.5f} +- {err:.5f}, exact {exact[name]:.5f} (z={z:.2f})"


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_chain_energy_is_exact_numpy(kind, n):
    """Energy per site and chi = <M . M> / L on the periodic chain L = 8 at beta = 1 (128 chains)."""
    _check_exact(_make(kind, ON(1.0, n=n)), NUMPY, n, 8, 128, 60, 600, seed=10 * n + KINDS.index(kind))


@pytest.mark.parametrize("kind,n", [("heatbath", 2), ("metropolis+overrelax", 3), ("swendsen_wang", 2),
                                    ("random_site", 3), ("wolff", 3)])
def test_chain_energy_is_exact_on_every_backend(backend, kind, n):
    _check_exact(_make(kind, ON(1.0, n=n)), backend, n, 6, 64, 40, 120, seed=7 * n + 3)


def test_field_and_antiferromagnet_agree_between_random_site_and_heat_bath():
    """No exact value with a field; two exact samplers of the same conditional weights must agree
    (the random-site kernel takes its local field from a three-site ring, h included)."""
    theory = ON(0.9, n=3, J=-0.7, h=0.5)
    L = 6
    obs = [_energy_per_site(theory, L), lambda s: np.mean(s[:, 0], axis=1)]
    a = _chain_means(VectorRandomSite(theory), NUMPY, (64, 3, L), 40, 150, 1, obs)
    b = _chain_means(VectorCheckerboard(theory, "heatbath"), NUMPY, (64, 3, L), 40, 150, 2, obs)
    for name, x, y in zip(("energy", "m0"), a, b):
        diff = np.mean(x) - np.mean(y)
        err = np.hypot(np.std(x, ddof=1), np.std(y, ddof=1)) / np.sqrt(64)
        assert abs(diff / err) < Z_MAX, f"{name}: random site {np.mean(x):.5f}, heat bath {np.mean(y):.5f}, +- {err:.5f}"
    # the field is felt: the magnetisation along it is clearly positive (and the energy includes -h m0)
    assert np.mean(a[1]) > 0.05


def test_xy_2d_swendsen_wang_agrees_with_metropolis():
    """The 2D XY model at beta = 1.0 (near the BKT point) on L = 8: no exact value, two algorithms."""
    theory, L, chains = ON(1.0, n=2), 8, 32
    obs = [_energy_per_site(theory, L, d=2)]
    (sw,) = _chain_means(VectorSwendsenWang(theory), NUMPY, (chains, 2, L, L), 50, 200, 5, obs)
    (mc,) = _chain_means(VectorCheckerboard(theory, "metropolis", step_size=1.5, hits=2), NUMPY,
                         (chains, 2, L, L), 100, 300, 6, obs)
    diff = np.mean(sw) - np.mean(mc)
    err = np.hypot(np.std(sw, ddof=1), np.std(mc, ddof=1)) / np.sqrt(chains)
    assert abs(diff / err) < Z_MAX, f"SW {np.mean(sw):.5f}, Metropolis {np.mean(mc):.5f}, +- {err:.5f}"
    assert -1.5 < np.mean(sw) < -1.0  # 2D XY at beta = 1: about -1.2 per site


def test_overrelaxation_conserves_energy_and_length(backend):
    xp = backend.xp
    theory = ON(0.8, n=3, J=0.9, h=0.3)
    s = theory.random(backend.rng(3), (3, 3, 6, 6), xp.float64)
    kernel = VectorCheckerboard(theory, "overrelax")
    state, rng = kernel.init(s), backend.rng(4)
    e0 = backend.to_numpy(theory.energy(s))
    for _ in range(20):
        state, info = kernel.step(state, rng)
        assert np.all(backend.to_numpy(info.changed) == 1.0)  # a random start has f != 0 everywhere
    out = backend.to_numpy(state.phi)
    np.testing.assert_allclose(backend.to_numpy(theory.energy(state.phi)), e0, rtol=1e-10, atol=0)
    np.testing.assert_allclose(np.sum(out * out, axis=1), 1.0, rtol=0, atol=1e-12)
    assert np.max(np.abs(out - backend.to_numpy(s))) > 0.5  # it moves the spins


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_heat_bath_draws_have_the_exact_mean(dtype):
    """<cos theta> of the n = 2 draw is I1(k)/I0(k) (von Mises), of the n = 3 draw coth(a) - 1/a,
    from kappa = 0 (uniform) through 1e6 (the cancellation-prone ends)."""
    ks = np.array([0.0, 1e-14, 1e-3, 0.5, 1.0, 4.0, 40.0, 1e3, 1e6])
    N = 40000
    kappa = NUMPY.from_numpy(np.repeat(ks[None, :], N, 0), dtype)
    rng = NUMPY.rng(11)
    cos, sin = von_mises(kappa, np.ones(kappa.shape, bool), rng)
    cos, sin = cos.astype(float), sin.astype(float)
    want = special.i1e(ks) / special.i0e(ks)
    var = 0.5 * (1 + special.ive(2, ks) / special.i0e(ks)) - want ** 2
    z = (cos.mean(0) - want) / np.sqrt(var / N)
    assert np.all(np.abs(z) < Z_MAX), z
    np.testing.assert_allclose(cos ** 2 + sin ** 2, 1.0, atol=1e-5 if dtype == "float32" else 1e-14)
    assert np.all(np.abs(sin.mean(0)) < Z_MAX * np.sqrt(np.maximum(sin.var(0), 1e-30) / N))  # symmetric
    c3, s3 = heisenberg_cos(rng.uniform(kappa.shape, np.dtype(dtype)), kappa)
    c3 = c3.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        want3 = np.where(ks > 1e-4, 1 / np.tanh(ks) - 1 / ks, ks / 3)
    z3 = (c3.mean(0) - want3) / np.sqrt(np.maximum(c3.var(0), 1e-30) / N)
    assert np.all(np.abs(z3) < Z_MAX), z3
    assert np.all(np.isfinite(c3)) and np.all(np.abs(c3) <= 1) and np.all(np.isfinite(s3))


VECTOR_KERNELS = [
    (VectorCheckerboard(ON(0.7, n=3), "metropolis", hits=2), "acceptance"),
    (VectorCheckerboard(ON(0.7, n=2, h=0.2), "heatbath"), "changed"),
    (VectorCheckerboard(ON(0.7, n=3, J=-1.0), "heatbath"), "changed"),
    (VectorCheckerboard(ON(0.7, n=4), "overrelax"), "changed"),
    (VectorRandomSite(ON(0.7, n=2, h=0.1)), "acceptance"),
    (VectorSwendsenWang(ON(0.7, n=3)), "changed"),
    (VectorWolff(ON(0.7, n=2)), "cluster_size"),
]


@pytest.mark.parametrize("case", VECTOR_KERNELS, ids=lambda c: f"{type(c[0]).__name__}-{getattr(c[0], 'update', '')}")
def test_steps_reproducible_in_range_every_dimension(backend, case):
    kernel, field = case
    n = kernel.theory.n
    for d in (1, 2, 3, 4):
        shape = (2, n) + (4,) * d
        s = kernel.theory.random(backend.rng(d), shape, backend.dtype("float64"))
        before = backend.to_numpy(s).copy()
        outs = []
        for _ in range(2):
            state, rng = kernel.init(s), backend.rng(42)
            for _ in range(2):
                state, info = kernel.step(state, rng)
            outs.append(backend.to_numpy(state.phi))
            v = backend.to_numpy(getattr(info, field))
            assert v.shape == (2,) and v.dtype == np.float64 and np.all((0 <= v) & (v <= 1))
        kernel.theory.check_field(state.phi)                      # unit vectors, same shape
        assert np.array_equal(outs[0], outs[1])                   # same seed: bit for bit
        assert not np.array_equal(outs[0], before)                # it moved
        assert np.array_equal(backend.to_numpy(s), before)        # the caller's array is untouched


def test_float32_configurations_stay_float32(backend):
    theory = ON(0.5, n=2)
    s = theory.random(backend.rng(0), (2, 2, 4, 4), backend.xp.float32)
    for kernel in (VectorCheckerboard(theory, "heatbath"), VectorRandomSite(theory), VectorWolff(theory)):
        state, _ = kernel.step(kernel.init(s), backend.rng(1))
        assert state.phi.dtype == backend.xp.float32
        theory.check_field(state.phi)


def test_random_site_fast_path_equals_generic(backend):
    present, why = capability("inplace_site_writes", backend.name, str(backend.device))
    if not present:
        pytest.skip(why)
    theory = ON(0.9, n=3, h=0.2)
    s = theory.random(backend.rng(0), (3, 3, 5, 5), backend.xp.float64)
    out = []
    for inplace in (False, True):
        kernel = VectorRandomSite(theory, step_size=0.8, inplace=inplace)
        state, rng = kernel.init(s), backend.rng(9)
        for _ in range(3):
            state, info = kernel.step(state, rng)
        out.append((backend.to_numpy(state.phi), backend.to_numpy(info.acceptance)))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])


def test_bad_input_is_named():
    xy = ON(1.0, n=2)
    with pytest.raises(ValueError, match=r"update must be one of .* got update='x'"):
        VectorCheckerboard(xy, update="x")
    with pytest.raises(ValueError, match="step_size must be positive, got step_size=0"):
        VectorCheckerboard(xy, step_size=0)
    with pytest.raises(ValueError, match="step_size must be positive"):
        VectorRandomSite(xy, step_size=-1.0)
    with pytest.raises(ValueError, match="hits must be a positive integer, got hits=0"):
        VectorCheckerboard(xy, hits=0)
    with pytest.raises(ValueError, match="hits must be 1 for update='overrelax'"):
        VectorCheckerboard(xy, "overrelax", hits=2)
    with pytest.raises(ValueError, match=r"heat bath is implemented for n = 2, 3, got n=4"):
        VectorCheckerboard(ON(1.0, n=4), "heatbath")
    with pytest.raises(ValueError, match="even L >= 2, got L=5"):
        VectorCheckerboard(xy).init(xy.random(NUMPY.rng(0), (2, 2, 5, 5), np.float64))
    for cls in (VectorWolff, VectorSwendsenWang):
        with pytest.raises(ValueError, match=r"J >= 0 and h = 0, got J=-1.0"):
            cls(ON(1.0, n=3, J=-1.0))
        with pytest.raises(ValueError, match=r"h = 0, got J=1.0, h=0.5"):
            cls(ON(1.0, n=3, h=0.5))
    with pytest.raises(TypeError, match="theory must be an O\\(n\\) model .* got Ising"):
        VectorCheckerboard(Ising(beta=0.4))
    with pytest.raises(TypeError, match="theory must be an O\\(n\\) model"):
        VectorWolff(Ising(beta=0.4))
    with pytest.raises(TypeError, match="inplace must be True, False or None"):
        VectorRandomSite(xy, inplace="yes")
    # init validates the configuration with the theory
    with pytest.raises(ValueError, match="shape"):
        VectorSwendsenWang(xy).init(np.ones((2, 3, 4, 4)) / np.sqrt(3))
    with pytest.raises(ValueError, match="unit vectors"):
        VectorRandomSite(xy).init(np.ones((2, 2, 4, 4)))
    # the scalar cluster kernels refuse the vector model (and the vector ones the scalar models)
    with pytest.raises(ValueError):
        SwendsenWang(xy)


@pytest.mark.parametrize("stream", ["native", "philox"])
@pytest.mark.parametrize("n,d,dtype,h", [(2, 2, "float64", 0.0), (3, 3, "float64", 0.3), (2, 3, "float32", 0.3),
                                         (4, 2, "float32", 0.0)])
def test_fused_metropolis_is_the_generic_twin(stream, n, d, dtype, h):
    """fused=True (Numba, numpy arrays) gives the generic sweep's spins and acceptances bit for bit."""
    pytest.importorskip("numba")
    from portable_lattice.backends import get_backend
    from portable_lattice.philox import PhiloxGenerator
    be = get_backend("numpy")
    L = 8 if d == 2 else 4
    s0 = np.random.default_rng(0).standard_normal((3, n) + (L,) * d)
    s0 /= np.linalg.norm(s0, axis=1, keepdims=True)
    runs = []
    for fused in (False, True):
        kernel = VectorCheckerboard(ON(0.9, n=n, h=h), "metropolis", step_size=0.8, hits=2, fused=fused)
        rng = be.rng(5) if stream == "native" else PhiloxGenerator(be.xp, 5)
        state, acc = kernel.init(be.from_numpy(s0, dtype)), []
        for _ in range(3):
            state, info = kernel.step(state, rng)
            acc.append(np.asarray(info.acceptance))
        runs.append((np.asarray(state.phi), np.array(acc)))
    assert 0.2 < runs[0][1].mean() < 0.95
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_fused_metropolis_where_there_is_none():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="heat"):
        VectorCheckerboard(ON(1.0), "heatbath", fused=True)
    with pytest.raises(TypeError, match="fused"):
        VectorCheckerboard(ON(1.0), fused=1)
    with pytest.raises(ValueError, match="fused_vector_metropolis"):
        VectorCheckerboard(ON(1.0), fused=True).init(torch.ones((1, 2, 4, 4), dtype=torch.float64) / 2 ** 0.5)
