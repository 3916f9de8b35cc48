r"""Fused GPU kernels (Triton) for torch CUDA tensors, and for CPU tensors under Triton's
interpreter (``TRITON_INTERPRET=1`` set before triton is imported), which is how the tests
check them on a machine without a GPU.

The twins of :mod:`backends.fused.numba`, with the same contract:

* :func:`checkerboard_sweep` ``(x, plan, stream) -> (new x, accepted per chain, int64)`` - both
  parities of a checkerboard Metropolis sweep, one launch per parity, ``hits`` proposals per
  site with the neighbour sum computed once; phi^4 (float32, float64) and Ising (int8 spins,
  integer thresholds), d = 2 and 3.
* :func:`hmc_trajectory` ``(phi, action, grad, p, u, plan) -> (phi, action, grad, accepted,
  dH)`` - one launch per integration step (gradient at the drifted field, kick, next drift;
  two field buffers), the Hamiltonian's sums folded into the first and last launches.

Bit-identity with the generic paths rests on three things. (1) Every site's random numbers
come from the Philox counter its element has in the generic path's draw (blocked-layout
index ``i = b h^d + flat(X)``, ``b`` the block's position within its parity's stack), or are
the generic path's own pre-drawn arrays. (2) The arithmetic is the generic path's, in its
order; the normals use ports of :func:`~portable_lattice.philox.log_unit_scalar`,
:func:`~portable_lattice.philox.cos_2pi_scalar` and
:func:`~portable_lattice.philox.sqrt_nonnegative_scalar` (only +, -, *, / and compares).
(3) Nothing is contracted into a fused multiply-add: every launch passes
``enable_fp_fusion=False``, since an FMA rounds once where the generic path rounds twice.
Constants that are not exact in float32 travel in float64 (or the field's dtype) tensors:
a Python float in a kernel would be typed float32 and rounded before use.

Counts are per-program partial sums written to their own slots and summed afterwards (no
atomics), so the results do not depend on the launch's scheduling.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

__all__ = ["checkerboard_sweep", "hmc_trajectory", "interpreting", "philox_words", "INTERPRETED"]


def interpreting() -> bool:
    """True when Triton's interpreter is switched on (TRITON_INTERPRET): kernels decorated now run
    in numpy on the CPU instead of being compiled."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


#: this module's kernels are interpreted: triton.jit decides when the module is loaded
INTERPRETED = interpreting()
# the constants live in philox.KERNEL_CONSTANTS (handed over in the stream plan as
# "normal_constants"); Python floats in a kernel would be typed float32. Their offsets in it:
# atanh series 0..11, sin 12..21, cos 22..31, sqrt 2, 1/sqrt 2, pi/2, ln2 hi, ln2 lo 32..36,
# the 1/sqrt cubic 37..40.


# --- Philox4x32-10 in registers ----------------------------------------------------------------
@triton.jit
def _philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of uint32 counter words under the uint32 key (k0, k1)."""
    for _ in tl.static_range(10):
        hi0 = tl.umulhi(c0, 0xD2511F53)
        lo0 = c0 * 0xD2511F53
        hi1 = tl.umulhi(c2, 0xCD9E8D57)
        lo1 = c2 * 0xCD9E8D57
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = k0 + 0x9E3779B9
        k1 = k1 + 0xBB67AE85
    return c0, c1, c2, c3


@triton.jit
def _word32(i, draw, chain, k0, k1):
    """Element i's word of a 32-bit draw: counter (i // 4, draw, chain, 0), word i % 4."""
    blk = (i >> 2).to(tl.uint32)
    zero = blk * 0
    w0, w1, w2, w3 = _philox(blk, zero + draw, zero + chain, zero, k0, k1)
    j = i & 3
    return tl.where(j == 0, w0, tl.where(j == 1, w1, tl.where(j == 2, w2, w3)))


