r"""O(n) models: classical n-vector spins of unit length (XY is n = 2, Heisenberg n = 3).

H = -J sum_<xy> s_x . s_y - h sum_x s_x^0 on the hypercubic torus, |s_x| = 1, at inverse
temperature beta (Boltzmann weight exp(-beta H)). The field points along the first
component; any other direction is the same model rotated.

Configurations are real arrays ``(chains, n, L, ..., L)``: the component axis comes right
after the chain axis, so each component is a contiguous lattice and the nearest-neighbour
stencils are the same rolls as for a scalar field (over the axes 2 .. d + 1). The family
(:data:`VECTOR`) says what a run reports; the samplers are in
:mod:`portable_lattice.samplers.vector`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from array_api_compat import array_namespace, device as device_of

from .._checks import finite_float, namespace_of, positive_int
from ..philox import is_philox, sqrt_nonnegative
from .base import Family, Theory, check_beta

__all__ = ["ON", "VectorTheory", "VECTOR", "site_axes", "site_volume", "vector_shift", "vector_neighbour_sum", "normalise"]


def site_axes(s: Any) -> tuple[int, ...]:
    """The lattice axes ``(2, ..., d + 1)`` of an n-vector configuration ``(chains, n, L, ..., L)``."""
    return tuple(range(2, s.ndim))


def site_volume(s: Any) -> int:
    """Number of sites V = L**d of an n-vector configuration ``(chains, n, L, ..., L)``."""
    v = 1
    for k in s.shape[2:]:
        v *= k
    return v


def vector_shift(s: Any, mu: int, k: int = 1) -> Any:
    """``s_{x + k e_mu}`` at every site x (periodic), every component."""
    return array_namespace(s).roll(s, shift=-k, axis=mu + 2)


def vector_neighbour_sum(s: Any) -> Any:
    """sum_mu (s_{x + e_mu} + s_{x - e_mu}) per component."""
    out = vector_shift(s, 0, 1) + vector_shift(s, 0, -1)
    for mu in range(1, s.ndim - 2):
        out = out + vector_shift(s, mu, 1) + vector_shift(s, mu, -1)
    return out


def normalise(v: Any, exact: bool = False) -> Any:
    """``v / |v|`` along the component axis (axis 1).

    ``exact=True`` (a kernel passes it under the Philox stream) takes the float64 square root
    with the library's own :func:`portable_lattice.philox.sqrt_nonnegative` (products only, the
    same bits on every backend): torch's CPU ``sqrt`` is not correctly rounded for some inputs,
    and every update renormalises, so the same Philox numbers would otherwise give chains that
    part in the last bit. It costs about as much as the rest of a Metropolis sweep, so the
    native streams use the backend's ``sqrt``."""
    xp = array_namespace(v)
    norm2 = xp.sum(v * v, axis=1, keepdims=True)
    return v / (sqrt_nonnegative(norm2) if exact and v.dtype == xp.float64 else xp.sqrt(norm2))


@runtime_checkable
class VectorTheory(Protocol):
    """Unit n-vector spins with a nearest-neighbour coupling and an inverse temperature."""

    beta: float
    n: int

    def energy(self, s: Any) -> Any: ...                       # H per chain
    def magnetisation(self, s: Any) -> Any: ...                # sum_x s_x, (chains, n)
    def local_field(self, s: Any) -> Any: ...                  # J sum_nb s_nb + h e_0 at every site
    def field_from_neighbours(self, nb: Any) -> Any: ...       # the same from the neighbours' sum
    def check_field(self, s: Any, name: str = "spins") -> Any: ...
    def random(self, rng: Any, shape: tuple, dtype: Any) -> Any: ...
    def config_shape(self, chains: int, L: int, dim: int) -> tuple: ...
    def check_lattice(self, L: int, dim: int) -> None: ...
    def with_arrays(self, convert: Any) -> Any: ...
    def params(self) -> dict: ...


VECTOR = Family("vector", False, VectorTheory,
                reported=("energy", "m_abs", "m2", "m4", "chi", "chi_abs", "heat_capacity", "binder", "xi2nd",
                          "helicity"),
                summary=("energy", "m_abs", "chi", "binder", "acceptance"), histories=("m_abs", "energy"))

#: how far from unit length a start configuration may be (relative to the dtype's resolution)
_UNIT_TOLERANCE = {4: 1e-5, 8: 1e-10}


