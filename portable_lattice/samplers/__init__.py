"""How a theory is sampled: kernels ``init(x) -> State`` and ``step(state, rng) -> (State, Info)``.

* Metropolis loops, one per visiting order (:mod:`.metropolis`), with the proposal
  as a rule (:mod:`.rules`, :mod:`.heatbath`).
* Cluster updates (:mod:`.clusters`): Swendsen-Wang, Wolff.
* HMC (:mod:`.hmc`), Langevin and MALA (:mod:`.langevin`).
* Independence Metropolis for global proposals with a log-density (:mod:`.independence`).
* Composite kernels (:mod:`.cycle`): several kernels in turn as one step.
"""
from .base import FieldState, Info, SpinState
from .cycle import Cycle
from .clusters import SwendsenWang, Wolff, cluster_ids, cluster_labels, label_propagation
from .heatbath import HeatBath
from .hmc import HMC, INTEGRATORS, LEAPFROG, OMELYAN, Integrator, integrate
from .independence import IndependenceMetropolis, PoolProposal
from .langevin import MALA, Langevin
from .metropolis import (PEM, CheckerboardMetropolis, RandomSiteMetropolis, SublatticeMetropolis, learned_energy_metropolis,
                         surrogate_metropolis)
from .rules import EnergyModelUpdate, GaussianShift, SpinFlip, StateShift, SurrogateShift
from .gauge import GaugeCheckerboard
from .vector import VectorCheckerboard, VectorRandomSite, VectorSwendsenWang, VectorWolff

__all__ = ["FieldState", "SpinState", "Info", "HMC", "Integrator", "LEAPFROG", "OMELYAN", "INTEGRATORS",
           "integrate", "Langevin", "MALA", "RandomSiteMetropolis", "CheckerboardMetropolis",
           "SublatticeMetropolis", "GaussianShift", "SurrogateShift", "SpinFlip", "StateShift", "HeatBath",
           "SwendsenWang", "Wolff", "cluster_ids", "cluster_labels", "label_propagation",
           "IndependenceMetropolis", "PoolProposal", "PEM", "surrogate_metropolis", "EnergyModelUpdate",
           "learned_energy_metropolis", "Cycle", "GaugeCheckerboard", "VectorCheckerboard", "VectorRandomSite",
           "VectorSwendsenWang", "VectorWolff"]
