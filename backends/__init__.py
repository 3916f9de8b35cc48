"""The pluggable compute layer: choose a backend by name, or from an array.

>>> from portable_lattice import backends
>>> be = backends.get_backend("torch", device="cuda")     # doctest: +SKIP
>>> rng = be.rng(seed=1)

Everything the Array API standard does not give lives here: random numbers,
device handling, conversion to host NumPy, and (later) the torch surrogate
bridge and native fast paths. A backend registers its fast paths with the
core's delegation layer when it is loaded (:mod:`.capabilities` lists them).
"""
from __future__ import annotations

from typing import Any

from . import numpy_backend as _numpy_backend  # noqa: F401  (NumPy is core: its fast paths register now)
from ._base import FLOAT_DTYPES, Backend, BackendUnavailableError, Generator
from .capabilities import CAPABILITIES, capability

__all__ = ["Backend", "Generator", "BackendUnavailableError", "get_backend", "backend_of",
           "available_backends", "BACKENDS", "FLOAT_DTYPES", "CAPABILITIES", "capability"]

def _module(name: str):
    """The module of backend ``name`` (imported on first use: torch and CuPy cost seconds, and a
    plain import keeps the arrow visible to readers and tools)."""
    if name == "torch":
        from . import torch_backend as module
    elif name == "cupy":
        from . import cupy_backend as module
    elif name == "array_api_strict":
        from . import strict_backend as module
    else:
        module = _numpy_backend
    return module


#: the backends by name, each a module with ``make_backend(device)`` (see :func:`_module`)
BACKENDS = {"numpy": "numpy_backend", "torch": "torch_backend", "cupy": "cupy_backend",
            "array_api_strict": "strict_backend"}


def get_backend(name: str = "numpy", device: Any = None) -> Backend:
    """The backend called ``name`` on ``device``.

    Parameters
    ----------
    name : {"numpy", "torch", "cupy", "array_api_strict"}
    device : str, optional
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; default: the backend's natural
        device (CPU for numpy/torch/array_api_strict, GPU 0 for cupy).

    Raises
    ------
    ValueError
        Unknown backend name.
    BackendUnavailableError
        The backend is not installed or the device does not exist; the message
        names the extra to install.
    """
    if isinstance(name, Backend):
        return name
    if name not in BACKENDS:
        raise ValueError(f"unknown backend={name!r}; choose one of {sorted(BACKENDS)}")
    return _module(name).make_backend(device)


def backend_of(x: Any) -> Backend:
    """The backend (and device) an array belongs to."""
    import array_api_compat as aac

    if aac.is_torch_array(x):
        return get_backend("torch", aac.device(x))
    if aac.is_cupy_array(x):
        return get_backend("cupy", f"cuda:{x.device.id}")
    if aac.is_numpy_array(x):
        return get_backend("numpy")
    if type(x).__module__.startswith("array_api_strict"):
        return get_backend("array_api_strict")
    raise TypeError(f"cannot tell the backend of an object of type {type(x).__name__}")


def available_backends(gpu: bool = True) -> list[tuple[str, str]]:
    """(name, device) pairs usable on this machine, CPU ones first."""
    out = []
    for name, device in [("numpy", "cpu"), ("torch", "cpu"), ("array_api_strict", "cpu"),
                         ("cupy", "cuda"), ("torch", "cuda")]:
        if not gpu and device == "cuda":
            continue
        try:
            get_backend(name, device)
        except (BackendUnavailableError, ImportError):
            continue
        out.append((name, device))
    return out
