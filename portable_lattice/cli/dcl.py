"""``portable-lattice dcl train | energy | curves | thermo``: distribution-consistent learning ([DCL])."""
from __future__ import annotations

import argparse
import math
import sys

from ..backends import BACKENDS
from ._common import exits_2, format_estimate, print_json

_HELPS = {"train": "sample at beta_O, fit an autoregressive model, write it to --net",
          "energy": "RMSE of the model's energy (and of an EDNN trained on it) over all energies (Table 2)",
          "curves": "U and |m| against beta with the learned energy and the true one (Fig. 2)",
          "thermo": "S, F, U per site from the model's samples: the paper's and the importance-weighted "
                    "estimators (Tables 3, A1)"}
#: flags that must be positive integers, and positive numbers, where the job has them
_POSITIVE_INTS = ("L", "q", "configs", "seeds", "period", "epochs", "batch", "hidden", "layers", "half",
                  "samples", "chains", "sweeps", "per_level", "ednn_configs")
_POSITIVE = ("beta_obs", "beta", "lr")


def add_parser(sub) -> None:
    dcl = sub.add_parser("dcl", help="distribution-consistent learning: autoregressive models of observed spins, "
                                     "learned energies, entropies and free energies")
    jobs = dcl.add_subparsers(dest="job", required=True)
    own = {"train": _train_flags, "energy": _energy_flags, "curves": _curves_flags, "thermo": _thermo_flags}
    for job, text in _HELPS.items():
        p = jobs.add_parser(job, help=text)
        _shared_flags(p)
        own[job](p)


def _shared_flags(p) -> None:
    p.add_argument("--model", default="ising", choices=["ising", "clock", "ea"])
    p.add_argument("--q", type=int, default=None, help="clock: states (default 3)")
    p.add_argument("--couplings-seed", "--couplings", dest="couplings_seed", type=int, default=None,
                   help="ea: Gaussian couplings J_ij ~ N(0, 1) drawn from this seed (default 0)")
    p.add_argument("--L", type=int, default=None, help="lattice extent (train: required; others: the model's)")
    p.add_argument("--beta-obs", type=float, default=0.4407, help="observation inverse temperature (0.4407)")
    p.add_argument("--net", required=True, metavar="PATH",
                   help="the autoregressive model: written by train, read by the others")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="numpy", choices=sorted(BACKENDS),
                   help="array backend of the Monte Carlo (the networks run in torch on the CPU)")
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true")


def _train_flags(p) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--configs", type=int, default=20000, help="training configurations (default 20000)")
    g.add_argument("--seeds", type=int, default=32, help="independent chains (default 32)")
    g.add_argument("--period", type=int, default=2,
                   help="steps between kept configurations: cluster sweeps, or single-spin updates for "
                        "--algorithm metropolis (default 2)")
    g.add_argument("--algorithm", default="swendsen-wang", choices=["swendsen-wang", "metropolis", "checkerboard"])
    g = p.add_argument_group("network")
    g.add_argument("--arch", default="pixelcnn", choices=["gru", "pixelcnn"])
    g.add_argument("--hidden", type=int, default=32, help="GRU hidden size or PixelCNN channels (32)")
    g.add_argument("--layers", type=int, default=3)
    g.add_argument("--half", type=int, default=3, help="pixelcnn: kernel half-width (3)")
    g.add_argument("--ordering", default="spiral", choices=["spiral", "snake", "raster"], help="gru only")
    g.add_argument("--head", default="likelihood", choices=["likelihood", "regression"])
    g.add_argument("--symmetrize", action=argparse.BooleanOptionalAction, default=True,
                   help="average the model over the global symmetry of the states (default on)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=10)
    g.add_argument("--batch", type=int, default=128)
    g.add_argument("--lr", type=float, default=2e-3)


def _energy_flags(p) -> None:
    p.add_argument("--per-level", type=int, default=50, help="test configurations per energy level (50)")
    p.add_argument("--ednn", metavar="PATH", help="also train an EDNN on the model's energies, write it here")
    p.add_argument("--labels-on", default="random", choices=["random", "samples", "both"])
    p.add_argument("--ednn-configs", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=20, help="EDNN epochs (20)")


def _curves_flags(p) -> None:
    p.add_argument("--energy", default="ednn", choices=["ednn", "model"],
                   help="ednn (any L divisible by its focus; --ednn PATH) or the model's -ln P (its L)")
    p.add_argument("--ednn", metavar="PATH")
    p.add_argument("--betas", default="0.3:0.6:7", help="A:B:N or a comma list (default 0.3:0.6:7)")
    p.add_argument("--mode", default="parallel", choices=["parallel", "sequential"])
    p.add_argument("--chains", type=int, default=16)
    p.add_argument("--therm", type=int, default=300)
    p.add_argument("--sweeps", type=int, default=1000)


def _thermo_flags(p) -> None:
    p.add_argument("--beta", type=float, default=None, help="default: the model's beta_O")
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--chain-sweeps", type=int, default=0,
                   help="also run an exact independence Metropolis chain with the model as proposal")
    p.add_argument("--ednn", metavar="PATH", help="use this learned energy instead of the true H (DCL's F)")
    p.add_argument("--ground-state", type=float, default=None,
                   help="with --ednn: energy per site of the aligned states (the paper: -2)")


