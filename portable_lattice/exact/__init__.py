"""Exact results: closed forms (the Ising torus in plain Python, the free field) and, for small
lattices, enumeration of every configuration (Array API)."""
from .enumeration import EnumeratedExact, enumerate_theory
from .free_field import free_field_exact, free_field_propagator
from .ising2d import K_CRITICAL, ising_torus

__all__ = ["K_CRITICAL", "ising_torus", "enumerate_theory", "EnumeratedExact", "free_field_exact",
           "free_field_propagator"]
