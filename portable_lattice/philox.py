r"""Philox4x32-10 (Salmon, Moraes, Dror and Shaw, SC'11), written once against the Array API.

A counter-based generator: the 128-bit output is a pure function of a 128-bit
counter and a 64-bit key, so any element of any draw can be computed anywhere
(a fused kernel in registers, another backend) and equal this one. Only int64
additions, products of 16-bit halves and bit operations are used, so nothing
overflows and every backend computes the same words bit for bit.

:class:`PhiloxGenerator` has the interface of the backends' generators. A draw
of shape ``(chains, ...)`` gives chain j, element i the counter
(i // 4, draw number, j, 0) for 32-bit outputs, (i // 2, draw number, j, 1)
for 64-bit ones and (i // 2, draw number, j, 2) for the normals, which come in
pairs (one block gives both of a Box-Muller pair); the key is the seed's two
32-bit halves. So the numbers of one chain do not depend on how many chains run
beside it.

Everything is bit-identical across numpy, torch, cupy, array_api_strict and the
fused kernels (:mod:`backends.fused`): the 32-bit words (:meth:`bits32`), the
uniforms (53 or 24 bits of the words, exact), :meth:`integers` and the normals.
The normals use the Box-Muller transform with a logarithm and a cosine written
here in additions, products, one division and comparisons (:func:`log_unit`,
:func:`cos_2pi`), because the libraries' own ``log`` and ``cos`` do not round
alike: NumPy's SIMD ``log`` differs from the C library's in the last bit for
about 0.3% of float64 arguments (measured), and a fused kernel calls the C
library's, and torch's CPU ``sqrt`` is not correctly rounded for about 1% of
float64 arguments (measured). Division, products and sums are correctly rounded
everywhere, so :func:`sqrt_nonnegative` is Newton's iteration in them.
"""
from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace

from ._checks import nonnegative_int

__all__ = ["philox4x32", "PhiloxGenerator", "is_philox", "log_unit", "cos_2pi", "sqrt_nonnegative",
           "log_unit_scalar", "cos_2pi_scalar", "sqrt_nonnegative_scalar"]

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF
_MAX_COUNTER = 2 ** 32


def _mulhilo(m: int, c: Any) -> tuple[Any, Any]:
    """(high, low) 32-bit words of m * c for a constant m and int64 arrays c < 2^32, without
    overflow: the product from 16-bit halves, every partial sum below 2^35."""
    mh, ml = m >> 16, m & 0xFFFF
    ch, cl = c >> 16, c & 0xFFFF
    a = ml * cl
    t = mh * cl + ml * ch + (a >> 16)
    lo = ((t & 0xFFFF) << 16) | (a & 0xFFFF)
    hi = mh * ch + (t >> 16)
    return hi, lo


