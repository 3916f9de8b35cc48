"""What the sub-commands share: flag names, common flags, JSON output, bad input, warnings."""
from __future__ import annotations

import contextlib
import json
import sys

from .._json import json_ready
from ..backends import BACKENDS, BackendUnavailableError
from ..runs.spec import RunSpec
from ..statistics import UnreliableErrorWarning, format_value

#: what a sub-command reports as bad input (exit status 2, one line on stderr) instead of a traceback
BAD_INPUT = (ValueError, TypeError, BackendUnavailableError)


def _flag(dest: str) -> str:
    """The flag an argparse destination comes from (the one-letter physics names keep their case)."""
    return "--" + dest.replace("_", "-") if dest not in ("L", "J", "h", "q", "g") else "--" + dest


def _given(args, dests) -> list[str]:
    """The destinations among ``dests`` that the command line set."""
    return [d for d in dests if getattr(args, d, None) is not None]


def _run_flags(group) -> None:
    """--backend, --device, --seed with the defaults of the commands that are not run cards."""
    group.add_argument("--backend", default="numpy", choices=sorted(BACKENDS))
    group.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the backend's own)")
    group.add_argument("--seed", type=int, default=0)


def _store_flags(parser) -> None:
    st = parser.add_argument_group("on disk (a production run: resumable, analysable later)")
    st.add_argument("--out", help="write the ensemble (measurements, configurations, checkpoints) to this directory")
    st.add_argument("--save-every", type=int, help="with --out: save a configuration every N measurements "
                                                   f"(default {RunSpec.save_every}: none)")
    st.add_argument("--checkpoint-every", type=int, help="with --out: commit and checkpoint every N measurements "
                                                         f"(default {RunSpec.checkpoint_every})")
    st.add_argument("--format", choices=["zarr", "hdf5"], help="with --out: the store's format (default "
                                                               f"{RunSpec.format}; hdf5 needs the 'hdf5' extra)")


def print_json(obj) -> None:
    """Exactly one JSON object on stdout, newline-terminated (what --json promises)."""
    json.dump(json_ready(obj), sys.stdout, allow_nan=False)
    sys.stdout.write("\n")


def format_estimate(d: dict) -> str:
    """A JSON-ready {value, error} as text; a null error (no honest one) prints as NaN."""
    return format_value(d["value"], d["error"] or float("nan"))


@contextlib.contextmanager
def exits_2(prog: str, ap, *extra):
    """Bad input raised in the block ends the command: ``PROG: error: MESSAGE`` on stderr, exit status 2.

    ``extra`` adds exception types that count as bad input for this command (e.g. a store's own error).
    """
    try:
        yield
    except (*BAD_INPUT, *extra) as e:
        ap.exit(2, f"{prog}: error: {e}\n")


@contextlib.contextmanager
def needs(prog: str, ap, what: str, extra: str):
    """An optional library imported in the block: missing, the command ends with exit status 2,
    naming the extra to install."""
    try:
        yield
    except ImportError as e:
        ap.exit(2, f"{prog}: error: needs {what}: pip install 'portable_lattice[{extra}]' ({e})\n")


def _report_warnings(caught) -> None:
    """Each distinct warning once, as one line on stderr (no library source lines)."""
    unreliable = [w for w in caught if issubclass(w.category, UnreliableErrorWarning)]
    seen = set()
    for w in caught:
        if issubclass(w.category, UnreliableErrorWarning) or str(w.message) in seen:
            continue
        seen.add(str(w.message))
        sys.stderr.write(f"portable-lattice: warning: {w.message}\n")
    if unreliable:
        sys.stderr.write(f"portable-lattice: warning: {len(unreliable)} estimate(s) have no honest error "
                         f"(e.g. {unreliable[0].message}); run longer (--sweeps) or measure less often\n")
