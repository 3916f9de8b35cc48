"""Majority blocking, the MCRG couplings and the T matrix."""
import math

import numpy as np
import pytest

from portable_lattice.rg.blocking import block_levels, majority_block
from portable_lattice.rg.mcrg import COUPLINGS, EVEN, ODD, measure_couplings, t_matrix_exponents
from portable_lattice.statistics import Estimate


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
