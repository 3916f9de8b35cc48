"""``portable-lattice``: the command line.

    portable-lattice simulate --model phi4 --beta 0.5 --g 0.1 --L 16 --algorithm checkerboard
    portable-lattice simulate --kappa 0.21 --lam 0.022 --L 32 --algorithm hmc --backend torch --json
    portable-lattice simulate --model ising --beta 0.4406868 --L 64 --algorithm swendsen-wang
    portable-lattice mcrg --L 32 --configs 10000
    portable-lattice pem --surrogate oracle --L 16
    portable-lattice run CARD.toml --out DIR        (then: resume DIR, analyse DIR, export DIR, plot DIR)
    portable-lattice scan CARD.toml --set kappa=0.20:0.28:9 --scheduler local:2 --out DIR

Every flag means one thing. A flag that does not apply to the chosen model or
algorithm is an error (exit status 2, naming the flag), never silently
ignored. Exit status 3: the field became non-finite (what was measured before
is still reported).

One module per sub-command, each with ``add_parser(sub)`` and ``main(args, ap)``;
what they share is in ``_common``.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from .. import __version__
from . import analyse, dcl, diffusion, export, mcrg, pem, plot, resume, run, scan, simulate, upscale, verify
from ._common import _report_warnings, print_json
from .simulate import REPORTED, SAMPLER, card_from_args, print_table, result_json

__all__ = ["main", "build_parser", "card_from_args", "print_json", "result_json", "print_table", "REPORTED",
           "SAMPLER"]

#: the sub-commands, in the order --help lists them
COMMANDS = {"simulate": simulate, "run": run, "resume": resume, "analyse": analyse, "export": export,
            "plot": plot, "scan": scan, "upscale": upscale, "pem": pem, "mcrg": mcrg, "dcl": dcl,
            "diffusion": diffusion, "verify": verify}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="portable-lattice",
                                 description="Lattice Monte Carlo on NumPy, torch or CuPy.")
    ap.add_argument("--version", action="version", version=f"portable_lattice {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        command.add_parser(sub)
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    handlers = {name: command.main for name, command in COMMANDS.items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status = handlers[args.command](args, ap)
            sys.stdout.flush()
        except BrokenPipeError:
            # the reader (e.g. `| head`) went away: nothing more to say, and no traceback
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
        except KeyboardInterrupt:
            # a second Ctrl-C (the first stops a run on disk at its next commit): stop now, no traceback
            out = getattr(args, "out", None) if args.command in ("simulate", "run") else getattr(args, "dir", None)
            if args.command in ("simulate", "run", "resume") and out:
                where = f"; {out!r} keeps its last commit (portable-lattice resume {out} continues it)"
            else:
                where = ": nothing was written" if args.command == "simulate" else ""
            sys.stderr.write(f"portable-lattice {args.command}: interrupted{where}\n")
            return 130
    _report_warnings(caught)
    return status
