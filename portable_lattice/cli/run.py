"""``portable-lattice run``: run a TOML run card into an ensemble directory."""
from __future__ import annotations

import argparse

from ..runs.spec import RunSpec
from ._common import exits_2
from .simulate import _run_and_report


def add_parser(sub) -> None:
    card = sub.add_parser("run", help="run a TOML run card into an ensemble directory")
    card.add_argument("card", help="run card: keys are simulate's long flag names with _ for - "
                                   "(model, beta, g, L, algorithm, chains, sweeps, save_every, ...)")
    card.add_argument("--out", help="ensemble directory (default: the card's name without .toml, plus .ensemble)")
    card.add_argument("--json", action="store_true")
    card.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)


def main(args, ap) -> int:
    from ..runs.cards import read_card
    prog = "portable-lattice run"
    out = args.out or (args.card[:-5] if args.card.endswith(".toml") else args.card) + ".ensemble"
    with exits_2(prog, ap):
        spec = RunSpec.from_card(read_card(args.card)).replace(out=out)
    return _run_and_report(ap, spec, args, prog)
