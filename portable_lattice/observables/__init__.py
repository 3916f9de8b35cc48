"""What is measured: per-configuration observables and the ensemble quantities built from them.

* :mod:`.field` - phi^4: magnetisation, <phi^2>, action density, chi, Binder cumulant, xi_2nd.
* :mod:`.spins` - spins: Eq. 14 of [IRG], finite-size-scaling exponents, P_L(m).
* :mod:`.thermo` - entropy and free energy from a model with a known log-density ([DCL]):
  the model's own estimators and the importance-weighted ones.
"""
from .field import ensemble_phi4, measure_phi4, two_point
from .spins import ensemble_spins, fss_exponent, magnetisation_histogram, measure_spins
from .thermo import importance_weights, model_thermodynamics

__all__ = ["measure_phi4", "ensemble_phi4", "two_point", "measure_spins", "ensemble_spins", "fss_exponent",
           "magnetisation_histogram", "model_thermodynamics", "importance_weights"]
