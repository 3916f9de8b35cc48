import itertools
import math

import numpy as np
import pytest

from portable_lattice.backends.capabilities import capability

from portable_lattice import Clock, EdwardsAnderson, Ising, Potts, simulate
from portable_lattice._delegation import implementation
from portable_lattice.backends import capability, get_backend
from portable_lattice.exact import K_CRITICAL, ising_torus
from portable_lattice.exact.ising2d import log_partition_function
from portable_lattice.lattice import neighbour_table
from portable_lattice.observables import fss_exponent, magnetisation_histogram, measure_spins
from portable_lattice.rg.blocking import block_levels, majority_block
from portable_lattice.rg.mcrg import COUPLINGS, EVEN, ODD, measure_couplings, t_matrix_exponents
from portable_lattice.runs import run
from portable_lattice.samplers import (CheckerboardMetropolis, HeatBath, IndependenceMetropolis, RandomSiteMetropolis,
                                       SpinFlip, StateShift, SwendsenWang, Wolff)
from portable_lattice.samplers.clusters import _ids_from_labels, cluster_ids, cluster_labels, label_propagation
from portable_lattice.statistics import Estimate, UnreliableErrorWarning, gamma_method

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


@pytest.mark.parametrize("shape", [(3, 8, 8), (2, 5, 7 - 2), (2, 4, 4, 4)])
def test_generic_labels_equal_native(backend, shape):
    rng = np.random.default_rng(sum(shape))
    host = [rng.random(shape) < 0.55 for _ in range(len(shape) - 1)]
    bonds = [backend.from_numpy(b) for b in host]
    generic = backend.to_numpy(label_propagation(bonds))
    native = backend.to_numpy(cluster_labels(bonds))
    np.testing.assert_array_equal(generic, native)
    present, _ = capability("cluster_labels", backend.name, str(backend.device))
    if present and backend.name != "cupy":  # cupy's needs pylibcugraph, which may be missing
        # the registered routine itself (the dispatcher falls back to the generic one when it declines)
        routine = implementation("cluster_labels", backend.xp, label_propagation)
        assert routine is not label_propagation
        direct = routine.native(bonds)
        assert direct is not NotImplemented
        np.testing.assert_array_equal(backend.to_numpy(direct), generic)
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
    y_h = out["exponents"]["y_h"]
    assert isinstance(y_h, Estimate) and y_h.value == pytest.approx(math.log2(1 / 0.5), abs=1e-6)
    assert y_h.error < 1e-6 and len(next(iter(y_h.replicas.values()))) == 10  # a jackknife over 10 blocks


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


SPIN_KERNELS = [
    (CheckerboardMetropolis(Ising(beta=0.4), SpinFlip()), "acceptance"),                   # blocked, integer thresholds
    (CheckerboardMetropolis(Ising(beta=0.4, h=0.3), HeatBath()), "changed"),               # blocked heat bath
    (CheckerboardMetropolis(Potts(beta=0.9, q=3), HeatBath()), "changed"),                 # masked heat bath
    (CheckerboardMetropolis(Clock(beta=0.5, q=4), StateShift()), "acceptance"),            # masked Metropolis
    (RandomSiteMetropolis(Clock(beta=0.5, q=3), StateShift()), "acceptance"),
    (RandomSiteMetropolis(Ising(beta=0.4, h=-0.2), SpinFlip()), "acceptance"),
    (RandomSiteMetropolis(EdwardsAnderson.gaussian(4, 2, 5, beta=0.7, backend=NUMPY), SpinFlip()), "acceptance"),
    (SwendsenWang(Potts(beta=1.0, q=3)), "changed"),
    (Wolff(Ising(beta=0.4)), "cluster_size"),
]


def _kernel_id(case):
    kernel, _ = case
    rule = getattr(kernel, "rule", None)
    return f"{type(kernel).__name__}-{type(kernel.theory).__name__}" + (f"-{type(rule).__name__}" if rule else "")


def _on(kernel, backend):
    """The kernel with quenched couplings moved to the backend (as ``simulate`` does)."""
    c = getattr(kernel.theory, "couplings", None)
    if c is None:
        return kernel
    from dataclasses import replace
    return replace(kernel, theory=kernel.theory.with_couplings(backend.from_numpy(c, "float64")))