# --- the library's log, cos and sqrt (philox.py's scalar twins, as where-cascades) --------------
@triton.jit
def _log_unit(k, mc):
    m = k
    e = k * 0.0
    big = m >= 4294967296.0
    m = tl.where(big, m * (2.0 ** -32), m)
    e = tl.where(big, e + 32.0, e)
    big = m >= 65536.0
    m = tl.where(big, m * (2.0 ** -16), m)
    e = tl.where(big, e + 16.0, e)
    big = m >= 256.0
    m = tl.where(big, m * (2.0 ** -8), m)
    e = tl.where(big, e + 8.0, e)
    big = m >= 16.0
    m = tl.where(big, m * 0.0625, m)
    e = tl.where(big, e + 4.0, e)
    big = m >= 4.0
    m = tl.where(big, m * 0.25, m)
    e = tl.where(big, e + 2.0, e)
    big = m >= 2.0
    m = tl.where(big, m * 0.5, m)
    e = tl.where(big, e + 1.0, e)
    big = m > tl.load(mc + 32)
    m = tl.where(big, m * 0.5, m)
    e = tl.where(big, e + 1.0, e)
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    acc = tl.load(mc + 11)
    for jj in tl.static_range(11):
        acc = acc * z + tl.load(mc + (10 - jj))
    log_m = (2.0 * s) * acc
    n = e - 53.0
    return n * tl.load(mc + 35) + (log_m + n * tl.load(mc + 36))


@triton.jit
def _cos_2pi(u, quarter, mc):
    """cos(2 pi u - quarter pi/2), quarter 0 or 1 (float64): philox.cos_2pi."""
    t = u * 4.0
    q = tl.floor(t)
    y = ((t - q) - 0.5) * tl.load(mc + 34)
    y2 = y * y
    acc_s = tl.load(mc + 12 + 9)
    acc_c = tl.load(mc + 22 + 9)
    for jj in tl.static_range(9):
        acc_s = acc_s * y2 + tl.load(mc + 12 + (8 - jj))
        acc_c = acc_c * y2 + tl.load(mc + 22 + (8 - jj))
    sin_y = y * acc_s
    r = tl.load(mc + 33)
    cos_x = (acc_c - sin_y) * r
    sin_x = (acc_c + sin_y) * r
    q = q - quarter
    q = tl.where(q < 0.0, q + 4.0, q)
    return tl.where(q == 0.0, cos_x, tl.where(q == 1.0, -sin_x, tl.where(q == 2.0, -cos_x, sin_x)))


@triton.jit
def _scaled(m, scale, cond, f, g):
    return tl.where(cond, m * f, m), tl.where(cond, scale * g, scale)


@triton.jit
def _sqrt_nonnegative(a, mc):
    """philox.sqrt_nonnegative: exact binary scalings to m in [1, 4), a cubic start and four
    Newton steps for 1/sqrt(m) (products only), sqrt = (m / sqrt(m)) * scale."""
    zero = a == 0.0
    m = tl.where(zero, 1.0, a)
    scale = a * 0.0 + 1.0
    m, scale = _scaled(m, scale, m >= 4294967296.0, 2.0 ** -32, 65536.0)
    m, scale = _scaled(m, scale, m >= 65536.0, 2.0 ** -16, 256.0)
    m, scale = _scaled(m, scale, m >= 256.0, 2.0 ** -8, 16.0)
    m, scale = _scaled(m, scale, m >= 16.0, 0.0625, 4.0)
    m, scale = _scaled(m, scale, m >= 4.0, 0.25, 2.0)
    m, scale = _scaled(m, scale, m < 2.0 ** -64, 2.0 ** 64, 2.0 ** -32)
    m, scale = _scaled(m, scale, m < 2.0 ** -32, 4294967296.0, 2.0 ** -16)
    m, scale = _scaled(m, scale, m < 2.0 ** -16, 65536.0, 2.0 ** -8)
    m, scale = _scaled(m, scale, m < 2.0 ** -8, 256.0, 0.0625)
    m, scale = _scaled(m, scale, m < 0.0625, 16.0, 0.25)
    m, scale = _scaled(m, scale, m < 0.25, 4.0, 0.5)
    m, scale = _scaled(m, scale, m < 1.0, 4.0, 0.5)
    # the cubic's coefficients are not exact in float32 (a Python float in a kernel): from mc
    y = ((tl.load(mc + 40) * m + tl.load(mc + 39)) * m + tl.load(mc + 38)) * m + tl.load(mc + 37)  # the cubic, offsets 37..40
    h = 0.5 * m
    for _ in tl.static_range(4):
        y = y * (1.5 - (h * y) * y)
    return tl.where(zero, 0.0, (m * y) * scale)