@dataclass(frozen=True)
class ON(Theory):
    """O(n) model H = -J sum_<xy> s_x . s_y - h sum_x s_x^0, |s_x| = 1, at inverse temperature beta.

    Parameters
    ----------
    beta : float
        Inverse temperature (non-negative).
    n : int
        Number of spin components, at least 2 (XY: 2, Heisenberg: 3).
    J : float
        Nearest-neighbour coupling (ferromagnetic for J > 0).
    h : float
        Magnetic field along the first component.
    dim : int, optional
        Fix the lattice dimension (1..4); None accepts any.
    """

    family = VECTOR  # a class attribute (not a dataclass field): what every theory of its kind shares
    #: the CLI's help for the card keys no other model has (the CLI makes their flags)
    card_help = {"n": "number of spin components, at least 2 (XY: 2, Heisenberg: 3; default 2)"}

    beta: float
    n: int = 2
    J: float = 1.0
    h: float = 0.0
    dim: int | None = None

    def __post_init__(self):
        check_beta(self.beta)
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 2:
            raise ValueError(f"n must be an integer of at least 2 (XY: 2, Heisenberg: 3), got n={self.n!r}")
        finite_float("J", self.J)
        finite_float("h", self.h)
        if self.dim is not None:
            positive_int("dim", self.dim)
            if self.dim > 4:
                raise ValueError(f"dim must be 1..4, got dim={self.dim}")

    def params(self) -> dict:
        return {"name": "on", "beta": self.beta, "n": self.n, "J": self.J, "h": self.h, "dim": self.dim}

    # --- configurations ---------------------------------------------------------------------
    def config_shape(self, chains: int, L: int, dim: int) -> tuple:
        """The shape of a run's configuration: ``(chains, n, L, ..., L)``."""
        return (chains, self.n) + (L,) * dim

    def check_field(self, s: Any, name: str = "spins") -> Any:
        """Validate a configuration: real floating dtype, shape (chains, n, L, ..., L), unit length."""
        xp = namespace_of(name, s)
        if not xp.isdtype(s.dtype, "real floating"):
            raise TypeError(f"{name} must have a real floating dtype, got {name}.dtype={s.dtype}")
        if s.ndim < 3 or s.shape[1] != self.n or any(k != s.shape[2] for k in s.shape[2:]):
            raise ValueError(f"{name} must have shape (chains, n={self.n}, L, ..., L), got "
                             f"{name}.shape={tuple(s.shape)}")
        if self.dim is not None and s.ndim - 2 != self.dim:
            raise ValueError(f"{name} must be {self.dim}-dimensional for this model, got {s.ndim - 2}")
        if s.ndim - 2 > 4:
            raise ValueError(f"{name} must be 1..4-dimensional, got {s.ndim - 2}")
        norm2 = xp.sum(s * s, axis=1)
        worst = float(xp.max(xp.abs(norm2 - 1.0)))
        tol = _UNIT_TOLERANCE.get(xp.finfo(s.dtype).bits // 8, 1e-5)
        if not worst <= tol:  # NaN fails too
            raise ValueError(f"{name} must hold unit vectors (|s_x| = 1 to {tol:g}); the largest deviation of "
                             f"|s_x|^2 from 1 is {worst:.3g}")
        return xp

    def random(self, rng: Any, shape: tuple, dtype: Any) -> Any:
        """Hot start: independent spins uniform on the sphere S^{n-1} (normalised Gaussian vectors)."""
        if len(shape) < 3 or shape[1] != self.n:
            raise ValueError(f"shape must be (chains, n={self.n}, L, ..., L), got shape={tuple(shape)}")
        return normalise(rng.normal(tuple(shape), dtype), exact=is_philox(rng))

    # --- what samplers and observables ask for ----------------------------------------------
    def local_field(self, s: Any) -> Any:
        """J sum_nb s_nb + h e_0 at every site (without beta): the energy at x is -s_x . field."""
        return self.field_from_neighbours(vector_neighbour_sum(s))

    def field_from_neighbours(self, nb: Any) -> Any:
        """J nb + h e_0: the local field, given the sum ``nb`` of a site's neighbours (components on
        axis 1; any site layout after it, such as a checkerboard's blocks)."""
        f = self.J * nb
        if self.h != 0.0:
            xp = array_namespace(nb)
            e0 = xp.reshape(xp.asarray([1.0] + [0.0] * (self.n - 1), dtype=nb.dtype, device=device_of(nb)),
                            (1, self.n) + (1,) * (nb.ndim - 2))
            f = f + self.h * e0
        return f

    def energy(self, s: Any) -> Any:
        """H per chain."""
        xp = array_namespace(s)
        axes = (1,) + site_axes(s)
        bonds = sum(xp.sum(s * vector_shift(s, mu, 1), axis=axes) for mu in range(s.ndim - 2))
        out = -self.J * bonds
        if self.h != 0.0:
            out = out - self.h * xp.sum(s[:, 0, ...], axis=tuple(range(1, s.ndim - 1)))
        return out

    def magnetisation(self, s: Any) -> Any:
        """M = sum_x s_x per chain, shape (chains, n)."""
        return array_namespace(s).sum(s, axis=site_axes(s))

    def field_constants(self) -> dict:
        """The couplings a compiled twin of :meth:`field_from_neighbours` and
        :meth:`log_weight_change` evaluates them with (a fused kernel's plan)."""
        return {"J": self.J, "h": self.h, "beta": self.beta}

    def log_weight_change(self, new: Any, old: Any, field: Any) -> Any:
        """ln of the Boltzmann factor's ratio when spins ``old`` become ``new`` in the local field
        ``field`` (the other spins fixed): beta (new - old) . field, summed over the component
        axis (axis 1; shapes (chains, n, ...) or (chains, n))."""
        xp = array_namespace(new)
        return self.beta * xp.sum((new - old) * field, axis=1)

    def concentration(self, field_norm: Any) -> Any:
        """beta |f|: the conditional density of a spin in the local field f is exp(beta |f| cos theta)."""
        return self.beta * field_norm

    def embedding_bond_probability(self, sigma_x: Any, sigma_y: Any) -> Any:
        """Wolff's embedding: with sigma = s . r the spins' projections on a unit vector r, the bond
        between x and y after reflecting about r is active with probability
        1 - exp(min(0, -2 beta J sigma_x sigma_y)) (Wolff 1989)."""
        xp = array_namespace(sigma_x)
        return 1.0 - xp.exp(xp.minimum(-2.0 * self.beta * self.J * sigma_x * sigma_y, 0.0))

    def check_embedding(self) -> None:
        """Cluster updates by embedding need a ferromagnet at zero field."""
        if self.J < 0 or self.h != 0.0:
            raise ValueError(f"cluster updates of the O(n) model need J >= 0 and h = 0, got J={self.J}, h={self.h}")
