"""Cluster algorithms: Swendsen-Wang (Ising, Potts) and Wolff (Ising), periodic boundaries.

Bonds between equal neighbouring spins are activated with probability
p = 1 - exp(-2 beta J) (Ising) or 1 - exp(-beta J) (Potts). Clusters are the
connected components of the active bonds (Fortuin-Kasteleyn). Swendsen-Wang
gives every cluster a new random state. Wolff flips the one cluster that holds
a random seed site: the cluster of the seed under the same bond percolation
has exactly the distribution of Wolff's grown cluster, so labelling all
clusters and flipping the seed's one is Wolff's algorithm, vectorised over
chains.

Labelling: :func:`cluster_labels` dispatches to a backend's native
implementation (scipy.sparse.csgraph on NumPy, cupyx on CuPy) and otherwise
runs :func:`label_propagation`, a generic Array API algorithm. Both return
canonical labels, the smallest flat index (over chains x sites) in each
cluster, so their partitions can be compared exactly. The samplers use
:func:`cluster_ids`, compact ids in the same order, so that they draw one
random number per cluster rather than per site.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace, device as device_of

from .._delegation import implementation
from ..lattice import shift, volume
from ..theories import family_of
from .base import Info, SpinState, check_theory_field

__all__ = ["label_propagation", "cluster_labels", "cluster_ids", "swendsen_wang_bonds", "SwendsenWang", "Wolff"]


def label_propagation(bonds: list) -> Any:
    """Connected components of a periodic lattice graph, generic Array API.

    Parameters
    ----------
    bonds : list of d boolean arrays (chains, L, ..., L)
        ``bonds[mu][x]`` is the bond between x and x + e_mu.

    Returns
    -------
    int64 array (chains, L, ..., L): each site's cluster label, the smallest
    flat index in its cluster.

    Notes
    -----
    Min-label propagation along active bonds, alternated with pointer jumping
    (label <- label[label]) so labels travel distances that double per round.
    Labels only decrease and always name a site of the same cluster, and the
    smallest site of a cluster keeps its own index: the fixed point is the
    canonical labelling.
    """
    xp = array_namespace(bonds[0])
    shape = tuple(bonds[0].shape)
    n = shape[0] * volume(bonds[0])
    labels = xp.reshape(xp.arange(n, dtype=xp.int64, device=device_of(bonds[0])), shape)
    backward = [shift(b, mu, -1) for mu, b in enumerate(bonds)]  # bond between x - e_mu and x
    while True:
        new = labels
        for mu in range(len(bonds)):
            new = xp.where(bonds[mu], xp.minimum(new, shift(new, mu, 1)), new)
            new = xp.where(backward[mu], xp.minimum(new, shift(new, mu, -1)), new)
        flat = xp.reshape(new, (n,))
        flat = xp.take(flat, flat)
        flat = xp.take(flat, flat)
        new = xp.reshape(flat, shape)
        if bool(xp.all(new == labels)):
            return new
        labels = new


def cluster_labels(bonds: list) -> Any:
    """Canonical cluster labels (see :func:`label_propagation`), native where the backend has it."""
    xp = array_namespace(bonds[0])
    return implementation("cluster_labels", xp, label_propagation)(bonds)


def _ids_from_labels(bonds: list) -> tuple[Any, int]:
    """Compact ids from canonical labels: a cluster's rank among the cluster roots."""
    xp = array_namespace(bonds[0])
    labels = cluster_labels(bonds)
    n = labels.shape[0] * volume(labels)
    flat = xp.reshape(labels, (n,))
    root = flat == xp.arange(n, dtype=flat.dtype, device=device_of(flat))
    rank = xp.cumulative_sum(xp.astype(root, xp.int64)) - 1
    return xp.take(rank, flat), int(rank[-1]) + 1


