"""Surrogate-gradient samplers: surrogate Metropolis and the Penalty Ensemble Method."""
from .metropolis import PEM, SurrogateMetropolis, check_gradient
from .providers import ExactGradient, NoisyOracle

__all__ = ["SurrogateMetropolis", "PEM", "ExactGradient", "NoisyOracle", "check_gradient"]
