r"""The classical O(n) model on a periodic chain of L sites, exactly (transfer operator).

H = -J sum_x s_x . s_{x+1} with unit n-vectors s_x (n >= 2), weight exp(-beta H),
K = beta J. With the normalised rotation-invariant measure dmu on S^{n-1} the
transfer operator (T f)(s) = int dmu(s') exp(K s.s') f(s') commutes with O(n), so
(Funk-Hecke) it is diagonal on the spaces H_l of degree-l spherical harmonics,
l = 0, 1, 2, ..., with eigenvalue and multiplicity

    lambda_l(K) = Gamma(n/2) (2/K)^nu0 I_{nu0+l}(K),     nu0 = n/2 - 1,
    d_l = dim H_l = (2l + n - 2) (l + n - 3)! / (l! (n - 2)!)     (d_0 = 1).

Hence Z = Tr T^L = sum_l d_l lambda_l^L (lambda_0(0) = 1, so Z = 1 at K = 0).
Only ratios enter: lambda_{l+1}/lambda_l = rho_{nu0+l}(K) with rho_nu = I_{nu+1}/I_nu,
taken from the exponentially scaled ``scipy.special.ive`` (or, where that underflows,
from the continued fraction rho_nu/K = 1/(2(nu+1) + K^2/(2(nu+2) + ...))), and the sum
stops once every new term is below 1e-17 of its running sum and falling.

Derivatives. From I_nu' = I_{nu+1} + (nu/K) I_nu,
g_l = d ln lambda_l / dK = l/K + rho_{nu0+l} and rho_nu' = 1 - rho_nu^2 - (2nu+1) rho_nu/K.
With w_l = d_l (lambda_l/lambda_0)^L, averages <f> = sum_l w_l f_l / sum_l w_l and
delta_l = g_l - g_0 (which keeps the large pieces from cancelling):

    d ln Z/dK     = L (g_0 + <delta>)                 energy  e = -J (d ln Z/dK) / L,
    d^2 ln Z/dK^2 = L <g'> + L^2 (<delta^2> - <delta>^2),   c = K^2 (d^2 ln Z/dK^2) / L.

Spin correlations. With s^a the multiplication operators,
Z <s_0 . s_r> = sum_a Tr[s^a T^r s^a T^(L-r)] = sum_{l,l'} lambda_l^r lambda_{l'}^(L-r) A_{ll'}
and A_{ll'} = sum_a Tr[P_l s^a P_{l'} s^a] (P_l projects on H_l). Multiplying a degree-l
harmonic by s^a gives harmonics of degree l - 1 and l + 1 only, so A is symmetric and
non-zero only for |l - l'| = 1; s.s = 1 gives sum_{l'} A_{ll'} = Tr P_l = d_l, i.e.
a_l + a_{l-1} = d_l for a_l = A_{l,l+1} (a_{-1} = 0), solved by

    a_l = C(l + n - 2, n - 2) = d_l (l + n - 2)/(2l + n - 2)

(the familiar fraction (l+1)/(2l+1) of Y_l s going up to l + 1 for n = 3; a_l = 1 for
n = 2, where it is the sum over m in Z of I_|m|^(L-r) I_|m+1|^r). So

    Z <s_0 . s_r> = sum_l a_l [lambda_l^(L-r) lambda_{l+1}^r + lambda_{l+1}^(L-r) lambda_l^r],

which is Z at r = 0, and summing the geometric series in r with q_l = lambda_{l+1}/lambda_l,

    chi = <M.M>/L = sum_r <s_0 . s_r> = Z^-1 sum_l a_l lambda_l^L (1 + q_l)(1 - q_l^L)/(1 - q_l).

An antiferromagnet (K < 0) has lambda_l(K) = (-1)^l lambda_l(|K|) (Y_l(-s) = (-1)^l Y_l(s)):
the sums acquire signs (-1)^(l L) and the correlations a staggering (-1)^r. For odd L
(frustrated) the terms then cancel; a sum that keeps fewer than ~10 significant digits
(cancellation by more than 1e6) raises an ArithmeticError. At large K the heat capacity
carries a relative error of roughly 1e-16 K^2 (1e-10 near K = 1e3): rho_nu' ~ 1/K^2 is a
difference of O(1/K) terms; energy and chi stay at double precision.
"""
from __future__ import annotations

import math
from typing import Any

import scipy.special

from .._checks import _is_int, finite_float, nonnegative_float

__all__ = ["on_chain", "on_chain_correlation"]

_TOL = 1e-17            # a sector's term is dropped below this fraction of the running sum
_L_MAX = 100_000        # most harmonic sectors summed before giving up
_CANCEL = 1e-6          # |sum of signed terms| / sum of |terms| below this raises (K < 0, odd L)
_TINY = 1e-290          # ive values below this are not trusted for a ratio (underflow)


