"""``portable-lattice upscale``: inverse RG, critical 2D Ising configurations from an upscaling kernel."""
from __future__ import annotations

import sys

from .. import __version__
from ._common import _run_flags, exits_2, print_json


def add_parser(sub) -> None:
    up = sub.add_parser("upscale", help="inverse RG: generate critical 2D Ising configurations with a D4-symmetric "
                                        "upscaling kernel and test them by finite-size scaling")
    up.add_argument("--k", type=int, default=3, help="kernel size, odd >= 3 (default 3)")
    src = up.add_argument_group("the model: exactly one of --weights, --net, --train-configs")
    src.add_argument("--weights", help="the kernel's (k+1)(k+3)/8 free parameters, comma separated, in the order "
                                       "(1,1), (1,0), (0,0), then shell by shell (see docs)")
    src.add_argument("--net", metavar="PATH", help="a model saved with --save-net (JSON: k, weights, provenance)")
    src.add_argument("--train-configs", type=int, help="train on this many Swendsen-Wang configurations at K_c "
                                                       "(exact L-BFGS fit of Eq. 12/13)")
    src.add_argument("--train-L", type=int, default=None, help="training lattice size L_t (default 32)")
    src.add_argument("--weighted", action="store_true", help="train with the majority rule's weights D(mu|sigma) "
                                                             "(Eq. 13); default: uniform weights (Eq. 12)")
    src.add_argument("--save-net", metavar="PATH", help="save the model (JSON) for --net")
    up.add_argument("--convention", default="paper", choices=["paper", "code"],
                    help="paper: Eq. 9 on +-1 spins; code: the authors' 0/1 spins with a tied bias (4x the paper's)")
    up.add_argument("--levels", type=int, default=7, help="upscaling steps (default 7: L0 2^7)")
    up.add_argument("--L0", type=int, default=1, help="start from random L0 x L0 spins, L0 a power of two (default 1)")
    up.add_argument("--input", help="start from stored configurations instead (.npy/.npz of +-1, or an ensemble dir)")
    up.add_argument("--configs", type=int, default=1024, help="configurations generated (default 1024)")
    up.add_argument("--batch", type=int, default=256, help="configurations per batch (default 256)")
    up.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                    help="of the field and the draws; float32 is about twice as fast (default float64)")
    _run_flags(up)
    up.add_argument("--json", action="store_true")


def main(args, ap) -> int:
    from ..runs.upscaling import generate_and_analyse
    from ..runs.storage import check_output
    with exits_2("portable-lattice upscale", ap):
        if args.save_net is not None:
            check_output(args.save_net, "--save-net")  # before the training, not after it
        weights, model_info = _model(args)
        start = None
        if args.input:
            if args.L0 != 1:
                raise ValueError("--L0 is set by the stored configurations; do not give it with --input")
            from ..runs.storage import load_configurations
            start = load_configurations(args.input)
        out = generate_and_analyse(weights, args.k, levels=args.levels, configs=args.configs, L0=args.L0,
                                   start=start, convention=args.convention, backend=args.backend,
                                   device=args.device, seed=args.seed, batch=args.batch, dtype=args.dtype)
    paper = [w / 4.0 for w in weights] if args.convention == "code" else weights
    if args.json:
        _print_json(args, out, paper, model_info)
    else:
        _print_table(args, out, paper)
    return 0


def _model(args) -> tuple[list, dict]:
    """The kernel's weights (in --convention) and its provenance, from exactly one of the three sources;
    saved with --save-net (always in the paper's convention)."""
    from ..runs.upscaling import load_kernel_model, save_kernel_model
    given = [f for f, v in (("--weights", args.weights), ("--net", args.net), ("--train-configs", args.train_configs))
             if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of --weights, --net, --train-configs (got {', '.join(given) or 'none'})")
    if args.train_configs is None and (args.weighted or args.train_L is not None):
        raise ValueError(f"{'--weighted' if args.weighted else '--train-L'} applies to training: "
                         f"give --train-configs N")
    if args.net is not None and args.convention != "paper":
        raise ValueError("--convention applies to --weights (a saved net is in the paper's convention)")
    model_info = {}
    if args.weights is not None:
        try:
            weights = [float(w) for w in args.weights.split(",")]
        except ValueError as e:
            raise ValueError(f"--weights must be comma-separated numbers, got --weights {args.weights!r}") from e
    elif args.net is not None:
        weights, model_info = load_kernel_model(args.net, args.k)
    else:
        from ..nn.upscaler import train_upscaler
        model_info = train_upscaler(args.k, 32 if args.train_L is None else args.train_L, args.train_configs,
                                    weighted=args.weighted, seed=args.seed, backend=args.backend,
                                    log=None if args.json else (lambda m: print(m, file=sys.stderr)))
        weights = model_info["weights"]
    if args.save_net:
        save_kernel_model(args.save_net, args.k, weights if args.convention == "paper" else [w / 4 for w in weights],
                          model_info)
    return weights, model_info


def _print_json(args, out: dict, paper: list, model_info: dict) -> None:
    from ..runs.upscaling import REPORTED
    model = {"k": args.k, "weights": paper, "convention": "paper"}
    if "loss" in model_info:
        model.update(weighted=model_info.get("weighted"), loss=model_info["loss"], data=model_info.get("data"))
    print_json({"version": __version__, "model": model,
                "L0": out["L0"], "levels": args.levels, "configs": args.configs, "backend": out["backend"],
                "dtype": args.dtype,
                "sizes": {str(L): {name: obs[name].as_dict() for name in REPORTED}
                          for L, obs in out["sizes"].items()},
                "exponents": {kind: {pair: e.as_dict() for pair, e in pairs.items()}
                              for kind, pairs in out["exponents"].items()},
                "timing": out["timing"]})


def _print_table(args, out: dict, paper: list) -> None:
    from ..runs.upscaling import REPORTED
    print(f"upscaled 2D Ising (Eq. 9 of [IRG]): k={args.k}, weights {paper} (paper convention), from L0={out['L0']}, "
          f"{args.configs} configurations, {out['backend']}\n")
    print(f"{'L':>5s} " + " ".join(f"{name:>16s}" for name in REPORTED))
    for L, obs in out["sizes"].items():
        print(f"{L:5d} " + " ".join(f"{str(obs[name]):>16s}" for name in REPORTED))
    print(f"\n{'pair':>8s} {'gamma/nu (chi)':>16s} {'1/nu (c_me)':>16s}   exact 1.75 and 1")
    for pair in out["exponents"]["gamma_nu"]:
        print(f"{pair:>8s} {str(out['exponents']['gamma_nu'][pair]):>16s} "
              f"{str(out['exponents']['one_nu'][pair]):>16s}")
    print(f"\n{out['timing']['site_samples_per_second']:.3g} site samples/s")
