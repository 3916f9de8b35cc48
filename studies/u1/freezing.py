"""Topological freezing of 2D compact U(1): tau_int of Q^2 against beta, HMC and heat bath.

    python studies/u1/freezing.py [--L 16] [--betas 1,2,3,4,5,6] [--sweeps 5000] [--therm 500]
                                  [--chains 4] [--seed 1]

For each beta and algorithm (HMC with 10 leapfrog steps of total length 1; the link heat bath
with one overrelaxation sweep per step), ``simulate`` runs ``chains`` chains and the table
gives: chi_top = <Q^2>/V with its error against the exact torus value
(``portable_lattice.exact.u1_2d``) as z, tau_int of Q^2 in steps with its error, the seconds
per step, and the CPU seconds per independent Q^2 (2 tau_int x seconds per step). A tau_int
above sweeps / 50 is marked "<": the run is too short for it, and the Gamma method's window
then underestimates it.
"""
from __future__ import annotations

import argparse
import time
import warnings

from portable_lattice import simulate
from portable_lattice.exact import u1_2d
from portable_lattice.theories import U1

ALGORITHMS = {"hmc": {"n_steps": 10, "traj_length": 1.0}, "heatbath": {"overrelax": 1}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--L", type=int, default=16)
    ap.add_argument("--betas", default="1,2,3,4,5,6")
    ap.add_argument("--sweeps", type=int, default=5000)
    ap.add_argument("--therm", type=int, default=500)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    try:
        betas = [float(b) for b in args.betas.split(",")]
    except ValueError:
        raise SystemExit(f"--betas must be a comma list of numbers, got {args.betas!r}") from None
    for name in ("L", "sweeps", "chains"):
        if getattr(args, name) < 2:
            raise SystemExit(f"--{name} must be at least 2, got {getattr(args, name)}")
    print(f"2D U(1), L={args.L}, {args.chains} chains x {args.sweeps} steps after {args.therm}, seed {args.seed}\n")
    print(f"{'beta':>5s} {'algorithm':>9s} {'chi_top':>14s} {'exact':>10s} {'z':>6s} {'tau_int(Q^2)':>18s} "
          f"{'ms/step':>8s} {'CPU s per indep. Q^2':>21s}")
    for beta in betas:
        exact = u1_2d(args.L, beta)["chi_top"]
        for algorithm, knobs in ALGORITHMS.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # frozen runs warn about their error bars; the table says it
                t = time.perf_counter()
                res = simulate(U1(beta), L=args.L, dim=2, algorithm=algorithm, chains=args.chains,
                               therm=args.therm, sweeps=args.sweeps, seed=args.seed, progress=False, **knobs)
                per_step = (time.perf_counter() - t) / (args.sweeps + args.therm)
            chi, q2 = res.observables["chi_top"], res.observables["q2"]
            z = (chi.value - exact) / chi.error if chi.error > 0 else float("nan")
            mark = "<" if q2.tau_int > args.sweeps / 50 else " "
            print(f"{beta:5.2f} {algorithm:>9s} {str(chi):>14s} {exact:10.5f} {z:6.2f} "
                  f"{mark}{q2.tau_int:9.1f} ({q2.tau_int_error:.1f}) {per_step * 1e3:8.2f} "
                  f"{2 * q2.tau_int * per_step:21.3g}", flush=True)


if __name__ == "__main__":
    main()
