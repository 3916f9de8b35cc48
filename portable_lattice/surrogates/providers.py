r"""Gradient providers: where the surrogate rule gets dS/dphi_x (and its uncertainty).

A provider is called on a whole field and returns ``(mean, var)``: the
gradient estimate at every site and, for an ensemble of N members, the
unbiased member variance sigma^2 (Eq. 9 of [PEM]), or None. It
declares ``n_members`` (N) and ``receptive_field`` r: the estimate at x
depends on phi only within Chebyshev distance r of x. The parallel sublattice
mode relies on r.

* :class:`ExactGradient` - the exact Eq. 4 (the ground-truth sampler runs through the same code).
* :class:`NoisyOracle` - N members returning the exact gradient plus independent
  N(0, sigma^2) noise, fresh at every call. This is the situation the
  Ceperley-Dewing penalty assumes (App. A), so it validates PEM without training.
* A trained torch ensemble behind the backend adapter
  (:class:`portable_lattice.backends.surrogate.TorchEnsemble`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace, device as device_of

from .._checks import positive_float, positive_int
from ..theories.base import family_of

__all__ = ["ExactGradient", "NoisyOracle", "ExactEnergy"]


@dataclass(frozen=True)
class ExactGradient:
    """dS/dphi from the action itself; no uncertainty."""

    theory: Any
    n_members: int = 1
    receptive_field: int = 1

    def __call__(self, phi):
        return self.theory.grad_action(phi), None


@dataclass(frozen=True)
class NoisyOracle:
    """An ensemble of ``n_members`` noisy copies of the exact gradient.

    Member i returns dS/dphi_x + sigma eps_{i,x}, eps ~ N(0, 1), drawn afresh
    from ``rng`` at every call. The mean then has noise sigma/sqrt(N), and the
    returned variance is the members' unbiased sample variance (Eq. 9).
    """

    theory: Any
    sigma: float
    n_members: int
    rng: Any
    receptive_field: int = 1

    def __post_init__(self):
        positive_float("sigma", self.sigma)
        positive_int("n_members", self.n_members)

    def __call__(self, phi):
        xp = array_namespace(phi)
        grad = self.theory.grad_action(phi)
        noise = self.sigma * self.rng.normal((self.n_members,) + tuple(phi.shape), phi.dtype)
        mean = xp.mean(noise, axis=0)
        var = xp.var(noise, axis=0, correction=1) if self.n_members > 1 else None
        return grad + mean, var


@dataclass(frozen=True)
class ExactEnergy:
    """An energy provider for :class:`~portable_lattice.theories.LearnedEnergy` from a known
    nearest-neighbour spin theory (Ising, Edwards-Anderson, Potts, clock): the ground truth
    through the same code as a learned energy. Its beta is ignored (the LearnedEnergy owns it).
    """

    theory: Any
    reach: int = 2
    L: Any = None

    def __post_init__(self):
        if not family_of(self.theory).discrete:
            raise TypeError(f"ExactEnergy needs a spin theory, got {type(self.theory).__name__}")
        # the couplings alone: the energy is beta-free
        object.__setattr__(self, "_unit", dataclasses.replace(self.theory, beta=1.0))

    @property
    def q(self) -> int:
        return len(tuple(self.theory.state_values()))

    def energy(self, s, dtype):
        return self._unit.energy(s, dtype)

    def delta(self, s, t, dtype):
        # each changed site alone (no two are neighbours), unchanged sites contribute zero
        return self._unit.delta_action(t, s, dtype)

    def site_delta(self, s, index, new, dtype):
        xp = array_namespace(s)
        shape = tuple(s.shape)
        flat = xp.reshape(s, (shape[0], -1))
        hit = xp.reshape(xp.arange(flat.shape[1], device=device_of(s)), (1, -1)) == xp.reshape(index, (-1, 1))
        after = xp.reshape(xp.where(hit, xp.reshape(xp.astype(new, s.dtype), (-1, 1)), flat), shape)
        return self._unit.energy(after, dtype) - self._unit.energy(s, dtype)
