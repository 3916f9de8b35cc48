"""The spin kernels: reproducible and in range, bad input, multi-hit checkerboard, the
random-site update, independence Metropolis."""
import math

import numpy as np
import pytest

from portable_lattice import Clock, EdwardsAnderson, Ising, Potts, simulate
from portable_lattice.backends import capability, get_backend
from portable_lattice.exact import ising_torus
from portable_lattice.observables import measure_spins
from portable_lattice.runs import run
from portable_lattice.samplers import (CheckerboardMetropolis, HeatBath, IndependenceMetropolis, RandomSiteMetropolis,
                                       SpinFlip, StateShift, SwendsenWang, Wolff)

NUMPY = get_backend("numpy")


SPIN_KERNELS = [
    (CheckerboardMetropolis(Ising(beta=0.4), SpinFlip()), "acceptance"),                   # blocked, integer thresholds
    (CheckerboardMetropolis(Ising(beta=0.4, h=0.3), HeatBath()), "changed"),               # blocked heat bath
    (CheckerboardMetropolis(Potts(beta=0.9, q=3), HeatBath()), "changed"),                 # masked heat bath
    (CheckerboardMetropolis(Clock(beta=0.5, q=4), StateShift()), "acceptance"),            # masked Metropolis
    (RandomSiteMetropolis(Clock(beta=0.5, q=3), StateShift()), "acceptance"),
    (RandomSiteMetropolis(Ising(beta=0.4, h=-0.2), SpinFlip()), "acceptance"),
    (RandomSiteMetropolis(EdwardsAnderson.gaussian(4, 2, 5, beta=0.7, backend=NUMPY), SpinFlip()), "acceptance"),
    (SwendsenWang(Potts(beta=1.0, q=3)), "changed"),
    (Wolff(Ising(beta=0.4)), "cluster_size"),
]


def _kernel_id(case):
    kernel, _ = case
    rule = getattr(kernel, "rule", None)
    return f"{type(kernel).__name__}-{type(kernel.theory).__name__}" + (f"-{type(rule).__name__}" if rule else "")


def _on(kernel, backend):
    """The kernel with quenched couplings moved to the backend (as ``simulate`` does)."""
    c = getattr(kernel.theory, "couplings", None)
    if c is None:
        return kernel
    from dataclasses import replace
    return replace(kernel, theory=kernel.theory.with_couplings(backend.from_numpy(c, "float64")))


@pytest.mark.parametrize("case", SPIN_KERNELS, ids=[_kernel_id(c) for c in SPIN_KERNELS])
def test_spin_kernels_reproducible_and_in_range(backend, case):
    kernel, reported = case
    kernel = _on(kernel, backend)
    model = kernel.theory
    outs = []
    for _ in range(2):
        rng = backend.rng(8)
        start = model.random(rng, (2, 4, 4), backend.xp.float64)
        before = backend.to_numpy(start).copy()
        state = kernel.init(start)
        for _ in range(3):
            state, info = kernel.step(state, rng)
        outs.append(backend.to_numpy(state.spins))
        np.testing.assert_array_equal(backend.to_numpy(start), before)  # the caller's array is untouched
        # each Info field means one thing: exactly the one this kernel reports is set, a fraction per chain
        for name in ("acceptance", "changed", "cluster_size"):
            v = getattr(info, name)
            if name != reported:
                assert v is None, name
            else:
                v = backend.to_numpy(v)
                assert v.shape == (2,) and np.all((0 <= v) & (v <= 1))
        assert info.delta_h is None and info.divergent is None
    np.testing.assert_array_equal(outs[0], outs[1])
    assert state.config is state.spins
    assert outs[0].dtype == np.int8 and set(np.unique(outs[0])) <= set(model.state_values())


