r"""Proposal rules for the Metropolis loops (NetKet's ``MetropolisRule`` pattern).

A rule says what is proposed at a site and what it costs; a loop in
:mod:`portable_lattice.samplers.metropolis` says which sites are visited and owns
the Metropolis test. The seam is :class:`Rule`; a rule implements the entry points of
the layouts it supports:

``site_draws`` / ``site_update``
    one site per chain at a time (the random-site loop): given the site's value,
    its neighbours and the rule's random input, return the proposal and its
    local action difference.
``masked_proposal``
    every site of a mask at once, on the whole lattice (sublattice and generic
    checkerboard loops): the proposal for every site and its local action
    difference (the sites of a mask share no neighbour, or no receptive field, so
    their updates are independent); the loop draws the uniforms and accepts
    (:func:`masked_metropolis`). A rule with ``always_accepts`` (the heat bath)
    returns no difference: its proposal is a draw from the conditional distribution.
``block_draws`` / ``block_update``
    one parity of the blocked checkerboard layout
    (:class:`~portable_lattice.lattice.Checkerboard`): the fast path, where the
    arithmetic touches only the V/2 sites being updated; the accept step is part of
    the unit a backend accelerates, so it stays inside.
``fused_kind``
    which fused sweep (:mod:`~portable_lattice.samplers.fused`) runs the rule on a
    theory, if any: a subclass keeps its parent's fast path.

The rule never reads a coupling: the theory gives the local action difference
(``local_delta_action`` for fields, ``delta_action`` / ``site_delta_action``
for spins) or integer acceptance thresholds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

from array_api_compat import array_namespace

from .._checks import positive_float
from .._delegation import accelerated
from ..theories.base import FIELD, family_of
from ..theories.learned import LearnedEnergy
from .base import count_per_chain, log_uniform

__all__ = ["Rule", "Site", "masked_metropolis", "GaussianShift", "SurrogateShift", "SpinFlip", "StateShift", "EnergyModelUpdate",
           "check_gradient"]


class Site(NamedTuple):
    """One site per chain, as the random-site loop hands it to a rule.

    value : (chains,) the current value at the site
    neighbours : (chains, 2d) the values of its 2d neighbours (order of
        :func:`~portable_lattice.lattice.neighbour_table`)
    index : (chains,) the site's flat index on the lattice, 0..V-1
    flat_index : (chains,) its index into the flattened (chains * V) configuration
    config : the whole current configuration (chains, L, ..., L)
    """

    value: Any
    neighbours: Any
    index: Any
    flat_index: Any
    config: Any


@runtime_checkable
class Rule(Protocol):
    """The seam between a Metropolis loop and a proposal. Every rule checks its theory and
    proposes at masked sites; the random-site and blocked layouts and a fused kernel are
    optional (the defaults below say "not supported"). ``reports`` names what the loop
    reports per step ("acceptance" or "changed"); ``always_accepts`` marks a rule whose
    proposal is an exact conditional draw (no Metropolis test)."""

    reports = "acceptance"
    always_accepts = False

    def check(self, theory: Any) -> None:
        """Raise a ValueError naming the theory when the rule cannot act on it."""
        ...

    def masked_proposal(self, theory: Any, x: Any, mask: Any, rng: Any, dtype: Any, ctx: dict) -> tuple:
        """(proposal, local action difference) at every site (the loop uses the masked ones)."""
        ...

    def prepare(self, theory: Any, x: Any, dtype: Any) -> dict:
        return {}

    def site_draws(self, theory: Any, rng: Any, n: int, chains: int, dtype: Any) -> tuple:
        raise ValueError(f"{type(self).__name__} has no random-site update")

    def site_update(self, theory: Any, site: Site, draws: tuple, ctx: dict) -> tuple:
        raise ValueError(f"{type(self).__name__} has no random-site update")

    def blocked(self, theory: Any) -> bool:
        return False

    def block_tables(self, theory: Any, dim: int) -> Any:
        return None

    def fused_kind(self, theory: Any) -> str | None:
        return None


def masked_metropolis(rule: Any, theory: Any, x: Any, mask: Any, rng: Any, dtype: Any, ctx: dict) -> tuple:
    """One masked update with the loop's Metropolis test: the rule proposes, the loop draws a
    uniform per site (after the rule's own draws) and accepts with min(1, exp(-dS)); NaN dS is
    rejected. An ``always_accepts`` rule's proposal is taken where it changes a site. Returns the
    new configuration and the accepted (changed) sites per chain."""
    xp = array_namespace(x)
    t, dS = rule.masked_proposal(theory, x, mask, rng, dtype, ctx)
    if rule.always_accepts:
        acc = mask & (t != x)
    else:
        acc = mask & (log_uniform(rng, tuple(x.shape), dtype) < -dS)
    return xp.where(acc, t, x), count_per_chain(acc, dtype)


# --- fields ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class GaussianShift(Rule):
    """phi_x -> phi_x + delta, delta ~ N(0, step_size^2), accepted with the exact local dS (Eq. 3 of [PEM])."""

    step_size: float = 1.0
    def __post_init__(self):
        positive_float("step_size", self.step_size)

    def check(self, theory: Any) -> None:
        if family_of(theory).discrete:
            raise ValueError(f"a Gaussian shift needs a field theory, got {type(theory).__name__}")

    # random site
    def site_draws(self, theory, rng, n: int, chains: int, dtype) -> tuple:
        return (self.step_size * rng.normal((n, chains), dtype),)

    def site_update(self, theory, site: Site, draws: tuple, ctx: dict):
        xp = array_namespace(site.value)
        (delta,) = draws
        grad = theory.grad_action_local(site.value, xp.sum(site.neighbours, axis=1))
        return site.value + delta, theory.local_delta_action(site.value, delta, grad)

    # masked (sublattice, generic checkerboard)
    def masked_proposal(self, theory, x, mask, rng, dtype, ctx):
        delta = self.step_size * rng.normal(tuple(x.shape), dtype)
        return x + delta, theory.local_delta_action(x, delta, theory.grad_action(x))

    # blocked checkerboard
    def blocked(self, theory) -> bool:
        return True

    def fused_kind(self, theory) -> str | None:
        # the fused phi^4 sweep runs a field theory from its local constants (the family's protocol)
        return "phi4" if family_of(theory) is FIELD else None

    def block_draws(self, rng, shape, dtype, hits: int, scaled: bool = True) -> tuple:
        """Per hit a normal, then a uniform's logarithm (:func:`~.base.log_uniform`); the normals
        times the step (``scaled=False``: as drawn, for a fused kernel that scales them in the
        same pass)."""
        deltas, log_us = [], []
        for _ in range(hits):
            z = rng.normal(shape, dtype)
            deltas.append(self.step_size * z if scaled else z)
            log_us.append(log_uniform(rng, shape, dtype))
        return deltas, log_us

    def block_update(self, theory, active, other, p, board, draws, ctx):
        xp = array_namespace(active)
        return accelerated(gaussian_block_update, xp)(theory, active, other, p, board, draws[0], draws[1])


def gaussian_block_update(theory, active, other, p: int, board, deltas: list, log_us: list):
    """All hits of a Gaussian shift on the parity-p blocks: pure arithmetic given the random
    numbers (per hit the proposals ``deltas`` and the uniforms' logarithms ``log_us``), the unit a backend
    accelerator (torch.compile) fuses. Returns the new blocks and the accepted proposals per
    chain, as the field's dtype."""
    xp = array_namespace(active)
    # neighbours are fixed during this parity's hits: one neighbour sum serves them all
    nsum = board.neighbour_sum(other, p)
    accepted = None
    for delta, log_u in zip(deltas, log_us):
        grad = theory.grad_action_local(active, nsum)
        dS = theory.local_delta_action(active, delta, grad)
        acc = log_u < -dS  # NaN dS is rejected
        active = xp.where(acc, active + delta, active)
        n = count_per_chain(acc, active.dtype)
        accepted = n if accepted is None else accepted + n
    return active, accepted


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
class SurrogateShift(Rule):
    r"""A Gaussian shift judged with a surrogate gradient (Eq. 5-6 of [PEM]); ``penalty=True`` is
    the Penalty Ensemble Method (Eq. 10 of [PEM]).

    dS = delta g_x + (1 - 2g + 6g phi_x^2) delta^2 + 4g phi_x delta^3 + g delta^4 with the
    provider's g_x (the ensemble mean), plus, for PEM, the Ceperley-Dewing penalty
    sigma^2 delta^2 / (2N) (App. A of [PEM]): the mean over N members carries variance
    sigma^2 / N.

    provider : callable phi -> (mean, var) with ``n_members`` and ``receptive_field``
        (:mod:`portable_lattice.surrogates.providers`, or a torch ensemble behind the adapter).
    """

    provider: Any
    step_size: float = 1.0
    penalty: bool = False

    def __post_init__(self):
        positive_float("step_size", self.step_size)
        if self.penalty and getattr(self.provider, "n_members", 1) < 2:
            raise ValueError(f"PEM needs an ensemble of N >= 2 members for its variance, "
                             f"got N={getattr(self.provider, 'n_members', 1)}")

    @property
    def stride(self) -> int:
        """The sublattice stride r + 1 for receptive field r: a site's update changes no
        other site's prediction within its sublattice."""
        return int(self.provider.receptive_field) + 1

    def check(self, theory: Any) -> None:
        GaussianShift.check(self, theory)

    def _evaluate(self, phi):
        mean, var = self.provider(phi)
        if self.penalty and var is None:
            raise ValueError("PEM needs the provider's variance, got None")
        check_gradient(mean, var, phi)
        return mean, var

    def _delta_action(self, theory, phi, delta, mean, var):
        dS = theory.local_delta_action(phi, delta, mean)
        if self.penalty:
            dS = dS + var * (delta * delta) / (2.0 * self.provider.n_members)
        return dS

    def site_draws(self, theory, rng, n, chains, dtype) -> tuple:
        return (self.step_size * rng.normal((n, chains), dtype),)

    def site_update(self, theory, site: Site, draws: tuple, ctx: dict):
        # the paper's algorithm: one provider call per single-site update
        xp = array_namespace(site.value)
        (delta,) = draws
        mean, var = self._evaluate(site.config)
        g = xp.take(xp.reshape(mean, (-1,)), site.flat_index)
        v = None if var is None else xp.take(xp.reshape(var, (-1,)), site.flat_index)
        return site.value + delta, self._delta_action(theory, site.value, delta, g, v)

    def masked_proposal(self, theory, x, mask, rng, dtype, ctx):
        mean, var = self._evaluate(x)  # one provider call serves the whole sublattice
        delta = self.step_size * rng.normal(tuple(x.shape), dtype)
        return x + delta, self._delta_action(theory, x, delta, mean, var)

    def fused_kind(self, theory) -> str | None:
        return None  # a surrogate's gradient is not the exact one a fused sweep computes


# --- spins ----------------------------------------------------------------------------------
def _uniform_couplings(theory) -> bool:
    """Integer thresholds need one coupling for every bond (Ising, not Edwards-Anderson): the
    theory says so."""
    return theory.uniform_couplings


@dataclass(frozen=True)
class SpinFlip(Rule):
    """s_x -> -s_x for +-1 spins (Ising, Edwards-Anderson), accepted with min(1, exp(-beta dE)).

    On the blocked checkerboard with uniform couplings the decision is an integer compare of
    32 random bits against the theory's thresholds (:meth:`Ising.flip_thresholds`), built
    once per kernel and dimension.
    """

    def check(self, theory: Any) -> None:
        # two states are not enough: q = 2 Potts/clock spins are 0, 1, and -s would leave them
        if not family_of(theory).discrete or tuple(theory.state_values()) != (-1, 1):
            raise ValueError(f"a spin flip needs +-1 spins (Ising, Edwards-Anderson), got {type(theory).__name__}")

    def prepare(self, theory, x, dtype) -> dict:
        # quenched couplings (Edwards-Anderson) as a table the random-site update looks up
        table = theory.coupling_table(dtype)
        return {} if table is None else {"table": table}

    def site_draws(self, theory, rng, n, chains, dtype) -> tuple:
        return ()

    def site_update(self, theory, site: Site, draws: tuple, ctx: dict):
        t = -site.value
        return t, theory.site_delta_action(site.value, t, site.neighbours, site.index, ctx["dtype"],
                                           **({"table": ctx["table"]} if "table" in ctx else {}))

    def masked_proposal(self, theory, s, mask, rng, dtype, ctx):
        return -s, theory.delta_action(-s, s, dtype)

    def blocked(self, theory) -> bool:
        return _uniform_couplings(theory)

    def fused_kind(self, theory) -> str | None:
        return "ising" if _uniform_couplings(theory) else None

    def block_tables(self, theory, dim: int) -> list:
        return theory.flip_thresholds(dim)

    def block_draws(self, rng, shape, dtype, hits: int) -> list:
        # 32 random bits per site and hit (one draw per hit, as the masked path makes)
        return [rng.bits32(shape) for _ in range(hits)]

    def block_update(self, theory, active, other, p, board, bits, ctx):
        xp = array_namespace(active)
        nsum = board.neighbour_sum(other, p)  # int8, |sum| <= 2d; the neighbours are fixed during the hits
        accepted = None
        for b in bits:
            changed = theory.flip_accept(active, nsum, b, ctx["thresholds"])
            # a flip is s * (1 - 2 acc): one int8 pass, where a where() over int8 costs ten
            active = active * (1 - 2 * xp.astype(changed, active.dtype))
            n = count_per_chain(changed, ctx["dtype"])
            accepted = n if accepted is None else accepted + n
        return active, accepted


def _state_offsets(theory, rng, shape):
    """k ~ U{0..q-2} per site: s -> (s + 1 + k) mod q is a uniformly random other state."""
    k = rng.integers(theory.q - 1, shape)
    xp = array_namespace(k)
    return xp.astype(k, xp.int8)


@dataclass(frozen=True)
class StateShift(Rule):
    """s_x -> (s_x + 1 + k) mod q, k ~ U{0..q-2}: a uniformly random other state (Potts, clock)."""

    def check(self, theory: Any) -> None:
        states = tuple(theory.state_values()) if family_of(theory).discrete else ()
        if not states or states != tuple(range(len(states))):
            raise ValueError(f"a state shift needs q-state spins (Potts, clock), got {type(theory).__name__}")

    def site_draws(self, theory, rng, n, chains, dtype) -> tuple:
        return (_state_offsets(theory, rng, (n, chains)),)

    def site_update(self, theory, site: Site, draws: tuple, ctx: dict):
        (k,) = draws
        t = (site.value + 1 + k) % theory.q
        return t, theory.site_delta_action(site.value, t, site.neighbours, site.index, ctx["dtype"])

    def masked_proposal(self, theory, s, mask, rng, dtype, ctx):
        t = (s + 1 + _state_offsets(theory, rng, tuple(s.shape))) % theory.q
        return t, theory.delta_action(t, s, dtype)


@dataclass(frozen=True)
class EnergyModelUpdate(Rule):
    """A spin flip (+-1 spins) or a uniformly random other state (q states), judged with a
    learned energy (:class:`~portable_lattice.theories.LearnedEnergy`).

    The masked path changes every site of a stride-``theory.stride`` sublattice at once: no
    two of them share an energy term, so each site's energy change is its own (the
    provider's ``delta``). The random-site path asks the provider for one site per chain
    (``site_delta``: a local provider evaluates only the few terms containing the site).
    """

    def check(self, theory: Any) -> None:
        if not isinstance(theory, LearnedEnergy):
            raise ValueError(f"an energy-model update needs a theory with a learned energy (LearnedEnergy), "
                             f"got {type(theory).__name__}")

    @property
    def stride(self) -> None:
        return None  # the theory's: SublatticeMetropolis is built with stride=theory.stride

    def _propose(self, theory, s, k):
        if theory.q == 2:
            return -s
        xp = array_namespace(s)
        return xp.astype(s + 1 + k, s.dtype) % theory.q

    def site_draws(self, theory, rng, n, chains, dtype) -> tuple:
        if theory.q == 2:
            return ()
        return (_state_offsets(theory, rng, (n, chains)),)

    def site_update(self, theory, site: Site, draws: tuple, ctx: dict):
        t = self._propose(theory, site.value, draws[0] if draws else None)
        return t, theory.site_change_action(site.config, site.index, t, ctx["dtype"])

    def masked_proposal(self, theory, s, mask, rng, dtype, ctx):
        xp = array_namespace(s)
        k = None if theory.q == 2 else _state_offsets(theory, rng, tuple(s.shape))
        t = xp.where(mask, self._propose(theory, s, k), s)  # the energy change of the masked sites only
        return t, theory.masked_delta_action(s, t, dtype)
