"""Heat bath for spins: draw the new state of a site from its conditional Boltzmann weights.

A rule for the checkerboard loop (:class:`~portable_lattice.samplers.metropolis.CheckerboardMetropolis`):
all sites of one parity are drawn at once, since they share no bond. Every
proposal is accepted, so the loop reports the fraction of sites that changed
(``Info.changed``), not an acceptance.

For Ising spins with uniform couplings the draw is an integer compare of 32
random bits against the theory's thresholds (:meth:`Ising.heatbath_thresholds`);
every other spin theory uses its conditional weights
``theory.local_log_weights`` = -beta E_x(v) for every state v.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace, device as device_of

from ..theories.base import Theory, family_of
from .base import count_per_chain
from .rules import Rule, _uniform_couplings

__all__ = ["HeatBath"]


@dataclass(frozen=True)
class HeatBath(Rule):
    """Heat-bath rule: s_x ~ exp(-beta E_x(s_x)) / sum_t exp(-beta E_x(t)) given the neighbours."""

    reports = "changed"
    always_accepts = True

    def check(self, theory: Any) -> None:
        if not family_of(theory).discrete or type(theory).local_log_weights is Theory.local_log_weights:
            raise ValueError(f"the heat bath needs a spin theory with conditional weights, got {type(theory).__name__}")

    def site_draws(self, theory, rng, n, chains, dtype):
        raise ValueError("the heat bath runs on the checkerboard (algorithm='heatbath'), not at random sites")

    def masked_proposal(self, theory, s, mask, rng, dtype, ctx):
        """The conditional draw at every site (no action difference: it is always accepted)."""
        xp = array_namespace(s)
        dev = device_of(s)
        values = theory.state_values()
        logw = theory.local_log_weights(s, dtype)
        top = logw[0]
        for w in logw[1:]:
            top = xp.maximum(top, w)
        weights = [xp.exp(w - top) for w in logw]
        total = weights[0]
        for w in weights[1:]:
            total = total + w
        r = rng.uniform(tuple(s.shape), dtype) * total
        new = xp.full(s.shape, values[-1], dtype=s.dtype, device=dev)
        cum = None
        chosen = xp.zeros(s.shape, dtype=xp.bool, device=dev)
        for v, w in zip(values[:-1], weights[:-1]):
            cum = w if cum is None else cum + w
            pick = (r < cum) & ~chosen
            new = xp.where(pick, xp.asarray(v, dtype=s.dtype, device=dev), new)
            chosen = chosen | pick
        return new, None

    def blocked(self, theory) -> bool:
        return _uniform_couplings(theory)

    def block_tables(self, theory, dim: int) -> list:
        return theory.heatbath_thresholds(dim)

    def block_draws(self, rng, shape, dtype, hits: int) -> Any:
        return rng.bits32(shape)

    def block_update(self, theory, active, other, p, board, bits, ctx):
        nsum = board.neighbour_sum(other, p)  # int8, |sum| <= 2d
        new = theory.heatbath_spins(nsum, bits, ctx["thresholds"])
        return new, count_per_chain(new != active, ctx["dtype"])
