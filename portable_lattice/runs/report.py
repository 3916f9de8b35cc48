"""Reports of runs as text: tables printed from the JSON-ready summaries the runs return.

:func:`print_scan` prints a parameter scan's summary (:func:`runs.scan.scan`): one row per
grid point with its status and main observables, then the counts, errors and warnings.
:func:`main_observables` picks the observables a report shows, family by family, so that
every report of the same runs shows the same columns.
"""
from __future__ import annotations

import os
import sys

from ..statistics import format_value
from ..theories.base import FAMILIES

__all__ = ["print_scan", "main_observables", "SCAN_SUMMARY"]

#: the file a scan writes its summary to, in its output folder (the report's last line names it)
SCAN_SUMMARY = "scan.json"


def main_observables(points: list[dict]) -> list[str]:
    """The observables to show for these points (summaries with "family" and "observables"):
    each family's summary observables that some point has, in the families' order."""
    have = set().union(*(set(p.get("observables", {})) for p in points)) if points else set()
    names = [n for fam in FAMILIES.values() if any(p.get("family") == fam.name for p in points)
             for n in fam.summary if n in have]
    return list(dict.fromkeys(names))


def print_scan(summary: dict, file=None) -> None:
    """The scan as a table: one row per point, its status and main observables."""
    file = sys.stdout if file is None else file
    pts = summary["points"]
    keys = list(summary.get("grid") or (pts[0]["params"] if pts else {}))
    names = main_observables(pts)
    head = [*keys, "status", *names]
    rows = []
    for p in pts:
        obs = p.get("observables", {})
        cells = [str(p["params"].get(k)) for k in keys] + [p["status"]]
        for n in names:
            o = obs.get(n)
            cells.append("-" if o is None or o["value"] is None else
                         format_value(o["value"], o["error"] if o["error"] is not None else float("nan")))
        rows.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)), file=file)
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)), file=file)
    counts = {s: sum(p["status"] == s for p in pts) for s in ("done", "resumed", "skipped", "failed")}
    print(f"\n{len(pts)} point(s) on {summary['scheduler']} in {summary['seconds']:.1f} s: "
          + ", ".join(f"{n} {s}" for s, n in counts.items() if n), file=file)
    for p in pts:
        if p.get("error"):
            print(f"  {p['dir']}: {p['error']}", file=file)
    warned = [p for p in pts if p.get("warnings")]
    if warned:
        print(f"warnings at {len(warned)} point(s), e.g. {warned[0]['dir']}: {warned[0]['warnings'][0]}", file=file)
    out = summary.get("out")
    if out:
        print(f"summary: {os.path.join(out, SCAN_SUMMARY)}" + (f"; plot: {summary['plot']}" if summary.get("plot") else ""),
              file=file)
