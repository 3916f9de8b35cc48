r"""Fused CPU kernels (Numba ``@njit(parallel=True)``) for NumPy arrays and CPU torch tensors.

Each kernel is the twin of a generic path and evaluates the same expressions in the same
order (see :mod:`portable_lattice.samplers.fused` for the plan it is given):

* :func:`checkerboard_sweep` - both parities of a checkerboard Metropolis sweep in place on
  the full lattice (no split into blocks and back), ``hits`` proposals per site with the
  neighbour sum computed once; phi^4 (float32, float64) and Ising (int8, integer thresholds).
* :func:`hmc_trajectory` - a whole HMC trajectory: one pass per integration step
  (gradient at the drifted field, kick, next drift; two field buffers), the Hamiltonian's
  sums in the last pass, then the accept/reject.

Under the Philox stream the random numbers are computed in registers from the counter a
site's element has in the generic path's draw; under a native stream they are the generic
path's own arrays. Work is split over (chain, row) pairs; each writes only its own row and
its own partial count, so there are no races and the result does not depend on the thread
count.
"""
from __future__ import annotations

import functools
import math

import numba as nb
import numpy as np

__all__ = ["checkerboard_sweep", "hmc_trajectory"]

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_MASK = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


@nb.njit(inline="always", cache=True)
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


@nb.njit(inline="always", cache=True)
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


@nb.njit(inline="always", cache=True)
def _uniform64(i, draw, chain, k0, k1):
    """Element i of a float64 uniform draw: block i // 2, words 2 (i % 2) and the next, counter word 3 = 1."""
    w0, w1, w2, w3 = _philox(np.uint64(i >> 1), np.uint64(draw), np.uint64(chain), np.uint64(1), k0, k1)
    if i & 1:
        a, b = w2, w3
    else:
        a, b = w0, w1
    return np.float64((a >> np.uint64(5)) * np.uint64(67108864) + (b >> np.uint64(6))) * (2.0 ** -53)


@nb.njit(inline="always", cache=True)
def _uniform32(i, draw, chain, k0, k1):
    return np.float32(_word32(i, draw, chain, k0, k1) >> np.uint64(8)) * np.float32(2.0 ** -24)


@functools.lru_cache(maxsize=4)
def _normal_math(log_fn, cos_fn, sqrt_fn):
    """The core's scalar log, cos and sqrt, compiled; and a float64 normal from them."""
    log_unit, cos_2pi, sqrt_nn = nb.njit(inline="always")(log_fn), nb.njit(inline="always")(cos_fn), \
        nb.njit(inline="always")(sqrt_fn)

    @nb.njit(inline="always")
    def normal64(i, draw, chain, k0, k1):
        # Box-Muller of one draw of u1 and the next of u2, as PhiloxGenerator.normal
        u1 = 1.0 - _uniform64(i, draw, chain, k0, k1)
        u2 = _uniform64(i, draw + 1, chain, k0, k1)
        return sqrt_nn(-2.0 * log_unit(u1 * 9007199254740992.0)) * cos_2pi(u2)

    return normal64


# --- phi^4 checkerboard -----------------------------------------------------------------------
@nb.njit(inline="always", cache=True)
def _to32(z):
    return np.float32(z)


@nb.njit(inline="always", cache=True)
def _to64(z):
    return np.float64(z)


