"""The fused phi^4 checkerboard sweep: both parities in place, ``hits`` Gaussian-shift
proposals per site with the neighbour sum computed once, float32 or float64, d = 2 or 3.

Under the Philox stream a task first computes its rows' normals and acceptance logarithms
into a small buffer (:func:`_sweep`'s ``task_draws``), in loops that vectorise, and then runs
the updates; under a native stream it reads the generic path's draws.
"""
from __future__ import annotations

import functools

import numba as nb
import numpy as np

from .common import NO_DRAWS_SHAPE, blocked_rows, class_ranges, row_coords, row_neighbours, rows_per_task, \
    sweep_setup, task_rows, to32, to64
from .philox import normal_math

__all__ = ["sweep"]


@nb.njit(inline="always", cache=True, error_model="numpy")
def _row_inner(row, a0, a1, a2, a3, d3, start, h, dr, ur, step, c1, c3, beta, a, c6, c4, g):
    """One proposal at each site of a row's parity whose neighbours x +- 1 lie inside the row
    (all but the end site), in a loop without indirection or branches, which vectorises:
    unsigned indices, because numba's check for negative ones would stop it. ``a0``..``a3``:
    the neighbour rows (``a2``, ``a3`` in 3d); ``dr``/``ur``: the row's normals and log-uniforms.
    The same expressions, in the same order, as the site-by-site update. Returns the accepted count."""
    n = 0
    for j in range(h - 1):
        X = np.uint64(j + 1 - start)
        x1 = np.uint64(2) * X + np.uint64(start)
        x = row[x1]
        delta = step * dr[X]
        other = (a0[x1] + a1[x1]) if not d3 else ((a0[x1] + a1[x1]) + (a2[x1] + a3[x1]))
        grad = x * (c1 + (c3 * x) * x) - beta * (other + (row[x1 + np.uint64(1)] + row[x1 - np.uint64(1)]))
        dS = delta * (grad + delta * ((a + (c6 * x) * x) + delta * ((c4 * x) + g * delta)))
        acc = ur[X] < -dS
        row[x1] = x + delta if acc else x
        n += acc
    return n


