"""Periodic hypercubic lattices: geometry written once against the Array API.

Fields carry a leading chain axis, ``phi.shape == (chains, L, ..., L)`` with
``d = phi.ndim - 1`` lattice axes. Direction ``mu`` (0-based) is array axis
``mu + 1``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace, device as device_of

from ._checks import positive_int

__all__ = ["Lattice", "lattice_axes", "shift", "forward_sum", "neighbour_sum",
           "parity", "sublattice_masks", "check_field"]


def lattice_axes(phi: Any) -> tuple[int, ...]:
    """The lattice axes ``(1, ..., d)`` of a field with a leading chain axis."""
    return tuple(range(1, phi.ndim))


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


@dataclass(frozen=True)
class Lattice:
    """An ``L**d`` periodic hypercubic lattice."""

    L: int
    dim: int = 2

    def __post_init__(self):
        positive_int("L", self.L)
        positive_int("dim", self.dim)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.L,) * self.dim

    @property
    def volume(self) -> int:
        return self.L ** self.dim

    @classmethod
    def of(cls, phi: Any) -> "Lattice":
        """The lattice a field lives on (validated to be hypercubic)."""
        check_field(phi)
        return cls(phi.shape[1], phi.ndim - 1)


def check_field(phi: Any, *, name: str = "phi", shape: tuple[int, ...] | None = None,
                dtype: Any = None, device: Any = None) -> Any:
    """Validate a field with a leading chain axis; returns its namespace."""
    try:
        xp = array_namespace(phi)
    except TypeError as e:
        raise TypeError(f"{name} must be an array of a supported backend, got {type(phi).__name__}") from e
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
