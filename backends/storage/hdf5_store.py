"""The HDF5 format of an ensemble store (h5py): a header file and one HDF5 file per commit.

Layout inside the ensemble directory::

    ensemble.h5              the header: attributes (format, card, physics hash, versions as JSON),
                             the configuration shape and dtype, quenched couplings if any
    ensemble-blocks/
        block-000003.h5      the rows committed by commit 3: series/<name> (n, chains),
                             fields (k, chains, L, ..., L), field_steps (k,)

Why a file per commit: HDF5 updates its metadata in place, so a process killed while it writes
can leave a single file unreadable (even SWMR mode leaves it flagged "open for write", which
only the h5clear tool undoes). Here every file is written under a temporary name, synced and
renamed before the commit record names it, so a SIGKILL at any moment leaves the last commit
intact. Every chunk carries a Fletcher-32 checksum (a damaged block is named when read), and the
committed row counts are checked against the blocks (a missing block file is named, never read
as zeros). The commit record's manifest holds each block file's CRC-32, so a block that was
replaced (by another store's, say) or truncated is named when it is read. Each block is an
ordinary HDF5 file that h5py, HDFView or h5dump read directly.
"""
from __future__ import annotations

import json
import os
import zlib
from typing import Any

import numpy as np

from .base import FORMATS, EnsembleStore, StoreError
from .files import write_atomically

__all__ = ["HDF5Store", "HEADER", "BLOCKS"]

HEADER = "ensemble.h5"
BLOCKS = "ensemble-blocks"
_FILTERS = {"compression": "gzip", "compression_opts": 4, "shuffle": True, "fletcher32": True}


def _h5py():
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - depends on the install
        raise StoreError("the HDF5 store needs h5py: pip install 'portable_lattice[hdf5]'") from e
    return h5py


def _write_atomically(path: str, fill) -> None:
    """``fill(h5py.File)`` into a temporary file, synced and renamed to ``path``."""
    h5py = _h5py()

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            fill(f)
    write_atomically(path, write)


def _dataset(f, name: str, data) -> None:
    data = np.asarray(data)
    kw = dict(_FILTERS) if data.size else {}
    f.create_dataset(name, data=data, chunks=data.shape if data.size else None, **kw)


