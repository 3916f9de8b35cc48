"""``portable-lattice resume``: continue a stored run from its last commit."""
from __future__ import annotations

import argparse
import sys

from ..backends import BACKENDS
from ._common import exits_2
from .simulate import _report_run


def add_parser(sub) -> None:
    res = sub.add_parser("resume", help="continue a stored run from its last commit, appending to the same store")
    res.add_argument("dir", help="ensemble directory")
    res.add_argument("--sweeps", type=int, help="total number of measurements (default: the stored card's)")
    res.add_argument("--save-every", type=int)
    res.add_argument("--checkpoint-every", type=int)
    res.add_argument("--card", help="a run card that must agree on every physics key (run length may differ)")
    res.add_argument("--backend", choices=sorted(BACKENDS), help="continue on another backend "
                                                                "(needs --allow-backend-change)")
    res.add_argument("--device", help="continue on another device (needs --allow-backend-change)")
    res.add_argument("--allow-backend-change", action="store_true",
                     help="continue on another backend or device: statistically equal, not bit-identical")
    res.add_argument("--json", action="store_true")
    res.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)


def main(args, ap) -> int:
    from ..runs.cards import read_card
    from ..runs.production import StopRequested, resume
    from ..runs.storage import StoreError
    prog = "portable-lattice resume"
    try:
        with exits_2(prog, ap, StoreError):
            card = read_card(args.card) if args.card else None
            res = resume(args.dir, sweeps=args.sweeps, save_every=args.save_every,
                         checkpoint_every=args.checkpoint_every, backend=args.backend, device=args.device,
                         allow_backend_change=args.allow_backend_change, card=card,
                         progress=False if args.json and args.progress is None else args.progress)
    except StopRequested as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return e.status
    return _report_run(res, res.meta["family"], args)
