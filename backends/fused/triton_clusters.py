r"""Swendsen-Wang cluster labelling on the GPU (Triton): union-find in the style of Komura
(Comput. Phys. Commun. 194, 2015), for torch CUDA tensors (CPU tensors under Triton's
interpreter, for the tests).

The contract of :func:`portable_lattice.samplers.clusters.cluster_labels`: ``bonds`` is a list
of d boolean arrays (chains, L, ..., L), ``bonds[mu][x]`` the bond between x and x + e_mu
(periodic); the result is int64 (chains, L, ..., L), each site's label the smallest flat index
(over chains x sites) in its cluster.

Three passes, repeated until a check finds nothing left to join (one round on a GPU in
practice):

1. *union*: for every active bond, the roots of its two ends are joined by an atomic minimum
   on the larger root's label (Komura's lock-free union: if another thread moved that root
   first, retry from the value it found). Every label points to a smaller or equal index of
   the same cluster, so a cluster's root is its smallest site: the canonical label.
2. *flatten*: every label is replaced by its root.
3. *check*: every active bond's ends carry the same label, else another round. The check
   makes the result independent of how the hardware (or the interpreter) orders atomics.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["cluster_labels"]


@triton.jit
def _find(lab_ptr, r, mask):
    """The roots of the labels r (pointer chasing until label[r] == r). Volatile loads: other
    threads hook roots meanwhile, and a stale cached label would only cost retries."""
    nxt = tl.load(lab_ptr + r, mask=mask, other=0, volatile=True)
    r = tl.where(mask, r, 0)
    while tl.max((nxt != r).to(tl.int32), axis=0) > 0:
        r = nxt
        nxt = tl.load(lab_ptr + r, mask=mask, other=0, volatile=True)
    return r


@triton.jit
def _neighbour(i, mu, L, V, DIM: tl.constexpr):
    """Flat index of i + e_mu (periodic) within i's chain."""
    c = i // V
    s = i % V
    if DIM == 2:
        x0 = s // L
        x1 = s % L
        if mu == 0:
            x0 = (x0 + 1) % L
        else:
            x1 = (x1 + 1) % L
        t = x0 * L + x1
    else:
        x0 = s // (L * L)
        x1 = (s // L) % L
        x2 = s % L
        if mu == 0:
            x0 = (x0 + 1) % L
        elif mu == 1:
            x1 = (x1 + 1) % L
        else:
            x2 = (x2 + 1) % L
        t = (x0 * L + x1) * L + x2
    return c * V + t


@triton.jit
def _union_kernel(lab_ptr, bond_ptr, L, V, n, DIM: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = i < n
    for mu in tl.static_range(DIM):
        act = (tl.load(bond_ptr + mu * n + i, mask=mask, other=0) != 0) & mask
        j = _neighbour(i, mu, L, V, DIM)
        a = _find(lab_ptr, i, act)
        b = _find(lab_ptr, j, act)
        act = act & (a != b)
        while tl.max(act.to(tl.int32), axis=0) > 0:
            lo = tl.minimum(a, b)
            hi = tl.maximum(a, b)
            old = tl.atomic_min(lab_ptr + hi, lo, mask=act)
            # joined where hi was still a root; elsewhere hi had been hooked to old meanwhile
            act = act & (old != hi)
            a = _find(lab_ptr, lo, act)
            b = _find(lab_ptr, tl.where(act, old, 0), act)
            act = act & (a != b)


@triton.jit
def _flatten_kernel(lab_ptr, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = i < n
    r = _find(lab_ptr, i, mask)
    tl.store(lab_ptr + i, r, mask=mask)


@triton.jit
def _check_kernel(lab_ptr, bond_ptr, bad_ptr, L, V, n, DIM: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = i < n
    li = tl.load(lab_ptr + i, mask=mask, other=0)
    bad = tl.zeros([BLOCK], dtype=tl.int32)
    for mu in tl.static_range(DIM):
        act = (tl.load(bond_ptr + mu * n + i, mask=mask, other=0) != 0) & mask
        lj = tl.load(lab_ptr + _neighbour(i, mu, L, V, DIM), mask=act, other=0)
        bad += (act & (li != lj)).to(tl.int32)
    tl.store(bad_ptr + tl.program_id(0), tl.sum(bad, axis=0))


def cluster_labels(bonds: list, block: int = 1024):
    """Canonical cluster labels of the bonds (torch tensors), or NotImplemented where this kernel
    does not apply (the caller then runs the generic path)."""
    d = len(bonds)
    if d not in (2, 3):
        return NotImplemented
    shape = tuple(bonds[0].shape)
    L = shape[1]
    V = L ** d
    n = shape[0] * V
    if any(s != L for s in shape[1:]) or n >= 2 ** 31:
        return NotImplemented  # int32 labels and hypercubic lattices only
    dev = bonds[0].device
    bond = torch.stack([b.to(torch.uint8) for b in bonds]).contiguous()
    lab = torch.arange(n, dtype=torch.int32, device=dev)
    BLOCK = max(16, min(block, triton.next_power_of_2(n)))
    grid = (triton.cdiv(n, BLOCK),)
    bad = torch.zeros(grid[0], dtype=torch.int32, device=dev)
    while True:
        _union_kernel[grid](lab, bond, L, V, n, DIM=d, BLOCK=BLOCK)
        _flatten_kernel[grid](lab, n, BLOCK=BLOCK)
        _check_kernel[grid](lab, bond, bad, L, V, n, DIM=d, BLOCK=BLOCK)
        if int(bad.sum()) == 0:
            return lab.to(torch.int64).reshape(shape)
