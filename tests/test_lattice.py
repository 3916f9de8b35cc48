import itertools

import numpy as np
import pytest

from portable_lattice.lattice import (check_field, forward_sum, neighbour_sum, parity,
                                      sublattice_masks)


@pytest.mark.parametrize("dim", [1, 2, 3, 4])
def test_neighbour_sums_match_loops(backend, dim):
    L = 4
    host = np.random.default_rng(dim).normal(size=(2,) + (L,) * dim)
    phi = backend.from_numpy(host, "float64")
    nsum, fsum = backend.to_numpy(neighbour_sum(phi)), backend.to_numpy(forward_sum(phi))
    for x in itertools.product(range(L), repeat=dim):
        want_n = want_f = 0.0
        for mu in range(dim):
            up, dn = list(x), list(x)
            up[mu], dn[mu] = (x[mu] + 1) % L, (x[mu] - 1) % L
            want_n += host[(1,) + tuple(up)] + host[(1,) + tuple(dn)]
            want_f += host[(1,) + tuple(up)]
        assert nsum[(1,) + x] == pytest.approx(want_n) and fsum[(1,) + x] == pytest.approx(want_f)


def test_parity_has_no_equal_neighbours(backend):
    p = backend.to_numpy(parity(backend.xp, 6, 2, backend.device))
    assert p.sum() == 18
    for mu in range(2):
        assert np.all(p != np.roll(p, 1, axis=mu))


@pytest.mark.parametrize("dim,stride", [(2, 2), (2, 3), (3, 2), (1, 4)])
def test_sublattices_partition_and_are_spread(backend, dim, stride):
    L = 12
    masks = [backend.to_numpy(m) for m in sublattice_masks(backend.xp, L, dim, stride, backend.device)]
    assert len(masks) == stride ** dim
    assert np.array_equal(sum(m.astype(int) for m in masks), np.ones((L,) * dim, int))
    for m in masks:
        pts = np.argwhere(m)
        for a, b in itertools.combinations(pts[:6], 2):
            diff = np.abs(a - b)
            per = np.minimum(diff, L - diff)
            assert per.max() >= stride  # distinct members differ by >= stride along some axis
            assert np.all((per == 0) | (per >= stride))


def test_sublattice_needs_divisible_L(xp):
    with pytest.raises(ValueError, match="L=10 and stride=3"):
        sublattice_masks(xp, 10, 2, 3)


def test_lattice_and_field_validation(backend):
    with pytest.raises(ValueError, match="shape"):
        check_field(backend.zeros((4, 6, 5)))
    with pytest.raises(ValueError, match="shape"):
        check_field(backend.zeros((6,)))
    with pytest.raises(TypeError, match="dtype"):
        check_field(backend.xp.zeros((2, 4, 4), dtype=backend.xp.int64, device=backend.device))
    with pytest.raises(TypeError, match="float32"):
        check_field(backend.zeros((2, 4, 4), "float64"), dtype=backend.xp.float32)
    with pytest.raises(TypeError, match="list"):
        check_field([[1.0]])


@pytest.mark.parametrize("dim,L,stride", [(1, 8, 2), (2, 6, 2), (2, 6, 3), (3, 4, 2), (4, 4, 2)])
def test_block_split_and_merge(backend, dim, L, stride):
    from portable_lattice.lattice import block_merge, block_split
    host = np.random.default_rng(dim).normal(size=(2,) + (L,) * dim)
    blocks = block_split(backend.from_numpy(host, "float64"), stride)
    assert tuple(blocks.shape) == (2, stride ** dim) + (L // stride,) * dim
    b = backend.to_numpy(blocks)
    # block k holds the sites stride * X + o, o the C-order digits of k in base stride
    k = stride ** dim - 1
    o = [(k // stride ** (dim - 1 - mu)) % stride for mu in range(dim)]
    np.testing.assert_array_equal(b[:, k], host[(slice(None),) + tuple(slice(om, None, stride) for om in o)])
    np.testing.assert_array_equal(backend.to_numpy(block_merge(blocks, stride)), host)


@pytest.mark.parametrize("dim", [1, 2, 3, 4])
def test_checkerboard_layout(backend, dim):
    """Split/merge round-trips, parities come out right, and the blocked neighbour sum
    equals the full-lattice one."""
    from portable_lattice.lattice import Checkerboard
    L = 4 if dim > 2 else 6
    host = np.random.default_rng(dim).normal(size=(2,) + (L,) * dim)
    phi = backend.from_numpy(host, "float64")
    board = Checkerboard(dim)
    even, odd = board.split(phi)
    np.testing.assert_array_equal(backend.to_numpy(board.merge(even, odd)), host)
    par = np.broadcast_to(parity(np, L, dim), host.shape).astype(float)
    pe, po = Checkerboard(dim).split(par)
    assert np.all(pe == 0) and np.all(po == 1)
    ns_even, ns_odd = board.split(neighbour_sum(phi))
    np.testing.assert_allclose(backend.to_numpy(board.neighbour_sum(odd, 0)), backend.to_numpy(ns_even))
    np.testing.assert_allclose(backend.to_numpy(board.neighbour_sum(even, 1)), backend.to_numpy(ns_odd))