def cluster_ids(bonds: list) -> tuple[Any, int]:
    """Compact cluster ids: (ids, n_clusters), ids a flat integer array over chains x sites.

    Clusters are numbered 0 .. n_clusters - 1 in the order of their smallest
    flat index, so every backend numbers a partition the same way (and draws
    the same per-cluster random numbers). Native where the backend has it
    (SciPy's connected components already number them so); otherwise ranked
    from :func:`cluster_labels`.
    """
    xp = array_namespace(bonds[0])
    return implementation("cluster_ids", xp, _ids_from_labels)(bonds)


def swendsen_wang_bonds(s: Any, p: float, rng) -> list:
    """Active FK bonds: equal neighbours, each kept with probability p."""
    xp = array_namespace(s)
    shape = tuple(s.shape)
    out = []
    for mu in range(s.ndim - 1):
        u = rng.uniform(shape, xp.float64)
        out.append((s == shift(s, mu, 1)) & (u < p))
    return out


def _check_cluster_theory(theory):
    if not family_of(theory).discrete:
        raise ValueError(f"cluster updates are implemented for the Ising and Potts models, got {type(theory).__name__}")
    theory.bond_probability()  # the theory says whether it has FK bonds (and why not)


def _flips(theory) -> bool:
    """+-1 spins: a cluster is flipped (Ising); q states: it gets a random state (Potts, q = 2 too)."""
    return tuple(theory.state_values()) == (-1, 1)


@dataclass(frozen=True)
class _ClusterKernel:
    """What Swendsen-Wang and Wolff share: a ferromagnetic theory at zero field."""

    theory: Any

    def __post_init__(self):
        _check_cluster_theory(self.theory)

    def init(self, spins: Any) -> SpinState:
        check_theory_field(self.theory, spins)
        return SpinState(spins=spins)


@dataclass(frozen=True)
class SwendsenWang(_ClusterKernel):
    """Swendsen-Wang sweep: FK bonds, clusters, a new random state per cluster."""

    def step(self, state: SpinState, rng) -> tuple[SpinState, Info]:
        s = state.spins
        xp = array_namespace(s)
        shape = tuple(s.shape)
        ids, n_clusters = cluster_ids(swendsen_wang_bonds(s, self.theory.bond_probability(), rng))
        # one random number per cluster, not per site
        if _flips(self.theory):
            flip = xp.take(rng.uniform((n_clusters,), xp.float64) < 0.5, ids)
            new = s * (1 - 2 * xp.reshape(xp.astype(flip, s.dtype), shape))  # int8 flip, no where()
        else:
            states = xp.astype(rng.integers(self.theory.q, (n_clusters,)), s.dtype)
            new = xp.reshape(xp.take(states, ids), shape)
        changed = xp.astype(xp.count_nonzero(new != s, axis=tuple(range(1, s.ndim))), xp.float64)
        return SpinState(spins=new), Info(changed=changed / volume(s))


@dataclass(frozen=True)
class Wolff(_ClusterKernel):
    """Wolff single-cluster update (Ising): flip the FK cluster of a random seed site per chain.

    ``Info.cluster_size`` is the flipped cluster's size as a fraction of V.
    """

    def __post_init__(self):
        super().__post_init__()
        if not _flips(self.theory):
            raise ValueError(f"Wolff is implemented for the Ising model, got {type(self.theory).__name__}")

    def step(self, state: SpinState, rng) -> tuple[SpinState, Info]:
        s = state.spins
        xp = array_namespace(s)
        shape = tuple(s.shape)
        chains = shape[0]
        V = volume(s)
        ids, _ = cluster_ids(swendsen_wang_bonds(s, self.theory.bond_probability(), rng))
        seed = rng.integers(V, (chains,)) + xp.arange(chains, dtype=xp.int64, device=device_of(s)) * V
        seed_id = xp.take(ids, seed)
        flip = xp.reshape(ids, shape) == xp.reshape(seed_id, (chains,) + (1,) * (s.ndim - 1))
        size = xp.sum(xp.astype(flip, xp.float64), axis=tuple(range(1, s.ndim)))
        return SpinState(spins=s * (1 - 2 * xp.astype(flip, s.dtype))), Info(cluster_size=size / V)
