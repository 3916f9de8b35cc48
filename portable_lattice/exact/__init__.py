"""Exact results, in plain Python (no array library needed)."""
from .ising2d import K_CRITICAL, ising_torus

__all__ = ["K_CRITICAL", "ising_torus"]
