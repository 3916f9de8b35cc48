r"""Compact U(1) lattice gauge theory in two dimensions on an L x L torus, exactly.

Links U = exp(i theta_l), plaquette angle theta_P = theta_x(x) + theta_y(x + x^)
- theta_x(x + y^) - theta_y(x), Wilson action S = -beta sum_P cos theta_P over the
V = L^2 plaquettes, normalised Haar measure on every link, and the geometric charge

    Q = (1/2pi) sum_P [theta_P],     [t] = t reduced into (-pi, pi].

Every link enters two plaquettes with opposite signs, so sum_P theta_P = 0 and Q is an
integer. With the theta term exp(i theta Q) the result is

    Z(theta) = sum_{n in Z} f_n(theta)^V,
    f_n(theta) = (1/2pi) int_{-pi}^{pi} dphi exp(beta cos phi + i (n + theta/2pi) phi)
               = I_0(beta) g(n + theta/2pi),
    g(nu) = (1 / (pi I_0(beta))) int_0^pi dphi exp(beta cos phi) cos(nu phi),

so f_n(0) = I_n(beta) and g(n) = I_n/I_0 (for non-integer nu, g is *not* I_nu/I_0).

Why. Fix the gauge on a maximal tree (L^2 - 1 links set to 1). The map from the other
L^2 + 1 link phases to the plaquette phases U_P = exp(i theta_P) is a homomorphism of
tori onto H = {(U_P) : prod_P U_P = 1}: the product is 1 because each link appears
twice with opposite orientation, and every such (U_P) is reached because the integer
coboundary from links to plaquettes has as image exactly the sum-zero vectors
(H^2(T^2, Z) = Z has no torsion); its kernel is the two Polyakov-loop holonomies. A
continuous surjective homomorphism of compact groups carries Haar measure to Haar
measure, so the link integral becomes the Haar integral over H, whose density on
U(1)^V (w.r.t. prod dphi_P/2pi) is the periodic delta sum_n exp(i n sum_P phi_P).
The Wilson weight and exp(i theta Q) = prod_P exp(i theta [theta_P]/2pi) both factorise
over plaquettes and depend on each plaquette only through phi_P = [theta_P] in
(-pi, pi], which gives the formula (the whole measure is normalised: Z(0) = 1 at
beta = 0). The imaginary part of f_n is the integral of an odd function and vanishes;
Z(theta) is real, even and 2pi-periodic (theta -> theta + 2pi shifts n by one).

Observables at theta = 0. With r_n = I_n/I_0 (``scipy.special.ive`` ratios, no
overflow), weights w_n = r_n^V / sum_m r_m^V, u_n = I_n'/I_n and v_n = I_n''/I_n, where
I_n' = (I_{n-1} + I_{n+1})/2 and I_n'' = (I_{n-2} + 2 I_n + I_{n+2})/4:

    ln Z                    = V ln I_0(beta) + ln sum_n r_n^V,
    <cos theta_P>           = (1/V) d ln Z/d beta = sum_n w_n u_n,
    Var(sum_P cos)/V        = d<cos theta_P>/d beta
                            = V sum_n w_n (u_n - <cos>)^2 + sum_n w_n (v_n - u_n^2),
    <Q^2>                   = -Z''(0)/Z(0)
                            = -(1/4pi^2) sum_n w_n [V g''(n)/r_n + V(V-1) (g'(n)/r_n)^2],

with g'(n) = -(1/(pi I_0)) int_0^pi phi sin(n phi) e^{beta cos phi} dphi and
g''(n) = -(1/(pi I_0)) int_0^pi phi^2 cos(n phi) e^{beta cos phi} dphi (quadrature). Every
sum over n stops once V^2 pi^2 r_n^(V-2), a bound on all later terms, is below 1e-17 of
each running sum; r_n^(V-2) falls faster than exponentially, and L >= 2 (V >= 4) keeps
at least two undifferentiated factors r_n in every term.

Charge distribution. Q = sum_P phi_P / 2pi lies in (-V/2, V/2] and Q = V/2 needs every
phi_P = pi (measure zero), so |Q| <= D = (V - 1) // 2 and Z(theta)/Z(0) = sum_Q P(Q)
exp(i theta Q) is a trigonometric polynomial of degree D. Hence
P(Q) = (1/2pi) int dtheta Z(theta) e^{-i theta Q} / Z(0) is given *exactly* by the
trapezoid rule on K = 2M + 1 equally spaced angles once M >= D,

    P(Q) = (1/K) sum_{k<K} Z(2 pi k/K) cos(2 pi k Q/K) / Z(0),

and for M < D the error is the aliased mass sum_{j != 0} P(Q + jK), made negligible by
choosing M = 16 + 15 sqrt(<Q^2>) (capped at D) and checked: M doubles while P(+-M) is
above 1e-13, far above the round-off level of about 1e-15. Z(theta != 0) needs g at
non-integer nu, a 1D quadrature (``scipy.integrate.quad``, cosine weight). For
non-integer nu, g(nu) ~ e^-beta sin(pi nu) / (pi nu I_0) (the jump of e^{i nu phi} at
phi = +-pi), so those n-sums converge only like n^-V: fast from L = 3 (V = 9) on. On
the 2 x 2 torus the charge is |Q| <= 1, and P(+-1) = <Q^2>/2, P(0) = 1 - <Q^2> follow
from <Q^2> alone.

Accuracy and limits. L = 1 is refused: the single plaquette contains each of its two
links twice with opposite signs, theta_P = 0 identically. ln Z and the plaquette are
good to double precision. <Q^2> is a difference of terms of size V <phi^2>/4pi^2
(<phi^2> the single-plaquette mean square), so its absolute error is ~1e-16 of that; on
small lattices at large beta, where <Q^2> is exponentially small (tunnelling between
sectors is suppressed), it is not resolved below that level (round-off below zero is
clipped to 0). The plaquette susceptibility loses relative precision like
1e-16 beta^2 (v_0 - u_0^2 = O(1/beta^2) is a difference of O(1) numbers). P(Q) has an
absolute accuracy of about 1e-15 (negative round-off clipped to 0). The work grows like
sqrt(beta/V) terms, each one quadrature, at large beta.
"""
from __future__ import annotations