@triton.jit
def _normal64(i, draw, chain, k0, k1, mc):
    """Element i of a normal draw, as PhiloxGenerator.normal: Box-Muller of the block
    (i // 2, draw, chain, 2), r cos(2 pi u2) for even i and r sin(2 pi u2) for odd i."""
    blk = (i >> 1).to(tl.uint32)
    zero = blk * 0
    w0, w1, w2, w3 = _philox(blk, zero + draw, zero + chain, zero + 2, k0, k1)
    u1 = 1.0 - ((w0.to(tl.int64) >> 5) * 67108864 + (w1.to(tl.int64) >> 6)).to(tl.float64) * (2.0 ** -53)
    u2 = ((w2.to(tl.int64) >> 5) * 67108864 + (w3.to(tl.int64) >> 6)).to(tl.float64) * (2.0 ** -53)
    quarter = (i & 1).to(tl.float64)
    return _sqrt_nonnegative(-2.0 * _log_unit(u1 * 9007199254740992.0, mc), mc) * _cos_2pi(u2, quarter, mc)


@triton.jit
def _log_unit53(k, mc):
    """PhiloxGenerator.log_uniform of the uniform k 2^-53 (k a float64 integer): -inf for k = 0."""
    zero = k == 0.0
    return tl.where(zero, float("-inf"), _log_unit(tl.where(zero, 1.0, k), mc))


@triton.jit
def _log_uniform64(i, draw, chain, k0, k1, mc):
    """ln u of element i of a float64 uniform draw (PhiloxGenerator.log_uniform)."""
    blk = (i >> 1).to(tl.uint32)
    zero = blk * 0
    w0, w1, w2, w3 = _philox(blk, zero + draw, zero + chain, zero + 1, k0, k1)
    odd = (i & 1) == 1
    a = tl.where(odd, w2, w0).to(tl.int64)
    b = tl.where(odd, w3, w1).to(tl.int64)
    return _log_unit53(((a >> 5) * 67108864 + (b >> 6)).to(tl.float64), mc)


@triton.jit
def _log_uniform32(i, draw, chain, k0, k1, mc):
    """ln u of element i of a float32 uniform draw, as float32."""
    k = (_word32(i, draw, chain, k0, k1) >> 8).to(tl.float64) * 536870912.0
    return _log_unit53(k, mc).to(tl.float32)


