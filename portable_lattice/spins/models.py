r"""Discrete spin models on periodic hypercubic lattices, written once against the Array API.

Spins are stored compactly (int8) with a leading chain axis, shape
``(chains, L, ..., L)``. Each model gives the energy per chain and the local
energy E_x(t) of candidate states t at every site given the current neighbours,
which is all that checkerboard Metropolis / heat-bath updates need:

* :class:`Ising`  H = -J sum_<ij> s_i s_j - h sum_i s_i,  s = +-1
* :class:`Potts`  H = -J sum_<ij> delta(s_i, s_j),  s = 0..q-1
* :class:`Clock`  H = -J sum_<ij> cos(theta_i - theta_j), theta = 2 pi s / q (Eq. 3 of the DCL paper)
* :class:`EdwardsAnderson`  H = -sum_<ij> J_ij s_i s_j with quenched couplings; ``J`` has shape
  (d, L, ..., L) and ``J[mu][x]`` couples x with x + e_mu.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from array_api_compat import array_namespace, device as device_of

from .._checks import finite_float, namespace_of, positive_int
from .._delegation import implementation
from ..lattice import lattice_axes, shift

__all__ = ["Ising", "Potts", "Clock", "EdwardsAnderson", "check_spins"]


def check_spins(s: Any, model, name: str = "spins") -> Any:
    """Validate a spin array for ``model``: integer dtype, shape (chains, L, ..., L), states in range."""
    xp = namespace_of(name, s)
    if not xp.isdtype(s.dtype, "integral"):
        raise TypeError(f"{name} must have an integer dtype (int8), got {name}.dtype={s.dtype}")
    if s.ndim < 2 or any(n != s.shape[1] for n in s.shape[1:]):
        raise ValueError(f"{name} must have shape (chains, L, ..., L), got {name}.shape={tuple(s.shape)}")
    if model.dim is not None and s.ndim - 1 != model.dim:
        raise ValueError(f"{name} must be {model.dim}-dimensional for this model, got {s.ndim - 1}")
    ok = model.valid(s)
    if not bool(xp.all(ok)):
        bad = s[~ok][0] if hasattr(s[~ok], "shape") else "?"
        raise ValueError(f"{name} holds values outside the model's states {model.state_values()}, e.g. {int(bad)}")
    return xp


def _sum_lattice(x):
    xp = array_namespace(x)
    return xp.sum(x, axis=lattice_axes(x))


def _neighbour_sum_int8(s):
    """sum over the 2d neighbours of +-1 spins, exact in int8 (|sum| <= 2d): roll 1-byte spins."""
    nsum = shift(s, 0, 1) + shift(s, 0, -1)
    for mu in range(1, s.ndim - 1):
        nsum = nsum + shift(s, mu, 1) + shift(s, mu, -1)
    return nsum


def lookup(table, index):
    """``table[index]`` for a 1-D table and non-negative integer indices of any shape."""
    xp = array_namespace(table)
    return xp.reshape(xp.take(table, xp.reshape(index, (-1,)), axis=0), tuple(index.shape))


def bits32_threshold(p: float) -> int:
    """T with P(b <= T) = round(p 2**32) / 2**32 for b uniform on the int32 values
    (``rng.bits32``), clipped to the int32 range: exact for p = 1, within 2**-33 of p
    otherwise (2**-32 where p < 2**-33)."""
    return max(-2 ** 31, min(2 ** 31 - 1, round(p * 2.0 ** 32) - 2 ** 31 - 1))


def bits_below(bits, thresholds: list[int], index):
    """``bits <= thresholds[index]`` elementwise: a Bernoulli draw per site, with the
    site's probability looked up from a small host table by its int32 ``index``."""
    xp = array_namespace(bits)
    table = xp.asarray(thresholds, dtype=xp.int32, device=device_of(bits))
    return bits <= implementation("lookup", xp, lookup)(table, index)