@functools.lru_cache(maxsize=8)
def _phi4_kernels(normal64, f32: bool):
    # the field's float type fixed at build time: a branch on the dtype inside the kernel
    # would unify both sides to float64
    tofloat, uniform = (_to32, _uniform32) if f32 else (_to64, _uniform64)

    @nb.njit(inline="always")
    def site(x, nsum, i, X, c, hits, philox, k0, k1, draw, drow, urow, step, c1, c3, beta, a, c6, c4, g):
        """All hits at one site (element i of the blocked draw, X along its row), with the
        neighbour sum fixed: the new value and the accepted count. ``draw`` is the parity's
        first draw; ``drow``/``urow`` the row's native normals and uniforms, (hits, h)."""
        n = 0
        for t in range(hits):
            if philox:
                dr = draw + 3 * t
                delta = step * tofloat(normal64(i, dr, c, k0, k1))
                u = uniform(i, dr + 2, c, k0, k1)
            else:
                delta = step * drow[t, X]
                u = urow[t, X]
            grad = x * (c1 + (c3 * x) * x) - beta * nsum
            dS = delta * (grad + delta * ((a + (c6 * x) * x) + delta * ((c4 * x) + g * delta)))
            if math.log(u) < -dS:
                x = x + delta
                n += 1
        return x, n

    @nb.njit(parallel=True)
    def sweep2(phi, p, hits, philox, k0, k1, draw0, deltas, us, bidx, step, c1, c3, beta, a, c6, c4, g, counts,
               nxt, prv):
        C, L = phi.shape[0], phi.shape[1]
        h = L // 2
        draw = draw0 + 3 * p * hits
        for task in nb.prange(C * L):
            c, x0 = task // L, task % L
            xu, xd = nxt[x0], prv[x0]
            start = (p + x0) & 1
            b = bidx[(x0 & 1) * 2 + start]
            base = (b * h + (x0 >> 1)) * h
            drow = deltas[:, 0, 0, 0] if philox else deltas[:, c, b, x0 >> 1]
            urow = us[:, 0, 0, 0] if philox else us[:, c, b, x0 >> 1]
            n = 0
            for x1 in range(start, L, 2):
                X1 = x1 >> 1
                nsum = (phi[c, xu, x1] + phi[c, xd, x1]) + (phi[c, x0, nxt[x1]] + phi[c, x0, prv[x1]])
                phi[c, x0, x1], k = site(phi[c, x0, x1], nsum, base + X1, X1, c, hits, philox, k0, k1, draw,
                                         drow, urow, step, c1, c3, beta, a, c6, c4, g)
                n += k
            counts[c, x0] += n

    @nb.njit(parallel=True)
    def sweep3(phi, p, hits, philox, k0, k1, draw0, deltas, us, bidx, step, c1, c3, beta, a, c6, c4, g, counts,
               nxt, prv):
        C, L = phi.shape[0], phi.shape[1]
        h = L // 2
        draw = draw0 + 3 * p * hits
        for task in nb.prange(C * L * L):
            c, r = task // (L * L), task % (L * L)
            x0, x1 = r // L, r % L
            x0u, x0d, x1u, x1d = nxt[x0], prv[x0], nxt[x1], prv[x1]
            start = (p + x0 + x1) & 1
            b = bidx[(x0 & 1) * 4 + (x1 & 1) * 2 + start]
            base = ((b * h + (x0 >> 1)) * h + (x1 >> 1)) * h
            drow = deltas[:, 0, 0, 0, 0] if philox else deltas[:, c, b, x0 >> 1, x1 >> 1]
            urow = us[:, 0, 0, 0, 0] if philox else us[:, c, b, x0 >> 1, x1 >> 1]
            n = 0
            for x2 in range(start, L, 2):
                X2 = x2 >> 1
                nsum = ((phi[c, x0u, x1, x2] + phi[c, x0d, x1, x2]) + (phi[c, x0, x1u, x2] + phi[c, x0, x1d, x2])) \
                    + (phi[c, x0, x1, nxt[x2]] + phi[c, x0, x1, prv[x2]])
                phi[c, x0, x1, x2], k = site(phi[c, x0, x1, x2], nsum, base + X2, X2, c, hits, philox, k0, k1, draw,
                                             drow, urow, step, c1, c3, beta, a, c6, c4, g)
                n += k
            counts[c, r] += n

    return sweep2, sweep3


# --- Ising checkerboard -----------------------------------------------------------------------
@nb.njit(inline="always", cache=True)
def _flip_row(row, up, dn, extra, n_extra, start, h, base, hits, philox, k0, k1, draw, c, bits_row, T, off, nxt, prv):
    """One row of a parity: Metropolis flips of sites x1 = 2 X1 + start, X1 < h; returns the
    accepted count. ``extra`` holds the d > 2 neighbour sums per X1 (n_extra = 0 in 2d).
    Under Philox with one hit, four consecutive sites share one block (it is computed once)."""
    n = 0
    cur = np.int64(-1)
    w0 = w1 = w2 = w3 = np.uint64(0)
    for X1 in range(h):
        x1 = 2 * X1 + start
        sx = np.int32(row[x1])
        nsum = (np.int32(up[x1]) + dn[x1]) + (np.int32(row[nxt[x1]]) + row[prv[x1]])
        if n_extra:
            nsum += extra[X1]
        for t in range(hits):
            if philox:
                i = base + X1
                if hits == 1:
                    if (i >> 2) != cur:
                        cur = i >> 2
                        w0, w1, w2, w3 = _philox(np.uint64(cur), np.uint64(draw), np.uint64(c), np.uint64(0), k0, k1)
                    j = i & 3
                    w = w0 if j == 0 else (w1 if j == 1 else (w2 if j == 2 else w3))
                else:
                    w = _word32(i, draw + t, c, k0, k1)
                b = np.int64(w) - 2147483648
            else:
                b = np.int64(bits_row[t, X1])
            acc = np.int32(b <= T[2 * nsum + sx + off])
            sx = sx * (1 - 2 * acc)  # a flip without a branch: accepted half the time near T_c
            n += acc
        row[x1] = sx
    return n


