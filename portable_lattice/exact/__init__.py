"""Exact results: closed forms in plain Python (the Ising torus) and, for small lattices,
enumeration of every configuration (Array API)."""
from .enumeration import EnumeratedExact, enumerate_theory
from .ising2d import K_CRITICAL, ising_torus

__all__ = ["K_CRITICAL", "ising_torus", "enumerate_theory", "EnumeratedExact"]
