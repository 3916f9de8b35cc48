"""Langevin dynamics: stochastic quantisation (Eq. 2.15 of [DMSQ]) and MALA.

phi' = phi - dt dS/dphi + sqrt(2 dt) eta, eta ~ N(0, 1) per site, which is
Eq. 2.15 of [DMSQ] with drift K = -dS/dphi and <eta eta> = 2 alpha, alpha = 1
absorbed into the sqrt(2 dt).

* :class:`Langevin` (unadjusted, ULA) samples exp(-S) only as dt -> 0: its
  stationary distribution is off by O(dt). For the free field it is known in
  closed form: each momentum mode's variance becomes 1/(lambda_p (1 - dt lambda_p / 2))
  instead of 1/lambda_p, so <phi^2> is biased upward by about dt/2.
* :class:`MALA` adds a Metropolis-Hastings test to the same proposal and is exact
  for any dt.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace, device

from .._checks import positive_float
from ..lattice import lattice_axes
from .base import FieldState, Info, check_theory_field, metropolis_accept, per_chain

__all__ = ["Langevin", "MALA"]


@dataclass(frozen=True)
class _LangevinProposal:
    """What ULA and MALA share: the step dt, the cached gradient, the Euler-Maruyama move."""

    theory: Any
    dt: float = 0.01

    def __post_init__(self):
        positive_float("dt", self.dt)

    def init(self, phi: Any) -> FieldState:
        check_theory_field(self.theory, phi)
        return FieldState(phi=phi, action=self.theory.action(phi), grad=self.theory.grad_action(phi))

    def propose(self, state: FieldState, rng) -> tuple[Any, Any]:
        """(phi - dt grad S + sqrt(2 dt) eta, eta): Eq. 2.15 of [DMSQ]."""
        phi = state.phi
        eta = rng.normal(tuple(phi.shape), phi.dtype)
        return phi - self.dt * state.grad + math.sqrt(2.0 * self.dt) * eta, eta


@dataclass(frozen=True)
class Langevin(_LangevinProposal):
    """Unadjusted Langevin step (Euler-Maruyama discretisation, Eq. 2.15 of [DMSQ])."""

    def step(self, state: FieldState, rng) -> tuple[FieldState, Info]:
        phi, _ = self.propose(state, rng)
        xp = array_namespace(phi)
        # no accept test, so the action is not needed: only the next drift
        new = FieldState(phi=phi, grad=self.theory.grad_action(phi))
        return new, Info(acceptance=xp.ones(phi.shape[0], dtype=phi.dtype, device=device(phi)))


@dataclass(frozen=True)
class MALA(_LangevinProposal):
    """Metropolis-adjusted Langevin: the ULA proposal with an exact accept test.

    q(y|x) ~ exp(-|y - x + dt grad S(x)|^2 / (4 dt)); accept with
    min(1, exp(S(x) - S(y) + log q(x|y) - log q(y|x))).
    """

    def step(self, state: FieldState, rng) -> tuple[FieldState, Info]:
        phi = state.phi
        xp = array_namespace(phi)
        axes = lattice_axes(phi)
        y, eta = self.propose(state, rng)
        s_y, g_y = self.theory.action(y), self.theory.grad_action(y)
        back = phi - y + self.dt * g_y
        # log q(y|x) = -|sqrt(2 dt) eta|^2 / (4 dt) = -|eta|^2 / 2
        log_q_forward = -0.5 * xp.sum(eta * eta, axis=axes)
        log_q_backward = -xp.sum(back * back, axis=axes) / (4.0 * self.dt)
        log_ratio = state.action - s_y + log_q_backward - log_q_forward
        u = rng.uniform((phi.shape[0],), phi.dtype)
        acc = metropolis_accept(u, log_ratio)
        keep = per_chain(acc, phi)
        new = FieldState(phi=xp.where(keep, y, phi), action=xp.where(acc, s_y, state.action),
                    grad=xp.where(keep, g_y, state.grad))
        return new, Info(acceptance=xp.astype(acc, phi.dtype))