# --- the checkerboard sweep: one launch per parity -----------------------------------------------
@triton.jit
def _checkerboard_kernel(x_ptr, part_ptr, meta_ptr, bidx_ptr, t_ptr, cst_ptr, mc_ptr, d1_ptr, d2_ptr,
                         L, nhalf, chains, p, hits, nblocks, off,
                         DIM: tl.constexpr, PHI4: tl.constexpr, PHILOX: tl.constexpr, F64: tl.constexpr,
                         BLOCK: tl.constexpr):
    c = tl.program_id(0)
    pid = tl.program_id(1)
    j = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = j < nhalf
    h = L // 2
    # site (x0, x1[, x2]) of parity p from its index j among the chain's parity-p sites, its
    # element index i in the generic path's blocked draw, and its neighbours' flat offsets
    if DIM == 2:
        x0 = j // h
        X1 = j % h
        start = (p + x0) & 1
        x1 = 2 * X1 + start
        b = tl.load(bidx_ptr + (x0 & 1) * 2 + start, mask=mask, other=0)
        i = (b * h + (x0 >> 1)) * h + X1
        r0 = x0 * L
        site = r0 + x1
        a0 = ((x0 + 1) % L) * L + x1
        b0 = ((x0 + L - 1) % L) * L + x1
        a1 = r0 + (x1 + 1) % L
        b1 = r0 + (x1 + L - 1) % L
    else:
        x0 = j // (L * h)
        rem = j % (L * h)
        x1 = rem // h
        X2 = rem % h
        start = (p + x0 + x1) & 1
        x2 = 2 * X2 + start
        b = tl.load(bidx_ptr + (x0 & 1) * 4 + (x1 & 1) * 2 + start, mask=mask, other=0)
        i = ((b * h + (x0 >> 1)) * h + (x1 >> 1)) * h + X2
        r01 = (x0 * L + x1) * L
        site = r01 + x2
        a0 = (((x0 + 1) % L) * L + x1) * L + x2
        b0 = (((x0 + L - 1) % L) * L + x1) * L + x2
        a1 = (x0 * L + (x1 + 1) % L) * L + x2
        b1 = (x0 * L + (x1 + L - 1) % L) * L + x2
        a2 = r01 + (x2 + 1) % L
        b2 = r01 + (x2 + L - 1) % L
    base = x_ptr + c.to(tl.int64) * (2 * nhalf)
    k0 = tl.load(meta_ptr).to(tl.uint32)
    k1 = tl.load(meta_ptr + 1).to(tl.uint32)
    draw0 = tl.load(meta_ptr + 2)
    chain = c.to(tl.uint32)
    n = tl.zeros([BLOCK], dtype=tl.int32)
    if PHI4:
        x = tl.load(base + site, mask=mask, other=0.0)
        if DIM == 2:
            nsum = (tl.load(base + a0, mask=mask, other=0.0) + tl.load(base + b0, mask=mask, other=0.0)) \
                + (tl.load(base + a1, mask=mask, other=0.0) + tl.load(base + b1, mask=mask, other=0.0))
        else:
            nsum = ((tl.load(base + a0, mask=mask, other=0.0) + tl.load(base + b0, mask=mask, other=0.0))
                    + (tl.load(base + a1, mask=mask, other=0.0) + tl.load(base + b1, mask=mask, other=0.0))) \
                + (tl.load(base + a2, mask=mask, other=0.0) + tl.load(base + b2, mask=mask, other=0.0))
        step = tl.load(cst_ptr)
        c1 = tl.load(cst_ptr + 1)
        c3 = tl.load(cst_ptr + 2)
        beta = tl.load(cst_ptr + 3)
        a = tl.load(cst_ptr + 4)
        c6 = tl.load(cst_ptr + 5)
        c4 = tl.load(cst_ptr + 6)
        g = tl.load(cst_ptr + 7)
        for t in range(hits):
            if PHILOX:
                dr = (draw0 + 2 * (p * hits + t)).to(tl.uint32)
                z = _normal64(i, dr, chain, k0, k1, mc_ptr)
                if F64:
                    delta = step * z
                    log_u = _log_uniform64(i, dr + 1, chain, k0, k1, mc_ptr)
                else:
                    delta = step * z.to(tl.float32)
                    log_u = _log_uniform32(i, dr + 1, chain, k0, k1, mc_ptr)
            else:
                k = (t * chains + c).to(tl.int64) * nhalf + i
                # the generic path's normals, scaled here as the rule scales them
                delta = step * tl.load(d1_ptr + k, mask=mask, other=0.0)
                log_u = tl.load(d2_ptr + k, mask=mask, other=0.0)  # the generic path's ln u
            grad = x * (c1 + (c3 * x) * x) - beta * nsum
            dS = delta * (grad + delta * ((a + (c6 * x) * x) + delta * ((c4 * x) + g * delta)))
            acc = log_u < -dS
            x = tl.where(acc, x + delta, x)
            n += acc.to(tl.int32)
        tl.store(base + site, x, mask=mask)
    else:
        sx = tl.load(base + site, mask=mask, other=1).to(tl.int32)
        nsum = (tl.load(base + a0, mask=mask, other=0).to(tl.int32) + tl.load(base + b0, mask=mask, other=0)) \
            + (tl.load(base + a1, mask=mask, other=0).to(tl.int32) + tl.load(base + b1, mask=mask, other=0))
        if DIM == 3:
            nsum = nsum + (tl.load(base + a2, mask=mask, other=0).to(tl.int32) + tl.load(base + b2, mask=mask, other=0))
        for t in range(hits):
            if PHILOX:
                w = _word32(i, (draw0 + p * hits + t).to(tl.uint32), chain, k0, k1).to(tl.int64) - 2147483648
            else:
                w = tl.load(d1_ptr + (t * chains + c).to(tl.int64) * nhalf + i, mask=mask, other=0).to(tl.int64)
            thr = tl.load(t_ptr + (2 * nsum + sx + off), mask=mask, other=0)
            flip = (w <= thr) & mask
            sx = tl.where(flip, -sx, sx)
            n += flip.to(tl.int32)
        tl.store(base + site, sx.to(tl.int8), mask=mask)
    tl.store(part_ptr + c * nblocks + pid, tl.sum(tl.where(mask, n, 0), axis=0))


