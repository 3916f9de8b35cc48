"""The DLPack adapter between a field of any backend and torch (for torch models in ``nn/``).

Zero-copy where devices match (NumPy and torch-cpu, CuPy and torch-cuda);
array_api_strict goes through a host copy. :func:`from_torch` returns an array
of the namespace, dtype and device of ``like``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._base import BackendUnavailableError

__all__ = ["to_torch", "from_torch"]


def _torch():
    try:
        import torch
    except ImportError as e:
        raise BackendUnavailableError("torch models need PyTorch: pip install 'portable_lattice[torch]'") from e
    return torch


def to_torch(x: Any, device: Any = None, dtype: Any = None) -> Any:
    """A torch tensor viewing (or, for array_api_strict, copying) ``x``; checked to be on ``device``."""
    import array_api_compat as aac
    torch = _torch()
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
        raise ValueError(f"the model lives on {device} but the field is on {t.device}; "
                         f"move the model (model.to(...)) or the field so that they match")
    return t if dtype is None else t.to(dtype)


def from_torch(t: Any, like: Any) -> Any:
    """``t`` as an array of the namespace, dtype and device of ``like``."""
    import array_api_compat as aac
    t = t.detach()
    if aac.is_torch_array(like):
        return t.to(device=like.device, dtype=like.dtype)
    if aac.is_numpy_array(like):
        return t.cpu().numpy().astype(like.dtype, copy=False)
    if aac.is_cupy_array(like):
        import cupy
        return cupy.from_dlpack(t.contiguous()).astype(like.dtype, copy=False)
    xp = aac.array_namespace(like)
    host = t.cpu().numpy()
    return xp.asarray(np.asarray(host, dtype=np.float64 if like.dtype == xp.float64 else np.float32))
