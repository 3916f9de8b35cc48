"""Compact U(1) gauge theory in 2D: the exact formulas against independent brute force.

The 2 x 2 torus (4 sites, 8 links, 4 plaquettes) is integrated directly over its links:
three links on a maximal tree are gauge-fixed to 0, the other five are integrated with
the normalised measure. Two brute-force routes:

* a uniform N^5 grid (trapezoid rule) with the plaquettes built from the links by the
  lattice formula. The integrand of ln Z and the plaquette moments is smooth and periodic,
  so this converges spectrally. The geometric charge is piecewise constant, with jumps
  wherever a plaquette angle crosses pi, so grid averages involving Q converge only
  like ~1/N (a few per cent at N = 20), which is too slow for 1e-8. The grid is used
  for Q only as a coarse check.
* nested Gauss-Legendre quadrature, split at every jump of Q, for the Q observables
  (converged to ~1e-15).

The module's Fourier route for P(Q) (L >= 3) is checked against the Irwin-Hall law at
beta = 0 and against a direct Fourier integral for the density of the summed plaquette
angles at beta > 0.
"""
import functools
import math
from fractions import Fraction

import numpy as np
import pytest
import scipy.integrate
import scipy.special

from portable_lattice.exact.u1_2d import u1_2d, u1_2d_charge_distribution

BETAS = (0.5, 1.0, 2.0)
TWO_PI = 2.0 * np.pi


def _plaquette_angles(U):
    """theta_P(x, y) = U_x(x, y) + U_y(x+1, y) - U_x(x, y+1) - U_y(x, y) for links U[mu, x, y, ...]."""
    return U[0] + np.roll(U[1], -1, axis=0) - np.roll(U[0], -1, axis=1) - U[1]


def _reduce(t):
    """t into (-pi, pi]."""
    return np.pi - np.mod(np.pi - t, TWO_PI)


def _set_free_links(U, a, b, c, d, e):
    """The 2 x 2 torus in the maximal-tree gauge U_x(0,0) = U_y(0,0) = U_y(1,0) = 0."""
    U[0, 1, 0], U[0, 0, 1], U[0, 1, 1], U[1, 0, 1], U[1, 1, 1] = a, b, c, d, e
    return U


@functools.lru_cache(maxsize=None)
def _grid(N):
    """Uniform N^5 grid over the five free links: per beta, ln Z, <cos theta_P>, Var(sum cos)/V, <Q^2>."""
    t = -np.pi + TWO_PI * (np.arange(N) + 1) / N  # N points in (-pi, pi]
    b, c, d, e = np.meshgrid(t, t, t, t, indexing="ij", sparse=False)
    acc = {beta: np.zeros(4) for beta in BETAS}
    for a in t:
        U = _set_free_links(np.zeros((2, 2, 2) + b.shape), a, b, c, d, e)
        theta = _plaquette_angles(U)
        cs = np.cos(theta).sum(axis=(0, 1))
        Q = np.rint(_reduce(theta).sum(axis=(0, 1)) / TWO_PI)
        for beta in BETAS:
            w = np.exp(beta * (cs - 4.0))  # scaled by e^{-4 beta}
            acc[beta] += [w.sum(), (w * cs).sum(), (w * cs * cs).sum(), (w * Q * Q).sum()]
    out = {}
    for beta, (z, s1, s2, q2) in acc.items():
        mean = s1 / z
        out[beta] = {"log_z": math.log(z / N ** 5) + 4.0 * beta, "plaquette": mean / 4.0,
                     "plaquette_susceptibility": (s2 / z - mean ** 2) / 4.0, "q2": q2 / z}
    return out


