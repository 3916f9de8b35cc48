"""Philox4x32-10: the published known-answer vectors, and the same numbers on every backend."""
import numpy as np
import pytest

from portable_lattice.philox import PhiloxGenerator, philox4x32

# Random123's kat_vectors for philox4x32_10: (counter, key) -> output
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,expect", KAT)
def test_known_answer_vectors(backend, ctr, key, expect):
    xp = backend.xp
    c = [xp.asarray([v], dtype=xp.int64, device=backend.device) for v in ctr]
    out = philox4x32(*c, *key)
    assert [int(backend.to_numpy(o)[0]) for o in out] == list(expect)


def _draws(backend, seed=7):
    g = PhiloxGenerator(backend.xp, seed, backend.device)
    return {"bits": backend.to_numpy(g.bits32((3, 5, 7))),
            "u64": backend.to_numpy(g.uniform((3, 6, 6), backend.xp.float64)),
            "u32": backend.to_numpy(g.uniform((3, 9), backend.xp.float32)),
            "ints": backend.to_numpy(g.integers(5, (4, 11))),
            "normal": backend.to_numpy(g.normal((2, 8, 8), backend.xp.float64)),
            "logu64": backend.to_numpy(g.log_uniform((3, 40), backend.xp.float64)),
            "logu32": backend.to_numpy(g.log_uniform((3, 40), backend.xp.float32))}


def test_every_backend_draws_the_same_numbers(backend):
    from portable_lattice.backends import get_backend
    ref, got = _draws(get_backend("numpy")), _draws(backend)
    # normals too: Box-Muller through the library's own log and cos, not the backends'
    for name in ("bits", "u64", "u32", "ints", "normal", "logu64", "logu32"):
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)


def test_log_and_cos_are_accurate_and_their_scalar_twins_equal():
    from portable_lattice.philox import (cos_2pi, cos_2pi_scalar, log_unit, log_unit_scalar, sqrt_nonnegative,
                                         sqrt_nonnegative_scalar)
    rng = np.random.default_rng(1)
    k = np.floor(rng.random(100000) * 2.0 ** 53) + 1.0
    k[:3] = [1.0, 2.0 ** 53, 2.0 ** 52]
    u = np.floor(rng.random(100000) * 2.0 ** 53) / 2.0 ** 53
    u[:4] = [0.0, 0.25, 0.5, 0.75]
    log, cos, sin = log_unit(k), cos_2pi(u), cos_2pi(u, np.ones_like(u))
    # within a few units in the last place of the C library's
    np.testing.assert_allclose(log, np.log(k / 2.0 ** 53), rtol=1e-15, atol=0)
    np.testing.assert_allclose(cos, np.cos(2 * np.pi * u), rtol=0, atol=2e-15)
    np.testing.assert_allclose(sin, np.sin(2 * np.pi * u), rtol=0, atol=2e-15)
    np.testing.assert_array_equal(cos_2pi(u, np.zeros_like(u)), cos)
    assert [log_unit_scalar(float(v)) for v in k[:5000]] == list(log[:5000])
    assert [cos_2pi_scalar(float(v), 0.0) for v in u[:5000]] == list(cos[:5000])
    assert [cos_2pi_scalar(float(v), 1.0) for v in u[:5000]] == list(sin[:5000])
    a = np.concatenate([rng.random(50000) * 75, 10 ** rng.uniform(-17, 1.8, 50000), [0.0, 2.0 ** -52, 73.5, 4.0]])
    root = sqrt_nonnegative(a)
    np.testing.assert_allclose(root, np.sqrt(a), rtol=5e-16, atol=0)
    assert [sqrt_nonnegative_scalar(float(v)) for v in a[::20]] == list(root[::20])


def test_normals_have_the_right_moments():
    from portable_lattice.backends import get_backend
    xp = get_backend("numpy").xp
    z = PhiloxGenerator(xp, 5).normal((4, 250000), xp.float64)
    n = z.size
    # 5-sigma bounds on the mean, variance and fourth moment (false alarm < 1e-6 each)
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    assert abs((z ** 4).mean() - 3) < 5 * np.sqrt(96 / n)
    # the two normals of a Box-Muller pair (elements 2m, 2m + 1) are independent: their
    # correlation, and that of their squares, within 5 sigma of 0
    a, b = z[:, 0::2].ravel(), z[:, 1::2].ravel()
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(a.size)
    assert abs(np.corrcoef(a ** 2, b ** 2)[0, 1]) < 5 / np.sqrt(a.size)


def test_log_uniform_is_the_log_of_the_same_uniforms():
    from portable_lattice.backends import get_backend
    xp = get_backend("numpy").xp
    for dtype, rtol in ((xp.float64, 1e-15), (xp.float32, 1e-7)):
        u = PhiloxGenerator(xp, 9).uniform((4, 5000), dtype)
        lu = PhiloxGenerator(xp, 9).log_uniform((4, 5000), dtype)
        assert lu.dtype == dtype
        np.testing.assert_allclose(lu, np.log(u.astype(np.float64)).astype(dtype), rtol=rtol, atol=0)
    g = PhiloxGenerator(xp, 9)
    g.log_uniform((2, 3), xp.float64)
    assert g.get_state()["draws"] == 1  # one draw, as uniform()


