"""Exact results: closed forms (the Ising torus in plain Python, the free field, the periodic O(n)
chain, 2D compact U(1) on a torus) and, for small lattices, enumeration of every configuration
(Array API)."""
from .enumeration import EnumeratedExact, enumerate_theory
from .free_field import free_field_exact, free_field_propagator
from .ising2d import K_CRITICAL, ising_torus
from .on_chain import on_chain, on_chain_correlation
from .u1_2d import u1_2d, u1_2d_charge_distribution

__all__ = ["K_CRITICAL", "ising_torus", "enumerate_theory", "EnumeratedExact", "free_field_exact",
           "free_field_propagator", "on_chain", "on_chain_correlation", "u1_2d", "u1_2d_charge_distribution"]
