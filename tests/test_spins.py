import itertools
import math

import numpy as np
import pytest

from portable_lattice.exact import K_CRITICAL, ising_torus
from portable_lattice.exact.ising2d import log_partition_function
from portable_lattice.spins import (Clock, EdwardsAnderson, Ising, Potts, SequentialSpinMetropolis, SpinCheckerboard,
                                    SwendsenWang, Wolff, cluster_labels, label_propagation, simulate_spins)
from portable_lattice.spins.clusters import _ids_from_labels, cluster_ids
from portable_lattice.spins.blocking import block_levels, majority_block
from portable_lattice.spins.mcrg import COUPLINGS, EVEN, ODD, measure_couplings, t_matrix_exponents
from portable_lattice.spins.observables import fss_exponent, magnetisation_histogram
from portable_lattice.analysis import Estimate


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
    m = Ising(J=0.7, h=0.3)
    got = backend.to_numpy(m.energy(s, backend.xp.float64))
    np.testing.assert_allclose(got, [_ising_energy_loops(h_, 0.7, 0.3) for h_ in host], atol=1e-12)


def test_potts_clock_ea_energies_match_loops(backend):
    rng = np.random.default_rng(1)
    host = rng.integers(0, 3, size=(2, 3, 3)).astype(np.int8)
    s = backend.from_numpy(host)
    for model, pair in [(Potts(3), lambda a, b: float(a == b)), (Clock(3), lambda a, b: math.cos(2 * math.pi * (a - b) / 3))]:
        want = [-sum(pair(c[x, y], c[(x + 1) % 3, y]) + pair(c[x, y], c[x, (y + 1) % 3])
                     for x in range(3) for y in range(3)) for c in host]
        np.testing.assert_allclose(backend.to_numpy(model.energy(s, backend.xp.float64)), want, atol=1e-12)
    J = rng.normal(size=(2, 4, 4))
    spins = rng.choice(np.array([-1, 1], np.int8), size=(2, 4, 4))
    ea = EdwardsAnderson(couplings=backend.from_numpy(J, "float64"))
    want = [-sum(J[0, x, y] * c[x, y] * c[(x + 1) % 4, y] + J[1, x, y] * c[x, y] * c[x, (y + 1) % 4]
                 for x in range(4) for y in range(4)) for c in spins]
    np.testing.assert_allclose(backend.to_numpy(ea.energy(backend.from_numpy(spins), backend.xp.float64)), want)


@pytest.mark.parametrize("model", [Ising(h=0.2), Potts(3), Clock(4)], ids=["ising", "potts", "clock"])
def test_delta_energy_is_energy_difference(model):
    rng = np.random.default_rng(2)
    s = (rng.choice(np.array([-1, 1], np.int8), size=(1, 4, 4)) if isinstance(model, Ising)
         else rng.integers(0, model.q, size=(1, 4, 4)).astype(np.int8))
    k = model.draw_proposals(__import__("portable_lattice").backends.get_backend("numpy").rng(0), s.shape)
    t = model.propose(s, k)
    dE = model.delta_energy(t, s, np.float64)
    for x, y in [(0, 0), (2, 3)]:
        new = s.copy()
        new[0, x, y] = t[0, x, y]
        assert dE[0, x, y] == pytest.approx(model.energy(new, np.float64)[0] - model.energy(s, np.float64)[0])


@pytest.mark.parametrize("J,h", [(1.0, 0.0), (0.7, -0.3), (-1.0, 0.2)])
@pytest.mark.parametrize("dim", [2, 3])
def test_flip_thresholds_are_metropolis_probabilities(J, h, dim):
    """b <= T for b uniform on the int32 words has probability (T + 2^31 + 1) / 2^32: that is
    min(1, exp(-beta dE)) for every (s_x, neighbour sum), within 2^-33 (2^-32 where p < 2^-33),
    and exactly 1 where dE <= 0."""
    model = Ising(J=J, h=h)
    for beta in (0.0, 0.44, 3.0, 40.0):
        table = model.flip_thresholds(beta, dim)
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
    model = Ising(J=J, h=h)
    for beta in (0.0, 0.44, 3.0, 400.0):
        table = model.heatbath_thresholds(beta, dim)
        assert len(table) == 4 * dim + 1 and all(-2 ** 31 <= t < 2 ** 31 for t in table)
        for nsum in range(-2 * dim, 2 * dim + 1):
            p = 0.5 * (1.0 + math.tanh(beta * (J * nsum + h)))
            got = (table[nsum + 2 * dim] + 2 ** 31 + 1) / 2 ** 32
            assert abs(got - p) <= (2 ** -33 if p >= 2 ** -33 else 2 ** -32)


