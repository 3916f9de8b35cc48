"""``portable-lattice``: the command line.

    portable-lattice simulate --model phi4 --beta 0.5 --g 0.1 --L 16 --algorithm checkerboard
    portable-lattice simulate --kappa 0.21 --lam 0.022 --L 32 --algorithm hmc --backend torch --json
"""
from __future__ import annotations

import argparse
import json
import math
import sys

from .analysis import format_value
from .backends import BACKENDS, BackendUnavailableError
from .driver import NonFiniteFieldError
from .phi4 import Phi4
from .simulate import ALGORITHMS, KNOBS, simulate

__all__ = ["main", "build_parser"]

#: observables printed and written, in this order
REPORTED = ("phi2", "m", "m_abs", "m2", "m4", "chi", "chi_abs", "binder", "xi2nd", "action")


def print_json(obj) -> None:
    """Exactly one JSON object on stdout, newline-terminated (what --json promises)."""
    json.dump(obj, sys.stdout)
    sys.stdout.write("\n")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="portable-lattice",
                                 description="Lattice Monte Carlo on NumPy, torch or CuPy.")
    sub = ap.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="sample a lattice field theory and print observables with errors")
    sim.add_argument("--model", default="phi4", choices=["phi4", "ising", "potts", "clock", "ea"])
    par = sim.add_argument_group("phi^4 parameters: (beta, g) as in the PEM paper, or (kappa, lam) as in the diffusion paper")
    par.add_argument("--beta", type=float)
    par.add_argument("--g", type=float)
    par.add_argument("--kappa", type=float)
    par.add_argument("--lam", type=float)
    spin = sim.add_argument_group("spin models: H = -J sum s_i s_j - h sum s_i (ising), -J sum delta (potts), "
                                  "-J sum cos (clock), -sum J_ij s_i s_j (ea)")
    spin.add_argument("--q", type=int, default=3, help="states of potts/clock (default 3)")
    spin.add_argument("--h", type=float, default=0.0, help="ising magnetic field (default 0)")
    spin.add_argument("--J", type=float, default=1.0, help="coupling (default 1)")
    spin.add_argument("--couplings", default=None, help="ea: couplings as .npy of shape (d, L, ..., L)")
    spin.add_argument("--couplings-seed", type=int, default=None, help="ea: draw J_ij ~ N(0,1) from this seed")
    lat = sim.add_argument_group("lattice")
    lat.add_argument("--L", type=int, default=16, help="extent in every direction (default 16)")
    lat.add_argument("--dim", type=int, default=2, help="number of dimensions (default 2)")
    alg = sim.add_argument_group("sampler")
    alg.add_argument("--algorithm", default="checkerboard",
                     choices=sorted(set(ALGORITHMS) | {"heatbath", "swendsen-wang", "wolff"}),
                     help="phi4: metropolis (PEM paper's random-site), checkerboard, hmc, langevin, mala; "
                          "spins: metropolis (DCL's random-site single flip), checkerboard, heatbath, "
                          "swendsen-wang, wolff")
    alg.add_argument("--step", type=float, default=1.0, help="Metropolis proposal width (default 1.0)")
    alg.add_argument("--hits", type=int, default=1, help="checkerboard proposals per site (default 1)")
    alg.add_argument("--dt", type=float, default=0.01, help="Langevin/MALA time step (default 0.01)")
    alg.add_argument("--n-steps", type=int, default=10, help="HMC integration steps (default 10)")
    alg.add_argument("--traj-length", type=float, default=1.0, help="HMC trajectory length (default 1.0)")
    alg.add_argument("--integrator", default="leapfrog", choices=["leapfrog", "omelyan"])
    run = sim.add_argument_group("run")
    run.add_argument("--backend", default="numpy", choices=sorted(BACKENDS))
    run.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the backend's own)")
    run.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    run.add_argument("--chains", type=int, default=4, help="independent chains (default 4)")
    run.add_argument("--therm", type=int, default=500, help="thermalisation steps (default 500)")
    run.add_argument("--sweeps", type=int, default=1000, help="number of measurements (default 1000)")
    run.add_argument("--every", type=int, default=1, help="steps between measurements (default 1)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--compile", action="store_true",
                     help="torch only: fuse the kernels with torch.compile (compiles first, then faster)")
    run.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="status line on stderr (default: only on a terminal)")
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
    pem.add_argument("--json", action="store_true")
    mc = sub.add_parser("mcrg", help="Monte Carlo RG of the 2D Ising model: exponents from the T matrix")
    mc.add_argument("--L", type=int, default=32)
    mc.add_argument("--beta", type=float, default=None, help="default: K_c = ln(1 + sqrt 2)/2")
    mc.add_argument("--algorithm", default="swendsen-wang", choices=["swendsen-wang", "wolff", "checkerboard", "heatbath"])
    mc.add_argument("--configs", type=int, default=10000, help="configurations analysed (default 10000)")
    mc.add_argument("--chains", type=int, default=64)
    mc.add_argument("--therm", type=int, default=200)
    mc.add_argument("--every", type=int, default=1)
    mc.add_argument("--levels", type=int, default=2, help="blocking steps (default 2)")
    mc.add_argument("--input", default=None, help="analyse stored configurations, (configs, L, L) of +-1 (or "
                                                  "booleans), instead of generating an ensemble: FILE.npy, "
                                                  "FILE.npz (one array) or FILE.npz:KEY")
    mc.add_argument("--pair", type=int, default=None, help="blocking step n -> n+1 reported (default: last)")
    mc.add_argument("--basis", default="symmetric", choices=["symmetric", "oriented"],
                    help="couplings summed over rotations/reflections (default), or one orientation per shape "
                         "as in the inverse-RG authors' code")
    mc.add_argument("--backend", default="numpy", choices=sorted(BACKENDS))
    mc.add_argument("--device", default=None)
    mc.add_argument("--seed", type=int, default=0)
    mc.add_argument("--json", action="store_true")
    mc.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    return ap


