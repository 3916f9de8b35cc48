"""``portable-lattice plot``: histories, autocorrelations and histograms of a stored run."""
from __future__ import annotations

from ._common import exits_2, needs


def add_parser(sub) -> None:
    pl = sub.add_parser("plot", help="Monte Carlo histories, autocorrelations and histograms of a stored run "
                                     "(needs matplotlib)")
    pl.add_argument("dir", help="ensemble directory")
    pl.add_argument("--out", help="folder for the PNG files (default: DIR/plots)")


def main(args, ap) -> int:
    prog = "portable-lattice plot"
    with needs(prog, ap, "matplotlib", "plot"):
        from ..runs.plots import plot_store
    from ..runs.storage import check_output
    with exits_2(prog, ap):
        if args.out is not None:
            check_output(args.out, "--out", "dir")
        paths = plot_store(args.dir, args.out)
    for path in paths:
        print(path)
    return 0
