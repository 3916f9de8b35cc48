"""What is sampled: each theory owns its couplings, the inverse temperature included.

* :class:`Phi4` - real scalar phi^4 field, in the (beta, g) form of [PEM] or the
  (kappa, lambda) form of [DMSQ].
* :class:`Ising`, :class:`EdwardsAnderson` - +-1 spins.
* :class:`Potts`, :class:`Clock` - q-state spins.
* :class:`ON` - unit n-vector spins (XY, Heisenberg, ...).
* :class:`U1` - compact U(1) lattice gauge field (link angles, Wilson action).
* :class:`LearnedEnergy` - spins with a learned energy (a neural or exact energy provider).
"""
from .base import FAMILIES, FIELD, SPINS, Family, FieldTheory, SpinTheory, Theory, check_beta, family_of
from .ising import EdwardsAnderson, Ising, check_spins
from .learned import LearnedEnergy
from .on import ON, VECTOR, VectorTheory
from .u1 import GAUGE, U1, GaugeTheory
from .phi4 import Phi4
from .potts import Clock, Potts

__all__ = ["Phi4", "Ising", "EdwardsAnderson", "Potts", "Clock", "LearnedEnergy", "Theory", "FieldTheory",
           "SpinTheory", "Family", "FIELD", "SPINS", "ON", "VECTOR", "VectorTheory", "U1", "GAUGE", "GaugeTheory", "FAMILIES", "family_of", "check_beta", "check_spins"]
