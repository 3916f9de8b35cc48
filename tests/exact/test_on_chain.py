"""The O(n) chain's transfer-operator results against brute-force quadrature of small rings.

Every reference integrand is an entire, periodic (in the angles) function, so the uniform
grid in an angle and Gauss-Legendre (or Gauss-Jacobi) in cos(theta) converge
spectrally: the references are good to ~1e-14, far below the 1e-9 tolerance.
"""
import math

import numpy as np
import pytest
import scipy.special

from portable_lattice.exact.on_chain import _dim_harmonic, _dim_up, on_chain, on_chain_correlation

KS = (0.3, 1.0, 2.5)


def _moments(points_B, points_MM, weights, K, L):
    """energy, chi, heat capacity per site (J = 1) from the bond sum B and M.M on a weighted grid."""
    w = weights * np.exp(K * (points_B - L))          # shifted by the maximum of B: no overflow
    Z = w.sum()
    B1 = (w * points_B).sum() / Z
    B2 = (w * (points_B - B1) ** 2).sum() / Z
    return {"energy": -B1 / L, "chi": (w * points_MM).sum() / Z / L, "heat_capacity": K * K * B2 / L}


def _xy_ring(L, N):
    """Bond sum and M.M of the XY ring on an N-point grid per free angle, with theta_0 = 0."""
    grid = 2.0 * math.pi * np.arange(N) / N
    free = list(np.meshgrid(*([grid] * (L - 1)), indexing="ij"))
    theta = [np.zeros_like(free[0])] + free
    B = sum(np.cos(theta[x] - theta[(x + 1) % L]) for x in range(L))
    MM = sum(np.cos(t) for t in theta) ** 2 + sum(np.sin(t) for t in theta) ** 2
    return B.ravel(), MM.ravel(), np.ones(B.size)


def _sphere_grid(nu, nphi):
    u, wu = np.polynomial.legendre.leggauss(nu)
    phi = 2.0 * math.pi * np.arange(nphi) / nphi
    U, P = np.meshgrid(u, phi, indexing="ij")
    S = np.sqrt(1.0 - U ** 2)
    pts = np.stack([S * np.cos(P), S * np.sin(P), U], axis=-1).reshape(-1, 3)
    return pts, np.repeat(wu, nphi) / nphi


def _heisenberg_triangle(nu=48, nphi=48):
    """n = 3, L = 3: s_0 = z, s_1 in the xz plane (rotation about z), s_2 anywhere."""
    u1, w1 = np.polynomial.legendre.leggauss(nu)
    s1 = np.stack([np.sqrt(1.0 - u1 ** 2), np.zeros_like(u1), u1], axis=-1)
    s2, w2 = _sphere_grid(nu, nphi)
    d12 = s1 @ s2.T
    B = u1[:, None] + d12 + s2[None, :, 2]
    MM = 3.0 + 2.0 * B                       # every pair of a triangle is a bond
    return B.ravel(), MM.ravel(), (w1[:, None] * w2[None, :]).ravel()


def _check(ref, ex, rel=1e-9):
    for key in ("energy", "chi", "heat_capacity"):
        assert ex[key] == pytest.approx(ref[key], rel=rel), key


@pytest.mark.parametrize("L,N", [(3, 128), (4, 64)])
def test_xy_ring_matches_quadrature(L, N):
    # aliasing error ~ I_N(2K): negligible for N = 64 at K = 2.5
    B, MM, w = _xy_ring(L, N)
    for K in KS:
        _check(_moments(B, MM, w, K, L), on_chain(2, L, K))
    # the antiferromagnet, frustrated on the triangle, through beta and J
    for beta, J in ((1.0, -1.0), (0.5, -2.5)):
        ref = _moments(B, MM, w, beta * J, L)
        ex = on_chain(2, L, beta, J=J)
        assert ex["energy"] == pytest.approx(J * ref["energy"], rel=1e-9)
        assert ex["chi"] == pytest.approx(ref["chi"], rel=1e-9)
        assert ex["heat_capacity"] == pytest.approx(ref["heat_capacity"], rel=1e-9)


def test_heisenberg_triangle_matches_quadrature():
    B, MM, w = _heisenberg_triangle()
    for K in KS:
        _check(_moments(B, MM, w, K, 3), on_chain(3, 3, K))
    # a rescaled coupling: energy scales with J, the rest depends on K = beta J only
    ex = on_chain(3, 3, 0.25, J=4.0)
    ref = _moments(B, MM, w, 1.0, 3)
    assert ex["energy"] == pytest.approx(4.0 * ref["energy"], rel=1e-9)
    assert ex["heat_capacity"] == pytest.approx(ref["heat_capacity"], rel=1e-9)