def _block_size(n: int) -> int:
    # a power of two; small lattices (the interpreter's tests) get one small program per chain
    return max(16, min(1024, triton.next_power_of_2(n)))


def _check(x, plan: dict) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"the Triton kernels take torch tensors, got {type(x).__name__}")
    if x.device.type != "cuda" and not INTERPRETED:
        raise ValueError(f"the Triton kernels run on CUDA tensors (or on the CPU under TRITON_INTERPRET=1), "
                         f"got a tensor on {x.device}")
    d = x.ndim - 1
    if d not in (2, 3) or plan.get("dim", d) != d:
        raise ValueError(f"the Triton kernels are written for d in (2, 3), got a {d}-dimensional lattice")
    L = x.shape[1]
    if any(s != L for s in x.shape[1:]) or L % 2 or L < 2:
        raise ValueError(f"the fused sweep needs a hypercubic lattice with even L, got shape {tuple(x.shape)}")


def _stack(arrays, dtype, device):
    return torch.stack([torch.as_tensor(a, device=device) for a in arrays]).to(dtype).contiguous()


def checkerboard_sweep(x, plan: dict, stream: dict):
    """One fused checkerboard sweep of ``x`` (a new tensor); returns (x, accepted per chain)."""
    _check(x, plan)
    d, hits, kind = plan["dim"], int(plan["hits"]), plan["kind"]
    C, L = x.shape[0], x.shape[1]
    nhalf = L ** d // 2
    dev = x.device
    philox = stream.get("stream") == "philox"
    if kind == "phi4":
        if x.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"the fused phi^4 sweep works on float32 or float64 fields, got dtype={x.dtype}")
        ft = x.dtype
        cst = plan["constants"]
        consts = torch.tensor([plan["step_size"]] + [cst[k] for k in ("c1", "c3", "beta", "a", "c6", "c4", "g")],
                              dtype=ft, device=dev)
        T = torch.zeros(1, dtype=torch.int64, device=dev)
        off = 0
    elif kind == "ising":
        if x.dtype != torch.int8:
            raise TypeError(f"the fused Ising sweep works on int8 spins, got dtype={x.dtype}")
        ft = torch.int32
        consts = torch.zeros(1, dtype=torch.float32, device=dev)
        T = torch.tensor(plan["thresholds"], dtype=torch.int64, device=dev)
        off = int(plan["offset"])
    else:
        raise ValueError(f"no Triton checkerboard kernel for kind={kind!r} (there are two: 'phi4', 'ising')")
    key = stream.get("key", (0, 0))
    meta = torch.tensor([int(key[0]), int(key[1]), int(stream.get("draw", 0))], dtype=torch.int64, device=dev)
    # the core's series and constants (philox.KERNEL_CONSTANTS), read only under the Philox stream
    mc = torch.tensor(stream.get("normal_constants", (0.0,)), dtype=torch.float64, device=dev)
    bidx = torch.tensor(plan["block_index"], dtype=torch.int64, device=dev)
    out = x.contiguous().clone()
    BLOCK = _block_size(nhalf)
    nblocks = triton.cdiv(nhalf, BLOCK)
    parts = torch.zeros((2, C, nblocks), dtype=torch.int32, device=dev)
    dummy = torch.zeros(1, dtype=ft, device=dev)
    for p in (0, 1):
        if philox:
            d1 = d2 = dummy
        elif kind == "phi4":
            dl, ul = stream["draws"][p]
            d1, d2 = _stack(dl, ft, dev), _stack(ul, ft, dev)
        else:
            d1 = d2 = _stack(stream["draws"][p], torch.int32, dev)
        _checkerboard_kernel[(C, nblocks)](
            out, parts[p], meta, bidx, T, consts, mc, d1, d2, L, nhalf, C, p, hits, nblocks, off,
            DIM=d, PHI4=kind == "phi4", PHILOX=philox, F64=x.dtype == torch.float64,
            BLOCK=BLOCK, enable_fp_fusion=False)
    return out, parts.to(torch.int64).sum(dim=(0, 2))


