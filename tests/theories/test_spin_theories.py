"""The spin theories: energies against site loops, local action differences, the integer
flip and heat-bath thresholds, the Edwards-Anderson local field."""
import itertools
import math

import numpy as np
import pytest

from portable_lattice import Clock, EdwardsAnderson, Ising, Potts
from portable_lattice.backends import get_backend
from portable_lattice.lattice import neighbour_table

NUMPY = get_backend("numpy")


def _ising_energy_loops(s, J=1.0, h=0.0):
    L, d = s.shape[0], s.ndim
    E = 0.0
    for x in itertools.product(range(L), repeat=d):
        for mu in range(d):
            y = list(x)
            y[mu] = (y[mu] + 1) % L
            E -= J * s[x] * s[tuple(y)]
        E -= h * s[x]
    return E


@pytest.mark.parametrize("dim", [2, 3])
def test_ising_energy_matches_loops(backend, dim):
    host = np.random.default_rng(dim).choice(np.array([-1, 1], np.int8), size=(3,) + (4,) * dim)
    s = backend.from_numpy(host)
    m = Ising(beta=0.5, J=0.7, h=0.3)  # H does not depend on beta
    got = backend.to_numpy(m.energy(s, backend.xp.float64))
    np.testing.assert_allclose(got, [_ising_energy_loops(h_, 0.7, 0.3) for h_ in host], atol=1e-12)


def test_potts_clock_ea_energies_match_loops(backend):
    rng = np.random.default_rng(1)
    host = rng.integers(0, 3, size=(2, 3, 3)).astype(np.int8)
    s = backend.from_numpy(host)
    for model, pair in [(Potts(beta=1.0, q=3), lambda a, b: float(a == b)),
                        (Clock(beta=1.0, q=3), lambda a, b: math.cos(2 * math.pi * (a - b) / 3))]:
        want = [-sum(pair(c[x, y], c[(x + 1) % 3, y]) + pair(c[x, y], c[x, (y + 1) % 3])
                     for x in range(3) for y in range(3)) for c in host]
        np.testing.assert_allclose(backend.to_numpy(model.energy(s, backend.xp.float64)), want, atol=1e-12)
    J = rng.normal(size=(2, 4, 4))
    spins = rng.choice(np.array([-1, 1], np.int8), size=(2, 4, 4))
    ea = EdwardsAnderson(beta=0.8, couplings=backend.from_numpy(J, "float64"))
    want = [-sum(J[0, x, y] * c[x, y] * c[(x + 1) % 4, y] + J[1, x, y] * c[x, y] * c[x, (y + 1) % 4]
                 for x in range(4) for y in range(4)) for c in spins]
    np.testing.assert_allclose(backend.to_numpy(ea.energy(backend.from_numpy(spins), backend.xp.float64)), want)


def _site_inputs(s, x, y):
    """What the random-site loop hands a rule for site (x, y) of every chain: the value, the 2d
    neighbours in :func:`neighbour_table` order, the flat site index."""
    L = s.shape[1]
    site = x * L + y
    nbrs = s.reshape(s.shape[0], -1)[:, neighbour_table(np, L, 2)[site]]
    return s[:, x, y], nbrs, np.full(s.shape[0], site)


@pytest.mark.parametrize("model", [Ising(beta=0.7, h=0.2), Potts(beta=0.7, q=3), Clock(beta=0.7, q=4)],
                         ids=["ising", "potts", "clock"])
