"""``portable-lattice verify``: check a stored ensemble, every committed piece against its manifest."""
from __future__ import annotations

import json

from ._common import exits_2


def add_parser(sub) -> None:
    ver = sub.add_parser("verify", help="check that a stored ensemble is complete and unchanged (exit 0), or name "
                                        "what is missing or damaged (exit 2)")
    ver.add_argument("dir", help="ensemble directory")
    ver.add_argument("--json", action="store_true", help="print what was checked as one JSON object")


def main(args, ap) -> int:
    from ..runs.storage import EnsembleStore, StoreError
    with exits_2("portable-lattice verify", ap, StoreError):
        store = EnsembleStore.open(args.dir, "r")  # a reader: no lock, a run in progress shows its commits
        report = dict(store.verify(), dir=args.dir, format=store.format)
    if args.json:
        print(json.dumps(report))
    else:
        what = "every chunk checked against the commit record's manifest" if report["manifest"] else \
            "no manifest (a store written before manifests): each chunk checked by its own checksum only"
        print(f"{args.dir}: OK, commit {report['commit']}: {report['n_meas']} measurements of {report['streams']} "
              f"streams, {report['n_saved']} configurations, {report['bytes']} bytes read ({report['format']}; {what})")
    return 0
