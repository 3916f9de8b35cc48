"""``portable-lattice export``: a stored run's streams for other analysis tools."""
from __future__ import annotations

import sys

from ._common import exits_2


def add_parser(sub) -> None:
    ex = sub.add_parser("export", help="export a stored run's streams for other analysis tools")
    ex.add_argument("dir", help="ensemble directory")
    ex.add_argument("--pyerrors", required=True, metavar="OUT.json.gz", help="pyerrors' json.gz format")


def main(args, ap) -> int:
    from ..runs.export import export_pyerrors
    from ..runs.storage import check_output
    with exits_2("portable-lattice export", ap):
        check_output(args.pyerrors, "--pyerrors")  # before the store is read: never onto its own files
        path = export_pyerrors(args.dir, args.pyerrors)
    print(f"wrote {path}", file=sys.stderr)
    return 0
