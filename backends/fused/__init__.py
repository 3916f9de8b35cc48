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

__all__ = ["numba_available", "triton_available", "register"]


# Asked only when a fused path is (from the kernels' predicates): importing Numba or Triton is
# slow, and loading a backend should not pay for it.
@functools.lru_cache(maxsize=1)
def numba_available() -> bool:
    try:
        import numba
    except ImportError:
        return False
    return hasattr(numba, "njit")  # the library, not a stray module of its name


@functools.lru_cache(maxsize=1)
def triton_available() -> bool:
    try:
        import triton
    except ImportError:
        return False
    return hasattr(triton, "jit")


def _numpy_or_cpu_torch(x) -> bool:
    import array_api_compat as aac
    if not (aac.is_numpy_array(x) or (aac.is_torch_array(x) and x.device.type == "cpu")):
        return False
    return numba_available()


def _cuda_torch(x) -> bool:
    import array_api_compat as aac
    return aac.is_torch_array(x) and x.device.type == "cuda" and triton_available()


@functools.lru_cache(maxsize=1)
def _torch_cuda() -> bool:
    """torch with CUDA next to CuPy: the Triton kernels then take CuPy arrays as torch views."""
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _cupy(x) -> bool:
    import array_api_compat as aac
    return aac.is_cupy_array(x) and _torch_cuda() and triton_available()


# The kernels' modules load on a kernel's first call, after its predicate has found the
# library; the predicates run only when a sampler asks for a fused path.
def _numba_checkerboard(x, plan, stream):
    from .numba import checkerboard_sweep
    return checkerboard_sweep(x, plan, stream)


def _numba_hmc(*args):
    from .numba import hmc_trajectory
    return hmc_trajectory(*args)


def _numba_measure(name):
    """The one-pass measurement ``name`` ("phi4" or "ising") of a NumPy array or a CPU tensor:
    the per-chain sums, in the array's own library."""
    def call(x):
        from .numba import measure
        from .numba.common import host
        h, back = host(x)
        return back(getattr(measure, f"{name}_sums")(h))
    call.__name__ = f"_numba_measure_{name}"
    return call


def _numba_draw(kind):
    """A Philox draw ``kind`` ("normals", "uniforms": bit for bit the generator's) in the library
    of ``like``."""
    def call(like, shape, dtype, stream):
        import numpy as np

        from .numba import philox
        from .numba.common import host
        return host(like)[1](getattr(philox, f"philox_{kind}")(shape, getattr(np, dtype), stream))
    call.__name__ = f"_numba_{kind}"
    return call


def _triton_checkerboard(*args):
    from .triton_kernels import checkerboard_sweep
    return checkerboard_sweep(*args)


def _triton_hmc(*args):
    from .triton_kernels import hmc_trajectory
    return hmc_trajectory(*args)


def _through_torch(kernel):
    """The Triton ``kernel`` for CuPy arrays: torch.as_tensor reads the CUDA array interface
    (zero copy), cupy.asarray reads the results back the same way."""
    def call(*args):
        import cupy
        import torch
        conv = [torch.as_tensor(a, device="cuda") if isinstance(a, cupy.ndarray) else a for a in args]
        out = kernel(*conv)
        return tuple(cupy.asarray(o) if isinstance(o, torch.Tensor) else o for o in out)
    call.__name__ = kernel.__name__
    return call


_DONE: set = set()


def register() -> None:
    """Register the CPU kernels (Numba) and the GPU kernels (Triton), once; each applies where
    its library imports, which its predicate asks on first use."""
    from portable_lattice._delegation import register_fused
    if _DONE:
        return
    register_fused("checkerboard", _numpy_or_cpu_torch, _numba_checkerboard)
    register_fused("hmc", _numpy_or_cpu_torch, _numba_hmc)
    register_fused("measure_phi4", _numpy_or_cpu_torch, _numba_measure("phi4"))
    register_fused("measure_ising", _numpy_or_cpu_torch, _numba_measure("ising"))
    register_fused("philox_normals", _numpy_or_cpu_torch, _numba_draw("normals"))
    register_fused("philox_uniforms", _numpy_or_cpu_torch, _numba_draw("uniforms"))
    register_fused("checkerboard", _cuda_torch, _triton_checkerboard)
    register_fused("hmc", _cuda_torch, _triton_hmc)
    register_fused("checkerboard", _cupy, _through_torch(_triton_checkerboard))
    register_fused("hmc", _cupy, _through_torch(_triton_hmc))
    _DONE.add("registered")
