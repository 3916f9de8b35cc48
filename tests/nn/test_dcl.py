"""Distribution-consistent learning ([DCL]): autoregressive models, learned energies, thermodynamics.

Statistical checks use fixed seeds and |z| < 4.5 against exact values (enumeration of
4 x 4 lattices): a false alarm about once in 10^5 per check.
"""
import itertools
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from portable_lattice.backends import get_backend  # noqa: E402
from portable_lattice.exact import enumerate_theory, ising_torus  # noqa: E402
from portable_lattice.observables import measure_spins  # noqa: E402
from portable_lattice.observables.thermo import model_thermodynamics  # noqa: E402
from portable_lattice.runs.driver import run  # noqa: E402
from portable_lattice.samplers import (EnergyModelUpdate, IndependenceMetropolis, RandomSiteMetropolis,  # noqa: E402
                                       learned_energy_metropolis)
from portable_lattice.surrogates import ExactEnergy  # noqa: E402
from portable_lattice.theories import Clock, Ising, LearnedEnergy  # noqa: E402

from portable_lattice.nn.autoregressive import (GRUModel, MaskedConvModel, ModelProposal, load_model,  # noqa: E402
                                                save_model, site_order, train_autoregressive)
from portable_lattice.nn.ednn import EDNN, EDNNEnergy, ModelEnergy, load_ednn, save_ednn  # noqa: E402

Z = 4.5


def _all_configs(values, L):
    return torch.tensor(list(itertools.product(values, repeat=L * L)), dtype=torch.int8).reshape(-1, L, L)


# --- exact references -------------------------------------------------------------------------
def test_enumeration_equals_the_ising_torus():
    ex = enumerate_theory(Ising(beta=0.4407), 4, xp=np)
    ref = ising_torus(0.4407, 4)
    assert ex.free_energy == pytest.approx(ref.free_energy, abs=1e-12)
    assert ex.entropy == pytest.approx(ref.entropy, abs=1e-9)
    assert ex.energy == pytest.approx(ref.energy, abs=1e-9)


def test_enumeration_refuses_a_large_lattice():
    with pytest.raises(ValueError, match="q\\^V = 2\\^36"):
        enumerate_theory(Ising(beta=0.4), 6, xp=np)


# --- thermodynamic estimators -------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
def test_importance_weighted_free_energy_is_exact_with_a_uniform_model(backend):
    """q uniform: log q = -V ln 2. The importance-weighted F, S, U agree with enumeration; the
    model's own S is ln 2 exactly and its F lies above the exact F (Gibbs' inequality)."""
    be = get_backend(backend)
    th, L = Ising(beta=0.2), 4
    V = L * L
    rng = be.rng(5)
    s = th.random(rng, (40000, L, L), be.xp.float64)
    E = th.energy(s, be.xp.float64)
    lq = be.xp.full((40000,), -V * math.log(2.0), dtype=be.xp.float64)
    out = model_thermodynamics(E, lq, th.beta, V)
    ex = enumerate_theory(th, L, xp=np)
    imp = out["importance"]
    for name, ref in (("free_energy", ex.free_energy), ("entropy", ex.entropy), ("internal_energy", ex.energy)):
        assert abs(imp[name].z(ref)) < Z, (name, imp[name], ref)
        assert imp[name].error < 0.05   # ESS ~ 2000 of 40 000 at beta = 0.2
    assert out["paper"]["entropy"].value == pytest.approx(math.log(2.0), abs=1e-12)
    assert out["paper"]["free_energy"].value > ex.free_energy + 10 * out["paper"]["free_energy"].error
    assert 500 < out["ess"] <= 40000


def test_thermo_bad_input():
    E = np.zeros(4)
    with pytest.raises(ValueError, match="beta"):
        model_thermodynamics(E, E, 0.0, 16)
    with pytest.raises(ValueError, match="shapes"):
        model_thermodynamics(E, np.zeros(3), 0.4, 16)
    with pytest.raises(ValueError, match="log_q is not finite at sample 2"):
        model_thermodynamics(E, np.array([0.0, 0.0, -np.inf, 0.0]), 0.4, 16)


# --- autoregressive models --------------------------------------------------------------------------
MODELS = [(GRUModel, dict(hidden=8)), (GRUModel, dict(hidden=8, head="regression", ordering="snake")),
          (MaskedConvModel, dict(channels=8, half=1)), (MaskedConvModel, dict(channels=8, half=1, symmetrize=True)),
          (GRUModel, dict(hidden=8, q=3, symmetrize=True)),
          (MaskedConvModel, dict(channels=8, half=1, q=3, head="regression"))]


