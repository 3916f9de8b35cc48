"""``portable-lattice pem``: surrogate Metropolis vs the Penalty Ensemble Method vs the exact sampler."""
from __future__ import annotations

import sys

from ..backends import BACKENDS
from ..statistics import format_value
from ._common import exits_2, needs, print_json


def add_parser(sub) -> None:
    pem = sub.add_parser("pem", help="surrogate Metropolis vs the Penalty Ensemble Method vs the exact sampler")
    pem.add_argument("--beta", type=float, default=0.5)
    pem.add_argument("--g", type=float, default=0.1)
    pem.add_argument("--L", type=int, default=16)
    pem.add_argument("--ensemble", type=int, default=10, help="members N (default 10)")
    pem.add_argument("--surrogate", default="cnn", choices=["cnn", "oracle"],
                     help="cnn: train the residual CNN ensemble (needs torch); oracle: exact gradient + noise")
    pem.add_argument("--oracle-sigma", type=float, default=1.0)
    pem.add_argument("--train-configs", type=int, default=90)
    pem.add_argument("--epochs", type=int, default=150)
    pem.add_argument("--channels", type=int, default=16)
    pem.add_argument("--mode", default="parallel", choices=["parallel", "sequential"])
    pem.add_argument("--step", type=float, default=1.0)
    pem.add_argument("--chains", type=int, default=8)
    pem.add_argument("--therm", type=int, default=200)
    pem.add_argument("--sweeps", type=int, default=1000)
    pem.add_argument("--backend", default="numpy", choices=sorted(BACKENDS))
    pem.add_argument("--seed", type=int, default=0)
    pem.add_argument("--save-ensemble", metavar="PATH", help="cnn: keep the trained ensemble (weights, provenance)")
    pem.add_argument("--load-ensemble", metavar="PATH", help="cnn: use a saved ensemble instead of training one")
    pem.add_argument("--json", action="store_true")


def main(args, ap) -> int:
    prog = "portable-lattice pem"
    with needs(prog, ap, "PyTorch", "torch"):
        # the pipeline trains torch models, so it lives in the torch-only model zoo
        from ..nn import pipeline
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if not args.json else None
    from ..runs.storage import check_output
    with exits_2(prog, ap):
        if args.save_ensemble is not None:
            check_output(args.save_ensemble, "--save-ensemble")  # before the training, not after it
        out = pipeline.run_pem(beta=args.beta, g=args.g, L=args.L, ensemble=args.ensemble, surrogate=args.surrogate,
                               oracle_sigma=args.oracle_sigma, train_configs=args.train_configs, epochs=args.epochs,
                               channels=args.channels, mode=args.mode, step=args.step, chains=args.chains,
                               therm=args.therm, sweeps=args.sweeps, backend=args.backend, seed=args.seed, log=log,
                               save_ensemble_to=args.save_ensemble, load_ensemble_from=args.load_ensemble)
    if args.json:
        print_json(out)
        return 0
    p = out["parameters"]
    print(f"PEM study: phi^4 beta={p['beta']} g={p['g']} L={p['L']} | surrogate {p['surrogate']}"
          f"{' sigma=' + str(p['oracle_sigma']) if p['oracle_sigma'] else ''}, N={p['ensemble']} | {p['mode']} mode\n")
    print(f"{'method':10s} {'action':>14s} {'z':>7s} {'|M|':>14s} {'z':>7s} {'chi':>12s} {'z':>7s} {'acc':>6s}")
    for method, r in out["methods"].items():
        o, z = r["observables"], r["z"]
        cells = "".join(f" {format_value(o[k]['value'], o[k]['error']):>14s} {z[k]:7.2f}"
                        for k in ("action", "m_abs", "chi"))
        print(f"{method:10s}{cells} {r['acceptance']:6.3f}")
    return 0
