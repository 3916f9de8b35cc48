r"""Fused CPU kernels (Numba ``@njit(parallel=True)``) for NumPy arrays and CPU torch tensors.

Each kernel is the twin of a generic path and evaluates the same expressions in the same
order (see :mod:`portable_lattice.samplers.fused` for the plan it is given):

* :func:`checkerboard_sweep` - both parities of a checkerboard Metropolis sweep in place on
  the full lattice (no split into blocks and back), ``hits`` proposals per site with the
  neighbour sum computed once; phi^4 (float32, float64) and Ising (int8, integer thresholds).
* :func:`hmc_trajectory` - a whole HMC trajectory: one pass per integration step
  (gradient at the drifted field, kick, next drift), the Hamiltonian's sums, then the
  accept/reject. Small chains run their whole trajectory one chain per task (their arrays
  stay in cache); large ones pass by pass over all chains.
* :func:`philox_normals` - a Philox normal draw (the HMC momenta under Philox).
* :func:`philox_chain_uniforms` - a Philox uniform draw of one number per chain (HMC's accept
  uniforms under Philox).

Under the Philox stream the random numbers are computed from the counter a site's element
has in the generic path's draw; under a native stream they are the generic path's own
arrays. The Philox normals are computed in loops of their own, before the updates that use
them: such a loop has no dependence between iterations and vectorises, where a normal
computed inside the update loop runs at the latency of its long chain of operations (five
times slower, measured). Every kernel compiles with ``error_model="numpy"``: Python's error
model checks every division for zero, and that branch alone stops the vectorisation.
Work is split over tasks of whole rows (or whole chains); each writes only its own rows and
its own partial counts, so there are no races and the result does not depend on the thread
count.
"""
from __future__ import annotations

import functools

import numba as nb
import numpy as np
from numba.core import types
from numba.extending import intrinsic

__all__ = ["checkerboard_sweep", "hmc_trajectory"]

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_MASK = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