def _check_args(n: Any, L: Any, beta: Any, J: Any) -> tuple[int, int, float, float]:
    if not _is_int(n) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got n={n!r}")
    if not _is_int(L) or L < 2:
        raise ValueError(f"L must be an integer >= 2, got L={L!r}")
    beta = nonnegative_float("beta", beta)
    J = finite_float("J", J)
    K = beta * J
    if not math.isfinite(K):
        raise ValueError(f"K = beta*J must be finite, got beta={beta!r}, J={J!r}")
    return int(n), int(L), beta, K


def _dim_harmonic(n: int, l: int) -> int:
    """d_l, the dimension of the degree-l spherical harmonics on S^{n-1}."""
    if l == 0:
        return 1
    return (2 * l + n - 2) * math.comb(l + n - 3, n - 2) // l


def _dim_up(n: int, l: int) -> int:
    """a_l = sum_a Tr[P_l s^a P_{l+1} s^a] = C(l + n - 2, n - 2)."""
    return math.comb(l + n - 2, n - 2)


def _ratio_over_k(nu: float, k: float) -> float:
    """I_{nu+1}(k) / (k I_nu(k)) by the continued fraction 1/(2(nu+1) + k^2/(2(nu+2) + ...))."""
    a = k * k
    f = c = 2.0 * (nu + 1.0)
    d = 0.0
    for j in range(2, 1_000_000):
        b = 2.0 * (nu + j)
        d = b + a * d
        d = 1.0 / (d if d != 0.0 else 1e-300)
        c = b + a / c
        delta = c * d
        f *= delta
        if abs(delta - 1.0) < 1e-16:
            return 1.0 / f
    raise ArithmeticError(f"Bessel-ratio continued fraction did not converge (nu={nu}, K={k})")


def _log_lambda0(n: int, k: float) -> float:
    """ln lambda_0(k) = ln 0F1(; n/2; k^2/4) (normalised measure: lambda_0(0) = 1)."""
    nu = 0.5 * n - 1.0
    if k <= 1.0:
        x, term, s = 0.25 * k * k, 1.0, 0.0
        for j in range(1, 200):
            term *= x / (j * (nu + j))
            s += term
            if term < 1e-17 * s:
                break
        return math.log1p(s)
    return math.lgamma(nu + 1.0) + nu * math.log(2.0 / k) + math.log(float(scipy.special.ive(nu, k))) + k


def _log_one_minus_pow(q: float, L: int) -> float:
    """ln(1 - q^L) for -1 < q < 1."""
    if q == 0.0:
        return 0.0
    y = L * math.log(abs(q))  # ln |q|^L
    if q < 0 and L % 2 == 1:
        return math.log1p(math.exp(y))
    return math.log(-math.expm1(y))


def _chain_sums(n: int, L: int, K: float, r: int | None = None) -> dict[str, float]:
    """ln Z, d ln Z/dK, d^2 ln Z/dK^2, chi and (if r is given) <s_0 . s_r>, for K != 0."""
    k = abs(K)
    sgn = -1.0 if K < 0 else 1.0
    nu0 = 0.5 * n - 1.0
    logk = math.log(k)

    # running signed sums and sums of magnitudes, relative to lambda_0^L
    names = ("z", "d1", "d2a", "d2b", "chi") + (("cr",) if r is not None else ())
    tot = dict.fromkeys(names, 0.0)
    mag = dict.fromkeys(names, 0.0)
    prev = dict.fromkeys(names, math.inf)

    e_cur = float(scipy.special.ive(nu0, k))
    log_r = 0.0          # ln |lambda_l / lambda_0|
    rho0 = None
    for l in range(_L_MAX):
        nu = nu0 + l
        e_next = float(scipy.special.ive(nu + 1.0, k))
        if math.isnan(e_next) or math.isnan(e_cur):
            raise ArithmeticError(f"scipy.special.ive fails at K={K!r} (|K| beyond about 1e9)")
        if e_cur > _TINY and e_next > _TINY:
            rho = e_next / e_cur
            t = rho / k
        else:
            t = _ratio_over_k(nu, k)
            rho = k * t
        log_rho = logk + math.log(t)
        if rho0 is None:
            rho0 = rho
        sign = 1.0 if (sgn > 0 or (l * L) % 2 == 0) else -1.0   # sign of (lambda_l/lambda_0)^L
        log_w = math.log(_dim_harmonic(n, l)) + L * log_r
        w = math.exp(log_w)
        # delta_l = g_l - g_0 = (l + k (rho_l - rho_0)) / k  (> 0 for l >= 1)
        if l == 0:
            w_delta = w_delta2 = 0.0
            w_gp = w * (1.0 - rho * rho - (2.0 * nu + 1.0) * t)
        else:
            log_delta = math.log(l + k * (rho - rho0)) - logk
            w_delta = math.exp(log_w + log_delta)
            w_delta2 = math.exp(log_w + 2.0 * log_delta)
            w_gp = w * (1.0 - rho * rho - (2.0 * nu + 1.0) * t) - math.exp(log_w + math.log(l) - 2.0 * logk)
        # chi: a_l lambda_l^L (1 + q)(1 - q^L)/(1 - q), q = lambda_{l+1}/lambda_l = sgn rho
        q = sgn * rho
        log_g = math.log1p(q) + _log_one_minus_pow(q, L) - math.log1p(-q)
        terms = {"z": w, "d1": w_delta, "d2a": w_delta2, "d2b": w_gp,
                 "chi": math.exp(math.log(_dim_up(n, l)) + L * log_r + log_g)}
        if r is not None:
            # a_l lambda_l^L (q^r + q^(L-r)); the sign of q^j is sgn^j
            pr = (sgn ** r) * math.exp(r * log_rho) if r else 1.0
            pl = (sgn ** (L - r)) * math.exp((L - r) * log_rho)
            terms["cr"] = math.exp(math.log(_dim_up(n, l)) + L * log_r) * (pr + pl)
        done = True
        for key, v in terms.items():
            v *= sign
            tot[key] += v
            mag[key] += abs(v)
            if abs(v) > _TOL * mag[key] or abs(v) > prev[key]:
                done = False
            prev[key] = abs(v)
        if done:
            break
        log_r += log_rho
        e_cur = e_next
    else:
        raise ArithmeticError(f"the sector sum did not converge within {_L_MAX} harmonics "
                              f"(K={K!r}, L={L}, n={n}): K/L is too large")
    S = tot["z"]
    if S <= _CANCEL * mag["z"]:
        raise ArithmeticError(f"the antiferromagnetic sector sum cancels to below {_CANCEL:g} of its terms "
                              f"(K={K!r}, L={L} odd, n={n}); the result would not be accurate")
    m1, m2, gp = tot["d1"] / S, tot["d2a"] / S, tot["d2b"] / S
    out = {"log_z": L * _log_lambda0(n, k) + math.log(S),
           "dlnz": sgn * L * (rho0 + m1),
           "d2lnz": L * gp + L * L * (m2 - m1 * m1),
           "chi": tot["chi"] / S}
    if r is not None:
        out["cr"] = tot["cr"] / S
    return out


