import numpy as np
import pytest

from portable_lattice.backends.capabilities import capability

from portable_lattice import Phi4
from portable_lattice.backends import backend_of
from portable_lattice.samplers import (HMC, LEAPFROG, MALA, OMELYAN, CheckerboardMetropolis, GaussianShift,
                                       Integrator, Langevin, RandomSiteMetropolis, integrate)

ACTION = Phi4.from_beta_g(0.5, 0.1)


def _field(backend, shape=(3, 6, 6), seed=0, dtype="float64"):
    return backend.rng(seed).normal(shape, backend.dtype(dtype))


KERNELS = [CheckerboardMetropolis(ACTION, GaussianShift(1.0), hits=2),
           RandomSiteMetropolis(ACTION, GaussianShift(1.0)),
           HMC(ACTION, 1.0, 5), HMC(ACTION, 1.0, 3, "omelyan"), Langevin(ACTION, 0.05), MALA(ACTION, 0.05)]


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: type(k).__name__)
def test_kernel_step_shapes_and_reproducibility(backend, kernel):
    phi = _field(backend)
    before = backend.to_numpy(phi).copy()
    outs = []
    for _ in range(2):
        rng = backend.rng(42)
        state = kernel.init(phi)
        for _ in range(2):
            state, info = kernel.step(state, rng)
        outs.append(backend.to_numpy(state.phi))
        # everything a step returns lives on the field's device (a CPU acceptance broke torch:cuda runs)
        for a in (state.phi, info.acceptance):
            assert str(backend_of(a).device) == str(backend.device)
        acc = backend.to_numpy(info.acceptance)
        assert acc.shape == (3,) and np.all((0 <= acc) & (acc <= 1))
    assert np.array_equal(outs[0], outs[1])          # same seed: bit for bit
    assert not np.array_equal(outs[0], before)       # it moved
    assert np.array_equal(backend.to_numpy(phi), before)  # the caller's array is untouched
    assert outs[0].shape == (3, 6, 6)


def test_float32_runs(backend):
    kernel = CheckerboardMetropolis(ACTION, GaussianShift(1.0))
    state, _ = kernel.step(kernel.init(_field(backend, dtype="float32")), backend.rng(1))
    assert state.phi.dtype == backend.xp.float32


def test_random_site_fast_path_equals_generic(backend):
    phi = _field(backend, (2, 5, 5))
    out = []
    for inplace in (False, True):
        present, why = capability("inplace_site_writes", backend.name, str(backend.device))
        if inplace and not present:
            pytest.skip(why)
        k = RandomSiteMetropolis(ACTION, GaussianShift(1.3), inplace=inplace)
        rng, state = backend.rng(9), k.init(phi)
        for _ in range(3):
            state, _ = k.step(state, rng)
        out.append(backend.to_numpy(state.phi))
    np.testing.assert_array_equal(out[0], out[1])


