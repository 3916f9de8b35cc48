import numpy as np
import pytest

from portable_lattice import Phi4
from portable_lattice.backends import get_backend
from portable_lattice.samplers import PEM, FieldState, surrogate_metropolis
from portable_lattice.surrogates import ExactGradient, NoisyOracle

A = Phi4.from_beta_g(0.5, 0.1)


class Counting:
    """Wraps a provider and counts its calls (network calls per sweep)."""

    def __init__(self, inner, receptive_field=None):
        self.inner, self.calls = inner, 0
        self.n_members = inner.n_members
        self.receptive_field = inner.receptive_field if receptive_field is None else receptive_field

    def __call__(self, phi):
        self.calls += 1
        return self.inner(phi)


def test_parallel_equals_sequential_scan_update_by_update(backend):
    """One provider call per sublattice gives exactly what a site-by-site scan of that sublattice gives."""
    xp = backend.xp
    L, stride = 6, 2
    kernel = surrogate_metropolis(A, ExactGradient(A), 1.1, "parallel")
    rng = backend.rng(5)
    phi0 = rng.normal((2, L, L), xp.float64)
    state, _ = kernel.step(kernel.init(phi0), rng)
    # replay the same random numbers with a sequential scan over each sublattice's sites
    rng = backend.rng(5)
    rng.normal((2, L, L), xp.float64)
    phi = backend.to_numpy(phi0).copy()
    for oy in range(stride):  # sublattice_masks: the first axis's offset varies fastest
        for ox in range(stride):
            delta = backend.to_numpy(1.1 * rng.normal((2, L, L), xp.float64))
            u = backend.to_numpy(rng.uniform((2, L, L), xp.float64))
            for x in range(ox, L, stride):
                for y in range(oy, L, stride):
                    grad = A.grad_action(phi)  # re-evaluated after every single-site update
                    for c in range(2):
                        d = np.zeros_like(phi)
                        d[c, x, y] = delta[c, x, y]
                        dS = A.local_delta_action(phi, d, grad)[c, x, y]
                        if np.log(u[c, x, y]) < -dS:
                            phi[c, x, y] += delta[c, x, y]
    np.testing.assert_allclose(backend.to_numpy(state.phi), phi, rtol=0, atol=1e-12)


def test_network_calls_per_sweep():
    be = get_backend("numpy")
    L = 48
    for r in (1, 3):
        par = Counting(ExactGradient(A), receptive_field=r)
        seq = Counting(ExactGradient(A), receptive_field=r)
        phi = be.rng(0).normal((1, L, L), np.float64)
        surrogate_metropolis(A, par, 1.0, "parallel").step(FieldState(phi), be.rng(1))
        surrogate_metropolis(A, seq, 1.0, "sequential").step(FieldState(phi), be.rng(1))
        assert par.calls == (r + 1) ** 2 and seq.calls == L * L
        assert seq.calls / par.calls >= 50


def test_sequential_mode_samples_correctly():
    """Sequential mode with the exact gradient is the PEM paper's ground-truth algorithm:
    at beta = 0 every site is independent with known moments."""
    from portable_lattice.conformance.exact import single_site_moments
    be = get_backend("numpy")
    act = Phi4.from_beta_g(0.0, 0.5)
    k = surrogate_metropolis(act, ExactGradient(act), 1.5, "sequential")
    rng = be.rng(2)
    state = k.init(rng.normal((8, 4, 4), np.float64))
    vals = []
    for i in range(300):
        state, _ = k.step(state, rng)
        if i >= 50:
            vals.append((state.phi ** 2).mean(axis=(1, 2)))
    vals = np.array(vals)
    from portable_lattice.statistics import gamma_method
    est = gamma_method(vals)
    assert abs(est.z(single_site_moments(0.5)[2])) < 4


def test_oracle_statistics(backend):
    orc = NoisyOracle(A, 0.7, 10, backend.rng(3))
    phi = backend.rng(4).normal((400, 4, 4), backend.xp.float64)
    mean, var = orc(phi)
    resid = backend.to_numpy(mean - A.grad_action(phi))
    assert abs(resid.std() - 0.7 / np.sqrt(10)) < 0.01
    assert abs(backend.to_numpy(var).mean() - 0.49) < 0.02


def test_bad_input(backend):
    phi = backend.rng(0).normal((2, 6, 6), backend.xp.float64)
    with pytest.raises(ValueError, match="N >= 2"):
        PEM(A, ExactGradient(A))
    with pytest.raises(ValueError, match="mode='batched'"):
        surrogate_metropolis(A, ExactGradient(A), 1.0, "batched")
    with pytest.raises(ValueError, match="stride-4 sublattices .*L=6"):  # receptive field 3: stride 4 vs L = 6
        surrogate_metropolis(A, Counting(ExactGradient(A), receptive_field=3), 1.0).init(phi)

    class WrongShape:
        n_members, receptive_field = 2, 1

        def __call__(self, p):
            return p[:, :3, :], None
    with pytest.raises(ValueError, match="shape"):
        surrogate_metropolis(A, WrongShape(), 1.0).step(FieldState(phi), backend.rng(1))

    class NaNAt:
        n_members, receptive_field = 2, 1

        def __call__(self, p):
            host = backend.to_numpy(A.grad_action(p)).copy()
            host[1, 2, 3] = np.nan
            return backend.from_numpy(host), backend.from_numpy(np.ones(host.shape))
    with pytest.raises(FloatingPointError, match=r"chain 1, site \(2, 3\)"):
        PEM(A, NaNAt(), 1.0).step(FieldState(phi), backend.rng(1))


def test_training_data_in_the_broken_phase_has_no_domain_walls():
    """beta = 0.7 (ordered): every configuration sits in one magnetised sector, both signs occur.
    A hot start left stripes across the torus (|m| near 0) and a cold HMC start stuck chains at
    their start; the exact bulk value is |m| ~ 1.49 at L = 48 (deterministic given the seed)."""
    from portable_lattice.surrogates.data import gradient_dataset
    phi, grad = gradient_dataset(Phi4.from_beta_g(0.7, 0.1), 24, 32, chains=8, therm=100, spacing=4, seed=3)
    m = np.asarray(phi).mean(axis=(1, 2))
    assert np.all(np.abs(m) > 1.2) and np.all(np.abs(m) < 1.8)
    assert np.any(m > 0) and np.any(m < 0)
    assert len(np.unique(np.round(m, 12))) == m.size  # no chain frozen at its start
    np.testing.assert_allclose(np.asarray(grad), np.asarray(Phi4.from_beta_g(0.7, 0.1).grad_action(phi)))


def test_training_data_from_a_stored_ensemble(tmp_path):
    pytest.importorskip("zarr")
    import warnings

    import portable_lattice as pl
    from portable_lattice.surrogates.data import stored_gradient_dataset
    theory = pl.Phi4.from_beta_g(0.5, 0.1)
    out = str(tmp_path / "ens")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pl.simulate(theory, L=6, chains=2, therm=5, sweeps=20, save_every=2, out=out, seed=1)
    phi, grad = stored_gradient_dataset(theory, out)
    assert tuple(phi.shape) == (20, 6, 6)  # 10 saved x 2 chains
    np.testing.assert_allclose(np.asarray(grad), np.asarray(theory.grad_action(phi)))
    with pytest.raises(ValueError, match="beta"):
        stored_gradient_dataset(pl.Phi4.from_beta_g(0.45, 0.1), out)
    with pytest.raises(ValueError, match="exceeds"):
        stored_gradient_dataset(theory, out, n_configs=100)
