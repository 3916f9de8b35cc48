"""Cluster labelling: the generic label propagation, the native routines, compact ids."""
import numpy as np
import pytest

from portable_lattice._delegation import implementation
from portable_lattice.backends import capability
from portable_lattice.samplers.clusters import _ids_from_labels, cluster_ids, cluster_labels, label_propagation


@pytest.mark.parametrize("shape", [(3, 8, 8), (2, 5, 7 - 2), (2, 4, 4, 4)])
def test_generic_labels_equal_native(backend, shape):
    rng = np.random.default_rng(sum(shape))
    host = [rng.random(shape) < 0.55 for _ in range(len(shape) - 1)]
    bonds = [backend.from_numpy(b) for b in host]
    generic = backend.to_numpy(label_propagation(bonds))
    native = backend.to_numpy(cluster_labels(bonds))
    np.testing.assert_array_equal(generic, native)
    present, _ = capability("cluster_labels", backend.name, str(backend.device))
    if present and backend.name != "cupy":  # cupy's needs pylibcugraph, which may be missing
        # the registered routine itself (the dispatcher falls back to the generic one when it declines)
        routine = implementation("cluster_labels", backend.xp, label_propagation)
        assert routine is not label_propagation
        direct = routine.native(bonds)
        assert direct is not NotImplemented
        np.testing.assert_array_equal(backend.to_numpy(direct), generic)
    # canonical: every label is the smallest flat index of its cluster, and bonded sites share it
    flat = generic.reshape(-1)
    assert np.all(flat[flat] == flat) and np.all(flat <= np.arange(flat.size))
    for mu, b in enumerate(host):
        assert np.all(generic[b] == np.roll(generic, -1, axis=mu + 1)[b])
    # compact ids (native or ranked from the labels): clusters numbered by their smallest site
    ids, n_clusters = cluster_ids(bonds)
    roots = np.flatnonzero(flat == np.arange(flat.size))
    assert n_clusters == roots.size
    np.testing.assert_array_equal(backend.to_numpy(ids), np.searchsorted(roots, flat))
    generic_ids, generic_n = _ids_from_labels(bonds)
    np.testing.assert_array_equal(backend.to_numpy(generic_ids), backend.to_numpy(ids))


def test_scipy_labels_match_a_union_find():
    from portable_lattice.backends.numpy_backend import scipy_cluster_labels
    rng = np.random.default_rng(9)
    shape = (2, 6, 6)
    bonds = [rng.random(shape) < 0.5 for _ in range(2)]
    parent = list(range(72))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i
    idx = np.arange(72).reshape(shape)
    for mu, b in enumerate(bonds):
        for i, j in zip(idx[b], np.roll(idx, -1, axis=mu + 1)[b]):
            a, c = find(i), find(j)
            parent[max(a, c)] = min(a, c)
    want = np.array([find(i) for i in range(72)]).reshape(shape)
    np.testing.assert_array_equal(scipy_cluster_labels(bonds), want)
