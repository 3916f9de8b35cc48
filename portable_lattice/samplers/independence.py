r"""Independence Metropolis: a global proposal that knows its own density.

A proposal draws whole configurations independently of the current one and
returns them with their log-density, ``proposal(rng, like) -> (config, log_q)``
(a diffusion model, an autoregressive model, an upscaler, or an exact
reference distribution). The chain accepts y from x with

    min(1, exp(log_w(y) - log_w(x))),   log_w = -S - log_q,

which samples exp(-S) exactly whenever ``log_q`` is the (normalised or not)
density of what was actually drawn (Eq. 4.13 of [DMSQ]). The theory supplies
S through ``log_weight``: ``-action`` for fields, ``-beta H`` for spins.

``penalty=True`` is for a proposal whose log q is itself a noisy estimate (a
diffusion model's log q from Skilling-Hutchinson probes): the proposal then
returns ``(config, log_q, var)`` and has ``log_density(rng, x) -> (log_q, var)``,
the current state's log q is re-estimated with fresh, independent noise at every
step, and the accept test carries the Ceperley-Dewing penalty
exp(-sigma^2 / 2), sigma^2 = var(y) + var(x) (Eq. 10 and App. A of [PEM]);
exact when the noise of the estimated log-ratio is Gaussian with that variance.

:class:`PoolProposal` draws with replacement from a finite stored set of
configurations and their log q (what the public code of [DMSQ] does): the chain
then samples exp(-S) restricted to the pool, exact only as the pool grows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace, device as device_of

from .base import FieldState, Info, SpinState, check_theory_field, metropolis_accept, per_chain

__all__ = ["IndependenceMetropolis", "PoolProposal", "check_log_q"]


def check_log_q(log_q: Any, chains: int, who: str = "proposal") -> None:
    """Stop when a proposal's log q is not finite (a density that is 0 or undefined where the
    proposal drew cannot be corrected by any accept test), naming the first such chain."""
    xp = array_namespace(log_q)
    if tuple(log_q.shape) != (chains,):
        raise ValueError(f"the {who} returned log_q of shape {tuple(log_q.shape)}, expected ({chains},)")
    bad = ~xp.isfinite(log_q)
    if bool(xp.any(bad)):
        idx = xp.nonzero(bad)[0]
        i = int(idx[0])
        raise FloatingPointError(f"the {who}'s log_q is not finite for chain {i} (log_q={float(log_q[i])!r}; "
                                 f"{int(idx.shape[0])} of {chains} chains)")


@dataclass(frozen=True)
class IndependenceMetropolis:
    """Metropolis-Hastings with a state-independent proposal.

    proposal : callable (rng, like) -> (config, log_q)
        ``like`` is the current configuration (for shape, dtype and device); ``log_q``
        has shape (chains,).
    dtype : float dtype name for the weights of spin configurations (default float64).
    penalty : bool
        Noisy log q with the Ceperley-Dewing penalty (see the module docstring).

    ``Info.log_weight`` reports the proposal's log importance weight log w(y) = -S(y) - log q(y)
    per chain (its spread measures how far q is from exp(-S)/Z).
    """

    theory: Any
    proposal: Any
    dtype: str = "float64"
    penalty: bool = False

    def __post_init__(self):
        if not callable(self.proposal):
            raise TypeError(f"proposal must be callable (rng, like) -> (config, log_q), "
                            f"got {type(self.proposal).__name__}")
        if self.penalty and not callable(getattr(self.proposal, "log_density", None)):
            raise TypeError("penalty=True needs a proposal with log_density(rng, x) -> (log_q, var)")

    def _spins(self) -> bool:
        return self.theory.family.discrete

    def _dtype(self, xp, x):
        return getattr(xp, self.dtype) if self._spins() else x.dtype

    def init(self, x: Any):
        check_theory_field(self.theory, x)
        return SpinState(spins=x) if self._spins() else FieldState(phi=x)

    def step(self, state, rng):
        x = state.config
        xp = array_namespace(x)
        dtype = self._dtype(xp, x)
        chains = x.shape[0]
        drawn = self.proposal(rng, x)
        if self.penalty:
            y, log_q_y, var_y = drawn
        else:
            y, log_q_y = drawn
        if tuple(y.shape) != tuple(x.shape):
            raise ValueError(f"the proposal returned shape {tuple(y.shape)}, the chains have {tuple(x.shape)}")
        check_log_q(log_q_y, chains)
        log_q_y = xp.astype(log_q_y, dtype)
        log_w_y = self.theory.log_weight(y, dtype) - log_q_y  # log of the unnormalised weight: -S, -beta H
        # log q of the current state is that of the proposal which produced it (carried in the
        # state: recomputing it would need the proposal's density at arbitrary points). The start
        # configuration was not drawn from q: it has weight 0, so the first proposal is accepted.
        if state.log_q is None:
            log_w_x = xp.full((chains,), -float("inf"), dtype=dtype, device=device_of(x))
            log_ratio = log_w_y - log_w_x
        elif self.penalty:
            # fresh noise at the current state too: the penalty assumes the noise of the
            # estimated log-ratio is drawn anew for every accept test
            log_q_x, var_x = self.proposal.log_density(rng, x)
            check_log_q(log_q_x, chains, "proposal's log_density")
            log_w_x = self.theory.log_weight(x, dtype) - xp.astype(log_q_x, dtype)
            log_ratio = log_w_y - log_w_x - 0.5 * (xp.astype(var_y, dtype) + xp.astype(var_x, dtype))
        else:
            log_w_x = self.theory.log_weight(x, dtype) - state.log_q
            log_ratio = log_w_y - log_w_x
        u = rng.uniform((chains,), dtype)
        acc = metropolis_accept(u, log_ratio)
        new = xp.where(per_chain(acc, x), y, x)
        log_q = log_q_y if state.log_q is None else xp.where(acc, log_q_y, state.log_q)
        out = SpinState(spins=new, log_q=log_q) if self._spins() else FieldState(phi=new, log_q=log_q)
        return out, Info(acceptance=xp.astype(acc, dtype), log_weight=log_w_y)


@dataclass(frozen=True)
class PoolProposal:
    """Proposals drawn uniformly with replacement from a stored pool (the public code of [DMSQ]).

    configs : (n_pool, L, ..., L) configurations; log_q : (n_pool,) their log-densities under the
    model that drew them. The chain then samples exp(-S) over the pool's empirical measure
    reweighted by 1/q: exact only as n_pool grows, and a small pool shows up as repeated states.
    """

    configs: Any
    log_q: Any

    def __post_init__(self):
        if self.configs.ndim < 2 or tuple(self.log_q.shape) != (self.configs.shape[0],):
            raise ValueError(f"log_q must have shape (n_pool,) = ({self.configs.shape[0]},), "
                             f"got {tuple(self.log_q.shape)}")
        check_log_q(self.log_q, self.configs.shape[0], "pool")

    def __call__(self, rng, like):
        xp = array_namespace(like)
        idx = rng.integers(self.configs.shape[0], (like.shape[0],))
        idx = xp.astype(idx, xp.int64)
        return (xp.astype(xp.take(self.configs, idx, axis=0), like.dtype),
                xp.astype(xp.take(self.log_q, idx, axis=0), xp.float64))
