"""The Metropolis loops: one per visiting order, with the proposal as a rule.

* :class:`RandomSiteMetropolis` - a random site per chain, one at a time, V updates
  per sweep (Sec. II of [PEM]; Eq. 7 of [DCL]). O(1) work per update.
* :class:`CheckerboardMetropolis` - every site of one parity at once (they are not
  neighbours), both parities per sweep, optionally ``hits`` proposals per site. Runs
  in the blocked layout (:class:`~portable_lattice.lattice.Checkerboard`) where the
  rule has a blocked update, else with parity masks on the whole lattice.
* :class:`SublatticeMetropolis` - the stride-s sublattices in turn: for a rule whose
  local difference depends on a receptive field of radius r (a surrogate), sites
  s = r + 1 apart are independent, so one evaluation serves a whole sublattice.

Rules (:mod:`~portable_lattice.samplers.rules`, :mod:`~portable_lattice.samplers.heatbath`):
Gaussian shift, surrogate shift (PEM), spin flip, Potts/clock state shift, heat bath.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import array_api_extra as xpx
from array_api_compat import array_namespace, device as device_of

from .._checks import choice, positive_int
from ..lattice import Checkerboard, neighbour_table, parity, sublattice_masks, volume
from . import fused
from .base import FieldState, Info, SpinState, check_theory_field, log_uniform
from .rules import EnergyModelUpdate, Site, SurrogateShift, masked_metropolis

__all__ = ["RandomSiteMetropolis", "CheckerboardMetropolis", "SublatticeMetropolis", "PEM", "learned_energy_metropolis",
           "surrogate_metropolis"]


def _state(x: Any, spins: bool):
    return SpinState(spins=x) if spins else FieldState(phi=x)


def _work_dtype(xp, x, dtype: str | None):
    """Acceptance counts and spin energies in ``dtype``; a field's own dtype by default."""
    if dtype is not None:
        return getattr(xp, dtype)
    return x.dtype if xp.isdtype(x.dtype, "real floating") else xp.float64


def _info(rule, counts, norm):
    return Info(changed=counts / norm) if rule.reports == "changed" else Info(acceptance=counts / norm)


@dataclass(frozen=True)
class _Loop:
    theory: Any
    rule: Any = None
    dtype: str | None = None

    def __post_init__(self):
        if self.rule is None:
            raise TypeError("rule must be given, e.g. GaussianShift(step_size=1.0) or SpinFlip()")
        if self.dtype is not None:
            choice("dtype", self.dtype, ("float32", "float64"))
        self.rule.check(self.theory)

    def _spins(self, x) -> bool:
        return self.theory.family.discrete

    def _init(self, x):
        check_theory_field(self.theory, x)
        return _state(x, self._spins(x))


@dataclass(frozen=True)
class RandomSiteMetropolis(_Loop):
    """Sequential random-site Metropolis: ``updates`` single-site updates per step (default V).

    Each chain picks its own random site per update. ``inplace`` selects the fast
    path that writes the new value with array-api-extra's ``at`` (numpy, torch,
    cupy); the generic path (``inplace=False``, and always on array_api_strict)
    uses a one-hot ``where`` (O(V) per update). A test holds the two equal.
    """

    updates: int | None = None
    inplace: bool | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.updates is not None:
            positive_int("updates", self.updates)

    def init(self, x: Any):
        state = self._init(x)
        if x.shape[1] < 3:
            # with L <= 2 a site is its own (or doubly) neighbour and a local difference is not exact
            raise ValueError(f"random-site updates need L >= 3, got L={x.shape[1]}")
        return state

    def step(self, state, rng):
        x = state.config
        xp = array_namespace(x)
        dev = device_of(x)
        chains, L, d = x.shape[0], x.shape[1], x.ndim - 1
        V = volume(x)
        dtype = _work_dtype(xp, x, self.dtype)
        ctx = dict(self.rule.prepare(self.theory, x, dtype), dtype=dtype)
        inplace = self.inplace
        if inplace is None:
            inplace = not xp.__name__.startswith("array_api_strict")
        n = V if self.updates is None else self.updates
        # every random number of the step at once, (updates, chains): sites, the rule's input, log u
        sites = rng.integers(V, (n, chains))
        draws = self.rule.site_draws(self.theory, rng, n, chains, dtype)
        logu = log_uniform(rng, (n, chains), dtype)
        offset = xp.arange(chains, device=dev) * V
        flat_sites = sites + xp.reshape(offset, (1, chains))
        # neighbour indices of every update, gathered once: (updates, chains, 2d)
        nbr = xp.take(neighbour_table(xp, L, d, dev), xp.reshape(sites, (-1,)), axis=0)
        nbr = xp.reshape(nbr, (n, chains, 2 * d)) + xp.reshape(offset, (1, chains, 1))
        flat = xp.reshape(x, (chains * V,))
        if inplace:
            flat = xp.asarray(flat, copy=True)  # never write into the caller's array
        site_ids = xp.reshape(xp.arange(V, device=dev), (1, V))
        accepted = xp.zeros(chains, dtype=dtype, device=dev)
        shape = tuple(x.shape)
        for t in range(n):
            idx = flat_sites[t, :]
            value = xp.take(flat, idx)
            nbrs = xp.reshape(xp.take(flat, xp.reshape(nbr[t, ...], (-1,))), (chains, 2 * d))
            site = Site(value, nbrs, sites[t, :], idx, xp.reshape(flat, shape))
            new, dS = self.rule.site_update(self.theory, site, tuple(a[t, :] for a in draws), ctx)
            acc = logu[t, :] < -dS
            new = xp.where(acc, new, value)
            if inplace:
                flat = xpx.at(flat, idx).set(new, copy=False)
            else:
                hit = site_ids == xp.reshape(sites[t, :], (chains, 1))
                grid = xp.reshape(flat, (chains, V))
                flat = xp.reshape(xp.where(hit, xp.reshape(new, (chains, 1)), grid), (chains * V,))
            accepted = accepted + xp.astype(acc, dtype)
        return _state(xp.reshape(flat, shape), self._spins(x)), Info(acceptance=accepted / n)