def _action(args) -> Phi4:
    bg = args.beta is not None or args.g is not None
    kl = args.kappa is not None or args.lam is not None
    if bg and kl:
        raise ValueError("give either --beta/--g or --kappa/--lam, not both")
    if kl:
        if args.kappa is None or args.lam is None:
            raise ValueError("--kappa and --lam go together")
        return Phi4.from_kappa_lambda(args.kappa, args.lam)
    if args.beta is None or args.g is None:
        raise ValueError("give the couplings: --beta and --g, or --kappa and --lam")
    return Phi4.from_beta_g(args.beta, args.g)


def _finite(x: float):
    return x if math.isfinite(x) else None  # JSON has no NaN


def result_json(res) -> dict:
    obs = {name: {"value": _finite(e.value), "error": _finite(e.error), "tau_int": _finite(e.tau_int)}
           for name, e in res.observables.items() if name in REPORTED + ("exp_minus_dh",)}
    meta = res.meta
    return {"backend": meta["backend"], "device": meta["device"], "dtype": meta["dtype"],
            "model": meta["model"], "algorithm": meta["algorithm"], "chains": res.chains,
            "sweeps": res.series["m"].shape[0], "every": meta.get("every", 1), "seed": meta["seed"],
            "acceptance": {"value": _finite(res.acceptance.value), "error": _finite(res.acceptance.error)},
            "observables": obs,
            "timing": {"seconds": res.seconds, "site_updates_per_second": res.site_updates_per_second}}


