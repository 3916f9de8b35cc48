"""Inverse-RG upscaling study ([IRG], Sec. III-IV): Table II, Fig. 5, Fig. 7 and Fig. 8.

    python studies/inverse_rg/run.py [--train-configs 20000] [--configs 4096] [--ks 3 5 7] [--out DIR]
    python studies/inverse_rg/run.py --paper-scale      # the paper's 10^6 training and generated configurations

For k = 3, 5, 7, trained with uniform (Eq. 12) and majority-rule (Eq. 13) weights
on Swendsen-Wang configurations at K_c with L_t = 32: generate configurations from
a single random spin (L0 = 1) up to L = 128 and from 8 x 8 Monte Carlo
configurations (L0 = 8) up to L = 128; report gamma/nu and 1/nu from the pairs
(32, 8), (64, 16), (128, 32) beside the paper's Table II and the library's Monte
Carlo rows (studies/ising_fss/results.json), U4 against L beside 0.61069, and
write the figures and results.json to --out (default: this folder's output/).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings

import numpy as np

from portable_lattice.backends import get_backend
from portable_lattice.exact import K_CRITICAL
from portable_lattice.nn.upscaler import train_upscaler
from portable_lattice.observables import magnetisation_histogram
from portable_lattice.rg.upscaling import random_spins, upscale
from portable_lattice.runs.upscaling import generate_and_analyse
from portable_lattice.samplers import SwendsenWang
from portable_lattice.theories import Ising

HERE = os.path.dirname(os.path.abspath(__file__))
#: Table II of [IRG]: (k, weighted) -> {pair: (gamma/nu, 1/nu)}
PAPER = {
    (3, False): {"32,8": (1.803, 1.163), "64,16": (1.804, 1.157), "128,32": (1.805, 1.155)},
    (5, False): {"32,8": (1.781, 1.138), "64,16": (1.782, 1.120), "128,32": (1.782, 1.112)},
    (7, False): {"32,8": (1.777, 1.129), "64,16": (1.778, 1.106), "128,32": (1.778, 1.096)},
    (3, True): {"32,8": (1.834, 1.169), "64,16": (1.835, 1.164), "128,32": (1.836, 1.163)},
    (5, True): {"32,8": (1.815, 1.138), "64,16": (1.816, 1.116), "128,32": (1.816, 1.107)},
    (7, True): {"32,8": (1.812, 1.126), "64,16": (1.812, 1.103), "128,32": (1.812, 1.093)},
    "MC": {"32,8": (1.754, 1.077), "64,16": (1.751, 1.038), "128,32": (1.749, 1.020)},
}
U4_INFINITE = 0.61069  # the Binder ratio of the critical 2D Ising torus (Salas and Sokal)
#: Table IV of [IRG], RSRG columns (configurations of L = 128, blocked once): eta = 4 - 2 y_h, 1/nu = y_t
PAPER_T4 = {"MC": (0.248, 0.973), "k=3": (0.282, 1.111), "k=5": (0.285, 1.067), "k=7": (0.287, 1.055),
            "k=3, w.": (0.243, 1.130), "k=5, w.": (0.223, 1.074), "k=7, w.": (0.227, 1.059)}


def table4(models: dict, configs: int, seed: int, L: int = 128) -> dict:
    """MCRG (36 couplings, symmetric basis) on configurations of size L blocked once (step 0 -> 1),
    for every model's upscaled configurations and for Swendsen-Wang configurations of the same size."""
    from portable_lattice.runs.mcrg import analyse_ensemble, run_mcrg

    be = get_backend("numpy")
    levels = int(round(math.log2(L)))
    out = {}
    mc = run_mcrg(L=L, configs=configs, chains=64, therm=200, every=2, levels=1, seed=seed)
    out["MC"] = mc["steps"]["0->1"]
    for name, (weights, k) in models.items():
        rng = be.rng(seed + k)
        spins = np.concatenate([upscale(random_spins(rng, 256, 1, be.xp), weights, k, rng, levels)
                                for _ in range(max(1, configs // 256))])
        out[name] = analyse_ensemble(spins, levels=1, seed=seed)["steps"]["0->1"]
    return out


def mc_configurations(L: int, n: int, seed: int, chains: int = 64, spacing: int = 4) -> np.ndarray:
    """n Swendsen-Wang configurations at K_c, ``spacing`` sweeps apart in each of ``chains`` chains."""
    be = get_backend("numpy")
    rng = be.rng(seed)
    theory = Ising(beta=K_CRITICAL, dim=2)
    kernel = SwendsenWang(theory)
    state = kernel.init(theory.random(rng, (chains, L, L), np.float64))
    for _ in range(200):
        state, _ = kernel.step(state, rng)
    out = []
    while sum(len(o) for o in out) < n:
        for _ in range(spacing):
            state, _ = kernel.step(state, rng)
        out.append(np.array(state.spins))
    return np.concatenate(out)[:n]


def fmt(e) -> str:
    return str(e)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", type=int, nargs="+", default=[3, 5, 7])
    ap.add_argument("--train-configs", type=int, default=20000)
    ap.add_argument("--configs", type=int, default=4096, help="generated configurations per model and start")
    ap.add_argument("--levels", type=int, default=7, help="from L0 = 1 to 2^levels (default 128)")
    ap.add_argument("--paper-scale", action="store_true", help="10^6 training and generated configurations")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", default=os.path.join(HERE, "output"))
    ap.add_argument("--no-table4", action="store_true", help="skip the MCRG comparison (Table IV)")
    args = ap.parse_args(argv)
    if args.paper_scale:
        args.train_configs, args.configs = 10 ** 6, 10 ** 6
    os.makedirs(args.out, exist_ok=True)
    warnings.simplefilter("ignore")  # short validation sets warn about tau_int; every number below has its error
    t_start = time.perf_counter()
    mc8 = mc_configurations(8, args.configs, args.seed + 7)
    results = {"settings": {"train_configs": args.train_configs, "configs": args.configs, "L_t": 32,
                            "levels": args.levels, "seed": args.seed}, "models": {}}
    print(f"inverse RG at K_c: L_t = 32, {args.train_configs} training configurations, {args.configs} generated "
          f"per model and start\n")
    head = f"{'model':12s} {'pair':>7s} {'gamma/nu':>12s} {'paper':>6s} {'1/nu':>11s} {'paper':>6s}"
    print(head)
    curves = {}
    for weighted in (False, True):
        for k in args.ks:
            name = f"k={k}{', w.' if weighted else ''}"
            tr = train_upscaler(k, 32, args.train_configs, weighted=weighted, seed=args.seed + k + 100 * weighted)
            g1 = generate_and_analyse(tr["weights"], k, levels=args.levels, configs=args.configs,
                                      seed=args.seed + 1, batch=256)
            g8 = generate_and_analyse(tr["weights"], k, levels=args.levels - 3, configs=args.configs, start=mc8,
                                      seed=args.seed + 2, batch=256)
            paper = PAPER.get((k, weighted), {})
            rows = {}
            for pair, e in g1["exponents"]["gamma_nu"].items():
                if pair not in ("32,8", "64,16", "128,32"):
                    continue
                o = g1["exponents"]["one_nu"][pair]
                p = paper.get(pair, (math.nan, math.nan))
                print(f"{name:12s} {pair:>7s} {fmt(e):>12s} {p[0]:6.3f} {fmt(o):>11s} {p[1]:6.3f}")
                rows[pair] = {"gamma_nu": e.as_dict(), "one_nu": o.as_dict(), "paper": p,
                              "d_gamma_nu": e.value - p[0], "d_one_nu": o.value - p[1]}
            results["models"][name] = {
                "weights": tr["weights"], "loss": tr["loss"], "data": tr["data"], "train_seconds": tr["seconds"],
                "table2": rows,
                "from_L0_1": {str(L): {o: obs[o].as_dict() for o in ("chi", "c_me", "heat_capacity", "binder")}
                              for L, obs in g1["sizes"].items()},
                "from_L0_8": {str(L): {o: obs[o].as_dict() for o in ("chi", "c_me", "heat_capacity", "binder")}
                              for L, obs in g8["sizes"].items()},
                "site_samples_per_second": g1["timing"]["site_samples_per_second"]}
            curves[name] = (g1["sizes"], g8["sizes"], k, tr["weights"])
    # P_L(m) from the largest k without weights, L = 32, 64, 128 (Fig. 8)
    kmax = max(args.ks)
    w = results["models"][f"k={kmax}"]["weights"]
    be = get_backend("numpy")
    rng = be.rng(args.seed + 3)
    levels = upscale(random_spins(rng, min(args.configs, 4096), 1, be.xp), w, kmax, rng, args.levels, keep=True)
    hists = {}
    for s in levels:
        L = s.shape[1]
        if L in (32, 64, 128):
            m = s.reshape(s.shape[0], -1).mean(axis=1).reshape(-1, 1).astype(float)
            hists[L] = magnetisation_histogram(m, L, bins=41)
    if not args.no_table4:
        t4 = table4({n: (results["models"][n]["weights"], curves[n][2]) for n in curves}, args.configs, args.seed + 9)
        mc_eta, mc_nu = 4 - 2 * t4["MC"]["y_h"], t4["MC"]["y_t"]
        print(f"\nTable IV (RSRG on L = 128 configurations, step 128 -> 64, 36 couplings):")
        print(f"{'model':10s} {'eta':>12s} {'paper':>6s} {'1/nu':>12s} {'paper':>6s} {'eta - MC':>12s} {'1/nu - MC':>12s}")
        results["table4"] = {}
        for name, ex in t4.items():
            eta, nu = 4 - 2 * ex["y_h"], ex["y_t"]
            p = PAPER_T4.get(name, (math.nan, math.nan))
            d_eta, d_nu = (eta - mc_eta, nu - mc_nu) if name != "MC" else (eta - eta, nu - nu)
            shift = (f"{fmt(d_eta):>12s} {fmt(d_nu):>12s}" if name != "MC" else f"{'-':>12s} {'-':>12s}")
            print(f"{name:10s} {fmt(eta):>12s} {p[0]:6.3f} {fmt(nu):>12s} {p[1]:6.3f} {shift}")
            results["table4"][name] = {"eta": eta.as_dict(), "one_nu": nu.as_dict(), "paper": p,
                                       "eta_minus_mc": d_eta.as_dict(), "one_nu_minus_mc": d_nu.as_dict()}
    results["seconds"] = time.perf_counter() - t_start
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nU4 at L = 128: " + ", ".join(f"{n}: {curves[n][0][128]['binder']} (L0=1), "
                                          f"{curves[n][1][128]['binder']} (L0=8)" for n in curves
                                          if 128 in curves[n][0] and 128 in curves[n][1]))
    print(f"total {results['seconds']:.0f} s; wrote {args.out}/results.json")
    try:
        plot(curves, hists, args.out)
    except ImportError:
        print("matplotlib not installed: no figures")


def plot(curves, hists, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mc = json.load(open(os.path.join(HERE, "..", "ising_fss", "results.json")))["sizes"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, obs, log_y in zip(axes, ("chi", "c_me", "heat_capacity"), (True, True, False)):
        for name, (s1, _, _, _) in curves.items():
            Ls = sorted(s1)
            ax.errorbar(Ls, [s1[L][obs].value for L in Ls], [s1[L][obs].error for L in Ls], marker="o", ms=3,
                        label=name, capsize=2)
        Ls = sorted(int(L) for L in mc)
        ax.errorbar(Ls, [mc[str(L)][obs]["value"] for L in Ls], [mc[str(L)][obs]["error"] for L in Ls],
                    marker="x", color="k", ls="none", label="MC (Swendsen-Wang)", capsize=2)
        ax.set_xscale("log", base=2)
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel("L")
        ax.set_title({"chi": "susceptibility chi", "c_me": "cumulant c_me", "heat_capacity": "heat capacity C"}[obs])
    axes[0].legend(fontsize=7)
    fig.suptitle("Fig. 5 of [IRG]: upscaled from L0 = 1 against Monte Carlo")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "fig5.png"), dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (s1, s8, _, _) in curves.items():
        for sizes, marker, tag in ((s1, "o", "L0=1"), (s8, "s", "L0=8")):
            Ls = sorted(sizes)
            ax.errorbar(Ls, [sizes[L]["binder"].value for L in Ls], [sizes[L]["binder"].error for L in Ls],
                        marker=marker, ms=3, capsize=2, label=f"{name} {tag}")
    Ls = sorted(int(L) for L in mc)
    ax.errorbar(Ls, [mc[str(L)]["binder"]["value"] for L in Ls], [mc[str(L)]["binder"]["error"] for L in Ls],
                marker="x", color="k", ls="none", label="MC")
    ax.axhline(U4_INFINITE, color="gray", ls="--", label="0.61069")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("L")
    ax.set_ylabel("U4")
    ax.set_title("Fig. 7 of [IRG]: Binder ratio of upscaled configurations")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "fig7.png"), dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for L, h in sorted(hists.items()):
        p = np.asarray(h["p"])
        centre = p[len(p) // 2]
        ok = p > 0
        ax.plot(np.asarray(h["x"])[ok], np.log(p[ok] / centre), marker="o", ms=3, label=f"L = {L}")
    ax.set_xlabel("m L^(1/8)")
    ax.set_ylabel("log P_L(m) / P_L(0)")
    ax.set_title("Fig. 8 of [IRG]: collapse of P_L(m), largest k, from L0 = 1")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "fig8.png"), dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