@pytest.mark.parametrize("L", [4, 5])
def test_heisenberg_ring_matches_quadrature_transfer_matrix(L):
    # the product quadrature summed over all grid configurations, as traces of matrix products
    pts, w = _sphere_grid(24, 24)
    sq = np.sqrt(w)
    for K in KS:
        T = sq[:, None] * np.exp(K * (pts @ pts.T - 1.0)) * sq[None, :]   # symmetric W^1/2 T W^1/2
        powers = [np.eye(len(w))]
        for _ in range(L):
            powers.append(powers[-1] @ T)
        Z = np.trace(powers[L])
        G = pts @ pts.T
        # Tr[diag(s^a) T^r diag(s^a) T^(L-r)] summed over a
        corr = [(G * powers[r] * powers[L - r].T).sum() / Z for r in range(L)]
        ex = on_chain(3, L, K)
        assert ex["chi"] == pytest.approx(sum(corr), rel=1e-9)
        assert ex["nn_correlation"] == pytest.approx(corr[1], rel=1e-9)
        for r in range(L):
            assert on_chain_correlation(3, L, K, r) == pytest.approx(corr[r], rel=1e-9, abs=1e-14)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8])
def test_two_site_ring_any_n(n):
    # L = 2: both bonds join s_0 and s_1, u = s_0.s_1 has density ~ (1 - u^2)^((n-3)/2)
    u, wu = scipy.special.roots_jacobi(80, 0.5 * (n - 3), 0.5 * (n - 3))
    B, MM = 2.0 * u, 2.0 + 2.0 * u
    for K in KS:
        _check(_moments(B, MM, wu, K, 2), on_chain(n, 2, K))


@pytest.mark.parametrize("n", [2, 3, 4, 7, 12])
def test_consistency_any_n(n):
    for K in (0.4, 1.7):
        # on a triangle every pair is a bond: chi = 1 + 2 <s_0.s_1>
        tri = on_chain(n, 3, K)
        assert tri["chi"] == pytest.approx(1.0 + 2.0 * tri["nn_correlation"], rel=1e-12)
        # chi is the sum of the correlations; the energy is -J <s_0.s_1>
        L = 9
        ex = on_chain(n, L, K, J=0.7)
        corr = [on_chain_correlation(n, L, K, r, J=0.7) for r in range(L)]
        assert corr[0] == 1.0
        assert sum(corr) == pytest.approx(ex["chi"], rel=1e-12)
        assert corr[1] == pytest.approx(ex["nn_correlation"], rel=1e-12)
        assert ex["energy"] == pytest.approx(-0.7 * corr[1], rel=1e-12)
        assert ex["m2"] == pytest.approx(ex["chi"] / L, rel=1e-15)
        assert all(corr[r] == pytest.approx(corr[L - r], rel=1e-12) for r in range(1, L))
        assert on_chain_correlation(n, L, K, L + 2, J=0.7) == pytest.approx(corr[2], rel=1e-15)


def test_sector_dimensions():
    for n in range(2, 9):
        for l in range(12):
            # dim of degree-l harmonics = dim P_l - dim P_{l-2};  a_l + a_{l-1} = d_l
            d = math.comb(l + n - 1, n - 1) - (math.comb(l + n - 3, n - 1) if l >= 2 else 0)
            assert _dim_harmonic(n, l) == d
            assert _dim_up(n, l) + (_dim_up(n, l - 1) if l else 0) == d
    assert [_dim_harmonic(3, l) for l in range(4)] == [1, 3, 5, 7]
    assert [_dim_harmonic(2, l) for l in range(4)] == [1, 2, 2, 2]


@pytest.mark.parametrize("n", [2, 3, 4, 7])
def test_long_chain_limit(n):
    for K, L in ((0.3, 200), (1.0, 200), (2.5, 200), (10.0, 2000)):   # L >> correlation length
        ex = on_chain(n, L, K / 1.5, J=1.5)      # K = beta J
        rho = scipy.special.ive(0.5 * n, K) / scipy.special.ive(0.5 * n - 1.0, K)
        assert ex["energy"] == pytest.approx(-1.5 * rho, rel=1e-12)
        # infinite chain: <s_0.s_r> = rho^r; chi = (1 + rho)/(1 - rho)
        assert on_chain_correlation(n, L, K / 1.5, 5, J=1.5) == pytest.approx(rho ** 5, rel=1e-12)
        if K < 5:
            assert ex["chi"] == pytest.approx((1 + rho) / (1 - rho), rel=1e-12)
    # Heisenberg: the Langevin function
    assert on_chain(3, 200, 2.5)["energy"] == pytest.approx(-(1 / math.tanh(2.5) - 1 / 2.5), rel=1e-14)