def philox4x32(c0: Any, c1: Any, c2: Any, c3: Any, k0: int, k1: int, rounds: int = 10) -> tuple:
    """Philox4x32-R of the counter words (int64 arrays holding values < 2^32, broadcastable)
    under the key (k0, k1): four int64 arrays of 32-bit words."""
    for _ in range(rounds):
        hi0, lo0 = _mulhilo(M0, c0)
        hi1, lo1 = _mulhilo(M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
    return c0, c1, c2, c3


# --- a logarithm and a cosine that round the same on every backend and in every kernel -------
# Only +, -, *, one division, comparisons and floor, in a fixed order: IEEE 754 rounds each
# alike everywhere (a kernel must not contract a * b + c into a fused multiply-add).
_TWO53 = 9007199254740992.0
_LN2_HI = 6.93147180369123816490e-01   # ln 2 with 32 trailing zero bits: n * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10   # ln 2 - _LN2_HI
_SQRT2 = 1.4142135623730951
_INV_SQRT2 = 0.7071067811865476
_HALF_PI = 1.5707963267948966
#: 2 atanh(s) / (2 s) = sum_n s^(2n) / (2n + 1); |s| <= 0.1716 after the reduction, 12 terms
_ATANH = tuple(1.0 / (2 * n + 1) for n in range(12))
#: Taylor coefficients of sin(y) / y and cos(y) in y^2 for |y| <= pi/4
_SIN = tuple((-1.0) ** n / math.factorial(2 * n + 1) for n in range(10))
_COS = tuple((-1.0) ** n / math.factorial(2 * n) for n in range(10))


def _horner(coefficients, z):
    acc = coefficients[-1]
    for c in coefficients[-2::-1]:
        acc = acc * z + c
    return acc


#: the exact binary scalings of the reductions, as literals (a compiled kernel then needs no pow)
_P2 = ((32, 4294967296.0, 2.3283064365386963e-10), (16, 65536.0, 1.52587890625e-05), (8, 256.0, 0.00390625),
       (4, 16.0, 0.0625), (2, 4.0, 0.25), (1, 2.0, 0.5))
_P4_DOWN = ((16, 4294967296.0, 2.3283064365386963e-10), (8, 65536.0, 1.52587890625e-05), (4, 256.0, 0.00390625),
            (2, 16.0, 0.0625), (1, 4.0, 0.25))
_P4_UP = ((32, 1.8446744073709552e+19, 5.421010862427522e-20),) + _P4_DOWN
#: 1/sqrt(m) on [1, 4) to 1.3e-2 (a Chebyshev fit): the start of four Newton steps
#: (relative error 1.3e-2 -> 2.3e-4 -> 8e-8 -> 1e-14 -> rounding)
_RSQRT = (1.532732228307938, -0.713349785363286, 0.18657201316796074, -0.018291494808723434)
#: every non-trivial constant of the three functions, in one order (offsets 0, 12, 22, 32..36,
#: 37): the table a kernel that cannot take Python floats exactly (Triton types them float32)
#: loads them from
KERNEL_CONSTANTS = _ATANH + _SIN + _COS + (_SQRT2, _INV_SQRT2, _HALF_PI, _LN2_HI, _LN2_LO) + _RSQRT


def log_unit(k: Any) -> Any:
    """ln(k 2^-53) for float64 arrays holding integers 1 <= k <= 2^53 (the Philox uniforms
    times 2^53), to about one unit in the last place, bit-identical on every backend."""
    xp = array_namespace(k)
    m, e = k, xp.zeros_like(k)
    for s, up, down in _P2:  # m < 2^(2s) before each step, m < 2^s after it
        big = m >= up
        m = xp.where(big, m * down, m)
        e = xp.where(big, e + s, e)
    big = m > _SQRT2  # m in [sqrt(1/2), sqrt(2)): |s| below 0.1716
    m = xp.where(big, m * 0.5, m)
    e = xp.where(big, e + 1.0, e)
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    log_m = (2.0 * s) * _horner(_ATANH, z)
    n = e - 53.0
    return n * _LN2_HI + (log_m + n * _LN2_LO)


def cos_2pi(u: Any, quarter: Any = None) -> Any:
    """cos(2 pi u - quarter pi/2) for float64 arrays with 0 <= u < 1 and ``quarter`` 0 or 1
    (None: 0; 1 gives sin(2 pi u)), bit-identical on every backend: the quadrant by an exact
    floor, then Taylor series of sin and cos on [-pi/4, pi/4)."""
    xp = array_namespace(u)
    t = u * 4.0
    q = xp.floor(t)
    y = ((t - q) - 0.5) * _HALF_PI     # x = y + pi/4 in [0, pi/2)
    y2 = y * y
    sin_y = y * _horner(_SIN, y2)
    cos_y = _horner(_COS, y2)
    cos_x = (cos_y - sin_y) * _INV_SQRT2
    sin_x = (cos_y + sin_y) * _INV_SQRT2
    if quarter is not None:  # a quarter turn back moves the quadrant, not x: exact
        q = q - quarter
        q = xp.where(q < 0.0, q + 4.0, q)
    # cos(q pi/2 + x) = cos x, -sin x, -cos x, sin x
    return xp.where(q == 0.0, cos_x, xp.where(q == 1.0, -sin_x, xp.where(q == 2.0, -cos_x, sin_x)))


def is_philox(rng: Any) -> bool:
    """Is ``rng`` this stream (or a wrapper that says it draws from it)? A kernel that wants the
    same chain on every backend under it computes with the functions of this module then."""
    return getattr(rng, "kind", None) == "philox4x32-10"


def sqrt_nonnegative(a: Any) -> Any:
    """sqrt(a) for float64 arrays with 0 <= a < 2^64, to about one unit in the last place,
    bit-identical on every backend: a = m 4^e with m in [1, 4) by exact scalings, then four
    Newton steps for 1/sqrt(m) (products only) from a cubic, and sqrt(a) = m / sqrt(m) 2^e."""
    xp = array_namespace(a)
    zero = a == 0.0
    m, scale = xp.where(zero, 1.0, a), xp.ones_like(a)
    for _, up, down in _P4_DOWN:  # m < 4^s after each step
        big = m >= up
        m = xp.where(big, m * down, m)
        scale = xp.where(big, scale * (up ** 0.5), scale)
    for _, up, down in _P4_UP:  # m >= 4^-s after each step
        small = m < down
        m = xp.where(small, m * up, m)
        scale = xp.where(small, scale * (down ** 0.5), scale)
    small = m < 1.0
    m = xp.where(small, m * 4.0, m)
    scale = xp.where(small, scale * 0.5, scale)
    y = _horner(_RSQRT, m)
    h = 0.5 * m
    for _ in range(4):
        y = y * (1.5 - (h * y) * y)
    return xp.where(zero, 0.0, (m * y) * scale)


def log_unit_scalar(k: float) -> float:
    """:func:`log_unit` for one Python float: the same operations in the same order (a compiled
    kernel compiles :func:`log_unit_reduced_scalar` and finds its m and e itself)."""
    m, e = k, 0.0
    if m >= 4294967296.0:
        m, e = m * 2.3283064365386963e-10, e + 32
    if m >= 65536.0:
        m, e = m * 1.52587890625e-05, e + 16
    if m >= 256.0:
        m, e = m * 0.00390625, e + 8
    if m >= 16.0:
        m, e = m * 0.0625, e + 4
    if m >= 4.0:
        m, e = m * 0.25, e + 2
    if m >= 2.0:
        m, e = m * 0.5, e + 1
    return log_unit_reduced_scalar(m, e)


def log_unit_reduced_scalar(m: float, e: float) -> float:
    """The rest of :func:`log_unit_scalar` once k = m 2^e with 1 <= m < 2 (a power-of-two
    scaling, exact): a compiled kernel may find m and e from k's bits (the same values)."""
    if m > _SQRT2:
        m, e = m * 0.5, e + 1.0
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    acc = _ATANH[11]
    for j in range(10, -1, -1):
        acc = acc * z + _ATANH[j]
    log_m = (2.0 * s) * acc
    n = e - 53.0
    return n * _LN2_HI + (log_m + n * _LN2_LO)


def cos_2pi_scalar(u: float, quarter: float) -> float:
    """:func:`cos_2pi` for one float: the same operations in the same order (selects, not
    branches, so that a compiled loop of them vectorises)."""
    t = u * 4.0
    q = math.floor(t)
    y = ((t - q) - 0.5) * _HALF_PI
    y2 = y * y
    acc_s, acc_c = _SIN[9], _COS[9]
    for j in range(8, -1, -1):
        acc_s = acc_s * y2 + _SIN[j]
        acc_c = acc_c * y2 + _COS[j]
    sin_y = y * acc_s
    cos_x = (acc_c - sin_y) * _INV_SQRT2
    sin_x = (acc_c + sin_y) * _INV_SQRT2
    q = q - quarter
    q = q + 4.0 if q < 0.0 else q
    low = cos_x if q == 0.0 else -sin_x
    high = -cos_x if q == 2.0 else sin_x
    return low if q < 1.5 else high


def sqrt_nonnegative_scalar(a: float) -> float:
    """:func:`sqrt_nonnegative` for one float: the same operations in the same order."""
    if a == 0.0:
        return 0.0
    m, scale = a, 1.0
    if m >= 4294967296.0:
        m, scale = m * 2.3283064365386963e-10, scale * 65536.0
    if m >= 65536.0:
        m, scale = m * 1.52587890625e-05, scale * 256.0
    if m >= 256.0:
        m, scale = m * 0.00390625, scale * 16.0
    if m >= 16.0:
        m, scale = m * 0.0625, scale * 4.0
    if m >= 4.0:
        m, scale = m * 0.25, scale * 2.0
    if m < 5.421010862427522e-20:
        m, scale = m * 1.8446744073709552e+19, scale * 2.3283064365386963e-10
    if m < 2.3283064365386963e-10:
        m, scale = m * 4294967296.0, scale * 1.52587890625e-05
    if m < 1.52587890625e-05:
        m, scale = m * 65536.0, scale * 0.00390625
    if m < 0.00390625:
        m, scale = m * 256.0, scale * 0.0625
    if m < 0.0625:
        m, scale = m * 16.0, scale * 0.25
    if m < 0.25:
        m, scale = m * 4.0, scale * 0.5
    if m < 1.0:
        m, scale = m * 4.0, scale * 0.5
    return sqrt_reduced_scalar(m, scale)


def sqrt_reduced_scalar(m: float, scale: float) -> float:
    """The rest of :func:`sqrt_nonnegative_scalar` once a = m scale^2 with 1 <= m < 4 and
    scale a power of two (exact): a compiled kernel may find m and scale from a's bits."""
    y = ((_RSQRT[3] * m + _RSQRT[2]) * m + _RSQRT[1]) * m + _RSQRT[0]
    h = 0.5 * m
    y = y * (1.5 - (h * y) * y)
    y = y * (1.5 - (h * y) * y)
    y = y * (1.5 - (h * y) * y)
    y = y * (1.5 - (h * y) * y)
    return (m * y) * scale


def _int53(xp, a, b):
    """The 53-bit integer of two 32-bit words (int64 arrays), as float64: exact."""
    return xp.astype((a >> 5) * 67108864 + (b >> 6), xp.float64)


def _unit53(xp, a, b):
    """A uniform on [0, 1) from 53 bits of two 32-bit words: exact."""
    return _int53(xp, a, b) * (2.0 ** -53)


class PhiloxGenerator:
    """Counter-based random numbers on any Array API namespace ``xp`` (and ``device``)."""

    kind = "philox4x32-10"

    def __init__(self, xp: Any, seed: int, device: Any = None):
        seed = nonnegative_int("seed", seed)
        if seed >= 2 ** 64:
            raise ValueError(f"seed must be below 2**64 for the 64-bit Philox key, got seed={seed}")
        self.xp, self.device, self.seed = xp, device, seed
        self.k0, self.k1 = seed & MASK32, (seed >> 32) & MASK32
        self.draws = 0

    def _layout(self, shape, words_per_element: int) -> tuple:
        """(shape, chains, elements per chain) of a draw, refused beyond the counter range
        (4 words per block, 2^32 blocks per chain and draw)."""
        shape = tuple(int(n) for n in shape)
        chains = shape[0] if len(shape) >= 2 else 1
        n = 1
        for s in shape:
            n *= s
        per_chain = n // chains if chains else 0
        if self.draws >= _MAX_COUNTER or per_chain * words_per_element > 4 * _MAX_COUNTER or chains > _MAX_COUNTER:
            raise ValueError(f"the Philox counter range is exhausted: draw {self.draws} of shape {shape}")
        return shape, chains, per_chain

    def _words(self, shape: tuple, per_element: int) -> list:
        """``per_element`` int64 arrays of 32-bit words, each of ``shape``."""
        xp = self.xp
        shape, chains, per_chain = self._layout(shape, per_element)
        i = xp.arange(per_chain, dtype=xp.int64, device=self.device)
        j = xp.reshape(xp.arange(chains, dtype=xp.int64, device=self.device), (chains, 1))
        out = []
        if per_element == 1:
            block, word = i // 4, i % 4
            c3 = 0
        else:
            block, word = i // 2, (i % 2) * 2
            c3 = 1
        c0 = xp.reshape(block, (1, per_chain))
        c1 = xp.asarray(self.draws, dtype=xp.int64, device=self.device)
        c2 = j
        c3 = xp.asarray(c3, dtype=xp.int64, device=self.device)
        x = philox4x32(c0 + 0 * c2, c1, c2 + 0 * c0, c3, self.k0, self.k1)
        w = xp.reshape(word, (1, per_chain))
        for e in range(per_element):
            # pick word (word + e) of each block: a where-cascade, no gather
            pick = w + e
            val = xp.where(pick == 0, x[0], xp.where(pick == 1, x[1], xp.where(pick == 2, x[2], x[3])))
            out.append(xp.reshape(val, shape))
        self.draws += 1
        return out

    def _pair_words(self, shape: tuple) -> tuple:
        """The four words of block i // 2 (counter word 3 = 2) for each element i, and i % 2
        as float64."""
        xp = self.xp
        shape, chains, per_chain = self._layout(shape, 2)  # a block per pair of elements
        i = xp.reshape(xp.arange(per_chain, dtype=xp.int64, device=self.device), (1, per_chain))
        j = xp.reshape(xp.arange(chains, dtype=xp.int64, device=self.device), (chains, 1))
        c1 = xp.asarray(self.draws, dtype=xp.int64, device=self.device)
        c3 = xp.asarray(2, dtype=xp.int64, device=self.device)
        x = philox4x32(i // 2 + 0 * j, c1, j + 0 * i, c3, self.k0, self.k1)
        odd = xp.astype(i % 2 + 0 * j, xp.float64)
        self.draws += 1
        return tuple(xp.reshape(w, shape) for w in x) + (xp.reshape(odd, shape),)

    def bits32(self, shape) -> Any:
        """int32 words uniform on [-2^31, 2^31)."""
        (w,) = self._words(shape, 1)
        return self.xp.astype(w - 2 ** 31, self.xp.int32)

    def uniform(self, shape, dtype) -> Any:
        """Uniform on [0, 1): 53 bits from two words (float64), 24 bits from one (float32); exact."""
        xp = self.xp
        if dtype == xp.float32:
            (w,) = self._words(shape, 1)
            return xp.astype(w >> 8, xp.float32) * (2.0 ** -24)
        a, b = self._words(shape, 2)
        return _unit53(xp, a, b)

    def log_uniform(self, shape, dtype) -> Any:
        """ln u for the u :meth:`uniform` would give at this draw (-inf for u = 0), through the
        library's :func:`log_unit` (float64, then cast): identical on every backend, where the
        backends' own ``log`` may differ in the last bit. The Metropolis rules draw their
        acceptance logarithms here under this stream."""
        xp = self.xp
        if dtype == xp.float32:
            (w,) = self._words(shape, 1)
            k = xp.astype(w >> 8, xp.float64) * 536870912.0  # u 2^53, exact
        else:
            a, b = self._words(shape, 2)
            k = _int53(xp, a, b)
        zero = k == 0.0
        lu = xp.where(zero, -xp.inf, log_unit(xp.where(zero, 1.0, k)))
        return xp.astype(lu, dtype)

    def normal(self, shape, dtype) -> Any:
        """Standard normals by the Box-Muller transform, in pairs: elements 2m and 2m + 1 of a
        draw share block m (counter word 3 = 2), whose words give u1 and u2 (53 bits each),
        and take r cos(2 pi u2) and r sin(2 pi u2), r = sqrt(-2 ln(1 - u1))."""
        xp = self.xp
        a, b, c, d, odd = self._pair_words(shape)
        u1 = 1.0 - _unit53(xp, a, b)  # (0, 1]: log is finite
        u2 = _unit53(xp, c, d)
        z = sqrt_nonnegative(-2.0 * log_unit(u1 * _TWO53)) * cos_2pi(u2, odd)
        return xp.astype(z, dtype)

    def integers(self, high: int, shape) -> Any:
        """Integers uniform on [0, high): floor(u * high) from a 53-bit uniform (bias below high / 2^53)."""
        xp = self.xp
        if high > 2 ** 31:
            raise ValueError(f"high must be at most 2**31, got high={high}")
        u = self.uniform(shape, xp.float64)
        return xp.astype(xp.floor(u * high), xp.int64)

    def get_state(self) -> dict:
        return {"kind": self.kind, "seed": self.seed, "draws": self.draws}

    def set_state(self, state: dict) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(f"state is not a Philox state: kind={state.get('kind')!r}")
        if int(state["seed"]) != self.seed:
            raise ValueError(f"the Philox state is for seed {state['seed']}, this generator has seed {self.seed}")
        self.draws = int(state["draws"])
