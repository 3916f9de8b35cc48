"""NumPy backend: the CPU reference."""
from __future__ import annotations

import numpy as np
import array_api_compat.numpy as xp_numpy

from ._base import Backend, BackendUnavailableError, check_shape

__all__ = ["make_backend", "NumpyGenerator"]


class NumpyGenerator:
    """PCG64 stream; draws of shape ``(chains, ...)`` give each chain its own numbers."""

    def __init__(self, seed: int):
        self._g = np.random.Generator(np.random.PCG64(seed))

    def uniform(self, shape, dtype):
        return self._g.random(check_shape(shape), dtype=dtype)

    def normal(self, shape, dtype):
        return self._g.standard_normal(check_shape(shape), dtype=dtype)

    def integers(self, high, shape):
        return self._g.integers(0, high, size=check_shape(shape), dtype=np.int64)

    def get_state(self):
        return {"kind": "numpy-pcg64", "state": self._g.bit_generator.state}

    def set_state(self, state):
        if state.get("kind") != "numpy-pcg64":
            raise ValueError(f"state is not a numpy generator state: kind={state.get('kind')!r}")
        self._g.bit_generator.state = state["state"]


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
def scipy_cluster_ids(bonds):
    """Compact cluster ids with scipy.sparse.csgraph.connected_components (one call for all chains:
    the chains' graphs are disjoint blocks of one sparse graph). SciPy numbers the components in
    the order of their smallest node, the order ``cluster_ids`` promises. Returns (flat ids, count)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    shape = bonds[0].shape
    n = int(np.prod(shape))
    idx = np.arange(n, dtype=np.int64).reshape(shape)
    rows, cols = [], []
    for mu, b in enumerate(bonds):
        b = np.asarray(b)
        rows.append(idx[b])
        cols.append(np.roll(idx, -1, axis=mu + 1)[b])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = sp.coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(n, n)).tocsr()
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
    from portable_lattice._delegation import register_implementation
    register_implementation("cluster_labels", array_api_compat.is_numpy_namespace, scipy_cluster_labels)
    register_implementation("cluster_ids", array_api_compat.is_numpy_namespace, scipy_cluster_ids)


_register()
