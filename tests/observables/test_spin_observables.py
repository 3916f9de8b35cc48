"""Finite-size scaling exponents and magnetisation histograms."""
import math

import numpy as np
import pytest

from portable_lattice.observables import fss_exponent, magnetisation_histogram
from portable_lattice.statistics import Estimate, gamma_method


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
