"""The torch model zoo and the surrogate adapter."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from portable_lattice import Phi4  # noqa: E402
from portable_lattice.backends import BackendUnavailableError, backend_of, get_backend  # noqa: E402
from portable_lattice.backends.surrogate import TorchEnsemble, torch_device  # noqa: E402
from portable_lattice.nn import ResidualCNN  # noqa: E402
from portable_lattice.samplers import PEM, FieldState, surrogate_metropolis  # noqa: E402


def _members(n, channels=4, seed=0):
    torch.manual_seed(seed)
    out = []
    for _ in range(n):
        m = ResidualCNN(channels)
        for bn in (m.inp[1], m.block[1]):
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
        out.append(m.double().eval())
    return out


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_receptive_field_matches_the_architecture(kernel_size):
    m = ResidualCNN(4, kernel_size).double().eval()
    r = m.receptive_field
    assert r == 3 * (kernel_size - 1) // 2
    L = 4 * r + 3
    x = torch.randn(1, 1, L, L, dtype=torch.float64)
    y = x.clone()
    c = L // 2
    y[0, 0, c, c] += 1.0
    with torch.no_grad():
        diff = (m(y) - m(x)).abs()[0, 0]
    changed = torch.nonzero(diff > 1e-12)
    cheb = (changed - c).abs().max(dim=1).values
    assert int(cheb.max()) == r  # reaches exactly r ...
    assert torch.all(diff[[i for i in range(L) if abs(i - c) > r]] == 0)  # ... and no further


@pytest.mark.parametrize("dim,kernel_size,L", [(2, 3, 8), (2, 5, 9), (1, 3, 7), (3, 3, 5), (2, 3, 2)])
def test_inference_form_equals_the_members(dim, kernel_size, L):
    """Folded BatchNorm + one circular pad + valid convolutions (one member or N fused) equals
    the eval-mode modules, also on lattices smaller than the receptive field (L = 2 < r = 3)."""
    torch.manual_seed(3)
    members = []
    for _ in range(3):
        m = ResidualCNN(4, kernel_size, dim)
        for bn in (m.inp[1], m.block[1]):
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)
        members.append(m.double().eval())
    x = torch.randn((4, 1) + (L,) * dim, dtype=torch.float64)
    with torch.no_grad():
        ref = torch.cat([m(x) for m in members], dim=1)
        fused = ResidualCNN.stack(members)(x)
        single = torch.cat([ResidualCNN.stack([m])(x) for m in members], dim=1)
    torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(single, ref, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="eval mode"):
        ResidualCNN.stack([ResidualCNN(4, kernel_size, dim)])


def test_ensemble_adapter_on_every_backend(backend):
    models = _members(3)
    host = np.random.default_rng(1).normal(size=(5, 8, 8))
    with torch.no_grad():  # the reference: the modules on the host, one after another
        preds = torch.stack([m(torch.from_numpy(host).unsqueeze(1)) for m in models])[:, :, 0]
    dev = torch_device(backend)
    models = [m.to(dev) for m in models]
    ens = TorchEnsemble(models)
    loop = TorchEnsemble(models, vectorised=False)
    fused = TorchEnsemble(models, vectorised=True)
    phi = backend.from_numpy(host, "float64")
    mean, var = ens(phi)
    assert type(mean) is type(phi) and mean.dtype == phi.dtype and tuple(mean.shape) == (5, 8, 8)
    assert str(backend_of(mean).device) == str(backend.device)
    np.testing.assert_allclose(backend.to_numpy(mean), preds.mean(0).numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(var), preds.var(0, unbiased=True).numpy(), rtol=1e-9, atol=1e-12)
    for other in (loop, fused):
        m2, v2 = other(phi)
        np.testing.assert_allclose(backend.to_numpy(m2), backend.to_numpy(mean), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(backend.to_numpy(v2), backend.to_numpy(var), rtol=1e-8, atol=1e-12)
    # default on CPU: one fused pass while dispatch dominates, the loop over inference forms above;
    # on CUDA always one pass
    assert ens._one_pass(torch.zeros(5, 8, 8))
    assert ens._one_pass(torch.zeros(4, 48, 48)) == (dev.type == "cuda")
    assert not loop._one_pass(torch.zeros(1, 8, 8)) and fused._one_pass(torch.zeros(64, 48, 48))
    chunked = TorchEnsemble(models, chunk=2)
    np.testing.assert_allclose(backend.to_numpy(chunked(phi)[0]), backend.to_numpy(mean), rtol=1e-12)


def test_zero_copy_from_numpy():
    m = _members(1)[0]
    ens = TorchEnsemble([m])
    phi = np.random.default_rng(2).normal(size=(2, 8, 8))
    x = ens._to_torch(phi)
    assert x.data_ptr() == phi.__array_interface__["data"][0]


def test_zero_copy_between_cupy_and_torch_cuda():
    """CuPy fields reach a CUDA surrogate through DLPack, without a copy, and come back as CuPy."""
    try:
        be = get_backend("cupy")
    except BackendUnavailableError:
        pytest.skip("no usable CuPy GPU on this machine")
    m = _members(1)[0].to(torch_device(be))
    ens = TorchEnsemble([m])
    phi = be.from_numpy(np.random.default_rng(2).normal(size=(2, 8, 8)), "float64")
    x = ens._to_torch(phi)
    assert x.is_cuda and x.data_ptr() == phi.data.ptr
    mean, var = ens(phi)
    assert backend_of(mean).name == "cupy" and var is None
    with torch.no_grad():
        ref = m(torch.from_numpy(be.to_numpy(phi)).to(x.device).unsqueeze(1))[:, 0]
    np.testing.assert_allclose(be.to_numpy(mean), ref.cpu().numpy(), rtol=1e-10, atol=1e-12)


def test_float32_network_float64_field():
    m = ResidualCNN(4).float().eval()
    ens = TorchEnsemble([m])
    phi = np.random.default_rng(3).normal(size=(2, 8, 8))
    mean, var = ens(phi)
    assert mean.dtype == np.float64 and var is None


def test_pem_with_a_cnn_parallel_equals_sequential_scan():
    """Receptive field 3: stride-4 sublattices; one network call per sublattice equals a scan."""
    action = Phi4.from_beta_g(0.5, 0.1)
    ens = TorchEnsemble(_members(2))
    from portable_lattice.backends import get_backend
    be = get_backend("numpy")
    L, stride = 8, ens.receptive_field + 1
    kernel = PEM(action, ens, 0.8, "parallel")
    rng = be.rng(6)
    phi0 = rng.normal((1, L, L), np.float64)
    state, _ = kernel.step(kernel.init(phi0), rng)
    rng = be.rng(6)
    rng.normal((1, L, L), np.float64)
    phi = phi0.copy()
    for oy in range(stride):
        for ox in range(stride):
            delta = 0.8 * rng.normal((1, L, L), np.float64)
            u = rng.uniform((1, L, L), np.float64)
            for x in range(ox, L, stride):
                for y in range(oy, L, stride):
                    mean, var = ens(phi)  # a fresh network call after every single-site update
                    d = np.zeros_like(phi)
                    d[0, x, y] = delta[0, x, y]
                    dS = action.local_delta_action(phi, d, mean)[0, x, y] + var[0, x, y] * d[0, x, y] ** 2 / 4
                    if np.log(u[0, x, y]) < -dS:
                        phi[0, x, y] += delta[0, x, y]
    np.testing.assert_allclose(state.phi, phi, rtol=0, atol=1e-12)


def test_adapter_bad_input():
    with pytest.raises(ValueError, match="architecture"):
        TorchEnsemble([ResidualCNN(4), ResidualCNN(8)])
    with pytest.raises(TypeError, match="torch.nn.Module"):
        TorchEnsemble([lambda x: x])
    with pytest.raises(ValueError, match="receptive_field"):
        TorchEnsemble([torch.nn.Conv2d(1, 1, 3, padding=1)])

    class Shrinks(torch.nn.Module):
        receptive_field = 1

        def __init__(self):
            super().__init__()
            self.c = torch.nn.Conv2d(1, 1, 3)  # no padding: output smaller than the field

        def forward(self, x):
            return self.c(x)
    with pytest.raises(ValueError, match="shape"):
        surrogate_metropolis(Phi4.from_beta_g(0.5, 0.1), TorchEnsemble([Shrinks().double()]), 1.0).step(
            FieldState(np.zeros((1, 8, 8))), get_backend("numpy").rng(0))


def test_dataset_training_save_load_and_residuals(tmp_path):
    from portable_lattice.nn.train import load_ensemble, save_ensemble, train_ensemble
    from portable_lattice.surrogates.data import gradient_dataset
    from portable_lattice.surrogates.calibration import residual_summary
    action = Phi4.from_beta_g(0.5, 0.1)
    phi, grad = gradient_dataset(action, 8, 48, chains=8, spacing=2, therm=50, seed=1)
    assert phi.shape == (48, 8, 8)
    np.testing.assert_allclose(grad, action.grad_action(phi))
    models, curves = train_ensemble(2, phi[:40], grad[:40], subset=32, epochs=8, channels=4, seed=0)
    assert all(c[-1] < c[0] for c in curves)  # it learns
    path = tmp_path / "ens.pt"
    save_ensemble(path, models, {"beta": 0.5, "g": 0.1, "L": 8, "curves": curves})
    loaded, meta = load_ensemble(path, expect={"beta": 0.5, "g": 0.1, "L": 8})
    np.testing.assert_allclose(TorchEnsemble(loaded)(phi[40:])[0], TorchEnsemble(models)(phi[40:])[0], rtol=1e-6)
    with pytest.warns(UserWarning, match="beta=0.5, not beta=0.7"):
        load_ensemble(path, expect={"beta": 0.7})
    blob = torch.load(path, weights_only=False)
    blob["architecture"]["channels"] = 8
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="do not fit the architecture"):
        load_ensemble(tmp_path / "bad.pt")
    s = residual_summary(TorchEnsemble(models)(phi[40:])[0], grad[40:])
    assert s["n"] == 8 * 64 and s["sigma"] > 0 and 0 <= s["tail_3sigma"] <= 1
    width = s["edges"][1] - s["edges"][0]
    assert sum(s["density"]) * width == pytest.approx(1.0, abs=0.05)


def test_member_subsets_random_overlap_and_disjoint_blocks():
    from portable_lattice.nn.train import member_subsets
    random = member_subsets(180, 10, 90, seed=0)
    assert all(len(p) == 90 and len(set(p.tolist())) == 90 for p in random)
    # 90 of 180 drawn independently: two members share about half their configurations
    overlaps = [len(set(a.tolist()) & set(b.tolist())) for i, a in enumerate(random) for b in random[i + 1:]]
    assert 30 < np.mean(overlaps) < 60
    disjoint = member_subsets(900, 10, 90, seed=0, disjoint=True)
    union = np.concatenate(disjoint)
    assert union.size == 900 and np.unique(union).size == 900
    assert all(len(p) == 40 for p in member_subsets(40, 3, None))  # everyone trains on all
    with pytest.raises(ValueError, match="subset=90"):
        member_subsets(800, 10, 90, disjoint=True)
    with pytest.raises(ValueError, match="subset=None"):
        member_subsets(800, 10, None, disjoint=True)
