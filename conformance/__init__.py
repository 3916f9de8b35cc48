"""The conformance suite: same, correct statistics on every backend (``python -m portable_lattice.conformance``)."""
from .suite import CASES, Case, Check, hmc_integrator_checks, run_suite

__all__ = ["CASES", "Case", "Check", "run_suite", "hmc_integrator_checks"]