class HDF5Store(EnsembleStore):
    """An ensemble store in HDF5 files (see the module's layout)."""

    NAME, DATA, OWNED = "hdf5", HEADER, (BLOCKS,)

    def __init__(self, path: str, header: dict, commit: dict):
        super().__init__(path, commit)
        self.header = header
        self._pending: dict[str, list] = {}
        self._cache: dict[int, dict] = {}
        self._blocks: dict[str, int] | None = {}  # block number -> CRC-32 of its file (None: no manifest)

    @classmethod
    def available(cls) -> None:
        _h5py()

    # --- the header ---
    @classmethod
    def _create(cls, path, attrs, config_shape, config_dtype, couplings) -> "HDF5Store":
        header = dict(attrs, config_shape=list(config_shape), config_dtype=str(np.dtype(config_dtype)))
        os.makedirs(os.path.join(path, BLOCKS), exist_ok=True)
        store = cls(path, header, {})
        store._write_header(couplings)
        return store

    def _write_header(self, couplings) -> None:
        def fill(f):
            for k, v in self.header.items():
                f.attrs[k] = json.dumps(v)
            if couplings is not None:
                _dataset(f, "couplings", couplings)
        _write_atomically(os.path.join(self.path, HEADER), fill)

    @classmethod
    def _open(cls, path: str, mode: str) -> "HDF5Store":
        h5py = _h5py()
        try:
            with h5py.File(os.path.join(path, HEADER), "r") as f:
                header = {k: json.loads(v) for k, v in f.attrs.items()}
        except (OSError, ValueError) as e:
            raise StoreError(f"{path!r} is not a portable_lattice ensemble ({HEADER}: {e})") from e
        return cls(path, header, {})

    def _attrs(self) -> dict:
        return self.header

    def set_card(self, card: dict) -> None:
        couplings = self.couplings()
        self.header = dict(self.header, card=card)
        self._write_header(couplings)

    def couplings(self) -> Any:
        with _h5py().File(os.path.join(self.path, HEADER), "r") as f:
            return f["couplings"][...] if "couplings" in f else None

    # --- the blocks ---
    def _block_path(self, number: int) -> str:
        return os.path.join(self.path, BLOCKS, f"block-{number:06d}.h5")

    def _committed_blocks(self) -> list[int]:
        last = int(self.commit_record.get("number", -1))
        out = []
        for name in os.listdir(os.path.join(self.path, BLOCKS)):
            if name.startswith("block-") and name.endswith(".h5"):
                number = int(name[6:-3])
                if number <= last:
                    out.append(number)
        return sorted(out)

    def _cut_back(self) -> None:
        last = int(self.commit_record.get("number", -1))
        folder = os.path.join(self.path, BLOCKS)
        for name in os.listdir(folder):
            stale = ".tmp-" in name or (name.startswith("block-") and name.endswith(".h5") and int(name[6:-3]) > last)
            if stale:
                os.remove(os.path.join(folder, name))
        for name in os.listdir(self.path):
            if name.startswith(HEADER) and ".tmp-" in name:
                os.remove(os.path.join(self.path, name))

    def _manifest(self) -> dict:
        return {"blocks": self._blocks} if self._blocks is not None else {}

    def _load_manifest(self, manifest: dict | None) -> None:
        self._blocks = None if not manifest else {str(k): int(v) for k, v in manifest["blocks"].items()}

    def _file_crc(self, path: str) -> int:
        crc = 0
        with open(path, "rb") as f:
            for piece in iter(lambda: f.read(1 << 22), b""):
                crc = zlib.crc32(piece, crc)
        return crc

    def _read_block(self, number: int) -> dict:
        if number not in self._cache:
            h5py = _h5py()
            path = self._block_path(number)
            if self._blocks is not None and str(number) in self._blocks and os.path.exists(path) \
                    and self._file_crc(path) != self._blocks[str(number)]:
                raise StoreError(f"{self.path!r}: block {os.path.basename(path)} (commit {number}) does not hold "
                                 f"the committed data: corrupted, truncated, overwritten or from another store")
            try:
                with h5py.File(path, "r") as f:
                    block = {"series": {k: f["series"][k][...] for k in f["series"]} if "series" in f else {}}
                    for k in ("fields", "field_steps"):
                        if k in f:
                            block[k] = f[k][...]
            except (OSError, KeyError) as e:
                raise StoreError(f"{self.path!r}: block {os.path.basename(path)} (commit {number}) cannot be read, "
                                 f"it is missing or corrupted: {e}") from e
            self._cache[number] = block
        return self._cache[number]

    def _gather(self, key: str, name: str | None, expect: int, empty) -> Any:
        parts = []
        for number in self._committed_blocks():
            block = self._read_block(number)
            part = block["series"].get(name) if key == "series" else block.get(key)
            if part is not None:
                parts.append(part)
        out = np.concatenate(parts) if parts else empty
        if out.shape[0] != expect:
            raise StoreError(f"{self.path!r}: {name or key} holds {out.shape[0]} committed rows, the commit record "
                             f"says {expect}: a block file of {BLOCKS}/ is missing")
        return out

    def series(self) -> dict:
        names = sorted({k for n in self._committed_blocks() for k in self._read_block(n)["series"]})
        return {name: self._gather("series", name, self.n_meas, None) for name in names}

    def fields(self) -> Any:
        shape, dtype = tuple(self.header["config_shape"]), self.header["config_dtype"]
        return self._gather("fields", None, self.n_saved, np.zeros((0,) + shape, dtype=dtype))

    def field_steps(self) -> Any:
        return self._gather("field_steps", None, self.n_saved, np.zeros((0,), dtype=np.int64))

    # --- writing ---
    def append(self, series: dict, fields: Any = None, field_steps: Any = None) -> None:
        for name, values in series.items():
            self._pending.setdefault(f"series/{name}", []).append(np.asarray(values))
        if fields is not None and len(fields):
            self._pending.setdefault("fields", []).append(np.asarray(fields))
            self._pending.setdefault("field_steps", []).append(np.asarray(field_steps, dtype=np.int64))

    def _before_commit(self, number: int) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}

        def fill(f):
            for name, parts in pending.items():
                _dataset(f, name, np.concatenate(parts))
        _write_atomically(self._block_path(number), fill)
        if self._blocks is not None:
            self._blocks[str(number)] = self._file_crc(self._block_path(number))


FORMATS[HDF5Store.NAME] = HDF5Store
