"""Diffusion models ([DMSQ]): the VE SDE, score networks, samplers, likelihoods and exact DM-MC.

Most checks use the exact score of a Gaussian N(0, C) (:class:`GaussianScore`), for which the
probability-flow ODE is linear and every density is known in closed form, so samplers and
likelihoods are tested without training. Statistical checks have fixed seeds and state their
false-alarm rate.
"""
import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from portable_lattice import Phi4  # noqa: E402
from portable_lattice.backends import get_backend  # noqa: E402
from portable_lattice.exact import free_field_exact  # noqa: E402
from portable_lattice.nn.diffusion import (VESDE, DiffusionProposal, em_sample, evaluate_loss,  # noqa: E402
                                           load_score_model, log_likelihood, ode_sample, save_score_model,
                                           train_score)
from portable_lattice.nn.unet import GaussianScore, LatticeUNet, PaperUNet, free_field_spectrum  # noqa: E402
from portable_lattice.runs.diffusion import REPORTED, independence_chain, z_scores  # noqa: E402
from portable_lattice.samplers import IndependenceMetropolis, PoolProposal  # noqa: E402

SDE = VESDE()
L, KAPPA = 4, 0.2


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _var_eps():
    return float(SDE.std(torch.tensor(SDE.eps, dtype=torch.float64))) ** 2


def _flow_density(x, c):
    """Closed form: the exact ODE of N(0, C) maps the prior N(0, s_T^2) mode by mode onto
    N(0, s_T^2 (c + s_eps^2) / (c + s_T^2)); log q of configurations x (n, L, L)."""
    sT2 = SDE.prior_std() ** 2
    var = sT2 * (c + _var_eps()) / (c + sT2)
    xk = torch.fft.fft2(x.to(torch.float64))
    return -0.5 * (xk.abs() ** 2 / var).sum((1, 2)) / x[0].numel() - 0.5 * torch.log(2 * math.pi * var).sum()


def test_ve_sde_std_and_diffusion_coefficient():
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    h = 1e-6
    d_var = (SDE.std(t + h) ** 2 - SDE.std(t - h) ** 2) / (2 * h)
    assert torch.allclose(d_var, SDE.g2(t), rtol=1e-6)
    assert SDE.prior_std() == pytest.approx(math.sqrt(624 / (2 * math.log(25))))


def test_ode_sample_and_likelihood_are_exact_for_a_gaussian_score():
    """RK4 (100 steps) and the exact divergence against the closed form to 1e-6; the likelihood
    integrated back from eps to T gives the same log q; adaptive RK45 to its tolerance."""
    c = free_field_spectrum(L, KAPPA)
    model = GaussianScore(c)
    g = torch.Generator().manual_seed(0)
    x, log_q, nfe = ode_sample(model, SDE, 6, (L, L), steps=100, divergence="exact", generator=g)
    assert nfe == 400 and log_q.shape == (1, 6)
    ref = _flow_density(x, c)
    assert torch.allclose(log_q[0], ref, atol=1e-6)
    back, _ = log_likelihood(model, SDE, x, steps=100, divergence="exact")
    assert torch.allclose(back[0], ref, atol=1e-6)
    adaptive, nfe = log_likelihood(model, SDE, x, method="rk45", divergence="exact", rtol=1e-7, atol=1e-7)
    assert torch.allclose(adaptive[0], ref, atol=1e-4) and nfe < 400


