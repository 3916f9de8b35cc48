"""The exact Ising torus against enumeration, and near K_c against Onsager."""
import itertools
import math

import numpy as np
import pytest

from portable_lattice.exact import K_CRITICAL, ising_torus
from portable_lattice.exact.ising2d import log_partition_function


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
