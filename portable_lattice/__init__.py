"""portable_lattice: lattice Monte Carlo written once against the Python Array API.

The same code runs on NumPy (the CPU reference), torch (CPU or CUDA) and
CuPy; ``array_api_strict`` proves it uses nothing else. A theory owns its
couplings (``Ising(beta=0.44)``, ``Phi4.from_beta_g(0.5, 0.1)``), and
:func:`simulate` samples any of them on any backend.
"""
__version__ = "0.2.0.dev0"

from .runs import NonFiniteFieldError, RunResult, run, simulate  # noqa: E402
from .statistics import Estimate, chain_error, combine, derived, gamma_method  # noqa: E402
from .theories import Clock, EdwardsAnderson, Ising, Phi4, Potts  # noqa: E402

__all__ = ["Phi4", "Ising", "EdwardsAnderson", "Potts", "Clock", "simulate", "run", "RunResult",
           "NonFiniteFieldError", "Estimate", "gamma_method", "chain_error", "derived", "combine", "__version__"]