def on_chain(n: int, L: int, beta: float, J: float = 1.0) -> dict[str, float]:
    """Exact thermodynamics of the O(n) model on a periodic chain of ``L`` sites.

    Parameters
    ----------
    n : int
        Number of spin components, ``n >= 2`` (2: XY, 3: Heisenberg).
    L : int
        Number of sites, ``L >= 2`` (periodic; at ``L = 2`` both bonds join the same pair).
    beta : float
        Inverse temperature, finite and ``>= 0``.
    J : float, optional
        Coupling in ``H = -J sum_x s_x . s_{x+1}``; negative is antiferromagnetic.

    Returns
    -------
    dict
        Python floats: ``energy`` ``<H>/L``; ``chi`` ``<M.M>/L`` (``<M> = 0``);
        ``heat_capacity`` ``beta^2 (<H^2> - <H>^2)/L``; ``m2`` ``<M.M>/L^2``;
        ``nn_correlation`` ``<s_0 . s_1>``; ``log_z`` ``ln Z`` with each spin's measure
        normalised to 1 (so ``Z = 1`` at ``beta = 0``).

    Raises
    ------
    ValueError
        A parameter out of range, named with its value.
    ArithmeticError
        ``beta*|J|`` so large against ``L`` that 100000 harmonics do not converge, or an
        antiferromagnet on an odd ring whose sector sum cancels beyond double precision.
    """
    n, L, beta, K = _check_args(n, L, beta, J)
    if K == 0.0:
        return {"energy": 0.0, "chi": 1.0, "heat_capacity": 0.0, "m2": 1.0 / L,
                "nn_correlation": 0.0, "log_z": 0.0}
    s = _chain_sums(n, L, K)
    nn = s["dlnz"] / L
    return {"energy": -J * nn, "chi": s["chi"], "heat_capacity": K * K * s["d2lnz"] / L,
            "m2": s["chi"] / L, "nn_correlation": nn, "log_z": s["log_z"]}


def on_chain_correlation(n: int, L: int, beta: float, r: int, J: float = 1.0) -> float:
    """Exact spin-spin correlation ``<s_0 . s_r>`` on a periodic O(n) chain.

    Parameters
    ----------
    n, L, beta, J
        As in :func:`on_chain`.
    r : int
        Separation, taken modulo ``L``.

    Returns
    -------
    float
        ``<s_0 . s_r>``; 1 at ``r = 0``, and ``sum_r <s_0 . s_r>`` is ``on_chain(...)["chi"]``.
    """
    n, L, beta, K = _check_args(n, L, beta, J)
    if not _is_int(r):
        raise ValueError(f"r must be an integer, got r={r!r}")
    r = int(r) % L
    if r == 0:
        return 1.0
    if K == 0.0:
        return 0.0
    return _chain_sums(n, L, K, r)["cr"]