@functools.lru_cache(maxsize=16)
def _sweep(philox_math, f32: bool, d: int):
    """The sweep of one parity for d = 2 or 3, compiled with the Philox stream's math (or
    placeholders under a native stream)."""
    normal_pair, log_uniform64_pair, log_uniform32_block = philox_math
    # the field's float type fixed at build time: a branch on the dtype inside the kernel
    # would unify both sides to float64
    tofloat = to32 if f32 else to64
    f32 = bool(f32)
    d3 = d == 3
    ncls = 2 ** (d - 1)

    @nb.njit(inline="always", error_model="numpy")
    def task_draws(bases, cls, h, hits, c, k0, k1, draw):
        """The Philox normals (and float64 uniforms) of a task's rows. The rows of one parity
        class (``cls``) hold one contiguous range of a draw's elements, so one loop per class
        and hit over its blocks computes them: one block gives elements 2m and 2m + 1, and a
        long loop with no dependence between its iterations vectorises (a normal inside the
        update loop would run at the latency of its long chain, and a loop over one short row
        mostly in the scalar remainder). Row r, hit t starts at ``start[r, t]`` of the normals
        and at ``ustart[r, t]`` of the acceptance logarithms (float64 uniforms come in pairs of
        a block, float32 ones in fours)."""
        lo, hi = class_ranges(bases, cls, ncls, h)
        first = np.zeros(ncls * hits + 1, dtype=np.int64)  # pair offsets per (class, hit)
        ufirst = np.zeros(ncls * hits + 1, dtype=np.int64)  # float32: block offsets
        for q in range(ncls):
            npair = ((hi[q] + 1) >> 1) - (lo[q] >> 1) if hi[q] > 0 else 0
            nblock = ((hi[q] + 3) >> 2) - (lo[q] >> 2) if hi[q] > 0 else 0
            for t in range(hits):
                first[q * hits + t + 1] = first[q * hits + t] + npair
                ufirst[q * hits + t + 1] = ufirst[q * hits + t] + nblock
        npairs = first[ncls * hits]
        z = np.empty(2 * npairs, dtype=np.float64)
        u = np.empty(4 * ufirst[ncls * hits] if f32 else 2 * npairs, dtype=np.float64)
        for q in range(ncls):
            m0 = lo[q] >> 1
            for t in range(hits):
                # views, so that the loops' indices start at 0 (numba's negative-index check
                # on an index it cannot prove non-negative would stop vectorisation)
                p0, p1 = first[q * hits + t], first[q * hits + t + 1]
                zv = z[2 * p0:2 * p1]
                for j in range(p1 - p0):
                    zv[2 * j], zv[2 * j + 1] = normal_pair(m0 + j, draw + 2 * t, c, k0, k1)
                if f32:
                    b0, b1, j0 = ufirst[q * hits + t], ufirst[q * hits + t + 1], lo[q] >> 2
                    uv = u[4 * b0:4 * b1]
                    for j in range(b1 - b0):
                        uv[4 * j], uv[4 * j + 1], uv[4 * j + 2], uv[4 * j + 3] = log_uniform32_block(
                            j0 + j, draw + 2 * t + 1, c, k0, k1)
                else:
                    uv = u[2 * p0:2 * p1]
                    for j in range(p1 - p0):
                        uv[2 * j], uv[2 * j + 1] = log_uniform64_pair(m0 + j, draw + 2 * t + 1, c, k0, k1)
        start = np.empty((bases.shape[0], hits), dtype=np.int64)
        ustart = np.empty((bases.shape[0], hits), dtype=np.int64)
        for r in range(bases.shape[0]):
            q = cls[r]
            for t in range(hits):
                # element e of the class's range sits at e - 2 m0 of its region (e - 4 j0)
                start[r, t] = 2 * first[q * hits + t] + bases[r] - 2 * (lo[q] >> 1)
                ustart[r, t] = (4 * ufirst[q * hits + t] + bases[r] - 4 * (lo[q] >> 2)) if f32 else start[r, t]
        return z, u, start, ustart

    @nb.njit(inline="always", error_model="numpy")
    def site(x, nsum, X, hits, drow, urow, step, c1, c3, beta, a, c6, c4, g):
        """All hits at one site (X along its row), with the neighbour sum fixed: the new value
        and the accepted count. ``drow``/``urow`` are the row's normals and the logarithms of
        its uniforms, (hits, h)."""
        n = 0
        for t in range(hits):
            delta = step * drow[t, X]
            grad = x * (c1 + (c3 * x) * x) - beta * nsum
            dS = delta * (grad + delta * ((a + (c6 * x) * x) + delta * ((c4 * x) + g * delta)))
            if urow[t, X] < -dS:
                x = x + delta
                n += 1
        return x, n

    @nb.njit(inline="always", error_model="numpy")
    def row_draws(philox, deltas, us, idx, dbuf, ubuf, z, u, start, ustart, r, hits):
        """Row r's normals and uniforms, (hits, h): copied from the task's Philox buffers into
        ``dbuf``/``ubuf``, or a view of the drawn arrays (native stream)."""
        if philox:
            for t in range(hits):
                s0 = start[r, t]
                for X in range(dbuf.shape[1]):
                    dbuf[t, X] = tofloat(z[s0 + X])
                u0 = ustart[r, t]
                for X in range(ubuf.shape[1]):
                    ubuf[t, X] = tofloat(u[u0 + X])
            return dbuf, ubuf
        return deltas[idx], us[idx]

    @nb.njit(parallel=True, error_model="numpy")
    def sweep(phi, p, hits, philox, k0, k1, draw0, deltas, us, bidx, step, c1, c3, beta, a, c6, c4, g, counts,
              nxt, prv):
        """Parity p of a sweep of ``phi`` (C, L^(d-1), L), in place; ``deltas``/``us`` are the
        native stream's blocked draws as rows."""
        C, R, L = phi.shape
        h = L // 2
        draw = draw0 + 2 * p * hits
        per = rows_per_task(h, R)
        nblk = (R + per - 1) // per
        for task in nb.prange(C * nblk):
            c, blk = task // nblk, task % nblk
            r0, r1 = blk * per, min(R, blk * per + per)
            bases, cls = task_rows(d, p, bidx, h, L, r0, r1)
            dbuf, ubuf = np.empty((hits, h), dtype=deltas.dtype), np.empty((hits, h), dtype=us.dtype)
            if philox:
                z, u, start, ustart = task_draws(bases, cls, h, hits, c, k0, k1, draw)
            else:
                z, u = np.empty(0), np.empty(0)
                start = ustart = np.empty((0, 0), dtype=np.int64)
            for r in range(r0, r1):
                start0, q, hrow = row_coords(d, r, L, h, p)
                n0, n1, n2, n3 = row_neighbours(d, r, L, nxt, prv)
                # one view per statement (see .common: a tuple of views can lose writes); the same lines
                # stand in the other sweep because a helper would return these views as a tuple
                row = phi[c, np.uint64(r)]  # unsigned, as row_neighbours' rows
                a0 = phi[c, n0]
                a1 = phi[c, n1]
                a2 = phi[c, n2]
                a3 = phi[c, n3]
                drow, urow = row_draws(philox, deltas, us, (slice(None), c, bidx[q * 2 + start0], hrow), dbuf, ubuf,
                                       z, u, start, ustart, r - r0, hits)
                n = 0
                if hits == 1:
                    # one proposal per site: the sites whose neighbours x +- 1 lie inside the
                    # row in a loop without indirection or branches, which vectorises; then
                    # the one site of the parity at the row's end (x = 0 or L - 1)
                    n = _row_inner(row, a0, a1, a2, a3, d3, start0, h, drow[0], urow[0], step, c1, c3, beta, a, c6,
                                   c4, g)
                    first = start0 * (h - 1)
                else:
                    first = 0
                for X in range(first, h if hits != 1 else first + 1):
                    x = 2 * X + start0
                    other = ((a0[x] + a1[x]) + (a2[x] + a3[x])) if d3 else (a0[x] + a1[x])
                    row[x], k = site(row[x], other + (row[nxt[x]] + row[prv[x]]), X, hits, drow, urow, step, c1, c3,
                                     beta, a, c6, c4, g)
                    n += k
                counts[c, r] += n

    return sweep


