"""The fused HMC trajectory of phi^4 (float32, float64, d = 2 or 3): one pass per integration
step (gradient at the drifted field, kick, next drift), the Hamiltonian's sums, then the
accept/reject. Small chains run their whole trajectory one chain per task (their arrays stay
in cache); large ones pass by pass over all chains.
"""
from __future__ import annotations

import functools

import numba as nb
import numpy as np

from .common import as_rows, host, neighbours, row_neighbours
from .philox import philox_chain_uniforms, philox_normals

__all__ = ["hmc_trajectory"]


@nb.njit(inline="always", cache=True, error_model="numpy")
def _grad(x, nsum, c1, c3, beta):
    return x * (c1 + (c3 * x) * x) - beta * nsum


@nb.njit(inline="always", cache=True, error_model="numpy")
def _pass_row(d, src, dst, pm, gin, use_grad_in, ck, cd, drift, c1, c3, beta, gout, nxt, prv, r):
    """Row r of one chain (as rows, (L^(d-1), L)): the gradient at ``src`` (or ``gin``),
    p -= ck grad, then dst = src + cd p (``drift``) or gout = grad. The row's inner sites take
    their neighbours along the row at x +- 1, a loop the compiler vectorises; the two ends wrap."""
    L = src.shape[1]
    n0, n1, n2, n3 = row_neighbours(d, r, L, nxt, prv)
    ur = np.uint64(r)  # unsigned, as row_neighbours' rows
    # one view per statement (see .common: a tuple of views can lose writes)
    s = src[ur]
    a0 = src[n0]
    a1 = src[n1]
    a2 = src[n2]
    a3 = src[n3]
    p = pm[ur]
    out = dst[ur] if drift else gout[ur]
    if use_grad_in:
        gi = gin[ur]
        for x in range(L):
            q = p[x] - ck * gi[x]
            p[x] = q
            out[x] = s[x] + cd * q if drift else gi[x]
        return
    for x in range(1, L - 1):
        v = s[x]
        other = (((a0[x] + a1[x]) + a2[x]) + a3[x]) if d == 3 else (a0[x] + a1[x])
        g = _grad(v, (other + s[x + 1]) + s[x - 1], c1, c3, beta)
        q = p[x] - ck * g
        p[x] = q
        out[x] = v + cd * q if drift else g
    for e in range(2 if L > 1 else 1):
        x = e * (L - 1)
        v = s[x]
        other = (((a0[x] + a1[x]) + a2[x]) + a3[x]) if d == 3 else (a0[x] + a1[x])
        g = _grad(v, (other + s[nxt[x]]) + s[prv[x]], c1, c3, beta)
        q = p[x] - ck * g
        p[x] = q
        out[x] = v + cd * q if drift else g


@nb.njit(inline="always", cache=True, error_model="numpy")
def _energy_row(d, phi, pm, a, g, beta, nxt, prv, r):
    """Row r of one chain: the sums of the action density and of p^2 (the forward neighbours:
    x0 + 1, x1 + 1 in 3d, then x + 1 along the row)."""
    L = phi.shape[1]
    n0, _, n2, _ = row_neighbours(d, r, L, nxt, prv)
    ur = np.uint64(r)
    row = phi[ur]
    up0 = phi[n0]
    up1 = phi[n2]
    p = pm[ur]
    s, k = 0.0, 0.0
    for x in range(L):
        v = row[x]
        vv = v * v
        up = (up0[x] + up1[x]) if d == 3 else up0[x]
        s += (a * vv + (g * vv) * vv) - (beta * v) * (up + row[nxt[x]])
        q = p[x]
        k += q * q
    return s, k