def test_high_temperature_limit():
    for n in (2, 3, 6):
        for L in (2, 3, 10):
            zero = on_chain(n, L, 0.0)
            assert zero == {"energy": 0.0, "chi": 1.0, "heat_capacity": 0.0, "m2": 1.0 / L,
                            "nn_correlation": 0.0, "log_z": 0.0}
            assert on_chain(n, L, 1.0, J=0.0)["chi"] == 1.0
            K = 1e-7
            ex = on_chain(n, L, K)
            # <s_0.s_1> = K/n for L >= 3 (2K/n for L = 2: two bonds); chi = 1 + 2K/n either way
            nn = (2 if L == 2 else 1) * K / n
            assert ex["nn_correlation"] == pytest.approx(nn, rel=1e-6)
            assert ex["energy"] == pytest.approx(-nn, rel=1e-6)
            assert ex["chi"] == pytest.approx(1.0 + 2.0 * K / n, rel=1e-12)
            assert ex["heat_capacity"] == pytest.approx((2 if L == 2 else 1) * K * K / n, rel=1e-5)
            for key, v in on_chain(n, L, 1e-250).items():
                assert math.isfinite(v), key


def test_antiferromagnet_on_even_ring():
    # flipping every other spin maps J to -J: same energy, staggered correlations
    L, beta = 6, 1.3
    fm, afm = on_chain(3, L, beta), on_chain(3, L, beta, J=-1.0)
    assert afm["energy"] == pytest.approx(fm["energy"], rel=1e-13)
    assert afm["heat_capacity"] == pytest.approx(fm["heat_capacity"], rel=1e-12)
    assert afm["log_z"] == pytest.approx(fm["log_z"], rel=1e-13)
    stag = sum((-1) ** r * on_chain_correlation(3, L, beta, r) for r in range(L))
    assert afm["chi"] == pytest.approx(stag, rel=1e-12)
    # frustration at strong coupling cancels the odd ring's sector sum beyond double precision
    with pytest.raises(ArithmeticError, match="cancels"):
        on_chain(3, 3, 20.0, J=-1.0)


def test_large_coupling():
    # L = 2, n = 3: Z = sinh(2K)/(2K), so <s_0.s_1> = coth 2K - 1/(2K) and c = 1/2 - 2K^2/sinh^2 2K
    for K in (10.0, 100.0):
        ex = on_chain(3, 2, K)
        assert ex["nn_correlation"] == pytest.approx(1 / math.tanh(2 * K) - 1 / (2 * K), rel=1e-14)
        assert ex["heat_capacity"] == pytest.approx(0.5 - 2 * K * K / math.sinh(2 * K) ** 2, rel=1e-9)
        assert ex["log_z"] == pytest.approx(math.log(math.sinh(2 * K) / (2 * K)), rel=1e-14)
    with pytest.raises(ArithmeticError):
        on_chain(3, 2, 1e12)


@pytest.mark.parametrize("kwargs,name", [
    (dict(n=1), "n=1"), (dict(n=3.0), "n=3.0"), (dict(n=True), "n=True"),
    (dict(L=1), "L=1"), (dict(L=2.5), "L=2.5"), (dict(L=None), "L=None"),
    (dict(beta=-0.1), "beta=-0.1"), (dict(beta=math.nan), "beta=nan"), (dict(beta=math.inf), "beta=inf"),
    (dict(beta="1"), "beta='1'"), (dict(J=math.inf), "J=inf"), (dict(J=math.nan), "J=nan"),
])
def test_bad_input(kwargs, name):
    args = dict(n=3, L=4, beta=1.0, J=1.0) | kwargs
    with pytest.raises(ValueError, match=name.replace(".", r"\.").replace("'", ".")):
        on_chain(**args)
    with pytest.raises(ValueError, match=name.replace(".", r"\.").replace("'", ".")):
        on_chain_correlation(r=1, **args)


def test_bad_separation_and_overflowing_coupling():
    with pytest.raises(ValueError, match=r"r=1\.5"):
        on_chain_correlation(3, 4, 1.0, 1.5)
    with pytest.raises(ValueError, match="beta\\*J"):
        on_chain(3, 4, 1e300, J=1e300)
    # numpy integers and floats are accepted (a scan over np.arange / np.linspace)
    assert on_chain(np.int64(3), np.int64(4), np.float64(1.0)) == on_chain(3, 4, 1.0)
