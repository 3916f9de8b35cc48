"""torch backend (CPU or CUDA), through array-api-compat's torch namespace."""
from __future__ import annotations

import numpy as np

from ._base import Backend, BackendUnavailableError, check_shape, float_name

__all__ = ["make_backend", "TorchCPUGenerator", "TorchGenerator", "use_compile", "compile_for_run",
           "compile_enabled"]


def _import():
    try:
        import torch
    except ImportError as e:
        raise BackendUnavailableError(
            "backend='torch' needs PyTorch: pip install 'portable_lattice[torch]' "
            "(on CPU-only machines pin torch==2.13.0)") from e
    import array_api_compat.torch as xp_torch
    return torch, xp_torch


class TorchCPUGenerator:
    """Seeded random numbers for CPU tensors: the NumPy backend's generator, wrapped without a copy.

    torch's own CPU generator (MT19937) fills arrays serially, measured at about half the
    speed of NumPy's PCG64, and a Monte Carlo sweep spends much of its time drawing.
    Same seed, same numbers as the NumPy backend (large draws split over two threads).
    """

    def __init__(self, seed: int):
        import torch
        from .numpy_backend import NumpyGenerator
        self._torch, self._np = torch, NumpyGenerator(seed)

    def uniform(self, shape, dtype):
        return self._torch.from_numpy(self._np.uniform(shape, dtype))

    def normal(self, shape, dtype):
        return self._torch.from_numpy(self._np.normal(shape, dtype))

    def integers(self, high, shape):
        return self._torch.from_numpy(self._np.integers(high, shape))

    def bits32(self, shape):
        return self._torch.from_numpy(self._np.bits32(shape))

    def get_state(self):
        return {"kind": "torch-cpu", "state": self._np.get_state()}

    def set_state(self, state):
        if state.get("kind") != "torch-cpu":
            raise ValueError(f"state is not a torch-cpu generator state: kind={state.get('kind')!r}")
        self._np.set_state(state["state"])


class TorchGenerator:
    """A Philox ``torch.Generator`` on a CUDA device."""

    def __init__(self, seed: int, device):
        import torch
        self._torch = torch
        self._device = device
        self._g = torch.Generator(device=device)
        self._g.manual_seed(seed)

    def uniform(self, shape, dtype):
        return self._torch.rand(check_shape(shape), generator=self._g, dtype=getattr(self._torch, float_name(dtype)),
                                device=self._device)

    def normal(self, shape, dtype):
        return self._torch.randn(check_shape(shape), generator=self._g,
                                 dtype=getattr(self._torch, float_name(dtype)), device=self._device)

    def integers(self, high, shape):
        return self._torch.randint(0, high, check_shape(shape), generator=self._g,
                                   dtype=self._torch.int64, device=self._device)

    def bits32(self, shape):
        return self._torch.randint(-2 ** 31, 2 ** 31, check_shape(shape), generator=self._g,
                                   dtype=self._torch.int32, device=self._device)

    def get_state(self):
        return {"kind": "torch", "device": str(self._device),
                "state": self._g.get_state().numpy().tobytes()}

    def set_state(self, state):
        if state.get("kind") != "torch":
            raise ValueError(f"state is not a torch generator state: kind={state.get('kind')!r}")
        buf = np.frombuffer(state["state"], dtype=np.uint8).copy()
        self._g.set_state(self._torch.from_numpy(buf))


def make_backend(device=None) -> Backend:
    torch, xp = _import()
    try:
        dev = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError) as e:
        raise BackendUnavailableError(f"torch does not know device={device!r}") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"device={device!r} asked for, but torch sees no CUDA GPU on this machine")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        if dev.index >= torch.cuda.device_count():
            raise BackendUnavailableError(
                f"device={device!r}: torch sees only {torch.cuda.device_count()} GPU(s)")
    elif dev.type != "cpu":
        raise BackendUnavailableError(f"the torch backend supports cpu and cuda, got device={device!r}")

    def to_numpy(a):
        return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)

    def from_numpy(a):
        return torch.as_tensor(np.asarray(a), device=dev)

    return Backend(name="torch", xp=xp, device=dev,
                   _make_rng=(TorchCPUGenerator if dev.type == "cpu"
                              else lambda seed: TorchGenerator(seed, dev)),
                   _to_numpy=to_numpy, _from_numpy=from_numpy)


