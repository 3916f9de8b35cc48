r"""Fused CPU kernels (Numba ``@njit(parallel=True)``) for NumPy arrays and CPU torch tensors.

Each kernel is the twin of a generic path and evaluates the same expressions in the same
order (see :mod:`portable_lattice.samplers.fused` for the plan it is given):

* :func:`checkerboard_sweep` - both parities of a checkerboard Metropolis sweep in place on
  the full lattice (no split into blocks and back), ``hits`` proposals per site with the
  neighbour sum computed once; phi^4 (float32, float64; :mod:`.phi4`) and Ising (int8,
  integer thresholds; :mod:`.ising`).
* :func:`hmc_trajectory` - a whole HMC trajectory (:mod:`.hmc`).
* :func:`philox_normals` - a Philox normal draw (the HMC momenta under Philox; :mod:`.philox`).
* :func:`philox_chain_uniforms` - a Philox uniform draw of one number per chain (HMC's accept
  uniforms under Philox).

Under the Philox stream the random numbers are computed from the counter a site's element
has in the generic path's draw; under a native stream they are the generic path's own
arrays. The Philox numbers are computed in loops of their own, before the updates that use
them: such a loop has no dependence between iterations and vectorises, where a normal
computed inside the update loop runs at the latency of its long chain of operations. Every
kernel compiles with ``error_model="numpy"``: Python's error model checks every division for
zero, and that branch alone stops the vectorisation. Work is split over tasks of whole rows
(or whole chains); each writes only its own rows and its own partial counts, so there are no
races and the result does not depend on the thread count. One source serves d = 2 and 3: the
kernels see a chain as rows (:mod:`.common`).
"""
from __future__ import annotations

import numpy as np

from . import ising, phi4
from .common import host
from .hmc import hmc_trajectory
from .philox import philox_chain_uniforms, philox_normals

__all__ = ["checkerboard_sweep", "hmc_trajectory", "philox_normals", "philox_chain_uniforms"]


def checkerboard_sweep(x, plan: dict, stream: dict):
    """One fused checkerboard sweep of ``x`` (a new array); returns (x, accepted per chain)."""
    h, back = host(x)
    out = np.array(h, copy=True)
    counts = (phi4.sweep if plan["kind"] == "phi4" else ising.sweep)(out, plan, stream)
    return back(out), back(counts)