def test_exact_divergence_is_the_jacobian_trace_and_hutchinson_is_unbiased():
    """On a random (non-linear) lattice network: the batched exact divergence equals the trace of
    the full Jacobian; 400 Rademacher and 400 Gaussian probes agree with it within 4.5 standard
    errors of their mean (false alarm < 1e-5 each)."""
    from portable_lattice.nn.diffusion import _drift_and_div
    torch.manual_seed(1)
    net = LatticeUNet(L, channels=(4, 8), embed=8).double()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, L, L, dtype=torch.float64)
    _, d = _drift_and_div(net, SDE, x, 0.3, "exact", None, 2 ** 30)
    g2 = float(SDE.g2(0.3))
    for i in range(2):
        jac = torch.autograd.functional.jacobian(lambda y: -0.5 * g2 * net(y[None], torch.tensor([0.3],
                                                 dtype=torch.float64))[0], x[i])
        assert float(d[0, i]) == pytest.approx(float(jac.reshape(L * L, L * L).trace()), rel=1e-10)
    for kind in ("rademacher", "gaussian"):
        z = torch.randn((400, 2, L, L), dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        probes = torch.sign(z) if kind == "rademacher" else z
        _, h = _drift_and_div(net, SDE, x, 0.3, "hutchinson", probes, 2 ** 30)
        zscore = (h.mean(0) - d[0]) / (h.std(0) / 20)
        assert bool((zscore.abs() < 4.5).all()), (kind, zscore)


def test_em_sampler_matches_its_discrete_gaussian_recursion():
    """For the exact Gaussian score the Euler-Maruyama chain is linear: mode k's variance follows
    v <- a^2 v + b^2. 4000 samples: <phi^2> against that closed form, z < 4.5."""
    c = free_field_spectrum(L, KAPPA)
    steps = 50
    x = em_sample(GaussianScore(c), SDE, 4000, (L, L), steps=steps, generator=torch.Generator().manual_seed(3))
    ts = torch.linspace(SDE.T, SDE.eps, steps + 1, dtype=torch.float64)
    v = torch.full_like(c, SDE.prior_std() ** 2)
    for i in range(steps):
        t, dt = float(ts[i]), float(ts[i] - ts[i + 1])
        a = 1 - float(SDE.g2(t)) * dt / (c + float(SDE.std(torch.tensor(t))) ** 2)
        v = a * a * v + (float(SDE.g2(t)) * dt if i < steps - 1 else 0.0)
    expected = float(v.mean())
    per = (x * x).mean((1, 2))
    z = (float(per.mean()) - expected) / (float(per.std()) / math.sqrt(4000))
    assert abs(z) < 4.5, (float(per.mean()), expected, z)


def test_lattice_network_is_odd_periodic_and_sees_the_whole_lattice():
    torch.manual_seed(4)
    net = LatticeUNet(8, channels=(4, 8, 8), embed=8).double()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(3, 8, 8, dtype=torch.float64)
    t = torch.rand(3, dtype=torch.float64)
    s = net(x, t)
    assert torch.allclose(net(-x, t), -s, atol=1e-12)
    shifted = net(torch.roll(x, (4, -4), (1, 2)), t)
    assert torch.allclose(shifted, torch.roll(s, (4, -4), (1, 2)), atol=1e-10)
    xg = x[:1].clone().requires_grad_(True)
    net(xg, t[:1])[0, 0, 0].backward()
    assert bool((xg.grad[0].abs() > 0).all())  # the receptive field covers the 8 x 8 torus
    with pytest.raises(ValueError, match="divisible"):
        LatticeUNet(6, channels=(4, 8, 8))


def test_paper_network_has_the_published_size_and_no_symmetry():
    full = PaperUNet(32)
    assert 1.0e6 < sum(p.numel() for p in full.parameters()) < 1.2e6
    tiny = PaperUNet(4, channels=(4, 8, 8, 8), embed=16)
    x = torch.randn(2, 4, 4)
    t = torch.rand(2)
    s = tiny(x, t)
    assert s.shape == x.shape and not torch.allclose(tiny(-x, t), -s)


def test_training_lowers_the_loss_and_the_model_file_round_trips(tmp_path):
    """DSM on free-field samples: 10 epochs lower the held-out loss of the (white-noise) initial
    network; the file restores the same function; another architecture is an error, another L
    or action a warning."""
    c = free_field_spectrum(L, KAPPA)
    gen = torch.Generator().manual_seed(5)
    data = torch.fft.ifft2(torch.fft.fft2(torch.randn(512, L, L, generator=gen)) * c.sqrt()).real.float()
    test = torch.fft.ifft2(torch.fft.fft2(torch.randn(256, L, L, generator=gen)) * c.sqrt()).real.float()
    torch.manual_seed(5)
    net = LatticeUNet(L, channels=(8, 16), embed=16, sigma_data=float(data.std()))
    before = evaluate_loss(net, test, SDE)
    curve = train_score(net, data, SDE, epochs=10, batch=64, lr=2e-3, seed=5)
    after = evaluate_loss(net, test, SDE)
    assert len(curve["loss"]) == 10 and after < before
    path = tmp_path / "net.pt"
    save_score_model(path, net, {"L": L, "kappa": KAPPA, "lam": 0.0})
    back, meta = load_score_model(path, network="lattice", expect={"L": L, "kappa": KAPPA, "lam": 0.0})
    x, t = torch.randn(2, L, L), torch.rand(2)
    assert torch.allclose(back(x, t), net(x, t)) and meta["kappa"] == KAPPA
    with pytest.raises(ValueError, match="'lattice' network, not --network 'paper'"):
        load_score_model(path, network="paper")
    with pytest.warns(UserWarning, match="L=4, not L=8"):
        load_score_model(path, expect={"L": 8})
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot read"):
        load_score_model(tmp_path / "junk.pt")


def _free_field_chain(route, chains=16, sweeps=250, seed=1, backend="numpy", **kw):
    theory = Phi4.from_kappa_lambda(KAPPA, 0.0)
    # a deliberately wrong score: the exact one of the free field at kappa = 0.23, not 0.2
    wrong = GaussianScore(free_field_spectrum(L, 0.23))
    prop = DiffusionProposal(wrong, SDE, route, steps=4, **kw)
    be = get_backend(backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return independence_chain(theory, prop, be.zeros((chains, L, L)), sweeps=sweeps, therm=5, seed=seed,
                                  penalty=route == "penalty")


def test_dm_mc_with_a_wrong_score_and_the_exact_divergence_is_exact():
    """Route 4 on the free field (L = 4, kappa = 0.2) with the score of kappa = 0.23: every reported
    observable within 4 Gamma-method standard errors of the exact value (6 tests, false alarm
    < 4e-4 for the family); the wrong score costs acceptance (well below 1), not correctness."""
    res = _free_field_chain("exact")
    exact = free_field_exact(L, 2 * KAPPA)
    z = z_scores(res.observables, exact)
    assert set(REPORTED) <= set(z)
    assert all(abs(z[k]) < 4 for k in REPORTED), z
    assert 0.3 < res.acceptance.value < 0.95


def test_independence_kernel_reports_log_weights_and_stops_on_a_bad_log_q():
    be = get_backend("numpy")
    theory = Phi4.from_kappa_lambda(KAPPA, 0.0)

    def bad(rng, like):
        lq = np.zeros(like.shape[0])
        lq[2] = np.nan
        return rng.normal(tuple(like.shape), np.float64), lq

    kernel = IndependenceMetropolis(theory, bad)
    with pytest.raises(FloatingPointError, match="not finite for chain 2"):
        kernel.step(kernel.init(be.zeros((4, L, L))), be.rng(0))
    pool = PoolProposal(np.random.default_rng(0).normal(size=(10, L, L)), np.zeros(10))
    kernel = IndependenceMetropolis(theory, pool)
    state, info = kernel.step(kernel.init(be.zeros((4, L, L))), be.rng(0))
    assert info.log_weight.shape == (4,) and np.allclose(info.log_weight, -theory.action(state.phi))
    with pytest.raises(TypeError, match="log_density"):
        IndependenceMetropolis(theory, pool, penalty=True)
    with pytest.raises(FloatingPointError, match="pool"):
        PoolProposal(np.zeros((3, L, L)), np.array([0.0, -np.inf, 0.0]))


def test_bad_input_is_refused_before_work_starts():
    model = GaussianScore(free_field_spectrum(L, KAPPA))
    with pytest.raises(ValueError, match="steps must be a positive integer, got steps=0"):
        em_sample(model, SDE, 2, (L, L), steps=0)
    with pytest.raises(ValueError, match="probes must be a positive integer, got probes=0"):
        ode_sample(model, SDE, 2, (L, L), probes=0)
    with pytest.raises(ValueError, match="route must be one of"):
        DiffusionProposal(model, SDE, "fast")
    with pytest.raises(ValueError, match="penalty route needs probes >= 2"):
        DiffusionProposal(model, SDE, "penalty", probes=1)
    with pytest.raises(ValueError, match=r"exact divergence on V=4096 sites needs about .* GiB"):
        log_likelihood(LatticeUNet(64), SDE, torch.zeros(1, 64, 64), divergence="exact")
    with pytest.raises(ValueError, match="eps must lie in"):
        VESDE(eps=0.0)


def test_cli_train_sample_likelihood_mc(tmp_path, capsys):
    """The four jobs on a tiny free field: the JSON carries the observables with errors, z against
    the exact values (lam = 0), and for mc the acceptance and tau_int."""
    import json

    from portable_lattice.cli import main
    net = str(tmp_path / "n.pt")
    phys = ["--L", "4", "--kappa", "0.2", "--lam", "0", "--net", net, "--json"]
    assert main(["diffusion", "train", *phys, "--train-configs", "128", "--epochs", "2", "--spacing", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["job"] == "train" and len(out["loss_curve"]) == 2 and "tau_int_m_abs" in out["data"]
    assert main(["diffusion", "sample", *phys, "--sampler", "ode", "--steps", "4", "--samples", "64"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(REPORTED) <= set(out["observables"]) and set(REPORTED) <= set(out["z"])
    assert all(out["observables"][k]["error"] > 0 for k in ("m", "phi2", "action"))
    assert main(["diffusion", "likelihood", *phys, "--sampler", "ode", "--steps", "3", "--samples", "16",
                 "--probes", "2", "--lik-steps", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["r2"]) == {"eq_4_9", "pearson2"}
    assert main(["diffusion", "mc", *phys, "--route", "ode", "--steps", "3", "--chains", "2", "--sweeps", "4",
                 "--probes", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"acceptance", "tau_int", "observables"} <= set(out) and "m_abs" in out["tau_int"]


@pytest.mark.parametrize("args, message", [
    (["sample", "--steps", "0"], "--steps must be a positive integer, got --steps 0"),
    (["likelihood", "--probes", "0"], "--probes must be a positive integer, got --probes 0"),
    (["sample", "--network", "paper"], "'lattice' network, not --network 'paper'"),
    (["train", "--epochs", "0"], "--epochs must be a positive integer, got --epochs 0"),
    (["mc", "--L", "64", "--route", "exact"], "GiB per configuration"),
])
def test_cli_bad_input_exits_2_naming_the_parameter(tmp_path, capsys, args, message):
    from portable_lattice.cli import main
    net = tmp_path / "n.pt"
    save_score_model(net, LatticeUNet(4, channels=(4, 8), embed=8), {"L": 4, "kappa": 0.2, "lam": 0.0})
    with pytest.raises(SystemExit) as e, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the L = 64 case also warns that the file holds L = 4
        main(["diffusion", args[0], "--net", str(net), "--L", "4", "--kappa", "0.2", "--lam", "0", *args[1:]])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


class _NoisyGaussianProposal:
    """Exact free-field draws at kappa = 0.23 whose log q carries N(0, s(x)^2) noise, fresh at every
    evaluation, with s(x)^2 = a phi2(x) reported: the situation the Ceperley-Dewing penalty assumes.
    (With a constant s the stored noisy log q of route 2 would be a pseudo-marginal chain, exact;
    the bias comes from noise that depends on the configuration.)"""

    def __init__(self, a):
        self.c = free_field_spectrum(L, 0.23).numpy()
        self.a = a

    def _noisy(self, rng, x):
        xk = np.fft.fft2(x)
        log_q = -0.5 * (np.abs(xk) ** 2 / self.c).sum((1, 2)) / x[0].size
        var = self.a * (x * x).mean((1, 2))
        return log_q + np.sqrt(var) * rng.normal((x.shape[0],), np.float64), var

    def __call__(self, rng, like):
        z = rng.normal(tuple(like.shape), np.float64)
        x = np.fft.ifft2(np.fft.fft2(z) * np.sqrt(self.c)).real
        return (x,) + self._noisy(rng, x)

    def log_density(self, rng, x):
        return self._noisy(rng, x)


def test_the_penalty_kernel_is_exact_for_gaussian_noise_in_log_q():
    """Route 3's accept test on a noisy but otherwise exact density (variance 1.5 phi2 at each end): every
    reported observable within 4 standard errors of the exact free field (false alarm < 4e-4 for
    the 6); the same noise without the penalty is resolved as a bias (fixed seed, power check)."""
    theory = Phi4.from_kappa_lambda(KAPPA, 0.0)
    exact = free_field_exact(L, 2 * KAPPA)
    be = get_backend("numpy")
    prop = _NoisyGaussianProposal(1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = independence_chain(theory, prop, be.zeros((32, L, L)), sweeps=1500, seed=3, penalty=True)
        z = z_scores(res.observables, exact)
        assert all(abs(z[k]) < 4 for k in REPORTED), z

        def no_penalty(rng, like):  # the same noisy log q, stored with the state (route 2)
            x, lq, _ = prop(rng, like)
            return x, lq
        biased = independence_chain(theory, no_penalty, be.zeros((32, L, L)), sweeps=1500, seed=3)
    zb = z_scores(biased.observables, exact)
    assert max(abs(zb[k]) for k in ("phi2", "chi", "m_abs", "action")) > 4, zb