@dataclass(frozen=True)
class Ising:
    """Ising model H = -J sum_<ij> s_i s_j - h sum_i s_i with s = +-1."""

    J: float = 1.0
    h: float = 0.0
    dim: int | None = None
    n_states: int = field(default=2, init=False)

    def __post_init__(self):
        finite_float("J", self.J)
        finite_float("h", self.h)

    def state_values(self):
        return (-1, 1)

    def valid(self, s):
        return (s == 1) | (s == -1)

    def random(self, rng, shape, dtype):
        """Hot start: independent +-1 spins."""
        u = rng.uniform(shape, dtype)
        xp = array_namespace(u)
        return xp.where(u < 0.5, xp.asarray(-1, dtype=xp.int8, device=device_of(u)),
                        xp.asarray(1, dtype=xp.int8, device=device_of(u)))

    def field(self, s, dtype):
        """Local field J sum_nb s_nb + h, as ``dtype``."""
        xp = array_namespace(s)
        return self.J * xp.astype(_neighbour_sum_int8(s), dtype) + self.h

    def local_energy(self, t, s, dtype):
        """E_x(t) = -t (J sum_nb s_nb + h) for candidate spins t at every site."""
        xp = array_namespace(s)
        return -xp.astype(t, dtype) * self.field(s, dtype)

    def draw_proposals(self, rng, shape):
        """Random input of :meth:`propose` (none needed: Ising proposals are flips)."""
        return None

    def propose(self, s, k):
        """The proposed new spins: a flip."""
        return -s

    def delta_energy(self, t, s, dtype):
        """E_x(t) - E_x(s_x) at every site: -(t - s)(J sum_nb s_nb + h)."""
        xp = array_namespace(s)
        return -xp.astype(t - s, dtype) * self.field(s, dtype)

    def flip_energy(self, s, dtype):
        """E_x(-s_x) - E_x(s_x) = 2 s_x (J sum_nb s_nb + h), with s_x sum_nb kept in int8."""
        xp = array_namespace(s)
        dE = (2.0 * self.J) * xp.astype(s * _neighbour_sum_int8(s), dtype)
        return dE if self.h == 0 else dE + (2.0 * self.h) * xp.astype(s, dtype)

    def flip_thresholds(self, beta: float, dim: int) -> list[int]:
        """Integer Metropolis thresholds for a flip, indexed by k = 2 sum_nb s_nb + s_x + 4 dim + 1.

        The flip's dE = 2 s_x (J sum_nb s_nb + h) takes one value per (s_x, sum_nb),
        and k numbers those pairs (sum_nb is even, so 2 sum_nb + s_x is unique). With
        b uniform on the 2**32 int32 values, ``b <= T`` has probability
        round(p 2**32) / 2**32 for p = min(1, exp(-beta dE)) (:func:`bits32_threshold`):
        exactly 1 where dE <= 0. Unused k get the lowest threshold.
        """
        table = [-2 ** 31] * (8 * dim + 3)
        for nsum in range(-2 * dim, 2 * dim + 1, 2):
            for s in (-1, 1):
                dE = 2.0 * s * (self.J * nsum + self.h)
                p = 1.0 if dE <= 0 else math.exp(-beta * dE)
                table[2 * nsum + s + 4 * dim + 1] = bits32_threshold(p)
        return table

    def heatbath_thresholds(self, beta: float, dim: int) -> list[int]:
        """Integer heat-bath thresholds indexed by sum_nb s_nb + 2 dim: the new spin is +1 where
        ``b <= T`` (:func:`bits32_threshold`), for
        p = P(s_x = +1 | neighbours) = 1 / (1 + exp(-2 beta (J sum_nb s_nb + h))).
        """
        table = []
        for nsum in range(-2 * dim, 2 * dim + 1):
            x = 2.0 * beta * (self.J * nsum + self.h)
            # the logistic function, without overflow for either sign of x
            p = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
            table.append(bits32_threshold(p))
        return table

    def heatbath_spins(self, nsum, bits, beta: float, dim: int):
        """New int8 spins drawn from their conditional Boltzmann weights given the int8
        neighbour sums, from 32 random bits per site (``rng.bits32``)."""
        xp = array_namespace(nsum)
        up = bits_below(bits, self.heatbath_thresholds(beta, dim), xp.astype(nsum + 2 * dim, xp.int32))
        return 2 * xp.astype(up, xp.int8) - 1

    def flip_accept(self, s, nsum, bits, beta: float, dim: int):
        """Metropolis acceptance of flipping every spin s_x, given its int8 neighbour sum and
        32 random bits per site (``rng.bits32``): one table lookup and one integer compare
        where the float route needs a conversion, an exp and a float compare per site.
        """
        xp = array_namespace(s)
        # |2 nsum + s| + 4 dim + 1 <= 8 dim + 2: exact in int8 for any dim we run
        return bits_below(bits, self.flip_thresholds(beta, dim), xp.astype(2 * nsum + (s + (4 * dim + 1)), xp.int32))

    def energy(self, s, dtype):
        """H per chain."""
        xp = array_namespace(s)
        f = xp.astype(s, dtype)
        bonds = f * shift(f, 0, 1)
        for mu in range(1, s.ndim - 1):
            bonds = bonds + f * shift(f, mu, 1)
        return -self.J * _sum_lattice(bonds) - self.h * _sum_lattice(f)

    def magnetisation(self, s, dtype):
        """m = V^-1 sum_i s_i per chain."""
        xp = array_namespace(s)
        return xp.mean(xp.astype(s, dtype), axis=lattice_axes(s))

    def bond_probability(self, beta):
        """Swendsen-Wang / Wolff bond probability between equal spins: 1 - exp(-2 beta J)."""
        return 1.0 - math.exp(-2.0 * beta * self.J)

    def params(self):
        return {"name": "ising", "J": self.J, "h": self.h}


