"""Arrays across the torch boundary: torch models in ``nn/`` called on NumPy, CuPy, torch or
array_api_strict arrays, and their results handed back in the caller's namespace.

* Zero-copy through DLPack (or NumPy's buffer) when devices match (NumPy and
  torch-cpu; CuPy and torch-cuda); array_api_strict goes through a host copy.
* An array on another device than the model is an error naming both (no silent copy).
* :func:`from_torch` returns an array of the namespace and device of ``like``, in
  ``like``'s dtype unless another dtype of that namespace is asked for.
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


def to_torch(x: Any, device: Any = None, dtype: Any = None) -> Any:
    """A torch tensor viewing (for array_api_strict, copying) ``x``, checked to be on ``device``,
    cast to ``dtype`` (a torch dtype) when given."""
    import array_api_compat as aac
    torch = torch_module()
    if aac.is_torch_array(x):
        t = x
    elif aac.is_numpy_array(x):
        t = torch.from_numpy(np.ascontiguousarray(x))
    elif aac.is_cupy_array(x):
        t = torch.from_dlpack(x)
    elif type(x).__module__.startswith("array_api_strict"):
        t = torch.from_numpy(np.from_dlpack(x).copy())
    else:
        raise TypeError(f"cannot hand a {type(x).__name__} to a torch model")
    if device is not None and t.device != torch.device(device):
        raise ValueError(f"the model lives on {device} but the array is on {t.device}; "
                         f"move the model (model.to(...)) or the array so that they match")
    return t if dtype is None else t.to(dtype)


def from_torch(t: Any, like: Any, dtype: Any = None) -> Any:
    """``t`` as an array of ``like``'s namespace and device, in ``like``'s dtype or ``dtype``."""
    import array_api_compat as aac
    xp = aac.array_namespace(like)
    dtype = like.dtype if dtype is None else dtype
    t = t.detach()
    if aac.is_torch_array(like):
        return t.to(device=like.device, dtype=dtype)
    if aac.is_cupy_array(like):
        import cupy
        return cupy.from_dlpack(t.contiguous()).astype(dtype, copy=False)
    host = t.cpu().numpy()
    if aac.is_numpy_array(like):
        return host.astype(dtype, copy=False)
    # array_api_strict: a host copy in the requested dtype
    return xp.asarray(host, dtype=dtype, device=aac.device(like))
