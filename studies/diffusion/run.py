"""Diffusion models as stochastic quantisation of 2D phi^4 ([DMSQ]): Table 1, Figs. 5-8, R^2, tau_int, cost,
and the exactness of the four DM-MC routes on the free field.

    python studies/diffusion/run.py                 # the CPU default (L = 8, lattice-native network; see README)
    python studies/diffusion/run.py --quick         # a smoke run (minutes)
    python studies/diffusion/run.py --paper         # the paper's scale (L = 32, 250 epochs, paper network): a GPU job

Stages (each appends to --out/results.json, so a stopped run keeps what it finished):
routes   free field L = 4, kappa = 0.2, a deliberately wrong exact score (kappa = 0.23): the four routes'
         z against the exact values and their acceptance
routes_nn the same with a small, short-trained (non-linear) lattice network
crit_exact kappa = 0.27 again, DM-MC by route 4 (exact divergence) long enough for tau_int
sym      kappa = 0.21: HMC training/test sets and a long HMC reference, training, DM samples without
         accept/reject (Table 1, Fig. 6), -log q against S (Fig. 7, R^2), DM-MC
paper    the paper's network on the same data (loss, Table 1 row, R^2, acceptance, cost)
broken   kappa = 0.5: training and the magnetisation histogram (Fig. 5)
crit     kappa = 0.27: Metropolis, HMC (paper setting), tuned HMC (Omelyan) and DM-MC: autocorrelation
         functions (Fig. 8), tau_int(|M|) by the Gamma method, independent configurations per second
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings

import numpy as np
import torch

from portable_lattice import Phi4, simulate
from portable_lattice.backends import get_backend
from portable_lattice.exact import free_field_exact
from portable_lattice.nn.diffusion import (VESDE, DiffusionProposal, em_sample, evaluate_loss, log_likelihood,
                                           r_squared, save_score_model, train_score)
from portable_lattice.nn.unet import GaussianScore, build_network, free_field_spectrum
from portable_lattice.runs.diffusion import (REPORTED, analyse_configurations, hmc_configurations,
                                             independence_chain, z_scores)
from portable_lattice.statistics import autocorrelation, gamma_method

HERE = os.path.dirname(os.path.abspath(__file__))
LAM = 0.022
SDE = VESDE()
NP = get_backend("numpy")


def settings(args) -> dict:
    if args.paper:
        return dict(L=32, train=5120, test=1024, epochs=250, network="paper", samples=1024, lik_samples=1024,
                    lik_steps=50, probes=10, probe="gaussian", mc_chains=8, mc_sweeps=128, mc_steps=50, mc_probes=10,
                    ref_chains=64, ref_traj=4000, paper_epochs=250, paper_samples=1024, tau_sweeps=4000)
    if args.quick:
        return dict(L=8, train=1024, test=512, epochs=5, network="lattice", samples=256, lik_samples=64,
                    lik_steps=8, probes=8, probe="rademacher", mc_chains=4, mc_sweeps=32, mc_steps=8, mc_probes=8,
                    ref_chains=32, ref_traj=400, paper_epochs=1, paper_samples=32, tau_sweeps=400)
    return dict(L=8, train=5120, test=1024, epochs=60, network="lattice", samples=1024, lik_samples=512,
                lik_steps=12, probes=16, probe="rademacher", mc_chains=8, mc_sweeps=128, mc_steps=12, mc_probes=8,
                ref_chains=64, ref_traj=2000, paper_epochs=8, paper_samples=256, tau_sweeps=4000)


def est(e) -> dict:
    return {"value": e.value, "error": e.error}


def save(out, results):
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=float)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- routes ----------------------------------------------------------------------------------------
def run_routes(theory, exact, specs, make_proposal, chains, L, sweeps, *, seed, tag):
    """One DM-MC chain per (label, route, options) of ``specs``: acceptance, z against ``exact``, tau_int."""
    rows = {}
    for label, route, kw in specs:
        t = time.perf_counter()
        prop = make_proposal(route, kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = independence_chain(theory, prop, NP.zeros((chains, L, L)), sweeps=sweeps, therm=5, seed=seed,
                                     penalty=route == "penalty")
        z = z_scores({k: res.observables[k] for k in REPORTED}, exact)
        rows[label] = {"route": route, "acceptance": est(res.acceptance), "z": z,
                       "values": {k: est(res.observables[k]) for k in REPORTED},
                       "tau_int_m_abs": res.observables["m_abs"].tau_int, "seconds": time.perf_counter() - t}
        log(f"{tag} {label}: acceptance {res.acceptance}, z " + " ".join(f"{k} {v:+.1f}" for k, v in z.items()))
    return rows


def stage_routes(cfg, results, quick):
    L, kappa = 4, 0.2
    theory = Phi4.from_kappa_lambda(kappa, 0.0)
    exact = free_field_exact(L, theory.beta)
    wrong = GaussianScore(free_field_spectrum(L, 0.23))
    chains, sweeps = (8, 100) if quick else (16, 300)
    specs = [("1 paper (EM 500 + Hutchinson, 10 Gaussian probes)", "paper", dict(probes=10, probe="gaussian")),
             ("1 paper (EM 500 + Hutchinson, 4 Rademacher probes)", "paper", dict(probes=4, probe="rademacher")),
             ("2 ode (ODE + Hutchinson, 4 Rademacher probes)", "ode", dict(probes=4, probe="rademacher")),
             ("2 ode (ODE + Hutchinson, 10 Gaussian probes)", "ode", dict(probes=10, probe="gaussian")),
             ("3 penalty (as 2, Ceperley-Dewing)", "penalty", dict(probes=4, probe="rademacher")),
             ("4 exact (ODE + exact divergence)", "exact", {})]
    rows = run_routes(theory, exact, specs, lambda route, kw: DiffusionProposal(wrong, SDE, route, steps=4,
                                                                               em_steps=500, **kw),
                      chains, L, sweeps, seed=11, tag="route")
    results["routes"] = {"L": L, "kappa": kappa, "lam": 0.0, "proposal": "exact score of kappa = 0.23",
                         "chains": chains, "sweeps": sweeps, "rk4_steps": 4, "exact": exact, "rows": rows}


def stage_routes_nn(cfg, results, quick):
    """The routes again with a trained, non-linear network (lattice-native, deliberately small and
    short-trained) on the free field. With the exact Gaussian score of stage ``routes`` the
    Hutchinson noise does not depend on the configuration, so route 2 is a pseudo-marginal chain
    and exact; a non-linear score makes the noise configuration-dependent."""
    L, kappa = 4, 0.2
    theory = Phi4.from_kappa_lambda(kappa, 0.0)
    exact = free_field_exact(L, theory.beta)
    c = free_field_spectrum(L, kappa)
    g = torch.Generator().manual_seed(40)
    data = torch.fft.ifft2(torch.fft.fft2(torch.randn(2048, L, L, generator=g, dtype=torch.float64))
                           * c.sqrt()).real.float()
    torch.manual_seed(40)
    net = build_network("lattice", L, SDE.sigma, channels=(8, 16), embed=16, sigma_data=float(data.std()))
    epochs = 2 if quick else 20
    curve = train_score(net, data, SDE, epochs=epochs, batch=64, lr=1e-3, seed=40)
    chains, sweeps = (8, 30) if quick else (12, 80)
    specs = [("1 paper (EM 100 + Hutchinson, 2 Rademacher probes)", "paper", dict(probes=2)),
             ("2 ode (ODE + Hutchinson, 2 Rademacher probes)", "ode", dict(probes=2)),
             ("3 penalty (as 2, Ceperley-Dewing)", "penalty", dict(probes=2)),
             ("4 exact (ODE + exact divergence)", "exact", {})]
    rows = run_routes(theory, exact, specs, lambda route, kw: DiffusionProposal(net, SDE, route, steps=6,
                                                                               em_steps=100, probe="rademacher",
                                                                               **kw),
                      chains, L, sweeps, seed=41, tag="route (trained net)")
    results["routes_nn"] = {"L": L, "kappa": kappa, "lam": 0.0, "network": "lattice (8, 16), 20 epochs on 2048 "
                            "exact free-field samples", "final_loss": curve["loss"][-1], "chains": chains,
                            "sweeps": sweeps, "rk4_steps": 6, "rows": rows}


# --- helpers for the interacting theory -------------------------------------------------------------
def data_at(kappa, cfg, seed):
    theory = Phi4.from_kappa_lambda(kappa, LAM)
    train, info = hmc_configurations(theory, cfg["L"], cfg["train"], spacing=10, seed=seed)
    test, _ = hmc_configurations(theory, cfg["L"], cfg["test"], spacing=10, seed=seed + 1)
    return theory, train, test, info


def train_net(name, train, test, epochs, seed, L, **kw):
    data = torch.as_tensor(train, dtype=torch.float32)
    torch.manual_seed(seed)
    extra = {"sigma_data": float(data.std())} if name == "lattice" else {}
    net = build_network(name, L, SDE.sigma, **extra, **kw)
    t = time.perf_counter()
    curve = train_score(net, data, SDE, epochs=epochs, batch=64, lr=1e-3, seed=seed)
    seconds = time.perf_counter() - t
    loss_test = evaluate_loss(net, torch.as_tensor(test, dtype=torch.float32), SDE)
    return net, {"train_loss": curve["loss"][-1], "test_loss": loss_test, "curve": curve["loss"],
                 "seconds": seconds, "parameters": sum(p.numel() for p in net.parameters()), "epochs": epochs}


def em(net, n, L, seed, batch=256):
    g = torch.Generator().manual_seed(seed)
    t = time.perf_counter()
    xs = [em_sample(net, SDE, min(batch, n - s), (L, L), steps=500, generator=g) for s in range(0, n, batch)]
    return torch.cat(xs).double().numpy(), time.perf_counter() - t


def table_row(theory, configs):
    obs = analyse_configurations(theory, configs)
    return {"M": est(obs["m"]), "chi2": est(obs["chi"]), "U_L": est(obs["binder"]),
            **{k: est(obs[k]) for k in REPORTED}}


def likelihood(net, theory, x, cfg, seed):
    g = torch.Generator().manual_seed(seed)
    t = time.perf_counter()
    per, nfe = log_likelihood(net, SDE, torch.as_tensor(x, dtype=torch.float32), steps=cfg["lik_steps"],
                              divergence="hutchinson", probes=cfg["probes"], probe=cfg["probe"], generator=g)
    seconds = time.perf_counter() - t
    log_q = per.mean(0).double()
    S = torch.as_tensor(theory.action(x), dtype=torch.float64)
    probe_var = float((per.var(0) / per.shape[0]).mean()) if per.shape[0] > 1 else 0.0
    return {"r2": r_squared(S, -log_q), "probe_noise_var_of_log_q": probe_var, "var_S": float(S.var()),
            "seconds_per_config": seconds / x.shape[0], "nfe": nfe,
            "S": S.tolist(), "S_eff": (-log_q).tolist()}


def dm_mc(net, theory, cfg, seed, route="ode", chains=None, sweeps=None, steps=None):
    prop = DiffusionProposal(net, SDE, route, steps=steps or cfg["mc_steps"], probes=cfg["mc_probes"],
                             probe=cfg["probe"])
    chains, sweeps = chains or cfg["mc_chains"], sweeps or cfg["mc_sweeps"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = independence_chain(theory, prop, NP.zeros((chains, cfg["L"], cfg["L"])), sweeps=sweeps, therm=4,
                                 seed=seed, penalty=route == "penalty")
    return res


# --- stages -----------------------------------------------------------------------------------------
def stage_sym(cfg, results, nets):
    L = cfg["L"]
    theory, train, test, info = data_at(0.21, cfg, 100)
    log(f"kappa=0.21 data: tau_int(|M|) = {info['tau_int_m_abs']} trajectories, spacing 10")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = simulate(theory, L=L, algorithm="hmc", chains=cfg["ref_chains"], therm=200, sweeps=cfg["ref_traj"],
                       seed=7, progress=False)
    reference = {"M": est(ref.observables["m"]), "chi2": est(ref.observables["chi"]),
                 "U_L": est(ref.observables["binder"]), **{k: est(ref.observables[k]) for k in REPORTED}}
    net, tr = train_net(cfg["network"], train, test, cfg["epochs"], 1, L)
    nets["sym"] = net
    log(f"kappa=0.21 trained {cfg['network']}: loss train {tr['train_loss']:.3f} test {tr['test_loss']:.3f} "
        f"({tr['seconds']:.0f} s)")
    x, em_seconds = em(net, cfg["samples"], L, 5)
    np.save(os.path.join(results["_out"], "dm_samples_k021.npy"), x)
    lik = likelihood(net, theory, x[:cfg["lik_samples"]], cfg, 6)
    log(f"R^2 Eq. 4.9 {lik['r2']['eq_4_9']}, Pearson^2 {lik['r2']['pearson2']}")
    res = dm_mc(net, theory, cfg, 8)
    dmmc = {"M": est(res.observables["m"]), "chi2": est(res.observables["chi"]),
            "U_L": est(res.observables["binder"]), **{k: est(res.observables[k]) for k in REPORTED}}
    table = {"training (HMC)": table_row(theory, train), "testing (HMC)": table_row(theory, test),
             "generated (DM)": table_row(theory, x), "DM-MC (route 2)": dmmc,
             "reference (HMC, long)": reference}
    z_dm = {k: (table["generated (DM)"][k]["value"] - reference[k]["value"])
            / math.hypot(table["generated (DM)"][k]["error"], reference[k]["error"]) for k in ("M", "chi2", "U_L")}
    results["sym"] = {"kappa": 0.21, "lam": LAM, "L": L, "data": info, "training": tr, "table1": table,
                      "z_generated_vs_reference": z_dm, "likelihood": {k: v for k, v in lik.items()
                                                                        if k not in ("S", "S_eff")},
                      "dm_mc": {"acceptance": est(res.acceptance), "tau_int_m_abs": res.observables["m_abs"].tau_int,
                                "route": "ode"},
                      "em_seconds_per_config": em_seconds / x.shape[0],
                      "hist_m": {"hmc_test": test.mean((1, 2)).tolist(), "dm": x.mean((1, 2)).tolist()},
                      "scatter": {"S": lik["S"], "S_eff": lik["S_eff"]}}
    log(f"Table 1 z(DM vs reference): {z_dm}; DM-MC acceptance {res.acceptance}")
    return theory, train, test


def stage_paper(cfg, results, theory, train, test):
    L = cfg["L"]
    net, tr = train_net("paper", train, test, cfg["paper_epochs"], 2, L)
    log(f"paper network: loss train {tr['train_loss']:.3f} test {tr['test_loss']:.3f} ({tr['seconds']:.0f} s)")
    x, em_seconds = em(net, cfg["paper_samples"], L, 15, batch=128)
    row = table_row(theory, x)
    # the paper network is ~10x dearer per evaluation: fewer configurations and probes
    sub = dict(cfg, probes=max(2, cfg["probes"] // 2))
    lik = likelihood(net, theory, x[:max(16, cfg["lik_samples"] // 8)], sub, 16)
    res = dm_mc(net, theory, cfg, 18, chains=2, sweeps=max(8, cfg["mc_sweeps"] // 8))
    results["paper_network"] = {"training": tr, "table1_row": row, "em_seconds_per_config": em_seconds / x.shape[0],
                                "likelihood": {k: v for k, v in lik.items() if k not in ("S", "S_eff")},
                                "dm_mc": {"acceptance": est(res.acceptance), "chains": 2,
                                          "sweeps": max(8, cfg["mc_sweeps"] // 8)}}
    log(f"paper network: R^2 {lik['r2']}, acceptance {res.acceptance}")


def stage_broken(cfg, results):
    theory, train, test, info = data_at(0.5, cfg, 200)
    net, tr = train_net(cfg["network"], train, test, cfg["epochs"], 3, cfg["L"])
    x, _ = em(net, cfg["samples"], cfg["L"], 25)
    results["broken"] = {"kappa": 0.5, "data": info, "training": tr, "table": {"testing (HMC)": table_row(theory, test),
                                                                               "generated (DM)": table_row(theory, x)},
                         "hist_m": {"hmc_test": test.mean((1, 2)).tolist(), "dm": x.mean((1, 2)).tolist()}}
    log(f"kappa=0.5: <|M|> HMC {results['broken']['table']['testing (HMC)']['m_abs']} "
        f"DM {results['broken']['table']['generated (DM)']['m_abs']}")


def _tau_run(theory, L, algorithm, sweeps, seed, **knobs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        res = simulate(theory, L=L, algorithm=algorithm, chains=8, therm=500, sweeps=sweeps, seed=seed,
                       progress=False, **knobs)
        seconds = time.perf_counter() - t
    series = res.series["m_abs"]
    rho, W, tau = autocorrelation(series)
    g = gamma_method(series)
    return {"tau_int": g.tau_int, "tau_int_error": g.tau_int_error, "acceptance": est(res.acceptance),
            "rho": [float(r) for r in rho[:40]], "seconds_per_step": seconds / (500 + sweeps),
            "window": int(W), "knobs": knobs}


def stage_crit(cfg, results):
    L = cfg["L"]
    theory, train, test, info = data_at(0.27, cfg, 300)
    net, tr = train_net(cfg["network"], train, test, cfg["epochs"], 4, L)
    out = {"kappa": 0.27, "data": info, "training": tr, "chains": 8}
    out["metropolis"] = _tau_run(theory, L, "metropolis", cfg["tau_sweeps"], 31, step=1.0)
    out["hmc_paper"] = _tau_run(theory, L, "hmc", cfg["tau_sweeps"], 32, traj_length=1.0, n_steps=10,
                                integrator="leapfrog")
    # tuned HMC: Omelyan, trajectory length scanned at ~0.9 acceptance for the lowest gradient cost per
    # independent configuration, 2 tau_int n_steps
    scan = {}
    for tl, ns in ((0.5, 3), (1.0, 5), (1.5, 7), (2.0, 9), (3.0, 14)):
        r = _tau_run(theory, L, "hmc", max(1000, cfg["tau_sweeps"] // 2), 33, traj_length=tl, n_steps=ns,
                     integrator="omelyan")
        r["grads_per_independent"] = 2 * r["tau_int"] * ns * 2  # Omelyan: two gradients per step
        scan[str(tl)] = r
    best = min(scan, key=lambda k: scan[k]["grads_per_independent"])
    out["hmc_tuned_scan"] = scan
    out["hmc_tuned"] = dict(scan[best], traj_length=float(best))
    t = time.perf_counter()
    res = dm_mc(net, theory, cfg, 34, route="ode")
    seconds = time.perf_counter() - t
    series = res.series["m_abs"]
    rho, W, _ = autocorrelation(series)
    g = gamma_method(series)
    steps = cfg["mc_chains"] * (cfg["mc_sweeps"] + 4)
    out["dm_mc"] = {"route": "ode", "tau_int": g.tau_int, "tau_int_error": g.tau_int_error,
                    "acceptance": est(res.acceptance), "rho": [float(r) for r in rho[:40]],
                    "seconds_per_proposal": seconds / steps, "window": int(W)}
    # cost per effectively independent configuration, one CPU thread
    for k in ("metropolis", "hmc_paper", "hmc_tuned"):
        out[k]["independent_per_second"] = 1.0 / (2 * out[k]["tau_int"] * out[k]["seconds_per_step"] / 8)
    out["dm_mc"]["independent_per_second"] = 1.0 / (2 * g.tau_int * out["dm_mc"]["seconds_per_proposal"])
    setup = info["seconds"] + tr["seconds"]
    out["dm_mc"]["setup_seconds"] = setup
    out["break_even_configs"] = (setup / (1 / out["hmc_tuned"]["independent_per_second"]
                                          - 1 / out["dm_mc"]["independent_per_second"])
                                 if out["dm_mc"]["independent_per_second"] > out["hmc_tuned"]["independent_per_second"]
                                 else None)
    # a short route-4 chain on the same network: the acceptance of the exact route
    t = time.perf_counter()
    ex = dm_mc(net, theory, cfg, 35, route="exact", chains=2, sweeps=max(4, cfg["mc_sweeps"] // 16))
    out["dm_mc_exact_route"] = {"acceptance": est(ex.acceptance), "chains": 2,
                                "sweeps": max(4, cfg["mc_sweeps"] // 16), "seconds": time.perf_counter() - t}
    results["crit"] = out
    log("kappa=0.27 tau_int(|M|): " + ", ".join(f"{k} {out[k]['tau_int']:.2f}({out[k]['tau_int_error']:.2f})"
                                                 for k in ("metropolis", "hmc_paper", "hmc_tuned", "dm_mc")))


def stage_crit_exact(cfg, results):
    """Route 4 (exact divergence) at kappa = 0.27 long enough for tau_int: the network of stage
    ``crit`` retrained from the same data and seeds (single-threaded CPU training is deterministic)
    and saved to output/net_k027.pt."""
    L = cfg["L"]
    theory, train, test, info = data_at(0.27, cfg, 300)
    net, tr = train_net(cfg["network"], train, test, cfg["epochs"], 4, L)
    save_score_model(os.path.join(results["_out"], "net_k027.pt"), net,
                     {"L": L, "kappa": 0.27, "lam": LAM, "loss": tr["curve"], "epochs": tr["epochs"]})
    chains, sweeps = (2, 8) if cfg["epochs"] < 10 else (4, 48)
    t = time.perf_counter()
    res = dm_mc(net, theory, cfg, 36, route="exact", chains=chains, sweeps=sweeps)
    seconds = time.perf_counter() - t
    series = res.series["m_abs"]
    rho, W, _ = autocorrelation(series)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = gamma_method(series)
    results["crit_exact"] = {"route": "exact", "chains": chains, "sweeps": sweeps, "rk4_steps": cfg["mc_steps"],
                             "test_loss": tr["test_loss"], "acceptance": est(res.acceptance),
                             "tau_int": g.tau_int, "tau_int_error": g.tau_int_error,
                             "rho": [float(r) for r in rho[:40]], "seconds_per_proposal": seconds / (chains * (sweeps + 4)),
                             "m_abs": est(res.observables["m_abs"]), "chi": est(res.observables["chi"])}
    log(f"kappa=0.27 route 4: acceptance {res.acceptance}, tau_int(|M|) {g.tau_int:.2f}({g.tau_int_error:.2f}), "
        f"test loss {tr['test_loss']:.3f} (stage crit: {results.get('crit', {}).get('training', {}).get('test_loss')})")


# --- figures ----------------------------------------------------------------------------------------
def figures(results, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for key, name, title in (("broken", "fig5_broken_histogram.png", "kappa = 0.5 (broken)"),
                             ("sym", "fig6_symmetric_histogram.png", "kappa = 0.21 (symmetric)")):
        if key not in results:
            continue
        h = results[key]["hist_m"]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.hist(h["hmc_test"], bins=40, alpha=0.5, density=True, label="HMC (test)")
        ax.hist(h["dm"], bins=40, alpha=0.5, density=True, label="DM")
        ax.set_xlabel("M")
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out, name), dpi=120)
        plt.close(fig)
    if "sym" in results:
        sc = results["sym"]["scatter"]
        S, E = np.array(sc["S"]), np.array(sc["S_eff"])
        fig, ax = plt.subplots(figsize=(4.5, 4))
        ax.scatter(E - np.mean(E - S), S, s=4)
        lo, hi = S.min(), S.max()
        ax.plot([lo, hi], [lo, hi], "k--")
        r2 = results["sym"]["likelihood"]["r2"]
        ax.set_xlabel("-log q + const")
        ax.set_ylabel("S")
        ax.set_title(f"R2 (Eq. 4.9) {r2['eq_4_9']['value']:.3f}, Pearson^2 {r2['pearson2']['value']:.3f}")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "fig7_action_vs_logq.png"), dpi=120)
        plt.close(fig)
    if "crit" in results:
        c = results["crit"]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for k, label in (("metropolis", "Metropolis"), ("hmc_paper", "HMC (paper)"), ("hmc_tuned", "HMC (tuned)"),
                         ("dm_mc", "DM-MC")):
            ax.plot(c[k]["rho"], label=f"{label}: tau_int {c[k]['tau_int']:.1f}({c[k]['tau_int_error']:.1f})")
        if "crit_exact" in results:
            e = results["crit_exact"]
            ax.plot(e["rho"], label=f"DM-MC route 4: tau_int {e['tau_int']:.1f}({e['tau_int_error']:.1f})")
        ax.set_xlabel("t (steps)")
        ax.set_ylabel("normalised C_|M|(t)")
        ax.set_xlim(0, 39)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "fig8_autocorrelation.png"), dpi=120)
        plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--paper", action="store_true")
    ap.add_argument("--stages", default="routes,sym,paper,broken,crit,routes_nn,crit_exact")
    ap.add_argument("--out", default=os.path.join(HERE, "output"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    cfg = settings(args)
    path = os.path.join(args.out, "results.json")
    results = json.load(open(path)) if os.path.exists(path) else {}
    results["settings"] = cfg
    results["_out"] = args.out
    nets = {}
    t0 = time.perf_counter()
    stages = args.stages.split(",")
    theory = train = test = None
    for stage in stages:
        ts = time.perf_counter()
        if stage == "routes":
            stage_routes(cfg, results, args.quick)
        elif stage == "routes_nn":
            stage_routes_nn(cfg, results, args.quick)
        elif stage == "sym":
            theory, train, test = stage_sym(cfg, results, nets)
        elif stage == "paper":
            if train is None:
                theory, train, test, _ = data_at(0.21, cfg, 100)
            stage_paper(cfg, results, theory, train, test)
        elif stage == "broken":
            stage_broken(cfg, results)
        elif stage == "crit":
            stage_crit(cfg, results)
        elif stage == "crit_exact":
            stage_crit_exact(cfg, results)
        else:
            raise SystemExit(f"unknown stage {stage!r}")
        results.setdefault("seconds", {})[stage] = time.perf_counter() - ts
        save(args.out, results)
        figures(results, args.out)
        log(f"stage {stage} done in {time.perf_counter() - ts:.0f} s")
    results["seconds"]["total_this_run"] = time.perf_counter() - t0
    save(args.out, results)


if __name__ == "__main__":
    main()
