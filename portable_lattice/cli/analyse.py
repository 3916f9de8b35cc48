"""``portable-lattice analyse``: redo the analysis of a stored run from its measurement streams."""
from __future__ import annotations

from ._common import exits_2, print_json


def add_parser(sub) -> None:
    an = sub.add_parser("analyse", help="redo the analysis of a stored run from its measurement streams")
    an.add_argument("dir", help="ensemble directory")
    an.add_argument("--discard", type=int, default=0, help="measurements dropped from the start (default 0)")
    an.add_argument("--json", action="store_true")


def main(args, ap) -> int:
    from ..runs.analysis import analyse_store, print_analysis
    with exits_2("portable-lattice analyse", ap):
        out = analyse_store(args.dir, discard=args.discard)
    if args.json:
        print_json(out)
    else:
        print_analysis(out)
    return 0