# --- native fast path: torch.compile over the core's own kernels (opt-in) ---------------
import os as _os
import warnings as _warnings

import contextlib as _contextlib
import contextvars as _contextvars

_COMPILE = {"on": _os.environ.get("PORTABLE_LATTICE_TORCH_COMPILE", "") == "1"}
#: a run's own setting (``compile_for_run``): None follows the process-wide switch. A context
#: variable, so concurrent runs in one process (threads, e.g. a Dask worker's) never see each
#: other's setting
_RUN_COMPILE: _contextvars.ContextVar = _contextvars.ContextVar("portable_lattice_torch_compile", default=None)


def use_compile(flag: bool = True) -> bool:
    """Fuse the kernels' arithmetic with ``torch.compile`` (returns the previous setting).

    The compiled functions are the core's Array API code itself, traced by
    TorchDynamo and fused by Inductor (C++/OpenMP on CPU, Triton on CUDA);
    random numbers stay on the seeded generator, outside the compiled region.
    The first call per kernel and shape compiles (tens of seconds on a small
    CPU), so it pays off for long runs. Needs a C++ compiler on CPU; if
    compilation fails the generic path runs, with one warning.
    Also switched on by ``PORTABLE_LATTICE_TORCH_COMPILE=1``.

    This is the process-wide default. A run sets its own with
    :func:`compile_for_run` (``simulate(..., compile=True)`` does), which
    overrides it in that run's thread or task only.
    """
    previous = _COMPILE["on"]
    _COMPILE["on"] = bool(flag)
    return previous


def compile_enabled() -> bool:
    """Whether ``torch.compile`` applies here: the current run's setting, else the process-wide one."""
    run = _RUN_COMPILE.get()
    return _COMPILE["on"] if run is None else run


@_contextlib.contextmanager
def compile_for_run(flag: bool | None):
    """``torch.compile`` on (True) or off (False) for the code inside, in this thread / context
    only (None: follow :func:`use_compile`); other threads' runs are unaffected."""
    token = _RUN_COMPILE.set(None if flag is None else bool(flag))
    try:
        yield
    finally:
        _RUN_COMPILE.reset(token)


def _compile(fn):
    import torch

    # array-api-compat's namespace helpers are lru_cached; Dynamo traces through them
    # (harmless here: they are pure type checks) and says so once per call site
    _warnings.filterwarnings("ignore", message=".*functools.lru_cache.*", category=UserWarning)
    compiled = torch.compile(fn, dynamic=False)
    state = {"failed": False}

    def call(*args, **kwargs):
        if not state["failed"]:
            try:
                return compiled(*args, **kwargs)
            except Exception as e:  # a missing toolchain must not stop a run
                state["failed"] = True
                _warnings.warn(f"torch.compile failed for {getattr(fn, '__qualname__', fn)} "
                               f"({type(e).__name__}: {str(e)[:200]}); using the generic path",
                               RuntimeWarning, stacklevel=2)
        return fn(*args, **kwargs)

    return call


def _register():
    import array_api_compat
    from portable_lattice._delegation import Route, register

    torch_ns = array_api_compat.is_torch_namespace
    for key, doc in (("torch:cpu", "Inductor (C++/OpenMP), opt-in: simulate(..., compile=True)"),
                     ("torch:cuda", "Inductor (Triton), opt-in: simulate(..., compile=True)")):
        register(Route("accelerator", "torch.compile", (key,), doc, torch_ns, _compile, enabled=compile_enabled))


_register()


def _torch_cluster_labels(bonds):
    """CPU tensors: SciPy's connected components through zero-copy NumPy views; CUDA: Triton's
    union-find where triton is installed, else the generic path."""
    import torch
    if bonds[0].device.type == "cuda":
        from .fused import triton_available
        if not triton_available():
            return NotImplemented  # the generic labelling runs on the GPU
        from .fused.triton_clusters import cluster_labels
        return cluster_labels(bonds)  # NotImplemented where it does not apply (d > 3, 2^31 sites)
    if bonds[0].device.type != "cpu":
        return NotImplemented
    from .numpy_backend import scipy_cluster_labels
    return torch.from_numpy(scipy_cluster_labels([b.numpy() for b in bonds]))


