"""What a sampler may ask of a theory (the protocols), and the checks every theory shares.

A theory owns every coupling, the inverse temperature ``beta`` included. A
sampler never reads a coupling and multiplies: it asks for a *local action
difference* (the change of the Boltzmann exponent, beta dE for spins, dS for
fields), a local field, integer acceptance thresholds or a bond probability.
That keeps one flag meaning one thing, and lets a kernel serve every theory of
a family.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from array_api_compat import array_namespace, device as device_of

from .._checks import finite_float
from .._delegation import implementation

__all__ = ["Theory", "FieldTheory", "SpinTheory", "Family", "FIELD", "SPINS", "FAMILIES", "family_of", "check_beta", "lookup",
           "bits32_threshold", "bits_below"]


def check_beta(beta: Any) -> float:
    """beta must be a finite, non-negative real number."""
    b = finite_float("beta", beta)
    if b < 0:
        raise ValueError(f"beta must be non-negative, got beta={beta!r}")
    return b


class Theory:
    """What every theory does the same way unless it says otherwise (a base class of each)."""

    #: one coupling for every bond: the integer acceptance thresholds of the blocked spin updates
    #: apply (Ising; not Edwards-Anderson, Potts or a learned energy)
    uniform_couplings = False

    @classmethod
    def from_card(cls, card, *, dim: int, L: int, couplings: Any = None, backend: Any = None) -> "Theory":
        """The theory a run card's coupling keys name (``beta``, ``J``, ``h``, ``q`` as the class
        takes them); ``dim``, ``L``, ``couplings`` and ``backend`` for the theories that need them."""
        if card.get("beta") is None:
            raise ValueError(f"model {card.get('model')} needs beta (the inverse temperature)")
        keys = {k: card[k] for k in cls.__dataclass_fields__ if k in card and k not in ("dim",)}
        return cls(dim=dim, **keys)

    def card(self) -> dict:
        """The run card keys that name this theory (``model`` and its couplings)."""
        p = dict(self.params())
        return {"model": p.pop("name"), **p}

    def config_shape(self, chains: int, L: int, dim: int) -> tuple:
        """The shape of a run's configuration: one value per site, ``(chains, L, ..., L)``; a theory
        with several values per site (n-vectors, links) puts their axis after the chains."""
        return (chains,) + (L,) * dim

    def check_lattice(self, L: int, dim: int) -> None:
        """Refuse, before any allocation, an ``L**dim`` torus the theory cannot live on."""
        fixed = getattr(self, "dim", None)
        if fixed not in (None, dim):
            raise ValueError(f"the theory is {fixed}-dimensional, got dim={dim}")

    def bond_probability(self) -> float:
        """The Fortuin-Kasteleyn bond probability of equal neighbours (cluster updates); a theory
        without one says why it has none."""
        raise ValueError(f"cluster updates (Swendsen-Wang, Wolff) are implemented for the Ising and Potts "
                         f"models, got {type(self).__name__}")

    def coupling_table(self, dtype: Any) -> Any:
        """Quenched couplings as a per-site table (Edwards-Anderson); None for uniform couplings."""
        return None

    def local_log_weights(self, s: Any, dtype: Any) -> list:
        """-beta E_x(v) at every site for every state v (the heat bath's conditional weights)."""
        raise ValueError(f"the heat bath needs a spin theory with conditional weights, got {type(self).__name__}")

    def with_arrays(self, convert) -> "Theory":
        """The same theory with its arrays (quenched couplings) passed through ``convert``, e.g.
        moved to a run's backend and device; a theory without arrays is returned as it is."""
        return self


@runtime_checkable
class FieldTheory(Protocol):
    """A real scalar field with a nearest-neighbour action (phi^4)."""

    def action(self, phi: Any) -> Any: ...                                   # S per chain
    def grad_action(self, phi: Any) -> Any: ...                              # dS/dphi_x
    def grad_action_local(self, phi: Any, nsum: Any) -> Any: ...             # dS/dphi_x given sum_nb phi
    def local_delta_action(self, phi: Any, delta: Any, grad: Any) -> Any: ...  # S[phi + delta e_x] - S[phi]
    def local_constants(self) -> dict: ...                                   # the fused kernels' constants
    def check_field(self, phi: Any) -> Any: ...
    def check_lattice(self, L: int, dim: int) -> None: ...
    def with_arrays(self, convert: Any) -> Any: ...
    def params(self) -> dict: ...


@runtime_checkable
class SpinTheory(Protocol):
    """Discrete spins (int8) with a nearest-neighbour energy and an inverse temperature."""

    beta: float
    n_states: int

    def energy(self, s: Any, dtype: Any) -> Any: ...                         # H per chain
    def magnetisation(self, s: Any, dtype: Any) -> Any: ...
    def delta_action(self, t: Any, s: Any, dtype: Any) -> Any: ...          # beta (E_x(t) - E_x(s_x))
    def site_delta_action(self, sx: Any, t: Any, nbrs: Any, sites: Any, dtype: Any) -> Any: ...
    def check_spins(self, s: Any, name: str = "spins") -> Any: ...
    def random(self, rng: Any, shape: tuple, dtype: Any) -> Any: ...        # a hot start
    def check_lattice(self, L: int, dim: int) -> None: ...
    def with_arrays(self, convert: Any) -> Any: ...
    def params(self) -> dict: ...


#: every family by name (each registers itself when it is made)
FAMILIES: dict[str, "Family"] = {}


@dataclass(frozen=True, eq=False)
class Family:
    """What every theory of one kind shares, named by the theory (``theory.family``).

    The runs layer reads the rest of a family's parts (its state, start, measurement,
    analysis and algorithm table) off this object's ``name`` in one table each; nothing
    else asks a theory what it is.

    name : "field" or "spins"
    discrete : configurations are int8 states (spins), not a real field
    protocol : what a sampler may ask of the theory (checked by :func:`family_of`)
    reported : the observables a run reports, in this order
    summary : the few a scan's table and plot show
    histories : the series ``portable-lattice plot`` draws Monte Carlo histories of
    """

    name: str
    discrete: bool
    protocol: type
    reported: tuple[str, ...]
    summary: tuple[str, ...]
    histories: tuple[str, ...]

    def __post_init__(self):
        if self.name in FAMILIES:
            raise ValueError(f"a family named {self.name!r} exists already")
        FAMILIES[self.name] = self  # a new family (in its theory's module) registers itself

    def config_dtype(self, dtype: str) -> str:
        """The dtype a stored configuration has in a run of float ``dtype``."""
        return "int8" if self.discrete else dtype

    def __repr__(self) -> str:
        return f"Family({self.name!r})"


FIELD = Family("field", False, FieldTheory,
               reported=("phi2", "m", "m_abs", "m2", "m4", "chi", "chi_abs", "binder", "xi2nd", "action",
                         "exp_minus_dh"),
               summary=("m_abs", "chi", "binder", "action", "acceptance"), histories=("m", "m_abs", "action"))
SPINS = Family("spins", True, SpinTheory,
               reported=("energy", "m", "m_abs", "m2", "m4", "chi", "heat_capacity", "binder", "c_me"),
               summary=("energy", "m_abs", "chi", "binder", "acceptance"), histories=("m", "m_abs", "energy"))


def family_of(theory: Any) -> Family:
    """The theory's family, its protocol checked; a TypeError naming the object otherwise."""
    fam = getattr(type(theory), "family", None)
    if not isinstance(fam, Family):
        raise TypeError(f"theory must be a portable_lattice theory (Phi4, Ising, Potts, ...), "
                        f"got {type(theory).__name__}")
    if not isinstance(theory, fam.protocol):
        missing = [m for m in dir(fam.protocol) if not m.startswith("_") and not hasattr(theory, m)]
        raise TypeError(f"{type(theory).__name__} names the {fam.name} family but lacks {', '.join(missing)}")
    return fam


# --- integer acceptance thresholds: a Bernoulli draw per site from 32 random bits ------------
def lookup(table: Any, index: Any) -> Any:
    """``table[index]`` for a 1-D table and non-negative integer indices of any shape."""
    xp = array_namespace(table)
    return xp.reshape(xp.take(table, xp.reshape(index, (-1,)), axis=0), tuple(index.shape))


def bits32_threshold(p: float) -> int:
    """T with P(b <= T) = round(p 2**32) / 2**32 for b uniform on the int32 values
    (``rng.bits32``), clipped to the int32 range: exact for p = 1, within 2**-33 of p
    otherwise (2**-32 where p < 2**-33)."""
    return max(-2 ** 31, min(2 ** 31 - 1, round(p * 2.0 ** 32) - 2 ** 31 - 1))


def bits_below(bits: Any, thresholds: Any, index: Any) -> Any:
    """``bits <= thresholds[index]`` elementwise: a Bernoulli draw per site, with the
    site's probability looked up from a small table by its int32 ``index``.

    ``thresholds`` is a host list or an int32 array already on the bits' device.
    """
    xp = array_namespace(bits)
    table = thresholds if hasattr(thresholds, "shape") else \
        xp.asarray(thresholds, dtype=xp.int32, device=device_of(bits))
    return bits <= implementation("lookup", xp, lookup)(table, index)