@pytest.mark.parametrize("dim", [2, 3])
def test_flip_accept_is_the_integer_rule(backend, dim):
    """flip_accept (table lookup, backend fast path included) accepts exactly where
    b + 2^31 < round(p 2^32), with p = min(1, exp(-beta dE)) computed on the host."""
    model, beta = Ising(J=0.9, h=0.25), 0.3
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
    got = model.flip_accept(backend.from_numpy(s), backend.from_numpy(nsum), backend.from_numpy(bits), beta, dim)
    np.testing.assert_array_equal(backend.to_numpy(got), want)


def test_heatbath_spins_are_the_integer_rule(backend):
    """heatbath_spins sets +1 exactly where b + 2^31 < round(p_+ 2^32), -1 elsewhere."""
    model, beta, dim = Ising(J=1.0, h=0.1), 0.5, 2
    rng = np.random.default_rng(7)
    nsum = rng.choice(np.arange(-4, 5).astype(np.int8), size=(2, 2, 5, 5))
    bits = rng.integers(-2 ** 31, 2 ** 31, size=nsum.shape, dtype=np.int64).astype(np.int32)
    p = 0.5 * (1.0 + np.tanh(beta * (model.J * nsum + model.h)))
    want = np.where(bits.astype(np.int64) + 2 ** 31 < np.round(p * 2.0 ** 32), 1, -1)
    got = backend.to_numpy(model.heatbath_spins(backend.from_numpy(nsum), backend.from_numpy(bits), beta, dim))
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, want)


def test_ea_local_field_matches_energy_difference():
    ea = EdwardsAnderson.gaussian(4, 2, seed=3)
    s = np.random.default_rng(4).choice(np.array([-1, 1], np.int8), size=(1, 4, 4))
    dE = ea.delta_energy(-s, s, np.float64)
    new = s.copy()
    new[0, 1, 3] *= -1
    assert dE[0, 1, 3] == pytest.approx(ea.energy(new, np.float64)[0] - ea.energy(s, np.float64)[0])


@pytest.mark.parametrize("shape", [(3, 8, 8), (2, 5, 7 - 2), (2, 4, 4, 4)])
def test_generic_labels_equal_native(backend, shape):
    rng = np.random.default_rng(sum(shape))
    host = [rng.random(shape) < 0.55 for _ in range(len(shape) - 1)]
    bonds = [backend.from_numpy(b) for b in host]
    generic = backend.to_numpy(label_propagation(bonds))
    native = backend.to_numpy(cluster_labels(bonds))
    np.testing.assert_array_equal(generic, native)
    # canonical: every label is the smallest flat index of its cluster, and bonded sites share it
    flat = generic.reshape(-1)
    assert np.all(flat[flat] == flat) and np.all(flat <= np.arange(flat.size))
    for mu, b in enumerate(host):
        assert np.all(generic[b] == np.roll(generic, -1, axis=mu + 1)[b])
    # compact ids (native or ranked from the labels): clusters numbered by their smallest site
    ids, n_clusters = cluster_ids(bonds)
    roots = np.flatnonzero(flat == np.arange(flat.size))
    assert n_clusters == roots.size
    np.testing.assert_array_equal(backend.to_numpy(ids), np.searchsorted(roots, flat))
    generic_ids, generic_n = _ids_from_labels(bonds)
    np.testing.assert_array_equal(backend.to_numpy(generic_ids), backend.to_numpy(ids))


def test_scipy_labels_match_a_union_find():
    from portable_lattice.backends.numpy_backend import scipy_cluster_labels
    rng = np.random.default_rng(9)
    shape = (2, 6, 6)
    bonds = [rng.random(shape) < 0.5 for _ in range(2)]
    parent = list(range(72))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i
    idx = np.arange(72).reshape(shape)
    for mu, b in enumerate(bonds):
        for i, j in zip(idx[b], np.roll(idx, -1, axis=mu + 1)[b]):
            a, c = find(i), find(j)
            parent[max(a, c)] = min(a, c)
    want = np.array([find(i) for i in range(72)]).reshape(shape)
    np.testing.assert_array_equal(scipy_cluster_labels(bonds), want)