def main(args, ap) -> int:
    from ..nn import dcl
    with exits_2(f"portable-lattice dcl {args.job}", ap):
        _check(args)
        q = (args.q or 3) if args.model == "clock" else 2
        log = None if args.json else (lambda m: print(m, file=sys.stderr))
        if args.job == "train":
            return _train(dcl, args, q, log)
        from ..nn.autoregressive import load_model
        model, info = load_model(args.net, q=q, L=args.L if args.job != "curves" else None)
        if info.get("model", args.model) != args.model:
            raise ValueError(f"the model in {args.net!r} was trained on --model {info.get('model')}, "
                             f"not {args.model}")
        # the physics the model was trained on (its lattice, beta_O and couplings) rules over the flags
        trained = {"beta_obs": info.get("beta_obs", args.beta_obs), "seed_c": info.get("couplings_seed") or 0}
        job = {"energy": _energy, "curves": _curves, "thermo": _thermo}[args.job]
        return job(dcl, args, model, q, log, **trained)


def _check(args) -> None:
    for name in _POSITIVE_INTS:
        v = getattr(args, name, None)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {v}")
    for name in _POSITIVE:
        v = getattr(args, name, None)
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {v}")
    if args.q is not None and args.model != "clock":
        raise ValueError(f"--q applies to --model clock, got --q {args.q} with --model {args.model}")
    if args.couplings_seed is not None and args.model != "ea":
        raise ValueError("--couplings applies to --model ea")


def _train(dcl, args, q: int, log) -> int:
    if args.L is None:
        raise ValueError("dcl train needs --L")
    from ..runs.storage import check_output
    check_output(args.net, "--net")  # where the trained model goes: checked before the training
    if args.arch == "pixelcnn" and args.ordering != "spiral":
        raise ValueError("--ordering applies to --arch gru (the masked-convolution model reads in raster order)")
    theory = dcl.make_theory(args.model, args.beta_obs, q=q, L=args.L, couplings_seed=args.couplings_seed or 0)
    from ..nn.autoregressive import save_model
    model, info = dcl.train_model(theory, args.L, configs=args.configs, arch=args.arch, hidden=args.hidden,
                                  layers=args.layers, half=args.half, head=args.head,
                                  symmetrize=args.symmetrize, epochs=args.epochs, batch=args.batch,
                                  lr=args.lr, algorithm=args.algorithm, seeds=args.seeds,
                                  period=args.period, seed=args.seed, ordering=args.ordering, log=log)
    info["model"] = args.model
    info["couplings_seed"] = args.couplings_seed
    exact = dcl.exact_reference(theory, args.L)
    info["exact_entropy"] = None if exact is None else exact["entropy"]
    save_model(args.net, model, info)
    out = {"L": args.L, "beta_obs": args.beta_obs, "arch": args.arch, "parameters": info["parameters"],
           "train_nll": info["training"]["train_nll"], "val_nll": info["training"]["val_nll_final"],
           "exact_entropy": info["exact_entropy"], "data": info["data"],
           "seconds": info["training"]["seconds"], "net": args.net}
    if args.json:
        print_json(out)
    else:
        ex = "" if out["exact_entropy"] is None else f" (exact entropy per site {out['exact_entropy']:.5f})"
        print(f"{args.arch}, {out['parameters']} parameters, {args.configs} configurations at beta_O = "
              f"{args.beta_obs}: held-out -ln P / V = {out['val_nll']:.5f}{ex}; written to {args.net}")
    return 0


def _energy(dcl, args, model, q: int, log, *, beta_obs: float, seed_c: int) -> int:
    theory = dcl.make_theory(args.model, beta_obs, q=q, L=model.L, couplings_seed=seed_c)
    out = dcl.energy_report(model, theory, per_level=args.per_level, seed=args.seed, ednn=args.ednn,
                            labels_on=args.labels_on, ednn_configs=args.ednn_configs, epochs=args.epochs,
                            info={"model": args.model, "q": q}, log=log)
    if args.json:
        print_json(out)
        return 0
    for k in ("model", "ednn"):
        if k in out:
            print(f"{k:6s} RMSE {out[k]['rmse']:.4f} J over {out[k]['configs']} configurations "
                  f"({out[k]['levels']} energy levels; per-level RMSE {out[k]['rmse_levels']:.4f})")
    return 0


