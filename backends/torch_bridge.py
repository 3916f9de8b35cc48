"""Arrays across the torch boundary: a torch model called on NumPy, CuPy, torch or
array_api_strict arrays, and its results handed back in the caller's namespace.

* Zero-copy through DLPack (or NumPy's buffer) when devices match (NumPy and
  torch-cpu; CuPy and torch-cuda); array_api_strict goes through a host copy.
* The result takes the namespace, device and (unless told otherwise) dtype of ``like``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._base import BackendUnavailableError

__all__ = ["torch_module", "to_torch", "from_torch"]


def torch_module():
    """torch, or a clear error naming the extra to install."""
    try:
        import torch
    except ImportError as e:
        raise BackendUnavailableError("neural models need PyTorch: pip install 'portable_lattice[torch]' "
                                      "(on CPU-only machines pin torch==2.13.0)") from e
    return torch


def _is_strict(x) -> bool:
    return type(x).__module__.startswith("array_api_strict")


def to_torch(x: Any, device: Any = None):
    """A torch tensor viewing ``x`` (a copy only for array_api_strict, or to move to ``device``)."""
    import array_api_compat as aac
    torch = torch_module()
    if aac.is_torch_array(x):
        t = x
    elif aac.is_numpy_array(x):
        t = torch.from_numpy(np.ascontiguousarray(x))
    elif aac.is_cupy_array(x):
        t = torch.from_dlpack(x)
    elif _is_strict(x):
        t = torch.from_numpy(np.from_dlpack(x).copy())
    else:
        raise TypeError(f"cannot hand a {type(x).__name__} to a torch model")
    return t if device is None else t.to(device)


def from_torch(t: Any, like: Any, dtype: Any = None):
    """``t`` as an array of ``like``'s namespace and device, with ``like``'s dtype (or ``dtype``,
    a dtype of that namespace)."""
    import array_api_compat as aac
    xp = aac.array_namespace(like)
    dtype = like.dtype if dtype is None else dtype
    t = t.detach()
    if aac.is_torch_array(like):
        return t.to(device=like.device, dtype=dtype)
    host = None
    if aac.is_cupy_array(like):
        import cupy
        return cupy.from_dlpack(t.contiguous()).astype(dtype, copy=False)
    host = t.cpu().numpy()
    if aac.is_numpy_array(like):
        return host.astype(dtype, copy=False)
    # array_api_strict: a host copy in the requested dtype
    return xp.asarray(host, dtype=dtype, device=aac.device(like))