@dataclass(frozen=True)
class Potts:
    """q-state Potts model H = -J sum_<ij> delta(s_i, s_j), s = 0..q-1."""

    q: int = 3
    J: float = 1.0
    dim: int | None = None

    def __post_init__(self):
        if isinstance(self.q, bool) or not isinstance(self.q, int) or self.q < 2:
            raise ValueError(f"q must be an integer >= 2, got q={self.q!r}")
        finite_float("J", self.J)

    @property
    def n_states(self):
        return self.q

    def state_values(self):
        return tuple(range(self.q))

    def valid(self, s):
        return (s >= 0) & (s < self.q)

    def random(self, rng, shape, dtype):
        xp_k = rng.integers(self.q, shape)
        xp = array_namespace(xp_k)
        return xp.astype(xp_k, xp.int8)

    def pair(self, a, b, dtype):
        """Energy of one bond per unit J with a sign: delta(a, b)."""
        xp = array_namespace(a)
        return xp.astype(a == b, dtype)

    def local_energy(self, t, s, dtype):
        """E_x(t) = -J sum_nb pair(t, s_nb)."""
        total = None
        for mu in range(s.ndim - 1):
            for n in (1, -1):
                term = self.pair(t, shift(s, mu, n), dtype)
                total = term if total is None else total + term
        return -self.J * total

    def draw_proposals(self, rng, shape):
        """Offsets k ~ U{0..q-2} for :meth:`propose`."""
        k = rng.integers(self.q - 1, shape)
        xp = array_namespace(k)
        return xp.astype(k, xp.int8)

    def propose(self, s, k):
        """A uniformly random state different from the current one: (s + 1 + k) mod q."""
        return (s + 1 + k) % self.q

    def delta_energy(self, t, s, dtype):
        """E_x(t) - E_x(s_x) at every site."""
        return self.local_energy(t, s, dtype) - self.local_energy(s, s, dtype)

    def energy(self, s, dtype):
        total = None
        for mu in range(s.ndim - 1):
            term = self.pair(s, shift(s, mu, 1), dtype)
            total = term if total is None else total + term
        return -self.J * _sum_lattice(total)

    def magnetisation(self, s, dtype):
        """|V^-1 sum_i exp(2 pi i s_i / q)| per chain (the standard Z_q order parameter)."""
        xp = array_namespace(s)
        theta = xp.astype(s, dtype) * (2.0 * math.pi / self.q)
        c = xp.mean(xp.cos(theta), axis=lattice_axes(s))
        sn = xp.mean(xp.sin(theta), axis=lattice_axes(s))
        return xp.sqrt(c * c + sn * sn)

    def bond_probability(self, beta):
        """Swendsen-Wang bond probability between equal spins: 1 - exp(-beta J)."""
        return 1.0 - math.exp(-beta * self.J)

    def params(self):
        return {"name": "potts", "q": self.q, "J": self.J}


