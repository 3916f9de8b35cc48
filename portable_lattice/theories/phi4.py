r"""Lattice phi^4 theory: one implementation, the two parametrisations of the papers.

The (beta, g) form, Eq. 2 of [PEM],

.. math:: S = \sum_x \Big[-\beta \sum_\mu \phi_x \phi_{x+\mu} + \phi_x^2 + g(\phi_x^2-1)^2\Big],

and the (kappa, lambda) form, Eq. 4.2 of [DMSQ],

.. math:: S = \sum_x \Big[-2\kappa \sum_\mu \phi_x \phi_{x+\mu} + (1-2\lambda)\phi_x^2 + \lambda\phi_x^4\Big],

are the same theory with beta = 2 kappa, g = lambda; they differ by the
constant lambda V, which shifts the action (and ``action`` observables) but no
expectation value of the field. :class:`Phi4` stores (beta, g) and the
per-site constant of the form it was built from. g = 0 is the Gaussian free
field, stable only for beta < 1/d.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace

from .._checks import finite_float, nonnegative_float
from .base import FIELD, Theory
from ..lattice import check_field, forward_sum, lattice_axes, neighbour_sum, volume

__all__ = ["Phi4"]


@dataclass(frozen=True)
class Phi4(Theory):
    """phi^4 action with hopping ``beta`` and quartic coupling ``g``.

    Use :meth:`from_beta_g` ([PEM]) or :meth:`from_kappa_lambda` ([DMSQ]);
    ``Phi4(beta, g)`` is the (beta, g) form. Here beta is the hopping
    coupling of [PEM], not an inverse temperature.
    """

    family = FIELD  # a class attribute (not a dataclass field): what every theory of its kind shares

    beta: float
    g: float
    form: str = "beta_g"

    def __post_init__(self):
        finite_float("beta", self.beta)
        nonnegative_float("g" if self.form == "beta_g" else "lam", self.g)
        if self.form not in ("beta_g", "kappa_lambda"):
            raise ValueError(f"form must be 'beta_g' or 'kappa_lambda', got form={self.form!r}")

    @classmethod
    def from_beta_g(cls, beta: float, g: float) -> "Phi4":
        """Eq. 2 of [PEM]."""
        return cls(finite_float("beta", beta), nonnegative_float("g", g), "beta_g")

    @classmethod
    def from_kappa_lambda(cls, kappa: float, lam: float) -> "Phi4":
        """Eq. 4.2 of [DMSQ]: beta = 2 kappa, g = lam, no constant term."""
        return cls(2.0 * finite_float("kappa", kappa), nonnegative_float("lam", lam), "kappa_lambda")

    @property
    def kappa(self) -> float:
        return self.beta / 2.0

    @property
    def lam(self) -> float:
        return self.g

    @property
    def constant_per_site(self) -> float:
        """g for the (beta, g) form (from expanding g(phi^2-1)^2), 0 for (kappa, lambda)."""
        return self.g if self.form == "beta_g" else 0.0

    @classmethod
    def from_card(cls, card, *, dim: int = 2, L: int = 0, couplings=None, backend=None) -> "Phi4":
        """(beta, g) as in [PEM] or (kappa, lam) as in [DMSQ], never both."""
        bg = "beta" in card or "g" in card
        kl = "kappa" in card or "lam" in card
        if bg and kl:
            raise ValueError("give either beta/g or kappa/lam, not both")
        if kl:
            if "kappa" not in card or "lam" not in card:
                raise ValueError("kappa and lam go together")
            return cls.from_kappa_lambda(card["kappa"], card["lam"])
        if "beta" not in card or "g" not in card:
            raise ValueError("give the couplings: beta and g, or kappa and lam")
        return cls.from_beta_g(card["beta"], card["g"])

    def card(self) -> dict:
        p = self.params()
        keys = ("beta", "g") if self.form == "beta_g" else ("kappa", "lam")
        return {"model": "phi4", **{k: p[k] for k in keys}}

    def params(self) -> dict:
        """The parameters in the form the user chose (for reports and JSON)."""
        if self.form == "beta_g":
            return {"name": "phi4", "form": "beta_g", "beta": self.beta, "g": self.g}
        return {"name": "phi4", "form": "kappa_lambda", "kappa": self.kappa, "lam": self.lam}

    def check_dimension(self, dim: int) -> None:
        """The free field (g = 0) needs beta < 1/d: otherwise exp(-S) is not normalisable."""
        if self.g == 0 and self.beta * dim >= 1.0:
            name = "beta" if self.form == "beta_g" else "kappa"
            value = self.beta if self.form == "beta_g" else self.kappa
            bound = 1.0 / dim if self.form == "beta_g" else 0.5 / dim
            raise ValueError(f"the free field (g = 0) is unstable for {name} >= {bound:g} in d={dim}; "
                             f"got {name}={value!r}")

    def check_lattice(self, L: int, dim: int) -> None:
        self.check_dimension(dim)

    def check_field(self, phi: Any) -> Any:
        xp = check_field(phi)
        self.check_dimension(phi.ndim - 1)
        return xp

    # --- the action and its derivatives -------------------------------------------------
    def potential(self, phi: Any) -> Any:
        """On-site part (1 - 2g) phi^2 + g phi^4 (without the constant)."""
        phi2 = phi * phi
        return (1.0 - 2.0 * self.g) * phi2 + self.g * phi2 * phi2

    def action(self, phi: Any) -> Any:
        """S[phi] per chain, shape ``(chains,)`` (Eq. 2 of [PEM] / Eq. 4.2 of [DMSQ])."""
        xp = array_namespace(phi)
        density = self.potential(phi) - self.beta * phi * forward_sum(phi)
        return xp.sum(density, axis=lattice_axes(phi)) + self.constant_per_site * volume(phi)

    def log_weight(self, phi: Any, dtype: Any = None) -> Any:
        """log of the Boltzmann weight, -S, per chain (``dtype`` is the field's own)."""
        return -self.action(phi)

    def grad_action(self, phi: Any) -> Any:
        """dS/dphi_x = -beta sum_mu (phi_{x+mu} + phi_{x-mu}) + 2(1-2g) phi_x + 4g phi_x^3 (Eq. 4 of [PEM])."""
        return self.grad_action_local(phi, neighbour_sum(phi))

    def grad_action_local(self, phi: Any, nsum: Any) -> Any:
        """Eq. 4 of [PEM] given the neighbour sum ``nsum = sum_mu (phi_{x+mu} + phi_{x-mu})``.

        Lets multi-hit and single-site updates reuse a neighbour sum that their
        proposal does not change; the theory applies its own hopping coupling.
        """
        return phi * (2.0 * (1.0 - 2.0 * self.g) + 4.0 * self.g * phi * phi) - self.beta * nsum

    def local_delta_action(self, phi: Any, delta: Any, grad: Any) -> Any:
        """S[phi + delta e_x] - S[phi] for a change at site x alone (Eq. 3 of [PEM]).

        dS = delta dS/dphi_x + (1 - 2g + 6g phi_x^2) delta^2 + 4g phi_x delta^3 + g delta^4.

        Exact when ``grad`` is the exact gradient and no neighbour of x changes
        at the same time; evaluated at every site, so a set of mutually
        non-adjacent sites (a checkerboard parity) is updated in one pass. A
        surrogate supplies its own ``grad`` here (Eq. 5 of [PEM]).
        """
        g = self.g
        return delta * (grad + delta * ((1.0 - 2.0 * g + 6.0 * g * phi * phi)
                                        + delta * (4.0 * g * phi + g * delta)))

    def local_constants(self) -> dict:
        """The Python floats :meth:`grad_action_local` and :meth:`local_delta_action` use, for a
        fused kernel that must round exactly as they do. In their order of evaluation:

        grad = phi * (c1 + (c3 * phi) * phi) - beta * nsum
        dS = delta * (grad + delta * ((a + (c6 * phi) * phi) + delta * ((c4 * phi) + g * delta)))
        """
        g = self.g
        return {"c1": 2.0 * (1.0 - 2.0 * g), "c3": 4.0 * g, "beta": self.beta, "a": 1.0 - 2.0 * g,
                "c6": 6.0 * g, "c4": 4.0 * g, "g": g}