@pytest.mark.parametrize("case", SPIN_KERNELS, ids=[_kernel_id(c) for c in SPIN_KERNELS])
def test_spin_kernels_reproducible_and_in_range(backend, case):
    kernel, reported = case
    kernel = _on(kernel, backend)
    model = kernel.theory
    outs = []
    for _ in range(2):
        rng = backend.rng(8)
        start = model.random(rng, (2, 4, 4), backend.xp.float64)
        before = backend.to_numpy(start).copy()
        state = kernel.init(start)
        for _ in range(3):
            state, info = kernel.step(state, rng)
        outs.append(backend.to_numpy(state.spins))
        np.testing.assert_array_equal(backend.to_numpy(start), before)  # the caller's array is untouched
        # each Info field means one thing: exactly the one this kernel reports is set, a fraction per chain
        for name in ("acceptance", "changed", "cluster_size"):
            v = getattr(info, name)
            if name != reported:
                assert v is None, name
            else:
                v = backend.to_numpy(v)
                assert v.shape == (2,) and np.all((0 <= v) & (v <= 1))
        assert info.delta_h is None and info.divergent is None
    np.testing.assert_array_equal(outs[0], outs[1])
    assert state.config is state.spins
    assert outs[0].dtype == np.int8 and set(np.unique(outs[0])) <= set(model.state_values())


