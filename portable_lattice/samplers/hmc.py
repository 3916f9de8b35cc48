"""Hybrid (Hamiltonian) Monte Carlo with integrators as data.

H = p^2/2 + S[phi]; a trajectory of ``n_steps`` steps of size
``dt = traj_length / n_steps`` is accepted with probability min(1, exp(-dH))
per chain. An integrator is its list of coefficients alternating momentum
kicks (p -= c dt dS/dphi) and field drifts (phi += c dt p), starting with a
kick; one generic routine runs them all.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace

from .._checks import positive_float, positive_int
from .._delegation import accelerated
from ..lattice import lattice_axes
from . import fused
from .base import FieldState, Info, check_theory_field, metropolis_accept, per_chain

__all__ = ["Integrator", "LEAPFROG", "OMELYAN", "INTEGRATORS", "integrate", "HMC"]


@dataclass(frozen=True)
class Integrator:
    """A symmetric splitting scheme: coefficients (kick, drift, kick, ...) summing to 1 per kind."""

    name: str
    coefficients: tuple[float, ...]

    def __post_init__(self):
        c = self.coefficients
        if len(c) % 2 == 0 or abs(sum(c[0::2]) - 1) > 1e-12 or abs(sum(c[1::2]) - 1) > 1e-12:
            raise ValueError(f"coefficients must alternate kick/drift, start and end with a kick, "
                             f"and each kind must sum to 1; got coefficients={c!r}")

    def sequence(self, n_steps: int) -> list[tuple[str, float]]:
        """The whole trajectory as (kind, coefficient), merging the kick that ends one
        step with the kick that starts the next (one gradient evaluation saved)."""
        out: list[tuple[str, float]] = []
        for _ in range(n_steps):
            for i, c in enumerate(self.coefficients):
                kind = "kick" if i % 2 == 0 else "drift"
                if out and out[-1][0] == kind:
                    out[-1] = (kind, out[-1][1] + c)
                else:
                    out.append((kind, c))
        return out


#: velocity Verlet (kick-drift-kick)
LEAPFROG = Integrator("leapfrog", (0.5, 1.0, 0.5))
#: Omelyan's second-order minimum-norm scheme, lambda = 0.1931833275 (Omelyan, Mryglod, Folk 2003)
_OMELYAN_LAMBDA = 0.1931833275037836
OMELYAN = Integrator("omelyan", (_OMELYAN_LAMBDA, 0.5, 1 - 2 * _OMELYAN_LAMBDA, 0.5, _OMELYAN_LAMBDA))
INTEGRATORS = {"leapfrog": LEAPFROG, "omelyan": OMELYAN}


def integrate(phi: Any, p: Any, grad: Any, grad_fn, dt: float, n_steps: int,
              integrator: Integrator = LEAPFROG) -> tuple[Any, Any, Any]:
    """Run ``n_steps`` of ``integrator``; returns (phi, p, grad at the final phi).

    ``grad`` is dS/dphi at the initial ``phi`` (cached by the caller, so a
    trajectory costs exactly one gradient per kick after the first).
    """
    # the first kick and drift make private copies; after that p and phi are updated
    # in place (the Array API's in-place operators), sparing an allocation per step
    fresh_p = fresh_phi = False
    for kind, c in integrator.sequence(n_steps):
        if kind == "kick":
            if fresh_p:
                p -= (c * dt) * grad
            else:
                p, fresh_p = p - (c * dt) * grad, True
        else:
            if fresh_phi:
                phi += (c * dt) * p
            else:
                phi, fresh_phi = phi + (c * dt) * p, True
            grad = grad_fn(phi)
    return phi, p, grad


@dataclass(frozen=True)
class HMC:
    """HMC kernel over a batch of chains (per-chain accept/reject).

    Parameters
    ----------
    theory : Phi4
    traj_length : float
        Molecular-dynamics time tau of one trajectory.
    n_steps : int
        Integration steps per trajectory, dt = traj_length / n_steps.
    integrator : Integrator or str
        ``"leapfrog"``, ``"omelyan"`` or an :class:`Integrator`.
    fused : bool
        Run each trajectory as a fused kernel (:mod:`~portable_lattice.samplers.fused`): one
        pass over memory per step (gradient, kick and drift together), the Hamiltonian's sums
        in the last pass; the same momenta and uniforms as this generic path, and the same
        fields bit for bit (the sums differ in their last bits: another order).
    """

    theory: Any
    traj_length: float = 1.0
    n_steps: int = 10
    integrator: Any = LEAPFROG
    fused: bool = False

    def __post_init__(self):
        positive_float("traj_length", self.traj_length)
        positive_int("n_steps", self.n_steps)
        if not isinstance(self.fused, bool):
            raise TypeError(f"fused must be True or False, got fused={self.fused!r}")
        if isinstance(self.integrator, str):
            if self.integrator not in INTEGRATORS:
                raise ValueError(f"integrator must be one of {sorted(INTEGRATORS)}, "
                                 f"got integrator={self.integrator!r}")
            object.__setattr__(self, "integrator", INTEGRATORS[self.integrator])

    @property
    def dt(self) -> float:
        return self.traj_length / self.n_steps

    def init(self, phi: Any) -> FieldState:
        check_theory_field(self.theory, phi)
        if self.fused:
            fused.kernel_for("hmc", phi)
            fused.hmc_plan(self, phi)
        return FieldState(phi=phi, action=self.theory.action(phi), grad=self.theory.grad_action(phi))

    def hamiltonian(self, action: Any, p: Any) -> Any:
        xp = array_namespace(p)
        return action + 0.5 * xp.sum(p * p, axis=lattice_axes(p))

    def trajectory(self, state: FieldState, p: Any) -> tuple[FieldState, Any]:
        """Integrate from (state, p); returns the proposal and its final momentum."""
        phi, p, grad = integrate(state.phi, p, state.grad, self.theory.grad_action,
                                 self.dt, self.n_steps, self.integrator)
        return FieldState(phi=phi, action=self.theory.action(phi), grad=grad), p

    def propose_and_accept(self, phi: Any, action: Any, grad: Any, p: Any, u: Any) -> tuple:
        """One trajectory and its accept/reject, given the momenta ``p`` and the
        uniforms ``u`` of the accept test: pure arithmetic, the unit a backend
        accelerator fuses.

        Returns (phi, action, grad, accepted, dH) after the accept/reject.
        """
        xp = array_namespace(phi)
        h0 = self.hamiltonian(action, p)
        proposal, p1 = self.trajectory(FieldState(phi=phi, action=action, grad=grad), p)
        dH = self.hamiltonian(proposal.action, p1) - h0
        acc = metropolis_accept(u, -dH)  # NaN/inf dH is rejected
        keep = per_chain(acc, phi)
        return (xp.where(keep, proposal.phi, phi), xp.where(acc, proposal.action, action),
                xp.where(keep, proposal.grad, grad), acc, dH)

    def step(self, state: FieldState, rng) -> tuple[FieldState, Info]:
        phi = state.phi
        xp = array_namespace(phi)
        if self.fused:
            kernel = fused.kernel_for("hmc", phi)
            plan = fused.hmc_plan(self, phi)
            if fused.uses_philox(rng):
                # the momenta and the accept uniforms are the stream's next normal and uniform
                # draws, computed by the kernel itself
                plan = dict(plan, momenta=fused.stream_plan(rng, 2))
                draw = plan["momenta"]["draw"] + 1
                # a kernel that cannot compute the uniforms itself calls the generic draw
                plan["accept"] = dict(plan["momenta"], draw=draw, uniforms=functools.partial(
                    fused.uniform_at, rng, draw, (phi.shape[0],), phi.dtype))
                fused.advance_stream(rng, 2)
                p = u = None
            else:
                p = rng.normal(tuple(phi.shape), phi.dtype)
                u = rng.uniform((phi.shape[0],), phi.dtype)
            new_phi, new_action, new_grad, acc, dH = kernel(phi, state.action, state.grad, p, u, plan)
        else:
            p = rng.normal(tuple(phi.shape), phi.dtype)
            u = rng.uniform((phi.shape[0],), phi.dtype)
            step = accelerated(type(self).propose_and_accept, xp)
            new_phi, new_action, new_grad, acc, dH = step(self, phi, state.action, state.grad, p, u)
        return (FieldState(phi=new_phi, action=new_action, grad=new_grad),
                Info(acceptance=xp.astype(acc, phi.dtype), delta_h=dH, divergent=~xp.isfinite(dH)))
