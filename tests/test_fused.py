"""Fused CPU kernels (Numba): bit-identical to the generic paths, and clear errors where none applies.

The generic path is the reference: the same seed and stream must give the same configuration
after every sweep, bit for bit, under the Philox stream (numbers drawn in the kernel's
registers) and under the backend's native stream (the generic path's own draws).
"""
import numpy as np
import pytest

pytest.importorskip("numba")

from portable_lattice import EdwardsAnderson, Ising, Phi4, Potts  # noqa: E402
from portable_lattice.backends import get_backend  # noqa: E402
from portable_lattice.philox import PhiloxGenerator  # noqa: E402
from portable_lattice.samplers import (HMC, CheckerboardMetropolis, GaussianShift, HeatBath, SpinFlip,  # noqa: E402
                                       StateShift)
from portable_lattice.samplers import fused  # noqa: E402
from portable_lattice.samplers.fused import check_philox_range  # noqa: E402

CPU = ["numpy", "torch"]


def _rng(be, stream, seed):
    return PhiloxGenerator(be.xp, seed, be.device) if stream == "philox" else be.rng(seed)


def _sweeps(kernel, x, rng, n):
    state = kernel.init(x)
    out = []
    for _ in range(n):
        state, info = kernel.step(state, rng)
        out.append((state.config, info))
    return out


def _start(be, kind, d, L, dtype="float64"):
    shape = (3,) + (L,) * d
    if kind == "ising":
        return Ising(0.41).random(be.rng(9), shape, be.xp.float64)
    return be.rng(9).normal(shape, be.dtype(dtype))


@pytest.mark.parametrize("name", CPU)
@pytest.mark.parametrize("stream", ["philox", "native"])
@pytest.mark.parametrize("d,L", [(2, 6), (2, 8), (3, 4)])
@pytest.mark.parametrize("kind,dtype,hits", [("phi4", "float64", 1), ("phi4", "float64", 3), ("phi4", "float32", 2),
                                             ("ising", None, 1), ("ising", None, 2)])
def test_fused_checkerboard_is_bit_identical_to_the_generic_sweep(name, stream, d, L, kind, dtype, hits):
    pytest.importorskip(name)
    be = get_backend(name)
    if kind == "ising":
        theory, rule = Ising(0.41 if d == 2 else 0.2, J=1.0, h=0.05), SpinFlip()
    else:
        theory, rule = (Phi4.from_beta_g(0.3, 0.7) if d == 2 else Phi4.from_beta_g(0.2, 0.7)), GaussianShift(1.3)
    x = _start(be, kind, d, L, dtype or "float64")
    ref = _sweeps(CheckerboardMetropolis(theory, rule, hits=hits), x, _rng(be, stream, 4), 4)
    got = _sweeps(CheckerboardMetropolis(theory, rule, hits=hits, fused=True), x, _rng(be, stream, 4), 4)
    for (a, ia), (b, ib) in zip(ref, got):
        np.testing.assert_array_equal(be.to_numpy(b), be.to_numpy(a))
        np.testing.assert_array_equal(be.to_numpy(ib.acceptance), be.to_numpy(ia.acceptance))
    acc = be.to_numpy(ref[-1][1].acceptance)
    assert 0.05 < acc.mean() < 0.95  # the comparison saw both accepted and rejected proposals
    assert got[0][0] is not x


def test_a_philox_fused_sweep_on_numpy_equals_the_generic_sweep_on_torch():
    pytest.importorskip("torch")
    np_be, t_be = get_backend("numpy"), get_backend("torch")
    theory, rule = Phi4.from_beta_g(0.3, 0.7), GaussianShift(1.0)
    x = np_be.rng(3).normal((2, 8, 8), np_be.xp.float64)
    fused = _sweeps(CheckerboardMetropolis(theory, rule, fused=True), x, _rng(np_be, "philox", 1), 3)[-1][0]
    generic = _sweeps(CheckerboardMetropolis(theory, rule), t_be.from_numpy(x, "float64"),
                      _rng(t_be, "philox", 1), 3)[-1][0]
    np.testing.assert_array_equal(fused, t_be.to_numpy(generic))


