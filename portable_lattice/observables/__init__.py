"""What is measured: per-configuration observables and the ensemble quantities built from them.

* :mod:`.field` - phi^4: magnetisation, <phi^2>, action density, chi, Binder cumulant, xi_2nd.
* :mod:`.spins` - spins: Eq. 14 of [IRG], finite-size-scaling exponents, P_L(m).
"""
from .field import ensemble_phi4, measure_phi4, two_point
from .spins import ensemble_spins, fss_exponent, magnetisation_histogram, measure_spins

__all__ = ["measure_phi4", "ensemble_phi4", "two_point", "measure_spins", "ensemble_spins", "fss_exponent",
           "magnetisation_histogram"]