@nb.njit(parallel=True, cache=True)
def _ising2(s, p, hits, philox, k0, k1, draw0, bits, bidx, T, off, counts, nxt, prv):
    C, L = s.shape[0], s.shape[1]
    h = L // 2
    extra = np.zeros(1, dtype=np.int32)
    for task in nb.prange(C * L):
        c, x0 = task // L, task % L
        start = (p + x0) & 1
        b = bidx[(x0 & 1) * 2 + start]
        base = (b * h + (x0 >> 1)) * h
        bits_row = bits[:, c, b, x0 >> 1] if not philox else bits[:, 0, 0, 0]
        counts[c, x0] += _flip_row(s[c, x0], s[c, nxt[x0]], s[c, prv[x0]], extra, 0, start, h, base, hits, philox,
                                   k0, k1, draw0 + p * hits, c, bits_row, T, off, nxt, prv)


@nb.njit(parallel=True, cache=True)
def _ising3(s, p, hits, philox, k0, k1, draw0, bits, bidx, T, off, counts, nxt, prv):
    C, L = s.shape[0], s.shape[1]
    h = L // 2
    for task in nb.prange(C * L * L):
        c, r = task // (L * L), task % (L * L)
        x0, x1 = r // L, r % L
        start = (p + x0 + x1) & 1
        b = bidx[(x0 & 1) * 4 + (x1 & 1) * 2 + start]
        base = ((b * h + (x0 >> 1)) * h + (x1 >> 1)) * h
        # the sums over the two outer axes' neighbours, then the row along the last axis
        extra = np.empty(h, dtype=np.int32)
        a0, a1, a2, a3 = s[c, nxt[x0], x1], s[c, prv[x0], x1], s[c, x0, nxt[x1]], s[c, x0, prv[x1]]
        for X2 in range(h):
            x2 = 2 * X2 + start
            extra[X2] = (np.int32(a2[x2]) + a3[x2])
        bits_row = bits[:, c, b, x0 >> 1, x1 >> 1] if not philox else bits[:, 0, 0, 0, 0]
        counts[c, r] += _flip_row(s[c, x0, x1], a0, a1, extra, 1, start, h, base, hits, philox,
                                  k0, k1, draw0 + p * hits, c, bits_row, T, off, nxt, prv)


def _neighbours(L: int):
    """x + 1 and x - 1 on the ring of L sites: a load where a modulo would cost a division."""
    i = np.arange(L, dtype=np.int64)
    return (i + 1) % L, (i - 1) % L


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
        normal64 = _normal_math(*stream["normal_math"]) if philox else _normal_math(*_NATIVE_MATH)
        kernel = _phi4_kernels(normal64, ft is np.float32)[d - 2]
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


def _never(k):  # placeholders: a native stream never calls the normal
    return 0.0


_NATIVE_MATH = (_never, _never, _never)


# --- HMC ----------------------------------------------------------------------------------------
@nb.njit(inline="always", cache=True)
def _grad(x, nsum, c1, c3, beta):
    return x * (c1 + (c3 * x) * x) - beta * nsum


@nb.njit(parallel=True, cache=True)
def _hmc_pass2(src, dst, pm, grad_in, use_grad_in, ck, cd, drift, c1, c3, beta, grad_out, nxt, prv):
    """Per site: the gradient at ``src`` (or ``grad_in``), p -= ck grad, then dst = src + cd p."""
    C, L = src.shape[0], src.shape[1]
    for task in nb.prange(C * L):
        c, x0 = task // L, task % L
        xu, xd = nxt[x0], prv[x0]
        for x1 in range(L):
            x = src[c, x0, x1]
            if use_grad_in:
                g = grad_in[c, x0, x1]
            else:
                nsum = ((src[c, xu, x1] + src[c, xd, x1]) + src[c, x0, nxt[x1]]) + src[c, x0, prv[x1]]
                g = _grad(x, nsum, c1, c3, beta)
            q = pm[c, x0, x1] - ck * g
            pm[c, x0, x1] = q
            if drift:
                dst[c, x0, x1] = x + cd * q
            else:
                grad_out[c, x0, x1] = g


