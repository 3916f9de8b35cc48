"""Export of a stored run's measurement streams to pyerrors' json.gz format.

``portable-lattice export DIR --pyerrors OUT.json.gz`` calls :func:`export_pyerrors`.
The file follows the format specification in pyerrors' documentation ("json.gz format
specification"): a gzip-compressed JSON object whose ``obsdata`` array holds one entry
per primary stream, each an ``Obs`` (``layout`` "1") with

* ``value``: the mean over every chain and measurement;
* ``tag``: the stream's name (``m``, ``m_abs``, ``action``, ``acceptance``, ...);
* ``data``: one ensemble, named after the store (its directory name), with one replica
  per chain, ``ENSEMBLE|r000``, ``ENSEMBLE|r001``, ...; each replica's ``deltas`` are
  ``[configuration number, value - mean]`` with the measurement number (1, 2, ...) as
  the configuration number.

Derived quantities (susceptibility, Binder cumulant, ...) are not exported: pyerrors
builds them from the primary Obs with its own error propagation. The writer uses the
standard library only; pyerrors reads the file with ``pyerrors.input.json.load_json``.
"""
from __future__ import annotations

import datetime
import getpass
import gzip
import json
import math
import os
import socket
from typing import Any

from .storage import EnsembleStore

__all__ = ["export_pyerrors", "ensemble_name", "FORMAT_VERSION"]

#: the version of pyerrors' json.gz format written
FORMAT_VERSION = "1.1"


def ensemble_name(path: str) -> str:
    """The ensemble name of a store in exported files: its directory name ("|" would end
    the name in pyerrors' replica names, so it becomes "_")."""
    name = os.path.basename(os.path.normpath(os.path.abspath(path)))
    return name.replace("|", "_") or "ensemble"


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return ""


def _obs(path: str, name: str, tag: str, s: Any, discard: int) -> dict:
    """One pyerrors Obs of the stream ``tag`` (measurements x chains): one replica per chain,
    deltas from the mean over all chains, configuration numbers counting from the first measurement."""
    s = s[discard:].astype("float64")
    mean = float(s.mean())
    if not math.isfinite(mean):
        raise ValueError(f"{path!r}: the stream {tag!r} holds non-finite values; it cannot be exported")
    replicas = [{"name": f"{name}|r{c:03d}",
                 "deltas": [[discard + i + 1, d] for i, d in enumerate((s[:, c] - mean).tolist())]}
                for c in range(s.shape[1])]
    return {"type": "Obs", "layout": "1", "value": [mean], "tag": [tag], "data": [{"id": name, "replica": replicas}]}


def _write_gzip(out: str, data: bytes) -> None:
    """``data`` gzip-compressed (no time stamp: the same export gives the same bytes) to ``out``,
    through a temporary file moved into place."""
    data = gzip.compress(data, mtime=0)
    tmp = f"{out}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, out)
    except OSError as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise ValueError(f"cannot write --pyerrors {out!r}: {e.strerror or e}") from e


def export_pyerrors(path: str, out: str, *, ensemble: str | None = None, discard: int = 0) -> str:
    """Write the committed streams of the ensemble at ``path`` to ``out`` in pyerrors' json.gz format.

    Parameters
    ----------
    path : str
        An ensemble directory.
    out : str
        The file to write (``.json.gz`` is the usual suffix; the file is gzip-compressed
        whatever its name). Written to a temporary file first and moved into place.
    ensemble : str, optional
        The ensemble name; default :func:`ensemble_name` of ``path``.
    discard : int
        Measurements dropped from the start of every chain (configuration numbers
        keep counting from the first measurement).

    Returns
    -------
    str
        The path written.
    """
    from .analysis import check_discard
    store = EnsembleStore.open(path, "r")
    if store.n_meas == 0:
        raise ValueError(f"{path!r} holds no committed measurements yet: nothing to export")
    discard = check_discard(discard, store.n_meas)
    name = ensemble or ensemble_name(path)
    if "|" in name:
        raise ValueError(f"the ensemble name {name!r} must not contain '|' (it separates the replica name)")
    series = store.series()
    card = store.card
    obsdata = [_obs(path, name, tag, s, discard) for tag, s in series.items()]
    from .. import __version__
    doc = {"program": f"portable_lattice {__version__}", "version": FORMAT_VERSION, "who": _who(),
           "date": datetime.datetime.now(datetime.timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S %z"),
           "host": socket.gethostname(),
           "description": {"ensemble": name, "store": os.path.abspath(path), "card": card,
                           "physics_hash": store.physics_hash, "n_meas": store.n_meas, "discard": discard,
                           "observables": list(series),
                           "note": "one Obs per primary stream (tag = name), one replica per chain, "
                                   "configuration number = measurement number"},
           "obsdata": obsdata}
    _write_gzip(out, json.dumps(doc, allow_nan=False).encode("utf-8"))
    return out
