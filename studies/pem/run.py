"""Reproduction of the PEM paper's Sec. III: ground truth vs RCNN-surrogate MC vs PEM-MC.

    python studies/pem/run.py [--L 48] [--betas 0.5 0.7] [--critical] [--ensemble 10] [--epochs E]
                              [--channels 16] [--sweeps 600] [--out studies/pem/out]

For each beta at g = 0.1: HMC training data with exact gradients, an ensemble
of N residual CNNs (each on its own subset of --train-configs configurations),
then exact, surrogate and PEM Metropolis in the parallel sublattice mode.
``--critical`` adds beta = 0.6 with a 10x larger training set and 200 epochs,
as in the paper. Writes ``results.md`` (a table of <S>/V, <|M|> and chi with
errors and z-scores against the ground truth), ``results.json`` and PNG
histograms of the action, the magnetisation (Figs. 2-3) and the residuals
(Fig. 4). Needs matplotlib: pip install 'portable_lattice[study]'.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from portable_lattice.nn.pipeline import run_pem
from portable_lattice.statistics import format_value


def plots(out_dir, beta, result):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    series = result["series"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in ((axes[0], "action", "S/V"), (axes[1], "m", "M")):
        for method, colour in (("exact", "black"), ("surrogate", "tab:green"), ("pem", "tab:blue")):
            ax.hist(np.asarray(series[method][key]).ravel(), bins=50, density=True, histtype="step",
                    color=colour, label=method)
        ax.set_xlabel(label)
        ax.legend()
    fig.suptitle(f"phi^4, beta = {beta}, g = {result['parameters']['g']}, L = {result['parameters']['L']}")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, f"histograms_beta{beta}.png"), dpi=110)
    plt.close(fig)
    resid = np.asarray(result["training"].get("residual_values", []))
    if resid.size:
        fig, ax = plt.subplots(figsize=(5, 3.8))
        ax.hist(resid, bins=80, density=True, color="tab:gray", label="residuals R (Eq. 7)")
        mu, sd = resid.mean(), resid.std()
        x = np.linspace(mu - 5 * sd, mu + 5 * sd, 400)
        ax.plot(x, np.exp(-0.5 * ((x - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi)), "k-",
                label=f"Gaussian fit mu={mu:.3g} sigma={sd:.3g}")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.set_title(f"held-out residuals, beta = {beta} (Fig. 4)")
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, f"residuals_beta{beta}.png"), dpi=110)
        plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--L", type=int, default=48)
    ap.add_argument("--g", type=float, default=0.1)
    ap.add_argument("--betas", type=float, nargs="+", default=[0.5, 0.7])
    ap.add_argument("--critical", action="store_true", help="add beta = 0.6 with 10x training data, 200 epochs")
    ap.add_argument("--ensemble", type=int, default=10)
    ap.add_argument("--train-configs", type=int, default=90)
    ap.add_argument("--epochs", type=int, default=None,
                    help="default: the paper's 180 (paramagnetic, beta < 0.6), 150 (ferromagnetic), 200 (beta = 0.6)")
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--chains", type=int, default=8)
    ap.add_argument("--therm", type=int, default=100)
    ap.add_argument("--sweeps", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "out"))
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    def epochs(beta):
        if args.epochs is not None:
            return args.epochs
        return 200 if abs(beta - 0.6) < 1e-9 else (180 if beta < 0.6 else 150)

    runs = [(b, args.train_configs, epochs(b)) for b in args.betas]
    if args.critical:
        runs.append((0.6, 10 * args.train_configs, epochs(0.6)))
    t0 = time.perf_counter()
    table = ["| beta | method | <S>/V | z | <|M|> | z | chi | z | chi_abs | z | acceptance |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    record = {}
    for beta, n_train, epochs in runs:
        print(f"beta = {beta}: training {args.ensemble} members ({n_train} configurations each, {epochs} epochs)",
              flush=True)
        res = run_pem(beta=beta, g=args.g, L=args.L, ensemble=args.ensemble, train_configs=n_train, epochs=epochs,
                      channels=args.channels, chains=args.chains, therm=args.therm, sweeps=args.sweeps,
                      seed=args.seed, keep_series=True, log=lambda s: print("  " + s, flush=True))
        for method, r in res["methods"].items():
            o, z = r["observables"], r["z"]
            table.append(f"| {beta} | {method} | {format_value(o['action']['value'], o['action']['error'])} | "
                         f"{z['action']:.2f} | {format_value(o['m_abs']['value'], o['m_abs']['error'])} | "
                         f"{z['m_abs']:.2f} | {format_value(o['chi']['value'], o['chi']['error'])} | {z['chi']:.2f} | "
                         f"{format_value(o['chi_abs']['value'], o['chi_abs']['error'])} | {z['chi_abs']:.2f} | "
                         f"{r['acceptance']:.3f} |")
        try:
            plots(args.out, beta, res)
        except ImportError:
            print("  (matplotlib missing: no plots; pip install 'portable_lattice[study]')")
        res.pop("series")
        res["training"].pop("residual_values", None)
        record[str(beta)] = res
        print("\n".join(table[-3:]), flush=True)
    with open(os.path.join(args.out, "results.md"), "w") as fh:
        fh.write("\n".join(table) + "\n")
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(record, fh, indent=1)
    print(f"\n{chr(10).join(table)}\n\ntotal {time.perf_counter() - t0:.0f} s; wrote {args.out}/results.md, results.json, PNGs")


if __name__ == "__main__":
    main()