def test_delta_action_is_beta_times_energy_difference(model):
    """delta_action (the checkerboard's, every site at once), site_delta_action (the random-site
    loop's, one site per chain) and the heat bath's local log-weights all equal
    beta (E[s with s_x -> t_x] - E[s]) computed from the total energy."""
    rng = np.random.default_rng(2)
    s = (rng.choice(np.array([-1, 1], np.int8), size=(2, 4, 4)) if isinstance(model, Ising)
         else rng.integers(0, model.q, size=(2, 4, 4)).astype(np.int8))
    # the rules' proposals: a flip, or a uniformly random other state (s + 1 + k) mod q
    if isinstance(model, Ising):
        t = -s
    else:
        t = ((s + 1 + rng.integers(0, model.q - 1, size=s.shape)) % model.q).astype(np.int8)
    dS = model.delta_action(t, s, np.float64)
    logw = model.local_log_weights(s, np.float64)
    values = list(model.state_values())
    for x, y in [(0, 0), (2, 3), (3, 1)]:
        new = s.copy()
        new[:, x, y] = t[:, x, y]
        want = model.beta * (model.energy(new, np.float64) - model.energy(s, np.float64))
        np.testing.assert_allclose(dS[:, x, y], want, rtol=1e-12, atol=1e-12)
        sx, nbrs, sites = _site_inputs(s, x, y)
        np.testing.assert_allclose(model.site_delta_action(sx, t[:, x, y], nbrs, sites, np.float64), want,
                                   rtol=1e-12, atol=1e-12)
        for c in range(2):
            # -beta E_x(v): differences between states are minus the action differences
            got = logw[values.index(t[c, x, y])][c, x, y] - logw[values.index(s[c, x, y])][c, x, y]
            assert got == pytest.approx(-want[c], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("J,h", [(1.0, 0.0), (0.7, -0.3), (-1.0, 0.2)])
@pytest.mark.parametrize("dim", [2, 3])
def test_flip_thresholds_are_metropolis_probabilities(J, h, dim):
    """b <= T for b uniform on the int32 words has probability (T + 2^31 + 1) / 2^32: that is
    min(1, exp(-beta dE)) for every (s_x, neighbour sum), within 2^-33 (2^-32 where p < 2^-33),
    and exactly 1 where dE <= 0."""
    for beta in (0.0, 0.44, 3.0, 40.0):
        table = Ising(beta=beta, J=J, h=h).flip_thresholds(dim)
        assert all(-2 ** 31 <= t < 2 ** 31 for t in table)
        for nsum in range(-2 * dim, 2 * dim + 1, 2):
            for spin in (-1, 1):
                dE = 2 * spin * (J * nsum + h)
                p = min(1.0, math.exp(-beta * dE))
                got = (table[2 * nsum + spin + 4 * dim + 1] + 2 ** 31 + 1) / 2 ** 32
                if dE <= 0:
                    assert got == 1.0
                else:
                    assert abs(got - p) <= (2 ** -33 if p >= 2 ** -33 else 2 ** -32)


@pytest.mark.parametrize("J,h", [(1.0, 0.0), (0.7, -0.3), (-1.0, 0.2)])
@pytest.mark.parametrize("dim", [2, 3])
def test_heatbath_thresholds_are_conditional_probabilities(J, h, dim):
    """b <= T has probability P(s_x = +1 | neighbours) = 1 / (1 + exp(-2 beta (J sum + h)))
    for every neighbour sum, within 2^-33 (2^-32 where it is below 2^-33), also where
    beta (J sum + h) is large enough to overflow a naive exp."""
    for beta in (0.0, 0.44, 3.0, 400.0):
        table = Ising(beta=beta, J=J, h=h).heatbath_thresholds(dim)
        assert len(table) == 4 * dim + 1 and all(-2 ** 31 <= t < 2 ** 31 for t in table)
        for nsum in range(-2 * dim, 2 * dim + 1):
            p = 0.5 * (1.0 + math.tanh(beta * (J * nsum + h)))
            got = (table[nsum + 2 * dim] + 2 ** 31 + 1) / 2 ** 32
            assert abs(got - p) <= (2 ** -33 if p >= 2 ** -33 else 2 ** -32)


@pytest.mark.parametrize("dim", [2, 3])
def test_flip_accept_is_the_integer_rule(backend, dim):
    """flip_accept (table lookup, backend fast path included) accepts exactly where
    b + 2^31 < round(p 2^32), with p = min(1, exp(-beta dE)) computed on the host."""
    beta = 0.3
    model = Ising(beta=beta, J=0.9, h=0.25)
    rng = np.random.default_rng(dim)
    shape = (3,) + (6,) * dim
    s = rng.choice(np.array([-1, 1], np.int8), size=shape)
    nsum = rng.choice(np.arange(-2 * dim, 2 * dim + 1, 2).astype(np.int8), size=shape)
    dE = 2.0 * s * (model.J * nsum + model.h)
    p = np.minimum(1.0, np.exp(-beta * dE))
    # words spread over the whole range, plus words right at each site's threshold
    bits = rng.integers(-2 ** 31, 2 ** 31, size=shape, dtype=np.int64)
    edge = np.round(p * 2.0 ** 32).astype(np.int64) - 2 ** 31 + rng.integers(-1, 1, size=shape)
    bits = np.where(rng.random(shape) < 0.5, bits, np.clip(edge, -2 ** 31, 2 ** 31 - 1)).astype(np.int32)
    want = bits.astype(np.int64) + 2 ** 31 < np.round(p * 2.0 ** 32)
    table = model.flip_thresholds(dim)
    # the thresholds as a host list, or as an int32 array on the spins' device (as the kernel keeps them)
    for thresholds in (table, backend.xp.asarray(table, dtype=backend.xp.int32, device=backend.device)):
        got = model.flip_accept(backend.from_numpy(s), backend.from_numpy(nsum), backend.from_numpy(bits), thresholds)
        np.testing.assert_array_equal(backend.to_numpy(got), want)


def test_heatbath_spins_are_the_integer_rule(backend):
    """heatbath_spins sets +1 exactly where b + 2^31 < round(p_+ 2^32), -1 elsewhere."""
    beta, dim = 0.5, 2
    model = Ising(beta=beta, J=1.0, h=0.1)
    rng = np.random.default_rng(7)
    nsum = rng.choice(np.arange(-4, 5).astype(np.int8), size=(2, 2, 5, 5))
    bits = rng.integers(-2 ** 31, 2 ** 31, size=nsum.shape, dtype=np.int64).astype(np.int32)
    p = 0.5 * (1.0 + np.tanh(beta * (model.J * nsum + model.h)))
    want = np.where(bits.astype(np.int64) + 2 ** 31 < np.round(p * 2.0 ** 32), 1, -1)
    table = model.heatbath_thresholds(dim)
    for thresholds in (table, backend.xp.asarray(table, dtype=backend.xp.int32, device=backend.device)):
        got = backend.to_numpy(model.heatbath_spins(backend.from_numpy(nsum), backend.from_numpy(bits), thresholds))
        assert got.dtype == np.int8
        np.testing.assert_array_equal(got, want)


def test_ea_local_field_matches_energy_difference():
    ea = EdwardsAnderson.gaussian(4, 2, seed=3, beta=0.8, backend=NUMPY)
    s = np.random.default_rng(4).choice(np.array([-1, 1], np.int8), size=(2, 4, 4))
    dS = ea.delta_action(-s, s, np.float64)
    for x, y in [(1, 3), (0, 0), (3, 2)]:
        new = s.copy()
        new[:, x, y] *= -1
        want = ea.beta * (ea.energy(new, np.float64) - ea.energy(s, np.float64))
        np.testing.assert_allclose(dS[:, x, y], want, rtol=1e-12)
        # the random-site loop's route: the site's couplings from the coupling table
        sx, nbrs, sites = _site_inputs(s, x, y)
        np.testing.assert_allclose(ea.site_delta_action(sx, -sx, nbrs, sites, np.float64), want, rtol=1e-12)
        np.testing.assert_allclose(ea.site_delta_action(sx, -sx, nbrs, sites, np.float64,
                                                        table=ea.coupling_table(np.float64)), want, rtol=1e-12)
