"""The per-component ensemble experiment of Fig. 5 of the PEM paper.

    python studies/pem/fig5.py [--models 40] [--L 16] [--beta 0.7] [--channels 8] [--epochs 100]
                               [--out studies/pem/out]

Many small residual CNNs, each trained from its own seed on its own random
subset of equilibrated configurations (ferromagnetic phase, g = 0.1), predict
two gradient components of one held-out configuration: an atypical one (the
largest |dS/dphi_x| among the held-out configurations) and a typical one (the
component of the same configuration closest to the median |dS/dphi_x|). The
spread of the members' residuals R = prediction - exact is what the penalty
of Eq. 10 assumes to be Gaussian and unbiased.

Prints and writes (``fig5.md``, ``fig5.json``, ``fig5.png``) per component:
the exact value, where it sits in the training distribution, the residual
mean with its error and the bias z-score, the spread sigma, the skewness
and excess kurtosis with their large-sample errors, and the Shapiro-Wilk
p-value. Needs torch and matplotlib: pip install 'portable_lattice[torch,study]'.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np
import torch
from scipy import stats

from portable_lattice import Phi4
from portable_lattice.nn.train import train_ensemble
from portable_lattice.statistics import format_value
from portable_lattice.surrogates.data import gradient_dataset


def spread(residuals: np.ndarray) -> dict:
    """Moments of the members' residuals for one component, with large-sample errors."""
    n = residuals.size
    mu, sd = float(residuals.mean()), float(residuals.std(ddof=1))
    return {"n": n, "mu": mu, "mu_error": sd / math.sqrt(n), "bias_z": mu / (sd / math.sqrt(n)),
            "sigma": sd, "sigma_error": sd / math.sqrt(2 * (n - 1)),
            "skewness": float(stats.skew(residuals)), "skewness_error": math.sqrt(6.0 / n),
            "excess_kurtosis": float(stats.kurtosis(residuals)), "excess_kurtosis_error": math.sqrt(24.0 / n),
            "shapiro_p": float(stats.shapiro(residuals).pvalue)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=40, help="independently trained models (paper: 800)")
    ap.add_argument("--L", type=int, default=16)
    ap.add_argument("--beta", type=float, default=0.7)
    ap.add_argument("--g", type=float, default=0.1)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--train-configs", type=int, default=90)
    ap.add_argument("--pool", type=int, default=360, help="configurations the members draw their subsets from")
    ap.add_argument("--held-out", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "out"))
    args = ap.parse_args(argv)
    if args.models < 3:
        raise SystemExit(f"--models must be at least 3, got {args.models}")
    if not 2 <= args.train_configs <= args.pool:
        raise SystemExit(f"--train-configs must be between 2 and --pool={args.pool}, got {args.train_configs}")
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    action = Phi4.from_beta_g(args.beta, args.g)
    phi, grad = gradient_dataset(action, args.L, args.pool + args.held_out, seed=args.seed + 1)
    phi_train, grad_train = phi[:args.pool], grad[:args.pool]
    phi_test, grad_test = phi[args.pool:], grad[args.pool:]

    # the atypical component: the largest |dS/dphi_x| among the held-out configurations;
    # the typical one: in the same configuration, the component closest to the median |dS/dphi_x|
    flat = np.abs(grad_test).reshape(len(grad_test), -1)
    config, site_atyp = np.unravel_index(int(np.argmax(flat)), flat.shape)
    median = float(np.median(np.abs(grad_train)))
    site_typ = int(np.argmin(np.abs(flat[config] - median)))
    components = {"typical": site_typ, "atypical": int(site_atyp)}
    train_abs = np.abs(grad_train).ravel()

    print(f"training {args.models} models (ResidualCNN({args.channels}), {args.epochs} epochs, "
          f"{args.train_configs} of {args.pool} configurations each, L = {args.L}, beta = {args.beta})", flush=True)
    models, curves = train_ensemble(args.models, phi_train, grad_train, subset=args.train_configs,
                                    epochs=args.epochs, channels=args.channels, seed=args.seed,
                                    log=lambda s: print("  " + s, flush=True) if f"epoch {args.epochs}/" in s else None)
    x = torch.from_numpy(phi_test[config]).float()[None, None]
    with torch.inference_mode():
        preds = np.stack([m(x)[0, 0].double().numpy().ravel() for m in models])  # (models, V)
    exact = grad_test[config].ravel()
    result = {"parameters": vars(args), "config": int(config), "final_loss_median": float(np.median([c[-1] for c in curves])),
              "components": {}}
    rows = ["| component | exact dS/dphi_x | training |g| >= this | mu (bias) | bias z | sigma | skewness | "
            "excess kurtosis | Shapiro-Wilk p |", "|---|---|---|---|---|---|---|---|---|"]
    residuals = {}
    for name, site in components.items():
        r = preds[:, site] - exact[site]
        residuals[name] = r
        s = spread(r)
        s.update(site=int(site), exact=float(exact[site]),
                 training_fraction_beyond=float(np.mean(train_abs >= abs(exact[site]))))
        result["components"][name] = s
        rows.append(f"| {name} | {exact[site]:.3f} | {s['training_fraction_beyond']:.2e} | "
                    f"{format_value(s['mu'], s['mu_error'])} | {s['bias_z']:.2f} | "
                    f"{format_value(s['sigma'], s['sigma_error'])} | "
                    f"{format_value(s['skewness'], s['skewness_error'])} | "
                    f"{format_value(s['excess_kurtosis'], s['excess_kurtosis_error'])} | {s['shapiro_p']:.2g} |")
    result["seconds"] = time.perf_counter() - t0
    table = "\n".join(rows)
    print("\n" + table + f"\n\n{args.models} models, {result['seconds']:.0f} s")
    with open(os.path.join(args.out, "fig5.md"), "w") as fh:
        fh.write(table + "\n")
    with open(os.path.join(args.out, "fig5.json"), "w") as fh:
        json.dump(result, fh, indent=1)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib missing: no plot; pip install 'portable_lattice[study]')")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for (name, r), colour in zip(residuals.items(), ("tab:blue", "tab:pink")):
        s = result["components"][name]
        ax.hist(r, bins=max(10, args.models // 8), density=True, alpha=0.6, color=colour,
                label=f"{name}: dS/dphi = {s['exact']:.2f}")
        grid = np.linspace(r.min(), r.max(), 200)
        ax.plot(grid, stats.norm.pdf(grid, s["mu"], s["sigma"]), color=colour,
                label=f"Gaussian mu = {s['mu']:.3f}, sigma = {s['sigma']:.3f}")
    ax.set_xlabel("residual R = prediction - exact")
    ax.set_title(f"{args.models} models, one configuration (beta = {args.beta}, L = {args.L}): Fig. 5")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "fig5.png"), dpi=110)
    print(f"wrote {args.out}/fig5.md, fig5.json, fig5.png")


if __name__ == "__main__":
    main()