def test_the_philox_counter_moves_on_as_the_generic_sweep_moves_it():
    be = get_backend("numpy")
    x = be.rng(1).normal((2, 6, 6), be.xp.float64)
    rngs = []
    for fused in (False, True):
        rng = _rng(be, "philox", 2)
        _sweeps(CheckerboardMetropolis(Phi4.from_beta_g(0.3, 0.5), GaussianShift(1.0), hits=2, fused=fused), x, rng, 2)
        rngs.append(rng.get_state())
    assert rngs[0] == rngs[1]


@pytest.mark.parametrize("d,L", [(2, 20), (3, 8)])
def test_fused_ising_philox_rows_of_whole_blocks_and_a_remainder(d, L):
    # under Philox with one hit, a task's words come from whole Philox blocks per parity class
    # and each row reads its own: L = 20 has rows of 10 (2 blocks + 2), so rows start inside
    # a block
    be = get_backend("numpy")
    theory = Ising(0.41 if d == 2 else 0.2, J=1.0, h=0.05)
    x = _start(be, "ising", d, L, "float64")
    ref = _sweeps(CheckerboardMetropolis(theory, SpinFlip()), x, _rng(be, "philox", 6), 3)
    got = _sweeps(CheckerboardMetropolis(theory, SpinFlip(), fused=True), x, _rng(be, "philox", 6), 3)
    for (a, ia), (b, ib) in zip(ref, got):
        np.testing.assert_array_equal(b, a)
        np.testing.assert_array_equal(ib.acceptance, ia.acceptance)


