"""portable_lattice: lattice Monte Carlo written once against the Python Array API.

The same code runs on NumPy (the CPU reference), torch (CPU or CUDA) and
CuPy; ``array_api_strict`` proves it uses nothing else.
"""
from .analysis import Estimate, chain_error, derived, gamma_method
from .driver import NonFiniteFieldError, RunResult, run
from .lattice import Lattice
from .observables import measure_phi4, two_point
from .phi4 import Phi4
from .samplers import (HMC, LEAPFROG, MALA, OMELYAN, CheckerboardMetropolis, Integrator, Langevin,
                       RandomSiteMetropolis)
from .simulate import ALGORITHMS, make_kernel, simulate

__version__ = "0.1.0"

__all__ = ["Phi4", "Lattice", "simulate", "make_kernel", "ALGORITHMS", "run", "RunResult",
           "NonFiniteFieldError", "Estimate", "gamma_method", "chain_error", "derived",
           "measure_phi4", "two_point", "HMC", "Integrator", "LEAPFROG", "OMELYAN", "Langevin", "MALA",
           "CheckerboardMetropolis", "RandomSiteMetropolis"]
