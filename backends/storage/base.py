"""What every ensemble store shares: the commit protocol, the checkpoints, the format registry.

An ensemble directory holds the data in a format of its own (a zarr group, HDF5 block files),
and beside it, the same for every format::

    checkpoint-N.npz     sampler state arrays and generator state at commit N
    commit.json          the commit record, written last and atomically
    writer.lock          the writer lock (:mod:`.lock`): one writer at a time

A commit is permanent once ``commit.json`` names it; rows written beyond the committed counts
(a crash between writing and committing) are never shown and are cut back when the store is
opened for writing. A format is a subclass of :class:`EnsembleStore` registered in
:data:`FORMATS`; it implements the few methods marked "a format's" below.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import tempfile
from typing import Any, ClassVar

import numpy as np

from .files import atomic_write, from_json_safe, to_json_safe
from .lock import LOCK, StoreLockedError, WriterLock

__all__ = ["EnsembleStore", "StoreError", "StoreLockedError", "check_output", "FORMATS", "STORE_FORMAT", "COMMIT",
           "open_ensemble", "remove_uncommitted", "detect_format"]

#: written into every store; a directory without it is not ours
STORE_FORMAT = "portable_lattice.ensemble/1"
COMMIT = "commit.json"
#: format name -> store class (each format module registers itself)
FORMATS: dict[str, type] = {}


#: fault injection for the fault suite (``tests/faults``): "STAGE:N" makes this process SIGKILL
#: itself at STAGE of commit N (see :meth:`EnsembleStore.commit`); unset in normal use
_FAULT_ENV = "PORTABLE_LATTICE_FAULT"
#: the points of a commit where the suite kills a writer, in order
FAULT_STAGES = ("written", "synced", "checkpoint", "recorded")


def _fault_point(stage: str, number: int) -> None:
    if os.environ.get(_FAULT_ENV) == f"{stage}:{number}":
        os.kill(os.getpid(), signal.SIGKILL)


class StoreError(ValueError):
    """A store that is not ours, is corrupted, or would be overwritten."""


def detect_format(path: str) -> str | None:
    """The format of the ensemble directory ``path`` (the name of the data it holds), or None."""
    for name, cls in FORMATS.items():
        if os.path.exists(os.path.join(path, cls.DATA)):
            return name
    return None


def _check_new(path: str, lock_ok: bool = False) -> None:
    """Refuse to create a store where anything is (``lock_ok``: but our own writer lock)."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise StoreError(f"{path!r} exists and is not a directory; choose another --out")
        if os.path.exists(os.path.join(path, COMMIT)) or detect_format(path) is not None:
            raise StoreError(f"{path!r} already holds an ensemble: continue it with "
                             f"`portable-lattice resume {path}`, or choose another --out")
        if [n for n in os.listdir(path) if not (lock_ok and n == LOCK)]:
            raise StoreError(f"{path!r} exists and is not empty; refusing to write an ensemble into it")


