"""Fused kernels: Numba on the CPU (NumPy arrays, CPU torch tensors) and Triton on the GPU (torch
CUDA tensors; CuPy arrays through zero-copy torch views), registered with the core's delegation
layer when a backend loads (the optional ``fast`` extra installs Numba; Triton comes with
torch's CUDA builds).

The core builds a plan (:mod:`portable_lattice.samplers.fused`); a kernel here only carries
it out. Every kernel is bit-identical to its generic twin, which the tests check (the Triton
kernels under Triton's interpreter, on CPU tensors).
"""
from __future__ import annotations

import functools
import importlib.util

__all__ = ["numba_available", "triton_available", "register"]


def numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def _numpy_or_cpu_torch(x) -> bool:
    import array_api_compat as aac
    if aac.is_numpy_array(x):
        return True
    return aac.is_torch_array(x) and x.device.type == "cpu"


def _cuda_torch(x) -> bool:
    import array_api_compat as aac
    return aac.is_torch_array(x) and x.device.type == "cuda"


@functools.lru_cache(maxsize=1)
def _torch_cuda() -> bool:
    """torch with CUDA next to CuPy: the Triton kernels then take CuPy arrays as torch views."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch
    return torch.cuda.is_available()


def _cupy(x) -> bool:
    import array_api_compat as aac
    return aac.is_cupy_array(x) and _torch_cuda()


def _lazy(module, name):
    def call(*args, **kwargs):
        mod = importlib.import_module(f"{__name__}.{module}")
        return getattr(mod, name)(*args, **kwargs)
    call.__name__ = name
    return call


def _through_torch(name):
    """The Triton kernel ``name`` for CuPy arrays: torch.as_tensor reads the CUDA array interface
    (zero copy), cupy.asarray reads the results back the same way."""
    kernel = _lazy("triton_kernels", name)

    def call(*args):
        import cupy
        import torch
        conv = [torch.as_tensor(a, device="cuda") if isinstance(a, cupy.ndarray) else a for a in args]
        out = kernel(*conv)
        return tuple(cupy.asarray(o) if isinstance(o, torch.Tensor) else o for o in out)
    call.__name__ = name
    return call


_DONE: set = set()


def register() -> None:
    """Register the CPU kernels where Numba is installed and the GPU kernels where Triton is (once each)."""
    from portable_lattice._delegation import register_fused
    if "numba" not in _DONE and numba_available():
        register_fused("checkerboard", _numpy_or_cpu_torch, _lazy("numba_kernels", "checkerboard_sweep"))
        register_fused("hmc", _numpy_or_cpu_torch, _lazy("numba_kernels", "hmc_trajectory"))
        _DONE.add("numba")
    if "triton" not in _DONE and triton_available():
        register_fused("checkerboard", _cuda_torch, _lazy("triton_kernels", "checkerboard_sweep"))
        register_fused("hmc", _cuda_torch, _lazy("triton_kernels", "hmc_trajectory"))
        register_fused("checkerboard", _cupy, _through_torch("checkerboard_sweep"))
        register_fused("hmc", _cupy, _through_torch("hmc_trajectory"))
        _DONE.add("triton")
