r"""Surrogate Metropolis (Eq. 5-6) and the Penalty Ensemble Method (Eq. 10) of the PEM paper.

Both propose phi_x -> phi_x + delta, delta ~ N(0, step^2), and evaluate
Eq. 3/5 with the provider's gradient in place of the exact one,

    dS = delta g_x + (1 - 2g + 6g phi_x^2) delta^2 + 4g phi_x delta^3 + g delta^4.

Plain surrogate Metropolis accepts with min(1, exp(-dS)). PEM uses the
ensemble mean for g_x and adds the Ceperley-Dewing penalty (App. A):

    p_acc = min(1, exp(-dS - sigma^2 delta^2 / (2N)))       (Eq. 10),

since the mean over N members carries variance sigma^2/N, so dS carries delta^2 sigma^2/N.

Two modes:

* ``"sequential"`` - the paper's algorithm: a random site per update, V updates
  per sweep, one provider call per update.
* ``"parallel"`` - the stride-s sublattices (s = r + 1 for receptive field r)
  in turn. A site's update changes no other site's gradient within its
  sublattice, so one provider call serves all of its sites, and the result
  equals a sequential scan of the sublattice in any order (a test checks
  this update by update). That is s^d calls per sweep instead of V.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace, device as device_of

from .._checks import choice, positive_float
from ..lattice import sublattice_masks
from ..samplers.base import Info, State, check_action_field, metropolis_accept

__all__ = ["SurrogateMetropolis", "PEM", "check_gradient"]


def check_gradient(mean, var, phi) -> None:
    """Shapes must match the field; non-finite predictions stop the run, naming chain and site."""
    xp = array_namespace(phi)
    for name, arr in (("gradient", mean), ("variance", var)):
        if arr is None:
            continue
        if tuple(arr.shape) != tuple(phi.shape):
            raise ValueError(f"the surrogate's {name} has shape {tuple(arr.shape)}, "
                             f"but the field has shape {tuple(phi.shape)}")
        bad = ~xp.isfinite(arr)
        if bool(xp.any(bad)):
            flat = xp.reshape(bad, (-1,))
            first = int(xp.argmax(xp.astype(flat, xp.int32)))
            V = flat.shape[0] // phi.shape[0]
            chain, site = divmod(first, V)
            coords = []
            for n in reversed(phi.shape[1:]):
                coords.append(site % n)
                site //= n
            raise FloatingPointError(f"the surrogate predicted a non-finite {name} at chain {chain}, "
                                     f"site {tuple(reversed(coords))}")


@dataclass(frozen=True)
class SurrogateMetropolis:
    """Local Metropolis with a surrogate gradient (Eq. 5-6); ``penalty=True`` gives PEM (Eq. 10).

    Parameters
    ----------
    action : Phi4
        Provides the exact local polynomial of Eq. 3/5 (and field checks).
    provider : callable phi -> (mean, var)
        ExactGradient, NoisyOracle, or a torch ensemble behind the adapter.
    step_size : float
    mode : {"parallel", "sequential"}
    penalty : bool
        Add sigma^2 delta^2 / (2N) (needs an ensemble, N >= 2).
    updates : int, optional
        Sequential mode: single-site updates per step (default V, one sweep).
    """

    action: Any
    provider: Any
    step_size: float = 1.0
    mode: str = "parallel"
    penalty: bool = False
    updates: int | None = None

    def __post_init__(self):
        positive_float("step_size", self.step_size)
        choice("mode", self.mode, ("parallel", "sequential"))
        if self.updates is not None:
            from .._checks import positive_int
            positive_int("updates", self.updates)
        if self.penalty and getattr(self.provider, "n_members", 1) < 2:
            raise ValueError(f"PEM needs an ensemble of N >= 2 members for its variance, "
                             f"got N={getattr(self.provider, 'n_members', 1)}")

    @property
    def stride(self) -> int:
        return int(self.provider.receptive_field) + 1

    def init(self, phi: Any) -> State:
        check_action_field(self.action, phi)
        L = phi.shape[1]
        if self.mode == "parallel" and (L % self.stride or L < 2 * self.stride):
            raise ValueError(f"parallel mode needs L to be a multiple of stride = receptive_field + 1 = "
                             f"{self.stride} with at least two sublattice sites per axis; got L={L}")
        if self.mode == "sequential" and L < 3:
            raise ValueError(f"sequential mode needs L >= 3, got L={L}")
        return State(phi=phi)

    def _delta_action(self, phi, delta, mean, var):
        dS = self.action.local_delta_action(phi, delta, mean)
        if self.penalty:
            dS = dS + var * (delta * delta) / (2.0 * self.provider.n_members)
        return dS

    def _evaluate(self, phi):
        mean, var = self.provider(phi)
        if self.penalty and var is None:
            raise ValueError("PEM needs the provider's variance, got None")
        check_gradient(mean, var, phi)
        return mean, var

    def step(self, state: State, rng) -> tuple[State, Info]:
        return (self._parallel if self.mode == "parallel" else self._sequential)(state, rng)

    def _parallel(self, state, rng):
        phi = state.phi
        xp = array_namespace(phi)
        shape, dtype = tuple(phi.shape), phi.dtype
        masks = sublattice_masks(xp, shape[1], phi.ndim - 1, self.stride, device_of(phi))
        accepted = xp.zeros(shape[0], dtype=dtype, device=device_of(phi))
        for mask in masks:
            mean, var = self._evaluate(phi)  # one provider call serves the whole sublattice
            delta = self.step_size * rng.normal(shape, dtype)
            u = rng.uniform(shape, dtype)
            acc = mask & metropolis_accept(u, -self._delta_action(phi, delta, mean, var))
            phi = xp.where(acc, phi + delta, phi)
            accepted = accepted + xp.astype(xp.count_nonzero(acc, axis=tuple(range(1, phi.ndim))), dtype)
        V = 1
        for n in shape[1:]:
            V *= n
        return State(phi=phi), Info(acceptance=accepted / V)

    def _sequential(self, state, rng):
        phi = state.phi
        xp = array_namespace(phi)
        shape, dtype = tuple(phi.shape), phi.dtype
        chains = shape[0]
        V = 1
        for n in shape[1:]:
            V *= n
        n_updates = V if self.updates is None else self.updates
        sites = rng.integers(V, (n_updates, chains))
        deltas = self.step_size * rng.normal((n_updates, chains), dtype)
        logu = xp.log(rng.uniform((n_updates, chains), dtype))
        ids = xp.reshape(xp.arange(V, device=device_of(phi)), (1, V))
        accepted = xp.zeros(chains, dtype=dtype, device=device_of(phi))
        for t in range(n_updates):
            mean, var = self._evaluate(phi)  # the paper's algorithm: one call per single-site update
            hit = xp.reshape(ids == xp.reshape(sites[t, :], (chains, 1)), shape)
            delta = xp.where(hit, xp.reshape(deltas[t, :], (chains,) + (1,) * (phi.ndim - 1)), 0.0)
            dS = xp.sum(xp.where(hit, self._delta_action(phi, delta, mean, var), 0.0),
                        axis=tuple(range(1, phi.ndim)))
            acc = logu[t, :] < -dS
            phi = xp.where(hit & xp.reshape(acc, (chains,) + (1,) * (phi.ndim - 1)), phi + delta, phi)
            accepted = accepted + xp.astype(acc, dtype)
        return State(phi=phi), Info(acceptance=accepted / n_updates)


def PEM(action, provider, step_size: float = 1.0, mode: str = "parallel") -> SurrogateMetropolis:
    """The Penalty Ensemble Method (Eq. 10): surrogate Metropolis with the Ceperley-Dewing penalty."""
    return SurrogateMetropolis(action, provider, step_size, mode, penalty=True)