def test_spin_bad_input(backend):
    with pytest.raises(ValueError, match="q=1"):
        Potts(beta=1.0, q=1)
    with pytest.raises(ValueError, match="beta=-0.1"):
        SwendsenWang(Ising(beta=-0.1))
    with pytest.raises(ValueError, match="zero field"):
        SwendsenWang(Ising(beta=0.3, h=0.1))
    with pytest.raises(ValueError, match="Edwards"):
        SwendsenWang(EdwardsAnderson.gaussian(4, 2, 0, beta=0.3, backend=NUMPY))
    with pytest.raises(ValueError, match="got Clock"):
        Wolff(Clock(beta=0.3, q=3))
    with pytest.raises(ValueError, match="outside the model's states"):
        CheckerboardMetropolis(Ising(beta=0.3), SpinFlip()).init(backend.from_numpy(np.zeros((1, 4, 4), np.int8)))
    with pytest.raises(ValueError, match="outside the model's states"):
        CheckerboardMetropolis(Potts(beta=0.3, q=3), StateShift()).init(
            backend.from_numpy(np.full((1, 4, 4), 3, np.int8)))
    with pytest.raises(TypeError, match="integer dtype"):
        CheckerboardMetropolis(Ising(beta=0.3), SpinFlip()).init(backend.from_numpy(np.ones((1, 4, 4)), "float64"))
    with pytest.raises(ValueError, match="couplings must have shape"):
        EdwardsAnderson(beta=0.3, couplings=np.zeros((3, 4, 4)))
    with pytest.raises(TypeError, match="float"):
        EdwardsAnderson(beta=0.3, couplings=np.zeros((2, 4, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="do not fit"):
        simulate(EdwardsAnderson.gaussian(4, 2, 0, beta=0.3, backend=NUMPY), L=8)
    with pytest.raises(ValueError, match="even L"):
        CheckerboardMetropolis(Ising(beta=0.3), SpinFlip()).init(backend.from_numpy(np.ones((1, 5, 5), np.int8)))
    with pytest.raises(ValueError, match="L >= 3"):
        RandomSiteMetropolis(Ising(beta=0.3), SpinFlip()).init(backend.from_numpy(np.ones((1, 2, 2), np.int8)))
    # a rule must fit the theory, and the heat bath has no random-site form
    with pytest.raises(ValueError, match="spin flip needs"):
        RandomSiteMetropolis(Potts(beta=0.3, q=3), SpinFlip())
    with pytest.raises(ValueError, match="spin flip needs"):  # two states, but 0 and 1: -s leaves them
        CheckerboardMetropolis(Clock(beta=0.3, q=2), SpinFlip())
    with pytest.raises(ValueError, match="state shift needs"):
        CheckerboardMetropolis(Ising(beta=0.3), StateShift())
    with pytest.raises(TypeError, match="rule must be given"):
        CheckerboardMetropolis(Ising(beta=0.3))
    k = RandomSiteMetropolis(Ising(beta=0.3), HeatBath())
    with pytest.raises(ValueError, match="checkerboard"):
        k.step(k.init(backend.from_numpy(np.ones((1, 4, 4), np.int8))), backend.rng(0))


def test_fss_exponent_and_histogram():
    """The exponent of two independent runs carries both runs' errors (linear propagation through
    their jackknife replicas); of one estimate with itself it is exactly 0 +- 0."""
    rng = np.random.default_rng(1)
    large = gamma_method(4.0 ** 1.75 * 10 + 0.1 * rng.normal(size=(500, 4)))
    small = gamma_method(10.0 + 0.01 * rng.normal(size=(500, 4)))
    e = fss_exponent(large, small)
    assert e.value == pytest.approx(math.log(large.value / small.value) / math.log(4.0), rel=1e-12)
    linear = math.hypot(large.error / large.value, small.error / small.value) / math.log(4.0)
    assert e.error == pytest.approx(linear, rel=0.25)
    assert abs(e.z(1.75)) < 5  # the true exponent, within 5 sigma (false alarm < 1e-6)
    same = fss_exponent(large, large)
    assert same.value == 0.0 and same.error == 0.0  # fully correlated: the errors cancel
    with pytest.raises(ValueError, match="no jackknife replicas"):
        fss_exponent(Estimate(4.0 ** 1.75 * 10, 0.1), Estimate(10.0, 0.01))
    m = np.random.default_rng(0).normal(0, 0.3, size=(2000, 4))
    h = magnetisation_histogram(m, L=16, bins=21)
    width = 2.0 / 21
    assert float(np.sum(h["p"]) * width) == pytest.approx(1.0, abs=0.01)
    np.testing.assert_allclose(h["x"], h["m"] * 16 ** 0.125)


# --- multi-hit checkerboard for spins -------------------------------------------------------------
@pytest.mark.parametrize("theory", [Ising(beta=0.0), EdwardsAnderson.gaussian(4, 2, 7, beta=0.0, backend=NUMPY)],
                         ids=["ising-blocked", "ea-masked"])
@pytest.mark.parametrize("hits", [1, 2, 3])
def test_spin_flip_hits_are_honoured(theory, hits):
    """At beta = 0 every flip is accepted, so ``hits`` flips per site leave the spins flipped (odd)
    or as they were (even), with acceptance 1: in the blocked layout (integer thresholds) as in
    the masked one."""
    s0 = theory.random(NUMPY.rng(1), (3, 4, 4), np.float64)
    k = CheckerboardMetropolis(theory, SpinFlip(), hits=hits)
    state, info = k.step(k.init(s0), NUMPY.rng(2))
    np.testing.assert_array_equal(state.spins, s0 if hits % 2 == 0 else -s0)
    np.testing.assert_array_equal(info.acceptance, np.ones(3))


def test_multi_hit_spin_flip_samples_exact_ising():
    """Two hits per site in the blocked layout against exact enumeration (Ising 4x4, beta = 0.4):
    <e> and <m^2> within 4.5 Gamma-method sigma (false alarm < 1e-5 each)."""
    from portable_lattice.conformance.exact_spins import enumerate_model
    theory = Ising(beta=0.4)
    exact = enumerate_model("ising", 0.4, 4)
    res = run(CheckerboardMetropolis(theory, SpinFlip(), hits=2), theory.random(NUMPY.rng(3), (16, 4, 4), np.float64),
              NUMPY.rng(4), n_therm=100, n_measure=2000, measure=lambda s: measure_spins(s, theory, np.float64),
              to_host=np.asarray, progress=False)
    for name in ("energy", "m2"):
        assert abs(res.observables[name].z(exact[name])) < 4.5, (name, res.observables[name], exact[name])
    assert 0 < res.observables["acceptance"].value < 1


def test_heatbath_takes_one_hit():
    with pytest.raises(ValueError, match="hits must be 1, got hits=2"):
        CheckerboardMetropolis(Ising(beta=0.4), HeatBath(), hits=2)


@pytest.mark.parametrize("algorithm,L", [("metropolis", 3), ("checkerboard", 8)])
def test_two_state_potts_is_sampled_in_its_own_states(algorithm, L):
    """q = 2 Potts spins are 0 and 1: ``simulate`` moves them to the other state (a flip -s would
    leave them), and the run agrees with the exact values (4.5 Gamma-method sigma): by enumeration
    at L = 3; at L = 8 from Kaufman's Ising torus, since delta(s, s') = (1 + s s') / 2 makes Potts
    at beta the Ising model at K = beta / 2, with e = -1 + e_Ising / 2 and the same C."""
    from portable_lattice.conformance.exact_spins import enumerate_model
    theory = Potts(beta=1.0, q=2)
    if L == 3:
        exact = enumerate_model("potts", 1.0, L, q=2)
    else:
        ising = ising_torus(0.5, L)
        exact = {"energy": -1.0 + ising.energy / 2, "heat_capacity": ising.heat_capacity}
    res = simulate(theory, L=L, algorithm=algorithm, chains=8, therm=50, sweeps=800, seed=3, progress=False)
    assert set(np.unique(res.state.spins)) <= {0, 1}
    for name in ("energy", "heat_capacity"):
        assert abs(res.observables[name].z(exact[name])) < 4.5, (name, res.observables[name], exact[name])


# --- the random-site update (Eq. 7 of [DCL]) ---------------------------------------------------
RANDOM_SITE_THEORIES = [Ising(beta=0.6, J=0.8, h=0.3), Potts(beta=0.9, q=3), Clock(beta=0.7, q=4),
                        EdwardsAnderson.gaussian(4, 2, 2, beta=0.9, backend=NUMPY)]
RANDOM_SITE_IDS = ["ising", "potts", "clock", "ea"]


def _rule(theory):
    return SpinFlip() if theory.n_states == 2 else StateShift()


@pytest.mark.parametrize("theory", RANDOM_SITE_THEORIES, ids=RANDOM_SITE_IDS)
def test_random_site_spins_match_a_hand_written_sweep(theory):
    """The DCL paper's single-spin Metropolis written out in plain Python, with the same random
    numbers (per sweep: the sites, the proposals' offsets for q-state spins, the uniforms): a
    random site per chain, a flip or a uniformly random other state, accepted where
    log u < -beta dE, dE from the total energy."""
    L, chains, V = 4, 2, 16
    s0 = theory.random(NUMPY.rng(3), (chains, L, L), np.float64)
    k = RandomSiteMetropolis(theory, _rule(theory))
    state, info = k.step(k.init(s0), NUMPY.rng(5))
    g = NUMPY.rng(5)
    sites = g.integers(V, (V, chains))
    offsets = None if theory.n_states == 2 else g.integers(theory.q - 1, (V, chains))
    logu = np.log(g.uniform((V, chains), np.float64))
    s = s0.copy()
    accepted = np.zeros(chains)
    for n in range(V):
        for c in range(chains):
            x, y = divmod(int(sites[n, c]), L)
            new = s.copy()
            new[c, x, y] = -s[c, x, y] if offsets is None else (s[c, x, y] + 1 + offsets[n, c]) % theory.q
            dE = theory.energy(new, np.float64)[c] - theory.energy(s, np.float64)[c]
            if logu[n, c] < -theory.beta * dE:
                s = new
                accepted[c] += 1
    np.testing.assert_array_equal(state.spins, s)
    np.testing.assert_allclose(info.acceptance, accepted / V)
    assert not np.array_equal(s, s0)


@pytest.mark.parametrize("theory", RANDOM_SITE_THEORIES, ids=RANDOM_SITE_IDS)
def test_random_site_spin_fast_path_equals_generic(backend, theory):
    """In-place site writes (array-api-extra's ``at``) and the generic one-hot ``where`` give the
    same chains bit for bit."""
    present, why = capability("inplace_site_writes", backend.name, str(backend.device))
    if not present:
        pytest.skip(why)
    if hasattr(theory, "couplings"):  # couplings drawn on the backend, for an odd L = 5
        theory = EdwardsAnderson.gaussian(5, 2, 2, beta=theory.beta, backend=backend)
    s0 = theory.random(backend.rng(2), (3, 5, 5), backend.xp.float64)
    out = []
    for inplace in (False, True):
        k = RandomSiteMetropolis(theory, _rule(theory), inplace=inplace)
        rng, state = backend.rng(9), k.init(s0)
        for _ in range(2):
            state, _ = k.step(state, rng)
        out.append(backend.to_numpy(state.spins))
    np.testing.assert_array_equal(out[0], out[1])


def test_random_site_spin_update_is_O1():
    """Each single-site update costs O(1) (neighbours gathered, the new value written in place), so
    a sweep of V updates takes time proportional to V: 4x the sites, about 4x the time (an O(V)
    update, like the one-hot where, would give 16x). 4 chains; one sweep of each size after a
    warm-up sweep, alternating sizes so that a drifting machine speed hits both, best of five;
    the bounds are generous for a shared machine."""
    import time
    theory = Ising(beta=0.4)
    kernel = RandomSiteMetropolis(theory, SpinFlip())
    rng = NUMPY.rng(1)
    states = {}
    for L in (32, 64):
        states[L], _ = kernel.step(kernel.init(theory.random(rng, (4, L, L), np.float64)), rng)  # warm-up
    times = {32: [], 64: []}
    for _ in range(5):
        for L in (32, 64):
            t = time.perf_counter()
            states[L], _ = kernel.step(states[L], rng)
            times[L].append(time.perf_counter() - t)
    ratio = min(times[64]) / min(times[32])
    assert 2 < ratio < 8, f"sweep time ratio L=64 / L=32 is {ratio:.2f} ({times})"


# --- independence Metropolis ---------------------------------------------------------------------
def _independent_spins(mixture=False, claim_uniform=False):
    """A proposal of independent +-1 spins with its log-density: uniform ones (log q = -V ln 2), or
    ``mixture``: per chain, +1 with probability 0.7 or 0.3 (either with probability 1/2), a
    non-constant log q that favours the magnetised states. ``claim_uniform`` reports -V ln 2
    whatever was drawn (a wrong density, which the chain must then fail on)."""
    def proposal(rng, like):
        from array_api_compat import array_namespace
        xp = array_namespace(like)
        shape, chains = tuple(like.shape), like.shape[0]
        V = math.prod(shape[1:])
        p_up = 0.5
        if mixture:
            heads = xp.astype(rng.uniform((chains,), xp.float64) < 0.5, xp.float64)
            p_up = xp.reshape(0.3 + 0.4 * heads, (chains,) + (1,) * (len(shape) - 1))  # 0.7 or 0.3
        up = rng.uniform(shape, xp.float64) < p_up
        one = xp.ones(shape, dtype=xp.int8, device=like.device)
        n_up = xp.sum(xp.astype(up, xp.float64), axis=tuple(range(1, like.ndim)))
        if mixture and not claim_uniform:
            a = n_up * math.log(0.7) + (V - n_up) * math.log(0.3)
            b = n_up * math.log(0.3) + (V - n_up) * math.log(0.7)
            log_q = xp.logaddexp(a, b) + math.log(0.5)
        else:
            log_q = xp.full((chains,), -V * math.log(2.0), dtype=xp.float64, device=like.device)
        return xp.where(up, one, -one), log_q
    return proposal


def _independence_run(backend, proposal, theory, chains=16, n=2000, seed=12):
    kernel = IndependenceMetropolis(theory, proposal)
    start = backend.from_numpy(np.ones((chains, 3, 3), np.int8))
    return run(kernel, start, backend.rng(seed), n_therm=50, n_measure=n,
               measure=lambda s: measure_spins(s, theory, backend.xp.float64), to_host=backend.to_numpy,
               progress=False)


@pytest.mark.parametrize("mixture", [False, True], ids=["uniform", "mixture"])
def test_independence_metropolis_reproduces_exact_ising(backend, mixture):
    """Ising 3x3 at beta = 0.3 from independent spins: uniform ones (log q = -V ln 2), and a
    mixture that favours magnetised states (the chain must undo that through log q). <e>, <m^2>
    and <m> = 0 against exact enumeration; Gamma-method errors, 4.5 sigma (false alarm < 1e-5
    each). From the uniform proposal the chains stick for stretches in the ground states
    (tau_int is tens of steps), so the run is long enough that 10 tau_int, the statistics'
    bound for an honest error, stays well below it."""
    from portable_lattice.conformance.exact_spins import enumerate_model
    theory = Ising(beta=0.3)
    exact = dict(enumerate_model("ising", 0.3, 3), m=0.0)
    res = _independence_run(backend, _independent_spins(mixture), theory)
    for name in ("energy", "m2", "m"):
        est = res.observables[name]
        assert 10 * est.tau_int < 2000 and est.error > 0, (name, est)
        assert abs(est.z(exact[name])) < 4.5, (name, est, exact[name])
    acc = res.observables["acceptance"].value
    assert 0.05 < acc < 1


def test_independence_metropolis_needs_the_true_density():
    """Power: the mixture proposal with the uniform density claimed samples exp(-beta H) q instead
    of exp(-beta H), which puts too much weight on the magnetised states (fixed seed)."""
    from portable_lattice.conformance.exact_spins import enumerate_model
    exact = enumerate_model("ising", 0.3, 3)
    res = _independence_run(NUMPY, _independent_spins(mixture=True, claim_uniform=True), Ising(beta=0.3))
    assert res.observables["m2"].z(exact["m2"]) > 5


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
