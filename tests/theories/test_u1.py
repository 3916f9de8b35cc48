"""Compact U(1) gauge theory: the action and its force, gauge invariance on every backend, the
topological charge, the samplers (HMC, checkerboard Metropolis, heat bath with overrelaxation)
exact against the 2D torus, and the checks of bad input."""
import math

import numpy as np
import pytest
import scipy.special

from portable_lattice.backends import get_backend
from portable_lattice.exact import u1_2d
from portable_lattice.lattice import shift
from portable_lattice.observables.u1 import ensemble_gauge, measure_gauge, topological_charge, wilson_loop
from portable_lattice.samplers import HMC
from portable_lattice.samplers.gauge import GaugeCheckerboard, von_mises
from portable_lattice.statistics import chain_error
from portable_lattice.theories import ON, family_of
from portable_lattice.theories.u1 import GAUGE, U1, planes

#: |z| < 4.5 fails a correct sampler with probability 2 Phi(-4.5) = 6.8e-6 per check
Z_MAX = 4.5
NP = get_backend("numpy")


def _links(seed, shape, spread=math.pi):
    """Host link angles uniform in (-spread, spread)."""
    return np.random.default_rng(seed).uniform(-spread, spread, size=shape)


def _plaquette_loops(theta):
    """theta_P by explicit index arithmetic, (chains, planes, L, ..., L)."""
    chains, d, L = theta.shape[0], theta.shape[1], theta.shape[2]
    out = np.zeros((chains, d * (d - 1) // 2) + (L,) * d)
    for x in np.ndindex(*(L,) * d):
        for k, (mu, nu) in enumerate(planes(d)):
            xm = list(x); xm[mu] = (xm[mu] + 1) % L
            xn = list(x); xn[nu] = (xn[nu] + 1) % L
            out[(slice(None), k) + x] = (theta[(slice(None), mu) + x] + theta[(slice(None), nu) + tuple(xm)]
                                         - theta[(slice(None), mu) + tuple(xn)] - theta[(slice(None), nu) + x])
    return out


def _wilson_loop_2d(theta, R, T):
    """Re W(R, T) of a 2D configuration by walking the rectangle, both orientations for R != T."""
    chains, L = theta.shape[0], theta.shape[2]
    sizes = [(R, T)] if R == T else [(R, T), (T, R)]
    total = np.zeros(chains)
    for r, t in sizes:
        for x0 in range(L):
            for y0 in range(L):
                a = np.zeros(chains)
                for k in range(r):
                    a += theta[:, 0, (x0 + k) % L, y0] - theta[:, 0, (x0 + k) % L, (y0 + t) % L]
                for k in range(t):
                    a += theta[:, 1, (x0 + r) % L, (y0 + k) % L] - theta[:, 1, x0, (y0 + k) % L]
                total += np.cos(a)
    return total / (len(sizes) * L * L)


def test_the_theory_its_family_and_bad_input():
    t = U1(1.2)
    assert family_of(t) is GAUGE and t.params() == {"name": "u1", "beta": 1.2, "dim": None}
    assert t.config_shape(3, 4, 2) == (3, 2, 4, 4)
    with pytest.raises(ValueError, match="dim=1"):
        U1(1.0, dim=1)
    with pytest.raises(ValueError, match="dim=5"):
        U1(1.0, dim=5)
    with pytest.raises(ValueError, match="beta"):
        U1(-0.5)
    with pytest.raises(ValueError, match="dim=1"):
        t.check_lattice(4, 1)
    with pytest.raises(ValueError, match="L=1"):
        t.check_lattice(1, 2)
    with pytest.raises(ValueError, match="3-dimensional"):
        U1(1.0, dim=3).check_lattice(4, 2)
    theta = _links(0, (2, 2, 4, 4))
    t.check_field(theta)
    with pytest.raises(ValueError, match=r"links must have shape \(chains, d, L"):
        t.check_field(theta[:, :1])
    with pytest.raises(ValueError, match="dim=1"):
        t.check_field(_links(0, (2, 1, 4)))
    with pytest.raises(TypeError, match="floating"):
        t.check_field(theta.astype(np.int32))
    bad = theta.copy()
    bad[0, 1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        t.check_field(bad, name="start")
    with pytest.raises(ValueError, match="2-dimensional"):
        U1(1.0, dim=2).check_field(_links(0, (1, 3, 2, 2, 2)))
    with pytest.raises(ValueError, match="shape"):
        t.random(NP.rng(0), (2, 3, 4, 4), "float64")
    with pytest.raises(ValueError, match="update='x'"):
        GaugeCheckerboard(t, update="x")
    with pytest.raises(ValueError, match="step_size=0"):
        GaugeCheckerboard(t, step_size=0)
    with pytest.raises(ValueError, match="overrelax=-1"):
        GaugeCheckerboard(t, overrelax=-1)
    with pytest.raises(ValueError, match="hits"):
        GaugeCheckerboard(t, update="heatbath", hits=2)
    with pytest.raises(TypeError, match="gauge theory"):
        GaugeCheckerboard(ON(1.0))
    with pytest.raises(ValueError, match="even L.*L=5"):
        GaugeCheckerboard(t).init(_links(0, (2, 2, 5, 5)))
    with pytest.raises(ValueError, match=r"links must have shape"):
        HMC(t).init(_links(0, (2, 3, 4, 4)))
    with pytest.raises(ValueError, match="mu=2"):
        t.staple_sum(theta, 2)
    with pytest.raises(ValueError, match="kappa"):
        von_mises(NP.rng(0), np.array([1.0, -1.0]), np.float64)


@pytest.mark.parametrize("dim, L", [(2, 3), (3, 3), (4, 2)])
def test_plaquettes_staples_and_the_force(dim, L):
    t = U1(0.83)
    theta = _links(dim, (2, dim) + (L,) * dim, spread=4.0)
    np.testing.assert_allclose(t.plaquettes(theta), _plaquette_loops(theta), atol=1e-13)
    S = t.action(theta)
    np.testing.assert_allclose(S, -0.83 * np.cos(_plaquette_loops(theta)).sum(axis=tuple(range(1, dim + 2))),
                               rtol=1e-13)
    # every plaquette holds four links: the local actions of all links add up to 4 S
    np.testing.assert_allclose(sum(t.local_action(theta, mu).sum(axis=tuple(range(1, dim + 1)))
                                   for mu in range(dim)), 4 * S, rtol=1e-12)
    grad = t.grad_action(theta)
    # the force from the staples: dS/dtheta = beta R sin(theta - phi) = beta (sin t Re A - cos t Im A)
    for mu in range(dim):
        re, im = t.staple_sum(theta, mu)
        tm = theta[:, mu]
        np.testing.assert_allclose(grad[:, mu], 0.83 * (np.sin(tm) * re - np.cos(tm) * im), atol=1e-12)
        kappa, phi = t.link_conditional((re, im))
        np.testing.assert_allclose(t.local_action(theta, mu), -kappa * np.cos(tm - phi), atol=1e-12)
        # the local action difference is the change of S when one link moves alone
        new = theta.copy()
        new[(slice(None), mu) + (1,) * dim] += 0.7
        dS = t.local_delta_action(tm, new[:, mu], (re, im))[(slice(None),) + (1,) * dim]
        np.testing.assert_allclose(dS, t.action(new) - S, atol=1e-12)
    # central finite differences at every link
    h = 1e-5
    fd = np.zeros_like(theta)
    for idx in np.ndindex(*theta.shape[1:]):
        up, dn = theta.copy(), theta.copy()
        up[(slice(None),) + idx] += h
        dn[(slice(None),) + idx] -= h
        fd[(slice(None),) + idx] = (t.action(up) - t.action(dn)) / (2 * h)
    np.testing.assert_allclose(grad, fd, atol=1e-8)


@pytest.mark.parametrize("dim", [2, 3])
def test_gauge_invariance(backend, dim):
    xp = backend.xp
    t = U1(1.7)
    L = 4
    rng = backend.rng(20 + dim)
    theta = t.random(rng, (3, dim) + (L,) * dim, xp.float64)
    a = 6.0 * rng.uniform((3,) + (L,) * dim, xp.float64) - 3.0
    moved = xp.stack([theta[:, mu, ...] + a - shift(a, mu) for mu in range(dim)], axis=1)
    host = backend.to_numpy
    np.testing.assert_allclose(host(t.action(moved)), host(t.action(theta)), rtol=1e-12, atol=1e-12)
    # the force of an abelian theory is gauge invariant too
    np.testing.assert_allclose(host(t.grad_action(moved)), host(t.grad_action(theta)), atol=1e-12)
    before, after = measure_gauge(theta, t), measure_gauge(moved, t)
    assert set(before) == {"plaquette", "action_per_plaquette", "w11", "w12", "w22", "polyakov_abs"} | (
        {"q", "q2"} if dim == 2 else set())
    for name in before:
        np.testing.assert_allclose(host(after[name]), host(before[name]), rtol=1e-12, atol=1e-12, err_msg=name)
    if dim == 2:
        assert np.array_equal(host(after["q"]), host(before["q"]))


def test_wilson_and_polyakov_loops_against_walked_loops():
    t = U1(1.0)
    theta = _links(3, (3, 2, 5, 5), spread=5.0)
    m = measure_gauge(theta, t)
    np.testing.assert_allclose(m["w11"], _wilson_loop_2d(theta, 1, 1), atol=1e-13)
    np.testing.assert_allclose(m["w12"], _wilson_loop_2d(theta, 1, 2), atol=1e-13)
    np.testing.assert_allclose(m["w22"], _wilson_loop_2d(theta, 2, 2), atol=1e-13)
    np.testing.assert_allclose(wilson_loop(theta, 1, 3), _wilson_loop_2d(theta, 1, 3), atol=1e-13)
    np.testing.assert_allclose(m["plaquette"], np.cos(_plaquette_loops(theta)).mean(axis=(1, 2, 3)), atol=1e-13)
    np.testing.assert_allclose(m["action_per_plaquette"], t.action(theta) / 25, atol=1e-13)
    poly = np.exp(1j * theta[:, 1].sum(axis=2))      # winding along the last axis, per x_0
    np.testing.assert_allclose(m["polyakov_abs"], np.abs(poly.mean(axis=1)), atol=1e-13)


def test_the_charge_is_an_integer_on_random_configurations():
    t = U1(0.0)
    for L in (4, 5):
        theta = t.random(NP.rng(L), (40, 2, L, L), np.float64)
        raw = topological_charge(theta, t)
        np.testing.assert_allclose(raw, np.round(raw), atol=1e-10)
        assert np.abs(t.plaquettes(theta).sum(axis=(1, 2, 3))).max() < 1e-10  # sum_P theta_P = 0
        assert len(np.unique(np.round(raw))) >= 3                             # not all zero
        m = measure_gauge(theta, t)
        np.testing.assert_array_equal(m["q"], np.round(raw))
        np.testing.assert_array_equal(m["q2"], np.round(raw) ** 2)
    with pytest.raises(ValueError, match="dim=3"):
        topological_charge(_links(0, (1, 3, 2, 2, 2)), t)


def test_von_mises_moments():
    rng = NP.rng(5)
    for kappa in (0.0, 1e-9, 0.4, 3.0, 40.0):
        x = von_mises(rng, np.full(100_000, kappa), np.float64)
        assert np.all(np.abs(x) <= math.pi)
        for n in (1, 2):
            c = np.cos(n * x)
            exact = scipy.special.ive(n, kappa) / scipy.special.ive(0, kappa)
            z = (c.mean() - exact) / (c.std() / math.sqrt(c.size))
            assert abs(z) < Z_MAX, (kappa, n, z)
        assert abs(np.sin(x).mean()) < Z_MAX * max(np.sin(x).std(), 1e-300) / math.sqrt(x.size)


def test_overrelaxation_preserves_the_action():
    for dim, L in ((2, 4), (3, 4)):
        t = U1(1.3)
        k = GaugeCheckerboard(t, overrelax=1)
        theta = t.random(NP.rng(dim), (4, dim) + (L,) * dim, np.float64)
        S0 = t.action(theta)
        new = theta
        for _ in range(3):
            new = k.overrelaxation(new)
            np.testing.assert_allclose(t.action(new), S0, rtol=1e-10)
        assert np.abs(np.cos(new - theta)).min() < 0.99  # it moved the links


def test_kernels_run_on_every_backend(backend):
    xp = backend.xp
    t = U1(0.9)
    for kernel in (GaugeCheckerboard(t, "metropolis", hits=2, overrelax=1), GaugeCheckerboard(t, "heatbath"),
                   HMC(t, 0.5, 4)):
        rng = backend.rng(3)
        state = kernel.init(t.random(rng, (2, 3, 4, 4, 4), xp.float64))
        for _ in range(2):
            state, info = kernel.step(state, rng)
        theta = backend.to_numpy(state.phi)
        assert theta.shape == (2, 3, 4, 4, 4) and np.all(np.isfinite(theta))
        frac = backend.to_numpy(info.acceptance if info.acceptance is not None else info.changed)
        assert frac.shape == (2,) and np.all((frac >= 0) & (frac <= 1))


# --- exact against the 2D torus ----------------------------------------------------------------
EXACT_L, EXACT_BETA, CHAINS = 4, 1.0, 64


@pytest.mark.parametrize("name, make, sweeps", [
    ("hmc", lambda t: HMC(t, 1.0, 8), 300),
    ("metropolis", lambda t: GaugeCheckerboard(t, "metropolis", step_size=2.0), 400),
    ("heatbath", lambda t: GaugeCheckerboard(t, "heatbath", overrelax=1), 200),
])
def test_samplers_are_exact_on_the_2d_torus(name, make, sweeps):
    """64 independent chains from hot starts; errors from the scatter of the per-chain means."""
    exact = u1_2d(EXACT_L, EXACT_BETA)
    t = U1(EXACT_BETA, dim=2)
    kernel = make(t)
    rng = NP.rng({"hmc": 1, "metropolis": 2, "heatbath": 3}[name])
    state = kernel.init(t.random(rng, t.config_shape(CHAINS, EXACT_L, 2), np.float64))
    series = {}
    for i in range(20 + sweeps):
        state, info = kernel.step(state, rng)
        if i >= 20:
            for k, v in measure_gauge(state.phi, t).items():
                series.setdefault(k, []).append(v)
    series = {k: np.asarray(v) for k, v in series.items()}
    plaq = chain_error(series["plaquette"])
    chi = chain_error(series["q2"] / EXACT_L ** 2)
    assert abs(plaq.z(exact["plaquette"])) < Z_MAX, (plaq, exact["plaquette"])
    assert abs(chi.z(exact["chi_top"])) < Z_MAX, (chi, exact["chi_top"])
    # the statistics are not trivial: a few per cent on chi_top
    assert chi.error < 0.05 * exact["chi_top"]
    frac = info.acceptance if info.acceptance is not None else info.changed
    assert np.mean(frac) > 0.3
    if name == "heatbath":
        est = ensemble_gauge(series, t, EXACT_L, 2)
        assert {"plaquette", "action_per_plaquette", "w11", "w12", "w22", "polyakov_abs", "q", "q2",
                "chi_top"} <= set(est)
        # (the jackknife's mean runs over whole bins: the last few measurements may be left out)
        assert est["chi_top"].value == pytest.approx(series["q2"].mean() / EXACT_L ** 2, rel=0.01)
        assert est["plaquette"].value == pytest.approx(plaq.value)
        assert est["q"].tau_int >= 0.5 and np.isfinite(est["chi_top"].error)


@pytest.mark.parametrize("dim, L", [(3, 4), (4, 2)])
def test_heat_bath_and_metropolis_agree_with_hmc_in_higher_dimensions(dim, L):
    """No exact result here: the plaquette and w12 of three samplers agree, |z| of each difference
    < 4.5 (errors from the scatter of 32 independent chains each)."""
    t = U1(1.1, dim=dim)
    kernels = {"hmc": HMC(t, 1.0, 8), "heatbath": GaugeCheckerboard(t, "heatbath", overrelax=1),
               "metropolis": GaugeCheckerboard(t, "metropolis", step_size=1.5, hits=2)}
    est = {}
    for seed, (name, kernel) in enumerate(kernels.items()):
        rng = NP.rng(40 + seed)
        state = kernel.init(t.random(rng, t.config_shape(32, L, dim), np.float64))
        rows = []
        for i in range(15 + 60):
            state, _ = kernel.step(state, rng)
            if i >= 15:
                m = measure_gauge(state.phi, t)
                rows.append([m["plaquette"], m["w12"]])
        rows = np.asarray(rows)
        est[name] = [chain_error(rows[:, j]) for j in range(2)]
    for name in ("heatbath", "metropolis"):
        for a, b in zip(est[name], est["hmc"]):
            z = (a.value - b.value) / math.hypot(a.error, b.error)
            assert abs(z) < Z_MAX, (name, a, b)