def _gauss_pieces(edges, nodes):
    """Gauss-Legendre nodes and weights on each interval between consecutive edges (last axis)."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    lo, hi = edges[..., :-1, None], edges[..., 1:, None]
    pts = 0.5 * (lo + hi) + 0.5 * (hi - lo) * x
    wts = 0.5 * (hi - lo) * w
    shape = pts.shape[:-2] + (-1,)
    return pts.reshape(shape), wts.reshape(shape)


@functools.lru_cache(maxsize=None)
def _piecewise(beta, nodes):
    """The 2 x 2 torus by nested Gauss-Legendre quadrature, split at every jump of Q.

    In the tree gauge the plaquettes are (-b, a - c, b + e - d, c + d - a - e) (checked in
    test_tree_gauge_plaquettes). The shifts a -> a + c and e -> e + d - b leave the Haar
    measure invariant and turn them into (-b, a, e, b - a - e), free of c and d. With
    a, b, e in (-pi, pi), Q = -round((b - a - e)/2 pi), which jumps where b - a - e is an
    odd multiple of pi: the e-integral is split there, and the a-integral at a = b, where
    those jumps reach the edges of the e range. Every piece is then smooth.
    """
    pi = np.pi
    b, wb = _gauss_pieces(np.array([-pi, pi]), nodes)
    a_edges = np.sort(np.stack(np.broadcast_arrays(-pi, np.clip(b, -pi, pi), pi), axis=-1), axis=-1)
    a, wa = _gauss_pieces(a_edges, nodes)  # (nb, 2 nodes)
    shift = b[:, None] - a
    cuts = [np.clip(shift + k * pi, -pi, pi) for k in (-3, -1, 1, 3)]
    e_edges = np.sort(np.stack(np.broadcast_arrays(-pi, *cuts, pi), axis=-1), axis=-1)
    e, we = _gauss_pieces(e_edges, nodes)  # (nb, na, 5 nodes)
    B, A = b[:, None, None], a[:, :, None]
    s = B - A - e
    cs = np.cos(B) + np.cos(A) + np.cos(e) + np.cos(s)
    w = np.exp(beta * (cs - 4.0)) * (wb[:, None, None] * wa[:, :, None] * we) / TWO_PI ** 3
    Q = -np.rint(s / TWO_PI)
    z = w.sum()
    out = {"log_z": math.log(z) + 4.0 * beta, "plaquette": (w * cs).sum() / (4.0 * z),
           "q2": (w * Q * Q).sum() / z}
    out["P"] = {q: (w * (Q == q)).sum() / z for q in range(-2, 3)}
    return out


def test_tree_gauge_plaquettes():
    rng = np.random.default_rng(7)
    a, b, c, d, e = rng.uniform(-np.pi, np.pi, size=(5, 100))
    theta = _plaquette_angles(_set_free_links(np.zeros((2, 2, 2, 100)), a, b, c, d, e))
    np.testing.assert_allclose(theta[0, 0], -b, atol=1e-14)
    np.testing.assert_allclose(theta[1, 0], a - c, atol=1e-14)
    np.testing.assert_allclose(theta[0, 1], b + e - d, atol=1e-14)
    np.testing.assert_allclose(theta[1, 1], c + d - a - e, atol=1e-14)
    # the geometric charge is an integer on every configuration
    Q = _reduce(theta).sum(axis=(0, 1)) / TWO_PI
    np.testing.assert_allclose(Q, np.rint(Q), atol=1e-12)


@pytest.mark.parametrize("beta", BETAS)
def test_smooth_observables_against_the_link_grid(beta):
    coarse, fine = _grid(16)[beta], _grid(20)[beta]
    for key in ("log_z", "plaquette", "plaquette_susceptibility"):
        assert abs(coarse[key] - fine[key]) < 1e-10, key  # the grid has converged
    ex = u1_2d(2, beta)
    assert ex["log_z"] == pytest.approx(fine["log_z"], abs=1e-12)
    assert ex["plaquette"] == pytest.approx(fine["plaquette"], abs=1e-12)
    assert ex["plaquette_susceptibility"] == pytest.approx(fine["plaquette_susceptibility"], abs=1e-11)
    assert ex["action_per_plaquette"] == pytest.approx(-beta * ex["plaquette"], rel=1e-15)
    assert ex["heat_capacity"] == pytest.approx(beta ** 2 * ex["plaquette_susceptibility"], rel=1e-15)


@pytest.mark.parametrize("beta", BETAS)
def test_charge_against_piecewise_quadrature(beta):
    ref, finer = _piecewise(beta, 30), _piecewise(beta, 40)
    assert abs(ref["q2"] - finer["q2"]) < 1e-13  # the quadrature has converged
    assert all(abs(ref["P"][q] - finer["P"][q]) < 1e-13 for q in ref["P"])
    ex = u1_2d(2, beta)
    assert ex["q2"] == pytest.approx(finer["q2"], abs=1e-10)
    assert ex["chi_top"] == pytest.approx(finer["q2"] / 4, abs=1e-10)
    assert ex["plaquette"] == pytest.approx(finer["plaquette"], abs=1e-12)
    assert ex["log_z"] == pytest.approx(finer["log_z"], abs=1e-12)
    P = u1_2d_charge_distribution(2, beta, qmax=2)
    assert sorted(P) == [-2, -1, 0, 1, 2]
    for q in range(-2, 3):
        assert P[q] == pytest.approx(finer["P"][q], abs=1e-10), q
    assert P[2] == P[-2] == 0.0  # |Q| <= 1 on the 2 x 2 torus
    # the link grid, with its slow (discontinuous-integrand) convergence, agrees coarsely
    # and gets closer as N grows
    err16, err20 = (abs(_grid(N)[beta]["q2"] - finer["q2"]) for N in (16, 20))
    assert err20 < err16 and err20 < 0.05 * finer["q2"]


def _irwin_hall_charges(V):
    """P(Q) at beta = 0: V uniform phi_P / 2pi in (-1/2, 1/2] conditioned on an integer sum."""
    def density(x):  # Irwin-Hall density of a sum of V uniforms on (0, 1), exactly
        return sum((-1) ** k * math.comb(V, k) * (x - k) ** (V - 1) for k in range(math.floor(x) + 1)
                   if x > k) / math.factorial(V - 1)
    D = (V - 1) // 2
    p = {q: density(Fraction(q) + Fraction(V, 2)) for q in range(-D, D + 1)}
    total = sum(p.values())
    return {q: float(v / total) for q, v in p.items()}


@pytest.mark.parametrize("L", [2, 3, 4])
def test_beta_zero(L):
    ex = u1_2d(L, 0.0)
    assert ex["plaquette"] == 0.0 and ex["action_per_plaquette"] == 0.0 and ex["log_z"] == 0.0
    assert ex["chi_top"] == pytest.approx(1.0 / 12.0, rel=1e-13)
    assert ex["plaquette_susceptibility"] == pytest.approx(0.5, rel=1e-14)  # Var(cos) of a uniform angle
    assert u1_2d(L, 1e-9)["plaquette"] == pytest.approx(5e-10, rel=1e-6)  # -> beta/2, continuously
    P = u1_2d_charge_distribution(L, 0.0)
    ref = _irwin_hall_charges(L * L)
    assert sorted(P) == sorted(ref)
    for q in ref:
        assert P[q] == pytest.approx(ref[q], abs=1e-14), q


def _charges_from_angle_sum_density(V, beta, cutoff=40.0):
    """P(Q) proportional to the density of S = sum_P phi_P at 2 pi Q, phi_P i.i.d. with weight
    e^{beta cos phi} on (-pi, pi]: p_S(s) = (1/pi) int_0^inf dnu g(nu)^V cos(nu s), g the
    characteristic function, by Gauss-Legendre in nu (|g| ~ 1/nu, so the tail past the
    cutoff is ~ cutoff^-V) and phi."""
    x, w = np.polynomial.legendre.leggauss(16)
    lo = np.arange(0.0, cutoff, 0.5)
    nu, wnu = (lo[:, None] + 0.25 * (x + 1)).ravel(), np.tile(0.25 * w, lo.size)
    xp, wp = np.polynomial.legendre.leggauss(200)
    phi, wphi = 0.5 * np.pi * (xp + 1), 0.5 * np.pi * wp * np.exp(beta * (np.cos(0.5 * np.pi * (xp + 1)) - 1))
    g = np.cos(np.outer(nu, phi)) @ wphi / wphi.sum()
    D = (V - 1) // 2
    Q = np.arange(-D, D + 1)
    p = np.cos(TWO_PI * np.outer(Q, nu)) @ (wnu * g ** V)
    return dict(zip(Q.tolist(), (p / p.sum()).tolist()))


@pytest.mark.parametrize("beta", BETAS)
def test_fourier_charge_distribution_on_3x3(beta):
    P = u1_2d_charge_distribution(3, beta)
    ref = _charges_from_angle_sum_density(9, beta)
    assert sorted(P) == sorted(ref)
    for q in ref:
        assert P[q] == pytest.approx(ref[q], abs=1e-12), q


@pytest.mark.parametrize("L", [2, 3, 4, 6])
@pytest.mark.parametrize("beta", [0.3, 1.0, 2.5])
def test_charge_distribution_is_normalised_symmetric_and_matches_q2(L, beta):
    P = u1_2d_charge_distribution(L, beta)
    q2 = u1_2d(L, beta)["q2"]
    assert all(type(v) is float and v >= 0.0 for v in P.values())
    assert sum(P.values()) == pytest.approx(1.0, abs=1e-13)
    assert all(P[q] == pytest.approx(P[-q], abs=1e-15) for q in P)
    assert sum(q * q * p for q, p in P.items()) == pytest.approx(q2, rel=1e-11)
    extra = u1_2d_charge_distribution(L, beta, qmax=max(P) + 3)
    assert all(extra[q] == pytest.approx(P.get(q, 0.0), abs=1e-15) for q in extra)


@pytest.mark.parametrize("beta", BETAS)
def test_large_lattice_limit(beta):
    ex = u1_2d(16, beta)
    i_ratio = float(scipy.special.ive(1, beta) / scipy.special.ive(0, beta))
    assert ex["plaquette"] == pytest.approx(i_ratio, rel=1e-13)
    # <Q^2>/V -> <phi^2>/4pi^2 of one plaquette angle with weight e^{beta cos phi}
    num = scipy.integrate.quad(lambda p: p * p * math.exp(beta * math.cos(p)), -math.pi, math.pi, epsrel=1e-13)[0]
    den = scipy.integrate.quad(lambda p: math.exp(beta * math.cos(p)), -math.pi, math.pi, epsrel=1e-13)[0]
    assert ex["chi_top"] == pytest.approx(num / den / (4 * math.pi ** 2), rel=1e-11)


def test_plaquette_susceptibility_is_the_beta_derivative():
    h = 1e-4
    slope = (u1_2d(3, 1.0 + h)["plaquette"] - u1_2d(3, 1.0 - h)["plaquette"]) / (2 * h)
    assert u1_2d(3, 1.0)["plaquette_susceptibility"] == pytest.approx(slope, rel=1e-7)


def test_outputs_are_plain_floats_and_numpy_scalars_are_accepted():
    ex = u1_2d(np.int64(3), np.float64(0.7))
    assert ex == u1_2d(3, 0.7)
    assert all(type(v) is float for v in ex.values())
    P = u1_2d_charge_distribution(np.int64(3), 0.7, qmax=np.int32(5))
    assert sorted(P) == list(range(-5, 6)) and P[5] == 0.0


@pytest.mark.parametrize("L", [1, 0, -2, 2.0, 2.5, True, "3", None])
def test_bad_L(L):
    with pytest.raises(ValueError, match=r"L must be an integer >= 2.*got L="):
        u1_2d(L, 1.0)
    with pytest.raises(ValueError, match=r"got L="):
        u1_2d_charge_distribution(L, 1.0)


@pytest.mark.parametrize("beta", [-0.1, float("nan"), float("inf"), "1", None, True])
def test_bad_beta(beta):
    with pytest.raises(ValueError, match=r"beta must be .*got beta="):
        u1_2d(3, beta)
    with pytest.raises(ValueError, match=r"got beta="):
        u1_2d_charge_distribution(3, beta)


@pytest.mark.parametrize("qmax", [-1, 1.5, "2"])
def test_bad_qmax(qmax):
    with pytest.raises(ValueError, match=r"qmax must be a non-negative integer, got qmax="):
        u1_2d_charge_distribution(3, 1.0, qmax=qmax)
