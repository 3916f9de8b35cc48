import numpy as np
import pytest

from portable_lattice import Phi4
from portable_lattice.lattice import parity, sublattice_masks

from reference import phi4_action_loops


@pytest.mark.parametrize("dim", [1, 2, 3, 4])
def test_action_matches_site_loops(backend, dim):
    L = {1: 7, 2: 5, 3: 4, 4: 3}[dim]
    rng = np.random.default_rng(dim)
    host = rng.normal(size=(3,) + (L,) * dim)
    phi = backend.from_numpy(host, "float64")
    for action, constant in [(Phi4.from_beta_g(0.37, 0.23), True), (Phi4.from_kappa_lambda(0.21, 0.022), False)]:
        got = backend.to_numpy(action.action(phi))
        want = [phi4_action_loops(h, action.beta, action.g, constant) for h in host]
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_two_forms_are_one_family():
    a, b = Phi4.from_kappa_lambda(0.21, 0.022), Phi4.from_beta_g(0.42, 0.022)
    assert a.beta == b.beta and a.g == b.g and a.kappa == pytest.approx(0.21)
    phi = np.random.default_rng(0).normal(size=(2, 6, 6))
    # they differ by the constant lambda * V only
    np.testing.assert_allclose(b.action(phi) - a.action(phi), 0.022 * 36, rtol=1e-12)
    assert a.params() == {"name": "phi4", "form": "kappa_lambda", "kappa": 0.21, "lam": 0.022}


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_gradient_matches_finite_differences(backend, dim):
    L = {1: 6, 2: 4, 3: 3}[dim]
    action = Phi4.from_beta_g(0.31, 0.17)
    host = np.random.default_rng(1).normal(size=(2,) + (L,) * dim)
    grad = backend.to_numpy(action.grad_action(backend.from_numpy(host, "float64")))
    h = 1e-6
    for idx in [(0,) + (0,) * dim, (1,) + (L - 1,) * dim, (1,) + (1,) * dim]:
        up, dn = host.copy(), host.copy()
        up[idx] += h
        dn[idx] -= h
        fd = (action.action(up)[idx[0]] - action.action(dn)[idx[0]]) / (2 * h)
        assert grad[idx] == pytest.approx(fd, rel=1e-7, abs=1e-8)


def test_gradient_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    action = Phi4.from_beta_g(0.5, 0.1)
    phi = torch.randn(3, 6, 6, dtype=torch.float64, requires_grad=True)
    action.action(phi).sum().backward()
    torch.testing.assert_close(action.grad_action(phi.detach()), phi.grad, rtol=1e-12, atol=1e-12)


def test_gradient_is_eq4_at_one_site():
    """Eq. 4 of 000 written out by hand at site (2, 3)."""
    beta, g = 0.6, 0.1
    phi = np.random.default_rng(2).normal(size=(1, 5, 5))
    x = phi[0, 2, 3]
    nb = phi[0, 3, 3] + phi[0, 1, 3] + phi[0, 2, 4] + phi[0, 2, 2]
    eq4 = -beta * nb + 2 * (1 - 2 * g) * x + 4 * g * x ** 3
    assert Phi4.from_beta_g(beta, g).grad_action(phi)[0, 2, 3] == pytest.approx(eq4, rel=1e-13)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_local_delta_action_is_exact_on_independent_sites(backend, dim):
    """Eq. 3 summed over a checkerboard parity (or a stride-3 sublattice) equals S[phi'] - S[phi]."""
    xp = backend.xp
    L = 6
    action = Phi4.from_beta_g(0.45, 0.3)
    rng = np.random.default_rng(3)
    phi = backend.from_numpy(rng.normal(size=(2,) + (L,) * dim), "float64")
    delta = backend.from_numpy(rng.normal(size=(2,) + (L,) * dim), "float64")
    masks = [parity(xp, L, dim, backend.device) == 0] + sublattice_masks(xp, L, dim, 3, backend.device)[:2]
    for mask in masks:
        d = xp.where(mask, delta, 0.0)
        dS = action.local_delta_action(phi, d, action.grad_action(phi))
        total = xp.sum(xp.reshape(dS, (2, -1)), axis=1)
        exact = action.action(phi + d) - action.action(phi)
        np.testing.assert_allclose(backend.to_numpy(total), backend.to_numpy(exact), rtol=1e-10, atol=1e-10)


def test_local_delta_action_fails_for_neighbours():
    """The test above can fail: updating two neighbours at once breaks Eq. 3's locality."""
    action = Phi4.from_beta_g(0.45, 0.3)
    phi = np.random.default_rng(4).normal(size=(1, 6, 6))
    d = np.zeros_like(phi)
    d[0, 2, 2] = d[0, 2, 3] = 0.7
    total = action.local_delta_action(phi, d, action.grad_action(phi)).sum()
    assert abs(total - (action.action(phi + d)[0] - action.action(phi)[0])) > 1e-3


def test_bad_parameters():
    with pytest.raises(ValueError, match="beta=0.5"):
        Phi4.from_beta_g(0.5, 0.0).check_dimension(2)
    with pytest.raises(ValueError, match="kappa=0.3"):
        Phi4.from_kappa_lambda(0.3, 0.0).check_dimension(2)
    Phi4.from_beta_g(0.49, 0.0).check_dimension(2)  # stable
    Phi4.from_beta_g(0.7, 0.1).check_dimension(2)   # g > 0 is always stable
    with pytest.raises(ValueError, match="g=-0.1"):
        Phi4.from_beta_g(0.3, -0.1)
    with pytest.raises(ValueError, match="beta=nan"):
        Phi4.from_beta_g(float("nan"), 0.1)
