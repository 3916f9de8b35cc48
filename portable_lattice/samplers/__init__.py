"""Sampler kernels: ``init(phi) -> State`` and ``step(state, rng) -> (State, Info)``."""
from .base import Info, State
from .hmc import HMC, INTEGRATORS, LEAPFROG, OMELYAN, Integrator, integrate
from .langevin import MALA, Langevin
from .metropolis import CheckerboardMetropolis, RandomSiteMetropolis

__all__ = ["State", "Info", "HMC", "Integrator", "LEAPFROG", "OMELYAN", "INTEGRATORS", "integrate",
           "Langevin", "MALA", "CheckerboardMetropolis", "RandomSiteMetropolis"]