@pytest.mark.parametrize("cls,kw", MODELS)
def test_models_are_normalised_and_sample_their_own_log_prob(cls, kw):
    torch.manual_seed(0)
    m = cls(3, **kw).double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))     # far from uniform
    values = [-1, 1] if m.q == 2 else list(range(m.q))
    with torch.no_grad():
        lp = m.log_prob(_all_configs(values, 3))
    assert float(torch.logsumexp(lp, 0)) == pytest.approx(0.0, abs=1e-10)
    s, lps = m.sample(64, torch.Generator().manual_seed(1))
    assert s.dtype == torch.int8 and tuple(s.shape) == (64, 3, 3)
    torch.testing.assert_close(lps, m.log_prob(s))


def test_samples_follow_the_model_distribution():
    """Chi-squared of 40 000 draws over the 512 configurations of a 3 x 3 lattice (dof 511:
    the threshold mean + 5 sd is passed by chance about once in 10^6)."""
    torch.manual_seed(3)
    m = MaskedConvModel(3, channels=8, half=1).double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
        allc = _all_configs([-1, 1], 3)
        p = m.log_prob(allc).exp()
    s, _ = m.sample(40000, torch.Generator().manual_seed(4))
    code = ((s.long().reshape(-1, 9) + 1) // 2) @ (2 ** torch.arange(8, -1, -1))
    counts = torch.bincount(code, minlength=512).double()
    chi2 = float(((counts - 40000 * p) ** 2 / (40000 * p)).sum())
    assert chi2 < 511 + 5 * math.sqrt(2 * 511)


def test_site_orders_are_permutations():
    for L in (1, 4, 5, 8):
        for o in ("raster", "snake", "spiral"):
            assert sorted(site_order(L, o)) == list(range(L * L))
    assert site_order(4, "spiral")[0] == 2 * 4 + 2
    with pytest.raises(ValueError, match="ordering"):
        site_order(4, "zigzag")


def test_model_bad_input(tmp_path):
    m = MaskedConvModel(4, channels=4, half=1)
    with pytest.raises(ValueError, match="size-specific"):
        m.log_prob(torch.ones(2, 5, 5, dtype=torch.int8))
    with pytest.raises(ValueError, match="outside"):
        m.log_prob(torch.full((2, 4, 4), 2, dtype=torch.int8))
    with pytest.raises(ValueError, match="head"):
        GRUModel(4, head="softmax")
    with pytest.raises(ValueError, match="clip"):
        GRUModel(4, head="regression", clip=1.5)
    # the regression head without clipping: a probability of exactly 0 is an error, never -inf
    r = MaskedConvModel(4, channels=4, half=1, head="regression", clip=0.0)
    with torch.no_grad():
        r.final.bias.fill_(10.0)          # y = 10 -> clipped to 1 -> p(-1) = 0
    with pytest.raises(ValueError, match="probability 0"):
        r.log_prob(-torch.ones(1, 4, 4, dtype=torch.int8))
    path = str(tmp_path / "m.pt")
    save_model(path, m, {"beta_obs": 0.44})
    back, info = load_model(path, L=4)
    assert info["beta_obs"] == 0.44 and isinstance(back, MaskedConvModel)
    with pytest.raises(ValueError, match="L=4"):
        load_model(path, L=8)
    with pytest.raises(ValueError, match="arch"):
        load_model(path, arch="gru")
    with pytest.raises(ValueError, match="not a saved autoregressive model"):
        e = EDNN()
        save_ednn(path, e)
        load_model(path)


def test_training_lowers_the_held_out_likelihood():
    th = Ising(beta=0.4407)
    be = get_backend("numpy")
    from portable_lattice.surrogates.data import spin_dataset
    data, info = spin_dataset(th, 4, 3000, chains=16, period=2, therm=100, seed=1)
    val, _ = spin_dataset(th, 4, 1000, chains=16, period=2, therm=100, seed=2)
    torch.manual_seed(0)
    m = MaskedConvModel(4, channels=8, layers=2, half=2, symmetrize=True)
    h = train_autoregressive(m, be.to_numpy(data), be.to_numpy(val), epochs=4, batch=64, lr=5e-3)
    assert h["val_nll"][-1] < h["val_nll"][0] < math.log(2)
    # the exact entropy per site is a lower bound on the cross-entropy of any model
    assert h["val_nll_final"] > ising_torus(0.4407, 4).entropy - 0.02
    assert info["tau_int"]["m_abs"]["value"] < 5


# --- learned energies ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["parallel", "sequential"])
def test_learned_energy_metropolis_with_the_exact_energy_is_exact(mode):
    ref = Ising(beta=0.4)
    th = LearnedEnergy(0.4, ExactEnergy(ref), ref)
    be = get_backend("numpy")
    rng = be.rng(11)
    s0 = ref.random(rng, (32, 4, 4), np.float64)
    res = run(learned_energy_metropolis(th, mode), s0, rng, n_therm=100, n_measure=1500, progress=False,
              measure=lambda s: measure_spins(s, ref, np.float64))
    ex = enumerate_theory(ref, 4, xp=np)
    assert abs(res.observables["energy"].z(ex.energy)) < Z
    assert abs(res.observables["m_abs"].z(ex.m_abs)) < Z


def test_learned_clock_energy_agrees_with_the_clock_sampler():
    ref = Clock(beta=0.8, q=3)
    th = LearnedEnergy(0.8, ExactEnergy(ref), ref)
    from portable_lattice.runs.simulate import make_kernel
    out = []
    for i, k in enumerate((learned_energy_metropolis(th), make_kernel(ref, "checkerboard"))):
        be = get_backend("numpy")
        rng = be.rng(20 + i)
        res = run(k, ref.random(rng, (32, 4, 4), np.float64), rng, n_therm=100, n_measure=1000, progress=False,
                  measure=lambda s: measure_spins(s, ref, np.float64))
        out.append(res.observables["energy"])
    a, b = out
    assert abs(a.value - b.value) < Z * math.hypot(a.error, b.error)


def test_ednn_local_changes_equal_whole_lattice_differences():
    from portable_lattice.lattice import sublattice_masks
    torch.manual_seed(0)
    for q in (2, 3):
        net = EDNN(q).double()
        assert q != 2 or sum(p.numel() for p in net.parameters()) == 2721   # the paper's network
        prov = EDNNEnergy(net)
        L = 8
        rng = np.random.default_rng(q)
        vals = np.array([-1, 1] if q == 2 else [0, 1, 2], dtype=np.int8)
        s = vals[rng.integers(q, size=(3, L, L))]
        mask = sublattice_masks(np, L, 2, prov.reach, None)[5]
        t = np.where(mask, -s if q == 2 else ((s + 1) % q).astype(np.int8), s)
        d = prov.delta(s, t, np.float64)
        E0 = prov.energy(s, np.float64)
        np.testing.assert_allclose(d.sum(axis=(1, 2)), prov.energy(t, np.float64) - E0, atol=1e-12)
        assert np.all(d[:, ~mask] == 0)
        for i, j in list(zip(*np.nonzero(mask)))[:4]:
            u = s.copy()
            u[:, i, j] = t[:, i, j]
            np.testing.assert_allclose(d[:, i, j], prov.energy(u, np.float64) - E0, atol=1e-12)
            sd = prov.site_delta(s, np.full(3, i * L + j), t[:, i, j], np.float64)
            np.testing.assert_allclose(sd, d[:, i, j], atol=1e-12)


def test_merged_ednn_is_the_mean_of_its_members():
    from portable_lattice.nn.ednn import merge_ednns
    torch.manual_seed(3)
    for q, hidden in ((2, (32, 64)), (3, (8,)), (2, (4, 5, 6))):
        nets = [EDNN(q, hidden=hidden).double() for _ in range(3)]
        merged = merge_ednns(nets).double()
        assert merged.hidden == tuple(3 * h for h in hidden)
        vals = torch.tensor([-1, 1] if q == 2 else [0, 1, 2], dtype=torch.int8)
        s = vals[torch.randint(q, (5, 8, 8))]
        with torch.no_grad():
            want = torch.stack([n.tile_energies(s) for n in nets]).mean(0)
            torch.testing.assert_close(merged.tile_energies(s), want, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="same q, focus"):
        merge_ednns([EDNN(2), EDNN(2, context=2)])
    with pytest.raises(ValueError, match="at least one"):
        merge_ednns([])


def test_square_symmetries_preserve_the_ising_energy_and_are_distinct():
    from portable_lattice.nn.dcl import square_symmetry
    th = Ising(beta=0.4)
    x = torch.tensor(np.random.default_rng(2).choice([-1, 1], size=(6, 6, 6)), dtype=torch.int8)
    images = [square_symmetry(x, k) for k in range(8)]
    for y in images:
        np.testing.assert_allclose(th.energy(y.numpy().astype(np.float64), np.float64),
                                   th.energy(x.numpy().astype(np.float64), np.float64), atol=1e-12)
    # the eight images of one asymmetric configuration are all different
    a = torch.arange(16).reshape(1, 4, 4)
    assert len({tuple(square_symmetry(a, k).flatten().tolist()) for k in range(8)}) == 8
    with pytest.raises(ValueError, match="0..7"):
        square_symmetry(x, 8)


def test_ednn_from_model_with_symmetrised_labels_and_an_ensemble():
    from portable_lattice.nn.dcl import train_ednn_from_model
    torch.manual_seed(0)
    m = MaskedConvModel(4, channels=4, half=1)
    net, energy, info = train_ednn_from_model(m, 0.44, labels_on="both", configs=64, epochs=1, seed=1,
                                              label_symmetry="d4", ensemble=3)
    assert net.hidden == (96, 192) and info["ensemble"] == 3 and len(info["train_rmse"]) == 3
    assert info["label_symmetry"] == "d4"
    with pytest.raises(ValueError, match="label_symmetry"):
        train_ednn_from_model(m, 0.44, configs=8, epochs=1, label_symmetry="c4")
    with pytest.raises(ValueError, match="ensemble"):
        train_ednn_from_model(m, 0.44, configs=8, epochs=1, ensemble=0)


def test_learned_energy_bad_input():
    net = EDNN(2, focus=4, context=1)
    with pytest.raises(ValueError, match="focus f=4 must divide L"):
        net.check_size(6)
    with pytest.raises(ValueError, match="q=3"):
        LearnedEnergy(0.4, EDNNEnergy(EDNN(3)), Ising(beta=1.0))
    with pytest.raises(ValueError, match="beta"):
        LearnedEnergy(-0.4, EDNNEnergy(EDNN(2)), Ising(beta=1.0))
    with pytest.raises(ValueError, match="LearnedEnergy"):
        RandomSiteMetropolis(Ising(beta=0.4), EnergyModelUpdate())
    m = MaskedConvModel(4, channels=4, half=1)
    th = LearnedEnergy(0.4, ModelEnergy(m, 0.44), Ising(beta=1.0))
    with pytest.raises(ValueError, match="global"):
        learned_energy_metropolis(th, "parallel")
    with pytest.raises(ValueError, match="size-specific"):
        learned_energy_metropolis(th, "sequential").init(np.ones((2, 8, 8), dtype=np.int8))
    with pytest.raises(ValueError, match="beta_obs"):
        ModelEnergy(m, 0.0)


def test_model_energy_constant_and_site_delta(tmp_path):
    torch.manual_seed(2)
    m = MaskedConvModel(4, channels=4, half=1).double()
    e = ModelEnergy(m, 0.5)
    e.set_constant(-2.0, 4)                               # aligned states at -2 per site
    up = np.ones((1, 4, 4), np.int8)
    mean_ground = 0.5 * (e.energy(up, np.float64) + e.energy(-up, np.float64))
    assert float(mean_ground[0]) == pytest.approx(-32.0, abs=1e-9)
    s = np.where(np.random.default_rng(0).random((3, 4, 4)) < 0.5, -1, 1).astype(np.int8)
    d = e.site_delta(s, np.array([0, 5, 15]), -s.reshape(3, -1)[np.arange(3), [0, 5, 15]], np.float64)
    t = s.reshape(3, -1).copy()
    t[np.arange(3), [0, 5, 15]] *= -1
    np.testing.assert_allclose(d, e.energy(t.reshape(3, 4, 4), np.float64) - e.energy(s, np.float64), atol=1e-10)
    path = str(tmp_path / "e.pt")
    save_ednn(path, EDNN(2))
    net, _ = load_ednn(path, q=2)
    with pytest.raises(ValueError, match="q=3"):
        load_ednn(path, q=3)


# --- an exact sampler with the model as proposal -----------------------------------------------------
@pytest.fixture(scope="module")
def model4():
    """A small masked-convolution model trained briefly on 4 x 4 Swendsen-Wang data at beta_c."""
    from portable_lattice.surrogates.data import spin_dataset
    th = Ising(beta=0.4407)
    data, _ = spin_dataset(th, 4, 4000, chains=16, period=2, therm=100, seed=3)
    torch.manual_seed(4)
    m = MaskedConvModel(4, channels=8, layers=2, half=2, symmetrize=True)   # float32: 10x faster than float64
    train_autoregressive(m, get_backend("numpy").to_numpy(data), epochs=3, batch=64, lr=5e-3)
    return m


def test_importance_weighted_thermodynamics_of_a_trained_model_are_exact(model4):
    th = Ising(beta=0.4407)
    x, lq = model4.sample(20000, torch.Generator().manual_seed(9))
    out = model_thermodynamics(th.energy(x.numpy(), np.float64), lq.numpy(), th.beta, 16)
    ex = enumerate_theory(th, 4, xp=np)
    imp = out["importance"]
    for name, ref in (("free_energy", ex.free_energy), ("entropy", ex.entropy), ("internal_energy", ex.energy)):
        assert abs(imp[name].z(ref)) < Z, (name, imp[name], ref)
    assert imp["free_energy"].error < 2e-3
    assert out["ess"] > 0.3 * 20000
    # the model's own F is a variational bound: above the exact value (equal only for a perfect model)
    assert out["paper"]["free_energy"].value > ex.free_energy - Z * out["paper"]["free_energy"].error


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
def test_independence_metropolis_with_an_autoregressive_proposal_is_exact(backend, model4):
    th = Ising(beta=0.4407)
    be = get_backend(backend)
    rng = be.rng(7)
    k = IndependenceMetropolis(th, ModelProposal(model4, seed=8))
    res = run(k, th.random(rng, (32, 4, 4), be.xp.float64), rng, n_therm=20, n_measure=200, progress=False,
              measure=lambda s: measure_spins(s, th, be.xp.float64))
    ex = enumerate_theory(th, 4, xp=np)
    assert abs(res.observables["energy"].z(ex.energy)) < Z
    assert abs(res.observables["m_abs"].z(ex.m_abs)) < Z
    assert 0.3 < res.acceptance.value < 1.0
    with pytest.raises(ValueError, match="size-specific"):
        ModelProposal(model4)(rng, be.xp.ones((2, 8, 8), dtype=be.xp.int8))


# --- the command line ---------------------------------------------------------------------------------
def test_dcl_command_line(tmp_path, capsys):
    import json

    from portable_lattice.cli import main
    net, ednn = str(tmp_path / "m.pt"), str(tmp_path / "e.pt")
    assert main(["dcl", "train", "--L", "4", "--configs", "600", "--epochs", "1", "--hidden", "4", "--layers", "2",
                 "--half", "1", "--net", net, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["L"] == 4 and out["exact_entropy"] == pytest.approx(ising_torus(0.4407, 4).entropy, abs=1e-9)
    assert out["val_nll"] > out["exact_entropy"] - 0.05
    assert main(["dcl", "thermo", "--net", net, "--samples", "3000", "--json"]) == 0
    th = json.loads(capsys.readouterr().out)
    assert set(th) >= {"L", "beta", "samples", "entropy", "free_energy", "internal_energy", "ess", "exact"}
    f = th["free_energy"]["importance"]
    assert abs(f["value"] - th["exact"]["free_energy"]) < Z * f["error"]
    assert set(th["entropy"]) == {"paper", "importance"}
    assert main(["dcl", "energy", "--net", net, "--per-level", "2", "--ednn", ednn, "--ednn-configs", "500",
                 "--epochs", "1", "--json"]) == 0
    en = json.loads(capsys.readouterr().out)
    assert en["model"]["rmse"] > 0 and en["ednn"]["configs"] == en["model"]["configs"]
    assert main(["dcl", "curves", "--net", net, "--ednn", ednn, "--L", "8", "--betas", "0.3,0.5", "--sweeps", "20",
                 "--therm", "5", "--chains", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["beta"] for r in rows] == [0.3, 0.5] and "learned" in rows[0] and "true" in rows[0]


@pytest.mark.parametrize("argv,message", [
    (["dcl", "train", "--net", "x.pt"], "needs --L"),
    (["dcl", "train", "--L", "4", "--q", "3", "--net", "x.pt"], "--q applies to --model clock"),
    (["dcl", "train", "--L", "4", "--beta-obs", "0", "--net", "x.pt"], "--beta-obs must be positive"),
    (["dcl", "train", "--L", "4", "--ordering", "snake", "--net", "x.pt"], "--ordering applies to --arch gru"),
    (["dcl", "thermo", "--net", "missing.pt", "--samples", "0"], "--samples must be a positive integer"),
])
def test_dcl_command_line_bad_input(argv, message, capsys):
    from portable_lattice.cli import main
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_dcl_command_line_refuses_another_size_or_q(tmp_path, capsys):
    from portable_lattice.cli import main
    net = str(tmp_path / "m.pt")
    save_model(net, MaskedConvModel(4, channels=4, half=1), {"beta_obs": 0.4407, "model": "ising"})
    for argv, message in ((["dcl", "thermo", "--net", net, "--L", "8"], "L=4"),
                          (["dcl", "thermo", "--net", net, "--model", "clock"], "q=2"),
                          (["dcl", "curves", "--net", net, "--energy", "ednn"], "needs --ednn"),
                          (["dcl", "curves", "--net", net, "--energy", "model", "--mode", "sequential", "--betas", "1:2"], "--betas")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2, argv
        assert message in capsys.readouterr().err, argv