import math
from typing import Any

import scipy.integrate
import scipy.special

from .._checks import _is_int, nonnegative_float, nonnegative_int

__all__ = ["u1_2d", "u1_2d_charge_distribution"]

#: terms below this fraction of a running sum are dropped
_TOL = 1e-17
#: guard on the length of any n-sum
_MAX_TERMS = 100_000


def _check_L(L: Any) -> int:
    if not _is_int(L) or L < 2:
        raise ValueError(f"L must be an integer >= 2 (on the 1 x 1 torus theta_P = 0 identically), got L={L!r}")
    return int(L)


def _check_beta(beta: Any) -> float:
    return nonnegative_float("beta", beta)


class _Plaquette:
    """Integrals (1/(pi I_0)) int_0^pi phi^p {cos, sin}(nu phi) e^{beta cos phi} dphi for one beta."""

    def __init__(self, beta: float):
        self.beta = beta
        self.i0 = float(scipy.special.ive(0, beta))  # I_0(beta) e^-beta
        # beyond phi_max the integrand is below e^-700 of its peak
        self.phi_max = math.pi if 2.0 * beta <= 700.0 else math.acos(1.0 - 700.0 / beta)

    def ratio(self, n: int) -> float:
        """r_n = I_n / I_0."""
        return float(scipy.special.ive(abs(n), self.beta)) / self.i0

    def moment(self, power: int, nu: float, kind: str) -> float:
        beta = self.beta
        if kind == "sin" and nu == 0.0:
            return 0.0

        def f(phi: float) -> float:
            return phi ** power * math.exp(beta * (math.cos(phi) - 1.0))

        # the round-off floor of these oscillatory integrals is ~1e-16 int |integrand| <~
        # 1e-16 pi^(p+1) I_0 e^-beta; asking for less than 100 times that only draws warnings
        # (the results are good to ~1e-15 either way)
        opts = dict(epsabs=1e-14 * math.pi ** (power + 1) * self.i0, epsrel=1e-12, limit=400)
        if nu == 0.0:
            val = scipy.integrate.quad(f, 0.0, self.phi_max, **opts)[0]
        else:
            val = scipy.integrate.quad(f, 0.0, self.phi_max, weight=kind, wvar=nu, **opts)[0]
        return float(val) / (math.pi * self.i0)

    def g(self, nu: float) -> float:
        """g(nu) = f(theta)/I_0 at nu = n + theta/2pi."""
        return self.moment(0, nu, "cos")


