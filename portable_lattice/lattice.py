"""Periodic hypercubic lattices: geometry written once against the Array API.

Fields carry a leading chain axis, ``phi.shape == (chains, L, ..., L)`` with
``d = phi.ndim - 1`` lattice axes. Direction ``mu`` (0-based) is array axis
``mu + 1``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace, device as device_of

from ._checks import namespace_of, positive_int

__all__ = ["lattice_axes", "volume", "shift", "forward_sum", "neighbour_sum", "neighbour_table",
           "parity", "sublattice_masks", "check_field", "Checkerboard", "block_split", "block_merge"]


def lattice_axes(phi: Any) -> tuple[int, ...]:
    """The lattice axes ``(1, ..., d)`` of a field with a leading chain axis."""
    return tuple(range(1, phi.ndim))


def volume(phi: Any) -> int:
    """Number of sites V = L**d of a field with a leading chain axis."""
    v = 1
    for n in phi.shape[1:]:
        v *= n
    return v


def neighbour_table(xp, L: int, d: int, device=None) -> Any:
    """Flat (C-order) indices of the 2d neighbours of every site, shape ``(V, 2d)``.

    Column 2 mu is the +mu neighbour, column 2 mu + 1 the -mu one. Single-site
    updates gather a site's neighbours with it in O(1).
    """
    V = L ** d
    site = xp.arange(V, device=device)
    cols = []
    for mu in range(d):
        stride = L ** (d - 1 - mu)  # C order: axis mu has this flat stride
        x_mu = (site // stride) % L
        for s in (1, -1):
            cols.append(site + (((x_mu + s) % L) - x_mu) * stride)
    return xp.stack(cols, axis=1)


def shift(phi: Any, mu: int, n: int = 1) -> Any:
    """``phi_{x + n e_mu}`` at every site x (periodic)."""
    xp = array_namespace(phi)
    return xp.roll(phi, shift=-n, axis=mu + 1)


def forward_sum(phi: Any) -> Any:
    """sum_mu phi_{x + e_mu}: each bond counted once, as in the hopping term."""
    out = shift(phi, 0)
    for mu in range(1, phi.ndim - 1):
        out = out + shift(phi, mu)
    return out


def neighbour_sum(phi: Any) -> Any:
    """sum_mu (phi_{x + e_mu} + phi_{x - e_mu}): the 2d nearest neighbours."""
    # rolls: measured faster than padding with concat on NumPy (docs/performance.md)
    out = shift(phi, 0, 1) + shift(phi, 0, -1)
    for mu in range(1, phi.ndim - 1):
        out = out + shift(phi, mu, 1) + shift(phi, mu, -1)
    return out


def _coordinate(xp, L: int, d: int, mu: int, device) -> Any:
    """x_mu as an integer array broadcastable to the lattice shape ``(L,)*d``."""
    shape = [1] * d
    shape[mu] = L
    return xp.reshape(xp.arange(L, device=device), tuple(shape))


def parity(xp, L: int, d: int, device=None) -> Any:
    """(sum_mu x_mu) mod 2 on the ``(L,)*d`` lattice; even L keeps it consistent across the boundary."""
    total = _coordinate(xp, L, d, 0, device)
    for mu in range(1, d):
        total = total + _coordinate(xp, L, d, mu, device)
    return total % 2


def sublattice_masks(xp, L: int, d: int, stride: int, device=None) -> list[Any]:
    """The ``stride**d`` site sets ``{x : x_mu = o_mu (mod stride)}`` as boolean masks.

    Members of one set are at least ``stride`` apart along every axis (also
    across the periodic boundary, which is why ``L`` must be a multiple of
    ``stride``). Stride 2 sets are independent for nearest-neighbour actions;
    larger strides serve surrogates with a wider receptive field.
    """
    positive_int("stride", stride)
    if L % stride:
        raise ValueError(f"L must be a multiple of stride, got L={L} and stride={stride}")
    coords = [_coordinate(xp, L, d, mu, device) % stride for mu in range(d)]
    masks = []
    for k in range(stride ** d):
        offsets = [(k // stride ** mu) % stride for mu in range(d)]
        m = coords[0] == offsets[0]
        for mu in range(1, d):
            m = m & (coords[mu] == offsets[mu])
        masks.append(xp.broadcast_to(m, (L,) * d))
    return masks


def check_field(phi: Any, *, name: str = "phi", shape: tuple[int, ...] | None = None,
                dtype: Any = None, device: Any = None) -> Any:
    """Validate a field with a leading chain axis; returns its namespace."""
    xp = namespace_of(name, phi)
    if phi.ndim < 2:
        raise ValueError(f"{name} must have shape (chains, L, ..., L), got {name}.shape={tuple(phi.shape)}")
    if any(n != phi.shape[1] for n in phi.shape[1:]) or phi.shape[1] < 1 or phi.shape[0] < 1:
        raise ValueError(f"{name} must have shape (chains, L, ..., L) with equal, positive L, "
                         f"got {name}.shape={tuple(phi.shape)}")
    if shape is not None and tuple(phi.shape) != tuple(shape):
        raise ValueError(f"{name}.shape must be {tuple(shape)}, got {name}.shape={tuple(phi.shape)}")
    if not xp.isdtype(phi.dtype, "real floating"):
        raise TypeError(f"{name} must have a real floating dtype, got {name}.dtype={phi.dtype}")
    if dtype is not None and phi.dtype != dtype:
        raise TypeError(f"{name}.dtype must be {dtype}, got {name}.dtype={phi.dtype}")
    if device is not None and str(device_of(phi)) != str(device):
        raise ValueError(f"{name} must be on device {device}, got {name} on {device_of(phi)}")
    return xp


# --- blocked layout: the stride-s sub-grids side by side -------------------------------
def block_split(phi: Any, stride: int = 2) -> Any:
    """Split a field into its ``stride**d`` sub-grids.

    Site x = stride * X + o goes to ``blocks[:, k, X]`` with the block index
    k = sum_mu o_mu stride**(d-1-mu) (C order over the offsets o). Shape
    ``(chains, stride**d, L/stride, ..., L/stride)``. Sites of one block are
    ``stride`` apart along every axis.
    """
    xp = array_namespace(phi)
    chains, L, d = phi.shape[0], phi.shape[1], phi.ndim - 1
    if L % stride:
        raise ValueError(f"L must be a multiple of stride, got L={L} and stride={stride}")
    h = L // stride
    x = xp.reshape(phi, (chains,) + (h, stride) * d)
    # axes: 0, then (X_mu, o_mu) pairs at 1 + 2 mu, 2 + 2 mu -> (chains, o_1..o_d, X_1..X_d)
    order = (0,) + tuple(2 + 2 * mu for mu in range(d)) + tuple(1 + 2 * mu for mu in range(d))
    return xp.reshape(xp.permute_dims(x, order), (chains, stride ** d) + (h,) * d)


def block_merge(blocks: Any, stride: int = 2) -> Any:
    """Inverse of :func:`block_split`."""
    xp = array_namespace(blocks)
    chains, d = blocks.shape[0], blocks.ndim - 2
    h = blocks.shape[2]
    x = xp.reshape(blocks, (chains,) + (stride,) * d + (h,) * d)
    order = [0]
    for mu in range(d):
        order += [1 + d + mu, 1 + mu]
    return xp.reshape(xp.permute_dims(x, tuple(order)), (chains,) + (h * stride,) * d)


@dataclass(frozen=True)
class Checkerboard:
    """Both parities of a field as stacks of stride-2 sub-grids, with the neighbour bookkeeping.

    Block o (offsets o_mu in {0, 1}) holds the sites 2X + o; its parity is
    sum(o) mod 2. The neighbour of x = 2X + o in direction +mu lies in block
    o XOR e_mu, at X if o_mu = 0 and at X + e_mu if o_mu = 1; in direction -mu,
    in the same block, at X if o_mu = 1 and X - e_mu otherwise. So a parity's
    neighbour sum is, per direction, one reordering of the other parity's
    blocks plus rolls, and every array operation of a checkerboard update
    touches only the V/2 sites being updated.

    The odd blocks are ordered as the even ones XOR e_0, so the reordering is
    the identity for mu = 0 (and a flip for mu = 1 in two dimensions).
    """

    dim: int

    def offsets(self, k: int) -> tuple[int, ...]:
        return tuple((k >> (self.dim - 1 - mu)) & 1 for mu in range(self.dim))

    def members(self, p: int) -> list[int]:
        """Block indices (C order over offsets) of parity p, in stacking order."""
        even = [k for k in range(2 ** self.dim) if sum(self.offsets(k)) % 2 == 0]
        return even if p == 0 else [k ^ (1 << (self.dim - 1)) for k in even]

    def _slices(self, k: int) -> tuple:
        return (slice(None),) + tuple(slice(o, None, 2) for o in self.offsets(k))

    def split(self, phi: Any) -> tuple[Any, Any]:
        """(even, odd): each ``(chains, 2**(d-1), L/2, ..., L/2)``, gathered with strided views."""
        xp = array_namespace(phi)
        if phi.shape[1] % 2:
            raise ValueError(f"a checkerboard needs an even L, got L={phi.shape[1]}")
        return tuple(xp.stack([phi[self._slices(k)] for k in self.members(p)], axis=1) for p in (0, 1))

    def merge(self, even: Any, odd: Any) -> Any:
        """The field ``(chains, L, ..., L)`` from its two parities (one strided write per block)."""
        xp = array_namespace(even)
        chains, h = even.shape[0], even.shape[2]
        out = xp.empty((chains,) + (2 * h,) * self.dim, dtype=even.dtype, device=device_of(even))
        for half, p in ((even, 0), (odd, 1)):
            for i, k in enumerate(self.members(p)):
                out[self._slices(k)] = half[:, i, ...]
        return out

    def neighbour_blocks(self, p: int) -> tuple[list[list[int]], list[list[int]]]:
        """(block, step): for the i-th block of parity p and direction mu, the position in the
        other parity's stack of the block holding its neighbours along mu, and the roll that
        brings the second of them to X (its neighbours are that block at X and at X - step).

        Block o's neighbours along mu sit in block o XOR e_mu of the other parity: at X for
        one direction, and one block-step ahead (o_mu = 1, the +mu neighbour: step -1) or
        behind (o_mu = 0, the -mu neighbour: step +1) for the other."""
        theirs = self.members(1 - p)
        blocks = [[theirs.index(k ^ (1 << (self.dim - 1 - mu))) for mu in range(self.dim)] for k in self.members(p)]
        steps = [[-1 if self.offsets(k)[mu] == 1 else 1 for mu in range(self.dim)] for k in self.members(p)]
        return blocks, steps

    def neighbour_sum(self, other: Any, p: int) -> Any:
        """sum over the 2d neighbours of the parity-p sites, given the other parity's blocks."""
        xp = array_namespace(other)
        table, steps = self.neighbour_blocks(p)
        blocks = []
        for i in range(len(table)):
            total = None
            for mu in range(self.dim):
                nb = other[:, table[i][mu], ...]
                term = nb + xp.roll(nb, shift=steps[i][mu], axis=1 + mu)
                total = term if total is None else total + term
            blocks.append(total)
        # per block, not a select between two rolled copies of every block: half the rolls,
        # and no where() (slow on int8 spins)
        return xp.stack(blocks, axis=1)