def _torch_cluster_ids(bonds):
    """CPU tensors: SciPy's compact ids through zero-copy views; CUDA: ranked generic labels."""
    import torch
    if bonds[0].device.type != "cpu":
        return NotImplemented  # ranked generic labels on the GPU
    from .numpy_backend import scipy_cluster_ids
    comp, ncomp = scipy_cluster_ids([b.numpy() for b in bonds])
    return torch.from_numpy(comp), ncomp


def _torch_lookup(table, index):
    """``table[index]`` by one index_select: array-api-compat's ``take`` first maps negative
    indices (three more passes over the index array, half the lookup's time on CPU)."""
    import torch
    return torch.index_select(table, 0, index.reshape(-1)).reshape(index.shape)


def _torch_upscale_field(mu, kernels, dtype):
    """The upscaling field of Eq. 9 of [IRG] as one conv2d on the coarse lattice: the four block
    offsets are four output channels (their coarse kernels ``kernels[o][D]``), interleaved by
    pixel_shuffle. Declines (NotImplemented) where circular padding is wider than the lattice."""
    import torch
    import torch.nn.functional as F
    taps = [D for K in kernels.values() for D in K]
    if not taps:
        return NotImplemented
    lo = min(min(d) for d in taps)
    hi = max(max(d) for d in taps)
    L = mu.shape[1]
    if max(-lo, hi) > L:
        return NotImplemented  # circular padding wider than the torus: the generic rolls wrap instead
    size = hi - lo + 1
    weight = torch.zeros((4, 1, size, size), dtype=dtype, device=mu.device)
    for c, o in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):  # channel 2 o0 + o1, pixel_shuffle's order
        for (dx, dy), v in kernels[o].items():
            weight[c, 0, dx - lo, dy - lo] = v
    x = F.pad(mu.to(dtype)[:, None], (-lo, hi, -lo, hi), mode="circular")
    return F.pixel_shuffle(F.conv2d(x, weight), 2)[:, 0]


def _register_labels():
    import array_api_compat
    from portable_lattice._delegation import Route, register, register_absent

    torch_ns = array_api_compat.is_torch_namespace
    # one function per operation; it looks at the tensors' device, so the CPU and CUDA entries
    # below share it and say what each device gets
    register(Route("implementation", "cluster_labels", ("torch:cpu",), "SciPy's connected components through "
                   "zero-copy NumPy views", torch_ns, _torch_cluster_labels))
    register(Route("implementation", "cluster_labels", ("torch:cuda",), "Triton union-find (Komura 2015: union "
                   "by atomic minimum, flatten, check; canonical labels; d = 2, 3, below 2^31 sites) where triton "
                   "is installed; else generic label propagation on the GPU", torch_ns, _torch_cluster_labels))
    register(Route("implementation", "cluster_ids", ("torch:cpu",), "SciPy's numbering through zero-copy NumPy "
                   "views", torch_ns, _torch_cluster_ids))
    register_absent("implementation", "cluster_ids", "torch:cuda", "ranked generic labels (the CPU route declines "
                    "CUDA tensors)")
    register(Route("implementation", "lookup", ("torch:cpu", "torch:cuda"), "torch.index_select (array-api-compat's "
                   "take remaps negative indices first)", torch_ns, _torch_lookup))
    register(Route("implementation", "upscale_field", ("torch:cpu", "torch:cuda"), "one conv2d with the four "
                   "block offsets as channels, then pixel_shuffle", torch_ns, _torch_upscale_field))
    register(Route("library", "inplace_site_writes", ("torch:cpu", "torch:cuda"), "array-api-extra's at(...).set"))


_register_labels()


def set_torch_threads(n: int, load: bool = False) -> int | None:
    """torch's intra-op thread count set to ``n``, where torch is already imported or ``load``
    asks for it (a run that does not use torch does not load it); the previous count, or None."""
    import sys
    if "torch" not in sys.modules and not load:
        return None
    import torch
    previous = torch.get_num_threads()
    if previous != n:
        torch.set_num_threads(n)
    return previous
