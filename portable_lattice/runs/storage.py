"""Host I/O of configurations and couplings: the named module allowed to touch NumPy and file formats.

Readers return host NumPy arrays; the caller moves them to its backend
(``backend.from_numpy``). Every bad file gets a ValueError naming the flag
and the path, before any work starts.
"""
from __future__ import annotations

from typing import Any

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

    ``path`` is a ``.npy`` file, or a ``.npz`` archive with one array or
    ``archive.npz:key`` naming one. Integer arrays must hold +-1; boolean
    arrays are read as s = 2 b - 1.
    """
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
