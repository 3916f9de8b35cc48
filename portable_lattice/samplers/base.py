"""What every sampler kernel shares: its state, its per-step info, the accept test.

A kernel is a frozen dataclass of parameters with two methods (the BlackJAX
pattern): ``init(x) -> State`` and ``step(state, rng) -> (State, Info)``.
The generator ``rng`` comes from :mod:`portable_lattice.backends`; it is the
only mutable thing a step touches, so checkpointing is (state, rng state).

There is one state per family: :class:`FieldState` holds a real field ``phi``
(with the cached action and gradient where a kernel keeps them),
:class:`SpinState` holds int8 ``spins``. Both expose the configuration as
``state.config`` for the driver.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace


__all__ = ["FieldState", "SpinState", "Info", "INFO_SERIES", "info_series", "per_chain", "log_uniform", "metropolis_accept", "check_theory_field", "check_local_update"]


@dataclass(frozen=True)
class FieldState:
    """A batch of chains of a real field ``phi`` ``(chains, L, ..., L)`` and cached derivatives.

    ``action`` and ``grad`` are the exact S[phi] and dS/dphi where the kernel
    keeps them (HMC, Langevin), else None; ``log_q`` the proposal log-density of
    the current configuration (independence sampler), else None.
    """

    phi: Any
    action: Any = None
    grad: Any = None
    log_q: Any = None

    @property
    def config(self) -> Any:
        return self.phi


@dataclass(frozen=True)
class SpinState:
    """A batch of chains of int8 spins ``(chains, L, ..., L)``; ``log_q`` as for :class:`FieldState`."""

    spins: Any
    log_q: Any = None

    @property
    def config(self) -> Any:
        return self.spins


#: the per-step Info fields a run records as series (beside the observables), in this order
INFO_SERIES = ("acceptance", "changed", "cluster_size")


def info_series(info: "Info") -> dict:
    """The per-step series one step reported: name -> (chains,) for the fields of INFO_SERIES it has."""
    return {name: getattr(info, name) for name in INFO_SERIES if getattr(info, name) is not None}


@dataclass(frozen=True)
class Info:
    """What one step did, per chain; each field means one thing, None where it does not apply.

    acceptance : (chains,) fraction of Metropolis proposals accepted in this step
    changed : (chains,) fraction of sites whose value changed (heat bath, Swendsen-Wang)
    cluster_size : (chains,) size of the flipped cluster as a fraction of V (Wolff)
    delta_h : (chains,) energy violation dH of the trajectory (HMC)
    divergent : (chains,) bool, non-finite dH (HMC)
    log_weight : (chains,) log importance weight -S - log q of the proposal (independence sampler)
    """

    acceptance: Any = None
    changed: Any = None
    cluster_size: Any = None
    delta_h: Any = None
    divergent: Any = None
    log_weight: Any = None


def per_chain(v: Any, like: Any) -> Any:
    """Reshape a ``(chains,)`` array to broadcast against a field ``like``."""
    xp = array_namespace(v)
    return xp.reshape(v, (v.shape[0],) + (1,) * (like.ndim - 1))


def log_uniform(rng: Any, shape: tuple, dtype: Any) -> Any:
    """ln u of uniforms u on [0, 1) (the Metropolis test's left side): the generator's own
    ``log_uniform`` where it has one (the Philox stream: identical on every backend), else the
    backend's ``log`` of its uniforms."""
    if hasattr(rng, "log_uniform"):
        return rng.log_uniform(shape, dtype)
    u = rng.uniform(shape, dtype)
    return array_namespace(u).log(u)


def metropolis_accept(u: Any, log_ratio: Any) -> Any:
    """Accept with probability min(1, exp(log_ratio)); NaN log-ratios are rejected.

    Written as ``log u < log_ratio`` so a huge positive ratio never overflows.
    """
    xp = array_namespace(u, log_ratio)
    return xp.log(u) < log_ratio


def check_theory_field(theory: Any, x: Any) -> Any:
    """Validate a configuration for ``theory``: spins by its own check, fields by phi^4's stability check."""
    return theory.check_spins(x) if theory.family.discrete else theory.check_field(x)


def count_per_chain(mask: Any, dtype: Any) -> Any:
    """Number of True entries per chain, as ``dtype``."""
    xp = array_namespace(mask)
    return xp.astype(xp.count_nonzero(mask, axis=tuple(range(1, mask.ndim))), dtype)


def check_local_update(kernel: Any, updates: tuple) -> None:
    """The knobs every local sweep of link or n-vector variables shares (``update``, ``step_size``,
    ``hits``, ``overrelax``), checked by name: the O(n) and U(1) checkerboards take the same ones."""
    from .._checks import choice, nonnegative_int, positive_float, positive_int
    choice("update", kernel.update, updates)
    positive_float("step_size", kernel.step_size)
    positive_int("hits", kernel.hits)
    nonnegative_int("overrelax", kernel.overrelax)
    if kernel.update == "overrelax" and kernel.overrelax:
        raise ValueError(f"overrelax adds overrelaxation sweeps to a Metropolis or heat-bath step, got "
                         f"overrelax={kernel.overrelax} with update='overrelax'")
    if kernel.update != "metropolis" and kernel.hits != 1:
        raise ValueError(f"hits must be 1 for update={kernel.update!r} (only Metropolis repeats a proposal), "
                         f"got hits={kernel.hits}")
