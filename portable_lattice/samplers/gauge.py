r"""Local updates of U(1) lattice gauge fields (:class:`~portable_lattice.theories.U1`).

:class:`GaugeCheckerboard` visits every link once per step, by direction mu and by parity of
its site x (sum_nu x_nu mod 2). Two links of one direction at sites of one parity share no
plaquette, so the staple sum of each (:meth:`U1.staple_sum`, built from links of the other
directions and from links of direction mu at x +- e_nu, of the other parity) is unchanged
while they update, and they all update at once: 2 d passes per step, each over all sites with a
parity mask (the torus needs an even L for the parities to alternate across the boundary).

Given the staple sum A = R exp(i phi) of a link, its local weight is exp(beta R cos(theta - phi)):

* ``"metropolis"``: theta' = theta + step_size u, u uniform in (-1, 1), accepted with
  probability min(1, exp(-(S_local(theta') - S_local(theta)))), ``hits`` times per pass
  (``Info.acceptance``);
* ``"heatbath"``: theta = phi + X with X drawn from the von Mises distribution of concentration
  kappa = beta R (:func:`von_mises`, Best & Fisher 1979), an exact draw from the conditional
  distribution (``Info.changed``);

and after the local sweep, ``overrelax`` overrelaxation sweeps theta' = 2 phi - theta (the
reflection about the staple angle: it keeps S_local, hence S, and the Haar measure; always
accepted). A sweep of overrelaxation is a separate sweep over all directions and parities: two
reflections of one set of links in a row would cancel.

The kernel reads no coupling: it asks the theory for the staple sums (:meth:`U1.staple_sum`),
the local action difference (:meth:`U1.local_delta_action`) and the conditional's
(kappa, phi) (:meth:`U1.link_conditional`). The generic :class:`~portable_lattice.samplers.HMC`
samples the same theory (it needs only the
action and its gradient). Angles updated here are reduced into (-pi, pi].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace, device as device_of

from ..lattice import parity
from ..theories.u1 import GAUGE, reduce_angle
from .base import FieldState, Info, check_local_update, check_theory_field, count_per_chain, log_uniform
from .vector import von_mises as von_mises_cos_sin

__all__ = ["GaugeCheckerboard", "von_mises", "UPDATES"]

#: the local moves of :class:`GaugeCheckerboard`
UPDATES = ("metropolis", "heatbath")

def von_mises(rng: Any, kappa: Any, dtype: Any) -> Any:
    """Angles X in (-pi, pi] with density exp(kappa cos X) / (2 pi I_0(kappa)), one per entry of
    ``kappa`` (an array of concentrations >= 0, any shape; 0 gives the uniform angle): the O(n)
    heat bath's draw (:func:`portable_lattice.samplers.vector.von_mises`, Best & Fisher 1979),
    as an angle."""
    xp = array_namespace(kappa)
    if not xp.isdtype(kappa.dtype, "real floating"):
        raise TypeError(f"kappa must have a real floating dtype, got kappa.dtype={kappa.dtype}")
    if not bool(xp.all(xp.isfinite(kappa) & (kappa >= 0))):
        raise ValueError("kappa must hold finite, non-negative concentrations, got a negative or non-finite entry")
    k = xp.astype(kappa, dtype)
    cos, sin = von_mises_cos_sin(k, xp.ones(tuple(k.shape), dtype=xp.bool, device=device_of(k)), rng)
    return xp.atan2(sin, cos)


def _check_gauge_theory(theory: Any) -> None:
    if getattr(theory, "family", None) is not GAUGE:
        raise TypeError(f"theory must be a gauge theory (a U1, family 'gauge'), got {type(theory).__name__}")


@dataclass(frozen=True)
class GaugeCheckerboard:
    """Checkerboard sweep of a U(1) gauge field: each direction's links of one parity at once.

    Parameters
    ----------
    theory : U1
    update : {"metropolis", "heatbath"}
        The local move (module notes).
    step_size : float
        Metropolis proposal half-width, theta' = theta + step_size u, u uniform in (-1, 1)
        (positive; the run card's knob ``step``). Not ``step``: that name is the kernel's
        ``step(state, rng)`` method, which a dataclass field would shadow.
    hits : int
        Metropolis proposals per link in each pass (the staple sum is reused); 1 for the heat
        bath (a second draw is an equivalent redraw).
    overrelax : int
        Overrelaxation sweeps theta' = 2 phi - theta after each local sweep (non-negative).

    Notes
    -----
    A step reports ``Info.acceptance`` (Metropolis: accepted proposals per link and hit) or
    ``Info.changed`` (heat bath: the fraction of links given a new value), per chain.
    """

    # the knobs of VectorCheckerboard's local sweep, laid out as there: dataclass fields, no logic
    # (both check them with samplers.base.check_local_update)
    theory: Any
    update: str = "metropolis"
    step_size: float = 1.0
    hits: int = 1
    overrelax: int = 0

    def __post_init__(self):
        _check_gauge_theory(self.theory)
        check_local_update(self, UPDATES)

    def init(self, theta: Any) -> FieldState:
        check_theory_field(self.theory, theta)
        L = theta.shape[2]
        if L % 2:
            raise ValueError(f"checkerboard updates of links need an even L (the parities must alternate "
                             f"across the periodic boundary), got L={L}")
        return FieldState(phi=theta)

    # --- one pass: the links of direction mu at the sites of one parity ---------------------------
    def _masks(self, theta: Any) -> list[Any]:
        xp = array_namespace(theta)
        d, L = theta.ndim - 2, theta.shape[2]
        even = xp.reshape(parity(xp, L, d, device_of(theta)) == 0, (1,) + (L,) * d)
        return [even, ~even]

    @staticmethod
    def _replace(theta: Any, mu: int, new: Any) -> Any:
        """theta with the links of direction mu replaced by ``new`` (no writes into the input)."""
        xp = array_namespace(theta)
        d = theta.ndim - 2
        return xp.stack([new if nu == mu else theta[:, nu, ...] for nu in range(d)], axis=1)

    def _conditional(self, theta: Any, mu: int) -> tuple[Any, Any]:
        """(kappa, phi) of the links of direction mu: their density is exp(kappa cos(t - phi))."""
        return self.theory.link_conditional(self.theory.staple_sum(theta, mu))

    def _metropolis(self, theta, mu, mask, rng):
        xp = array_namespace(theta)
        staples = self.theory.staple_sum(theta, mu)
        t = theta[:, mu, ...]
        shape = tuple(t.shape)
        accepted = None
        for _ in range(self.hits):
            prop = t + self.step_size * (2.0 * rng.uniform(shape, t.dtype) - 1.0)
            dS = self.theory.local_delta_action(t, prop, staples)
            acc = mask & (log_uniform(rng, shape, t.dtype) < -dS)  # NaN is rejected
            t = xp.where(acc, reduce_angle(prop), t)
            n = count_per_chain(acc, xp.float64)
            accepted = n if accepted is None else accepted + n
        return self._replace(theta, mu, t), accepted

    def _heatbath(self, theta, mu, mask, rng):
        xp = array_namespace(theta)
        kappa, phi = self._conditional(theta, mu)
        t = theta[:, mu, ...]
        new = reduce_angle(phi + von_mises(rng, kappa, t.dtype))
        moved = mask & (new != t)
        return self._replace(theta, mu, xp.where(mask, new, t)), count_per_chain(moved, xp.float64)

    def overrelaxation(self, theta: Any) -> Any:
        """One overrelaxation sweep theta' = 2 phi - theta over every direction and parity: keeps
        S (to rounding) and the Haar measure; deterministic, each pass its own inverse."""
        xp = array_namespace(theta)
        for mu in range(theta.ndim - 2):
            for mask in self._masks(theta):
                _, phi = self._conditional(theta, mu)
                t = theta[:, mu, ...]
                theta = self._replace(theta, mu, xp.where(mask, reduce_angle(2.0 * phi - t), t))
        return theta

    def step(self, state: FieldState, rng: Any) -> tuple[FieldState, Info]:
        theta = state.phi
        d = theta.ndim - 2
        masks = self._masks(theta)
        counts = None
        for mu in range(d):
            for mask in masks:
                if self.update == "metropolis":
                    theta, n = self._metropolis(theta, mu, mask, rng)
                else:
                    theta, n = self._heatbath(theta, mu, mask, rng)
                counts = n if counts is None else counts + n
        for _ in range(self.overrelax):
            theta = self.overrelaxation(theta)
        links = d
        for k in theta.shape[2:]:
            links *= k
        if self.update == "metropolis":
            return FieldState(phi=theta), Info(acceptance=counts / (links * self.hits))
        return FieldState(phi=theta), Info(changed=counts / links)
