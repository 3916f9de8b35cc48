"""The fused Ising checkerboard sweep: both parities in place, ``hits`` Metropolis flips per
site of int8 spins, any J and h through the plan's integer thresholds, d = 2 or 3.

A flip is accepted where the draw's 32-bit word, as w - 2^31, is at most the threshold of
the site's spin and neighbour sum (``T[2 nsum + s + off]``): integer compares, the generic
path's exactly. Under the Philox stream with one hit a task computes its rows' words first,
in loops that vectorise; with several hits each word is computed where it is used.
"""
from __future__ import annotations

import functools

import numba as nb
import numpy as np

from .common import NO_DRAWS_SHAPE, blocked_rows, class_ranges, row_coords, row_neighbours, rows_per_task, \
    sweep_setup, task_rows
from .philox import philox4x32, word32

__all__ = ["sweep"]


@nb.njit(inline="always", cache=True, error_model="numpy")
def _flip_row(row, up, dn, extra, n_extra, start, h, base, hits, philox, k0, k1, draw, c, bits_row, T, off, nxt, prv):
    """One row of a parity, site by site: Metropolis flips of sites x1 = 2 X1 + start, X1 < h
    (``hits`` each); returns the accepted count. ``extra`` holds the d > 2 neighbour sums per
    X1 (n_extra = 0 in 2d). The path for several hits (either stream); one hit takes
    :func:`_flip_row_words`."""
    n = 0
    for X1 in range(h):
        x1 = 2 * X1 + start
        sx = np.int32(row[x1])
        nsum = (np.int32(up[x1]) + dn[x1]) + (np.int32(row[nxt[x1]]) + row[prv[x1]])
        if n_extra:
            nsum += extra[X1]
        for t in range(hits):
            if philox:
                b = np.int64(word32(base + X1, draw + t, c, k0, k1)) - 2147483648
            else:
                b = np.int64(bits_row[t, X1])
            acc = np.int32(b <= T[2 * nsum + sx + off])
            sx = sx * (1 - 2 * acc)  # a flip without a branch: accepted half the time near T_c
            n += acc
        row[x1] = sx
    return n


@nb.njit(inline="always", cache=True, error_model="numpy")
def _task_words(bases, cls, ncls, h, draw, c, k0, k1):
    """The Philox words (as w - 2^31) of a task's rows for one hit: the rows of one parity
    class (``cls``) hold one contiguous range of the draw's elements, so a loop over its
    blocks with no dependence between iterations (which vectorises) computes them all.
    Returns the words and the offset of each row's first word among them."""
    lo, hi = class_ranges(bases, cls, ncls, h)
    first = np.zeros(ncls + 1, dtype=np.int64)
    for q in range(ncls):
        first[q + 1] = first[q] + (4 * (((hi[q] + 3) >> 2) - (lo[q] >> 2)) if hi[q] > 0 else 0)
    words = np.empty(first[ncls], dtype=np.int64)
    for q in range(ncls):
        # a view, so that the loop's indices start at 0 (numba's negative-index check on an
        # index it cannot prove non-negative would stop vectorisation)
        wv = words[first[q]:first[q + 1]]
        j0 = lo[q] >> 2
        for j in range(wv.shape[0] >> 2):
            w0, w1, w2, w3 = philox4x32(np.uint64(j0 + j), np.uint64(draw), np.uint64(c), np.uint64(0), k0, k1)
            wv[4 * j] = np.int64(w0) - 2147483648
            wv[4 * j + 1] = np.int64(w1) - 2147483648
            wv[4 * j + 2] = np.int64(w2) - 2147483648
            wv[4 * j + 3] = np.int64(w3) - 2147483648
    offs = np.empty(bases.shape[0], dtype=np.int64)
    for r in range(bases.shape[0]):
        q = cls[r]
        offs[r] = first[q] + bases[r] - 4 * (lo[q] >> 2)
    return words, offs