def test_majority_block(backend):
    host = np.array([[[1, 1, -1, 1], [1, -1, -1, -1], [1, -1, 1, 1], [-1, 1, 1, 1]]], np.int8)
    mu, logw = majority_block(backend.from_numpy(host), backend.rng(0))
    mu = backend.to_numpy(mu)
    assert mu.shape == (1, 2, 2)
    assert mu[0, 0, 0] == 1 and mu[0, 0, 1] == -1 and mu[0, 1, 1] == 1
    assert mu[0, 1, 0] in (-1, 1)  # the tied block
    assert backend.to_numpy(logw)[0] == pytest.approx(-math.log(2))
    # ties are broken with probability 1/2
    tied = np.tile(np.array([[1, -1], [-1, 1]], np.int8), (4000, 1, 1))
    up = (backend.to_numpy(majority_block(backend.from_numpy(tied), backend.rng(1))[0]) == 1).mean()
    assert abs(up - 0.5) < 4 * 0.5 / math.sqrt(4000)
    levels = block_levels(backend.from_numpy(np.ones((2, 8, 8), np.int8)), backend.rng(2), 3)
    assert [tuple(x.shape) for x in levels] == [(2, 8, 8), (2, 4, 4), (2, 2, 2), (2, 1, 1)]
    with pytest.raises(ValueError, match="L=6 and levels=3"):
        block_levels(backend.from_numpy(np.ones((1, 6, 6), np.int8)), backend.rng(0), 3)
    with pytest.raises(ValueError, match="L=5"):
        majority_block(backend.from_numpy(np.ones((1, 5, 5), np.int8)), backend.rng(0))


def test_mcrg_couplings():
    assert len(COUPLINGS) == 36 and len(ODD) == 11 and len(EVEN) == 25
    assert [len(imgs) for _, imgs in COUPLINGS][:2] == [1, 2]  # one spin; nearest neighbours in 2 orientations
    assert sum(len(imgs) for _, imgs in COUPLINGS) == 1 + 12 + 48 + 97
    s = np.random.default_rng(0).choice(np.array([-1, 1], np.int8), size=(2, 6, 6))
    S = measure_couplings(s)
    assert S[0, 0] == s[0].sum()
    assert S[0, 1] == pytest.approx((s[0] * np.roll(s[0], -1, 0)).sum() + (s[0] * np.roll(s[0], -1, 1)).sum())
    np.testing.assert_allclose(measure_couplings(-s)[:, ODD], -S[:, ODD])
    np.testing.assert_allclose(measure_couplings(-s)[:, EVEN], S[:, EVEN])
    # D4 invariance: a rotated configuration has the same couplings
    np.testing.assert_allclose(measure_couplings(np.rot90(s, axes=(1, 2)).copy()), S)


def test_mcrg_oriented_basis_averages_to_the_symmetric_one():
    """Over the 8 D4 images of a configuration, one orientation of a shape sums to
    8 / (number of its images) times the symmetrised coupling."""
    s = np.random.default_rng(2).choice(np.array([-1, 1], np.int8), size=(3, 6, 6))
    images = [np.rot90(s, k, axes=(1, 2)) for k in range(4)]
    images += [np.flip(x, axis=1) for x in images]
    total = sum(measure_couplings(np.ascontiguousarray(x), basis="oriented") for x in images)
    n_images = np.array([len(imgs) for _, imgs in COUPLINGS])
    np.testing.assert_allclose(total, 8 / n_images * measure_couplings(s))
    oriented = measure_couplings(s, basis="oriented")
    assert oriented[0, 1] == (s[0] * np.roll(s[0], -1, 1)).sum()  # (0,0)-(0,1): one direction only
    assert not np.allclose(oriented, measure_couplings(s))
    with pytest.raises(ValueError, match="basis=.diagonal."):
        measure_couplings(s, basis="diagonal")


def test_t_matrix_recovers_a_known_linear_map():
    """If S_coarse = S_fine @ R^T + noise then T = B^-1 A recovers the spectrum of the map."""
    rng = np.random.default_rng(1)
    fine = rng.normal(size=(20000, 36))
    R = np.diag(np.linspace(0.5, 2.0, 36))
    coarse = fine @ R.T  # exactly linear: Cov(c, f) = R Cov(f, f); Cov(c, c) = R Cov R^T
    out = t_matrix_exponents(fine, coarse, n_blocks=10)
    # T = B^-1 A = (R C R^T)^-1 R C = R^-T: eigenvalues 1/diag(R)
    assert out["exponents"]["y_h"][0] == pytest.approx(math.log2(1 / 0.5), abs=1e-6)