def print_table(res, out=None) -> None:
    out = out or sys.stdout
    m = res.meta
    params = ", ".join(f"{k}={v}" for k, v in m["model"].items() if k not in ("name", "form"))
    out.write(f"phi^4 ({params}) | {m['algorithm']} | backend {m['backend']} on {m['device']}, {m['dtype']} | "
              f"{res.chains} chains x {res.series['m'].shape[0]} measurements\n\n")
    out.write(f"{'observable':14s} {'value':>20s} {'tau_int':>14s}\n")
    for name in REPORTED + ("exp_minus_dh",):
        if name not in res.observables:
            continue
        e = res.observables[name]
        tau = format_value(e.tau_int, e.tau_int_error) if math.isfinite(e.tau_int_error) and e.tau_int_error > 0 \
            else f"{e.tau_int:.2f}"
        out.write(f"{name:14s} {str(e):>20s} {tau:>14s}\n")
    a = res.acceptance
    out.write(f"\nacceptance {a}   time {res.seconds:.2f} s   "
              f"{res.site_updates_per_second:.3g} site updates/s\n")


SPIN_REPORTED = ("energy", "m", "m_abs", "m2", "m4", "chi", "heat_capacity", "binder", "c_me")


def _spin_model(args):
    from .spins import Clock, EdwardsAnderson, Ising, Potts
    if args.model == "ising":
        return Ising(J=args.J, h=args.h, dim=args.dim)
    if args.model == "potts":
        return Potts(q=args.q, J=args.J, dim=args.dim)
    if args.model == "clock":
        return Clock(q=args.q, J=args.J, dim=args.dim)
    if (args.couplings is None) == (args.couplings_seed is None):
        raise ValueError("--model ea needs exactly one of --couplings PATH or --couplings-seed N")
    if args.couplings is not None:
        import importlib
        np = importlib.import_module("numpy")  # reading a .npy file is host I/O, not core physics
        try:
            J = np.load(args.couplings)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read --couplings {args.couplings!r}: {e}") from e
        if J.dtype.kind != "f":
            raise TypeError(f"--couplings must hold floats, got dtype {J.dtype} in {args.couplings!r}")
        return EdwardsAnderson(couplings=J)
    return EdwardsAnderson.gaussian(args.L, args.dim, args.couplings_seed)


def _main_spins(ap, args) -> int:
    from .spins import simulate_spins
    if args.beta is None:
        ap.exit(2, "portable-lattice simulate: error: spin models need --beta\n")
    try:
        model = _spin_model(args)
        res = simulate_spins(model, beta=args.beta, L=args.L, dim=args.dim, algorithm=args.algorithm,
                             backend=args.backend, device=args.device, chains=args.chains, therm=args.therm,
                             sweeps=args.sweeps, every=args.every, seed=args.seed,
                             progress=False if args.json and args.progress is None else args.progress)
    except (ValueError, TypeError, BackendUnavailableError) as e:
        ap.exit(2, f"portable-lattice simulate: error: {e}\n")
    if args.json:
        out = {"backend": res.meta["backend"], "device": res.meta["device"], "dtype": res.meta["dtype"],
               "model": res.meta["model"], "algorithm": args.algorithm, "chains": res.chains,
               "sweeps": res.series["m"].shape[0], "every": args.every, "seed": args.seed,
               "acceptance": {"value": _finite(res.acceptance.value), "error": _finite(res.acceptance.error)},
               "observables": {k: {"value": _finite(e.value), "error": _finite(e.error), "tau_int": _finite(e.tau_int)}
                               for k, e in res.observables.items() if k in SPIN_REPORTED},
               "timing": {"seconds": res.seconds, "site_updates_per_second": res.site_updates_per_second}}
        print_json(out)
    else:
        m = res.meta
        params = ", ".join(f"{k}={v}" for k, v in m["model"].items() if k != "name")
        print(f"{m['model']['name']} ({params}) | {args.algorithm} | backend {m['backend']} on {m['device']} | "
              f"{res.chains} chains x {res.series['m'].shape[0]} measurements\n")
        print(f"{'observable':14s} {'value':>20s} {'tau_int':>10s}")
        for name in SPIN_REPORTED:
            e = res.observables[name]
            print(f"{name:14s} {str(e):>20s} {e.tau_int:10.2f}")
        print(f"\nacceptance {res.acceptance}   time {res.seconds:.2f} s   "
              f"{res.site_updates_per_second:.3g} site updates/s")
    return 0


