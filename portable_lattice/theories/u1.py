r"""Compact U(1) lattice gauge theory with the Wilson action.

Links U_mu(x) = exp(i theta_mu(x)) on the bonds of the hypercubic torus (d = 2..4), the
plaquette angle of the plane mu < nu at x

    theta_P = theta_mu(x) + theta_nu(x + e_mu) - theta_mu(x + e_nu) - theta_nu(x),

and the Wilson action S = -beta sum_P cos theta_P over the V d (d - 1) / 2 plaquettes
(Boltzmann weight exp(-S), Haar measure d theta / 2 pi on every link). The conventions are
those of the exact 2D results (:mod:`portable_lattice.exact.u1_2d`).

Configurations are real arrays of link angles ``(chains, d, L, ..., L)``: ``theta[:, mu]`` is
the link from x to x + e_mu, so the direction axis comes right after the chain axis (as the
component axis of the O(n) model) and each direction is a contiguous lattice whose stencils are
rolls over the axes 2 .. d + 1. Angles are not reduced: every quantity is 2 pi periodic in
each link.

Staples. The links of the plaquettes through theta_mu(x) other than theta_mu(x) itself form,
for each nu != mu, two detours from x to x + e_mu (the parallel transporters around the upper
and the lower plaquette):

    a_up(x)   = theta_nu(x) + theta_mu(x + e_nu) - theta_nu(x + e_mu),
    a_down(x) = -theta_nu(x - e_nu) + theta_mu(x - e_nu) + theta_nu(x - e_nu + e_mu).

Each of those plaquettes is +-(theta_mu(x) - a), so its cosine is cos(theta_mu(x) - a). With the
staple sum A = R exp(i phi) = sum_{nu != mu} (exp(i a_up) + exp(i a_down)),

    S_local(theta_mu(x)) = -beta Re(exp(i theta_mu(x)) conj(A)) = -beta R cos(theta_mu(x) - phi),

the part of S that depends on the link: the link prefers to align with the staple sum's angle.
The family (:data:`GAUGE`) says what a run reports; the samplers are in
:mod:`portable_lattice.samplers.gauge` (and the generic :class:`~portable_lattice.samplers.HMC`,
which needs only :meth:`U1.action` and :meth:`U1.grad_action`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from array_api_compat import array_namespace

from .._checks import _is_int, namespace_of
from ..lattice import shift
from .base import Family, Theory, check_beta

__all__ = ["U1", "GaugeTheory", "GAUGE", "planes", "link_axes", "n_plaquettes", "reduce_angle"]


def planes(d: int) -> list[tuple[int, int]]:
    """The planes (mu, nu), mu < nu, of a d-dimensional lattice in lexicographic order: the order
    of the plane axis of :meth:`U1.plaquettes`."""
    return [(mu, nu) for mu in range(d) for nu in range(mu + 1, d)]


def link_axes(theta: Any) -> tuple[int, ...]:
    """Every axis but the chain axis of a link configuration ``(chains, d, L, ..., L)``."""
    return tuple(range(1, theta.ndim))


def n_plaquettes(L: int, d: int) -> int:
    """The number of plaquettes L^d d (d - 1) / 2 of the torus."""
    return L ** d * d * (d - 1) // 2


def reduce_angle(t: Any) -> Any:
    """t reduced into (-pi, pi]: t - 2 pi ceil((t - pi) / 2 pi)."""
    xp = array_namespace(t)
    return t - (2.0 * math.pi) * xp.ceil((t - math.pi) / (2.0 * math.pi))


@runtime_checkable
class GaugeTheory(Protocol):
    """Link angles with a plaquette action, an inverse coupling beta and local staples."""

    beta: float

    def action(self, theta: Any) -> Any: ...                     # S per chain
    def grad_action(self, theta: Any) -> Any: ...                # dS/dtheta_mu(x)
    def plaquettes(self, theta: Any) -> Any: ...                 # theta_P, (chains, planes, L, ..., L)
    def staple_sum(self, theta: Any, mu: int) -> tuple: ...      # (Re A, Im A) at every link of direction mu
    def local_action(self, theta: Any, mu: int) -> Any: ...      # -beta R cos(theta_mu - phi)
    def local_delta_action(self, t: Any, new: Any, staples: tuple) -> Any: ...  # S_local(new) - S_local(t)
    def link_conditional(self, staples: tuple) -> tuple: ...     # (kappa, phi): density exp(kappa cos(t - phi))
    def check_field(self, theta: Any, name: str = "links") -> Any: ...
    def random(self, rng: Any, shape: tuple, dtype: Any) -> Any: ...
    def config_shape(self, chains: int, L: int, dim: int) -> tuple: ...
    def check_lattice(self, L: int, dim: int) -> None: ...
    def with_arrays(self, convert: Any) -> Any: ...
    def params(self) -> dict: ...


GAUGE = Family("gauge", False, GaugeTheory,
               reported=("plaquette", "action_per_plaquette", "w11", "w12", "w22", "polyakov_abs", "q2", "chi_top"),
               summary=("plaquette", "w22", "chi_top", "acceptance"), histories=("plaquette", "q", "polyakov_abs"))


def _check_dim(dim: Any) -> int:
    if not _is_int(dim) or not 2 <= dim <= 4:
        raise ValueError(f"dim must be 2, 3 or 4 for a gauge theory (a plaquette needs a plane), got dim={dim!r}")
    return int(dim)


@dataclass(frozen=True)
class U1(Theory):
    """Compact U(1) gauge theory, Wilson action S = -beta sum_P cos theta_P.

    Parameters
    ----------
    beta : float
        Inverse coupling (non-negative; beta = 1/g^2).
    dim : int, optional
        Fix the lattice dimension (2..4); None accepts any of them.
    """

    family = GAUGE  # a class attribute (not a dataclass field): what every theory of its kind shares

    beta: float
    dim: int | None = None

    def __post_init__(self):
        check_beta(self.beta)
        if self.dim is not None:
            _check_dim(self.dim)

    def params(self) -> dict:
        return {"name": "u1", "beta": self.beta, "dim": self.dim}

    # --- configurations ---------------------------------------------------------------------
    def config_shape(self, chains: int, L: int, dim: int) -> tuple:
        """The shape of a run's configuration: ``(chains, d, L, ..., L)``."""
        return (chains, dim) + (L,) * dim

    def check_lattice(self, L: int, dim: int) -> None:
        """d = 2..4 (and this theory's own dim where it fixes one), L >= 2."""
        _check_dim(dim)
        super().check_lattice(L, dim)
        if not _is_int(L) or L < 2:
            raise ValueError(f"L must be an integer >= 2 for a gauge theory (on L = 1 every plaquette "
                             f"holds each of its links twice, theta_P = 0), got L={L!r}")

    def check_field(self, theta: Any, name: str = "links") -> Any:
        """Validate link angles: real floating dtype, shape (chains, d, L, ..., L) with d = ndim - 2
        in 2..4 and L >= 2, finite."""
        xp = namespace_of(name, theta)
        if not xp.isdtype(theta.dtype, "real floating"):
            raise TypeError(f"{name} must have a real floating dtype, got {name}.dtype={theta.dtype}")
        shape = tuple(theta.shape)
        d = theta.ndim - 2
        if (d < 1 or shape[0] < 1 or shape[1] != d or any(k != shape[2] for k in shape[2:])):
            raise ValueError(f"{name} must have shape (chains, d, L, ..., L) with d = {name}.ndim - 2 "
                             f"lattice axes of equal length, got {name}.shape={shape}")
        if not 2 <= d <= 4:
            raise ValueError(f"{name} must be 2..4-dimensional (dim in 2..4), got dim={d} from {name}.shape={shape}")
        if self.dim is not None and d != self.dim:
            raise ValueError(f"{name} must be {self.dim}-dimensional for this theory, got dim={d}")
        if shape[2] < 2:
            raise ValueError(f"{name} must have L >= 2, got L={shape[2]}")
        if not bool(xp.all(xp.isfinite(theta))):
            raise ValueError(f"{name} must hold finite angles, got a non-finite entry")
        return xp

    def random(self, rng: Any, shape: tuple, dtype: Any) -> Any:
        """Hot start: independent link angles uniform on (-pi, pi] (Haar measure)."""
        shape = tuple(shape)
        if len(shape) < 4 or shape[1] != len(shape) - 2:
            raise ValueError(f"shape must be (chains, d, L, ..., L) with d = len(shape) - 2, got shape={shape}")
        return math.pi - (2.0 * math.pi) * rng.uniform(shape, dtype)

    # --- the action and its derivatives -------------------------------------------------
    def plaquettes(self, theta: Any) -> Any:
        """theta_P = theta_mu(x) + theta_nu(x + e_mu) - theta_mu(x + e_nu) - theta_nu(x) for every
        plane mu < nu (in the order of :func:`planes`), shape ``(chains, n_planes, L, ..., L)``."""
        xp = array_namespace(theta)
        d = theta.ndim - 2
        links = [theta[:, mu, ...] for mu in range(d)]
        return xp.stack([links[mu] + shift(links[nu], mu) - shift(links[mu], nu) - links[nu]
                         for mu, nu in planes(d)], axis=1)

    def action(self, theta: Any) -> Any:
        """S = -beta sum_P cos theta_P per chain, shape ``(chains,)``."""
        xp = array_namespace(theta)
        return -self.beta * xp.sum(xp.cos(self.plaquettes(theta)), axis=link_axes(theta))

    def log_weight(self, theta: Any, dtype: Any = None) -> Any:
        """log of the Boltzmann weight, -S, per chain."""
        return -self.action(theta)

    def grad_action(self, theta: Any) -> Any:
        """dS/dtheta_mu(x), shape of ``theta``: for each plane (a, b), beta sin theta_P enters the
        link a at x with +1 and at x + e_b with -1, the link b at x + e_a with +1 and at x with -1.
        Equal to beta R sin(theta_mu(x) - phi) of the staples (:meth:`staple_sum`)."""
        xp = array_namespace(theta)
        d = theta.ndim - 2
        s = self.beta * xp.sin(self.plaquettes(theta))
        grads: list[Any] = [None] * d
        for k, (a, b) in enumerate(planes(d)):
            sp = s[:, k, ...]
            for mu, term in ((a, sp - shift(sp, b, -1)), (b, shift(sp, a, -1) - sp)):
                grads[mu] = term if grads[mu] is None else grads[mu] + term
        return xp.stack(grads, axis=1)

    def staple_sum(self, theta: Any, mu: int) -> tuple[Any, Any]:
        """The staple sum A = sum_{nu != mu} (exp(i a_up) + exp(i a_down)) of every link of
        direction mu, as (Re A, Im A), each ``(chains, L, ..., L)`` (the module notes give a_up,
        a_down). The link's local action is -beta Re(exp(i theta_mu) conj(A)) = -beta R
        cos(theta_mu - phi), with A = R exp(i phi). A at x holds links of direction mu only at
        x +- e_nu, of the other parity: the links of one direction and one parity share no
        plaquette, and their staple sums do not depend on each other."""
        xp = array_namespace(theta)
        d = theta.ndim - 2
        if not _is_int(mu) or not 0 <= mu < d:
            raise ValueError(f"mu must be a direction 0..{d - 1}, got mu={mu!r}")
        t_mu = theta[:, mu, ...]
        re = im = None
        for nu in range(d):
            if nu == mu:
                continue
            t_nu = theta[:, nu, ...]
            up = t_nu + shift(t_mu, nu) - shift(t_nu, mu)
            low = shift(t_mu - t_nu + shift(t_nu, mu), nu, -1)  # -t_nu(x-nu) + t_mu(x-nu) + t_nu(x-nu+mu)
            c = xp.cos(up) + xp.cos(low)
            s = xp.sin(up) + xp.sin(low)
            re, im = (c, s) if re is None else (re + c, im + s)
        return re, im

    def local_action(self, theta: Any, mu: int) -> Any:
        """-beta R cos(theta_mu(x) - phi) at every link of direction mu: the sum of -beta cos theta_P
        over the 2 (d - 1) plaquettes through the link, shape ``(chains, L, ..., L)``."""
        return self.link_action(theta[:, mu, ...], self.staple_sum(theta, mu))

    # --- what the local samplers ask for, given a link's staple sum (Re A, Im A) ---------------
    def link_action(self, t: Any, staples: tuple[Any, Any]) -> Any:
        """-beta Re(exp(i t) conj(A)) = -beta (cos t Re A + sin t Im A): the local action of link
        angles ``t`` with staple sums ``staples`` = (Re A, Im A) (:meth:`staple_sum`)."""
        xp = array_namespace(t)
        re, im = staples
        return -self.beta * (xp.cos(t) * re + xp.sin(t) * im)

    def local_delta_action(self, t: Any, new: Any, staples: tuple[Any, Any]) -> Any:
        """S[t -> new] - S[t] for links changed alone (no other link of a shared plaquette moving)."""
        return self.link_action(new, staples) - self.link_action(t, staples)

    def link_conditional(self, staples: tuple[Any, Any]) -> tuple[Any, Any]:
        """(kappa, phi) of the conditional density exp(kappa cos(t - phi)) of a link given its
        staple sum A = R exp(i phi): kappa = beta R (>= 0), phi = atan2(Im A, Re A) in [-pi, pi]
        (0 where A = 0, where kappa = 0 and any phi serves)."""
        re, im = staples
        xp = array_namespace(re)
        return self.beta * xp.sqrt(re * re + im * im), xp.atan2(im, re)
