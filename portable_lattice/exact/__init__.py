"""Exact results, in plain Python (no array library needed)."""
from .free_field import free_field_exact, free_field_propagator
from .ising2d import K_CRITICAL, ising_torus

__all__ = ["K_CRITICAL", "ising_torus", "free_field_exact", "free_field_propagator"]
