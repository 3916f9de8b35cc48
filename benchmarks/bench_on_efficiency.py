"""Decorrelation per CPU second of the O(n) and U(1) updates: tau_int of a slow observable, and
its cost.

    python benchmarks/bench_on_efficiency.py [--L 64] [--beta 1.0] [--sweeps 4000] [--chains 4] [--quick]

XY (n = 2) at beta, L x L: checkerboard Metropolis alone (the baseline), Metropolis with
overrelaxation sweeps, heat bath with overrelaxation, Swendsen-Wang and Wolff. For each:
seconds per step (``simulate`` end to end: the user's speed), tau_int of |M| (Gamma method,
in steps, with its error), and the efficiency 1 / (tau_int x seconds per step) as a ratio to
Metropolis alone, measured in the same run. Wolff's steps flip one cluster, so its tau_int is
in Wolff steps; the efficiency compares like with like (CPU time per independent |M|).

Then compact U(1) in 2D with HMC at beta = 4, L = 16: tau_int of the topological charge Q^2
(the freezing observable), with its error.
"""
from __future__ import annotations

import argparse
import time
import warnings

from portable_lattice import simulate
from portable_lattice.theories import ON, U1


def _run(theory, algorithm, args, L, sweeps, **knobs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short runs warn about their own error bars
        t = time.perf_counter()
        res = simulate(theory, L=L, dim=2, algorithm=algorithm, chains=args.chains, therm=args.therm,
                       sweeps=sweeps, seed=args.seed, progress=False, **knobs)
        return res, (time.perf_counter() - t) / (sweeps + args.therm)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--L", type=int, default=64)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--sweeps", type=int, default=4000)
    ap.add_argument("--therm", type=int, default=500)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--u1-beta", type=float, default=4.0)
    ap.add_argument("--u1-L", type=int, default=16)
    ap.add_argument("--skip", default="", help="comma list of rows to leave out: metropolis-or, heatbath-or, sw, wolff, "
                                               "u1 (Metropolis alone is the baseline and always runs)")
    ap.add_argument("--quick", action="store_true", help="a smoke run (L = 16, 400 sweeps), not for quoting")
    args = ap.parse_args(argv)
    for name in ("L", "sweeps", "chains", "u1_L"):
        if getattr(args, name) < 2:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 2, got {getattr(args, name)}")
    if args.quick:
        args.L, args.sweeps, args.therm, args.u1_L = 16, 400, 100, 8
    xy = ON(args.beta, n=2)
    skip = {x for x in args.skip.split(",") if x}
    unknown = skip - {"metropolis-or", "heatbath-or", "sw", "wolff", "u1"}
    if unknown:
        raise SystemExit(f"--skip: unknown row(s) {sorted(unknown)}")
    rows = [(key, name, algorithm, knobs) for key, name, algorithm, knobs in (
        ("metropolis", "checkerboard Metropolis", "checkerboard", {}),
        ("metropolis-or", "Metropolis + 2 overrelax", "checkerboard", {"overrelax": 2}),
        ("heatbath-or", "heat bath + 2 overrelax", "heatbath", {"overrelax": 2}),
        ("sw", "Swendsen-Wang", "swendsen-wang", {}),
        ("wolff", "Wolff", "wolff", {})) if key not in skip]
    print(f"XY beta={args.beta} L={args.L}, {args.chains} chains x {args.sweeps} steps after {args.therm}; "
          f"seed {args.seed}\n")
    print(f"{'update':26s} {'ms/step':>9s} {'|M| per site':>16s} {'tau_int(|M|)':>16s} {'efficiency/Metropolis':>22s}")
    base = None
    for _key, name, algorithm, knobs in rows:
        res, per_step = _run(xy, algorithm, args, args.L, args.sweeps, **knobs)
        m = res.observables["m_abs"]
        eff = 1.0 / (m.tau_int * per_step)
        base = eff if base is None else base
        print(f"{name:26s} {per_step * 1e3:9.2f} {str(m):>16s} {m.tau_int:9.2f} ({m.tau_int_error:.2f}) "
              f"{eff / base:22.2f}", flush=True)
    if "u1" in skip:
        return
    res, per_step = _run(U1(args.u1_beta), "hmc", args, args.u1_L, args.sweeps, n_steps=10, traj_length=1.0)
    q2 = res.observables["q2"]
    print(f"\nU(1) 2D beta={args.u1_beta} L={args.u1_L}, HMC (10 leapfrog steps, length 1): {per_step * 1e3:.2f} ms per "
          f"trajectory, <Q^2> = {q2}, tau_int(Q^2) = {q2.tau_int:.2f} ({q2.tau_int_error:.2f}) trajectories, "
          f"acceptance {res.acceptance}")


if __name__ == "__main__":
    main()
