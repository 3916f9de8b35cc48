"""Why PEM does not remove the surrogate's bias at beta = 0.7: the ensemble's errors, measured.

    python studies/pem/diagnose.py [--L 48] [--beta 0.7] [--ensemble 10] [--epochs 150]
                                   [--channels 16] [--sweeps 100] [--out studies/pem/out]
                                   [--train-configs 90] [--pool 180] [--disjoint]

The penalty of Eq. 10 assumes that the N members' gradients scatter around the
exact one like independent draws: then the ensemble mean's error has variance
sigma^2 / N, and the penalty sigma^2 delta^2 / (2N) makes detailed balance hold
on average. This script trains the ensemble as ``run.py`` does and measures,
on held-out HMC configurations and on configurations the plain surrogate chain
visits (where the bias lives), site by site:

* the ensemble mean's error e = <g>_N - g_exact and the members' spread sigma;
* the calibration ratio rms(e) / rms(sigma / sqrt(N)) (1 if the members were
  independent draws around the truth);
* the mean pairwise correlation rho of the members' errors (shared errors:
  rho > 0 makes rms(e)^2 = sigma_k^2 (rho + (1 - rho) / N), which the spread,
  sigma_k^2 (1 - rho), cannot see);
* the systematic part of e: its mean and its regression on phi_x (a restoring
  bias that pulls the field towards zero lowers |M|);
* the size of the penalty against the error it should cover: the mean of
  sigma^2 delta^2 / (2N) and the rms of the dS error delta e, delta ~ N(0, step^2).

Each figure carries an error from the spread over the configurations (chains x
configurations, treated as independent samples of the site averages). Writes
``diagnose.md`` and ``diagnose.json``. Needs torch: pip install 'portable_lattice[torch]'.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np
import torch

from portable_lattice import Phi4
from portable_lattice.backends import get_backend
from portable_lattice.backends.surrogate import TorchEnsemble
from portable_lattice.nn.train import train_ensemble
from portable_lattice.samplers import surrogate_metropolis
from portable_lattice.statistics import format_value
from portable_lattice.surrogates.data import gradient_dataset


def mean_err(per_config: np.ndarray) -> tuple[float, float]:
    """Mean over configurations and its standard error."""
    x = np.asarray(per_config, dtype=float)
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))


def error_statistics(members: np.ndarray, exact: np.ndarray, phi: np.ndarray, step: float) -> dict:
    """Site-by-site statistics of an ensemble's errors; members (N, n, L, L), exact and phi (n, L, L)."""
    n_members = members.shape[0]
    err_k = members - exact[None]                    # each member's error
    e = err_k.mean(axis=0)                          # the ensemble mean's error
    var = members.var(axis=0, ddof=1)               # what PEM sees
    axes = (1, 2)
    out = {}
    rms_e = np.sqrt((e ** 2).mean(axis=axes))
    rms_noise = np.sqrt((var / n_members).mean(axis=axes))
    out["rms_mean_error"] = mean_err(rms_e)
    out["rms_sigma"] = mean_err(np.sqrt(var.mean(axis=axes)))
    out["calibration"] = mean_err(rms_e / rms_noise)
    # mean pairwise correlation of the members' errors, per configuration
    flat = err_k.reshape(n_members, err_k.shape[1], -1)
    flat = flat - flat.mean(axis=2, keepdims=True)
    norm = np.sqrt((flat ** 2).sum(axis=2))
    rho = []
    for c in range(flat.shape[1]):
        u = flat[:, c] / norm[:, c, None]
        r = u @ u.T
        rho.append((r.sum() - n_members) / (n_members * (n_members - 1)))
    out["member_error_correlation"] = mean_err(np.asarray(rho))
    out["mean_error"] = mean_err(e.mean(axis=axes))
    # restoring bias: slope of e against phi_x, per configuration
    p = phi - phi.mean(axis=axes, keepdims=True)
    slope = (p * (e - e.mean(axis=axes, keepdims=True))).sum(axis=axes) / (p ** 2).sum(axis=axes)
    out["error_slope_vs_phi"] = mean_err(slope)
    out["mean_phi"] = mean_err(phi.mean(axis=axes))
    # the penalty against the dS error it should cover (E delta^2 = step^2)
    out["mean_penalty"] = mean_err((var * step ** 2 / (2 * n_members)).mean(axis=axes))
    out["rms_dS_error"] = mean_err(step * rms_e)
    out["beyond_3_sigma_of_mean"] = mean_err((np.abs(e) > 3 * np.sqrt(var / n_members)).mean(axis=axes))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--L", type=int, default=48)
    ap.add_argument("--beta", type=float, default=0.7)
    ap.add_argument("--g", type=float, default=0.1)
    ap.add_argument("--ensemble", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--train-configs", type=int, default=90)
    ap.add_argument("--pool", type=int, default=None,
                    help="training pool the members draw from (default: 2 x --train-configs)")
    ap.add_argument("--disjoint", action="store_true",
                    help="give every member its own --train-configs configurations (needs a pool of N x that)")
    ap.add_argument("--chains", type=int, default=8)
    ap.add_argument("--sweeps", type=int, default=100, help="plain-surrogate sweeps; every 10th is analysed")
    ap.add_argument("--step", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "out"))
    args = ap.parse_args(argv)
    if args.ensemble < 2:
        raise SystemExit(f"--ensemble must be at least 2, got {args.ensemble}")
    if args.sweeps < 10:
        raise SystemExit(f"--sweeps must be at least 10, got {args.sweeps}")
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    action = Phi4.from_beta_g(args.beta, args.g)
    be = get_backend("numpy")
    pool, held_out = (2 * args.train_configs if args.pool is None else args.pool), 64
    if not 2 <= args.train_configs <= pool:
        raise SystemExit(f"--train-configs must be between 2 and --pool={pool}, got {args.train_configs}")
    if args.disjoint and pool < args.ensemble * args.train_configs:
        raise SystemExit(f"--disjoint needs --pool >= {args.ensemble * args.train_configs}, got {pool}")
    phi, grad = gradient_dataset(action, args.L, pool + held_out, chains=args.chains, seed=args.seed + 1)
    print(f"data: {pool + held_out} configurations at L = {args.L}, beta = {args.beta} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    models, _ = train_ensemble(args.ensemble, phi[:pool], grad[:pool], subset=args.train_configs,
                               epochs=args.epochs, channels=args.channels, seed=args.seed,
                               disjoint=args.disjoint)
    ensemble = TorchEnsemble(models)
    print(f"trained {args.ensemble} members ({time.perf_counter() - t0:.0f} s)", flush=True)

    def members(configs):
        return ensemble.members(torch.as_tensor(configs)).double().numpy()

    held = phi[pool:]
    results = {"held-out HMC": error_statistics(members(held), grad[pool:], held, args.step)}
    # where the plain surrogate chain goes (from the same equilibrated starts as run.py)
    kernel = surrogate_metropolis(action, ensemble, args.step, "parallel", penalty=False)
    state = kernel.init(phi[-args.chains:].copy())
    rng = be.rng(args.seed + 11)
    visited = []
    for sweep in range(1, args.sweeps + 1):
        state, _ = kernel.step(state, rng)
        if sweep % 10 == 0:
            visited.append(np.array(state.phi))
    visited = np.concatenate(visited)
    exact_grad = np.asarray(action.grad_action(visited))
    results["surrogate chain"] = error_statistics(members(visited), exact_grad, visited, args.step)
    seconds = time.perf_counter() - t0

    rows = [("rms of the ensemble mean's error e", "rms_mean_error"),
            ("rms of the members' spread sigma", "rms_sigma"),
            ("calibration rms(e) / rms(sigma/sqrt N)", "calibration"),
            ("members' error correlation rho", "member_error_correlation"),
            ("mean of e", "mean_error"),
            ("slope of e against phi_x", "error_slope_vs_phi"),
            ("mean phi", "mean_phi"),
            ("mean penalty sigma^2 delta^2/(2N)", "mean_penalty"),
            ("rms dS error delta e", "rms_dS_error"),
            ("fraction |e| > 3 sigma/sqrt N", "beyond_3_sigma_of_mean")]
    lines = [f"# PEM diagnosis: beta = {args.beta}, g = {args.g}, L = {args.L}, N = {args.ensemble}, "
             f"{args.epochs} epochs, {args.channels} channels, {args.train_configs} of {pool} configurations "
             f"per member ({'disjoint' if args.disjoint else 'random, overlapping'})", "",
             f"| quantity | {' | '.join(results)} |", "|---|" + "---|" * len(results)]
    for label, key in rows:
        lines.append(f"| {label} | " + " | ".join(format_value(*r[key]) for r in results.values()) + " |")
    lines += ["", f"{held.shape[0]} held-out configurations; {visited.shape[0]} surrogate-chain configurations "
              f"(every 10th of {args.sweeps} sweeps x {args.chains} chains); {seconds:.0f} s"]
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(args.out, "diagnose.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "diagnose.json"), "w") as f:
        json.dump({"parameters": vars(args), "results": results, "seconds": seconds}, f, indent=1)


if __name__ == "__main__":
    main()