@nb.njit(parallel=True, cache=True)
def _hmc_pass3(src, dst, pm, grad_in, use_grad_in, ck, cd, drift, c1, c3, beta, grad_out, nxt, prv):
    C, L = src.shape[0], src.shape[1]
    for task in nb.prange(C * L * L):
        c, r = task // (L * L), task % (L * L)
        x0, x1 = r // L, r % L
        x0u, x0d, x1u, x1d = nxt[x0], prv[x0], nxt[x1], prv[x1]
        for x2 in range(L):
            x = src[c, x0, x1, x2]
            if use_grad_in:
                g = grad_in[c, x0, x1, x2]
            else:
                nsum = ((((src[c, x0u, x1, x2] + src[c, x0d, x1, x2]) + src[c, x0, x1u, x2]) + src[c, x0, x1d, x2])
                        + src[c, x0, x1, nxt[x2]]) + src[c, x0, x1, prv[x2]]
                g = _grad(x, nsum, c1, c3, beta)
            q = pm[c, x0, x1, x2] - ck * g
            pm[c, x0, x1, x2] = q
            if drift:
                dst[c, x0, x1, x2] = x + cd * q
            else:
                grad_out[c, x0, x1, x2] = g


@nb.njit(parallel=True, cache=True)
def _energies2(phi, pm, a, g, beta, out, nxt):
    """Per chain and row: sum of the action density and of p^2 / 2."""
    C, L = phi.shape[0], phi.shape[1]
    for task in nb.prange(C * L):
        c, x0 = task // L, task % L
        xu = nxt[x0]
        s, k = 0.0, 0.0
        for x1 in range(L):
            x = phi[c, x0, x1]
            x2 = x * x
            s += (a * x2 + (g * x2) * x2) - (beta * x) * (phi[c, xu, x1] + phi[c, x0, nxt[x1]])
            q = pm[c, x0, x1]
            k += q * q
        out[c, x0, 0] = s
        out[c, x0, 1] = 0.5 * k


@nb.njit(parallel=True, cache=True)
def _energies3(phi, pm, a, g, beta, out, nxt):
    C, L = phi.shape[0], phi.shape[1]
    for task in nb.prange(C * L * L):
        c, r = task // (L * L), task % (L * L)
        x0, x1 = r // L, r % L
        x0u, x1u = nxt[x0], nxt[x1]
        s, k = 0.0, 0.0
        for x2 in range(L):
            x = phi[c, x0, x1, x2]
            xx = x * x
            s += (a * xx + (g * xx) * xx) - (beta * x) * ((phi[c, x0u, x1, x2] + phi[c, x0, x1u, x2])
                                                           + phi[c, x0, x1, nxt[x2]])
            q = pm[c, x0, x1, x2]
            k += q * q
        out[c, r, 0] = s
        out[c, r, 1] = 0.5 * k


def hmc_trajectory(phi, action, grad, p, u, plan: dict):
    """A fused HMC trajectory with its accept/reject: (phi, action, grad, accepted, dH), as
    :meth:`HMC.propose_and_accept` returns them."""
    h_phi, back = _host(phi)
    h_action, h_grad, h_p, h_u = (_host(a)[0] for a in (action, grad, p, u))
    d = plan["dim"]
    ft = np.float32 if plan["dtype"] == "float32" else np.float64
    cst = plan["constants"]
    c1, c3, beta, a, g = (ft(cst[k]) for k in ("c1", "c3", "beta", "a", "g"))
    run, energies = (_hmc_pass2, _energies2) if d == 2 else (_hmc_pass3, _energies3)
    seq = plan["sequence"]  # kick, drift, kick, ..., kick
    V = h_phi[0].size
    parts = np.zeros((h_phi.shape[0], h_phi.shape[1] ** (d - 1), 2), dtype=np.float64)
    nxt, prv = _neighbours(h_phi.shape[1])
    energies(h_phi, h_p, a, g, beta, parts, nxt)
    kinetic0 = parts[..., 1].sum(axis=1)
    pm = np.array(h_p, dtype=ft, copy=True)
    src, dst = np.array(h_phi, copy=True), np.empty_like(h_phi)
    grad_out = np.empty_like(h_phi)
    first = True
    for j in range(0, len(seq) - 1, 2):
        ck, cd = ft(seq[j][1]), ft(seq[j + 1][1])
        run(src, dst, pm, h_grad, first, ck, cd, True, c1, c3, beta, grad_out, nxt, prv)
        src, dst = dst, src
        first = False
    run(src, dst, pm, h_grad, first, ft(seq[-1][1]), ft(0.0), False, c1, c3, beta, grad_out, nxt, prv)
    energies(src, pm, a, g, beta, parts, nxt)
    new_action = (parts[..., 0].sum(axis=1) + plan["constant_per_site"] * V).astype(ft)
    dH = (new_action + parts[..., 1].sum(axis=1)) - (h_action.astype(np.float64) + kinetic0)
    dH = dH.astype(ft)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.log(h_u) < -dH
    keep = acc.reshape((-1,) + (1,) * d)
    return (back(np.where(keep, src, h_phi)), back(np.where(acc, new_action, h_action)),
            back(np.where(keep, grad_out, h_grad)), back(acc), back(dH))
