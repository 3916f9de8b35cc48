"""``portable-lattice scan``: a run card over a grid of parameters, one ensemble per point (Dask)."""
from __future__ import annotations

import argparse
import sys

from ._common import exits_2, print_json


def add_parser(sub) -> None:
    sc = sub.add_parser("scan", help="run a card over a grid of parameters, one ensemble per point (Dask)")
    sc.add_argument("card", help="run card of the base point")
    sc.add_argument("--set", action="append", default=[], metavar="KEY=VALUES",
                    help="KEY=a:b:n (n points from a to b) or KEY=v1,v2,...; repeat for a product grid")
    sc.add_argument("--scheduler", default="serial",
                    help="serial, local:N (a LocalCluster of N workers) or tcp://HOST:PORT (default serial)")
    sc.add_argument("--out", required=True, help="folder holding one ensemble directory per point")
    sc.add_argument("--threads", type=int, help="threads per task (default: the cores divided among the workers)")
    sc.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="one line per finished point on stderr (default: on a terminal)")
    sc.add_argument("--json", action="store_true")


def main(args, ap) -> int:
    from ..runs.cards import read_card
    from ..runs.scan import parse_sets, print_scan, scan
    with exits_2("portable-lattice scan", ap, OSError):
        card = read_card(args.card)
        grid = parse_sets(args.set)
        if args.threads is not None and (isinstance(args.threads, bool) or args.threads < 1):
            raise ValueError(f"--threads must be a positive integer, got --threads {args.threads}")
        progress = sys.stderr.isatty() and not args.json if args.progress is None else args.progress
        out = scan(card, grid, out=args.out, scheduler=args.scheduler, threads=args.threads, progress=progress)
    if args.json:
        print_json(out)
    else:
        print_scan(out)
    return 0 if out.get("failed", 0) == 0 else 1
