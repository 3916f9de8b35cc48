"""Distribution-consistent learning ([DCL], Sprague et al. 2021): Tables A1, 2, 3 and Fig. 2, scaled to a CPU.

    python studies/dcl/run.py                 # the default (under 45 minutes on this 2-core CPU)
    python studies/dcl/run.py --quick         # a smoke run (a few minutes)
    python studies/dcl/run.py --threads 1     # torch threads (default: all cores)
    python studies/dcl/run.py --parts a1,t2   # only some parts (Table A1 always runs)

Writes results.json, results.md and the Fig. 2 PNGs into studies/dcl/output/ (or --out DIR).
Every setting that differs from the paper is printed in results.md and stated in the README.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

from portable_lattice.exact import ising_torus
from portable_lattice.nn.ednn import EDNNEnergy, ModelEnergy
from portable_lattice.nn import dcl
from portable_lattice.runs.driver import run
from portable_lattice.backends import get_backend
from portable_lattice.observables import measure_spins
from portable_lattice.samplers import learned_energy_metropolis
from portable_lattice.runs.simulate import make_kernel
from portable_lattice.statistics import gamma_method, format_value
from portable_lattice.theories import Clock, Ising, LearnedEnergy

BETA_C = dcl.BETA_C
#: the paper's rows (Table 3), copied for comparison: (U, |M|, S, F) per site with errors
PAPER_T3 = {
    24: {"VAN": ("-1.5058(1)", "0.7829(1)", "0.26505(4)", "-2.107250(1)"),
         "NIS": ("-1.43(2)", "0.67(3)", "0.299(7)", "-2.1128(8)"),
         "DCL": ("-1.449(1)", "0.697(3)", "0.328(9)", "-2.074(9)"),
         "Reference": ("-1.440(2)", "0.678(3)", "0.296", "-2.112")},
    16: {"VAN": ("-1.4764(2)", "0.7478(2)", "0.28081(7)", "-2.11363(1)"),
         "NIS": ("-1.4533(3)", "0.71363(4)", "0.2917(2)", "-2.11529(1)"),
         "DCL": ("-1.459(1)", "0.725(2)", "0.32(2)", "-2.07(4)"),
         "Reference": ("-1.453(1)", "0.714(2)", "0.292", "-2.115")},
}
#: Table A1 of the paper: entropy per site (correlated, de-correlated, reference)
PAPER_A1 = {0.125: ("0.677(1)", "0.6769(3)", 0.67690), 0.25: ("0.621(1)", "0.622(1)", 0.61951),
            0.4407: ("0.30(3)", "0.28(1)", 0.28236)}
#: Table 2 of the paper, beta_c rows: (RNN, EDNN) RMSE
PAPER_T2 = {"correlated (2 seeds, period 1)": (17.619, 12.489), "decorrelated (32 seeds, period 10)": (4.472, 1.585)}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def fmt(d: dict) -> str:
    return format_value(d["value"], d["error"] if d["error"] is not None else float("nan"))


def settings(quick: bool) -> dict:
    if quick:
        return dict(a1_configs=4000, a1_epochs=2, a1_samples=2000, t2_per_level=10, ednn_configs=4000,
                    ednn_epochs=4, curve_L=8, curve_betas=4, curve_sweeps=200, t3_sizes=(16,),
                    t3_configs=8000, t3_epochs=2, t3_samples=2000, t3_mc_sweeps=200, channels=16,
                    small_channels=16, small_layers=3)
    return dict(a1_configs=30000, a1_epochs=8, a1_samples=10000, t2_per_level=50, ednn_configs=40000,
                ednn_epochs=20, curve_L=16, curve_betas=7, curve_sweeps=1000, t3_sizes=(16, 24),
                t3_configs=60000, t3_epochs=8, t3_samples=20000, t3_mc_sweeps=1600, channels=16,
                small_channels=32, small_layers=4)


def train(theory, L, S, *, configs, epochs, algorithm="swendsen-wang", seeds=32, period=2, seed=0):
    # 8 x 8: a wider and deeper model (its blocks cover the lattice); 16 and 24: the smaller one
    small = L <= 8
    model, info = dcl.train_model(theory, L, configs=configs, arch="pixelcnn",
                                  hidden=S["small_channels"] if small else S["channels"],
                                  layers=S["small_layers"] if small else 3,
                                  half=2, symmetrize=True, epochs=epochs, batch=128, lr=2e-3, algorithm=algorithm,
                                  seeds=seeds, period=period, seed=seed, progress=False)
    return model, info


def table_a1(S, out) -> dict:
    """Entropy per site of models trained at three beta on 8 x 8 (correlated / decorrelated data)."""
    rows = {}
    models = {}
    for beta in (0.125, 0.25, 0.4407):
        th = Ising(beta=beta)
        ex = ising_torus(beta, 8)
        row = {"exact": ex.entropy}
        # the paper's two Metropolis settings (single-spin updates between kept configurations), and SW
        for label, algorithm, seeds, period in (("correlated", "metropolis", 2, 1),
                                                ("decorrelated", "metropolis", 32, 10),
                                                ("swendsen-wang", "swendsen-wang", 32, 2)):
            t0 = time.perf_counter()
            model, info = train(th, 8, S, configs=S["a1_configs"], epochs=S["a1_epochs"], algorithm=algorithm,
                                seeds=seeds, period=period)
            res = dcl.thermodynamics(model, th, samples=S["a1_samples"], seed=1)
            row[label] = {"paper": res["entropy"]["paper"], "importance": res["entropy"]["importance"],
                          "ess": res["ess"], "val_nll": info["training"]["val_nll_final"],
                          "tau_int_m": info["data"]["tau_int"]["m_abs"], "seconds": time.perf_counter() - t0}
            log(f"A1 beta={beta} {label}: S paper {fmt(res['entropy']['paper'])}, importance "
                f"{fmt(res['entropy']['importance'])}, exact {ex.entropy:.5f} (ESS {res['ess']:.0f})")
            models[(beta, label)] = model
        rows[str(beta)] = row
    out["table_a1"] = rows
    return models


def table_2(S, out, models) -> dict:
    """RMSE of the model energy and of EDNNs trained on it, 8 x 8, beta_c, over all energies."""
    th = Ising(beta=BETA_C)
    spins, energies = dcl.energy_test_set(th, 8, per_level=S["t2_per_level"], seed=3)
    res = {"test_configs": int(len(energies)), "levels": int(len(set(np.round(energies, 6))))}
    ednns = {}
    for label in ("correlated", "decorrelated", "swendsen-wang"):
        model = models[(BETA_C, label)]
        me = ModelEnergy(model, BETA_C)
        me.set_constant("random", 8)
        row = {"model": dcl.energy_rmse(lambda s: me.energy(s, np.float64), spins, energies)}
        for labels_on in (("random", "both", "samples") if label == "swendsen-wang" else ("random", "both")):
            net, _, einfo = dcl.train_ednn_from_model(model, BETA_C, labels_on=labels_on,
                                                      configs=S["ednn_configs"], epochs=S["ednn_epochs"], seed=5)
            ee = EDNNEnergy(net)
            ee.set_constant("random", 8)
            row[f"ednn_{labels_on}"] = dict(dcl.energy_rmse(lambda s: ee.energy(s, np.float64), spins, energies),
                                            seconds=einfo["seconds"])
            ednns[(label, labels_on)] = net
        log(f"Table 2 {label}: model RMSE {row['model']['rmse']:.3f}, EDNN: "
            + ", ".join(f"{k[5:]} labels {v['rmse']:.3f}" for k, v in row.items() if k.startswith("ednn_")))
        res[label] = row
    out["table_2"] = res
    return ednns


def _curve_plot(rows, title, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    T = [r["T"] for r in rows]
    for ax, obs, name in ((axes[0], "energy", "U / N"), (axes[1], "m_abs", "|M| / N")):
        for kind, style in (("true", "k-o"), ("learned", "C1--s")):
            v = [r[kind][obs]["value"] for r in rows]
            e = [r[kind][obs]["error"] or 0.0 for r in rows]
            ax.errorbar(T, v, yerr=e, fmt=style, ms=4, capsize=2,
                        label="true Hamiltonian" if kind == "true" else "learned energy (EDNN)")
        ax.set_xlabel("T")
        ax.set_ylabel(name)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def figure_2(S, out, ednns, outdir) -> None:
    """U and |m| against T with the learned EDNN energy (trained on 8 x 8, applied at curve_L) and the truth."""
    res = {}
    L = S["curve_L"]
    n = S["curve_betas"]
    # Ising: the EDNN from the decorrelated Swendsen-Wang model (C: random configurations have mean zero)
    net = ednns[("swendsen-wang", "both")]
    betas = list(np.linspace(0.3, 0.6, n))
    rows = dcl.temperature_curves(Ising(beta=BETA_C), EDNNEnergy(net), L, betas, chains=16, therm=200,
                                  sweeps=S["curve_sweeps"], seed=11)
    res["ising"] = rows
    _curve_plot(rows, f"Ising {L}x{L}: EDNN trained on 8x8 model energies at beta_O = {BETA_C}",
                os.path.join(outdir, "fig2_ising.png"))
    # the q = 3 clock model (Eq. 3): a model at its critical point beta_O = ln(1 + sqrt 3) / 1.5
    beta_o = math.log(1 + math.sqrt(3)) / 1.5
    clock = Clock(beta=beta_o, q=3)
    # (no cluster algorithm for the clock form: checkerboard Metropolis, 5 sweeps between kept configurations)
    model, info = train(clock, 8, S, configs=S["a1_configs"], epochs=S["a1_epochs"], algorithm="checkerboard",
                        seeds=64, period=5)
    cnet, _, einfo = dcl.train_ednn_from_model(model, beta_o, labels_on="both", configs=S["ednn_configs"],
                                               epochs=S["ednn_epochs"], seed=6)
    betas = list(np.linspace(0.45, 0.9, n))
    rows = dcl.temperature_curves(clock, EDNNEnergy(cnet), L, betas, chains=16, therm=200,
                                  sweeps=S["curve_sweeps"], seed=12)
    res["clock"] = rows
    res["clock_beta_obs"] = beta_o
    res["clock_val_nll"] = info["training"]["val_nll_final"]
    _curve_plot(rows, f"q = 3 clock {L}x{L}: EDNN trained on 8x8 model energies at beta_O = {beta_o:.4f}",
                os.path.join(outdir, "fig2_clock.png"))
    for name in ("ising", "clock"):
        worst = max(abs(r["learned"][o]["value"] - r["true"][o]["value"])
                    / math.hypot(r["learned"][o]["error"] or 0, r["true"][o]["error"] or 0)
                    for r in res[name] for o in ("energy", "m_abs"))
        res[f"{name}_max_abs_z"] = worst
        log(f"Fig. 2 {name}: largest |z| learned vs true over the curve {worst:.2f}")
    out["figure_2"] = res


def table_3(S, out, ednns) -> None:
    """16 x 16 and 24 x 24 at beta_c: U and |M| from Metropolis with the EDNN energy, S and F from the model."""
    res = {}
    net = ednns[("swendsen-wang", "both")]
    be = get_backend("numpy")
    for L in S["t3_sizes"]:
        th = Ising(beta=BETA_C)
        ex = ising_torus(BETA_C, L)
        t0 = time.perf_counter()
        model, info = train(th, L, S, configs=S["t3_configs"], epochs=S["t3_epochs"])
        train_s = time.perf_counter() - t0
        n_samples = S["t3_samples"] if L <= 16 else S["t3_samples"] // 2
        thermo = dcl.thermodynamics(model, th, samples=n_samples, seed=2)
        # DCL's free energy: the learned EDNN energy, ground states at -2 J per spin (the paper's choice)
        ee = EDNNEnergy(net)
        ee.set_constant(-2.0, L)
        learned = dcl.thermodynamics(model, th, samples=n_samples // 4, seed=3, energy=ee)
        mc = {}
        for label, kernel in (("EDNN Metropolis", learned_energy_metropolis(LearnedEnergy(BETA_C, ee, th))),
                              ("true Metropolis", make_kernel(th, "checkerboard"))):
            rng = be.rng(40 + L + (label == "true Metropolis"))
            r = run(kernel, th.random(rng, (16, L, L), np.float64), rng, n_therm=S["t3_mc_sweeps"] // 4,
                    n_measure=S["t3_mc_sweeps"] // 2, every=2, progress=False,
                    measure=lambda s: measure_spins(s, th, np.float64),
                    analyse=lambda series: {k: gamma_method(series[k]) for k in ("energy", "m_abs")})
            mc[label] = {k: r.observables[k].as_dict() for k in ("energy", "m_abs")}
        res[str(L)] = {"exact": {"entropy": ex.entropy, "free_energy": ex.free_energy, "energy": ex.energy},
                       "thermo": thermo, "learned_energy_thermo": learned, "mc": mc,
                       "val_nll": info["training"]["val_nll_final"], "train_seconds": train_s,
                       "parameters": info["parameters"]}
        zf = (thermo["free_energy"]["importance"]["value"] - ex.free_energy) / thermo["free_energy"]["importance"]["error"]
        zs = (thermo["entropy"]["importance"]["value"] - ex.entropy) / thermo["entropy"]["importance"]["error"]
        log(f"Table 3 L={L}: F importance {fmt(thermo['free_energy']['importance'])} (exact {ex.free_energy:.6f}, "
            f"z {zf:.2f}), S importance {fmt(thermo['entropy']['importance'])} (exact {ex.entropy:.5f}, z {zs:.2f}), "
            f"paper F {fmt(thermo['free_energy']['paper'])}, S {fmt(thermo['entropy']['paper'])}; ESS "
            f"{thermo['ess']:.0f} of {n_samples}")
    out["table_3"] = res


def markdown(out: dict, S: dict) -> str:
    lines = ["# DCL study results", "", f"Settings: `{json.dumps(S)}`", ""]
    a1 = out.get("table_a1")
    if a1:
        lines += ["## Table A1: entropy per site, 8 x 8 (model's own estimator -E_q ln q; importance-weighted)", "",
                  "| beta | data | S (paper's estimator) | S (importance) | held-out -ln P/V | exact | paper |",
                  "|---|---|---|---|---|---|---|"]
        for beta, row in a1.items():
            p = PAPER_A1[float(beta)]
            for label, paper in (("correlated", p[0]), ("decorrelated", p[1]), ("swendsen-wang", "-")):
                r = row[label]
                lines.append(f"| {beta} | {label} | {fmt(r['paper'])} | {fmt(r['importance'])} | "
                             f"{r['val_nll']:.5f} | {row['exact']:.5f} | {paper} |")
        lines.append("")
    t2 = out.get("table_2")
    if t2:
        lines += [f"## Table 2: energy RMSE (J), 8 x 8, beta_c; {t2['test_configs']} test configurations over "
                  f"{t2['levels']} energy levels", "",
                  "| data | model -ln P / beta_O | EDNN (labels on random) | EDNN (labels on random + model samples) "
                  "| EDNN (labels on model samples) |", "|---|---|---|---|---|"]
        for label in ("correlated", "decorrelated", "swendsen-wang"):
            r = t2[label]
            cells = [f"{r[k]['rmse']:.3f}" if k in r else "-" for k in ("ednn_random", "ednn_both", "ednn_samples")]
            lines.append(f"| {label} | {r['model']['rmse']:.3f} | " + " | ".join(cells) + " |")
        lines += ["", "Paper (RNN, EDNN): " + "; ".join(f"{k}: {v[0]}, {v[1]}" for k, v in PAPER_T2.items()), ""]
    f2 = out.get("figure_2")
    if f2:
        lines += ["## Fig. 2: learned vs true energy over temperature", "",
                  f"Ising: largest |z| (learned vs true, U and |M|, every T) {f2['ising_max_abs_z']:.2f}; "
                  f"clock q = 3: {f2['clock_max_abs_z']:.2f}. Figures: fig2_ising.png, fig2_clock.png.", ""]
    t3 = out.get("table_3")
    if t3:
        lines += ["## Table 3: beta_c = 0.4407", "",
                  "| L | row | U/N | abs(M)/N | S/N | F/N |", "|---|---|---|---|---|---|"]
        for L, r in t3.items():
            th, lt, mc, ex = r["thermo"], r["learned_energy_thermo"], r["mc"], r["exact"]
            lines.append(f"| {L} | this library: Metropolis with the EDNN energy; model S, F importance-weighted | "
                         f"{fmt(mc['EDNN Metropolis']['energy'])} | {fmt(mc['EDNN Metropolis']['m_abs'])} | "
                         f"{fmt(th['entropy']['importance'])} | {fmt(th['free_energy']['importance'])} |")
            lines.append(f"| {L} | this library: the paper's estimators (Eqs. 10-11) on the same model | "
                         f"{fmt(th['internal_energy']['paper'])} | - | {fmt(th['entropy']['paper'])} | "
                         f"{fmt(th['free_energy']['paper'])} |")
            lines.append(f"| {L} | this library: EDNN energy (ground state -2): paper's / importance F | - | - | "
                         f"{fmt(lt['entropy']['paper'])} / {fmt(lt['entropy']['importance'])} | "
                         f"{fmt(lt['free_energy']['paper'])} / {fmt(lt['free_energy']['importance'])} |")
            lines.append(f"| {L} | exact (S, F, U) and MC with the true H (abs(M)) | {ex['energy']:.6f} | "
                         f"{fmt(mc['true Metropolis']['m_abs'])} | {ex['entropy']:.6f} | {ex['free_energy']:.6f} |")
            for name, vals in PAPER_T3[int(L)].items():
                lines.append(f"| {L} | paper: {name} | " + " | ".join(vals) + " |")
            lines.append(f"| {L} | ESS of the importance weights | {th['ess']:.0f} of {th['samples']} | | | |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "output"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--parts", default="a1,t2,fig2,t3")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    S = settings(args.quick)
    parts = set(args.parts.split(","))
    out: dict = {"settings": S, "torch_threads": torch.get_num_threads()}
    t0 = time.perf_counter()
    torch.manual_seed(0)
    models = table_a1(S, out)
    ednns = table_2(S, out, models) if parts & {"t2", "fig2", "t3"} else {}
    if "fig2" in parts:
        figure_2(S, out, ednns, args.out)
    if "t3" in parts:
        table_3(S, out, ednns)
    out["seconds"] = time.perf_counter() - t0
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(out, f, indent=1, default=float)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(markdown(out, S) + f"\nTotal {out['seconds']:.0f} s with {out['torch_threads']} torch threads.\n")
    log(f"done in {out['seconds']:.0f} s; {os.path.join(args.out, 'results.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