# --- HMC: one launch per integration step ------------------------------------------------------
@triton.jit
def _hmc_kernel(src_ptr, dst_ptr, pin_ptr, pout_ptr, gin_ptr, gout_ptr, cst_ptr, coef_ptr, part_ptr,
                L, V, nblocks, j,
                DIM: tl.constexpr, FIRST: tl.constexpr, LAST: tl.constexpr, BLOCK: tl.constexpr):
    """Per site: the gradient at src (or the cached one), p -= ck grad, then dst = src + cd p;
    the first launch also sums p^2 of the incoming momenta, the last (no drift) stores the
    gradient and sums the action density and p^2 at the final field."""
    c = tl.program_id(0)
    pid = tl.program_id(1)
    s = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = s < V
    cbase = c.to(tl.int64) * V
    src = src_ptr + cbase
    x = tl.load(src + s, mask=mask, other=0.0)
    c1 = tl.load(cst_ptr)
    c3 = tl.load(cst_ptr + 1)
    beta = tl.load(cst_ptr + 2)
    a = tl.load(cst_ptr + 3)
    g4 = tl.load(cst_ptr + 4)
    ck = tl.load(coef_ptr + j)
    if DIM == 2:
        x0 = s // L
        x1 = s % L
        r0 = x0 * L
        up0 = tl.load(src + ((x0 + 1) % L) * L + x1, mask=mask, other=0.0)
        up1 = tl.load(src + r0 + (x1 + 1) % L, mask=mask, other=0.0)
    else:
        x0 = s // (L * L)
        x1 = (s // L) % L
        x2 = s % L
        r01 = (x0 * L + x1) * L
        up0 = tl.load(src + (((x0 + 1) % L) * L + x1) * L + x2, mask=mask, other=0.0)
        up1 = tl.load(src + (x0 * L + (x1 + 1) % L) * L + x2, mask=mask, other=0.0)
        up2 = tl.load(src + r01 + (x2 + 1) % L, mask=mask, other=0.0)
    if FIRST:
        g = tl.load(gin_ptr + cbase + s, mask=mask, other=0.0)
    else:
        if DIM == 2:
            dn0 = tl.load(src + ((x0 + L - 1) % L) * L + x1, mask=mask, other=0.0)
            dn1 = tl.load(src + r0 + (x1 + L - 1) % L, mask=mask, other=0.0)
            nsum = ((up0 + dn0) + up1) + dn1
        else:
            dn0 = tl.load(src + (((x0 + L - 1) % L) * L + x1) * L + x2, mask=mask, other=0.0)
            dn1 = tl.load(src + (x0 * L + (x1 + L - 1) % L) * L + x2, mask=mask, other=0.0)
            dn2 = tl.load(src + r01 + (x2 + L - 1) % L, mask=mask, other=0.0)
            nsum = ((((up0 + dn0) + up1) + dn1) + up2) + dn2
        g = x * (c1 + (c3 * x) * x) - beta * nsum
    p0 = tl.load(pin_ptr + cbase + s, mask=mask, other=0.0)
    if FIRST:
        tl.store(part_ptr + (c * nblocks + pid) * 3, tl.sum((p0 * p0).to(tl.float64), axis=0))
    q = p0 - ck * g
    if LAST:
        tl.store(gout_ptr + cbase + s, g, mask=mask)
        x2s = x * x
        if DIM == 2:
            fwd = up0 + up1
        else:
            fwd = (up0 + up1) + up2
        dens = (a * x2s + (g4 * x2s) * x2s) - (beta * x) * fwd
        dens = tl.where(mask, dens, 0.0)
        tl.store(part_ptr + (c * nblocks + pid) * 3 + 1, tl.sum(dens.to(tl.float64), axis=0))
        tl.store(part_ptr + (c * nblocks + pid) * 3 + 2, tl.sum((q * q).to(tl.float64), axis=0))
    else:
        cd = tl.load(coef_ptr + j + 1)
        tl.store(pout_ptr + cbase + s, q, mask=mask)
        tl.store(dst_ptr + cbase + s, x + cd * q, mask=mask)


def hmc_trajectory(phi, action, grad, p, u, plan: dict):
    """A fused HMC trajectory with its accept/reject: (phi, action, grad, accepted, dH), as
    :meth:`HMC.propose_and_accept` returns them."""
    _check(phi, plan)
    if phi.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"the fused HMC trajectory works on float32 or float64 fields, got dtype={phi.dtype}")
    d, ft, dev = phi.ndim - 1, phi.dtype, phi.device
    seq = plan["sequence"]
    kinds = [k for k, _ in seq]
    if len(seq) % 2 == 0 or any(k != ("kick" if n % 2 == 0 else "drift") for n, k in enumerate(kinds)):
        raise ValueError(f"the fused HMC trajectory runs kick, drift, ..., kick sequences, got {kinds}")
    C, L = phi.shape[0], phi.shape[1]
    V = L ** d
    cst = plan["constants"]
    consts = torch.tensor([cst[k] for k in ("c1", "c3", "beta", "a", "g")], dtype=ft, device=dev)
    coef = torch.tensor([c for _, c in seq] + [0.0], dtype=ft, device=dev)
    if p is None:  # Philox: the momenta are the stream's normal draw, computed here
        p = philox_normals(tuple(phi.shape), ft, plan["momenta"], dev)
    if u is None:  # Philox: the accept uniforms (one per chain), the generic draw
        u = torch.as_tensor(plan["accept"]["uniforms"](), device=dev)  # CuPy arrays: zero copy
    phi_c, p_c, grad_c = phi.contiguous(), p.contiguous().to(ft), grad.contiguous()
    BLOCK = _block_size(V)
    nblocks = triton.cdiv(V, BLOCK)
    parts = torch.zeros((C, nblocks, 3), dtype=torch.float64, device=dev)
    bufs = [torch.empty_like(phi_c), torch.empty_like(phi_c)]
    pm = torch.empty_like(phi_c)
    grad_out = torch.empty_like(phi_c)
    src, pin, first, nb = phi_c, p_c, True, 0
    for j in range(0, len(seq) - 1, 2):
        dst = bufs[nb]
        _hmc_kernel[(C, nblocks)](src, dst, pin, pm, grad_c, grad_out, consts, coef, parts, L, V, nblocks, j,
                                  DIM=d, FIRST=first, LAST=False, BLOCK=BLOCK, enable_fp_fusion=False)
        src, pin, first, nb = dst, pm, False, 1 - nb
    if first:  # no drift: the trajectory is one kick at the initial field
        raise ValueError("the fused HMC trajectory needs at least one drift")
    _hmc_kernel[(C, nblocks)](src, src, pin, pm, grad_c, grad_out, consts, coef, parts, L, V, nblocks,
                              len(seq) - 1, DIM=d, FIRST=False, LAST=True, BLOCK=BLOCK, enable_fp_fusion=False)
    sums = parts.sum(dim=1)
    kinetic0, action_sum, kinetic1 = 0.5 * sums[:, 0], sums[:, 1], 0.5 * sums[:, 2]
    new_action = (action_sum + plan["constant_per_site"] * V).to(ft)
    dH = ((new_action.to(torch.float64) + kinetic1) - (action.to(torch.float64) + kinetic0)).to(ft)
    acc = torch.log(u) < -dH  # NaN/inf dH is rejected
    keep = acc.reshape((-1,) + (1,) * d)
    return (torch.where(keep, src, phi), torch.where(acc, new_action, action),
            torch.where(keep, grad_out, grad), acc, dH)


