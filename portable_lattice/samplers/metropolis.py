"""Local Metropolis updates of the field, phi_x -> phi_x + delta, delta ~ N(0, step^2).

Two kernels share the accept rule and the exact local action difference
(Eq. 3 of the PEM paper):

* :class:`RandomSiteMetropolis` - the PEM paper's algorithm exactly as written
  (Sec. II of 000): pick a random site, propose, accept; V of them per sweep.
* :class:`CheckerboardMetropolis` - every site of one parity at once (they are
  not neighbours, so their updates are independent), both parities per sweep,
  optionally ``hits`` proposals per site in a row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import array_api_extra as xpx
from array_api_compat import array_namespace, device as device_of

from .._checks import positive_float, positive_int
from .._delegation import accelerated
from ..lattice import Checkerboard
from .base import Info, State, check_action_field, metropolis_accept

__all__ = ["CheckerboardMetropolis", "RandomSiteMetropolis"]


@dataclass(frozen=True)
class CheckerboardMetropolis:
    """Checkerboard Metropolis sweep for a nearest-neighbour action.

    Parameters
    ----------
    action : Phi4
        Needs ``grad_action`` and ``local_delta_action``.
    step_size : float
        Standard deviation of the proposal delta.
    hits : int
        Proposals per site before moving to the other parity (multi-hit).
    """

    action: Any
    step_size: float = 1.0
    hits: int = 1

    def __post_init__(self):
        positive_float("step_size", self.step_size)
        positive_int("hits", self.hits)

    def init(self, phi: Any) -> State:
        check_action_field(self.action, phi)
        L = phi.shape[1]
        if L % 2 or L < 2:
            raise ValueError(f"checkerboard updates need an even L >= 2, got L={L}")
        return State(phi=phi)

    def update_parity(self, active: Any, other: Any, p: int, deltas: list, us: list) -> tuple[Any, Any]:
        """All hits on the parity-p sites: pure arithmetic, given the random numbers
        (per hit, the proposals ``deltas`` and the uniforms ``us`` of the accept test).

        Returns the new blocks and the accepted proposals per chain (as the field's dtype).
        This is the unit a backend accelerator fuses.
        """
        xp = array_namespace(active)
        board = Checkerboard(active.ndim - 2)
        # neighbours are fixed during this parity's hits: one neighbour sum serves them all
        hop = self.action.beta * board.neighbour_sum(other, p)
        accepted = None
        for delta, u in zip(deltas, us):
            grad = self.action.grad_action_local(active, hop)
            dS = self.action.local_delta_action(active, delta, grad)
            acc = metropolis_accept(u, -dS)
            active = xp.where(acc, active + delta, active)
            n = xp.astype(xp.count_nonzero(acc, axis=tuple(range(1, acc.ndim))), active.dtype)
            accepted = n if accepted is None else accepted + n
        return active, accepted

    def step(self, state: State, rng) -> tuple[State, Info]:
        phi = state.phi
        xp = array_namespace(phi)
        dtype = phi.dtype
        board = Checkerboard(phi.ndim - 1)
        # work in the blocked layout so random numbers and arithmetic touch only the
        # V/2 sites being updated (no masks over the whole lattice)
        halves = list(board.split(phi))
        update = accelerated(type(self).update_parity, xp)
        accepted = None
        for p in (0, 1):
            shape = tuple(halves[p].shape)
            deltas, us = [], []
            for _ in range(self.hits):
                deltas.append(self.step_size * rng.normal(shape, dtype))
                us.append(rng.uniform(shape, dtype))
            halves[p], n = update(self, halves[p], halves[1 - p], p, deltas, us)
            accepted = n if accepted is None else accepted + n
        volume = 1
        for n in phi.shape[1:]:
            volume *= n
        return State(phi=board.merge(*halves)), Info(acceptance=accepted / (volume * self.hits))


@dataclass(frozen=True)
class RandomSiteMetropolis:
    """Sequential random-site Metropolis, as in Sec. II of the PEM paper.

    One ``step`` is a sweep of V single-site updates; each chain picks its own
    random site per update. ``inplace`` selects the fast path that writes the
    accepted value with array-api-extra's ``at`` (numpy, torch, cupy); the
    generic path (``inplace=False``, and always on array_api_strict) uses a
    one-hot ``where``. A test holds the two equal.
    """

    action: Any
    step_size: float = 1.0
    inplace: bool | None = None

    def __post_init__(self):
        positive_float("step_size", self.step_size)

    def init(self, phi: Any) -> State:
        check_action_field(self.action, phi)
        if phi.shape[1] < 3:
            # with L <= 2 a site is its own (or doubly) neighbour and Eq. 3's local form is not exact
            raise ValueError(f"random-site Metropolis needs L >= 3, got L={phi.shape[1]}")
        return State(phi=phi)

    def _neighbour_table(self, xp, L, d, device):
        """Flat indices of the 2d neighbours of every site, shape (V, 2d)."""
        V = L ** d
        site = xp.arange(V, device=device)
        cols = []
        for mu in range(d):
            stride = L ** (d - 1 - mu)  # C order: axis mu has this flat stride
            x_mu = (site // stride) % L
            for s in (1, -1):
                cols.append(site + (((x_mu + s) % L) - x_mu) * stride)
        return xp.stack(cols, axis=1)

    def step(self, state: State, rng) -> tuple[State, Info]:
        phi = state.phi
        xp = array_namespace(phi)
        dev = device_of(phi)
        chains, L, d = phi.shape[0], phi.shape[1], phi.ndim - 1
        V = L ** d
        dtype = phi.dtype
        inplace = self.inplace
        if inplace is None:
            inplace = not (xp.__name__.startswith("array_api_strict"))
        nbr = xp.reshape(self._neighbour_table(xp, L, d, dev), (-1,))
        offset = xp.arange(chains, device=dev) * V
        # all random numbers of the sweep at once: (V updates, chains)
        sites = rng.integers(V, (V, chains))
        deltas = self.step_size * rng.normal((V, chains), dtype)
        logu = xp.log(rng.uniform((V, chains), dtype))
        flat = xp.reshape(phi, (chains * V,))
        if inplace:
            flat = xp.asarray(flat, copy=True)  # never write into the caller's array
        site_ids = xp.arange(V, device=dev)
        accepted = xp.zeros(chains, dtype=dtype, device=dev)
        for t in range(V):
            site = sites[t, :]
            delta = deltas[t, :]
            phi_x = xp.take(flat, offset + site)
            nsum = xp.zeros(chains, dtype=dtype, device=dev)
            for k in range(2 * d):
                nsum = nsum + xp.take(flat, offset + xp.take(nbr, site * (2 * d) + k))
            grad = self.action.grad_action_local(phi_x, self.action.beta * nsum)
            dS = self.action.local_delta_action(phi_x, delta, grad)
            acc = logu[t, :] < -dS
            new = xp.where(acc, phi_x + delta, phi_x)
            if inplace:
                flat = xpx.at(flat, offset + site).set(new, copy=False)
            else:
                hit = xp.reshape(site_ids, (1, V)) == xp.reshape(site, (chains, 1))
                grid = xp.reshape(flat, (chains, V))
                flat = xp.reshape(xp.where(hit, xp.reshape(new, (chains, 1)), grid), (chains * V,))
            accepted = accepted + xp.astype(acc, dtype)
        return State(phi=xp.reshape(flat, tuple(phi.shape))), Info(acceptance=accepted / V)
