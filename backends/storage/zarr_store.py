"""The zarr v3 format of an ensemble store (the default): one group, chunked along Monte Carlo time.

Layout inside the ensemble directory::

    ensemble.zarr/           a zarr v3 group; attributes: format, card, physics hash, versions
        fields/              saved configurations (n_saved, chains, L, ..., L), chunked along MC time
        field_steps/         the measurement number of each saved configuration (n_saved,)
        series/<name>/       one array per measured observable (n_meas, chains), acceptance etc.
        couplings/           quenched couplings (Edwards-Anderson), if any

Every chunk carries a CRC32C, so a damaged chunk is named when it is read. The commit record's
manifest lists, per array and chunk, the committed rows and the CRC-32 of their values (kept
running as rows are appended), so a chunk that is missing (zarr would read it as zeros),
truncated or copied from another store is named too, on every read. At a commit the chunk files
written since the last one, their folders and the arrays' metadata are fsynced before the commit
record is written. The chunks do not depend on where the commits fell, so a run stopped and
resumed writes the same chunk files as one made in one go.
"""
from __future__ import annotations

import os
import zlib
from typing import Any

import numpy as np

from .base import FORMATS, EnsembleStore, StoreError
from .files import fsync_path

__all__ = ["ZarrStore", "GROUP"]

#: the zarr group inside an ensemble directory (the commit record and checkpoints sit beside it)
GROUP = "ensemble.zarr"
#: bytes of configurations per chunk along Monte Carlo time (a shard's worth of writes)
_CHUNK_BYTES = 4 << 20


def _zarr():
    try:
        import zarr
    except ImportError as e:  # pragma: no cover - depends on the install
        raise StoreError("ensemble storage needs zarr: pip install 'portable_lattice[storage]'") from e
    return zarr


def _codecs(dtype: Any = None):
    """zstd (or, for float configurations, LZ4 after a byte shuffle), then a CRC32C per chunk so a
    corrupted chunk is found when it is read."""
    from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec
    if dtype is not None and np.dtype(dtype).kind == "f":
        # float fields hardly compress (zstd: 0.96 of the raw size); the shuffled LZ4 stream is
        # smaller (0.94), cheaper to write and 5x faster to read back
        return [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle", typesize=np.dtype(dtype).itemsize),
                Crc32cCodec()]
    return [ZstdCodec(level=3), Crc32cCodec()]