def _main_pem(ap, args) -> int:
    import importlib
    try:
        # the pipeline trains torch models, so it lives in the torch-only model zoo
        pipeline = importlib.import_module("portable_lattice.nn.pipeline")
    except ImportError as e:
        ap.exit(2, f"portable-lattice pem: error: needs PyTorch: pip install 'portable_lattice[torch]' ({e})\n")
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if not args.json else None
    try:
        out = pipeline.run_pem(beta=args.beta, g=args.g, L=args.L, ensemble=args.ensemble, surrogate=args.surrogate,
                               oracle_sigma=args.oracle_sigma, train_configs=args.train_configs, epochs=args.epochs,
                               channels=args.channels, mode=args.mode, step=args.step, chains=args.chains,
                               therm=args.therm, sweeps=args.sweeps, backend=args.backend, seed=args.seed, log=log)
    except (ValueError, TypeError, BackendUnavailableError) as e:
        ap.exit(2, f"portable-lattice pem: error: {e}\n")
    if args.json:
        print_json(out)
        return 0
    p = out["parameters"]
    print(f"PEM study: phi^4 beta={p['beta']} g={p['g']} L={p['L']} | surrogate {p['surrogate']}"
          f"{' sigma=' + str(p['oracle_sigma']) if p['oracle_sigma'] else ''}, N={p['ensemble']} | {p['mode']} mode\n")
    print(f"{'method':10s} {'action':>14s} {'z':>7s} {'|M|':>14s} {'z':>7s} {'chi':>12s} {'z':>7s} {'acc':>6s}")
    for method, r in out["methods"].items():
        o, z = r["observables"], r["z"]
        cells = "".join(f" {format_value(o[k]['value'], o[k]['error']):>14s} {z[k]:7.2f}" for k in ("action", "m_abs", "chi"))
        print(f"{method:10s}{cells} {r['acceptance']:6.3f}")
    return 0


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.command == "pem":
        return _main_pem(ap, args)
    if args.command == "mcrg":
        from .spins.mcrg import main_mcrg
        return main_mcrg(ap, args)
    if args.model != "phi4":
        return _main_spins(ap, args)
    if args.algorithm not in ALGORITHMS:
        ap.exit(2, f"portable-lattice simulate: error: algorithm={args.algorithm!r} is for spin models; "
                   f"phi4 takes {list(ALGORITHMS)}\n")
    try:
        action = _action(args)
        given = dict(step=args.step, hits=args.hits, dt=args.dt, n_steps=args.n_steps,
                     traj_length=args.traj_length, integrator=args.integrator)
        knobs = {k: given[k] for k in KNOBS[args.algorithm]}
        res = simulate(action, L=args.L, dim=args.dim, algorithm=args.algorithm, backend=args.backend,
                       device=args.device, dtype=args.dtype, chains=args.chains, therm=args.therm,
                       sweeps=args.sweeps, every=args.every, seed=args.seed, compile=args.compile,
                       progress=False if args.json and args.progress is None else args.progress, **knobs)
        res.meta["every"] = args.every
    except NonFiniteFieldError as e:
        # report what was measured before the blow-up, then fail
        print(f"portable-lattice simulate: error: {e}", file=sys.stderr)
        res, status = e.partial, 3
        if res is None or not res.series:
            return status
        res.meta.update({"backend": args.backend, "device": str(args.device or "default"),
                         "dtype": args.dtype, "model": dict(action.params(), L=args.L, dim=args.dim),
                         "algorithm": args.algorithm, "seed": args.seed, "every": args.every, "partial": True})
    except (ValueError, TypeError, BackendUnavailableError) as e:
        ap.exit(2, f"portable-lattice simulate: error: {e}\n")
    else:
        status = 0
    if args.json:
        out = result_json(res)
        if res.meta.get("partial"):
            out["partial"] = True
        print_json(out)
    else:
        print_table(res)
    return status


if __name__ == "__main__":
    sys.exit(main())
