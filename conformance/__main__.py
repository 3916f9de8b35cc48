"""python -m portable_lattice.conformance [--quick] [--backends numpy,torch,...] [--json PATH]

Prints a table (case x backend: estimate +- error, reference, z, pass/fail)
and writes the full record as JSON. Exit status 1 if any check fails.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from portable_lattice.statistics import format_value
from portable_lattice.backends import available_backends

from .suite import run_suite


def parse_backends(spec: str | None) -> list[tuple[str, str | None]]:
    if not spec:
        return available_backends()
    out = []
    for item in spec.split(","):
        name, _, device = item.strip().partition(":")
        out.append((name, device or None))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m portable_lattice.conformance", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the CI subset (a few minutes on 2 cores)")
    ap.add_argument("--backends", default=os.environ.get("PL_BACKENDS"),
                    help="comma list, e.g. numpy,torch,array_api_strict,cupy,torch:cuda "
                         "(default: every backend available here)")
    ap.add_argument("--json", default="conformance-results.json", help="where to write the record")
    ap.add_argument("--workers", type=int, default=1, help="processes running the (case, backend) jobs (default 1)")
    args = ap.parse_args(argv)
    backends = parse_backends(args.backends)
    print(f"conformance ({'quick' if args.quick else 'full'}) on {', '.join(n if d in (None, 'cpu') else n + ':' + d for n, d in backends)}",
          flush=True)
    if args.workers < 1:
        ap.exit(2, f"{ap.prog}: error: --workers must be a positive integer, got --workers {args.workers}\n")
    report = run_suite(backends, quick=args.quick, log=lambda s: print(s, flush=True), workers=args.workers)
    print()
    print(f"{'case':40s} {'backend':30s} {'check':14s} {'estimate':>18s} {'reference':>12s} {'z':>7s}  result")
    for c in report["checks"]:
        est = format_value(c["estimate"], c["error"]) if c["error"] > 0 else f"{c['estimate']:.3g}"
        z = f"{c['z']:7.2f}" if c["z"] is not None else "      -"
        print(f"{c['case']:40s} {c['backend']:30s} {c['check']:14s} {est:>18s} {c['reference']:12.6g} {z}  "
              f"{'pass' if c['passed'] else 'FAIL'}{'  ' + c['detail'] if c['detail'] else ''}")
    n_fail = sum(not c["passed"] for c in report["checks"])
    print(f"\n{len(report['checks'])} checks ({report['n_z_tests']} z-tests, Holm family alpha = {report['alpha']:g}); "
          f"{len(report['checks']) - n_fail} passed, {n_fail} failed")
    print("time per backend: " + ", ".join(f"{k} {v:.0f}s" for k, v in report["timings"].items()))
    with open(args.json, "w") as fh:
        json.dump(report, fh, indent=1)
    print(f"wrote {args.json}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
