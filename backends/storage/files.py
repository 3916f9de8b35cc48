"""Host files: NumPy configurations and couplings, atomic writes, JSON with bytes and arrays.

A host-I/O module (it imports NumPy): readers return host NumPy arrays and the caller moves
them to its backend (``backend.from_numpy``). Every bad file gets a ValueError naming the flag
and the path, before any work starts.
"""
from __future__ import annotations

import base64
import os
from typing import Any

import numpy as np

__all__ = ["load_configurations", "load_couplings", "atomic_write", "to_json_safe", "from_json_safe"]

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
            from .base import EnsembleStore  # an ensemble directory of any format
            fields = EnsembleStore.open(path, "r").fields()
        except ValueError as e:  # a StoreError names the path
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



def fsync_path(path: str) -> None:
    """fsync a file or a folder (a folder's entries: a new or renamed file in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: str, fill) -> None:
    """``fill(tmp)`` writes a temporary file that then replaces ``path``, so that a crash leaves the
    old file or the new one, never half of one: fsync of the file, os.replace, fsync of the
    directory."""
    tmp = f"{path}.tmp-{os.getpid()}"
    fill(tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_path(os.path.dirname(os.path.abspath(path)))


def atomic_write(path: str, data: bytes) -> None:
    """Write the bytes ``data`` to ``path`` atomically (:func:`write_atomically`)."""
    def fill(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
    write_atomically(path, fill)


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


