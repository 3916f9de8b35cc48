"""Estimates that compose: jackknife replicas, combine(), split R-hat, honest NaN errors."""
import math
import warnings

import numpy as np
import pytest

from portable_lattice.statistics import (Estimate, UnreliableErrorWarning, combine, derived, gamma_method,
                                         split_rhat)


def _iid(seed, mean, n=4000, chains=4):
    return np.random.default_rng(seed).normal(mean, 1.0, size=(n, chains))


def test_independent_ensembles_add_in_quadrature():
    """a / b of two independent runs: first-order propagation, sigma_a / sqrt(N) each."""
    a, b = gamma_method(_iid(1, 2.0)), gamma_method(_iid(2, 4.0))
    r = a / b
    expect = math.hypot(a.error / b.value, a.value * b.error / b.value ** 2)
    assert r.value == pytest.approx(a.value / b.value)
    assert r.error == pytest.approx(expect, rel=0.1)  # jackknife vs Gamma error: same to ~10% at 64 bins


def test_correlations_within_one_ensemble_are_kept():
    x = _iid(3, 1.0)
    a = gamma_method(x, ensemble="run", bins=16)
    assert (a - a).error == 0.0
    assert (a + a).error == pytest.approx(2 * (a + 0.0).error)
    # a derived quantity of the same run composes with its primaries
    chi = derived(lambda m2, m: m2 - m * m, [x * x, x], ensemble="run", bins=16)
    assert math.isfinite((chi / a).error)


def test_mismatched_binnings_and_missing_replicas_are_refused():
    x = _iid(4, 1.0)
    with pytest.raises(ValueError, match="binnings"):
        combine(lambda p, q: p + q, gamma_method(x, ensemble="e", bins=8), gamma_method(x, ensemble="e", bins=16))
    with pytest.raises(ValueError, match="replicas"):
        combine(math.log, Estimate(1.0, 0.1))


def test_error_of_a_ratio_matches_the_spread_over_independent_repetitions():
    """The composed error of log(a/b) against the scatter of 200 independent repetitions (chi^2-style
    bound: the ratio of the two lies within 0.8..1.25 with a 200-sample spread)."""
    vals, errs = [], []
    for k in range(200):
        a = gamma_method(_iid(100 + k, 2.0, n=400, chains=2))
        b = gamma_method(_iid(1000 + k, 3.0, n=400, chains=2))
        e = (a / b).log()
        vals.append(e.value)
        errs.append(e.error)
    assert 0.8 < np.std(vals, ddof=1) / np.mean(errs) < 1.25


def test_split_rhat():
    assert split_rhat(_iid(5, 0.0)) == pytest.approx(1.0, abs=0.01)
    x = _iid(6, 0.0)
    x[:, 0] += 1.0  # one chain elsewhere: not converged
    assert split_rhat(x) > 1.05  # the usual convergence bound is 1.01
    assert gamma_method(x).rhat > 1.05


def test_unreliable_errors_are_nan_with_a_warning():
    with pytest.warns(UnreliableErrorWarning):
        assert math.isnan(gamma_method(np.ones((1, 4))).error)
    # a drift over the whole run (tau_int comparable to the run length): no honest error
    x = np.linspace(0.0, 1.0, 100)[:, None] + 0.01 * np.random.default_rng(7).normal(size=(100, 2))
    with pytest.warns(UnreliableErrorWarning):
        assert math.isnan(gamma_method(x).error)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isfinite(gamma_method(_iid(8, 0.0)).error)  # a healthy series does not warn


def test_a_series_with_nan_has_no_error_not_zero():
    import warnings as _w

    import numpy as _np

    from portable_lattice.statistics import UnreliableErrorWarning, gamma_method
    for x in (_np.full((50, 2), _np.nan), _np.concatenate([_np.ones((49, 2)), _np.full((1, 2), _np.nan)])):
        with _w.catch_warnings(record=True) as caught:
            _w.simplefilter("always")
            e = gamma_method(x)
        assert _np.isnan(e.error) and _np.isnan(e.tau_int)
        assert any(issubclass(w.category, UnreliableErrorWarning) for w in caught)