class EnsembleStore:
    """One ensemble (one parameter point) on disk, in one of :data:`FORMATS`.

    ``EnsembleStore.create(..., format=...)`` makes one, ``EnsembleStore.open(path)``
    recognises the format of an existing one.
    """

    #: the format's name and the file or folder holding its data (how it is recognised)
    NAME: ClassVar[str] = ""
    DATA: ClassVar[str] = ""
    #: other files or folders the format writes beside its data
    OWNED: ClassVar[tuple] = ()
    #: the writer lock while the store is open for writing (None for a reader)
    _lock: WriterLock | None = None

    def __init__(self, path: str, commit: dict):
        self.path, self.commit_record = path, commit

    def close(self) -> None:
        """Give back the writer lock (a store opened for reading holds none); the store's files
        stay as the last commit left them. Also on ``with`` exit and at the process's end."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- creation and opening ---
    @classmethod
    def create(cls, path: str, card: dict, physics_hash: str, versions: dict, config_shape: tuple,
               config_dtype: str, couplings: Any = None, format: str = "zarr") -> "EnsembleStore":
        """A new, empty store at ``path`` (refused if ``path`` holds anything)."""
        if format not in FORMATS:
            raise StoreError(f"format must be one of {sorted(FORMATS)}, got format={format!r}")
        impl = FORMATS[format]
        impl.available()
        _check_new(path)
        os.makedirs(path, exist_ok=True)
        lock = WriterLock(path).acquire()  # two runs started on one new --out: the second stops here
        try:
            _check_new(path, lock_ok=True)
            attrs = {"format": STORE_FORMAT, "card": card, "physics_hash": physics_hash, "versions": versions}
            store = impl._create(path, attrs, tuple(config_shape), config_dtype,
                                 None if couplings is None else np.asarray(couplings))
        except BaseException:
            lock.release()
            raise
        store._lock = lock
        return store

    @classmethod
    def open(cls, path: str, mode: str = "r") -> "EnsembleStore":
        """Open an ensemble of any format; ``mode="r+"`` cuts every array back to the committed counts."""
        if not os.path.isdir(path):
            raise StoreError(f"{path!r} is not a directory holding an ensemble")
        name = detect_format(path)
        if name is None:
            raise StoreError(f"{path!r} is not a portable_lattice ensemble (it holds none of "
                             f"{', '.join(c.DATA for c in FORMATS.values())})")
        impl = FORMATS[name]
        impl.available()
        # a writer takes the lock before anything is read for writing: a second writer must never
        # cut back the first one's uncommitted block or append beside it
        lock = WriterLock(path).acquire() if mode != "r" else None
        try:
            store = cls._open_locked(impl, path, mode)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        store._lock = lock
        return store

    @classmethod
    def _open_locked(cls, impl, path: str, mode: str) -> "EnsembleStore":
        store = impl._open(path, mode)
        if store._attrs().get("format") != STORE_FORMAT:
            raise StoreError(f"{path!r} is not a portable_lattice ensemble (format {store._attrs().get('format')!r})")
        try:
            with open(os.path.join(path, COMMIT)) as f:
                store.commit_record = json.load(f)
        except (OSError, ValueError) as e:
            raise StoreError(f"{path!r} has no readable commit record ({COMMIT}): nothing in it was committed (a run "
                             f"stopped before its first commit); delete the directory and start the run again") from e
        store._load_manifest(store.commit_record.get("manifest"))
        if mode != "r":
            for name in os.listdir(path):
                if name.startswith(("checkpoint-", COMMIT)) and ".tmp-" in name:
                    os.remove(os.path.join(path, name))
            store._cut_back()
        return store

    # --- a format's: creation, attributes, arrays ---
    @classmethod
    def available(cls) -> None:
        """Raise a StoreError naming the extra to install when the format's library is missing."""

    @classmethod
    def _create(cls, path, attrs, config_shape, config_dtype, couplings) -> "EnsembleStore":
        raise NotImplementedError

    @classmethod
    def _open(cls, path: str, mode: str) -> "EnsembleStore":
        raise NotImplementedError

    def _attrs(self) -> dict:
        raise NotImplementedError

    def set_card(self, card: dict) -> None:
        """Replace the stored card (a resume that changed the run length or the placement)."""
        raise NotImplementedError

    def _cut_back(self) -> None:
        """Drop everything written beyond the last commit."""
        raise NotImplementedError

    def series(self) -> dict:
        """name -> host array (n_meas, chains), the committed measurements."""
        raise NotImplementedError

    def fields(self) -> Any:
        """The committed saved configurations (n_saved, chains, L, ..., L)."""
        raise NotImplementedError

    def field_steps(self) -> Any:
        """The measurement number of each saved configuration (n_saved,)."""
        raise NotImplementedError

    def couplings(self) -> Any:
        """Quenched couplings (Edwards-Anderson), or None."""
        raise NotImplementedError

    def append(self, series: dict, fields: Any = None, field_steps: Any = None) -> None:
        """Append a block of measurements (name -> (n, chains)) and of saved configurations beyond
        the committed counts. Nothing is committed until :meth:`commit`."""
        raise NotImplementedError

    def _before_commit(self, number: int) -> None:
        """Make the appended block durable before commit ``number`` is recorded."""

    def _manifest(self) -> dict:
        """What the commit record lists of the committed data (a format's: per chunk or block,
        a checksum of what it holds), so that a missing, truncated or foreign piece is named when
        it is read; JSON."""
        return {}

    def _load_manifest(self, manifest: dict | None) -> None:
        """Take the manifest of the commit record just read (None: a store written before
        manifests, whose pieces are then only checked by their own checksums)."""

    @property
    def has_manifest(self) -> bool:
        return bool(self.commit_record.get("manifest"))

    def verify(self) -> dict:
        """Read every committed piece (streams, configurations, checkpoint), checking each against
        the manifest; a StoreError names the first that fails. Returns what was checked."""
        series = self.series()
        fields, steps = self.fields(), self.field_steps()
        self.checkpoint()
        if len(steps) != self.n_saved or any(v.shape[0] != self.n_meas for v in series.values()):
            raise StoreError(f"{self.path!r}: the committed counts ({self.n_meas} measurements, {self.n_saved} "
                             f"configurations) do not match the data read")
        return {"n_meas": self.n_meas, "n_saved": self.n_saved, "streams": len(series),
                "bytes": int(sum(v.nbytes for v in series.values()) + fields.nbytes + steps.nbytes),
                "manifest": self.has_manifest, "commit": int(self.commit_record.get("number", -1))}

    # --- shared: reading ---
    @property
    def format(self) -> str:
        return self.NAME

    @property
    def card(self) -> dict:
        return dict(self._attrs()["card"])

    @property
    def physics_hash(self) -> str:
        return self._attrs()["physics_hash"]

    @property
    def versions(self) -> dict:
        return dict(self._attrs().get("versions", {}))

    @property
    def n_meas(self) -> int:
        return int(self.commit_record.get("n_meas", 0))

    @property
    def n_saved(self) -> int:
        return int(self.commit_record.get("n_saved", 0))

    def checkpoint(self) -> dict:
        """The sampler state (arrays as host NumPy) and generator state of the last commit."""
        name = self.commit_record.get("checkpoint")
        if not name:
            raise StoreError(f"{self.path!r}: the commit record names no checkpoint")
        try:
            with np.load(os.path.join(self.path, name), allow_pickle=False) as z:
                meta = from_json_safe(json.loads(str(z["__meta__"])))
                state = {k: (z[f"state.{k}"] if k not in meta["none"] else None) for k in meta["fields"]}
        except (OSError, ValueError, KeyError) as e:
            raise StoreError(f"{self.path!r}: cannot read checkpoint {name!r}: {e}") from e
        return {"state": state, "rng": meta["rng"], "counters": meta["counters"]}

    # --- shared: committing ---
    def commit(self, record: dict, checkpoint: dict) -> None:
        """Make everything appended so far permanent: the format's data, the checkpoint file, then
        the commit record, each written atomically; older checkpoints are removed after."""
        number = int(self.commit_record.get("number", -1)) + 1
        _fault_point("written", number)      # the block appended, nothing synced or recorded
        self._before_commit(number)
        _fault_point("synced", number)       # the block durable, no checkpoint yet
        name = f"checkpoint-{number}.npz"
        state = checkpoint["state"]
        meta = {"fields": list(state), "none": [k for k, v in state.items() if v is None],
                "rng": checkpoint["rng"], "counters": checkpoint["counters"]}
        buf = io.BytesIO()
        np.savez(buf, __meta__=np.asarray(json.dumps(to_json_safe(meta))),
                 **{f"state.{k}": v for k, v in state.items() if v is not None})
        atomic_write(os.path.join(self.path, name), buf.getvalue())
        _fault_point("checkpoint", number)   # the new checkpoint written, the record still the old one
        record = dict(record, number=number, checkpoint=name, format=STORE_FORMAT, manifest=self._manifest())
        atomic_write(os.path.join(self.path, COMMIT), json.dumps(record, indent=1).encode())
        _fault_point("recorded", number)     # committed; the old checkpoint not yet removed
        old = self.commit_record.get("checkpoint")
        self.commit_record = record
        if old and old != name:
            try:
                os.remove(os.path.join(self.path, old))
            except OSError:
                pass


