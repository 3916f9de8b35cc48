"""Training the inverse-RG upscaler: the pattern reduction is exact, the fit finds the generating weights."""
import json
import math

import numpy as np
import pytest

from portable_lattice.backends import get_backend
from portable_lattice.nn.upscaler import PatternSet, _loss_and_grad, fit_weights, loss_of
from portable_lattice.rg.upscaling import n_parameters, upscale_once, upscale_probabilities


def _data(k, w, n=400, L=8, seed=0):
    be = get_backend("numpy")
    mu = np.random.default_rng(seed).choice(np.array([-1, 1], np.int8), size=(n, L, L))
    sigma = upscale_once(mu, w, k, be.rng(seed + 1))
    return mu, sigma


@pytest.mark.parametrize("k", [3, 5])
def test_pattern_loss_equals_the_per_site_loss(k):
    w_true = np.random.default_rng(k).normal(scale=0.2, size=n_parameters(k))
    mu, sigma = _data(k, w_true, n=50)
    ps = PatternSet(k)
    weights = np.random.default_rng(1).uniform(0.5, 1.0, size=len(mu))
    ps.add(sigma, mu, weights)
    w = np.random.default_rng(2).normal(scale=0.3, size=n_parameters(k))
    p_up = upscale_probabilities(mu, w, k)
    p = np.where(sigma == 1, p_up, 1 - p_up)
    direct = -(weights[:, None, None] * np.log(p)).sum() / (weights.sum() * sigma[0].size)
    assert loss_of(w, ps) == pytest.approx(direct, rel=1e-12)


def test_gradient_is_the_derivative_of_the_loss():
    mu, sigma = _data(3, [0.1, 0.2, 0.3], n=40)
    ps = PatternSet(3)
    ps.add(sigma, mu, np.ones(len(mu)))
    Z, c = ps.vectors(), ps.weights
    w = np.array([0.05, -0.1, 0.2])
    _, g = _loss_and_grad(w, Z, c, ps.sites)
    h = 1e-6
    num = [(_loss_and_grad(w + h * e, Z, c, ps.sites)[0] - _loss_and_grad(w - h * e, Z, c, ps.sites)[0]) / (2 * h)
           for e in np.eye(3)]
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-10)


def test_fit_recovers_the_weights_that_generated_the_data():
    """Maximum likelihood on 400 x 16 x 16 draws from Eq. 9: each fitted weight within 5 of its
    asymptotic standard errors (the inverse Fisher information at the optimum)."""
    w_true = np.array([0.12, 0.2, 0.35])
    mu, sigma = _data(3, w_true, n=400)
    ps = PatternSet(3)
    ps.add(sigma, mu, np.ones(len(mu)))
    w, loss = fit_weights(ps)
    Z, c = ps.vectors(), ps.weights
    x = 2 * Z @ w
    s = 1 / (1 + np.exp(-x))
    fisher = (4 * Z.T * (c * s * (1 - s))) @ Z  # Hessian of the summed negative log-likelihood
    err = np.sqrt(np.diag(np.linalg.inv(fisher)))
    assert np.all(np.abs(w - w_true) < 5 * err), (w, w_true, err)
    assert loss < math.log(2)


def test_upscale_cli_trains_saves_and_loads(tmp_path, capsys):
    from portable_lattice.cli import main
    net = str(tmp_path / "net.json")
    assert main(["upscale", "--k", "3", "--train-configs", "256", "--train-L", "16", "--levels", "3",
                 "--configs", "32", "--save-net", net, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["loss"]["train"] < math.log(2) and len(out["model"]["weights"]) == 3
    assert json.load(open(net))["weights"] == out["model"]["weights"]
    assert main(["upscale", "--k", "3", "--net", net, "--levels", "3", "--configs", "32", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["weights"] == out["model"]["weights"]
    for args, msg in ((["--k", "5", "--net", net], "k=3 model"), (["--k", "3", "--net", str(tmp_path)], "cannot read"),
                      (["--k", "3", "--weights", "1,2,3", "--net", net], "exactly one"),
                      (["--k", "3", "--weights", "1,2,3", "--weighted"], "--weighted")):
        with pytest.raises(SystemExit) as e:
            main(["upscale", "--levels", "2", "--configs", "8", *args])
        assert e.value.code == 2 and msg in capsys.readouterr().err
