r"""A spin theory whose energy is a learned model (distribution-consistent learning, [DCL]).

:class:`LearnedEnergy` owns the inverse temperature and an energy provider, and
takes its states and order parameter from a reference spin theory (Ising,
Edwards-Anderson, Potts or clock: what the spins *are*, not how they interact).
Samplers ask it, as any theory, for local action differences; it asks the provider.

An energy provider has

* ``energy(s, dtype)`` - E per chain;
* ``site_delta(s, index, new, dtype)`` - E after setting one site per chain
  (``index``: flat site index 0..V-1 per chain) to ``new``, minus E before;
* ``delta(s, t, dtype)`` - for configurations differing at sites no two of which
  share an energy term, the energy change attributed to each changed site (zero
  elsewhere); only for local providers;
* ``reach`` - sites this far apart never share an energy term (None: global,
  e.g. an autoregressive model's -ln P), ``q`` its number of states and ``L``
  its lattice size (None if it transfers to any size).

:class:`portable_lattice.surrogates.ExactEnergy` is a provider for a known
theory (the ground truth through the same code); the neural providers live in
:mod:`portable_lattice.nn.ednn`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .base import SPINS, Theory, check_beta

__all__ = ["LearnedEnergy"]


@dataclass(frozen=True)
class LearnedEnergy(Theory):
    """exp(-beta E(sigma)) with E from ``energy_model``; states and magnetisation of ``reference``."""

    family = SPINS  # a class attribute (not a dataclass field): what every theory of its kind shares

    beta: float
    energy_model: Any
    reference: Any

    def __post_init__(self):
        check_beta(self.beta)
        for name in ("energy", "site_delta"):
            if not callable(getattr(self.energy_model, name, None)):
                raise TypeError(f"energy_model must provide {name}(...), got {type(self.energy_model).__name__}")
        if not hasattr(self.reference, "state_values"):
            raise TypeError(f"reference must be a spin theory (Ising, Potts, clock), got "
                            f"{type(self.reference).__name__}")
        q = len(tuple(self.reference.state_values()))
        if getattr(self.energy_model, "q", q) != q:
            raise ValueError(f"the energy model has q={self.energy_model.q} states, the reference "
                             f"{type(self.reference).__name__} has q={q}")

    @property
    def q(self) -> int:
        return len(tuple(self.reference.state_values()))

    @property
    def stride(self) -> int | None:
        """Sublattice stride of independent updates (the provider's reach), None if global."""
        r = getattr(self.energy_model, "reach", None)
        return None if r is None else int(r)

    def with_beta(self, beta: float) -> "LearnedEnergy":
        return dataclasses.replace(self, beta=beta)

    def check_lattice(self, L: int, dim: int) -> None:
        self.reference.check_lattice(L, dim)

    # --- states (the reference's) ---------------------------------------------------------
    def state_values(self):
        return self.reference.state_values()

    def valid(self, s):
        return self.reference.valid(s)

    def check_spins(self, s: Any, name: str = "spins") -> Any:
        xp = self.reference.check_spins(s, name)
        L = getattr(self.energy_model, "L", None)
        if L is not None and tuple(s.shape[1:]) != (L,) * (s.ndim - 1):
            raise ValueError(f"the energy model is for L={L} (it is size-specific), got {name} of shape "
                             f"{tuple(s.shape)}")
        return xp

    def random(self, rng, shape, dtype):
        return self.reference.random(rng, shape, dtype)

    def magnetisation(self, s, dtype):
        return self.reference.magnetisation(s, dtype)

    # --- energies ---------------------------------------------------------------------------
    def energy(self, s, dtype):
        """The learned H per chain."""
        return self.energy_model.energy(s, dtype)

    def log_weight(self, s, dtype):
        return -self.beta * self.energy(s, dtype)

    def masked_delta_action(self, s, t, dtype):
        """beta (E(t) - E(s)) attributed to each changed site (sites on a stride-``stride`` sublattice)."""
        if self.stride is None:
            raise ValueError("a global energy model (reach None) cannot update several sites at once; "
                             "use the random-site (sequential) loop")
        return self.beta * self.energy_model.delta(s, t, dtype)

    def site_change_action(self, s, index, new, dtype):
        """beta (E after setting site ``index`` to ``new``, one per chain - E before)."""
        return self.beta * self.energy_model.site_delta(s, index, new, dtype)

    def params(self):
        return {"name": "learned", "beta": self.beta, "reference": self.reference.params()}
