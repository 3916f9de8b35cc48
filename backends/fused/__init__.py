"""Fused kernels: Numba on the CPU (NumPy arrays, CPU torch tensors), registered with the core's
delegation layer when a backend loads (the optional ``fast`` extra installs Numba).

The core builds a plan (:mod:`portable_lattice.samplers.fused`); a kernel here only carries
it out. Every kernel is bit-identical to its generic twin, which the tests check.
"""
from __future__ import annotations

import importlib.util

__all__ = ["numba_available", "register"]


def numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None


def _numpy_or_cpu_torch(x) -> bool:
    import array_api_compat as aac
    if aac.is_numpy_array(x):
        return True
    return aac.is_torch_array(x) and x.device.type == "cpu"


def _lazy(name):
    def call(*args, **kwargs):
        from . import numba_kernels
        return getattr(numba_kernels, name)(*args, **kwargs)
    call.__name__ = name
    return call


_DONE: list = []


def register() -> None:
    """Register the CPU kernels (once) where Numba is installed."""
    if _DONE or not numba_available():
        return
    from portable_lattice._delegation import register_fused
    register_fused("checkerboard", _numpy_or_cpu_torch, _lazy("checkerboard_sweep"))
    register_fused("hmc", _numpy_or_cpu_torch, _lazy("hmc_trajectory"))
    _DONE.append(True)