def _theta0(L: int, beta: float) -> dict[str, float]:
    V = L * L
    pl = _Plaquette(beta)
    r_cache: dict[int, float] = {}

    def r(n: int) -> float:
        n = abs(n)
        if n not in r_cache:
            r_cache[n] = pl.ratio(n)
        return r_cache[n]

    # per n >= 0 (n and -n contribute alike): (mult r_n^V, r_n, I_n'/I_0, I_n''/I_0, Q^2 term)
    rows = []
    z_run = p_run = a_run = q_run = 0.0  # running sums of r^V, r^(V-1) I', r^(V-2) I'^2, the Q^2 terms
    for n in range(_MAX_TERMS):
        rn = r(n)
        if n > 0:
            # |every later term| <= this bound, and r_n falls faster than exponentially
            bound = 2.0 * V * V * math.pi ** 2 * rn ** (V - 2)
            scale = min(s for s in (z_run, p_run, a_run, abs(q_run)) if s > 0.0)
            if rn == 0.0 or bound <= _TOL * scale:
                break
        mult = 1 if n == 0 else 2
        d = 0.5 * (r(n - 1) + r(n + 1))
        e = 0.25 * (r(n - 2) + 2.0 * rn + r(n + 2))
        g1 = -pl.moment(1, float(n), "sin")  # g'(n)
        g2 = -pl.moment(2, float(n), "cos")  # g''(n)
        q = mult * (V * rn ** (V - 1) * g2 + V * (V - 1) * rn ** (V - 2) * g1 * g1)
        rows.append((mult * rn ** V, rn, d, e, q))
        z_run += mult * rn ** V
        p_run += mult * rn ** (V - 1) * d
        a_run += mult * rn ** (V - 2) * d * d
        q_run += q
    else:
        raise ArithmeticError(f"the Bessel sum did not converge in {_MAX_TERMS} terms at beta={beta!r}")

    z = sum(row[0] for row in rows)
    # weighted means over n of u_n = d_n/r_n, v_n = e_n/r_n; rows with r_n = 0 carry no weight
    plaq = sum(w * (d / rn) for w, rn, d, _e, _q in rows if rn > 0.0) / z
    spread = sum(w * (d / rn - plaq) ** 2 for w, rn, d, _e, _q in rows if rn > 0.0) / z
    curv = sum(w * (e / rn - (d / rn) ** 2) for w, rn, d, e, _q in rows if rn > 0.0) / z
    qsum = sum(row[4] for row in rows)
    # the terms are O(V <phi^2>) and cancel down to <Q^2>: clip round-off below zero
    q2 = max(0.0, -qsum / (4.0 * math.pi ** 2 * z))
    log_z = V * (math.log(pl.i0) + beta) + math.log(z)
    return {"log_z": log_z, "plaquette": plaq, "plaquette_susceptibility": V * spread + curv,
            "q2": q2, "_z_scaled": z}


def u1_2d(L: int, beta: float) -> dict[str, float]:
    """Exact plaquette, action, plaquette susceptibility and topological susceptibility on an L x L torus.

    Parameters
    ----------
    L : int
        Linear size of the periodic lattice, L >= 2 (V = L^2 plaquettes).
    beta : float
        Wilson coupling, finite and >= 0 (S = -beta sum_P cos theta_P).

    Returns
    -------
    dict
        Plain floats: ``plaquette`` = <cos theta_P>; ``action_per_plaquette`` = <S>/V =
        -beta <cos theta_P>; ``plaquette_susceptibility`` = Var(sum_P cos theta_P)/V =
        d<cos theta_P>/d beta (``heat_capacity`` = beta^2 times it); ``q2`` = <Q^2> of the
        geometric charge; ``chi_top`` = <Q^2>/V; ``log_z`` = ln Z with the normalised Haar
        measure on every link (ln Z = 0 at beta = 0).

    Notes
    -----
    At beta = 0 the plaquette angles are uniform: plaquette 0 and chi_top = 1/12. For
    L -> infinity the plaquette tends to I_1(beta)/I_0(beta).
    """
    L = _check_L(L)
    beta = _check_beta(beta)
    out = _theta0(L, beta)
    V = L * L
    susc = out["plaquette_susceptibility"]
    return {
        "plaquette": float(out["plaquette"]),
        "action_per_plaquette": float(-beta * out["plaquette"]),
        "plaquette_susceptibility": float(susc),
        "heat_capacity": float(beta * beta * susc),
        "q2": float(out["q2"]),
        "chi_top": float(out["q2"] / V),
        "log_z": float(out["log_z"]),
    }


