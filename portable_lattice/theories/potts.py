r"""q-state spins s = 0..q-1: the Potts model and the clock model.

* :class:`Potts`  H = -J sum_<ij> delta(s_i, s_j)
* :class:`Clock`  H = -J sum_<ij> cos(2 pi (s_i - s_j) / q)   (Eq. 3 of [DCL])

Both carry their inverse temperature ``beta``. Spins are int8 (so q <= 127).
For q = 3 the clock bond is (3 delta - 1)/2, so the clock model at beta is the
Potts model at 3 beta / 2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace, device as device_of

from .._checks import finite_float, positive_int
from ..lattice import lattice_axes, shift
from .base import SPINS, Theory, check_beta
from .ising import check_spins

__all__ = ["Potts", "Clock"]

#: int8 spins hold the states 0..127
MAX_STATES = 127


@dataclass(frozen=True)
class Potts(Theory):
    """q-state Potts model H = -J sum_<ij> delta(s_i, s_j), s = 0..q-1, at inverse temperature beta."""

    family = SPINS  # a class attribute (not a dataclass field): what every theory of its kind shares

    # the couplings, as Ising's are laid out (beta, a coupling, the dimension): dataclass fields, no logic
    beta: float
    q: int = 3
    J: float = 1.0
    dim: int | None = None

    def __post_init__(self):
        check_beta(self.beta)
        if isinstance(self.q, bool) or not isinstance(self.q, int) or not 2 <= self.q <= MAX_STATES:
            raise ValueError(f"q must be an integer from 2 to {MAX_STATES} (int8 spins), got q={self.q!r}")
        finite_float("J", self.J)
        if self.dim is not None:
            positive_int("dim", self.dim)

    @property
    def n_states(self):
        return self.q

    def state_values(self):
        return tuple(range(self.q))

    def valid(self, s):
        return (s >= 0) & (s < self.q)

    def check_spins(self, s: Any, name: str = "spins") -> Any:
        return check_spins(s, self, name)

    def random(self, rng, shape, dtype):
        k = rng.integers(self.q, shape)
        xp = array_namespace(k)
        return xp.astype(k, xp.int8)

    def pair(self, a, b, dtype):
        """Energy of one bond per unit -J: delta(a, b)."""
        xp = array_namespace(a)
        return xp.astype(a == b, dtype)

    def local_energy(self, t, s, dtype):
        """E_x(t) = -J sum_nb pair(t, s_nb) for candidate states t at every site."""
        total = None
        for mu in range(s.ndim - 1):
            for n in (1, -1):
                term = self.pair(t, shift(s, mu, n), dtype)
                total = term if total is None else total + term
        return -self.J * total

    def local_log_weights(self, s, dtype) -> list:
        """-beta E_x(v) at every site, one array per state v (the heat bath's conditional weights)."""
        xp = array_namespace(s)
        return [-self.beta * self.local_energy(xp.full(s.shape, v, dtype=s.dtype, device=device_of(s)), s, dtype)
                for v in self.state_values()]

    def delta_action(self, t, s, dtype):
        """beta (E_x(t) - E_x(s_x)) at every site."""
        return self.beta * (self.local_energy(t, s, dtype) - self.local_energy(s, s, dtype))

    def site_delta_action(self, sx, t, nbrs, sites, dtype):
        """beta (E_x(t) - E_x(s_x)) at one site per chain, given its neighbours ``nbrs`` (chains, 2d)."""
        xp = array_namespace(sx)
        t2, s2 = xp.reshape(t, (-1, 1)), xp.reshape(sx, (-1, 1))
        diff = xp.sum(self.pair(t2, nbrs, dtype) - self.pair(s2, nbrs, dtype), axis=1)
        return -self.beta * self.J * diff

    def energy(self, s, dtype):
        """H per chain."""
        xp = array_namespace(s)
        total = None
        for mu in range(s.ndim - 1):
            term = self.pair(s, shift(s, mu, 1), dtype)
            total = term if total is None else total + term
        return -self.J * xp.sum(total, axis=lattice_axes(s))

    def log_weight(self, s, dtype):
        """log of the Boltzmann weight, -beta H, per chain."""
        return -self.beta * self.energy(s, dtype)

    def magnetisation(self, s, dtype):
        """|V^-1 sum_i exp(2 pi i s_i / q)| per chain (the standard Z_q order parameter)."""
        xp = array_namespace(s)
        theta = xp.astype(s, dtype) * (2.0 * math.pi / self.q)
        c = xp.mean(xp.cos(theta), axis=lattice_axes(s))
        sn = xp.mean(xp.sin(theta), axis=lattice_axes(s))
        return xp.sqrt(c * c + sn * sn)

    def bond_probability(self) -> float:
        """Swendsen-Wang bond probability between equal spins: 1 - exp(-beta J) (a ferromagnet only)."""
        if self.J <= 0:
            raise ValueError(f"cluster updates need a ferromagnetic coupling, got J={self.J!r}")
        return 1.0 - math.exp(-self.beta * self.J)

    def params(self):
        return {"name": "potts", "beta": self.beta, "q": self.q, "J": self.J}


@dataclass(frozen=True)
class Clock(Potts):
    """q-state clock model H = -J sum_<ij> cos(2 pi (s_i - s_j) / q) (Eq. 3 of [DCL])."""

    def pair(self, a, b, dtype):
        xp = array_namespace(a)
        return xp.cos(xp.astype(a - b, dtype) * (2.0 * math.pi / self.q))

    def bond_probability(self):
        return Theory.bond_probability(self)  # the clock model has no FK bonds of this form

    def params(self):
        return {"name": "clock", "beta": self.beta, "q": self.q, "J": self.J}
