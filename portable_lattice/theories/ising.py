r"""Ising spins s = +-1: the ferromagnet in a field, and the Edwards-Anderson spin glass.

* :class:`Ising`  H = -J sum_<ij> s_i s_j - h sum_i s_i
* :class:`EdwardsAnderson`  H = -sum_<ij> J_ij s_i s_j with quenched couplings; ``couplings``
  has shape (d, L, ..., L) and ``couplings[mu][x]`` couples x with x + e_mu.

Both carry their inverse temperature ``beta``: the Boltzmann weight is
exp(-beta H). Spins are int8 with a leading chain axis, ``(chains, L, ..., L)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from array_api_compat import array_namespace, device as device_of

from .._checks import finite_float, namespace_of, positive_int
from ..lattice import lattice_axes, neighbour_sum, shift
from .base import SPINS, Theory, bits32_threshold, bits_below, check_beta

__all__ = ["Ising", "EdwardsAnderson", "check_spins"]


def check_spins(s: Any, model, name: str = "spins") -> Any:
    """Validate a spin array for ``model``: integer dtype, shape (chains, L, ..., L), states in range."""
    xp = namespace_of(name, s)
    if not xp.isdtype(s.dtype, "integral"):
        raise TypeError(f"{name} must have an integer dtype (int8), got {name}.dtype={s.dtype}")
    if s.ndim < 2 or any(n != s.shape[1] for n in s.shape[1:]):
        raise ValueError(f"{name} must have shape (chains, L, ..., L), got {name}.shape={tuple(s.shape)}")
    if model.dim is not None and s.ndim - 1 != model.dim:
        raise ValueError(f"{name} must be {model.dim}-dimensional for this model, got {s.ndim - 1}")
    ok = xp.reshape(model.valid(s), (-1,))
    if not bool(xp.all(ok)):
        # no boolean indexing: it has a data-dependent shape, which strict array libraries refuse
        first = xp.argmax(xp.astype(~ok, xp.int8))
        bad = int(xp.take(xp.reshape(s, (-1,)), xp.reshape(first, (1,)))[0])
        raise ValueError(f"{name} holds values outside the model's states {model.state_values()}, e.g. {bad}")
    return xp


def _sum_lattice(x):
    xp = array_namespace(x)
    return xp.sum(x, axis=lattice_axes(x))


@dataclass(frozen=True)
class Ising(Theory):
    """Ising model H = -J sum_<ij> s_i s_j - h sum_i s_i, s = +-1, at inverse temperature beta."""

    family = SPINS  # a class attribute (not a dataclass field): what every theory of its kind shares

    beta: float
    J: float = 1.0
    h: float = 0.0
    dim: int | None = None
    n_states: int = field(default=2, init=False)
    uniform_couplings = True  # a class attribute: the integer thresholds apply

    def __post_init__(self):
        check_beta(self.beta)
        finite_float("J", self.J)
        finite_float("h", self.h)
        if self.dim is not None:
            positive_int("dim", self.dim)

    # --- states -------------------------------------------------------------------------
    def state_values(self):
        return (-1, 1)

    def valid(self, s):
        return (s == 1) | (s == -1)

    def check_spins(self, s: Any, name: str = "spins") -> Any:
        return check_spins(s, self, name)

    def random(self, rng, shape, dtype):
        """Hot start: independent +-1 spins."""
        u = rng.uniform(shape, dtype)
        xp = array_namespace(u)
        return xp.where(u < 0.5, xp.asarray(-1, dtype=xp.int8, device=device_of(u)),
                        xp.asarray(1, dtype=xp.int8, device=device_of(u)))

    # --- local quantities a sampler asks for ------------------------------------------------
    def field(self, s, dtype):
        """Local field J sum_nb s_nb + h, as ``dtype``."""
        xp = array_namespace(s)
        return self.J * xp.astype(neighbour_sum(s), dtype) + self.h

    def delta_action(self, t, s, dtype):
        """beta (E_x(t) - E_x(s_x)) at every site: -beta (t - s)(J sum_nb s_nb + h)."""
        xp = array_namespace(s)
        return -self.beta * xp.astype(t - s, dtype) * self.field(s, dtype)

    def local_log_weights(self, s, dtype) -> list:
        """-beta E_x(v) for v = -1, +1 at every site (the heat bath's conditional weights)."""
        f = self.beta * self.field(s, dtype)
        return [-f, f]

    def site_delta_action(self, sx, t, nbrs, sites, dtype, table=None):
        """beta (E_x(t) - E_x(s_x)) at one site per chain, given its neighbours ``nbrs`` (chains, 2d)."""
        xp = array_namespace(sx)
        nsum = xp.astype(xp.sum(xp.astype(nbrs, xp.int32), axis=1), dtype)
        return -self.beta * xp.astype(t - sx, dtype) * (self.J * nsum + self.h)

    def flip_thresholds(self, dim: int) -> list[int]:
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
                p = 1.0 if dE <= 0 else math.exp(-self.beta * dE)
                table[2 * nsum + s + 4 * dim + 1] = bits32_threshold(p)
        return table

    def heatbath_thresholds(self, dim: int) -> list[int]:
        """Integer heat-bath thresholds indexed by sum_nb s_nb + 2 dim: the new spin is +1 where
        ``b <= T`` (:func:`bits32_threshold`), for
        p = P(s_x = +1 | neighbours) = 1 / (1 + exp(-2 beta (J sum_nb s_nb + h))).
        """
        table = []
        for nsum in range(-2 * dim, 2 * dim + 1):
            x = 2.0 * self.beta * (self.J * nsum + self.h)
            # the logistic function, without overflow for either sign of x
            p = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
            table.append(bits32_threshold(p))
        return table

    def heatbath_spins(self, nsum, bits, thresholds):
        """New int8 spins drawn from their conditional Boltzmann weights given the int8
        neighbour sums, from 32 random bits per site (``rng.bits32``) and
        :meth:`heatbath_thresholds` (as a list or an int32 array on the spins' device)."""
        xp = array_namespace(nsum)
        offset = (len(thresholds) if isinstance(thresholds, list) else thresholds.shape[0]) // 2  # 2 dim
        up = bits_below(bits, thresholds, xp.astype(nsum + offset, xp.int32))
        return 2 * xp.astype(up, xp.int8) - 1

    def flip_accept(self, s, nsum, bits, thresholds):
        """Metropolis acceptance of flipping every spin s_x, given its int8 neighbour sum, 32
        random bits per site (``rng.bits32``) and :meth:`flip_thresholds`: one table lookup and
        one integer compare where the float route needs a conversion, an exp and a compare.
        """
        xp = array_namespace(s)
        n = len(thresholds) if isinstance(thresholds, list) else thresholds.shape[0]
        offset = (n - 3) // 2 + 1  # 4 dim + 1
        # |2 nsum + s| + 4 dim + 1 <= 8 dim + 2: exact in int8 for any dim we run
        return bits_below(bits, thresholds, xp.astype(2 * nsum + (s + offset), xp.int32))

    def bond_probability(self) -> float:
        """Swendsen-Wang / Wolff bond probability between equal spins: 1 - exp(-2 beta J)
        (a ferromagnet in zero field only)."""
        if self.h != 0:
            raise ValueError(f"cluster updates need zero field, got h={self.h!r}")
        if self.J <= 0:
            raise ValueError(f"cluster updates need a ferromagnetic coupling, got J={self.J!r}")
        return 1.0 - math.exp(-2.0 * self.beta * self.J)

    # --- global quantities --------------------------------------------------------------------
    def energy(self, s, dtype):
        """H per chain."""
        xp = array_namespace(s)
        f = xp.astype(s, dtype)
        bonds = f * shift(f, 0, 1)
        for mu in range(1, s.ndim - 1):
            bonds = bonds + f * shift(f, mu, 1)
        return -self.J * _sum_lattice(bonds) - self.h * _sum_lattice(f)

    def log_weight(self, s, dtype):
        """log of the Boltzmann weight, -beta H, per chain."""
        return -self.beta * self.energy(s, dtype)

    def magnetisation(self, s, dtype):
        """m = V^-1 sum_i s_i per chain."""
        xp = array_namespace(s)
        return xp.mean(xp.astype(s, dtype), axis=lattice_axes(s))

    def params(self):
        return {"name": "ising", "beta": self.beta, "J": self.J, "h": self.h}


@dataclass(frozen=True)
class EdwardsAnderson(Ising):
    """Edwards-Anderson spin glass H = -sum_<ij> J_ij s_i s_j with quenched couplings.

    ``couplings`` has shape (d, L, ..., L): ``couplings[mu][x]`` couples x with
    x + e_mu. Build with :meth:`gaussian` (J_ij ~ N(0, 1) from a seed) or pass
    an array (any backend, float).
    """

    couplings: Any = None

    def __post_init__(self):
        check_beta(self.beta)
        c = self.couplings
        if c is None:
            raise ValueError("couplings must be given: an array of shape (d, L, ..., L), "
                             "or use EdwardsAnderson.gaussian(L, dim, seed, beta=...)")
        xp = namespace_of("couplings", c)
        if not xp.isdtype(c.dtype, "real floating"):
            raise TypeError(f"couplings must be a float array, got couplings.dtype={c.dtype}")
        d = c.ndim - 1
        if d < 1 or c.shape[0] != d or any(n != c.shape[1] for n in c.shape[1:]):
            raise ValueError(f"couplings must have shape (d, L, ..., L) with d = number of lattice axes, "
                             f"got couplings.shape={tuple(c.shape)}")
        if not bool(xp.all(xp.isfinite(c))):
            raise ValueError("couplings must be finite, got NaN or infinite values")
        object.__setattr__(self, "dim", d)

    @classmethod
    def gaussian(cls, L: int, dim: int, seed: int, *, beta: float, backend: Any) -> "EdwardsAnderson":
        """J_ij ~ N(0, 1), one per bond, drawn from ``seed`` on ``backend``
        (a :class:`portable_lattice.backends.Backend`, e.g. ``get_backend("numpy")``)."""
        positive_int("L", L)
        positive_int("dim", dim)
        if not (hasattr(backend, "rng") and hasattr(backend, "dtype")):
            raise TypeError(f"backend must be a portable_lattice.backends.Backend, got {backend!r}")
        return cls(beta=beta, couplings=backend.rng(seed).normal((dim,) + (L,) * dim, backend.dtype("float64")))

    def with_couplings(self, couplings) -> "EdwardsAnderson":
        """The same theory with its couplings on another backend or device."""
        return type(self)(beta=self.beta, couplings=couplings)

    uniform_couplings = False  # a coupling per bond: the float acceptance path

    @classmethod
    def from_card(cls, card, *, dim: int, L: int, couplings=None, backend=None) -> "EdwardsAnderson":
        """Couplings given as an array (``couplings``), or drawn from ``couplings_seed`` on ``backend``;
        a card's ``couplings`` file is read by the run layer and arrives as ``couplings``."""
        if card.get("beta") is None:
            raise ValueError("model ea needs beta (the inverse temperature)")
        if couplings is not None:
            return cls(beta=card["beta"], couplings=couplings)
        if "couplings_seed" not in card:
            raise ValueError("model ea needs exactly one of couplings (a .npy file) or couplings_seed")
        return cls.gaussian(L, dim, card["couplings_seed"], beta=card["beta"], backend=backend)

    def card(self) -> dict:
        return {"model": "ea", "beta": self.beta}  # the couplings are stored beside the card

    def with_arrays(self, convert) -> "EdwardsAnderson":
        return self.with_couplings(convert(self.couplings))

    def check_lattice(self, L: int, dim: int) -> None:
        shape = tuple(self.couplings.shape)
        if self.dim != dim or shape[1] != L:
            raise ValueError(f"couplings of shape {shape} do not fit L={L}, dim={dim}")

    def _check_lattice(self, s):
        if tuple(s.shape[1:]) != tuple(self.couplings.shape[1:]):
            raise ValueError(f"spins.shape {tuple(s.shape)} does not match couplings.shape "
                             f"{tuple(self.couplings.shape)}")

    def check_spins(self, s: Any, name: str = "spins") -> Any:
        xp = check_spins(s, self, name)
        self._check_lattice(s)
        return xp

    def _prepare(self, s, dtype):
        """(spins, couplings) as ``dtype``, after checking they fit together."""
        self._check_lattice(s)
        xp = array_namespace(s)
        return xp.astype(s, dtype), xp.astype(self.couplings, dtype)

    def field(self, s, dtype):
        """The local field ``sum_mu (J[mu][x] s_{x+mu} + J[mu][x-mu] s_{x-mu})``."""
        f, J = self._prepare(s, dtype)
        total = None
        for mu in range(s.ndim - 1):
            term = J[mu, ...] * shift(f, mu, 1) + shift(J[mu, ...][None, ...], mu, -1)[0, ...] * shift(f, mu, -1)
            total = term if total is None else total + term
        return total

    def coupling_table(self, dtype):
        """The couplings to the 2d neighbours of every site, ``(V, 2d)``, in the column
        order of :func:`~portable_lattice.lattice.neighbour_table`."""
        xp = array_namespace(self.couplings)
        J = xp.astype(self.couplings, dtype)
        cols = []
        for mu in range(self.dim):
            cols.append(xp.reshape(J[mu, ...], (-1,)))
            cols.append(xp.reshape(shift(J[mu, ...][None, ...], mu, -1)[0, ...], (-1,)))
        return xp.stack(cols, axis=1)

    def site_delta_action(self, sx, t, nbrs, sites, dtype, table=None):
        """beta (E_x(t) - E_x(s_x)) at one site per chain; ``table`` is :meth:`coupling_table`."""
        xp = array_namespace(sx)
        table = self.coupling_table(dtype) if table is None else table
        Jx = xp.take(table, sites, axis=0)                       # (chains, 2d)
        local = xp.sum(Jx * xp.astype(nbrs, dtype), axis=1)
        return -self.beta * xp.astype(t - sx, dtype) * local

    def energy(self, s, dtype):
        f, J = self._prepare(s, dtype)
        total = None
        for mu in range(s.ndim - 1):
            term = J[mu, ...] * f * shift(f, mu, 1)
            total = term if total is None else total + term
        return -_sum_lattice(total)

    def flip_thresholds(self, dim: int):
        raise ValueError("integer flip thresholds need uniform couplings; the Edwards-Anderson model "
                         "takes the float acceptance path")

    heatbath_thresholds = flip_thresholds

    def bond_probability(self):
        raise ValueError(f"cluster updates (Swendsen-Wang, Wolff) are not valid for the frustrated "
                         f"Edwards-Anderson model, got {type(self).__name__}")

    def params(self):
        return {"name": "ea", "beta": self.beta, "L": int(self.couplings.shape[1]), "dim": self.dim}
