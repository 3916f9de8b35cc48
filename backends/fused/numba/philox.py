"""Philox4x32-10 in Numba, bit for bit the core's :class:`~portable_lattice.philox.PhiloxGenerator`:
the block function, its 32-bit words and 53-bit uniforms, the exact power-of-two reductions
of ``log`` and ``sqrt`` read from a float's bits, and the normals and acceptance logarithms
built from the core's own scalar ``log``, ``cos`` and ``sqrt``.

:func:`philox_normals` and :func:`philox_chain_uniforms` are the HMC kernel's momenta and
accept uniforms under the Philox stream.
"""
from __future__ import annotations

import functools

import numba as nb
import numpy as np
from numba.core import types
from numba.extending import intrinsic

from .common import to32, to64

__all__ = ["philox_normals", "philox_chain_uniforms"]

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_MASK = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


@nb.njit(inline="always", cache=True, error_model="numpy")
def philox4x32(c0, c1, c2, c3, k0, k1):
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
def word32(i, draw, chain, k0, k1):
    """Element i's 32-bit word of a 32-bit draw: block i // 4, word i % 4, counter word 3 = 0."""
    w0, w1, w2, w3 = philox4x32(np.uint64(i >> 2), np.uint64(draw), np.uint64(chain), np.uint64(0), k0, k1)
    j = i & 3
    if j == 0:
        return w0
    if j == 1:
        return w1
    if j == 2:
        return w2
    return w3


@nb.njit(inline="always", cache=True, error_model="numpy")
def unit53(a, b):
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


@functools.lru_cache(maxsize=4)
def normal_math(log_fn, cos_fn, sqrt_fn):
    """The core's scalar log (after its reduction), cos and sqrt (after its reduction),
    compiled; the Box-Muller pair and the acceptance logarithms (PhiloxGenerator.log_uniform)
    from them. The exact power-of-two reductions are read from the bits (:func:`_split2`,
    :func:`_split4`): the same values in a few integer operations, where the core's chains of
    compares and scalings would weigh on every normal."""
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
        w0, w1, w2, w3 = philox4x32(np.uint64(m), np.uint64(draw), np.uint64(chain), np.uint64(2), k0, k1)
        u1 = 1.0 - unit53(w0, w1)
        u2 = unit53(w2, w3)
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
        w0, w1, w2, w3 = philox4x32(np.uint64(m), np.uint64(draw), np.uint64(chain), np.uint64(1), k0, k1)
        a = np.float64((w0 >> np.uint64(5)) * np.uint64(67108864) + (w1 >> np.uint64(6)))
        b = np.float64((w2 >> np.uint64(5)) * np.uint64(67108864) + (w3 >> np.uint64(6)))
        return log_unit53(a), log_unit53(b)

    @nb.njit(inline="always", error_model="numpy")
    def log_uniform32_block(j, draw, chain, k0, k1):
        """ln u of elements 4j .. 4j + 3 of a float32 uniform draw (one block, a word each), in
        float64: the float32 value is its rounding."""
        w0, w1, w2, w3 = philox4x32(np.uint64(j), np.uint64(draw), np.uint64(chain), np.uint64(0), k0, k1)
        s8, f = np.uint64(8), 536870912.0
        return (log_unit53(np.float64(w0 >> s8) * f), log_unit53(np.float64(w1 >> s8) * f),
                log_unit53(np.float64(w2 >> s8) * f), log_unit53(np.float64(w3 >> s8) * f))

    return normal_pair, log_uniform64_pair, log_uniform32_block


@functools.lru_cache(maxsize=8)
def _normal_fill(pair, f32: bool):
    tofloat = to32 if f32 else to64

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
    _normal_fill(normal_math(*stream["normal_math"])[0], dtype == np.float32)(out, int(stream["draw"]), k0, k1)
    return out.reshape(shape)


@nb.njit(cache=True, error_model="numpy")
def _chain_uniforms(out, f32, draw, k0, k1):
    # a 1-d draw is one chain (counter word 2 = 0) of out.shape[0] elements
    for i in range(out.shape[0]):
        if f32:  # word i % 4 of block i // 4 (counter word 3 = 0), 24 bits
            w = word32(i, draw, 0, k0, k1)
            out[i] = np.float64(np.float32(w >> np.uint64(8)) * np.float32(2.0 ** -24))
        else:  # words (0, 1) or (2, 3) of block i // 2 (counter word 3 = 1), 53 bits
            w0, w1, w2, w3 = philox4x32(np.uint64(i >> 1), np.uint64(draw), np.uint64(0), np.uint64(1), k0, k1)
            out[i] = unit53(w0, w1) if (i & 1) == 0 else unit53(w2, w3)


def philox_chain_uniforms(chains: int, dtype, stream: dict):
    """``PhiloxGenerator.uniform((chains,), dtype)`` at the draw ``stream`` names (HMC's accept
    uniforms, one per chain; a 1-d draw is one Philox chain of ``chains`` elements), computed by
    a compiled loop (equal bit for bit)."""
    out = np.empty(chains, dtype=np.float64)
    k0, k1 = (np.uint64(v) for v in stream["key"])
    _chain_uniforms(out, dtype == np.float32, int(stream["draw"]), k0, k1)
    return out.astype(dtype)


@nb.njit(parallel=True, cache=True, error_model="numpy")
def _uniform_fill(out, f32, draw, k0, k1):
    # an n-d draw: chain c is counter word 2, element i of the chain as in _chain_uniforms
    chains, n = out.shape
    for c in nb.prange(chains):
        for i in range(n):
            if f32:
                w = word32(i, draw, c, k0, k1)
                out[c, i] = np.float64(np.float32(w >> np.uint64(8)) * np.float32(2.0 ** -24))
            else:
                w0, w1, w2, w3 = philox4x32(np.uint64(i >> 1), np.uint64(draw), np.uint64(c), np.uint64(1), k0, k1)
                out[c, i] = unit53(w0, w1) if (i & 1) == 0 else unit53(w2, w3)


def philox_uniforms(shape, dtype, stream: dict):
    """``PhiloxGenerator.uniform(shape, dtype)`` for a draw of two or more axes (the first is the
    chains) at the draw ``stream`` names, computed by a compiled loop (equal bit for bit)."""
    out = np.empty((shape[0], int(np.prod(shape[1:], dtype=np.int64))), dtype=np.float64)
    k0, k1 = (np.uint64(v) for v in stream["key"])
    _uniform_fill(out, dtype == np.float32, int(stream["draw"]), k0, k1)
    return out.astype(dtype).reshape(shape)