@dataclass(frozen=True)
class Clock(Potts):
    """q-state clock model H = -J sum_<ij> cos(2 pi (s_i - s_j) / q) (Eq. 3 of the DCL paper)."""

    def pair(self, a, b, dtype):
        xp = array_namespace(a)
        return xp.cos(xp.astype(a - b, dtype) * (2.0 * math.pi / self.q))

    def bond_probability(self, beta):
        raise ValueError("Swendsen-Wang is implemented for Ising and Potts, not the clock model")

    def params(self):
        return {"name": "clock", "q": self.q, "J": self.J}


@dataclass(frozen=True)
class EdwardsAnderson(Ising):
    """Edwards-Anderson spin glass H = -sum_<ij> J_ij s_i s_j with quenched couplings.

    ``couplings`` has shape (d, L, ..., L): ``couplings[mu][x]`` couples x with
    x + e_mu. Build with :meth:`gaussian` (J_ij ~ N(0, 1) from a seed) or pass
    an array (any backend, float).
    """

    couplings: Any = None

    def __post_init__(self):
        c = self.couplings
        if c is None:
            raise ValueError("couplings must be given: an array of shape (d, L, ..., L), "
                             "or use EdwardsAnderson.gaussian(L, dim, seed)")
        xp = namespace_of("couplings", c)
        if not xp.isdtype(c.dtype, "real floating"):
            raise TypeError(f"couplings must be a float array, got couplings.dtype={c.dtype}")
        d = c.ndim - 1
        if d < 1 or c.shape[0] != d or any(n != c.shape[1] for n in c.shape[1:]):
            raise ValueError(f"couplings must have shape (d, L, ..., L) with d = number of lattice axes, "
                             f"got couplings.shape={tuple(c.shape)}")
        object.__setattr__(self, "dim", d)

    @classmethod
    def gaussian(cls, L: int, dim: int, seed: int, backend="numpy", device=None, dtype="float64"):
        """J_ij ~ N(0, 1), one per bond, drawn from ``seed`` on ``backend``."""
        from ..backends import get_backend
        positive_int("L", L)
        positive_int("dim", dim)
        be = get_backend(backend, device)
        return cls(couplings=be.rng(seed).normal((dim,) + (L,) * dim, be.dtype(dtype)))

    def _check_lattice(self, s):
        if tuple(s.shape[1:]) != tuple(self.couplings.shape[1:]):
            raise ValueError(f"spins.shape {tuple(s.shape)} does not match couplings.shape "
                             f"{tuple(self.couplings.shape)}")

    def _prepare(self, s, dtype):
        """(spins, couplings) as ``dtype``, after checking they fit together."""
        self._check_lattice(s)
        xp = array_namespace(s)
        return xp.astype(s, dtype), xp.astype(self.couplings, dtype)

    def field(self, s, dtype):
        """sum_mu (J[mu][x] s_{x+mu} + J[mu][x-mu] s_{x-mu})."""
        f, J = self._prepare(s, dtype)
        total = None
        for mu in range(s.ndim - 1):
            term = J[mu, ...] * shift(f, mu, 1) + shift(J[mu, ...][None, ...], mu, -1)[0, ...] * shift(f, mu, -1)
            total = term if total is None else total + term
        return total

    def energy(self, s, dtype):
        f, J = self._prepare(s, dtype)
        total = None
        for mu in range(s.ndim - 1):
            term = J[mu, ...] * f * shift(f, mu, 1)
            total = term if total is None else total + term
        return -_sum_lattice(total)

    def flip_energy(self, s, dtype):
        """E_x(-s_x) - E_x(s_x) = 2 s_x sum_mu (J[mu][x] s_{x+mu} + J[mu][x-mu] s_{x-mu})."""
        xp = array_namespace(s)
        return 2.0 * xp.astype(s, dtype) * self.field(s, dtype)

    def bond_probability(self, beta):
        raise ValueError("Swendsen-Wang/Wolff are not valid for the frustrated Edwards-Anderson model")

    def params(self):
        return {"name": "ea", "L": int(self.couplings.shape[1]), "dim": self.dim}