@nb.njit(inline="always", cache=True, error_model="numpy")
def _rows_per_task(h, rows):
    """Rows per parallel task: about 2048 sites of a parity, so that a task's buffers (one
    allocation each) and its start cost little against its updates on small lattices."""
    return max(1, min(rows, 2048 // max(h, 1)))


@nb.njit(inline="always", cache=True, error_model="numpy")
def _philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of uint64 words below 2^32 (the generic :func:`philox4x32`)."""
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        hi0, lo0 = p0 >> _S32, p0 & _MASK
        hi1, lo1 = p1 >> _S32, p1 & _MASK
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return c0, c1, c2, c3


@nb.njit(inline="always", cache=True, error_model="numpy")
def _word32(i, draw, chain, k0, k1):
    """Element i's 32-bit word of a 32-bit draw: block i // 4, word i % 4, counter word 3 = 0."""
    w0, w1, w2, w3 = _philox(np.uint64(i >> 2), np.uint64(draw), np.uint64(chain), np.uint64(0), k0, k1)
    j = i & 3
    if j == 0:
        return w0
    if j == 1:
        return w1
    if j == 2:
        return w2
    return w3


@nb.njit(inline="always", cache=True, error_model="numpy")
def _unit53(a, b):
    return np.float64((a >> np.uint64(5)) * np.uint64(67108864) + (b >> np.uint64(6))) * (2.0 ** -53)


def _bitcast(src, dst):
    """A numba intrinsic reinterpreting the bits of a ``src`` scalar as ``dst`` (free, and it
    vectorises)."""
    @intrinsic
    def cast(typingctx, x):
        if x != src:
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(dst))
        return dst(src), codegen
    return cast


_f64_bits = _bitcast(types.float64, types.uint64)  # the IEEE bits of a float64
_bits_f64 = _bitcast(types.uint64, types.float64)  # the float64 of IEEE bits


_MANT = np.uint64((1 << 52) - 1)
_ONE_EXP = np.uint64(1023 << 52)


@nb.njit(inline="always", cache=True, error_model="numpy")
def _split2(k):
    """k = m 2^e with 1 <= m < 2, read from the bits: for 1 <= k < 2^64 (the kernels' k lie in
    [1, 2^53]) the values the core's chain of exact scalings
    (:func:`~portable_lattice.philox.log_unit_scalar`) reaches."""
    bits = _f64_bits(k)
    return _bits_f64((bits & _MANT) | _ONE_EXP), np.float64(np.int64(bits >> np.uint64(52)) - 1023)


@nb.njit(inline="always", cache=True, error_model="numpy")
def _split4(a):
    """a = m scale^2 with 1 <= m < 4 and scale a power of two, read from the bits: for
    2^-128 <= a < 2^64 (the kernels' a = -2 ln u lie in [2^-53, 74]) the values of
    :func:`~portable_lattice.philox.sqrt_nonnegative_scalar`'s scalings."""
    bits = _f64_bits(a)
    e = np.int64(bits >> np.uint64(52)) - 1023  # a = f 2^e, 1 <= f < 2
    odd = e & 1
    m = _bits_f64((bits & _MANT) | np.uint64((1023 + odd) << 52))  # f or 2 f
    return m, _bits_f64(np.uint64((1023 + ((e - odd) >> 1)) << 52))


@nb.njit(cache=True, error_model="numpy")
def _class_ranges(bases, cls, ncls, h):
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
def _task_rows2(p, bidx, h, r0, r1):
    """Rows x0 = r0..r1-1 of a 2d chain, parity p: the element index of each row's first site
    in the blocked draw (block ``bidx[...]``), and the row's parity class (x0 & 1)."""
    bases, cls = np.empty(r1 - r0, dtype=np.int64), np.empty(r1 - r0, dtype=np.int64)
    for x0 in range(r0, r1):
        bases[x0 - r0] = (bidx[(x0 & 1) * 2 + ((p + x0) & 1)] * h + (x0 >> 1)) * h
        cls[x0 - r0] = x0 & 1
    return bases, cls


@nb.njit(inline="always", cache=True, error_model="numpy")
def _task_rows3(p, bidx, h, L, r0, r1):
    """:func:`_task_rows2` for the rows r = x0 L + x1 of a 3d chain (classes (x0 & 1, x1 & 1))."""
    bases, cls = np.empty(r1 - r0, dtype=np.int64), np.empty(r1 - r0, dtype=np.int64)
    for r in range(r0, r1):
        x0, x1 = r // L, r % L
        b = bidx[(x0 & 1) * 4 + (x1 & 1) * 2 + ((p + x0 + x1) & 1)]
        bases[r - r0] = ((b * h + (x0 >> 1)) * h + (x1 >> 1)) * h
        cls[r - r0] = (x0 & 1) * 2 + (x1 & 1)
    return bases, cls


@functools.lru_cache(maxsize=4)
def _normal_math(log_fn, cos_fn, sqrt_fn):
    """The core's scalar log (after its reduction), cos and sqrt (after its reduction),
    compiled; the Box-Muller pair and the acceptance logarithms (PhiloxGenerator.log_uniform)
    from them. The exact power-of-two reductions are read from the bits (:func:`_split2`,
    :func:`_split4`): the same values in a few integer operations, where the core's chains of
    compares and scalings cost a third of a normal."""
    log_reduced, cos_2pi, sqrt_reduced = (nb.njit(inline="always", error_model="numpy")(f)
                                          for f in (log_fn, cos_fn, sqrt_fn))

    @nb.njit(inline="always", error_model="numpy")
    def log_unit(k):  # 1 <= k <= 2^53
        m, e = _split2(k)
        return log_reduced(m, e)

    @nb.njit(inline="always", error_model="numpy")
    def sqrt_nn(a):  # 0 <= a < 2^64 (or -0.0)
        m, scale = _split4(a if a > 0.0 else 1.0)
        r = sqrt_reduced(m, scale)
        return r if a > 0.0 else 0.0

    @nb.njit(inline="always", error_model="numpy")
    def normal_pair(m, draw, chain, k0, k1):
        # elements 2m and 2m + 1 of a normal draw, as PhiloxGenerator.normal: one block
        w0, w1, w2, w3 = _philox(np.uint64(m), np.uint64(draw), np.uint64(chain), np.uint64(2), k0, k1)
        u1 = 1.0 - _unit53(w0, w1)
        u2 = _unit53(w2, w3)
        r = sqrt_nn(-2.0 * log_unit(u1 * 9007199254740992.0))
        return r * cos_2pi(u2, 0.0), r * cos_2pi(u2, 1.0)

    @nb.njit(inline="always", error_model="numpy")
    def log_unit53(k):
        # PhiloxGenerator.log_uniform of the uniform k 2^-53: -inf for k = 0
        lu = log_unit(k if k > 0.0 else 1.0)
        return lu if k > 0.0 else -np.inf

    @nb.njit(inline="always", error_model="numpy")
    def log_uniform64_pair(m, draw, chain, k0, k1):
        """ln u of elements 2m and 2m + 1 of a float64 uniform draw (one block)."""
        w0, w1, w2, w3 = _philox(np.uint64(m), np.uint64(draw), np.uint64(chain), np.uint64(1), k0, k1)
        a = np.float64((w0 >> np.uint64(5)) * np.uint64(67108864) + (w1 >> np.uint64(6)))
        b = np.float64((w2 >> np.uint64(5)) * np.uint64(67108864) + (w3 >> np.uint64(6)))
        return log_unit53(a), log_unit53(b)

    @nb.njit(inline="always", error_model="numpy")
    def log_uniform32_block(j, draw, chain, k0, k1):
        """ln u of elements 4j .. 4j + 3 of a float32 uniform draw (one block, a word each), in
        float64: the float32 value is its rounding."""
        w0, w1, w2, w3 = _philox(np.uint64(j), np.uint64(draw), np.uint64(chain), np.uint64(0), k0, k1)
        s8, f = np.uint64(8), 536870912.0
        return (log_unit53(np.float64(w0 >> s8) * f), log_unit53(np.float64(w1 >> s8) * f),
                log_unit53(np.float64(w2 >> s8) * f), log_unit53(np.float64(w3 >> s8) * f))

    return normal_pair, log_uniform64_pair, log_uniform32_block


# --- phi^4 checkerboard -----------------------------------------------------------------------
@nb.njit(inline="always", cache=True, error_model="numpy")
def _to32(z):
    return np.float32(z)


@nb.njit(inline="always", cache=True, error_model="numpy")
def _to64(z):
    return np.float64(z)


@nb.njit(inline="always", cache=True, error_model="numpy")
def _phi4_row_inner(row, a0, a1, a2, a3, d3, start, h, dr, ur, step, c1, c3, beta, a, c6, c4, g):
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


@functools.lru_cache(maxsize=8)
def _phi4_kernels(philox_math, f32: bool):
    normal_pair, log_uniform64_pair, log_uniform32_block = philox_math
    # the field's float type fixed at build time: a branch on the dtype inside the kernel
    # would unify both sides to float64
    tofloat = _to32 if f32 else _to64
    f32 = bool(f32)

    @nb.njit(inline="always", error_model="numpy")
    def task_draws(bases, cls, ncls, h, hits, c, k0, k1, draw):
        """The Philox normals (and float64 uniforms) of a task's rows. The rows of one parity
        class (``cls``) hold one contiguous range of a draw's elements, so one loop per class
        and hit over its blocks computes them: one block gives elements 2m and 2m + 1, and a
        long loop with no dependence between its iterations vectorises (a normal inside the
        update loop would run at the latency of its long chain, and a loop over one short row
        mostly in the scalar remainder). Row r, hit t starts at ``start[r, t]`` of the normals
        and at ``ustart[r, t]`` of the acceptance logarithms (float64 uniforms come in pairs of
        a block, float32 ones in fours)."""
        lo, hi = _class_ranges(bases, cls, ncls, h)
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
    def sweep2(phi, p, hits, philox, k0, k1, draw0, deltas, us, bidx, step, c1, c3, beta, a, c6, c4, g, counts,
               nxt, prv):
        C, L = phi.shape[0], phi.shape[1]
        h = L // 2
        draw = draw0 + 2 * p * hits
        R = _rows_per_task(h, L)
        nblk = (L + R - 1) // R
        for task in nb.prange(C * nblk):
            c, blk = task // nblk, task % nblk
            r0, r1 = blk * R, min(L, blk * R + R)
            bases, cls = _task_rows2(p, bidx, h, r0, r1)
            dbuf, ubuf = np.empty((hits, h), dtype=deltas.dtype), np.empty((hits, h), dtype=us.dtype)
            if philox:
                z, u, start, ustart = task_draws(bases, cls, 2, h, hits, c, k0, k1, draw)
            else:
                z, u = np.empty(0), np.empty(0)
                start = ustart = np.empty((0, 0), dtype=np.int64)
            for x0 in range(r0, r1):
                xu, xd = nxt[x0], prv[x0]
                start0 = (p + x0) & 1
                b = bidx[(x0 & 1) * 2 + start0]
                drow, urow = row_draws(philox, deltas, us, (slice(None), c, b, x0 >> 1), dbuf, ubuf, z, u, start,
                                       ustart, x0 - r0, hits)
                n = 0
                if hits == 1:
                    # one proposal per site: the sites whose neighbours x1 +- 1 lie inside the
                    # row in a loop without indirection or branches, which vectorises; then
                    # the one site of the parity at the row's end (x1 = 0 or L - 1)
                    up, dn = phi[c, xu], phi[c, xd]
                    n = _phi4_row_inner(phi[c, x0], up, dn, up, dn, False, start0, h, drow[0], urow[0], step, c1,
                                        c3, beta, a, c6, c4, g)
                    first = start0 * (h - 1)
                else:
                    first = 0
                for X1 in range(first, h if hits != 1 else first + 1):
                    x1 = 2 * X1 + start0
                    nsum = (phi[c, xu, x1] + phi[c, xd, x1]) + (phi[c, x0, nxt[x1]] + phi[c, x0, prv[x1]])
                    phi[c, x0, x1], k = site(phi[c, x0, x1], nsum, X1, hits, drow, urow, step, c1, c3, beta, a, c6,
                                             c4, g)
                    n += k
                counts[c, x0] += n

    @nb.njit(parallel=True, error_model="numpy")
    def sweep3(phi, p, hits, philox, k0, k1, draw0, deltas, us, bidx, step, c1, c3, beta, a, c6, c4, g, counts,
               nxt, prv):
        C, L = phi.shape[0], phi.shape[1]
        h = L // 2
        draw = draw0 + 2 * p * hits
        R = _rows_per_task(h, L * L)
        nblk = (L * L + R - 1) // R
        for task in nb.prange(C * nblk):
            c, blk = task // nblk, task % nblk
            r0, r1 = blk * R, min(L * L, blk * R + R)
            bases, cls = _task_rows3(p, bidx, h, L, r0, r1)
            dbuf, ubuf = np.empty((hits, h), dtype=deltas.dtype), np.empty((hits, h), dtype=us.dtype)
            if philox:
                z, u, start, ustart = task_draws(bases, cls, 4, h, hits, c, k0, k1, draw)
            else:
                z, u = np.empty(0), np.empty(0)
                start = ustart = np.empty((0, 0), dtype=np.int64)
            for r in range(r0, r1):
                x0, x1 = r // L, r % L
                x0u, x0d, x1u, x1d = nxt[x0], prv[x0], nxt[x1], prv[x1]
                start0 = (p + x0 + x1) & 1
                b = bidx[(x0 & 1) * 4 + (x1 & 1) * 2 + start0]
                drow, urow = row_draws(philox, deltas, us, (slice(None), c, b, x0 >> 1, x1 >> 1), dbuf, ubuf, z, u,
                                       start, ustart, r - r0, hits)
                n = 0
                if hits == 1:  # as in sweep2
                    n = _phi4_row_inner(phi[c, x0, x1], phi[c, x0u, x1], phi[c, x0d, x1], phi[c, x0, x1u],
                                        phi[c, x0, x1d], True, start0, h, drow[0], urow[0], step, c1, c3, beta, a,
                                        c6, c4, g)
                    first = start0 * (h - 1)
                else:
                    first = 0
                for X2 in range(first, h if hits != 1 else first + 1):
                    x2 = 2 * X2 + start0
                    nsum = ((phi[c, x0u, x1, x2] + phi[c, x0d, x1, x2]) + (phi[c, x0, x1u, x2] + phi[c, x0, x1d, x2])) \
                        + (phi[c, x0, x1, nxt[x2]] + phi[c, x0, x1, prv[x2]])
                    phi[c, x0, x1, x2], k = site(phi[c, x0, x1, x2], nsum, X2, hits, drow, urow, step, c1, c3, beta,
                                                 a, c6, c4, g)
                    n += k
                counts[c, r] += n

    return sweep2, sweep3


# --- Ising checkerboard -----------------------------------------------------------------------
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
                b = np.int64(_word32(base + X1, draw + t, c, k0, k1)) - 2147483648
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
    lo, hi = _class_ranges(bases, cls, ncls, h)
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
            w0, w1, w2, w3 = _philox(np.uint64(j0 + j), np.uint64(draw), np.uint64(c), np.uint64(0), k0, k1)
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


@nb.njit(parallel=True, cache=True, error_model="numpy")
def _ising2(s, p, hits, philox, k0, k1, draw0, bits, bidx, T, off, counts, nxt, prv):
    C, L = s.shape[0], s.shape[1]
    h = L // 2
    draw = draw0 + p * hits
    words_first = philox and hits == 1
    R = _rows_per_task(h, L)
    nblk = (L + R - 1) // R
    extra = np.zeros(1, dtype=np.int32)
    for task in nb.prange(C * nblk):
        c, blk = task // nblk, task % nblk
        r0, r1 = blk * R, min(L, blk * R + R)
        bases, cls = _task_rows2(p, bidx, h, r0, r1)
        if words_first:
            words, offs = _task_words(bases, cls, 2, h, draw, c, k0, k1)
        else:
            words, offs = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        for x0 in range(r0, r1):
            start = (p + x0) & 1
            row, up, dn = s[c, x0], s[c, nxt[x0]], s[c, prv[x0]]
            b = bidx[(x0 & 1) * 2 + start]
            if words_first:
                o = offs[x0 - r0]
                n = _flip_row_words(row, up, dn, up, dn, False, start, h, words[o:o + h], T, off, nxt, prv)
            elif hits == 1:  # the native stream's words
                n = _flip_row_words(row, up, dn, up, dn, False, start, h, bits[0, c, b, x0 >> 1], T, off, nxt, prv)
            else:
                bits_row = bits[:, c, b, x0 >> 1] if not philox else bits[:, 0, 0, 0]
                n = _flip_row(row, up, dn, extra, 0, start, h, bases[x0 - r0], hits, philox, k0, k1, draw, c,
                              bits_row, T, off, nxt, prv)
            counts[c, x0] += n


@nb.njit(parallel=True, cache=True, error_model="numpy")
def _ising3(s, p, hits, philox, k0, k1, draw0, bits, bidx, T, off, counts, nxt, prv):
    C, L = s.shape[0], s.shape[1]
    h = L // 2
    draw = draw0 + p * hits
    words_first = philox and hits == 1
    R = _rows_per_task(h, L * L)
    nblk = (L * L + R - 1) // R
    for task in nb.prange(C * nblk):
        c, blk = task // nblk, task % nblk
        r0, r1 = blk * R, min(L * L, blk * R + R)
        bases, cls = _task_rows3(p, bidx, h, L, r0, r1)
        if words_first:
            words, offs = _task_words(bases, cls, 4, h, draw, c, k0, k1)
        else:
            words, offs = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        extra = np.empty(h, dtype=np.int32)
        for r in range(r0, r1):
            x0, x1 = r // L, r % L
            start = (p + x0 + x1) & 1
            row = s[c, x0, x1]
            a0, a1, a2, a3 = s[c, nxt[x0], x1], s[c, prv[x0], x1], s[c, x0, nxt[x1]], s[c, x0, prv[x1]]
            b = bidx[(x0 & 1) * 4 + (x1 & 1) * 2 + start]
            if words_first:
                o = offs[r - r0]
                n = _flip_row_words(row, a0, a1, a2, a3, True, start, h, words[o:o + h], T, off, nxt, prv)
            elif hits == 1:  # the native stream's words
                n = _flip_row_words(row, a0, a1, a2, a3, True, start, h, bits[0, c, b, x0 >> 1, x1 >> 1], T, off,
                                    nxt, prv)
            else:
                # the sums over the two outer axes' neighbours, then the row along the last axis
                for X2 in range(h):
                    x2 = 2 * X2 + start
                    extra[X2] = (np.int32(a2[x2]) + a3[x2])
                bits_row = bits[:, c, b, x0 >> 1, x1 >> 1] if not philox else bits[:, 0, 0, 0, 0]
                n = _flip_row(row, a0, a1, extra, 1, start, h, bases[r - r0], hits, philox, k0, k1, draw, c,
                              bits_row, T, off, nxt, prv)
            counts[c, r] += n


def _neighbours(L: int):
    """x + 1 and x - 1 on the ring of L sites: a load where a modulo would cost a division."""
    i = np.arange(L, dtype=np.int64)
    return ((i + 1) % L).astype(np.uint64), ((i - 1) % L).astype(np.uint64)


def _host(x):
    """A NumPy view of a NumPy array or a CPU torch tensor (zero copy), and the way back."""
    if isinstance(x, np.ndarray):
        return x, lambda a: a
    import torch
    return x.detach().numpy(), torch.from_numpy


def _stack(arrays, dtype):
    if len(arrays) == 1:
        return _host(arrays[0])[0][None].astype(dtype, copy=False)
    return np.stack([_host(a)[0] for a in arrays]).astype(dtype, copy=False)


def checkerboard_sweep(x, plan: dict, stream: dict):
    """One fused checkerboard sweep of ``x`` (a new array); returns (x, accepted per chain)."""
    host, back = _host(x)
    d, hits = plan["dim"], plan["hits"]
    out = np.array(host, copy=True)
    counts = np.zeros((out.shape[0], out.shape[1] ** (d - 1)), dtype=np.int64)
    bidx = np.asarray(plan["block_index"], dtype=np.int64)
    nxt, prv = _neighbours(out.shape[1])
    philox = stream["stream"] == "philox"
    k0, k1 = (np.uint64(v) for v in stream["key"]) if philox else (np.uint64(0), np.uint64(0))
    draw0 = int(stream.get("draw", 0))
    half = (1, 1) + (1,) * d
    if plan["kind"] == "phi4":
        ft = np.float32 if plan["dtype"] == "float32" else np.float64
        pair = _normal_math(*stream["normal_math"]) if philox else _normal_math(*_NATIVE_MATH)
        kernel = _phi4_kernels(pair, ft is np.float32)[d - 2]
        cst = plan["constants"]
        consts = [ft(cst[k]) for k in ("c1", "c3", "beta", "a", "c6", "c4", "g")]
        for p in (0, 1):
            if philox:
                deltas = us = np.zeros((1,) + half, dtype=ft)
            else:
                dl, ul = stream["draws"][p]
                deltas, us = _stack(dl, ft), _stack(ul, ft)
            kernel(out, p, hits, philox, k0, k1, draw0, deltas, us, bidx, ft(plan["step_size"]), *consts, counts,
                   nxt, prv)
    else:
        T = np.asarray(plan["thresholds"], dtype=np.int64)
        kernel = _ising2 if d == 2 else _ising3
        for p in (0, 1):
            bits = np.zeros((1,) + half, dtype=np.int32) if philox else _stack(stream["draws"][p], np.int32)
            kernel(out, p, hits, philox, k0, k1, draw0, bits, bidx, T, plan["offset"], counts, nxt, prv)
    return back(out), back(counts.sum(axis=1))


def _never(k, e):  # placeholders: a native stream never calls the normal
    return 0.0


def _never2(u, quarter):
    return 0.0


_NATIVE_MATH = (_never, _never2, _never)


# --- HMC ----------------------------------------------------------------------------------------
@nb.njit(inline="always", cache=True, error_model="numpy")
def _grad(x, nsum, c1, c3, beta):
    return x * (c1 + (c3 * x) * x) - beta * nsum


@nb.njit(inline="always", cache=True, error_model="numpy")
def _pass_row2(src, dst, pm, gin, use_grad_in, ck, cd, drift, c1, c3, beta, gout, nxt, prv, x0):
    """Row x0 of one chain (2d arrays): the gradient at ``src`` (or ``gin``), p -= ck grad,
    then dst = src + cd p (``drift``) or gout = grad. The row's inner sites take their
    neighbours along the row at x1 +- 1, a loop the compiler vectorises; the two ends wrap."""
    L = src.shape[1]
    s, su, sd, p = src[x0], src[nxt[x0]], src[prv[x0]], pm[x0]
    out = dst[x0] if drift else gout[x0]
    if use_grad_in:
        gi = gin[x0]
        for x1 in range(L):
            q = p[x1] - ck * gi[x1]
            p[x1] = q
            out[x1] = s[x1] + cd * q if drift else gi[x1]
        return
    for x1 in range(1, L - 1):
        x = s[x1]
        g = _grad(x, ((su[x1] + sd[x1]) + s[x1 + 1]) + s[x1 - 1], c1, c3, beta)
        q = p[x1] - ck * g
        p[x1] = q
        out[x1] = x + cd * q if drift else g
    for e in range(2 if L > 1 else 1):
        x1 = e * (L - 1)
        x = s[x1]
        g = _grad(x, ((su[x1] + sd[x1]) + s[nxt[x1]]) + s[prv[x1]], c1, c3, beta)
        q = p[x1] - ck * g
        p[x1] = q
        out[x1] = x + cd * q if drift else g


@nb.njit(inline="always", cache=True, error_model="numpy")
def _pass_row3(src, dst, pm, gin, use_grad_in, ck, cd, drift, c1, c3, beta, gout, nxt, prv, r):
    """:func:`_pass_row2` for the row r = x0 L + x1 of a 3d chain (along x2)."""
    L = src.shape[0]
    x0, x1 = r // L, r % L
    s, p = src[x0, x1], pm[x0, x1]
    a0, a1, a2, a3 = src[nxt[x0], x1], src[prv[x0], x1], src[x0, nxt[x1]], src[x0, prv[x1]]
    out = dst[x0, x1] if drift else gout[x0, x1]
    if use_grad_in:
        gi = gin[x0, x1]
        for x2 in range(L):
            q = p[x2] - ck * gi[x2]
            p[x2] = q
            out[x2] = s[x2] + cd * q if drift else gi[x2]
        return
    for x2 in range(1, L - 1):
        x = s[x2]
        g = _grad(x, ((((a0[x2] + a1[x2]) + a2[x2]) + a3[x2]) + s[x2 + 1]) + s[x2 - 1], c1, c3, beta)
        q = p[x2] - ck * g
        p[x2] = q
        out[x2] = x + cd * q if drift else g
    for e in range(2 if L > 1 else 1):
        x2 = e * (L - 1)
        x = s[x2]
        g = _grad(x, ((((a0[x2] + a1[x2]) + a2[x2]) + a3[x2]) + s[nxt[x2]]) + s[prv[x2]], c1, c3, beta)
        q = p[x2] - ck * g
        p[x2] = q
        out[x2] = x + cd * q if drift else g


@nb.njit(inline="always", cache=True, error_model="numpy")
def _energy_row2(phi, pm, a, g, beta, nxt, x0):
    """Row x0 of one chain: the sums of the action density and of p^2."""
    xu = nxt[x0]
    s, k = 0.0, 0.0
    for x1 in range(phi.shape[1]):
        x = phi[x0, x1]
        x2 = x * x
        s += (a * x2 + (g * x2) * x2) - (beta * x) * (phi[xu, x1] + phi[x0, nxt[x1]])
        q = pm[x0, x1]
        k += q * q
    return s, k


@nb.njit(inline="always", cache=True, error_model="numpy")
def _energy_row3(phi, pm, a, g, beta, nxt, r):
    L = phi.shape[0]
    x0, x1 = r // L, r % L
    x0u, x1u = nxt[x0], nxt[x1]
    s, k = 0.0, 0.0
    for x2 in range(L):
        x = phi[x0, x1, x2]
        xx = x * x
        s += (a * xx + (g * xx) * xx) - (beta * x) * ((phi[x0u, x1, x2] + phi[x0, x1u, x2]) + phi[x0, x1, nxt[x2]])
        q = pm[x0, x1, x2]
        k += q * q
    return s, k


@functools.lru_cache(maxsize=2)
def _hmc_kernels(d: int):
    """For d = 2 or 3: a pass over all chains (parallel over rows), the energies, and a whole
    trajectory per chain (parallel over chains)."""
    row, erow = (_pass_row2, _energy_row2) if d == 2 else (_pass_row3, _energy_row3)

    @nb.njit(parallel=True, error_model="numpy")
    def one_pass(src, dst, pm, gin, use_grad_in, ck, cd, drift, c1, c3, beta, gout, nxt, prv):
        C, R = src.shape[0], src.shape[1] ** (d - 1)
        for task in nb.prange(C * R):
            c, r = task // R, task % R
            row(src[c], dst[c], pm[c], gin[c], use_grad_in, ck, cd, drift, c1, c3, beta, gout[c], nxt, prv, r)

    @nb.njit(parallel=True, error_model="numpy")
    def energies(phi, pm, a, g, beta, out, nxt):
        C, R = phi.shape[0], phi.shape[1] ** (d - 1)
        for task in nb.prange(C * R):
            c, r = task // R, task % R
            s, k = erow(phi[c], pm[c], a, g, beta, nxt, r)
            out[c, r, 0] = s
            out[c, r, 1] = 0.5 * k

    @nb.njit(parallel=True, error_model="numpy")
    def chains(phi, pm, gin, cks, cds, ck_last, c1, c3, beta, a, g, out, gout, parts0, parts1, nxt, prv):
        """Every pass of the trajectory for one chain after another: a small chain's arrays
        stay in the core's cache for all of them, instead of going through memory once per
        pass. The same arithmetic, site by site, as the passes over all chains."""
        C, R, nd = phi.shape[0], phi.shape[1] ** (d - 1), cds.shape[0]
        for c in nb.prange(C):
            scratch = np.empty_like(phi[c])
            for r in range(R):
                s, k = erow(phi[c], pm[c], a, g, beta, nxt, r)
                parts0[c, r, 0] = s
                parts0[c, r, 1] = 0.5 * k
            src = phi[c]
            for n in range(nd):
                dst = out[c] if (nd - n) % 2 == 1 else scratch  # the last drift writes out[c]
                for r in range(R):
                    row(src, dst, pm[c], gin[c], n == 0, cks[n], cds[n], True, c1, c3, beta, gout[c], nxt, prv, r)
                src = dst
            for r in range(R):
                row(src, src, pm[c], gin[c], False, ck_last, cds[0] * 0, False, c1, c3, beta, gout[c], nxt, prv, r)
            for r in range(R):
                s, k = erow(src, pm[c], a, g, beta, nxt, r)
                parts1[c, r, 0] = s
                parts1[c, r, 1] = 0.5 * k

    return one_pass, energies, chains


def _hmc_per_chain(chains: int, site_bytes: int) -> bool:
    """Run whole trajectories chain by chain when there are chains enough for the threads and
    a chain's four arrays fit a core's cache (256 KiB); otherwise pass by pass over all chains."""
    return chains >= 2 * nb.get_num_threads() and 4 * site_bytes <= 256 * 1024


def hmc_trajectory(phi, action, grad, p, u, plan: dict):
    """A fused HMC trajectory with its accept/reject: (phi, action, grad, accepted, dH), as
    :meth:`HMC.propose_and_accept` returns them."""
    h_phi, back = _host(phi)
    h_action, h_grad = (_host(a)[0] for a in (action, grad))
    h_u = None if u is None else _host(u)[0]
    d = plan["dim"]
    ft = np.float32 if plan["dtype"] == "float32" else np.float64
    if p is None:  # Philox: the momenta are the stream's normal draw, computed here
        h_p = philox_normals(h_phi.shape, ft, plan["momenta"])
    else:
        h_p = _host(p)[0]
    if u is None:  # Philox: the accept uniforms too
        h_u = philox_chain_uniforms(h_phi.shape[0], ft, plan["accept"])
    cst = plan["constants"]
    c1, c3, beta, a, g = (ft(cst[k]) for k in ("c1", "c3", "beta", "a", "g"))
    one_pass, energies, chains = _hmc_kernels(d)
    seq = plan["sequence"]  # kick, drift, kick, ..., kick
    cks = np.array([c for _, c in seq[0::2]], dtype=ft)
    cds = np.array([c for _, c in seq[1::2]], dtype=ft)
    if cds.size == 0:
        raise ValueError("the fused HMC trajectory needs at least one drift")
    C, V = h_phi.shape[0], h_phi[0].size
    parts0 = np.empty((C, h_phi.shape[1] ** (d - 1), 2), dtype=np.float64)
    parts1 = np.empty_like(parts0)
    nxt, prv = _neighbours(h_phi.shape[1])
    # the momenta are kicked in place: a copy unless they were computed here
    pm = h_p if p is None else np.array(h_p, dtype=ft, copy=True)
    h_phi_c, h_grad_c = np.ascontiguousarray(h_phi), np.ascontiguousarray(h_grad)
    new_phi, grad_out = np.empty_like(h_phi_c), np.empty_like(h_phi_c)
    if _hmc_per_chain(C, V * h_phi.itemsize):
        chains(h_phi_c, pm, h_grad_c, cks[:-1], cds, cks[-1], c1, c3, beta, a, g, new_phi, grad_out, parts0, parts1,
               nxt, prv)
    else:
        energies(h_phi_c, pm, a, g, beta, parts0, nxt)
        # two field buffers of our own (the input is only read, by the first pass); the last
        # drift writes new_phi
        scratch = np.empty_like(h_phi_c)
        src, nd = h_phi_c, cds.size
        for n in range(nd):
            dst = new_phi if (nd - n) % 2 == 1 else scratch
            one_pass(src, dst, pm, h_grad_c, n == 0, cks[n], cds[n], True, c1, c3, beta, grad_out, nxt, prv)
            src = dst
        one_pass(src, src, pm, h_grad_c, False, cks[-1], ft(0.0), False, c1, c3, beta, grad_out, nxt, prv)
        energies(src, pm, a, g, beta, parts1, nxt)
    kinetic0 = parts0[..., 1].sum(axis=1)
    new_action = (parts1[..., 0].sum(axis=1) + plan["constant_per_site"] * V).astype(ft)
    dH = (new_action + parts1[..., 1].sum(axis=1)) - (h_action.astype(np.float64) + kinetic0)
    dH = dH.astype(ft)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.log(h_u) < -dH
    # the buffers become the result: the rejected chains get their old field and gradient back
    # (no pass over the accepted ones)
    rejected = ~acc
    if rejected.any():
        new_phi[rejected] = h_phi[rejected]
        grad_out[rejected] = h_grad[rejected]
    return (back(new_phi), back(np.where(acc, new_action, h_action)), back(grad_out), back(acc), back(dH))


# --- Philox normals -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _normal_fill(pair, f32: bool):
    tofloat = _to32 if f32 else _to64

    @nb.njit(parallel=True, error_model="numpy")
    def fill(out, draw, k0, k1):
        """out[c, e] = element e of chain c's normal draw: the pairs (2m, 2m + 1) of one block
        each, in chunks of 4096 elements, a loop that vectorises."""
        C, V = out.shape
        nchunk = (V + 4095) // 4096
        for task in nb.prange(C * nchunk):
            c, k = task // nchunk, task % nchunk
            e1 = min(V, 4096 * k + 4096)
            # a view, so that the loop's indices start at 0: numba's negative-index check on
            # an index it cannot prove non-negative would stop the loop vectorising
            chunk = out[c, 4096 * k:e1]
            for j in range(chunk.shape[0] >> 1):
                z0, z1 = pair(2048 * k + j, draw, c, k0, k1)
                chunk[2 * j] = tofloat(z0)
                chunk[2 * j + 1] = tofloat(z1)
            if e1 & 1:  # an odd last element: the first of its pair
                z0, z1 = pair(e1 >> 1, draw, c, k0, k1)
                out[c, e1 - 1] = tofloat(z0)

    return fill


def philox_normals(shape, dtype, stream: dict):
    """``PhiloxGenerator.normal(shape, dtype)`` at the draw ``stream`` names, computed by a
    compiled loop (equal bit for bit)."""
    out = np.empty((shape[0], int(np.prod(shape[1:], dtype=np.int64))), dtype=dtype)
    k0, k1 = (np.uint64(v) for v in stream["key"])
    _normal_fill(_normal_math(*stream["normal_math"])[0], dtype == np.float32)(out, int(stream["draw"]), k0, k1)
    return out.reshape(shape)


@nb.njit(cache=True, error_model="numpy")
def _chain_uniforms(out, f32, draw, k0, k1):
    # a 1-d draw is one chain (counter word 2 = 0) of out.shape[0] elements
    for i in range(out.shape[0]):
        if f32:  # word i % 4 of block i // 4 (counter word 3 = 0), 24 bits
            w = _word32(i, draw, 0, k0, k1)
            out[i] = np.float64(np.float32(w >> np.uint64(8)) * np.float32(2.0 ** -24))
        else:  # words (0, 1) or (2, 3) of block i // 2 (counter word 3 = 1), 53 bits
            w0, w1, w2, w3 = _philox(np.uint64(i >> 1), np.uint64(draw), np.uint64(0), np.uint64(1), k0, k1)
            out[i] = _unit53(w0, w1) if (i & 1) == 0 else _unit53(w2, w3)


def philox_chain_uniforms(chains: int, dtype, stream: dict):
    """``PhiloxGenerator.uniform((chains,), dtype)`` at the draw ``stream`` names (HMC's accept
    uniforms, one per chain; a 1-d draw is one Philox chain of ``chains`` elements), computed by
    a compiled loop (equal bit for bit)."""
    out = np.empty(chains, dtype=np.float64)
    k0, k1 = (np.uint64(v) for v in stream["key"])
    _chain_uniforms(out, dtype == np.float32, int(stream["draw"]), k0, k1)
    return out.astype(dtype)
