r"""Independence Metropolis: a global proposal that knows its own density.

A proposal draws whole configurations independently of the current one and
returns them with their log-density, ``proposal(rng, like) -> (config, log_q)``
(a diffusion model, an autoregressive model, an upscaler, or an exact
reference distribution). The chain accepts y from x with

    min(1, exp(log_w(y) - log_w(x))),   log_w = -S - log_q,

which samples exp(-S) exactly whenever ``log_q`` is the (normalised or not)
density of what was actually drawn (Eq. 4.13 of [DMSQ]). The theory supplies
S through ``log_weight``: ``-action`` for fields, ``-beta H`` for spins.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace, device as device_of

from .base import FieldState, Info, SpinState, check_theory_field, metropolis_accept, per_chain

__all__ = ["IndependenceMetropolis", "log_boltzmann"]


def log_boltzmann(theory: Any, x: Any, dtype: Any) -> Any:
    """log of the unnormalised Boltzmann weight per chain (the theory's ``log_weight``:
    -S for fields, -beta H for spins)."""
    return theory.log_weight(x, dtype)


@dataclass(frozen=True)
class IndependenceMetropolis:
    """Metropolis-Hastings with a state-independent proposal.

    proposal : callable (rng, like) -> (config, log_q)
        ``like`` is the current configuration (for shape, dtype and device); ``log_q``
        has shape (chains,).
    dtype : float dtype name for the weights of spin configurations (default float64).
    """

    theory: Any
    proposal: Any
    dtype: str = "float64"

    def _spins(self) -> bool:
        return hasattr(self.theory, "check_spins")

    def _dtype(self, xp, x):
        return getattr(xp, self.dtype) if self._spins() else x.dtype

    def init(self, x: Any):
        check_theory_field(self.theory, x)
        return SpinState(spins=x) if self._spins() else FieldState(phi=x)

    def step(self, state, rng):
        x = state.config
        xp = array_namespace(x)
        dtype = self._dtype(xp, x)
        y, log_q_y = self.proposal(rng, x)
        if tuple(y.shape) != tuple(x.shape):
            raise ValueError(f"the proposal returned shape {tuple(y.shape)}, the chains have {tuple(x.shape)}")
        # log q of the current state is that of the proposal which produced it (carried in the
        # state: recomputing it would need the proposal's density at arbitrary points). The start
        # configuration was not drawn from q: it has weight 0, so the first proposal is accepted.
        log_w_y = log_boltzmann(self.theory, y, dtype) - log_q_y
        if state.log_q is None:
            log_w_x = xp.full((x.shape[0],), -float("inf"), dtype=dtype, device=device_of(x))
        else:
            log_w_x = log_boltzmann(self.theory, x, dtype) - state.log_q
        u = rng.uniform((x.shape[0],), dtype)
        acc = metropolis_accept(u, log_w_y - log_w_x)
        new = xp.where(per_chain(acc, x), y, x)
        log_q = log_q_y if state.log_q is None else xp.where(acc, log_q_y, state.log_q)
        out = SpinState(spins=new, log_q=log_q) if self._spins() else FieldState(phi=new, log_q=log_q)
        return out, Info(acceptance=xp.astype(acc, dtype))