@dataclass(frozen=True)
class CheckerboardMetropolis(_Loop):
    """Checkerboard sweep: every site of one parity at once, then the other; ``hits`` proposals
    per site before moving to the other parity (multi-hit).

    ``fused=True`` runs the sweep as one fused kernel (:mod:`~portable_lattice.samplers.fused`;
    Numba on the CPU, Triton on a GPU), bit-identical to this generic path under the same
    seed and stream; with the Philox stream the kernel draws its numbers in registers. Asked
    for where no backend has one, it is a ValueError naming the capability, raised by
    :meth:`init`.
    """

    hits: int = 1
    fused: bool = False

    def __post_init__(self):
        super().__post_init__()
        positive_int("hits", self.hits)
        if not isinstance(self.fused, bool):
            raise TypeError(f"fused must be True or False, got fused={self.fused!r}")
        if self.rule.reports == "changed" and self.hits != 1:
            # the blocked heat bath draws once per site; the masked one would count every redraw
            raise ValueError(f"a heat-bath hit draws the site from its exact conditional distribution, so a "
                             f"second hit is only an equivalent redraw: hits must be 1, got hits={self.hits}")
        # integer thresholds are built once per kernel and dimension, not per half sweep
        object.__setattr__(self, "_tables", {})

    def init(self, x: Any):
        state = self._init(x)
        if x.shape[1] % 2 or x.shape[1] < 2:
            raise ValueError(f"checkerboard updates need an even L >= 2, got L={x.shape[1]}")
        if self.fused:
            xp = array_namespace(x)
            fused.kernel_for("checkerboard", x)
            fused.checkerboard_plan(self.theory, self.rule, x, self.hits, _work_dtype(xp, x, self.dtype))
            fused.check_philox_range(x, 2)
        return state

    def _thresholds(self, xp, dim, dev):
        key = (xp.__name__, str(dev), dim)
        if key not in self._tables:  # integer thresholds of the rule's blocked update, if it has them
            tables = self.rule.block_tables(self.theory, dim)
            self._tables[key] = None if tables is None else xp.asarray(tables, dtype=xp.int32, device=dev)
        return self._tables[key]

    def step(self, state, rng):
        x = state.config
        xp = array_namespace(x)
        dtype = _work_dtype(xp, x, self.dtype)
        ctx = dict(self.rule.prepare(self.theory, x, dtype), dtype=dtype)
        counts = None
        if self.fused:
            x, counts = self._fused_step(x, rng, xp, dtype)
        elif self.rule.blocked(self.theory):
            board = Checkerboard(x.ndim - 1)
            thresholds = self._thresholds(xp, board.dim, device_of(x))
            if thresholds is not None:
                ctx["thresholds"] = thresholds
            # work in the blocked layout so random numbers and arithmetic touch only the
            # V/2 sites being updated (no masks over the whole lattice)
            halves = list(board.split(x))
            for p in (0, 1):
                draws = self.rule.block_draws(rng, tuple(halves[p].shape), dtype, self.hits)
                halves[p], n = self.rule.block_update(self.theory, halves[p], halves[1 - p], p, board, draws, ctx)
                counts = n if counts is None else counts + n
            x = board.merge(*halves)
        else:
            even = parity(xp, x.shape[1], x.ndim - 1, device_of(x)) == 0
            for mask in (even, ~even):
                for _ in range(self.hits):
                    x, n = masked_metropolis(self.rule, self.theory, x, mask, rng, dtype, ctx)
                    counts = n if counts is None else counts + n
        hits = self.hits if self.rule.reports == "acceptance" else 1
        return _state(x, self._spins(x)), _info(self.rule, counts, volume(x) * hits)

    def _fused_step(self, x, rng, xp, dtype):
        plan = fused.checkerboard_plan(self.theory, self.rule, x, self.hits, dtype)
        kernel = fused.kernel_for("checkerboard", x)
        if fused.uses_philox(rng):
            x, counts = kernel(x, plan, fused.stream_plan(rng, plan["draws_per_sweep"]))
            fused.advance_stream(rng, plan["draws_per_sweep"])
        else:
            # the generic path's own draws, in its order (parity 0's, then parity 1's), as the
            # plan asks for them (a phi^4 kernel scales the normals itself: one pass fewer)
            d, L = x.ndim - 1, x.shape[1]
            half = (x.shape[0], 2 ** (d - 1)) + (L // 2,) * d
            draws = [self.rule.block_draws(rng, half, dtype, self.hits, **plan["draw_args"]) for _ in (0, 1)]
            x, counts = kernel(x, plan, {"stream": "native", "draws": draws})
        return x, xp.astype(counts, dtype)


@dataclass(frozen=True)
class SublatticeMetropolis(_Loop):
    """The stride-s sublattices in turn (s**d of them per sweep), every site of one at once.

    ``stride`` defaults to the rule's (``receptive_field + 1`` for a surrogate). A
    site's update then changes no other site's local difference within its
    sublattice, so the sweep equals a sequential scan of each sublattice in any
    order (a test checks this update by update).
    """

    stride: int | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.stride is None:
            object.__setattr__(self, "stride", int(getattr(self.rule, "stride", 2)))
        positive_int("stride", self.stride)

    def init(self, x: Any):
        state = self._init(x)
        L = x.shape[1]
        if L % self.stride or L < 2 * self.stride:
            raise ValueError(f"stride-{self.stride} sublattices need L to be a multiple of the stride with at "
                             f"least two sublattice sites per axis; got L={L}")
        return state

    def step(self, state, rng):
        x = state.config
        xp = array_namespace(x)
        dtype = _work_dtype(xp, x, self.dtype)
        ctx = dict(self.rule.prepare(self.theory, x, dtype), dtype=dtype)
        counts = xp.zeros(x.shape[0], dtype=dtype, device=device_of(x))
        for mask in sublattice_masks(xp, x.shape[1], x.ndim - 1, self.stride, device_of(x)):
            x, n = masked_metropolis(self.rule, self.theory, x, mask, rng, dtype, ctx)
            counts = counts + n
        return _state(x, self._spins(x)), _info(self.rule, counts, volume(x))


def surrogate_metropolis(theory, provider, step_size: float = 1.0, mode: str = "parallel",
                         penalty: bool = False, updates: int | None = None):
    """Surrogate Metropolis (Eq. 5-6 of [PEM]); ``penalty=True`` gives PEM (Eq. 10 of [PEM]).

    mode : "sequential" - the paper's algorithm: a random site per update, one provider
        call per update; "parallel" - the stride-(r+1) sublattices, one call per sublattice.
    """
    choice("mode", mode, ("parallel", "sequential"))
    rule = SurrogateShift(provider, step_size, penalty)
    if mode == "sequential":
        return RandomSiteMetropolis(theory, rule, updates=updates)
    if updates is not None:
        raise ValueError(f"updates applies to mode='sequential', got updates={updates!r} with mode='parallel'")
    return SublatticeMetropolis(theory, rule)


def learned_energy_metropolis(theory, mode: str = "parallel", updates: int | None = None):
    """Metropolis with a learned energy (Sec. 6 of [DCL]) on a :class:`~portable_lattice.theories.LearnedEnergy`.

    mode : "sequential" - the paper's: a random site per update, its energy change from the
        provider's few tiles; "parallel" - the stride-``theory.stride`` sublattices (a local
        energy only: every site of a sublattice at once, one provider call per sublattice).
    """
    choice("mode", mode, ("parallel", "sequential"))
    rule = EnergyModelUpdate()
    if mode == "sequential":
        return RandomSiteMetropolis(theory, rule, updates=updates)
    if updates is not None:
        raise ValueError(f"updates applies to mode='sequential', got updates={updates!r} with mode='parallel'")
    if getattr(theory, "stride", None) is None:
        raise ValueError("mode='parallel' needs a local energy model (with a reach); this one is global: "
                         "use mode='sequential'")
    return SublatticeMetropolis(theory, rule, stride=theory.stride)


def PEM(theory, provider, step_size: float = 1.0, mode: str = "parallel"):
    """The Penalty Ensemble Method (Eq. 10 of [PEM]): surrogate Metropolis with the Ceperley-Dewing penalty."""
    return surrogate_metropolis(theory, provider, step_size, mode, penalty=True)