def test_exact_torus_matches_enumeration():
    L, K = 4, 0.37
    conf = np.array(list(itertools.product([-1, 1], repeat=L * L))).reshape(-1, L, L)
    E = -(conf * np.roll(conf, 1, 1) + conf * np.roll(conf, 1, 2)).sum(axis=(1, 2)).astype(float)
    w = np.exp(-K * E)
    Z = w.sum()
    ex = ising_torus(K, L)
    assert ex.log_z == pytest.approx(math.log(Z), rel=1e-13)
    assert ex.energy == pytest.approx((w * E).sum() / Z / 16, rel=1e-9)
    c = K * K * ((w * E * E).sum() / Z - ((w * E).sum() / Z) ** 2) / 16
    assert ex.heat_capacity == pytest.approx(c, rel=1e-7)
    assert ex.entropy == pytest.approx(ex.log_z / 16 + K * ex.energy)
    # large lattice, near K_c: the per-site free energy approaches Onsager's -ln(2)/2 - 2 G / pi
    fK = log_partition_function(K_CRITICAL, 256) / 256 ** 2
    assert fK == pytest.approx(math.log(2) / 2 + 2 * 0.915965594177219 / math.pi, abs=1e-4)


@pytest.mark.parametrize("kernel", [SpinCheckerboard(Ising(), 0.4), SpinCheckerboard(Potts(3), 0.9, "heatbath"),
                                    SequentialSpinMetropolis(Clock(3), 0.5), SwendsenWang(Potts(3), 1.0),
                                    Wolff(Ising(), 0.4)], ids=lambda k: type(k).__name__)
def test_spin_kernels_reproducible_and_in_range(backend, kernel):
    model = kernel.model
    outs = []
    for _ in range(2):
        rng = backend.rng(8)
        state = kernel.init(model.random(rng, (2, 4, 4), backend.xp.float64))
        for _ in range(3):
            state, info = kernel.step(state, rng)
        outs.append(backend.to_numpy(state.phi))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert outs[0].dtype == np.int8 and set(np.unique(outs[0])) <= set(model.state_values())


def test_spin_bad_input(backend):
    with pytest.raises(ValueError, match="q=1"):
        Potts(q=1)
    with pytest.raises(ValueError, match="beta=-0.1"):
        SwendsenWang(Ising(), -0.1)
    with pytest.raises(ValueError, match="zero field"):
        SwendsenWang(Ising(h=0.1), 0.3)
    with pytest.raises(ValueError, match="Edwards"):
        SwendsenWang(EdwardsAnderson.gaussian(4, 2, 0), 0.3)
    with pytest.raises(ValueError, match="outside the model's states"):
        SpinCheckerboard(Ising(), 0.3).init(backend.from_numpy(np.zeros((1, 4, 4), np.int8)))
    with pytest.raises(ValueError, match="outside the model's states"):
        SpinCheckerboard(Potts(3), 0.3).init(backend.from_numpy(np.full((1, 4, 4), 3, np.int8)))
    with pytest.raises(TypeError, match="integer dtype"):
        SpinCheckerboard(Ising(), 0.3).init(backend.from_numpy(np.ones((1, 4, 4)), "float64"))
    with pytest.raises(ValueError, match="couplings must have shape"):
        EdwardsAnderson(couplings=np.zeros((3, 4, 4)))
    with pytest.raises(TypeError, match="float"):
        EdwardsAnderson(couplings=np.zeros((2, 4, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="do not fit"):
        simulate_spins(EdwardsAnderson.gaussian(4, 2, 0), beta=0.3, L=8)
    with pytest.raises(ValueError, match="even L"):
        SpinCheckerboard(Ising(), 0.3).init(backend.from_numpy(np.ones((1, 5, 5), np.int8)))


def test_fss_exponent_and_histogram():
    e = fss_exponent(Estimate(4.0 ** 1.75 * 10, 0.1), Estimate(10.0, 0.01))
    assert e.value == pytest.approx(1.75) and e.error > 0
    m = np.random.default_rng(0).normal(0, 0.3, size=(2000, 4))
    h = magnetisation_histogram(m, L=16, bins=21)
    width = 2.0 / 21
    assert float(np.sum(h["p"]) * width) == pytest.approx(1.0, abs=0.01)
    np.testing.assert_allclose(h["x"], h["m"] * 16 ** 0.125)