def test_spin_bad_input(backend):
    with pytest.raises(ValueError, match="q=1"):
        Potts(beta=1.0, q=1)
    with pytest.raises(ValueError, match="beta=-0.1"):
        SwendsenWang(Ising(beta=-0.1))
    with pytest.raises(ValueError, match="zero field"):
        SwendsenWang(Ising(beta=0.3, h=0.1))
    with pytest.raises(ValueError, match="Edwards"):
        SwendsenWang(EdwardsAnderson.gaussian(4, 2, 0, beta=0.3, backend=NUMPY))
    with pytest.raises(ValueError, match="got Clock"):
        Wolff(Clock(beta=0.3, q=3))
    with pytest.raises(ValueError, match="outside the model's states"):
        CheckerboardMetropolis(Ising(beta=0.3), SpinFlip()).init(backend.from_numpy(np.zeros((1, 4, 4), np.int8)))
    with pytest.raises(ValueError, match="outside the model's states"):
        CheckerboardMetropolis(Potts(beta=0.3, q=3), StateShift()).init(
            backend.from_numpy(np.full((1, 4, 4), 3, np.int8)))
    with pytest.raises(TypeError, match="integer dtype"):
        CheckerboardMetropolis(Ising(beta=0.3), SpinFlip()).init(backend.from_numpy(np.ones((1, 4, 4)), "float64"))
    with pytest.raises(ValueError, match="couplings must have shape"):
        EdwardsAnderson(beta=0.3, couplings=np.zeros((3, 4, 4)))
    with pytest.raises(TypeError, match="float"):
        EdwardsAnderson(beta=0.3, couplings=np.zeros((2, 4, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="do not fit"):
        simulate(EdwardsAnderson.gaussian(4, 2, 0, beta=0.3, backend=NUMPY), L=8)
    with pytest.raises(ValueError, match="even L"):
        CheckerboardMetropolis(Ising(beta=0.3), SpinFlip()).init(backend.from_numpy(np.ones((1, 5, 5), np.int8)))
    with pytest.raises(ValueError, match="L >= 3"):
        RandomSiteMetropolis(Ising(beta=0.3), SpinFlip()).init(backend.from_numpy(np.ones((1, 2, 2), np.int8)))
    # a rule must fit the theory, and the heat bath has no random-site form
    with pytest.raises(ValueError, match="spin flip needs"):
        RandomSiteMetropolis(Potts(beta=0.3, q=3), SpinFlip())
    with pytest.raises(ValueError, match="spin flip needs"):  # two states, but 0 and 1: -s leaves them
        CheckerboardMetropolis(Clock(beta=0.3, q=2), SpinFlip())
    with pytest.raises(ValueError, match="state shift needs"):
        CheckerboardMetropolis(Ising(beta=0.3), StateShift())
    with pytest.raises(TypeError, match="rule must be given"):
        CheckerboardMetropolis(Ising(beta=0.3))
    k = RandomSiteMetropolis(Ising(beta=0.3), HeatBath())
    with pytest.raises(ValueError, match="checkerboard"):
        k.step(k.init(backend.from_numpy(np.ones((1, 4, 4), np.int8))), backend.rng(0))


# --- multi-hit checkerboard for spins -------------------------------------------------------------
@pytest.mark.parametrize("theory", [Ising(beta=0.0), EdwardsAnderson.gaussian(4, 2, 7, beta=0.0, backend=NUMPY)],
                         ids=["ising-blocked", "ea-masked"])
@pytest.mark.parametrize("hits", [1, 2, 3])
def test_spin_flip_hits_are_honoured(theory, hits):
    """At beta = 0 every flip is accepted, so ``hits`` flips per site leave the spins flipped (odd)
    or as they were (even), with acceptance 1: in the blocked layout (integer thresholds) as in
    the masked one."""
    s0 = theory.random(NUMPY.rng(1), (3, 4, 4), np.float64)
    k = CheckerboardMetropolis(theory, SpinFlip(), hits=hits)
    state, info = k.step(k.init(s0), NUMPY.rng(2))
    np.testing.assert_array_equal(state.spins, s0 if hits % 2 == 0 else -s0)
    np.testing.assert_array_equal(info.acceptance, np.ones(3))


def test_multi_hit_spin_flip_samples_exact_ising():
    """Two hits per site in the blocked layout against exact enumeration (Ising 4x4, beta = 0.4):
    <e> and <m^2> within 4.5 Gamma-method sigma (false alarm < 1e-5 each)."""
    from portable_lattice.conformance.exact_spins import enumerate_model
    theory = Ising(beta=0.4)
    exact = enumerate_model("ising", 0.4, 4)
    res = run(CheckerboardMetropolis(theory, SpinFlip(), hits=2), theory.random(NUMPY.rng(3), (16, 4, 4), np.float64),
              NUMPY.rng(4), n_therm=100, n_measure=2000, measure=lambda s: measure_spins(s, theory, np.float64),
              to_host=np.asarray, progress=False)
    for name in ("energy", "m2"):
        assert abs(res.observables[name].z(exact[name])) < 4.5, (name, res.observables[name], exact[name])
    assert 0 < res.observables["acceptance"].value < 1


def test_heatbath_takes_one_hit():
    with pytest.raises(ValueError, match="hits must be 1, got hits=2"):
        CheckerboardMetropolis(Ising(beta=0.4), HeatBath(), hits=2)


@pytest.mark.parametrize("algorithm,L", [("metropolis", 3), ("checkerboard", 8)])
def test_two_state_potts_is_sampled_in_its_own_states(algorithm, L):
    """q = 2 Potts spins are 0 and 1: ``simulate`` moves them to the other state (a flip -s would
    leave them), and the run agrees with the exact values (4.5 Gamma-method sigma): by enumeration
    at L = 3; at L = 8 from Kaufman's Ising torus, since delta(s, s') = (1 + s s') / 2 makes Potts
    at beta the Ising model at K = beta / 2, with e = -1 + e_Ising / 2 and the same C."""
    from portable_lattice.conformance.exact_spins import enumerate_model
    theory = Potts(beta=1.0, q=2)
    if L == 3:
        exact = enumerate_model("potts", 1.0, L, q=2)
    else:
        ising = ising_torus(0.5, L)
        exact = {"energy": -1.0 + ising.energy / 2, "heat_capacity": ising.heat_capacity}
    res = simulate(theory, L=L, algorithm=algorithm, chains=8, therm=50, sweeps=800, seed=3, progress=False)
    assert set(np.unique(res.state.spins)) <= {0, 1}
    for name in ("energy", "heat_capacity"):
        assert abs(res.observables[name].z(exact[name])) < 4.5, (name, res.observables[name], exact[name])


# --- the random-site update (Eq. 7 of [DCL]) ---------------------------------------------------
RANDOM_SITE_THEORIES = [Ising(beta=0.6, J=0.8, h=0.3), Potts(beta=0.9, q=3), Clock(beta=0.7, q=4),
                        EdwardsAnderson.gaussian(4, 2, 2, beta=0.9, backend=NUMPY)]
RANDOM_SITE_IDS = ["ising", "potts", "clock", "ea"]


def _rule(theory):
    return SpinFlip() if theory.n_states == 2 else StateShift()


@pytest.mark.parametrize("theory", RANDOM_SITE_THEORIES, ids=RANDOM_SITE_IDS)
def test_random_site_spins_match_a_hand_written_sweep(theory):
    """The DCL paper's single-spin Metropolis written out in plain Python, with the same random
    numbers (per sweep: the sites, the proposals' offsets for q-state spins, the uniforms): a
    random site per chain, a flip or a uniformly random other state, accepted where
    log u < -beta dE, dE from the total energy."""
    L, chains, V = 4, 2, 16
    s0 = theory.random(NUMPY.rng(3), (chains, L, L), np.float64)
    k = RandomSiteMetropolis(theory, _rule(theory))
    state, info = k.step(k.init(s0), NUMPY.rng(5))
    g = NUMPY.rng(5)
    sites = g.integers(V, (V, chains))
    offsets = None if theory.n_states == 2 else g.integers(theory.q - 1, (V, chains))
    logu = np.log(g.uniform((V, chains), np.float64))
    s = s0.copy()
    accepted = np.zeros(chains)
    for n in range(V):
        for c in range(chains):
            x, y = divmod(int(sites[n, c]), L)
            new = s.copy()
            new[c, x, y] = -s[c, x, y] if offsets is None else (s[c, x, y] + 1 + offsets[n, c]) % theory.q
            dE = theory.energy(new, np.float64)[c] - theory.energy(s, np.float64)[c]
            if logu[n, c] < -theory.beta * dE:
                s = new
                accepted[c] += 1
    np.testing.assert_array_equal(state.spins, s)
    np.testing.assert_allclose(info.acceptance, accepted / V)
    assert not np.array_equal(s, s0)


@pytest.mark.parametrize("theory", RANDOM_SITE_THEORIES, ids=RANDOM_SITE_IDS)
def test_random_site_spin_fast_path_equals_generic(backend, theory):
    """In-place site writes (array-api-extra's ``at``) and the generic one-hot ``where`` give the
    same chains bit for bit."""
    present, why = capability("inplace_site_writes", backend.name, str(backend.device))
    if not present:
        pytest.skip(why)
    if hasattr(theory, "couplings"):  # couplings drawn on the backend, for an odd L = 5
        theory = EdwardsAnderson.gaussian(5, 2, 2, beta=theory.beta, backend=backend)
    s0 = theory.random(backend.rng(2), (3, 5, 5), backend.xp.float64)
    out = []
    for inplace in (False, True):
        k = RandomSiteMetropolis(theory, _rule(theory), inplace=inplace)
        rng, state = backend.rng(9), k.init(s0)
        for _ in range(2):
            state, _ = k.step(state, rng)
        out.append(backend.to_numpy(state.spins))
    np.testing.assert_array_equal(out[0], out[1])


def test_random_site_spin_update_is_O1():
    """Each single-site update costs O(1) (neighbours gathered, the new value written in place), so
    a sweep of V updates takes time proportional to V: 4x the sites, about 4x the time (an O(V)
    update, like the one-hot where, would give 16x). 4 chains; one sweep of each size after a
    warm-up sweep, alternating sizes so that a drifting machine speed hits both, best of five;
    the bounds are generous for a shared machine."""
    import time
    theory = Ising(beta=0.4)
    kernel = RandomSiteMetropolis(theory, SpinFlip())
    rng = NUMPY.rng(1)
    states = {}
    for L in (32, 64):
        states[L], _ = kernel.step(kernel.init(theory.random(rng, (4, L, L), np.float64)), rng)  # warm-up
    times = {32: [], 64: []}
    for _ in range(5):
        for L in (32, 64):
            t = time.perf_counter()
            states[L], _ = kernel.step(states[L], rng)
            times[L].append(time.perf_counter() - t)
    ratio = min(times[64]) / min(times[32])
    assert 2 < ratio < 8, f"sweep time ratio L=64 / L=32 is {ratio:.2f} ({times})"


# --- independence Metropolis ---------------------------------------------------------------------
def _independent_spins(mixture=False, claim_uniform=False):
    """A proposal of independent +-1 spins with its log-density: uniform ones (log q = -V ln 2), or
    ``mixture``: per chain, +1 with probability 0.7 or 0.3 (either with probability 1/2), a
    non-constant log q that favours the magnetised states. ``claim_uniform`` reports -V ln 2
    whatever was drawn (a wrong density, which the chain must then fail on)."""
    def proposal(rng, like):
        from array_api_compat import array_namespace
        xp = array_namespace(like)
        shape, chains = tuple(like.shape), like.shape[0]
        V = math.prod(shape[1:])
        p_up = 0.5
        if mixture:
            heads = xp.astype(rng.uniform((chains,), xp.float64) < 0.5, xp.float64)
            p_up = xp.reshape(0.3 + 0.4 * heads, (chains,) + (1,) * (len(shape) - 1))  # 0.7 or 0.3
        up = rng.uniform(shape, xp.float64) < p_up
        one = xp.ones(shape, dtype=xp.int8, device=like.device)
        n_up = xp.sum(xp.astype(up, xp.float64), axis=tuple(range(1, like.ndim)))
        if mixture and not claim_uniform:
            a = n_up * math.log(0.7) + (V - n_up) * math.log(0.3)
            b = n_up * math.log(0.3) + (V - n_up) * math.log(0.7)
            log_q = xp.logaddexp(a, b) + math.log(0.5)
        else:
            log_q = xp.full((chains,), -V * math.log(2.0), dtype=xp.float64, device=like.device)
        return xp.where(up, one, -one), log_q
    return proposal


def _independence_run(backend, proposal, theory, chains=16, n=2000, seed=12):
    kernel = IndependenceMetropolis(theory, proposal)
    start = backend.from_numpy(np.ones((chains, 3, 3), np.int8))
    return run(kernel, start, backend.rng(seed), n_therm=50, n_measure=n,
               measure=lambda s: measure_spins(s, theory, backend.xp.float64), to_host=backend.to_numpy,
               progress=False)


@pytest.mark.parametrize("mixture", [False, True], ids=["uniform", "mixture"])
def test_independence_metropolis_reproduces_exact_ising(backend, mixture):
    """Ising 3x3 at beta = 0.3 from independent spins: uniform ones (log q = -V ln 2), and a
    mixture that favours magnetised states (the chain must undo that through log q). <e>, <m^2>
    and <m> = 0 against exact enumeration; Gamma-method errors, 4.5 sigma (false alarm < 1e-5
    each). From the uniform proposal the chains stick for stretches in the ground states
    (tau_int is tens of steps), so the run is long enough that 10 tau_int, the statistics'
    bound for an honest error, stays well below it."""
    from portable_lattice.conformance.exact_spins import enumerate_model
    theory = Ising(beta=0.3)
    exact = dict(enumerate_model("ising", 0.3, 3), m=0.0)
    res = _independence_run(backend, _independent_spins(mixture), theory)
    for name in ("energy", "m2", "m"):
        est = res.observables[name]
        assert 10 * est.tau_int < 2000 and est.error > 0, (name, est)
        assert abs(est.z(exact[name])) < 4.5, (name, est, exact[name])
    acc = res.observables["acceptance"].value
    assert 0.05 < acc < 1


def test_independence_metropolis_needs_the_true_density():
    """Power: the mixture proposal with the uniform density claimed samples exp(-beta H) q instead
    of exp(-beta H), which puts too much weight on the magnetised states (fixed seed)."""
    from portable_lattice.conformance.exact_spins import enumerate_model
    exact = enumerate_model("ising", 0.3, 3)
    res = _independence_run(NUMPY, _independent_spins(mixture=True, claim_uniform=True), Ising(beta=0.3))
    assert res.observables["m2"].z(exact["m2"]) > 5
