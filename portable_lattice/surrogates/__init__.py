"""What a learned model hands the core: gradient providers, training data, calibration.

The surrogate Metropolis rule and PEM live with the other rules in
:mod:`portable_lattice.samplers.rules` (:class:`~portable_lattice.samplers.rules.SurrogateShift`).
"""
from .calibration import residual_summary
from .providers import ExactEnergy, ExactGradient, NoisyOracle

__all__ = ["ExactGradient", "NoisyOracle", "ExactEnergy", "residual_summary"]