def _z_theta_scaled(pl: _Plaquette, V: int, x: float, z0: float) -> float:
    """sum_n g(n + x)^V for 0 < x < 1: two branches nu = x + j and nu = 1 - x + j (g is even)."""
    total = 0.0
    for start in (x, 1.0 - x):
        small = 0
        for j in range(_MAX_TERMS):
            t = pl.g(start + j) ** V
            total += t
            # terms fall like nu^-V; three in a row below the tolerance end the branch
            small = small + 1 if abs(t) <= _TOL * z0 else 0
            if small == 3:
                break
        else:
            raise ArithmeticError(f"the sum for Z(theta) did not converge in {_MAX_TERMS} terms")
    return total


def _fourier_distribution(pl: _Plaquette, V: int, M: int, z0: float) -> dict[int, float]:
    K = 2 * M + 1
    zk = [_z_theta_scaled(pl, V, k / K, z0) for k in range(1, M + 1)]
    out = {}
    for Q in range(-M, M + 1):
        s = z0 + 2.0 * sum(zz * math.cos(2.0 * math.pi * k * Q / K) for k, zz in enumerate(zk, start=1))
        out[Q] = s / (K * z0)
    return out


def u1_2d_charge_distribution(L: int, beta: float, qmax: int | None = None) -> dict[int, float]:
    """Exact distribution P(Q) of the geometric topological charge on an L x L torus.

    Parameters
    ----------
    L : int
        Linear size, L >= 2.
    beta : float
        Wilson coupling, finite and >= 0.
    qmax : int or None
        Return Q = -qmax..qmax (P = 0 beyond the largest possible |Q| = (L^2 - 1)//2).
        None: |Q| <= M with M = min((L^2 - 1)//2, 16 + 15 sqrt(<Q^2>)), which reaches far
        past the point where P(Q) falls to the round-off level of about 1e-15.

    Returns
    -------
    dict[int, float]
        P(Q), summing to 1, with P(Q) = P(-Q) and sum_Q Q^2 P(Q) = <Q^2> of :func:`u1_2d`.

    Notes
    -----
    P(Q) = (1/2pi) int dtheta Z(theta) e^{-i theta Q} / Z(0) by the trapezoid rule in
    theta, exact for the trigonometric polynomial Z(theta)/Z(0) (see the module notes).
    """
    L = _check_L(L)
    beta = _check_beta(beta)
    if qmax is not None:
        qmax = nonnegative_int("qmax", qmax)
    V = L * L
    D = (V - 1) // 2
    base = _theta0(L, beta)
    q2 = base["q2"]
    if D == 1:  # L = 2: Q in {-1, 0, 1}, fixed by <Q^2>
        dist = {-1: 0.5 * q2, 0: 1.0 - q2, 1: 0.5 * q2}
    else:
        pl = _Plaquette(beta)
        z0 = base["_z_scaled"]
        M = min(D, 16 + math.ceil(15.0 * math.sqrt(q2)))
        if qmax is not None:
            M = min(D, max(M, qmax))
        while True:
            dist = _fourier_distribution(pl, V, M, z0)
            # round-off leaves |P| ~ 1e-15 in the far tail; a real tail at +-M means aliasing
            if M == D or max(abs(dist[M]), abs(dist[M - 1])) < 1e-13:
                break
            M = min(D, 2 * M)
    top = max(dist) if qmax is None else qmax
    return {Q: float(max(0.0, dist.get(Q, 0.0))) for Q in range(-top, top + 1)}