def _never(k, e):  # placeholders: a native stream never calls the normal
    return 0.0


def _never2(u, quarter):
    return 0.0


_NATIVE_MATH = (_never, _never2, _never)


def sweep(out, plan: dict, stream: dict):
    """Both parities of a fused phi^4 checkerboard sweep of ``out``, in place; the accepted
    count per chain."""
    rows, counts, bidx, nxt, prv, philox, k0, k1, draw0 = sweep_setup(out, plan, stream)
    hits = plan["hits"]
    ft = np.float32 if plan["dtype"] == "float32" else np.float64
    math = normal_math(*stream["normal_math"]) if philox else normal_math(*_NATIVE_MATH)
    kernel = _sweep(math, ft is np.float32, plan["dim"])
    cst = plan["constants"]
    consts = [ft(cst[k]) for k in ("c1", "c3", "beta", "a", "c6", "c4", "g")]
    for p in (0, 1):
        if philox:
            deltas = us = np.zeros(NO_DRAWS_SHAPE, dtype=ft)
        else:
            dl, ul = stream["draws"][p]
            deltas, us = blocked_rows(dl, ft), blocked_rows(ul, ft)
        kernel(rows, p, hits, philox, k0, k1, draw0, deltas, us, bidx, ft(plan["step_size"]), *consts, counts, nxt,
               prv)
    return counts.sum(axis=1)
