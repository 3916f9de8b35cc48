"""NumPy backend: the CPU reference."""
from __future__ import annotations

import functools
import os

import numpy as np
import array_api_compat.numpy as xp_numpy

from ._base import Backend, BackendUnavailableError, check_shape, float_name

__all__ = ["make_backend", "NumpyGenerator"]


_PARTS = 2             # large draws come from this many independent sub-streams ...
_SPLIT_SIZE = 1 << 16  # ... from this many numbers on (below it, threads cost more than they save)
_POOL: list = []


def _pool():
    from concurrent.futures import ThreadPoolExecutor
    if not _POOL:
        # a forked child inherits the pool object but not its threads: start afresh there
        os.register_at_fork(after_in_child=_POOL.clear)
        _POOL.append(ThreadPoolExecutor(max_workers=_PARTS - 1, thread_name_prefix="portable_lattice-rng"))
    return _POOL[0]


class NumpyGenerator:
    """PCG64 streams; draws of shape ``(chains, ...)`` give each chain its own numbers.

    Small draws come from one PCG64 stream seeded with ``seed``. Large ones (at least
    ``_SPLIT_SIZE`` numbers: a sweep's uniforms, HMC momenta) are filled in two halves
    from two further streams, spawned from the same seed (NumPy's SeedSequence, so
    all three are independent), in two threads: NumPy releases the GIL while it
    fills, and drawing is a large share of a sweep. The split is fixed, not the
    machine's core count, so a seed gives the same numbers everywhere.
    """

    def __init__(self, seed: int):
        self._g = np.random.Generator(np.random.PCG64(seed))
        self._parts = [np.random.Generator(np.random.PCG64(child))
                       for child in np.random.SeedSequence(seed).spawn(_PARTS)]

    def _fill(self, fill, shape, dtype):
        """An array of ``shape``, ``fill(generator, flat_chunk)`` writing each chunk in place:
        small draws from the main stream, large ones in ``_PARTS`` chunks from the sub-streams,
        all but the first in the pool's threads."""
        shape = check_shape(shape)
        n = int(np.prod(shape))
        out = np.empty(shape, dtype=dtype)
        flat = out.reshape(-1)
        if n < _SPLIT_SIZE:
            fill(self._g, flat)
            return out
        bounds = [n * k // _PARTS for k in range(_PARTS + 1)]
        chunks = [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        pending = [_pool().submit(fill, g, c) for g, c in zip(self._parts[1:], chunks[1:])]
        fill(self._parts[0], chunks[0])
        for f in pending:
            f.result()
        return out

    def uniform(self, shape, dtype):
        return self._fill(lambda g, c: g.random(out=c, dtype=c.dtype), shape, np.dtype(float_name(dtype)))

    def bits32(self, shape):
        """int32 uniform on [-2**31, 2**31): the raw 64-bit PCG64 outputs, two int32 from each
        (little-endian halves), split over the sub-streams as :meth:`uniform` is."""
        def raw(g, c):
            # random_raw releases the GIL but has no out=: fill its own buffer, copied in
            c[:] = g.bit_generator.random_raw((c.size + 1) // 2).view(np.int32)[:c.size]
        return self._fill(raw, shape, np.int32)

    def normal(self, shape, dtype):
        return self._fill(lambda g, c: g.standard_normal(out=c, dtype=c.dtype), shape, np.dtype(float_name(dtype)))

    def integers(self, high, shape):
        return self._g.integers(0, high, size=check_shape(shape), dtype=np.int64)

    def get_state(self):
        return {"kind": "numpy-pcg64", "state": self._g.bit_generator.state,
                "parts": [g.bit_generator.state for g in self._parts]}

    def set_state(self, state):
        if state.get("kind") != "numpy-pcg64" or len(state.get("parts", ())) != _PARTS:
            raise ValueError(f"state is not a numpy generator state: kind={state.get('kind')!r}")
        self._g.bit_generator.state = state["state"]
        for g, st in zip(self._parts, state["parts"]):
            g.bit_generator.state = st


def make_backend(device=None) -> Backend:
    if device not in (None, "cpu"):
        raise BackendUnavailableError(
            f"the numpy backend runs on the CPU only, got device={device!r}")
    return Backend(
        name="numpy", xp=xp_numpy, device="cpu",
        _make_rng=NumpyGenerator,
        _to_numpy=np.asarray,
        _from_numpy=lambda a: np.asarray(a),
    )


# --- native fast paths -----------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _lattice_graph(shape):
    """For a (chains, L, ..., L) lattice: flat site indices; per direction mu, the flat index
    of each site's neighbour x + e_mu (periodic); and the CSR row pointers and (unit) edge
    weights of a graph with d entries per site. Read-only, shared between calls."""
    n, d = int(np.prod(shape)), len(shape) - 1
    itype = np.int32 if n * d < 2 ** 31 else np.int64
    idx = np.arange(n, dtype=itype).reshape(shape)
    ahead = [np.roll(idx, -1, axis=mu) for mu in range(1, d + 1)]
    indptr, weights = np.arange(0, n * d + 1, d, dtype=itype), np.ones(n * d)
    for a in [idx, indptr, weights] + ahead:
        a.flags.writeable = False
    return idx, ahead, indptr, weights


def scipy_cluster_ids(bonds):
    """Compact cluster ids with scipy.sparse.csgraph.connected_components (one call for all chains:
    the chains' graphs are disjoint blocks of one sparse graph). SciPy numbers the components in
    the order of their smallest node, the order ``cluster_ids`` promises. Returns (flat ids, count).

    The graph is built directly in CSR form with d entries per site: the neighbour along mu
    where the bond is active, else the site itself (a self-loop, which joins nothing). That
    needs no compaction, sorting or duplicate summing, the costly part of COO -> CSR.
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    shape = tuple(bonds[0].shape)
    d = len(bonds)
    idx, ahead, indptr, weights = _lattice_graph(shape)
    n = idx.size
    indices = np.empty(shape + (d,), dtype=idx.dtype)
    for mu, b in enumerate(bonds):
        np.copyto(indices[..., mu], np.where(np.asarray(b), ahead[mu], idx))
    # float64 weights: the dtype csgraph works in, so it does not convert
    graph = sp.csr_matrix((weights, indices.reshape(-1), indptr), shape=(n, n))
    ncomp, comp = connected_components(graph, directed=False)
    return comp, int(ncomp)  # SciPy's int32 ids: an index array as good as int64, without the copy


def scipy_cluster_labels(bonds):
    """Canonical cluster labels (smallest flat index per cluster) from :func:`scipy_cluster_ids`."""
    comp, ncomp = scipy_cluster_ids(bonds)
    comp = comp.astype(np.int64)
    first = np.empty(ncomp, dtype=np.int64)
    first[comp[::-1]] = np.arange(comp.size - 1, -1, -1, dtype=np.int64)  # repeated indices: the last write (smallest index) wins
    return first[comp].reshape(bonds[0].shape)


def _register():
    import array_api_compat
    from portable_lattice._delegation import Route, register, register_absent
    np_ns = array_api_compat.is_numpy_namespace
    register(Route("implementation", "cluster_labels", ("numpy",), "scipy.sparse.csgraph.connected_components on a "
                   "CSR lattice graph", np_ns, scipy_cluster_labels))
    register(Route("implementation", "cluster_ids", ("numpy",), "SciPy's component numbering (already in order of "
                   "the smallest site)", np_ns, scipy_cluster_ids))
    register(Route("library", "inplace_site_writes", ("numpy",), "array-api-extra's at(...).set: O(1) per "
                   "random-site update"))
    register_absent("implementation", "lookup", "numpy", "array-api-compat's take is already one gather")
    register_absent("implementation", "upscale_field", "numpy", "the generic coarse-lattice rolls are the NumPy path")
    register_absent("accelerator", "torch.compile", "numpy", "no tracing compiler for NumPy arrays")
    from .fused import register as register_fused  # numba kernels for numpy and CPU torch arrays
    register_fused()


def spawn_seed(seed: int, index: int) -> int:
    """A 63-bit seed for task ``index`` of a run seeded with ``seed``: NumPy's
    ``SeedSequence(seed, spawn_key=(index,))``, so tasks are independent and a task's seed
    does not depend on which worker runs it."""
    state = np.random.SeedSequence(int(seed), spawn_key=(int(index),)).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


_register()
