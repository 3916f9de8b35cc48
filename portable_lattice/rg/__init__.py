"""Coarse-graining: majority-rule blocking and Monte Carlo renormalisation group ([IRG])."""
from .blocking import block_levels, majority_block
from .mcrg import COUPLINGS, EVEN, ODD, analyse_couplings, measure_couplings, t_matrix_exponents

__all__ = ["majority_block", "block_levels", "COUPLINGS", "ODD", "EVEN", "measure_couplings",
           "t_matrix_exponents", "analyse_couplings"]