def test_random_site_matches_a_hand_written_sweep():
    """The PEM paper's algorithm, written out in plain Python for one chain, same random numbers."""
    from portable_lattice.backends import get_backend
    be = get_backend("numpy")
    L, step = 4, 0.9
    phi0 = np.random.default_rng(3).normal(size=(1, L, L))
    k = RandomSiteMetropolis(ACTION, GaussianShift(step))
    state, _ = k.step(k.init(phi0), be.rng(5))
    g = be.rng(5)
    sites = g.integers(L * L, (L * L, 1))[:, 0]
    deltas = step * g.normal((L * L, 1), np.float64)[:, 0]
    logu = np.log(g.uniform((L * L, 1), np.float64)[:, 0])
    phi = phi0.copy()
    for s, d, lu in zip(sites, deltas, logu):
        new = phi.copy()
        new[0, s // L, s % L] += d
        dS = ACTION.action(new)[0] - ACTION.action(phi)[0]
        if lu < -dS:
            phi = new
    np.testing.assert_allclose(state.phi, phi, rtol=0, atol=1e-12)


def test_integrator_sequences_merge_kicks():
    assert LEAPFROG.sequence(3) == [("kick", 0.5), ("drift", 1.0), ("kick", 1.0), ("drift", 1.0),
                                    ("kick", 1.0), ("drift", 1.0), ("kick", 0.5)]
    assert sum(c for k, c in OMELYAN.sequence(4) if k == "drift") == pytest.approx(4.0)
    with pytest.raises(ValueError, match="coefficients"):
        Integrator("bad", (0.5, 1.0))


@pytest.mark.parametrize("integrator", [LEAPFROG, OMELYAN], ids=["leapfrog", "omelyan"])
def test_hmc_reversibility(backend, integrator):
    xp = backend.xp
    phi = 0.5 * _field(backend, (4, 8, 8), 1)
    p = _field(backend, (4, 8, 8), 2)
    g = ACTION.grad_action(phi)
    phi1, p1, g1 = integrate(phi, p, g, ACTION.grad_action, 0.1, 10, integrator)
    phi2, p2, _ = integrate(phi1, -p1, g1, ACTION.grad_action, 0.1, 10, integrator)
    assert float(xp.max(xp.abs(phi2 - phi))) < 1e-10
    assert float(xp.max(xp.abs(p2 + p))) < 1e-10


def test_hmc_energy_error_scales_as_dt_squared(backend):
    xp = backend.xp
    phi, p = 0.5 * _field(backend, (16, 8, 8), 3), _field(backend, (16, 8, 8), 4)
    h0 = ACTION.action(phi) + 0.5 * xp.sum(p * p, axis=(1, 2))
    rms = []
    for n in (10, 20, 40):
        phi1, p1, _ = integrate(phi, p, ACTION.grad_action(phi), ACTION.grad_action, 1.0 / n, n)
        dH = ACTION.action(phi1) + 0.5 * xp.sum(p1 * p1, axis=(1, 2)) - h0
        rms.append(float(xp.sqrt(xp.mean(dH * dH))))
    slope = np.polyfit(np.log([0.1, 0.05, 0.025]), np.log(rms), 1)[0]
    assert abs(slope - 2) < 0.15


def test_hmc_rejects_divergent_trajectories(backend):
    """A huge step blows up the integrator: dH is inf/nan, the move is rejected, the field kept."""
    k = HMC(Phi4.from_beta_g(0.5, 5.0), traj_length=50.0, n_steps=2)
    phi = _field(backend, (2, 4, 4))
    state, info = k.step(k.init(phi), backend.rng(0))
    assert np.all(backend.to_numpy(info.acceptance) == 0)
    np.testing.assert_array_equal(backend.to_numpy(state.phi), backend.to_numpy(phi))


def test_bad_sampler_input(backend):
    with pytest.raises(ValueError, match="step_size=0"):
        CheckerboardMetropolis(ACTION, GaussianShift(0))
    with pytest.raises(ValueError, match="step_size=-1"):
        RandomSiteMetropolis(ACTION, GaussianShift(-1.0))
    with pytest.raises(ValueError, match="hits=0"):
        CheckerboardMetropolis(ACTION, GaussianShift(1.0), hits=0)
    with pytest.raises(ValueError, match="dt=0"):
        Langevin(ACTION, 0.0)
    with pytest.raises(ValueError, match="n_steps=0"):
        HMC(ACTION, 1.0, 0)
    with pytest.raises(ValueError, match="integrator='verlet'"):
        HMC(ACTION, 1.0, 5, "verlet")
    with pytest.raises(ValueError, match="even L"):
        CheckerboardMetropolis(ACTION, GaussianShift()).init(_field(backend, (2, 5, 5)))
    with pytest.raises(ValueError, match="shape"):
        HMC(ACTION).init(_field(backend, (2, 4, 5)))
    with pytest.raises(ValueError, match="beta=0.6"):
        MALA(Phi4.from_beta_g(0.6, 0.0)).init(_field(backend, (2, 4, 4)))
