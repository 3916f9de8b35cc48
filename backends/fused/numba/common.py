"""What the fused CPU kernels share: a chain seen as rows, the split of the rows into tasks,
the neighbour tables, and host views of NumPy arrays and CPU torch tensors.

Every kernel works on a chain as L^(d-1) rows of L sites (a C-order view of the field, so the
row r = x0 in 2d and r = x0 L + x1 in 3d) and on the generic path's blocked draws as rows of
h = L / 2 numbers. A kernel's loops then run over rows in both dimensions, and only
:func:`row_coords` and :func:`row_neighbours` know how a row sits in the lattice. Their ``d``
is a constant of the calling kernel (a closure variable of its factory), so their branches on
``d`` fold away when they are inlined.

The kernels bind each row view in a statement of its own: inside a ``prange`` loop, numba
can lose the writes through a view that was unpacked from a tuple of views and passed to an
inlined function.
"""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(inline="always", cache=True, error_model="numpy")
def rows_per_task(h, rows):
    """Rows per parallel task: about 2048 sites of a parity, so that a task's buffers (one
    allocation each) and its start cost little against its updates on small lattices."""
    return max(1, min(rows, 2048 // max(h, 1)))


@nb.njit(inline="always", cache=True, error_model="numpy")
def row_coords(d, r, L, h, p):
    """Row r in parity p's half of a sweep: the parity of its first site (``start``: the
    sites x = 2 X + start of the row are updated), its parity class (x0 & 1 in 2d, (x0 & 1,
    x1 & 1) in 3d) and its row in its block of a blocked draw ((x0 >> 1), or (x0 >> 1,
    x1 >> 1) flattened)."""
    if d == 2:  # no division where the row is x0 itself
        x0, x1 = r, 0
    else:
        x0, x1 = r // L, r % L
    start = (p + x0 + x1) & 1
    cls = (x0 & 1) * 2 + (x1 & 1) if d == 3 else x0 & 1
    hrow = (x0 >> 1) * h + (x1 >> 1) if d == 3 else x0 >> 1
    return start, cls, hrow


@nb.njit(inline="always", cache=True, error_model="numpy")
def row_neighbours(d, r, L, nxt, prv):
    """The rows of row r's neighbours along the outer axes: x0 + 1, x0 - 1, x1 + 1, x1 - 1
    (in 2d the last two repeat the first two, and the kernels do not read them). Unsigned,
    as the kernels' row indices are: numba checks a signed index for a negative value, and
    those checks on a row's five views weigh where rows are short (3d)."""
    if d == 2:
        return nxt[r], prv[r], nxt[r], prv[r]
    x0, x1 = r // L, r % L
    stride, ux1, base = np.uint64(L), np.uint64(x1), np.uint64(x0 * L)
    return nxt[x0] * stride + ux1, prv[x0] * stride + ux1, base + nxt[x1], base + prv[x1]


@nb.njit(inline="always", cache=True, error_model="numpy")
def task_rows(d, p, bidx, h, L, r0, r1):
    """Rows r0..r1-1 of a chain, parity p: the element index of each row's first site in its
    chain's blocked draw (block ``bidx[...]``, h^(d-1) rows of h), and the row's parity class."""
    block = h * h if d == 3 else h
    bases, cls = np.empty(r1 - r0, dtype=np.int64), np.empty(r1 - r0, dtype=np.int64)
    for r in range(r0, r1):
        start, q, hrow = row_coords(d, r, L, h, p)
        bases[r - r0] = (bidx[q * 2 + start] * block + hrow) * h
        cls[r - r0] = q
    return bases, cls


@nb.njit(cache=True, error_model="numpy")
def class_ranges(bases, cls, ncls, h):
    """The range [lo, hi) of draw elements that the rows of each parity class of a task cover
    (rows from ``bases[r]`` to ``bases[r] + h``; hi = 0 for a class with no rows)."""
    lo = np.empty(ncls, dtype=np.int64)
    hi = np.zeros(ncls, dtype=np.int64)
    for q in range(ncls):
        lo[q] = 1 << 62
    for r in range(bases.shape[0]):
        q = cls[r]
        lo[q] = min(lo[q], bases[r])
        hi[q] = max(hi[q], bases[r] + h)
    return lo, hi


@nb.njit(inline="always", cache=True, error_model="numpy")
def to32(z):
    return np.float32(z)


@nb.njit(inline="always", cache=True, error_model="numpy")
def to64(z):
    return np.float64(z)


def neighbours(L: int):
    """x + 1 and x - 1 on the ring of L sites: a load where a modulo would cost a division."""
    i = np.arange(L, dtype=np.int64)
    return ((i + 1) % L).astype(np.uint64), ((i - 1) % L).astype(np.uint64)


def host(x):
    """A NumPy view of a NumPy array or a CPU torch tensor (zero copy), and the way back."""
    if isinstance(x, np.ndarray):
        return x, lambda a: a
    import torch
    return x.detach().numpy(), torch.from_numpy


def as_rows(a):
    """The chains (C, L, ..., L) as rows, (C, L^(d-1), L): a view of a contiguous array."""
    return a.reshape(a.shape[0], -1, a.shape[-1])


def blocked_rows(arrays, dtype):
    """The generic path's blocked draws of one parity, one array (C, 2^(d-1), h, ..., h) per
    hit, as rows: (hits, C, 2^(d-1), h^(d-1), h)."""
    if len(arrays) == 1:
        a = host(arrays[0])[0][None].astype(dtype, copy=False)
    else:
        a = np.stack([host(b)[0] for b in arrays]).astype(dtype, copy=False)
    return a.reshape(a.shape[:3] + (-1, a.shape[-1]))


#: the blocked draws a kernel gets where it draws its own numbers (Philox): never read
NO_DRAWS_SHAPE = (1, 1, 1, 1, 1)


def sweep_setup(out, plan: dict, stream: dict):
    """What both checkerboard kernels take besides their own constants: ``out`` as rows, the
    accepted counts per row, the block index, the neighbour tables and the Philox key and
    first draw (zeros under a native stream)."""
    counts = np.zeros((out.shape[0], out.shape[1] ** (plan["dim"] - 1)), dtype=np.int64)
    bidx = np.asarray(plan["block_index"], dtype=np.int64)
    nxt, prv = neighbours(out.shape[1])
    philox = stream["stream"] == "philox"
    k0, k1 = (np.uint64(v) for v in stream["key"]) if philox else (np.uint64(0), np.uint64(0))
    return as_rows(out), counts, bidx, nxt, prv, philox, k0, k1, int(stream.get("draw", 0))
