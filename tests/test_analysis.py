import math

import numpy as np
import pytest

from portable_lattice.statistics import chain_error, derived, format_value, gamma_method


def ar1(n, chains, a, seed):
    """x_t = a x_{t-1} + sqrt(1 - a^2) e_t: unit variance, tau_int = (1 + a) / (2 (1 - a))."""
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(n, chains))
    x = np.empty_like(e)
    x[0] = e[0]
    c = math.sqrt(1 - a * a)
    for t in range(1, n):
        x[t] = a * x[t - 1] + c * e[t]
    return x


@pytest.mark.parametrize("a", [0.0, 0.5, 0.9])
def test_gamma_method_recovers_tau_int_of_ar1(a):
    x = ar1(20000, 4, a, seed=1)
    est = gamma_method(x)
    tau = (1 + a) / (2 * (1 - a))
    assert abs(est.tau_int - tau) < 4 * est.tau_int_error + 0.05
    assert est.error == pytest.approx(math.sqrt(2 * tau / x.size), rel=0.15)


def test_gamma_error_covers_truth_at_stated_rate():
    """Over 200 independent AR(1) runs the z-scores have unit spread (error bars are honest)."""
    z = np.array([gamma_method(ar1(2000, 2, 0.8, s)).z(0.0) for s in range(200)])
    assert abs(z.std() - 1) < 0.15 and abs(z.mean()) < 0.25
    assert np.mean(np.abs(z) > 2) < 0.1


def test_gamma_and_chain_errors_agree():
    x = ar1(4000, 32, 0.7, seed=3)
    g, c = gamma_method(x), chain_error(x)
    assert g.value == pytest.approx(c.value)
    # the chain-scatter error has 31 degrees of freedom: ~13% relative uncertainty
    assert g.error == pytest.approx(c.error, rel=0.35)


def test_gamma_on_array_api_strict():
    xs = pytest.importorskip("array_api_strict")
    x = ar1(1000, 3, 0.5, seed=4)
    a, b = gamma_method(x), gamma_method(xs.asarray(x))
    assert a.value == pytest.approx(b.value) and a.error == pytest.approx(b.error)


def test_derived_jackknife_on_a_known_variance():
    """chi-like V(<x^2> - <x>^2) of iid N(0, s^2) has value s^2 and error s^2 sqrt(2/N)."""
    rng = np.random.default_rng(5)
    x = 1.5 * rng.normal(size=(5000, 8))
    est = derived(lambda m2, m: m2 - m * m, [x * x, x])
    assert abs(est.value - 2.25) < 4 * est.error
    assert est.error == pytest.approx(2.25 * math.sqrt(2 / x.size), rel=0.15)


def test_constant_series():
    est = gamma_method(np.ones((100, 3)))
    assert est.value == 1 and est.error == 0


def test_format_value():
    assert format_value(1.23456, 0.0123) == "1.235(12)"
    assert format_value(123.4, 5.6) == "123.4(56)"
