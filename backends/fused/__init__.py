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


def _numpy_with_numba(x) -> bool:
    import array_api_compat as aac
    return aac.is_numpy_array(x) and numba_available()


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


def _numba_vector(mine, other, g, log_u, plan):
    from .numba.common import host
    from .numba.vector import metropolis_half
    h, back = host(mine)
    return back(metropolis_half(h, host(other)[0], host(g)[0], host(log_u)[0], plan))


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


_NUMBA = ("numpy", "torch:cpu")
_NUMBA_DOC = "Numba @njit(parallel=True) (pip install 'portable-lattice[fast]'); CPU tensors through zero-copy views"
_GPU_MEASURE = "the generic reductions run on the GPU (one pass each)"


def register() -> None:
    """Register the CPU kernels (Numba) and the GPU kernels (Triton), once; each applies where
    its library imports, which its predicate asks on first use."""
    from portable_lattice._delegation import Route, register as route, register_absent
    if _DONE:
        return
    route(Route("fused", "checkerboard", _NUMBA, f"{_NUMBA_DOC}: both parities in place, phi^4 and Ising",
                _numpy_or_cpu_torch, _numba_checkerboard))
    route(Route("fused", "hmc", _NUMBA, f"{_NUMBA_DOC}: one pass per integration step", _numpy_or_cpu_torch,
                _numba_hmc))
    route(Route("fused", "vector_metropolis", ("numpy",), "Numba @njit(parallel=True) (pip install "
                "'portable-lattice[fast]'): an O(n) Metropolis hit on one parity's blocks in one pass, the generic "
                "draws", _numpy_with_numba, _numba_vector))
    register_absent("fused", "vector_metropolis", "torch:cpu", "torch's CPU sqrt and vectorised sums round "
                    "differently in the last bit from a compiled loop's, so a Numba twin would not be "
                    "bit-identical to the generic torch sweep")
    for name in ("phi4", "ising"):
        route(Route("fused", f"measure_{name}", _NUMBA, f"{_NUMBA_DOC}: the per-chain sums in one pass",
                    _numpy_or_cpu_torch, _numba_measure(name)))
    for kind in ("normals", "uniforms"):
        route(Route("fused", f"philox_{kind}", _NUMBA, f"{_NUMBA_DOC}: the generator's Philox {kind}, bit for bit",
                    _numpy_or_cpu_torch, _numba_draw(kind)))
    route(Route("fused", "checkerboard", ("torch:cuda",), "Triton: one launch per parity, Philox numbers in "
                "registers (triton ships with torch's CUDA builds)", _cuda_torch, _triton_checkerboard))
    route(Route("fused", "hmc", ("torch:cuda",), "Triton: one launch per integration step, the Hamiltonian's "
                "sums in the first and last", _cuda_torch, _triton_hmc))
    route(Route("fused", "checkerboard", ("cupy",), "the Triton kernel on zero-copy torch views (torch.as_tensor "
                "of the CUDA array interface), where torch with CUDA and triton are installed", _cupy,
                _through_torch(_triton_checkerboard)))
    route(Route("fused", "hmc", ("cupy",), "the Triton kernel on zero-copy torch views, where torch with CUDA "
                "and triton are installed", _cupy, _through_torch(_triton_hmc)))
    for gpu in ("torch:cuda", "cupy"):
        register_absent("fused", "vector_metropolis", gpu, "no Triton twin yet: the generic blocked sweep runs on "
                        "the GPU")
        for name in ("measure_phi4", "measure_ising"):
            register_absent("fused", name, gpu, _GPU_MEASURE)
        for name in ("philox_normals", "philox_uniforms"):
            register_absent("fused", name, gpu, "the stream's own Philox generator draws on the GPU")
    _DONE.add("registered")