@pytest.mark.parametrize("name", CPU)
@pytest.mark.parametrize("d,L", [(2, 6), (2, 5), (3, 4)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("integrator", ["leapfrog", "omelyan"])
@pytest.mark.parametrize("stream", ["native", "philox"])
def test_fused_hmc_gives_the_generic_fields(name, d, L, dtype, integrator, stream):
    pytest.importorskip(name)
    be = get_backend(name)
    theory = Phi4.from_kappa_lambda(0.18 if d == 2 else 0.12, 0.5)
    x = 0.5 * be.rng(2).normal((3,) + (L,) * d, be.dtype(dtype))
    # a long step so that some trajectories are rejected; under Philox the kernel computes the
    # momenta itself (an odd volume, L = 5, ends on half a Box-Muller pair)
    rng_ref, rng_got = _rng(be, stream, 5), _rng(be, stream, 5)
    ref = _sweeps(HMC(theory, 1.5, 3, integrator), x, rng_ref, 8)
    got = _sweeps(HMC(theory, 1.5, 3, integrator, fused=True), x, rng_got, 8)
    if stream == "philox":
        assert rng_got.get_state() == rng_ref.get_state()
    rtol = 1e-12 if dtype == "float64" else 2e-5
    for (a, ia), (b, ib) in zip(ref, got):
        np.testing.assert_array_equal(be.to_numpy(b), be.to_numpy(a))
        np.testing.assert_array_equal(be.to_numpy(ib.acceptance), be.to_numpy(ia.acceptance))
        # the Hamiltonian's sums run in another order: equal to rounding
        np.testing.assert_allclose(be.to_numpy(ib.delta_h), be.to_numpy(ia.delta_h), rtol=rtol, atol=rtol * 10 * L ** d)
    acc = np.concatenate([be.to_numpy(i.acceptance) for _, i in ref])
    assert 0 < acc.mean() < 1


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_kernels_accept_uniforms_are_the_generators(dtype):
    # under Philox the HMC kernel computes each chain's accept uniform itself: the generic
    # draw rng.uniform((chains,), dtype), bit for bit
    nk = pytest.importorskip("portable_lattice.backends.fused.numba")
    ft = np.dtype(dtype).type
    for seed, draws in ((3, 0), (2 ** 40 + 7, 12345)):
        gen = PhiloxGenerator(np, seed)
        gen.draws = draws
        plan = fused.stream_plan(gen, 1)
        got = nk.philox_chain_uniforms(37, ft, plan)
        ref = gen.uniform((37,), ft)
        assert got.dtype == ref.dtype
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("per_chain", [True, False])
@pytest.mark.parametrize("d,L", [(2, 6), (3, 4)])
def test_fused_hmc_chain_by_chain_and_pass_by_pass_agree(monkeypatch, per_chain, d, L):
    # the Numba kernel runs small chains' trajectories one chain at a time (in cache) and
    # large ones pass by pass over all chains: both must be the generic trajectory
    nk = pytest.importorskip("portable_lattice.backends.fused.numba.hmc")
    monkeypatch.setattr(nk, "_hmc_per_chain", lambda chains, site_bytes: per_chain)
    be = get_backend("numpy")
    theory = Phi4.from_kappa_lambda(0.18 if d == 2 else 0.12, 0.5)
    x = 0.5 * be.rng(2).normal((4,) + (L,) * d, be.xp.float64)
    ref = _sweeps(HMC(theory, 1.5, 3, "omelyan"), x, _rng(be, "philox", 5), 6)
    got = _sweeps(HMC(theory, 1.5, 3, "omelyan", fused=True), x, _rng(be, "philox", 5), 6)
    for (a, ia), (b, ib) in zip(ref, got):
        np.testing.assert_array_equal(b, a)
        np.testing.assert_array_equal(ib.acceptance, ia.acceptance)
    acc = np.concatenate([i.acceptance for _, i in ref])
    assert 0 < acc.mean() < 1


def test_fused_where_no_backend_has_it_is_a_clear_error():
    strict = get_backend("array_api_strict")
    x = strict.rng(0).normal((2, 4, 4), strict.xp.float64)
    with pytest.raises(ValueError, match="fused_checkerboard"):
        CheckerboardMetropolis(Phi4.from_beta_g(0.3, 0.5), GaussianShift(1.0), fused=True).init(x)
    with pytest.raises(ValueError, match="fused_hmc"):
        HMC(Phi4.from_beta_g(0.3, 0.5), fused=True).init(x)


def test_fused_refuses_what_no_kernel_does():
    be = get_backend("numpy")
    phi = be.rng(0).normal((2, 4, 4), be.xp.float64)
    s = Ising(0.4).random(be.rng(0), (2, 4, 4), be.xp.float64)
    with pytest.raises(TypeError, match="fused must be True or False"):
        CheckerboardMetropolis(Phi4.from_beta_g(0.3, 0.5), GaussianShift(1.0), fused="yes")
    with pytest.raises(ValueError, match="HeatBath"):
        CheckerboardMetropolis(Ising(0.4), HeatBath(), fused=True).init(s)
    with pytest.raises(ValueError, match="StateShift"):
        CheckerboardMetropolis(Potts(0.4, q=3), StateShift(), fused=True).init(
            Potts(0.4, q=3).random(be.rng(0), (2, 4, 4), be.xp.float64))
    couplings = be.rng(1).normal((2, 4, 4), be.xp.float64)
    with pytest.raises(ValueError, match="SpinFlip"):
        CheckerboardMetropolis(EdwardsAnderson(beta=0.4, couplings=couplings), SpinFlip(), fused=True).init(s)
    with pytest.raises(ValueError, match="d in"):
        CheckerboardMetropolis(Phi4.from_beta_g(0.2, 0.5), GaussianShift(1.0), fused=True).init(
            be.rng(0).normal((2, 4, 4, 4, 4), be.xp.float64))
    with pytest.raises(TypeError, match="field's dtype"):
        CheckerboardMetropolis(Phi4.from_beta_g(0.3, 0.5), GaussianShift(1.0), dtype="float32", fused=True).init(phi)


def test_a_lattice_beyond_the_philox_counter_range_is_refused():
    class Huge:
        shape = (4, 2 ** 17, 2 ** 17)
    with pytest.raises(ValueError, match="Philox counter range"):
        check_philox_range(Huge(), 2)


@pytest.mark.parametrize("model,algorithm", [("phi4", "checkerboard"), ("phi4", "hmc"), ("ising", "checkerboard")])
def test_simulate_with_fused_gives_the_generic_run(model, algorithm):
    import warnings

    import portable_lattice as pl
    theory = pl.Phi4.from_beta_g(0.5, 0.1) if model == "phi4" else pl.Ising(0.4)
    runs = []
    for fused in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs.append(pl.simulate(theory, L=8, chains=2, therm=5, sweeps=40, algorithm=algorithm, stream="philox",
                                    progress=False, fused=fused))
    assert runs[1].meta["knobs"]["fused"] is True
    name = "m_abs"
    assert runs[0].observables[name].value == runs[1].observables[name].value


def test_fused_is_refused_for_an_algorithm_without_it():
    import portable_lattice as pl
    with pytest.raises(TypeError, match="fused"):
        pl.simulate(pl.Ising(0.4), L=8, algorithm="wolff", fused=True)
    with pytest.raises(TypeError, match="fused must be True or False"):
        pl.simulate(pl.Ising(0.4), L=8, fused=1)