def _store_owning(path: str) -> str | None:
    """The ensemble directory whose own files or data ``path`` is or lies in, or None."""
    owned = {name for c in FORMATS.values() for name in (c.DATA, *c.OWNED)} | {COMMIT, LOCK}
    parts = os.path.abspath(path).split(os.sep)
    for i in range(len(parts) - 1, 0, -1):
        folder, child = os.sep.join(parts[:i]) or os.sep, parts[i]
        if (child in owned or child.startswith("checkpoint-")) and detect_format(folder) is not None:
            return folder
    return None


def check_output(path: Any, name: str, kind: str = "file", stdout: bool = False) -> None:
    """Refuse an output path before any work starts (ValueError naming ``name`` and the path):
    empty, ``-`` where no stream is meant (``stdout``), a folder that does not exist or cannot be
    written, a file where a folder is meant or the reverse, or a place inside an ensemble store's
    own files (a metadata file overwritten would destroy the ensemble). ``kind``: "file" or "dir"
    (a store or a folder of plots: created if missing)."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"{name} must be a path, got {name}={path!r}")
    path = str(path)
    if path == "-":
        if stdout:
            return
        raise ValueError(f"{name} - (standard output) is not possible here: give a file name")
    store = _store_owning(path)
    if store is not None:
        raise ValueError(f"{name} {path!r} lies inside the ensemble store {store!r}: writing there would damage "
                         f"it; choose a path outside its data")
    if os.path.isdir(path) and kind == "file":
        raise ValueError(f"{name} {path!r} is a folder; give a file name")
    if os.path.exists(path) and not os.path.isdir(path) and kind == "dir":
        raise ValueError(f"{name} {path!r} exists and is not a folder")
    parent = os.path.dirname(os.path.abspath(path))
    while kind == "dir" and not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)  # a folder output may create its parents
    if not os.path.isdir(parent):
        raise ValueError(f"{name} {path!r}: the folder {parent!r} does not exist")
    probe = path if kind == "dir" and os.path.isdir(path) else parent
    try:  # a real write, not os.access: root passes every permission check, /proc and read-only mounts do not
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise ValueError(f"{name} {path!r} cannot be written: {e.strerror or e} (in {probe!r})") from None


def remove_uncommitted(path: str) -> None:
    """Remove a directory left by a run killed before its first commit: it holds nothing committed.
    Refused (StoreError) unless it holds only what a store writes."""
    data = {name for c in FORMATS.values() for name in (c.DATA, *c.OWNED)} | {LOCK}
    names = os.listdir(path)
    if os.path.exists(os.path.join(path, COMMIT)):
        raise StoreError(f"{path!r} holds a committed ensemble; it is not removed")
    if not all(n in data or n.startswith(("checkpoint-", COMMIT + ".tmp-")) for n in names):
        raise StoreError(f"{path!r} exists, holds no ensemble and is not empty ({', '.join(sorted(names)[:3])}); "
                         "move it away or choose another --out")
    lock = WriterLock(path).acquire()  # a live writer before its first commit: not ours to remove
    try:
        shutil.rmtree(path)
    finally:
        lock.release()


def open_ensemble(path: str, backend: Any = None) -> dict:
    """A stored ensemble: its card, the committed streams and configurations.

    Returns {"card", "series": name -> (n_meas, chains), "fields": (n_saved, chains, L, ..., L),
    "field_steps", "couplings", "commit", "format"}; arrays are host NumPy, or ``backend``'s
    (a Backend or a name) when given.
    """
    store = EnsembleStore.open(path, "r")
    out = {"card": store.card, "series": store.series(), "fields": store.fields(),
           "field_steps": store.field_steps(), "couplings": store.couplings(), "commit": dict(store.commit_record),
           "format": store.format}
    if backend is not None:
        from .. import get_backend
        be = get_backend(backend)
        out["series"] = {k: be.from_numpy(v) for k, v in out["series"].items()}
        out["fields"] = be.from_numpy(out["fields"])
    return out