@functools.lru_cache(maxsize=2)
def _hmc_kernels(d: int):
    """For d = 2 or 3: a pass over all chains (parallel over rows), the energies, and a whole
    trajectory per chain (parallel over chains). Every array is (chains, L^(d-1), L)."""

    @nb.njit(parallel=True, error_model="numpy")
    def one_pass(src, dst, pm, gin, use_grad_in, ck, cd, drift, c1, c3, beta, gout, nxt, prv):
        C, R = src.shape[0], src.shape[1]
        for task in nb.prange(C * R):
            c, r = task // R, task % R
            _pass_row(d, src[c], dst[c], pm[c], gin[c], use_grad_in, ck, cd, drift, c1, c3, beta, gout[c], nxt, prv, r)

    @nb.njit(parallel=True, error_model="numpy")
    def energies(phi, pm, a, g, beta, out, nxt, prv):
        C, R = phi.shape[0], phi.shape[1]
        for task in nb.prange(C * R):
            c, r = task // R, task % R
            s, k = _energy_row(d, phi[c], pm[c], a, g, beta, nxt, prv, r)
            out[c, r, 0] = s
            out[c, r, 1] = 0.5 * k

    @nb.njit(parallel=True, error_model="numpy")
    def chains(phi, pm, gin, cks, cds, ck_last, c1, c3, beta, a, g, out, gout, parts0, parts1, nxt, prv):
        """Every pass of the trajectory for one chain after another: a small chain's arrays
        stay in the core's cache for all of them, instead of going through memory once per
        pass. The same arithmetic, site by site, as the passes over all chains."""
        C, R, nd = phi.shape[0], phi.shape[1], cds.shape[0]
        for c in nb.prange(C):
            scratch = np.empty_like(phi[c])
            for r in range(R):
                s, k = _energy_row(d, phi[c], pm[c], a, g, beta, nxt, prv, r)
                parts0[c, r, 0] = s
                parts0[c, r, 1] = 0.5 * k
            src = phi[c]
            for n in range(nd):
                dst = out[c] if (nd - n) % 2 == 1 else scratch  # the last drift writes out[c]
                for r in range(R):
                    _pass_row(d, src, dst, pm[c], gin[c], n == 0, cks[n], cds[n], True, c1, c3, beta, gout[c], nxt,
                              prv, r)
                src = dst
            for r in range(R):
                _pass_row(d, src, src, pm[c], gin[c], False, ck_last, cds[0] * 0, False, c1, c3, beta, gout[c], nxt,
                          prv, r)
            for r in range(R):
                s, k = _energy_row(d, src, pm[c], a, g, beta, nxt, prv, r)
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
    h_phi, back = host(phi)
    h_action, h_grad = (host(a)[0] for a in (action, grad))
    h_u = None if u is None else host(u)[0]
    ft = np.float32 if plan["dtype"] == "float32" else np.float64
    if p is None:  # Philox: the momenta are the stream's normal draw, computed here
        h_p = philox_normals(h_phi.shape, ft, plan["momenta"])
    else:
        h_p = host(p)[0]
    if u is None:  # Philox: the accept uniforms too
        h_u = philox_chain_uniforms(h_phi.shape[0], ft, plan["accept"])
    cst = plan["constants"]
    c1, c3, beta, a, g = (ft(cst[k]) for k in ("c1", "c3", "beta", "a", "g"))
    one_pass, energies, chains = _hmc_kernels(plan["dim"])
    seq = plan["sequence"]  # kick, drift, kick, ..., kick
    cks = np.array([c for _, c in seq[0::2]], dtype=ft)
    cds = np.array([c for _, c in seq[1::2]], dtype=ft)
    if cds.size == 0:
        raise ValueError("the fused HMC trajectory needs at least one drift")
    C, V = h_phi.shape[0], h_phi[0].size
    nxt, prv = neighbours(h_phi.shape[1])
    # the momenta are kicked in place: a copy unless they were computed here
    pm = as_rows(h_p if p is None else np.array(h_p, dtype=ft, copy=True))
    h_phi_c, h_grad_c = as_rows(np.ascontiguousarray(h_phi)), as_rows(np.ascontiguousarray(h_grad))
    new_phi, grad_out = np.empty_like(h_phi_c), np.empty_like(h_phi_c)
    parts0 = np.empty((C, h_phi_c.shape[1], 2), dtype=np.float64)
    parts1 = np.empty_like(parts0)
    if _hmc_per_chain(C, V * h_phi.itemsize):
        chains(h_phi_c, pm, h_grad_c, cks[:-1], cds, cks[-1], c1, c3, beta, a, g, new_phi, grad_out, parts0, parts1,
               nxt, prv)
    else:
        energies(h_phi_c, pm, a, g, beta, parts0, nxt, prv)
        # two field buffers of our own (the input is only read, by the first pass); the last
        # drift writes new_phi
        scratch = np.empty_like(h_phi_c)
        src, nd = h_phi_c, cds.size
        for n in range(nd):
            dst = new_phi if (nd - n) % 2 == 1 else scratch
            one_pass(src, dst, pm, h_grad_c, n == 0, cks[n], cds[n], True, c1, c3, beta, grad_out, nxt, prv)
            src = dst
        one_pass(src, src, pm, h_grad_c, False, cks[-1], ft(0.0), False, c1, c3, beta, grad_out, nxt, prv)
        energies(src, pm, a, g, beta, parts1, nxt, prv)
    new_phi, grad_out = new_phi.reshape(h_phi.shape), grad_out.reshape(h_phi.shape)
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
