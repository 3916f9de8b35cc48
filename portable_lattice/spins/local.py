"""Local updates of spin models: checkerboard Metropolis and heat bath, and the DCL
paper's sequential single-spin-flip Metropolis (Eq. 7 of 004).

Kernels follow the spine's pattern, ``init(spins) -> State`` and
``step(state, rng) -> (State, Info)``; ``State.phi`` holds the int8 spins.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace, device as device_of

from .._checks import choice, finite_float
from ..lattice import Checkerboard, parity
from ..samplers.base import Info, State
from .models import Ising, check_spins

__all__ = ["SpinCheckerboard", "SequentialSpinMetropolis", "check_beta"]


def check_beta(beta: float) -> float:
    b = finite_float("beta", beta)
    if b < 0:
        raise ValueError(f"beta must be non-negative, got beta={beta!r}")
    return b


def _volume(s):
    v = 1
    for n in s.shape[1:]:
        v *= n
    return v


@dataclass(frozen=True)
class SpinCheckerboard:
    """Checkerboard sweep: all sites of one parity at once (they share no bond), then the other.

    method : "metropolis" (propose a flip / another state, accept with
    min(1, exp(-beta dE))) or "heatbath" (draw the new state from its
    conditional Boltzmann weights given the neighbours).
    """

    model: Any
    beta: float
    method: str = "metropolis"
    dtype: str = "float64"

    def __post_init__(self):
        check_beta(self.beta)
        choice("method", self.method, ("metropolis", "heatbath"))

    def init(self, spins: Any) -> State:
        check_spins(spins, self.model)
        if spins.shape[1] % 2:
            raise ValueError(f"checkerboard updates need an even L, got L={spins.shape[1]}")
        return State(phi=spins)

    def step(self, state: State, rng) -> tuple[State, Info]:
        s = state.phi
        xp = array_namespace(s)
        dtype = getattr(xp, self.dtype)
        if type(self.model) is Ising:
            return self._ising_blocked(s, rng, dtype)
        even = parity(xp, s.shape[1], s.ndim - 1, device_of(s)) == 0
        accepted = xp.zeros(s.shape[0], dtype=dtype, device=device_of(s))
        shape = tuple(s.shape)
        for mask in (even, ~even):
            if self.method == "metropolis":
                k = self.model.draw_proposals(rng, shape)
                t = self.model.propose(s, k)
                # spin flips (Ising, EA) have a cheaper energy change than a general new state
                dE = self.model.flip_energy(s, dtype) if k is None else self.model.delta_energy(t, s, dtype)
                acc = mask & (xp.log(rng.uniform(shape, dtype)) < -self.beta * dE)
            else:
                t, acc = self._heatbath(s, rng, dtype, mask)
            s = xp.where(acc, t, s)
            accepted = accepted + xp.astype(xp.count_nonzero(acc, axis=tuple(range(1, s.ndim))), dtype)
        return State(phi=s), Info(acceptance=accepted / _volume(s))

    def update_parity(self, active: Any, other: Any, p: int, bits: Any, dtype: Any) -> tuple[Any, Any]:
        """Ising update of the parity-p blocks, given 32 random bits per site: pure arithmetic.

        Metropolis: dE = 2 s_x (J sum_nb s_nb + h), and a flip is accepted where
        ``bits`` lies below the integer threshold for min(1, exp(-beta dE))
        (:meth:`Ising.flip_thresholds`). Heat bath: s_x = +1 where ``bits`` lies below
        the threshold for 1 / (1 + exp(-2 beta (J sum_nb s_nb + h))), else -1.
        Returns the new blocks and the changed spins per chain (as ``dtype``).
        Not routed through the torch.compile accelerator: on this 2-core CPU the fused
        float version of this kernel ran at 0.86x of the eager one (bench_spins.py's
        sweep, measured once; the integer version was not compiled).
        """
        xp = array_namespace(active)
        board = Checkerboard(active.ndim - 2)
        # int8 neighbour sum, |sum| <= 2d
        nsum = board.neighbour_sum(other, p)
        if self.method == "metropolis":
            changed = self.model.flip_accept(active, nsum, bits, self.beta, board.dim)
            # a flip is s * (1 - 2 acc): one int8 pass, where a where() over int8 costs ten
            new = active * (1 - 2 * xp.astype(changed, active.dtype))
        else:
            new = self.model.heatbath_spins(nsum, bits, self.beta, board.dim)
            changed = new != active
        return new, xp.astype(xp.count_nonzero(changed, axis=tuple(range(1, changed.ndim))), dtype)

    def _ising_blocked(self, s, rng, dtype):
        """Ising Metropolis or heat bath in the blocked checkerboard layout
        (:class:`~portable_lattice.lattice.Checkerboard`).

        Same update as the masked sweep, but every half sweep draws random bits
        for, and computes on, only its V/2 sites; the decision compares int32
        random bits with integer thresholds (half the random-number work of
        float64 uniforms, and no exp).
        """
        board = Checkerboard(s.ndim - 1)
        halves = list(board.split(s))
        accepted = None
        for p in (0, 1):
            bits = rng.bits32(tuple(halves[p].shape))
            halves[p], n = self.update_parity(halves[p], halves[1 - p], p, bits, dtype)
            accepted = n if accepted is None else accepted + n
        return State(phi=board.merge(*halves)), Info(acceptance=accepted / _volume(s))

    def _heatbath(self, s, rng, dtype, mask):
        """New state t with probability exp(-beta E_x(t)) / sum_t' exp(-beta E_x(t'))."""
        xp = array_namespace(s)
        values = self.model.state_values()
        energies = [self.model.local_energy(xp.full(s.shape, v, dtype=s.dtype, device=device_of(s)), s, dtype)
                    for v in values]
        lowest = energies[0]
        for e in energies[1:]:
            lowest = xp.minimum(lowest, e)
        weights = [xp.exp(-self.beta * (e - lowest)) for e in energies]
        total = weights[0]
        for w in weights[1:]:
            total = total + w
        r = rng.uniform(tuple(s.shape), dtype) * total
        new = xp.full(s.shape, values[-1], dtype=s.dtype, device=device_of(s))
        cum = None
        chosen = xp.zeros(s.shape, dtype=xp.bool, device=device_of(s))
        for v, w in zip(values[:-1], weights[:-1]):
            cum = w if cum is None else cum + w
            pick = (r < cum) & ~chosen
            new = xp.where(pick, xp.asarray(v, dtype=s.dtype, device=device_of(s)), new)
            chosen = chosen | pick
        return new, mask & (new != s)


@dataclass(frozen=True)
class SequentialSpinMetropolis:
    """Single-spin-flip Metropolis at random sites, V updates per sweep (Eq. 7 of the DCL paper).

    Each update picks a random site per chain, proposes a flip (Ising, EA) or a
    uniformly random other state (Potts, clock), and accepts with
    min(1, exp(-beta dE)). Written as the paper states it: exact, and slow by
    nature (a Python loop over V updates, each O(V) array work).
    """

    model: Any
    beta: float
    dtype: str = "float64"

    def __post_init__(self):
        check_beta(self.beta)

    def init(self, spins: Any) -> State:
        check_spins(spins, self.model)
        if spins.shape[1] < 3:
            raise ValueError(f"single-spin updates need L >= 3, got L={spins.shape[1]}")
        return State(phi=spins)

    def step(self, state: State, rng) -> tuple[State, Info]:
        s = state.phi
        xp = array_namespace(s)
        dtype = getattr(xp, self.dtype)
        chains, V = s.shape[0], _volume(s)
        dev = device_of(s)
        sites = rng.integers(V, (V, chains))
        k = self.model.draw_proposals(rng, (V, chains))
        logu = xp.log(rng.uniform((V, chains), dtype))
        site_ids = xp.reshape(xp.arange(V, device=dev), (1, V))
        accepted = xp.zeros(chains, dtype=dtype, device=dev)
        shape = tuple(s.shape)
        for n in range(V):
            onehot = xp.reshape(site_ids == xp.reshape(sites[n, :], (chains, 1)), shape)
            kn = None if k is None else xp.reshape(k[n, :], (chains,) + (1,) * (s.ndim - 1))
            t = self.model.propose(s, kn)
            dE = self.model.delta_energy(t, s, dtype)
            dE_site = xp.sum(xp.where(onehot, dE, 0.0), axis=tuple(range(1, s.ndim)))
            acc = logu[n, :] < -self.beta * dE_site
            s = xp.where(onehot & xp.reshape(acc, (chains,) + (1,) * (s.ndim - 1)), t, s)
            accepted = accepted + xp.astype(acc, dtype)
        return State(phi=s), Info(acceptance=accepted / V)