class ZarrStore(EnsembleStore):
    """An ensemble store in a zarr v3 group (see the module's layout)."""

    NAME, DATA = "zarr", GROUP

    def __init__(self, path: str, group: Any, commit: dict):
        super().__init__(path, commit)
        self.group = group
        self._arrays = None  # name -> zarr array, the handles append writes through
        # name -> [[rows, crc32 of their values], ...] per chunk: the committed pieces, then the
        # appended ones; None for a store written before manifests
        self._chunks: dict[str, list] | None = {}
        self._touched: set = set()  # (name, chunk) written since the last commit

    # --- creation and opening ---
    @classmethod
    def available(cls) -> None:
        _zarr()

    @classmethod
    def _create(cls, path, attrs, config_shape, config_dtype, couplings) -> "ZarrStore":
        zarr = _zarr()
        group = zarr.open_group(os.path.join(path, GROUP), mode="w-", zarr_format=3)
        group.attrs.update(attrs)
        per_config = int(np.prod(config_shape)) * np.dtype(config_dtype).itemsize
        k = max(1, _CHUNK_BYTES // max(per_config, 1))
        group.create_array("fields", shape=(0,) + config_shape, chunks=(k,) + config_shape,
                           dtype=config_dtype, compressors=_codecs(config_dtype), fill_value=0)
        group.create_array("field_steps", shape=(0,), chunks=(4096,), dtype="int64", compressors=_codecs(),
                           fill_value=0)
        group.create_group("series")
        if couplings is not None:
            group.create_array("couplings", shape=couplings.shape, chunks=couplings.shape, dtype=couplings.dtype,
                               compressors=_codecs(), fill_value=0)[...] = couplings
        return cls(path, group, {})

    @classmethod
    def _open(cls, path: str, mode: str) -> "ZarrStore":
        zarr = _zarr()
        try:
            group = zarr.open_group(os.path.join(path, GROUP), mode="r" if mode == "r" else "r+", zarr_format=3)
            group.attrs.get("format")
        except Exception as e:  # noqa: BLE001 - anything zarr says about a foreign directory
            raise StoreError(f"{path!r} is not a portable_lattice ensemble ({type(e).__name__}: {e})") from e
        return cls(path, group, {})

    def _attrs(self) -> dict:
        return self.group.attrs

    def set_card(self, card: dict) -> None:
        self.group.attrs["card"] = card

    def _cut_back(self) -> None:
        n_saved, n_meas = self.commit_record["n_saved"], self.commit_record["n_meas"]
        # a process killed while it wrote a file leaves the temporary behind (zarr's NAME.<hex>.partial,
        # our NAME.tmp-PID): never part of the store, so removed before anything is written
        for base, _, names in os.walk(os.path.join(self.path, GROUP)):
            for name in names:
                if name.endswith(".partial"):
                    os.remove(os.path.join(base, name))
        for name, n in (("fields", n_saved), ("field_steps", n_saved)):
            a = self.group[name]
            if a.shape[0] != n:
                a.resize((n,) + tuple(a.shape[1:]))
        for name in list(self.group["series"].array_keys()):
            a = self.group["series"][name]
            if a.shape[0] != n_meas:
                a.resize((n_meas,) + tuple(a.shape[1:]))

    # --- the manifest ---
    def _manifest(self) -> dict:
        return {"chunks": self._chunks} if self._chunks is not None else {}

    def _load_manifest(self, manifest: dict | None) -> None:
        self._chunks = None if not manifest else {k: [list(c) for c in v] for k, v in manifest["chunks"].items()}

    def _chunk_file(self, name: str, ndim: int, index: int) -> str:
        return os.path.join(self.path, GROUP, *name.split("/"), "c", str(index), *(["0"] * (ndim - 1)))

    def _check(self, name: str, array, index: int, part) -> None:
        """Chunk ``index`` of ``name`` read as ``part``: the committed rows and their CRC-32, as
        the manifest says (a store without a manifest has only its chunks' own checksums)."""
        if self._chunks is None:
            return
        want = self._chunks.get(name, [])
        have = [int(part.shape[0]), zlib.crc32(np.ascontiguousarray(part, dtype=array.dtype))]
        if index < len(want) and want[index] == have:
            return
        start = index * array.chunks[0]
        where = f"array {name!r}, chunk {index} (rows {start}..{start + part.shape[0] - 1})"
        if not os.path.exists(self._chunk_file(name, array.ndim, index)):
            raise StoreError(f"{self.path!r}: {where} is missing: the store is incomplete (a partial copy?)")
        raise StoreError(f"{self.path!r}: {where} does not hold the committed data: corrupted, "
                         f"truncated, overwritten or from another store")

    # --- reading ---
    def _read(self, array, name: str, stop: int):
        """Rows [0, stop) of a zarr array, chunk by chunk, naming the chunk whose checksum fails
        or that the manifest does not recognise."""
        rows = array.chunks[0]
        parts = []
        for start in range(0, stop, rows):
            try:
                parts.append(array[start:min(stop, start + rows)])
            except ValueError as e:
                raise StoreError(f"{self.path!r}: array {name!r}, chunk {start // rows} (rows {start}.."
                                 f"{min(stop, start + rows) - 1}) is corrupted: {e}") from e
            self._check(name, array, start // rows, parts[-1])
        if not parts:
            return np.zeros((0,) + tuple(array.shape[1:]), dtype=array.dtype)
        return np.concatenate(parts)

    def series(self) -> dict:
        """name -> host array (n_meas, chains), the committed measurements."""
        g = self.group["series"]
        return {name: self._read(g[name], f"series/{name}", self.n_meas) for name in sorted(g.array_keys())}

    def fields(self) -> Any:
        return self._read(self.group["fields"], "fields", self.n_saved)

    def field_steps(self) -> Any:
        return self._read(self.group["field_steps"], "field_steps", self.n_saved)

    def couplings(self) -> Any:
        return self.group["couplings"][...] if "couplings" in self.group.array_keys() else None

    # --- writing ---
    def append(self, series: dict, fields: Any = None, field_steps: Any = None) -> None:
        """Append a block of measurements (name -> (n, chains)) and of saved configurations
        beyond the committed counts. Nothing is committed until :meth:`commit`."""
        g = self.group["series"]
        if self._arrays is None:  # opened once per store: a listing and an open per array cost ms each
            self._arrays = {f"series/{name}": a for name, a in g.arrays()}
            self._arrays.update({name: self.group[name] for name in ("fields", "field_steps")})
        for name, values in series.items():
            values = np.asarray(values)
            if f"series/{name}" not in self._arrays:
                chains = values.shape[1:]
                self._arrays[f"series/{name}"] = g.create_array(
                    name, shape=(0,) + tuple(chains), chunks=(1024,) + tuple(chains), dtype=values.dtype,
                    compressors=_codecs(), fill_value=0)
            self._extend(self._arrays[f"series/{name}"], f"series/{name}", values)
        if fields is not None and len(fields):
            for name, values in (("fields", np.asarray(fields)), ("field_steps", np.asarray(field_steps))):
                self._extend(self._arrays[name], name, values)

    def _extend(self, a, name: str, values) -> None:
        start = a.shape[0]
        self._track(a, name, start, values)
        a.resize((start + values.shape[0],) + tuple(a.shape[1:]))
        try:
            a[start:] = values
        except ValueError as e:
            # a partly filled last chunk is read back before it is rewritten: its checksum failed
            rows = a.chunks[0]
            raise StoreError(f"{self.path!r}: array {name!r}, chunk {start // rows} (rows {start // rows * rows}.."
                             f"{(start // rows + 1) * rows - 1}) cannot be extended, it is corrupted: {e}") from e


    def _track(self, a, name: str, start: int, values) -> None:
        """The running manifest: the CRC-32 of each chunk's rows, extended by the rows appended
        (zlib.crc32 continues a checksum, so earlier rows are never read back)."""
        rows = a.chunks[0]
        values = np.ascontiguousarray(values, dtype=a.dtype)
        if self._chunks is None:  # a store from before manifests: the chunks already there are unknown
            return
        chunks = self._chunks.setdefault(name, [])
        pos = 0
        while pos < values.shape[0]:
            index, offset = divmod(start + pos, rows)
            take = min(rows - offset, values.shape[0] - pos)
            while len(chunks) <= index:
                chunks.append([0, 0])
            rows_in, crc = chunks[index]
            chunks[index] = [rows_in + take, zlib.crc32(values[pos:pos + take], crc)]
            self._touched.add((name, index, a.ndim))
            pos += take

    def _before_commit(self, number: int) -> None:
        """fsync what was written since the last commit: the chunk files, their folders and the
        arrays' metadata (a power cut must not lose a block that a commit record names)."""
        folders = set()
        top = os.path.join(self.path, GROUP)
        for name, index, ndim in sorted(self._touched):
            chunk = self._chunk_file(name, ndim, index)
            if os.path.exists(chunk):  # zarr writes no chunk that holds only fill values
                fsync_path(chunk)
            folder = os.path.dirname(chunk)
            while folder.startswith(top) and folder not in folders:  # new chunk folders, new arrays
                folders.add(folder)
                folder = os.path.dirname(folder)
        for folder in sorted(folders):
            if not os.path.isdir(folder):  # the folder of a chunk zarr did not write (fill values only)
                continue
            meta = os.path.join(folder, "zarr.json")
            if os.path.exists(meta):
                fsync_path(meta)
            fsync_path(folder)
        self._touched.clear()


FORMATS[ZarrStore.NAME] = ZarrStore
