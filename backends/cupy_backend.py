"""CuPy backend (NVIDIA GPUs).

Random numbers: CuPy's generators cannot export their state, so a stream is
defined by ``(seed, counter)``: every draw seeds a fresh generator from that
pair. The state is then two integers, trivially checkpointed, and a resumed
run continues bit for bit. The bit generator is the counter-based
Philox4x32-10, whose seeding is cheap (measured an order of magnitude cheaper than
``cupy.random.default_rng``: XORWOW's per-thread seeding dominates a fresh generator).
"""
from __future__ import annotations

import functools

import numpy as np

from ._base import Backend, BackendUnavailableError, check_shape, float_name

__all__ = ["make_backend"]


def _import():
    try:
        import cupy
    except ImportError as e:
        raise BackendUnavailableError(
            "backend='cupy' needs CuPy: pip install 'portable_lattice[cupy]' (cupy-cuda12x)") from e
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDA driver missing: cupy imports but cannot run
        raise BackendUnavailableError(f"backend='cupy': no usable CUDA GPU ({e})") from e
    if n == 0:
        raise BackendUnavailableError("backend='cupy': no CUDA GPU on this machine")
    import array_api_compat.cupy as xp_cupy
    return cupy, xp_cupy


class CupyGenerator:
    def __init__(self, seed: int, device):
        self._seed, self._counter, self._device = seed, 0, device

    def _next(self):
        import cupy
        sub = int(np.random.SeedSequence([self._seed, self._counter]).generate_state(1, np.uint64)[0])
        self._counter += 1
        with self._device:
            return cupy.random.Generator(cupy.random.Philox4x3210(sub))

    def uniform(self, shape, dtype):
        g = self._next()
        with self._device:
            return g.random(check_shape(shape), dtype=np.dtype(float_name(dtype)))

    def normal(self, shape, dtype):
        g = self._next()
        with self._device:
            return g.standard_normal(check_shape(shape), dtype=np.dtype(float_name(dtype)))

    def integers(self, high, shape):
        import cupy
        g = self._next()
        with self._device:
            return g.integers(0, high, size=check_shape(shape), dtype=cupy.int64)

    def bits32(self, shape):
        import cupy
        g = self._next()
        with self._device:
            # a float64 uniform is k / 2**53 with k uniform, so floor(u 2**32) is exactly
            # uniform on [0, 2**32): built from the draw CuPy documents for every bit generator
            u = g.random(check_shape(shape), dtype=cupy.float64)
            return (cupy.floor(u * 2.0 ** 32) - 2.0 ** 31).astype(cupy.int32)

    def get_state(self):
        return {"kind": "cupy-seed-counter", "seed": self._seed, "counter": self._counter}

    def set_state(self, state):
        if state.get("kind") != "cupy-seed-counter":
            raise ValueError(f"state is not a cupy generator state: kind={state.get('kind')!r}")
        self._seed, self._counter = int(state["seed"]), int(state["counter"])


def make_backend(device=None) -> Backend:
    cupy, xp = _import()
    if device in (None, "cuda"):
        index = 0
    elif isinstance(device, str) and device.startswith("cuda:") and device[5:].isdigit():
        index = int(device[5:])
    elif isinstance(device, int):
        index = device
    elif isinstance(device, cupy.cuda.Device):  # e.g. another cupy backend's ``device``
        index = device.id
    else:
        raise BackendUnavailableError(f"the cupy backend takes device 'cuda' or 'cuda:N', got device={device!r}")
    if index >= cupy.cuda.runtime.getDeviceCount():
        raise BackendUnavailableError(
            f"device={device!r}: only {cupy.cuda.runtime.getDeviceCount()} GPU(s) visible")
    dev = cupy.cuda.Device(index)

    def from_numpy(a):
        with dev:
            return cupy.asarray(np.asarray(a))

    return Backend(name="cupy", xp=xp, device=dev,
                   _make_rng=lambda seed: CupyGenerator(seed, dev),
                   _to_numpy=lambda a: cupy.asnumpy(a), _from_numpy=from_numpy)


# --- native fast paths -----------------------------------------------------------------
def cupy_cluster_labels(bonds):
    """Canonical cluster labels with cupyx.scipy.sparse.csgraph.connected_components on the GPU
    (same construction as the NumPy/SciPy fast path). Registered only where pylibcugraph is installed."""
    import cupy
    import cupyx.scipy.sparse as sp
    from cupyx.scipy.sparse.csgraph import connected_components

    shape = bonds[0].shape
    n = 1
    for k in shape:
        n *= int(k)
    idx = cupy.arange(n, dtype=cupy.int64).reshape(shape)
    rows = cupy.concatenate([idx[b] for b in bonds])
    cols = cupy.concatenate([cupy.roll(idx, -1, axis=mu + 1)[b] for mu, b in enumerate(bonds)])
    graph = sp.coo_matrix((cupy.ones(rows.size, dtype=cupy.float32), (rows, cols)), shape=(n, n)).tocsr()
    ncomp, comp = connected_components(graph, directed=False)
    first = cupy.full(int(ncomp), n, dtype=cupy.int64)
    cupy.minimum.at(first, comp, cupy.arange(n, dtype=cupy.int64))
    return first[comp].reshape(shape)


@functools.lru_cache(maxsize=1)
def _has_cugraph() -> bool:
    """cupyx's connected_components runs on pylibcugraph (RAPIDS), an install of its own."""
    try:
        import pylibcugraph  # noqa: F401
    except ImportError:
        return False
    return True


def _register():
    import array_api_compat
    from portable_lattice._delegation import Route, register, register_absent

    def cupy_with_cugraph(xp):
        # without pylibcugraph, cupyx's connected_components raises at call time; the generic label
        # propagation (pointer jumping, all on the GPU) then serves CuPy arrays
        return array_api_compat.is_cupy_namespace(xp) and _has_cugraph()

    register(Route("implementation", "cluster_labels", ("cupy",), "cupyx.scipy.sparse.csgraph, only where RAPIDS' "
                   "pylibcugraph is installed (else generic label propagation on the GPU)", cupy_with_cugraph,
                   cupy_cluster_labels))
    register(Route("library", "inplace_site_writes", ("cupy",), "array-api-extra's at(...).set"))
    register_absent("implementation", "cluster_ids", "cupy", "ranked labels from cluster_labels")
    register_absent("implementation", "lookup", "cupy", "cupy.take is already one gather")
    register_absent("implementation", "upscale_field", "cupy", "the generic coarse-lattice rolls run on the GPU")
    register_absent("accelerator", "torch.compile", "cupy", "no tracing compiler for CuPy arrays")


_register()