def test_a_philox_phi4_run_is_the_same_chain_on_every_backend(backend):
    # the normals and the acceptance logarithms both come from the stream's own arithmetic, so
    # a phi^4 chain is the same chain bit for bit on every backend
    import warnings

    import portable_lattice as pl
    theory = pl.Phi4.from_beta_g(0.5, 0.1)
    for algorithm in ("checkerboard", "metropolis"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 10 sweeps: the run warns that its error bars are unreliable
            ref = pl.simulate(theory, L=6, algorithm=algorithm, chains=2, therm=3, sweeps=10, seed=4, stream="philox")
            got = pl.simulate(theory, L=6, algorithm=algorithm, chains=2, therm=3, sweeps=10, seed=4, stream="philox",
                              backend=backend.name, device=backend.device)
        np.testing.assert_array_equal(backend.to_numpy(got.state.config), np.asarray(ref.state.config), err_msg=algorithm)


def test_a_chain_does_not_depend_on_the_chains_beside_it():
    from portable_lattice.backends import get_backend
    xp = get_backend("numpy").xp
    four = PhiloxGenerator(xp, 3).uniform((4, 100), xp.float64)
    two = PhiloxGenerator(xp, 3).uniform((2, 100), xp.float64)
    np.testing.assert_array_equal(four[:2], two)


def test_uniform_statistics_and_state():
    from portable_lattice.backends import get_backend
    xp = get_backend("numpy").xp
    g = PhiloxGenerator(xp, 11)
    u = g.uniform((8, 50000), xp.float64)
    assert 0.0 <= u.min() and u.max() < 1.0
    # mean and variance of 4e5 uniforms: 5-sigma bounds (false alarm < 1e-6)
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / u.size)
    assert abs(u.var() - 1 / 12) < 5 * np.sqrt(1 / 180 / u.size)
    bits = g.bits32((4, 100000))
    for b in range(32):
        ones = ((bits >> b) & 1).mean()
        assert abs(ones - 0.5) < 5 * 0.5 / np.sqrt(bits.size), b
    state = g.get_state()
    a = g.uniform((2, 10), xp.float64)
    g.set_state(state)
    np.testing.assert_array_equal(g.uniform((2, 10), xp.float64), a)
    with pytest.raises(ValueError, match="seed"):
        PhiloxGenerator(xp, 12).set_state(state)
    with pytest.raises(ValueError, match="seed"):
        PhiloxGenerator(xp, -1)


@pytest.mark.parametrize("model,algorithm", [("ising", "checkerboard"), ("ising", "heatbath"),
                                             ("ising", "swendsen-wang"), ("potts", "swendsen-wang")])
def test_a_philox_run_is_the_same_chain_on_every_backend(backend, model, algorithm):
    import warnings

    import portable_lattice as pl
    theory = pl.Ising(beta=0.44) if model == "ising" else pl.Potts(beta=1.0, q=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pl.simulate(theory, L=8, algorithm=algorithm, chains=3, therm=5, sweeps=20, seed=5, stream="philox")
        got = pl.simulate(theory, L=8, algorithm=algorithm, chains=3, therm=5, sweeps=20, seed=5, stream="philox",
                          backend=backend.name, device=backend.device)
    np.testing.assert_array_equal(backend.to_numpy(got.state.config), np.asarray(ref.state.config))
    np.testing.assert_array_equal(got.series["energy"], ref.series["energy"])
    # the Potts order parameter goes through cos and sin: equal up to the libraries' rounding
    np.testing.assert_allclose(got.series["m"], ref.series["m"], rtol=1e-13, atol=1e-15)
    assert got.meta["stream"] == "philox"


def test_stream_is_validated_and_resumes_bit_for_bit(tmp_path):
    pytest.importorskip("zarr")
    import warnings

    import portable_lattice as pl
    from portable_lattice.runs.production import resume
    from portable_lattice.runs.storage import open_ensemble
    with pytest.raises(ValueError, match="stream"):
        pl.simulate(pl.Ising(beta=0.4), L=4, sweeps=2, stream="mt19937")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pl.simulate(pl.Ising(beta=0.4), L=8, chains=2, therm=3, sweeps=30, seed=2, stream="philox",
                    out=str(tmp_path / "a"), checkpoint_every=10)
        pl.simulate(pl.Ising(beta=0.4), L=8, chains=2, therm=3, sweeps=12, seed=2, stream="philox",
                    out=str(tmp_path / "b"), checkpoint_every=5)
        resume(str(tmp_path / "b"), sweeps=30)
    a, b = open_ensemble(str(tmp_path / "a")), open_ensemble(str(tmp_path / "b"))
    for name in a["series"]:
        np.testing.assert_array_equal(a["series"][name], b["series"][name])
    assert a["card"]["stream"] == "philox"
