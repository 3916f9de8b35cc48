r"""Samplers for the O(n) model: unit n-vector spins (:class:`~portable_lattice.theories.ON`).

The scalar Metropolis loops (:mod:`.metropolis`) work on one scalar per site. Here a site
holds an n-vector along axis 1 of a ``(chains, n, L, ..., L)`` array. The checkerboard
folds the components into the leading axis (a free reshape) and works in the scalar loops'
blocked layout (:class:`~portable_lattice.lattice.Checkerboard`), so its draws and
arithmetic touch only the V/2 sites of the parity being updated; the random-site kernel
gathers a site's whole vector (a row of a ``(chains * V, n)`` view) at once.

* :class:`VectorCheckerboard` - every site of one parity at once (they share no bond), both
  parities per step. ``update`` picks the move: ``"metropolis"`` (s' = normalise(s + step_size g),
  g ~ N(0, I_n), a symmetric proposal), ``"overrelax"`` (reflection about the local field:
  energy-preserving, always accepted), ``"heatbath"`` (an exact draw from exp(beta s . f) on
  S^{n-1}; n = 2: von Mises by Best & Fisher's rejection, n = 3: inverse CDF of cos theta).
* :class:`VectorRandomSite` - V single-site Metropolis updates per step, each at a random
  site per chain.
* :class:`VectorSwendsenWang`, :class:`VectorWolff` - Wolff's embedding (Wolff 1989): the
  projections sigma_x = s_x . r on a random unit vector r are Ising spins whose FK clusters
  (bond probabilities from :meth:`ON.embedding_bond_probability`) are reflected,
  s_x -> s_x - 2 sigma_x r.

The kernels ask the theory for everything that depends on the couplings: ``local_field``
(J sum_nb s_nb + h e_0), ``embedding_bond_probability``; the Boltzmann factor of a local move
is exp(beta (s' - s) . f), the theory's ``log_weight_change``. Every kernel returns unit
vectors renormalised after the move, so rounding cannot drift |s| away from 1 over a long run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import array_api_extra as xpx
from array_api_compat import array_namespace, device as device_of

from .._checks import positive_float
from ..lattice import Checkerboard, neighbour_table, shift, volume
from ..philox import KERNEL_CONSTANTS, is_philox
from ..theories.on import VECTOR, normalise, site_volume
from .base import FieldState, Info, check_local_update, count_per_chain, log_uniform
from . import fused
from .clusters import cluster_ids

__all__ = ["VectorCheckerboard", "VectorRandomSite", "VectorSwendsenWang", "VectorWolff", "UPDATES"]

#: the moves of :class:`VectorCheckerboard`
UPDATES = ("metropolis", "overrelax", "heatbath")

#: below this concentration a heat-bath draw is uniform on the sphere (the density differs
#: from uniform by a factor exp(+-kappa) = 1 +- 1e-12, far below any statistical resolution)
_KAPPA_MIN = 1e-12


def _check_vector_theory(theory: Any) -> None:
    if getattr(theory, "family", None) is not VECTOR:
        raise TypeError(f"theory must be an O(n) model (an ON, family 'vector'), got {type(theory).__name__}")


def _unfold(x: Any, chains: int, n: int) -> Any:
    """(chains * n, ...) -> (chains, n, ...): the component axis back after axis 0."""
    return array_namespace(x).reshape(x, (chains, n) + tuple(x.shape[1:]))


def _lattice(s: Any) -> tuple:
    """(chains, 1, L, ..., L): one scalar per site, broadcasting against the components."""
    return (s.shape[0], 1) + tuple(s.shape[2:])


def _dot(a: Any, b: Any) -> Any:
    """a . b per site, keeping the component axis: (chains, 1, L, ..., L)."""
    return array_namespace(a).sum(a * b, axis=1, keepdims=True)


def _field_direction(f: Any) -> tuple[Any, Any]:
    """(|f|, f / |f|) per site; where f = 0 the direction is e_0 (any direction serves: the
    draw there is uniform)."""
    xp = array_namespace(f)
    norm = xp.sqrt(_dot(f, f))
    n = f.shape[1]
    e0 = xp.reshape(xp.asarray([1.0] + [0.0] * (n - 1), dtype=f.dtype, device=device_of(f)),
                    (1, n) + (1,) * (f.ndim - 2))
    positive = norm > 0
    return norm, xp.where(positive, f / xp.where(positive, norm, 1.0), e0)


def heisenberg_cos(u: Any, a: Any) -> tuple[Any, Any]:
    """cos(theta) and sin(theta) >= 0 of a draw from exp(a cos theta) on S^2, by the inverse CDF.

    ``u`` uniform on [0, 1), ``a >= 0``. 1 - cos theta = -log1p(u expm1(-2a)) / a, stable for
    small a (it tends to 2u: cos theta uniform on [-1, 1]) and for large a (u expm1(-2a) > -1
    since u < 1); sin theta = sqrt(t (2 - t)) with t = 1 - cos theta, without cancellation.
    """
    xp = array_namespace(u, a)
    small = a < _KAPPA_MIN
    a_safe = xp.where(small, 1.0, a)
    t = xp.where(small, 2.0 * u, -xp.log1p(u * xp.expm1(-2.0 * a_safe)) / a_safe)
    t = xp.clip(t, 0.0, 2.0)
    return 1.0 - t, xp.sqrt(t * (2.0 - t))


def von_mises(kappa: Any, active: Any, rng: Any) -> tuple[Any, Any]:
    """cos(theta) and sin(theta) of theta ~ von Mises(0, kappa) at every ``active`` site.

    Best & Fisher's (1979) wrapped-Cauchy rejection, iterated with masks until every active
    site has accepted (the acceptance is at least ~0.66 per round for every kappa). The
    algorithm's r = (1 + rho^2) / (2 rho) enters only through r - 1, computed without the
    cancellations of the textbook form (small kappa: r ~ 1 / kappa; large kappa: r -> 1), and
    cos / sin theta are formed from 1 +- z with z = cos(pi u1) so no arccos is needed. Below
    kappa = 1e-12 the angle is uniform. Returns (cos, sin); (1, 0) where not active.
    """
    xp = array_namespace(kappa)
    dtype = kappa.dtype
    shape = tuple(kappa.shape)
    small = kappa < _KAPPA_MIN
    k = xp.where(small, 1.0, kappa)
    s4 = xp.sqrt(1.0 + 4.0 * k * k)
    tau = 1.0 + s4
    q = xp.sqrt(2.0 * tau)
    rho = 2.0 * k / (tau + q)                              # = (tau - q) / (2 kappa)
    one_minus_rho = (1.0 + 1.0 / (s4 + 2.0 * k) + q) / (tau + q)
    rm1 = one_minus_rho * one_minus_rho / (2.0 * rho)      # r - 1
    g2 = rm1 * (2.0 + rm1)                                 # r^2 - 1
    g = xp.sqrt(g2)
    pending = active
    cos = xp.ones(shape, dtype=dtype, device=device_of(kappa))  # theta = 0 where not active
    sin = xp.zeros(shape, dtype=dtype, device=device_of(kappa))
    while True:
        u1 = rng.uniform(shape, dtype)
        log_u2 = log_uniform(rng, shape, dtype)
        half = (0.5 * math.pi) * u1
        one_plus_z = 2.0 * xp.cos(half) ** 2               # 1 + z, z = cos(pi u1)
        sin_pi_u1 = xp.sin(math.pi * u1)                   # sqrt(1 - z^2) >= 0
        z = xp.cos(math.pi * u1)
        D = one_plus_z + rm1                               # r + z
        c = k * g2 / D                                     # kappa (r - f)
        ok = (c * (2.0 - c) > xp.exp(log_u2)) | (xp.log(c) - log_u2 + 1.0 - c >= 0.0)
        ok = ok | small
        take = pending & ok
        cos = xp.where(take, xp.where(small, z, (one_plus_z + rm1 * z) / D), cos)   # f = (1 + r z) / (r + z)
        sin = xp.where(take, xp.where(small, sin_pi_u1, g * sin_pi_u1 / D), sin)   # sqrt(1 - f^2)
        pending = pending & ~ok
        if not bool(xp.any(pending)):
            break
    flip = rng.uniform(shape, dtype) < 0.5
    return cos, xp.where(flip, -sin, sin)


@dataclass(frozen=True)
class VectorCheckerboard:
    """Checkerboard sweep of the O(n) model: every site of one parity at once, then the other.

    Parameters
    ----------
    theory : ON
    update : {"metropolis", "overrelax", "heatbath"}
        The move at each site, given the local field f (computed from the other parity):
        Metropolis with s' = normalise(s + step_size g), g ~ N(0, I_n), accepted with
        min(1, exp(beta (s' - s) . f)) (``Info.acceptance``); overrelaxation
        s' = 2 (s . f) f / |f|^2 - s (``Info.changed``: the fraction of sites with f != 0);
        heat bath, an exact draw from exp(beta s . f) for n = 2 and 3 (``Info.changed`` = 1).
    step_size : float
        Metropolis proposal width (positive). (Not ``step``: that name is the kernel's
        ``step(state, rng)`` method, which a dataclass field would shadow.)
    hits : int
        Metropolis proposals per site before the other parity; 1 for the other updates (a
        second reflection undoes the first; a second heat-bath draw is an equivalent redraw).
    overrelax : int
        Overrelaxation sweeps (both parities) after each Metropolis or heat-bath sweep, as one
        step: the usual way to move along the energy surface at no rejection cost. The step's
        Info is the local update's.
    fused : bool
        Metropolis only: each hit's proposals, tests and writes in one compiled pass
        (``fused_vector_metropolis``: Numba on NumPy arrays and CPU tensors), bit-identical to
        the generic hit; the random numbers are the generic path's own draws, on every stream.
        Asked for where no backend has it, a ValueError from :meth:`init`.
    """

    theory: Any
    update: str = "metropolis"
    step_size: float = 1.0
    hits: int = 1
    overrelax: int = 0
    fused: bool = False

    def __post_init__(self):
        _check_vector_theory(self.theory)
        check_local_update(self, UPDATES)
        if not isinstance(self.fused, bool):
            raise TypeError(f"fused must be True or False, got fused={self.fused!r}")
        if self.fused and self.update != "metropolis":
            raise ValueError(f"fused=True is the Metropolis update's kernel; update={self.update!r} runs the "
                             f"generic path only")
        if self.update == "heatbath" and self.theory.n not in (2, 3):
            raise ValueError(f"the O(n) heat bath is implemented for n = 2, 3, got n={self.theory.n}; "
                             f"use update='metropolis' (with 'overrelax' in a Cycle)")

    def init(self, x: Any) -> FieldState:
        self.theory.check_field(x)
        L = x.shape[2]
        if L % 2 or L < 2:
            raise ValueError(f"checkerboard updates need an even L >= 2, got L={L}")
        if self.fused:
            fused.kernel_for("vector_metropolis", x)
        return FieldState(phi=x)

    def step(self, state: FieldState, rng: Any) -> tuple[FieldState, Info]:
        s = state.phi
        xp = array_namespace(s)
        chains, n = s.shape[0], s.shape[1]
        board = Checkerboard(s.ndim - 2)
        # the blocked layout: the components fold into the leading axis (a free reshape, axis 1
        # follows axis 0), so the scalar checkerboard's split, neighbour sum and merge serve
        # unchanged, and every draw and every operation touches only the V/2 sites it updates
        halves = [_unfold(h, chains, n) for h in board.split(xp.reshape(s, (chains * n,) + tuple(s.shape[2:])))]
        counts = None
        moves = [self.update] + ["overrelax"] * self.overrelax
        for k, move in enumerate(moves):
            for p in (0, 1):
                other = halves[1 - p]
                if move == "metropolis" and self.fused:  # the kernel sums the neighbours itself
                    for _ in range(self.hits):
                        c = self._fused_metropolis(halves[p], other, rng, board, p)
                        counts = c if counts is None else counts + c
                    continue
                nb = board.neighbour_sum(xp.reshape(other, (chains * n,) + tuple(other.shape[2:])), p)
                f = self.theory.field_from_neighbours(_unfold(nb, chains, n))
                if move == "metropolis":
                    for _ in range(self.hits):
                        halves[p], c = self._metropolis(halves[p], f, rng)
                        counts = c if counts is None else counts + c
                elif move == "overrelax":
                    halves[p], c = self._overrelax(halves[p], f, is_philox(rng))
                    if k == 0:  # the step's Info is the local update's
                        counts = c if counts is None else counts + c
                else:
                    halves[p] = self._heatbath(halves[p], f, rng)
        flat = board.merge(*(xp.reshape(h, (chains * n,) + tuple(h.shape[2:])) for h in halves))
        s = xp.reshape(flat, tuple(s.shape))
        V = site_volume(s)
        if self.update == "metropolis":
            return FieldState(phi=s), Info(acceptance=counts / (V * self.hits))
        if self.update == "overrelax":
            return FieldState(phi=s), Info(changed=counts / V)
        return FieldState(phi=s), Info(changed=xp.ones(s.shape[0], dtype=xp.float64, device=device_of(s)))

    def _metropolis(self, s, f, rng):
        xp = array_namespace(s)
        t = normalise(s + self.step_size * rng.normal(tuple(s.shape), s.dtype), exact=is_philox(rng))
        log_u = log_uniform(rng, _lattice(s), s.dtype)
        acc = log_u < xp.expand_dims(self.theory.log_weight_change(t, s, f), axis=1)  # NaN is rejected
        return xp.where(acc, t, s), count_per_chain(acc, xp.float64)

    def _fused_metropolis(self, s, other, rng, board, p):
        """The generic hit's draws (same calls, same order), then the kernel: ``s`` in place."""
        xp = array_namespace(s)
        g = rng.normal(tuple(s.shape), s.dtype)
        log_u = log_uniform(rng, _lattice(s), s.dtype)
        blocks, steps = board.neighbour_blocks(p)
        # the Philox stream's float64 renormalisation is the library's own square root: its
        # constants go with the plan (the kernels read the 1/sqrt cubic from them)
        plan = dict(self.theory.field_constants(), step_size=self.step_size, nbr_block=blocks, nbr_step=steps,
                    exact=is_philox(rng) and s.dtype == xp.float64, constants=KERNEL_CONSTANTS)
        return xp.astype(fused.kernel_for("vector_metropolis", s)(s, other, g, log_u, plan), xp.float64)

    def _overrelax(self, s, f, exact):
        xp = array_namespace(s)
        f2 = _dot(f, f)
        moved = f2 > 0
        t = normalise(2.0 * (_dot(s, f) / xp.where(moved, f2, 1.0)) * f - s, exact)
        return xp.where(moved, t, s), count_per_chain(moved, xp.float64)

    def _heatbath(self, s, f, rng):
        xp = array_namespace(s)
        norm, fhat = _field_direction(f)
        a = self.theory.concentration(norm)
        if self.theory.n == 2:
            cos, sin = von_mises(a, xp.ones(tuple(a.shape), dtype=xp.bool, device=device_of(a)), rng)
            perp = xp.stack([-fhat[:, 1, ...], fhat[:, 0, ...]], axis=1)  # fhat turned by +90 degrees
        else:
            cos, sin = heisenberg_cos(rng.uniform(_lattice(s), s.dtype), a)
            # a uniform direction perpendicular to fhat (a uniform azimuth): a Gaussian vector
            # with its fhat component removed, normalised
            g = rng.normal(tuple(s.shape), s.dtype)
            perp = normalise(g - _dot(g, fhat) * fhat)
        return normalise(cos * fhat + sin * perp)


@dataclass(frozen=True)
class VectorRandomSite:
    """Sequential random-site Metropolis for the O(n) model: V single-site updates per step.

    Each chain picks its own random site per update; the proposal and test are those of
    :class:`VectorCheckerboard`'s Metropolis. The configuration is worked on as rows of a
    ``(chains * V, n)`` array, so a site's vector and its 2d neighbours are gathered with one
    ``take`` each and the new vector is written with array-api-extra's ``at(...).set`` (numpy,
    torch, cupy; ``inplace=None`` picks it where the backend allows, ``inplace=False`` forces
    the generic one-hot ``where``, O(V) per update, which array_api_strict always uses).
    The local field of the site comes from ``theory.local_field`` on a three-site ring
    [sum of the neighbours, the site, 0], whose middle site has exactly those neighbours.
    """

    theory: Any
    step_size: float = 1.0
    inplace: bool | None = None

    def __post_init__(self):
        _check_vector_theory(self.theory)
        positive_float("step_size", self.step_size)
        if self.inplace is not None and not isinstance(self.inplace, bool):
            raise TypeError(f"inplace must be True, False or None, got inplace={self.inplace!r}")

    def init(self, x: Any) -> FieldState:
        self.theory.check_field(x)
        if x.shape[2] < 2:
            raise ValueError(f"random-site updates need L >= 2 (at L = 1 a site is its own neighbour), "
                             f"got L={x.shape[2]}")
        return FieldState(phi=x)

    def step(self, state: FieldState, rng: Any) -> tuple[FieldState, Info]:
        s = state.phi
        xp = array_namespace(s)
        dev = device_of(s)
        chains, n, L, d = s.shape[0], s.shape[1], s.shape[2], s.ndim - 2
        V = site_volume(s)
        inplace = self.inplace
        if inplace is None:
            inplace = not xp.__name__.startswith("array_api_strict")
        # every random number of the step at once: sites, proposal directions, log u
        sites = rng.integers(V, (V, chains))
        noise = self.step_size * rng.normal((V, chains, n), s.dtype)
        log_u = log_uniform(rng, (V, chains), s.dtype)
        offset = xp.arange(chains, device=dev) * V
        rows = sites + xp.reshape(offset, (1, chains))
        nbr = xp.take(neighbour_table(xp, L, d, dev), xp.reshape(sites, (-1,)), axis=0)
        nbr = xp.reshape(nbr, (V, chains, 2 * d)) + xp.reshape(offset, (1, chains, 1))
        # (chains, n, L..) -> rows (chains * V, n): a site's vector is one row
        perm = (0,) + tuple(range(2, d + 2)) + (1,)
        work = xp.reshape(xp.permute_dims(s, perm), (chains * V, n))
        work = xp.asarray(work, copy=True)  # never write into the caller's array
        site_ids = xp.reshape(xp.arange(V, device=dev), (1, V, 1))
        zeros = xp.zeros((chains, n), dtype=s.dtype, device=dev)
        accepted = xp.zeros(chains, dtype=xp.float64, device=dev)
        for t in range(V):
            idx = rows[t, :]
            value = xp.take(work, idx, axis=0)                                            # (chains, n)
            nb = xp.reshape(xp.take(work, xp.reshape(nbr[t, ...], (-1,)), axis=0), (chains, 2 * d, n))
            ring = xp.stack([xp.sum(nb, axis=1), value, zeros], axis=2)                   # (chains, n, 3)
            f = self.theory.local_field(ring)[:, :, 1]
            new = normalise(value + noise[t, ...], exact=is_philox(rng))
            acc = log_u[t, :] < self.theory.log_weight_change(new, value, f)
            new = xp.where(acc[:, None], new, value)
            if inplace:
                work = xpx.at(work, idx).set(new, copy=False)
            else:
                hit = site_ids == xp.reshape(sites[t, :], (chains, 1, 1))
                grid = xp.where(hit, xp.reshape(new, (chains, 1, n)), xp.reshape(work, (chains, V, n)))
                work = xp.reshape(grid, (chains * V, n))
            accepted = accepted + xp.astype(acc, xp.float64)
        back = xp.reshape(work, (chains,) + (L,) * d + (n,))
        inverse = (0, d + 1) + tuple(range(1, d + 1))
        return FieldState(phi=xp.permute_dims(back, inverse)), Info(acceptance=accepted / V)


@dataclass(frozen=True)
class _Embedding:
    """Wolff's embedding: a random unit vector r per chain, Ising spins sigma_x = s_x . r, FK
    bonds from the theory's embedding probabilities, cluster ids."""

    theory: Any

    def __post_init__(self):
        _check_vector_theory(self.theory)
        self.theory.check_embedding()

    def init(self, x: Any) -> FieldState:
        self.theory.check_field(x)
        return FieldState(phi=x)

    def _clusters(self, s, rng):
        xp = array_namespace(s)
        chains, n = s.shape[0], s.shape[1]
        r = xp.reshape(normalise(rng.normal((chains, n), s.dtype)), (chains, n) + (1,) * (s.ndim - 2))
        sigma = xp.sum(s * r, axis=1)                                               # (chains, L, ..., L)
        bonds = []
        for mu in range(s.ndim - 2):
            p = self.theory.embedding_bond_probability(sigma, shift(sigma, mu, 1))
            bonds.append(rng.uniform(tuple(sigma.shape), s.dtype) < p)
        ids, n_clusters = cluster_ids(bonds)
        return r, sigma, ids, n_clusters

    @staticmethod
    def _reflect(s, r, sigma, flip):
        xp = array_namespace(s)
        return normalise(s - 2.0 * xp.where(flip, sigma, 0.0)[:, None, ...] * r)


@dataclass(frozen=True)
class VectorSwendsenWang(_Embedding):
    """Swendsen-Wang by embedding: every cluster of the embedded Ising spins is reflected
    about the plane normal to r with probability 1/2 (``Info.changed``: the fraction of sites
    reflected)."""

    def step(self, state: FieldState, rng: Any) -> tuple[FieldState, Info]:
        s = state.phi
        xp = array_namespace(s)
        r, sigma, ids, n_clusters = self._clusters(s, rng)
        flip = xp.reshape(xp.take(rng.uniform((n_clusters,), s.dtype) < 0.5, ids), tuple(sigma.shape))
        changed = count_per_chain(flip, xp.float64) / volume(sigma)
        return FieldState(phi=self._reflect(s, r, sigma, flip)), Info(changed=changed)


@dataclass(frozen=True)
class VectorWolff(_Embedding):
    """Wolff's single-cluster update: reflect the embedded cluster of a random seed site per
    chain (``Info.cluster_size``: its size as a fraction of V)."""

    def step(self, state: FieldState, rng: Any) -> tuple[FieldState, Info]:
        s = state.phi
        xp = array_namespace(s)
        chains = s.shape[0]
        V = site_volume(s)
        r, sigma, ids, _ = self._clusters(s, rng)
        seed = rng.integers(V, (chains,)) + xp.arange(chains, dtype=xp.int64, device=device_of(s)) * V
        seed_id = xp.reshape(xp.take(ids, seed), (chains,) + (1,) * (sigma.ndim - 1))
        flip = xp.reshape(ids, tuple(sigma.shape)) == seed_id
        size = count_per_chain(flip, xp.float64) / V
        return FieldState(phi=self._reflect(s, r, sigma, flip)), Info(cluster_size=size)