def philox_words(n: int, draw: int, chain: int, key: tuple, device="cpu"):
    """The first ``n`` 32-bit words of one chain's draw (a test hook for the in-register Philox)."""
    out = torch.empty(n, dtype=torch.int64, device=device)
    meta = torch.tensor([key[0], key[1], draw, chain], dtype=torch.int64, device=device)
    _words_kernel[(triton.cdiv(n, 256),)](out, meta, n, BLOCK=256)
    return out


@triton.jit
def _words_kernel(out_ptr, meta_ptr, n, BLOCK: tl.constexpr):
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    k0 = tl.load(meta_ptr).to(tl.uint32)
    k1 = tl.load(meta_ptr + 1).to(tl.uint32)
    w = _word32(i, tl.load(meta_ptr + 2).to(tl.uint32), tl.load(meta_ptr + 3).to(tl.uint32), k0, k1)
    tl.store(out_ptr + i, w.to(tl.int64), mask=i < n)


def philox_normals(shape: tuple, dtype, stream: dict, device):
    """``PhiloxGenerator.normal(shape, dtype)`` at the draw ``stream`` names, computed in registers."""
    C = int(shape[0])
    V = 1
    for n in shape[1:]:
        V *= int(n)
    out = torch.empty((C, V), dtype=dtype, device=device)
    key = stream["key"]
    meta = torch.tensor([int(key[0]), int(key[1]), int(stream["draw"])], dtype=torch.int64, device=device)
    mc = torch.tensor(stream["normal_constants"], dtype=torch.float64, device=device)
    BLOCK = _block_size(V)
    _normals_kernel[(C, triton.cdiv(V, BLOCK))](out, meta, mc, V, F64=dtype == torch.float64, BLOCK=BLOCK,
                                                enable_fp_fusion=False)
    return out.reshape(shape)


@triton.jit
def _normals_kernel(out_ptr, meta_ptr, mc_ptr, V, F64: tl.constexpr, BLOCK: tl.constexpr):
    c = tl.program_id(0)
    i = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    k0 = tl.load(meta_ptr).to(tl.uint32)
    k1 = tl.load(meta_ptr + 1).to(tl.uint32)
    z = _normal64(i, tl.load(meta_ptr + 2).to(tl.uint32), c.to(tl.uint32), k0, k1, mc_ptr)
    if not F64:
        z = z.to(tl.float32)
    tl.store(out_ptr + c.to(tl.int64) * V + i, z, mask=i < V)
