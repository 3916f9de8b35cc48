"""``portable-lattice mcrg``: Monte Carlo RG of the 2D Ising model, exponents from the T matrix."""
from __future__ import annotations

import argparse

from .. import __version__
from ._common import _flag, _given, _run_flags, exits_2, print_json

#: the flags that generate an ensemble (none of them applies to --input)
_GENERATE = ("L", "beta", "algorithm", "configs", "chains", "therm", "every", "progress")


def add_parser(sub) -> None:
    mc = sub.add_parser("mcrg", help="Monte Carlo RG of the 2D Ising model: exponents from the T matrix")
    gen = mc.add_argument_group("generating an ensemble (not with --input)")
    gen.add_argument("--L", type=int, help="lattice extent (default 32)")
    gen.add_argument("--beta", type=float, help="default: K_c = ln(1 + sqrt 2)/2")
    gen.add_argument("--algorithm", choices=["swendsen-wang", "wolff", "checkerboard", "heatbath"],
                     help="default swendsen-wang")
    gen.add_argument("--configs", type=int, help="configurations analysed (default 10000)")
    gen.add_argument("--chains", type=int, help="default 64")
    gen.add_argument("--therm", type=int, help="default 200")
    gen.add_argument("--every", type=int, help="default 1")
    gen.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    mc.add_argument("--levels", type=int, default=2, help="blocking steps (default 2)")
    mc.add_argument("--input", default=None, help="analyse stored configurations, (configs, L, L) of +-1 (or "
                                                  "booleans), instead of generating an ensemble: FILE.npy, "
                                                  "FILE.npz (one array) or FILE.npz:KEY")
    mc.add_argument("--pair", type=int, default=None, help="blocking step n -> n+1 reported, 0..levels-1 "
                                                          "(default: the last)")
    mc.add_argument("--basis", default="symmetric", choices=["symmetric", "oriented"],
                    help="couplings summed over rotations/reflections (default), or one orientation per shape "
                         "as in the inverse-RG authors' code")
    _run_flags(mc)
    mc.add_argument("--json", action="store_true")


def main(args, ap) -> int:
    with exits_2("portable-lattice mcrg", ap):
        out = _stored(args) if args.input else _generated(args)
    if args.json:
        print_json(dict(out, exponents=_estimates(out["exponents"]),
                        steps={k: _estimates(v) for k, v in out["steps"].items()}, version=__version__))
        return 0
    beta = "stored" if out["beta"] is None else f"{out['beta']:.6f}"
    print(f"MCRG: 2D Ising L={out['L']} beta={beta} | {out['algorithm']} on {out['backend']} | "
          f"{out['configs']} configurations, {out['seconds']:.1f} s | 36 couplings (11 odd, 25 even), "
          f"{out['basis']} basis\n")
    print(f"{'step':8s} {'y_h':>14s} {'y_t':>12s} {'redundant':>12s} {'omega':>12s}")
    for step, ex in out["steps"].items():
        print(f"{step:8s} " + " ".join(f"{str(ex[k]):>12s}" for k in ("y_h", "y_t", "redundant", "omega")))
    print("\nexact: y_h = 1.875, y_t = 1, omega = -1; eigenvalues (step "
          f"{out['pair'][0]}->{out['pair'][1]}): odd {[round(e, 4) for e in out['eigenvalues']['odd'][:3]]}, "
          f"even {[round(e, 4) for e in out['eigenvalues']['even'][:4]]}")
    return 0


def _stored(args) -> dict:
    """The analysis of the configurations in --input."""
    from ..backends import get_backend
    from ..runs.mcrg import analyse_ensemble
    from ..runs.storage import load_configurations
    stray = _given(args, _GENERATE)
    if stray:
        raise ValueError(f"{_flag(stray[0])} generates an ensemble and does not apply with --input")
    spins = load_configurations(args.input)
    be = get_backend(args.backend, args.device)
    return analyse_ensemble(be.from_numpy(spins), levels=args.levels, pair=args.pair, seed=args.seed,
                            basis=args.basis)


def _generated(args) -> dict:
    """A fresh ensemble, generated with the flags given, and its analysis."""
    from ..runs.mcrg import run_mcrg
    given = {k: getattr(args, k) for k in _GENERATE if getattr(args, k) is not None and k != "progress"}
    return run_mcrg(levels=args.levels, pair=args.pair, backend=args.backend, device=args.device, seed=args.seed,
                    basis=args.basis, progress=False if args.json and args.progress is None else args.progress,
                    **given)


def _estimates(d: dict) -> dict:
    """Estimates as {value, error} (print_json writes a non-finite one as null)."""
    return {k: {"value": e.value, "error": e.error} for k, e in d.items()}

