"""Host I/O of configurations, couplings and ensembles on disk (NumPy files and zarr).

This is backend code (it imports NumPy and zarr), so it lives in the backend layer;
:mod:`portable_lattice.runs.storage` presents it to the rest of the library. Readers return host NumPy arrays; the caller moves them to its backend
(``backend.from_numpy``). Every bad file gets a ValueError naming the flag
and the path, before any work starts.
"""
from __future__ import annotations

from typing import Any

import os

import numpy as np

__all__ = ["load_configurations", "load_couplings"]

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def _load(file: str, flag: str, shown: str) -> Any:
    """np.load of a .npy / .npz file, refusing anything else by name (never pickles)."""
    try:
        with open(file, "rb") as f:
            head = f.read(6)
    except OSError as e:
        raise ValueError(f"cannot read {flag} {shown!r}: {e.strerror or e}") from e
    if not (head.startswith(_NPY_MAGIC) or head.startswith(_ZIP_MAGIC[:4])):
        raise ValueError(f"{flag} {shown!r} is not a NumPy .npy or .npz file")
    try:
        return np.load(file, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {flag} {shown!r}: {e}") from e


def load_couplings(path: str) -> Any:
    """Edwards-Anderson couplings from a .npy file: a float array (d, L, ..., L), finite."""
    J = _load(path, "--couplings", path)
    if not isinstance(J, np.ndarray):
        raise ValueError(f"--couplings {path!r} must be a .npy file holding one array")
    if J.dtype.kind != "f":
        raise TypeError(f"--couplings must hold floats, got dtype {J.dtype} in {path!r}")
    if not np.isfinite(J).all():
        raise ValueError(f"--couplings {path!r} holds NaN or infinite values")
    return J


def load_configurations(path: str) -> Any:
    """Stored Ising configurations as a host int8 array (configs, L, L) of +-1.

    ``path`` is a ``.npy`` file, a ``.npz`` archive with one array or
    ``archive.npz:key`` naming one, or an ensemble directory written by a run
    with ``--out`` (its saved configurations, every chain). Integer arrays must
    hold +-1; boolean arrays are read as s = 2 b - 1.
    """
    if os.path.isdir(path):
        try:
            fields = EnsembleStore.open(path, "r").fields()
        except StoreError as e:
            raise ValueError(f"--input {path!r}: {e}") from e
        if fields.shape[0] == 0:
            raise ValueError(f"--input {path!r} holds no saved configurations (run it with --save-every N)")
        data = fields.reshape((-1,) + tuple(fields.shape[2:]))
        return _check_spin_configurations(data, path)
    file, _, key = path.partition(":") if path.count(":") == 1 and not path.endswith(":") else (path, "", "")
    data = _load(file, "--input", path)
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            names = list(data.files)
            if not key and len(names) != 1:
                raise ValueError(f"--input {path!r} holds arrays {names}: name one as {file}:KEY")
            if key and key not in names:
                raise ValueError(f"--input {path!r}: no array {key!r} in the archive (it holds {names})")
            data = data[key or names[0]]
    elif key:
        raise ValueError(f"--input {path!r}: only a .npz archive has named arrays")
    return _check_spin_configurations(data, path)


def _check_spin_configurations(data: Any, path: str) -> Any:
    if data.dtype == bool:
        data = 2 * data.astype(np.int8) - 1
    if data.dtype.kind not in "iu":
        raise TypeError(f"--input must hold integer +-1 spins (or booleans), got dtype {data.dtype} in {path!r}")
    if data.ndim != 3 or data.shape[1] != data.shape[2]:
        raise ValueError(f"--input must have shape (configs, L, L), got shape {data.shape} in {path!r}")
    bad = (data != 1) & (data != -1)
    if bad.any():
        raise ValueError(f"--input must hold +-1 spins, found the value {data[bad][0]} in {path!r}")
    return data.astype(np.int8)


# --- ensembles on disk ----------------------------------------------------------------------
import base64  # noqa: E402
import json  # noqa: E402

#: written into every store; a directory without it is not ours
STORE_FORMAT = "portable_lattice.ensemble/1"
COMMIT = "commit.json"
#: the zarr group inside an ensemble directory (the commit record and checkpoints sit beside it)
GROUP = "ensemble.zarr"
#: bytes of configurations per chunk along Monte Carlo time (a shard's worth of writes)
_CHUNK_BYTES = 4 << 20


class StoreError(ValueError):
    """A store that is not ours, is corrupted, or would be overwritten."""


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


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one, never half of
    one: a temporary file, fsync, os.replace, fsync of the directory."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def to_json_safe(obj: Any) -> Any:
    """Generator states and run records as JSON: bytes and arrays tagged, everything else as is."""
    if isinstance(obj, dict):
        return {str(k): to_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_safe(v) for v in obj]
    if isinstance(obj, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(obj)).decode()}
    if isinstance(obj, np.ndarray):
        return {"__array__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def from_json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        if "__bytes__" in obj:
            return base64.b64decode(obj["__bytes__"])
        if "__array__" in obj:
            return np.asarray(obj["__array__"], dtype=obj["dtype"])
        return {k: from_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_json_safe(v) for v in obj]
    return obj


class EnsembleStore:
    """One ensemble (one parameter point) on disk: a zarr v3 group and a commit record.

    Layout of ``path``::

        ensemble.zarr/           a zarr v3 group; attributes: format, card, physics hash, versions
            fields/              saved configurations (n_saved, chains, L, ..., L), chunked along MC time
            field_steps/         the measurement number of each saved configuration (n_saved,)
            series/<name>/       one array per measured observable (n_meas, chains), acceptance etc.
            couplings/           quenched couplings (Edwards-Anderson), if any
        checkpoint-N.npz         sampler state arrays and generator state at commit N
        commit.json              the commit record, written last and atomically

    Arrays may hold rows beyond the committed counts after a crash; opening for
    writing cuts them back, and reading never shows them.
    """

    def __init__(self, path: str, group: Any, commit: dict):
        self.path, self.group, self.commit_record = path, group, commit
        self._arrays = None  # name -> zarr array, the handles append writes through

    # --- creation and opening ---
    @classmethod
    def create(cls, path: str, card: dict, physics_hash: str, versions: dict, config_shape: tuple,
               config_dtype: str, couplings: Any = None) -> "EnsembleStore":
        zarr = _zarr()
        if os.path.exists(path):
            if os.path.exists(os.path.join(path, COMMIT)) or os.path.exists(os.path.join(path, GROUP)):
                raise StoreError(f"{path!r} already holds an ensemble: continue it with "
                                 f"`portable-lattice resume {path}`, or choose another --out")
            if os.listdir(path):
                raise StoreError(f"{path!r} exists and is not empty; refusing to write an ensemble into it")
        os.makedirs(path, exist_ok=True)
        group = zarr.open_group(os.path.join(path, GROUP), mode="w-", zarr_format=3)
        group.attrs.update({"format": STORE_FORMAT, "card": card, "physics_hash": physics_hash,
                            "versions": versions})
        per_config = int(np.prod(config_shape)) * np.dtype(config_dtype).itemsize
        k = max(1, _CHUNK_BYTES // max(per_config, 1))
        group.create_array("fields", shape=(0,) + tuple(config_shape), chunks=(k,) + tuple(config_shape),
                           dtype=config_dtype, compressors=_codecs(config_dtype), fill_value=0)
        group.create_array("field_steps", shape=(0,), chunks=(4096,), dtype="int64", compressors=_codecs(),
                           fill_value=0)
        group.create_group("series")
        if couplings is not None:
            c = np.asarray(couplings)
            group.create_array("couplings", shape=c.shape, chunks=c.shape, dtype=c.dtype, compressors=_codecs(),
                               fill_value=0)[...] = c
        store = cls(path, group, {})
        return store

    @classmethod
    def open(cls, path: str, mode: str = "r") -> "EnsembleStore":
        """Open an ensemble; ``mode="r+"`` cuts every array back to the committed counts."""
        zarr = _zarr()
        commit_path = os.path.join(path, COMMIT)
        if not os.path.isdir(path):
            raise StoreError(f"{path!r} is not a directory holding an ensemble")
        try:
            if not os.path.isdir(os.path.join(path, GROUP)):
                raise FileNotFoundError(f"no {GROUP} in it")
            group = zarr.open_group(os.path.join(path, GROUP), mode="r" if mode == "r" else "r+", zarr_format=3)
            fmt = group.attrs.get("format")
        except Exception as e:  # noqa: BLE001 - anything zarr says about a foreign directory
            raise StoreError(f"{path!r} is not a portable_lattice ensemble ({type(e).__name__}: {e})") from e
        if fmt != STORE_FORMAT:
            raise StoreError(f"{path!r} is not a portable_lattice ensemble (format {fmt!r})")
        try:
            with open(commit_path) as f:
                commit = json.load(f)
        except (OSError, ValueError) as e:
            raise StoreError(f"{path!r} has no readable commit record ({COMMIT}): nothing in it was committed (a run "
                             f"stopped before its first commit); delete the directory and start the run again") from e
        store = cls(path, group, commit)
        if mode != "r":
            store._cut_back()
        return store

    def _cut_back(self) -> None:
        n_saved, n_meas = self.commit_record["n_saved"], self.commit_record["n_meas"]
        # a process killed while it wrote a file leaves the temporary behind (zarr's NAME.<hex>.partial,
        # our NAME.tmp-PID): never part of the store, so removed before anything is written
        for base, _, names in os.walk(os.path.join(self.path, GROUP)):
            for name in names:
                if name.endswith(".partial"):
                    os.remove(os.path.join(base, name))
        for name in os.listdir(self.path):
            if name.startswith(("checkpoint-", COMMIT)) and ".tmp-" in name:
                os.remove(os.path.join(self.path, name))
        for name, n in (("fields", n_saved), ("field_steps", n_saved)):
            a = self.group[name]
            if a.shape[0] != n:
                a.resize((n,) + tuple(a.shape[1:]))
        for name in list(self.group["series"].array_keys()):
            a = self.group["series"][name]
            if a.shape[0] != n_meas:
                a.resize((n_meas,) + tuple(a.shape[1:]))

    # --- reading ---
    @property
    def card(self) -> dict:
        return dict(self.group.attrs["card"])

    @property
    def physics_hash(self) -> str:
        return self.group.attrs["physics_hash"]

    @property
    def n_meas(self) -> int:
        return int(self.commit_record.get("n_meas", 0))

    @property
    def n_saved(self) -> int:
        return int(self.commit_record.get("n_saved", 0))

    def _read(self, array, name: str, stop: int):
        """Rows [0, stop) of a zarr array, chunk by chunk, naming the chunk whose checksum fails."""
        rows = array.chunks[0]
        parts = []
        for start in range(0, stop, rows):
            try:
                parts.append(array[start:min(stop, start + rows)])
            except ValueError as e:
                raise StoreError(f"{self.path!r}: array {name!r}, chunk {start // rows} (rows {start}.."
                                 f"{min(stop, start + rows) - 1}) is corrupted: {e}") from e
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
        a.resize((start + values.shape[0],) + tuple(a.shape[1:]))
        try:
            a[start:] = values
        except ValueError as e:
            # a partly filled last chunk is read back before it is rewritten: its checksum failed
            rows = a.chunks[0]
            raise StoreError(f"{self.path!r}: array {name!r}, chunk {start // rows} (rows {start // rows * rows}.."
                             f"{(start // rows + 1) * rows - 1}) cannot be extended, it is corrupted: {e}") from e

    def commit(self, record: dict, checkpoint: dict) -> None:
        """Make everything appended so far permanent: the checkpoint file, then the commit record,
        each written atomically; older checkpoints are removed after."""
        import io
        number = int(self.commit_record.get("number", -1)) + 1
        name = f"checkpoint-{number}.npz"
        state = checkpoint["state"]
        meta = {"fields": list(state), "none": [k for k, v in state.items() if v is None],
                "rng": checkpoint["rng"], "counters": checkpoint["counters"]}
        buf = io.BytesIO()
        np.savez(buf, __meta__=np.asarray(json.dumps(to_json_safe(meta))),
                 **{f"state.{k}": v for k, v in state.items() if v is not None})
        atomic_write(os.path.join(self.path, name), buf.getvalue())
        record = dict(record, number=number, checkpoint=name, format=STORE_FORMAT)
        atomic_write(os.path.join(self.path, COMMIT), json.dumps(record, indent=1).encode())
        old = self.commit_record.get("checkpoint")
        self.commit_record = record
        if old and old != name:
            try:
                os.remove(os.path.join(self.path, old))
            except OSError:
                pass


def open_ensemble(path: str, backend: Any = None) -> dict:
    """A stored ensemble: its card, the committed streams and configurations.

    Returns {"card", "series": name -> (n_meas, chains), "fields": (n_saved, chains, L, ..., L),
    "field_steps", "couplings", "commit"}; arrays are host NumPy, or ``backend``'s
    (a Backend or a name) when given.
    """
    store = EnsembleStore.open(path, "r")
    out = {"card": store.card, "series": store.series(), "fields": store.fields(),
           "field_steps": store.field_steps(), "couplings": store.couplings(), "commit": dict(store.commit_record)}
    if backend is not None:
        from . import get_backend
        be = get_backend(backend)
        out["series"] = {k: be.from_numpy(v) for k, v in out["series"].items()}
        out["fields"] = be.from_numpy(out["fields"])
    return out
