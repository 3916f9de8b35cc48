"""Discrete spin models: Ising, Potts, clock, Edwards-Anderson; local and cluster updates;
majority-rule blocking; Monte Carlo RG."""
from .clusters import SwendsenWang, Wolff, cluster_labels, label_propagation
from .local import SequentialSpinMetropolis, SpinCheckerboard
from .models import Clock, EdwardsAnderson, Ising, Potts, check_spins
from .observables import ensemble_spins, fss_exponent, magnetisation_histogram, measure_spins
from .simulate import SPIN_ALGORITHMS, make_spin_kernel, simulate_spins

__all__ = ["Ising", "Potts", "Clock", "EdwardsAnderson", "check_spins", "SpinCheckerboard",
           "SequentialSpinMetropolis", "SwendsenWang", "Wolff", "cluster_labels", "label_propagation",
           "measure_spins", "ensemble_spins", "fss_exponent", "magnetisation_histogram",
           "SPIN_ALGORITHMS", "make_spin_kernel", "simulate_spins"]