@nb.njit(inline="always", cache=True, error_model="numpy")
def _flip_row_words(row, a0, a1, a2, a3, d3, start, h, wv, T, off, nxt, prv):
    """One row of a parity with its words ``wv`` (one per site): the sites whose neighbours
    x +- 1 lie inside the row in a loop without indirection or branches (it vectorises), then
    the one site at the row's end. ``a0``..``a3``: the neighbour rows (``a2``, ``a3`` in 3d)."""
    n = 0
    for j in range(h - 1):
        X = np.uint64(j + 1 - start)  # unsigned: no negative-index check
        x = np.uint64(2) * X + np.uint64(start)
        sx = np.int32(row[x])
        nsum = (np.int32(a0[x]) + a1[x]) + (np.int32(row[x + np.uint64(1)]) + row[x - np.uint64(1)])
        if d3:
            nsum += np.int32(a2[x]) + a3[x]
        acc = np.int32(wv[X] <= T[np.uint64(2 * nsum + sx + off)])
        row[x] = sx * (1 - 2 * acc)  # a flip without a branch: accepted half the time near T_c
        n += acc
    Xe = start * (h - 1)
    xe = 2 * Xe + start
    sx = np.int32(row[xe])
    nsum = (np.int32(a0[xe]) + a1[xe]) + (np.int32(row[nxt[xe]]) + row[prv[xe]])
    if d3:
        nsum += np.int32(a2[xe]) + a3[xe]
    acc = np.int32(wv[Xe] <= T[2 * nsum + sx + off])
    row[xe] = sx * (1 - 2 * acc)
    return n + acc


@functools.lru_cache(maxsize=2)
def _sweep(d: int):
    """The sweep of one parity for d = 2 or 3. Its closure holds only integers, so numba's
    disk cache keys it by d (a closure over compiled functions would key it by their ids,
    new in every process)."""
    d3 = d == 3
    ncls = 2 ** (d - 1)

    @nb.njit(parallel=True, cache=True, error_model="numpy")
    def sweep(s, p, hits, philox, k0, k1, draw0, bits, bidx, T, off, counts, nxt, prv):
        """Parity p of a sweep of ``s`` (C, L^(d-1), L), in place; ``bits`` are the native
        stream's blocked draws as rows."""
        C, R, L = s.shape
        h = L // 2
        draw = draw0 + p * hits
        words_first = philox and hits == 1
        per = rows_per_task(h, R)
        nblk = (R + per - 1) // per
        no_extra = np.zeros(1, dtype=np.int32)  # 2d: no neighbour sums beyond the row's plane
        for task in nb.prange(C * nblk):
            c, blk = task // nblk, task % nblk
            r0, r1 = blk * per, min(R, blk * per + per)
            bases, cls = task_rows(d, p, bidx, h, L, r0, r1)
            if words_first:
                words, offs = _task_words(bases, cls, ncls, h, draw, c, k0, k1)
            else:
                words, offs = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
            extra = np.empty(h, dtype=np.int32) if d3 else no_extra
            for r in range(r0, r1):
                start, q, hrow = row_coords(d, r, L, h, p)
                n0, n1, n2, n3 = row_neighbours(d, r, L, nxt, prv)
                # one view per statement (see .common: a tuple of views can lose writes); the same lines
                # stand in the other sweep because a helper would return these views as a tuple
                row = s[c, np.uint64(r)]  # unsigned, as row_neighbours' rows
                a0 = s[c, n0]
                a1 = s[c, n1]
                a2 = s[c, n2]
                a3 = s[c, n3]
                b = bidx[q * 2 + start]
                if words_first:
                    o = offs[r - r0]
                    n = _flip_row_words(row, a0, a1, a2, a3, d3, start, h, words[o:o + h], T, off, nxt, prv)
                elif hits == 1:  # the native stream's words
                    n = _flip_row_words(row, a0, a1, a2, a3, d3, start, h, bits[0, c, b, hrow], T, off, nxt, prv)
                else:
                    if d3:  # the sums over the second outer axis' neighbours, then the row
                        for X2 in range(h):
                            x2 = 2 * X2 + start
                            extra[X2] = (np.int32(a2[x2]) + a3[x2])
                    bits_row = bits[:, c, b, hrow] if not philox else bits[:, 0, 0, 0]
                    n = _flip_row(row, a0, a1, extra, d - 2, start, h, bases[r - r0], hits, philox, k0, k1, draw, c,
                                  bits_row, T, off, nxt, prv)
                counts[c, r] += n

    return sweep


def sweep(out, plan: dict, stream: dict):
    """Both parities of a fused Ising checkerboard sweep of ``out`` (int8 spins), in place; the
    accepted count per chain."""
    rows, counts, bidx, nxt, prv, philox, k0, k1, draw0 = sweep_setup(out, plan, stream)
    T = np.asarray(plan["thresholds"], dtype=np.int64)
    kernel = _sweep(plan["dim"])
    for p in (0, 1):
        bits = np.zeros(NO_DRAWS_SHAPE, dtype=np.int32) if philox else blocked_rows(stream["draws"][p], np.int32)
        kernel(rows, p, plan["hits"], philox, k0, k1, draw0, bits, bidx, T, plan["offset"], counts, nxt, prv)
    return counts.sum(axis=1)