def _curves(dcl, args, model, q: int, log, *, beta_obs: float, seed_c: int) -> int:
    L = model.L
    if args.energy == "ednn":
        if not args.ednn:
            raise ValueError("--energy ednn needs --ednn PATH (written by dcl energy --ednn PATH)")
        from ..nn.ednn import EDNNEnergy, load_ednn
        net, _ = load_ednn(args.ednn, q=q)
        provider = EDNNEnergy(net)
        Lc = args.L or L
        net.check_size(Lc)
    else:
        if args.ednn:
            raise ValueError("--ednn applies to --energy ednn")
        from ..nn.ednn import ModelEnergy
        provider = ModelEnergy(model, beta_obs)
        Lc = L
        if args.L not in (None, L):
            raise ValueError(f"the model's energy is for L={L} (autoregressive models are size-specific), "
                             f"got --L {args.L}")
        if args.mode == "parallel":
            raise ValueError("--energy model is global: use --mode sequential")
    theory = dcl.make_theory(args.model, beta_obs, q=q, L=Lc, couplings_seed=seed_c)
    rows = dcl.temperature_curves(theory, provider, Lc, _betas(args.betas), mode=args.mode, chains=args.chains,
                                  therm=args.therm, sweeps=args.sweeps, seed=args.seed, backend=args.backend)
    if args.json:
        print_json({"L": Lc, "energy": args.energy, "mode": args.mode, "rows": rows})
        return 0
    print(f"{'beta':>7s} {'U learned':>16s} {'U true':>16s} {'|m| learned':>16s} {'|m| true':>16s}")
    for r in rows:
        cells = [format_estimate(r[k][o]) for o in ("energy", "m_abs") for k in ("learned", "true")]
        print(f"{r['beta']:7.4f} " + " ".join(f"{c:>16s}" for c in cells))
    return 0


def _thermo(dcl, args, model, q: int, log, *, beta_obs: float, seed_c: int) -> int:
    L = model.L
    beta = beta_obs if args.beta is None else args.beta
    theory = dcl.make_theory(args.model, beta, q=q, L=L, couplings_seed=seed_c)
    energy = None
    if args.ednn:
        from ..nn.ednn import EDNNEnergy, load_ednn
        net, _ = load_ednn(args.ednn, q=q)
        energy = EDNNEnergy(net)
        energy.set_constant("random" if args.ground_state is None else args.ground_state, L, seed=args.seed)
    elif args.ground_state is not None:
        raise ValueError("--ground-state applies to --ednn")
    out = dcl.thermodynamics(model, theory, samples=args.samples, seed=args.seed, energy=energy,
                             chain_sweeps=args.chain_sweeps)
    if args.json:
        print_json(out)
        return 0
    print(f"L = {L}, beta = {beta}, {args.samples} samples, ESS {out['ess']:.1f}")
    print(f"{'per site':>16s} {'paper (Eqs. 10-11)':>20s} {'importance':>20s} {'exact':>12s}")
    for name in ("entropy", "free_energy", "internal_energy"):
        cells = [format_estimate(out[name][k]) for k in ("paper", "importance")]
        ex = "" if out["exact"] is None else f"{out['exact'][name]:.6f}"
        print(f"{name:>16s} {cells[0]:>20s} {cells[1]:>20s} {ex:>12s}")
    if "independence" in out:
        ind = out["independence"]
        print(f"independence Metropolis with the model as proposal ({ind['chains']} chains x "
              f"{ind['steps']} steps): U = {format_estimate(ind['internal_energy'])}, "
              f"|m| = {format_estimate(ind['m_abs'])}, acceptance {ind['acceptance']['value']:.3f}")
    return 0


def _betas(spec: str) -> list[float]:
    """--betas A:B:N (N points from A to B) or a comma-separated list."""
    try:
        if ":" in spec:
            a, b, n = spec.split(":")
            n = int(n)
            if n < 1:
                raise ValueError
            return [float(a) + (float(b) - float(a)) * i / max(n - 1, 1) for i in range(n)]
        return [float(v) for v in spec.split(",")]
    except ValueError as e:
        raise ValueError(f"--betas must be A:B:N or a comma-separated list, got --betas {spec!r}") from e
