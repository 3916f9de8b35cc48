"""The rule seam and composite kernels: the loop owns the Metropolis test, a rule declares its
fast path, and Cycle chains kernels into one valid step."""
import math
import warnings

import numpy as np
import pytest

from portable_lattice import Ising, Phi4
from portable_lattice.backends import get_backend
from portable_lattice.exact import ising_torus
from portable_lattice.observables import ensemble_spins, measure_spins
from portable_lattice.runs.driver import run
from portable_lattice.samplers import (HMC, CheckerboardMetropolis, Cycle, GaussianShift, HeatBath,
                                       RandomSiteMetropolis, SpinFlip, StateShift, SwendsenWang, Wolff)
from portable_lattice.samplers import fused
from portable_lattice.samplers.rules import Rule, masked_metropolis


def test_every_rule_meets_the_protocol():
    for rule in (GaussianShift(), SpinFlip(), StateShift(), HeatBath()):
        assert isinstance(rule, Rule)
        assert rule.always_accepts == (type(rule) is HeatBath)


def test_a_subclass_keeps_the_fused_plan():
    class MyShift(GaussianShift):
        pass
    x = np.zeros((2, 4, 4))
    plan = fused.checkerboard_plan(Phi4.from_beta_g(0.5, 0.1), MyShift(step_size=0.7), x, 1, x.dtype)
    assert plan["kind"] == "phi4" and plan["step_size"] == 0.7
    with pytest.raises(ValueError, match="no fused checkerboard kernel for the rule StateShift"):
        fused.checkerboard_plan(Ising(beta=0.4), StateShift(), x.astype(np.int8), 1, np.float64)


def test_the_loop_owns_the_test_heat_bath_always_accepts():
    be = get_backend("numpy")
    rng = be.rng(3)
    theory = Ising(beta=0.3)
    s = theory.random(rng, (2, 6, 6), np.float64)
    mask = np.ones(s.shape, dtype=bool)
    new, n = masked_metropolis(HeatBath(), theory, s, mask, rng, np.float64, {})
    assert np.all(n == (new != s).sum(axis=(1, 2)))  # every change counted, none refused
    # a proposal with an infinite cost is never accepted; a free one always is
    class Costly(SpinFlip):
        def masked_proposal(self, theory, s, mask, rng, dtype, ctx):
            return -s, np.full(s.shape, np.inf if self.cost else -np.inf)
    for cost, expect in ((True, s), (False, -s)):
        c = Costly()
        object.__setattr__(c, "cost", cost)
        out, _ = masked_metropolis(c, theory, s, mask, rng, np.float64, {})
        assert np.array_equal(out, expect)


def test_cycle_of_one_kernel_is_the_kernel():
    be = get_backend("numpy")
    theory = Phi4.from_beta_g(0.5, 0.1)
    k = CheckerboardMetropolis(theory, GaussianShift(1.1))
    x = be.rng(0).normal((2, 6, 6), np.float64)
    a, b = k.init(x), Cycle([k]).init(x)
    ra, rb = be.rng(5), be.rng(5)
    for _ in range(3):
        a, ia = k.step(a, ra)
        b, ib = Cycle([k]).step(b, rb)
    assert np.array_equal(a.phi, b.phi) and np.array_equal(ia.acceptance, ib.acceptance)


def test_cycle_info_keeps_each_series_its_meaning():
    be = get_backend("numpy")
    theory = Ising(beta=0.4)
    c = Cycle([CheckerboardMetropolis(theory, SpinFlip()), Wolff(theory)], repeats=[2, 1])
    state = c.init(theory.random(be.rng(0), (3, 6, 6), np.float64))
    state, info = c.step(state, be.rng(1))
    assert info.acceptance.shape == (3,) and info.cluster_size.shape == (3,) and info.changed is None


def test_cycle_bad_input_is_named():
    theory = Ising(beta=0.4)
    with pytest.raises(ValueError, match="at least one kernel"):
        Cycle([])
    with pytest.raises(ValueError, match="one count per kernel"):
        Cycle([Wolff(theory)], repeats=[1, 2])
    with pytest.raises(ValueError, match=r"repeats\[0\]"):
        Cycle([Wolff(theory)], repeats=[0])
    with pytest.raises(TypeError, match=r"kernels\[1\]"):
        Cycle([Wolff(theory), "hmc"])


def test_cycle_hmc_and_metropolis_on_phi4_runs():
    be = get_backend("numpy")
    theory = Phi4.from_beta_g(0.5, 0.1)
    c = Cycle([HMC(theory, n_steps=4), CheckerboardMetropolis(theory, GaussianShift(1.0))])
    state = c.init(be.rng(0).normal((2, 4, 4), np.float64))
    for _ in range(3):
        state, info = c.step(state, be.rng(1))
    assert state.action is not None and np.all(np.isfinite(state.phi))  # back in the first kernel's state


def test_cycle_samples_the_exact_ising_energy():
    """Heat bath then Swendsen-Wang on the 4 x 4 torus at beta = 0.4 against Kaufman's exact energy:
    32 independent chains, Gamma-method error; |z| < 4.5 (false-alarm rate about 7e-6)."""
    be = get_backend("numpy")
    theory = Ising(beta=0.4)
    c = Cycle([CheckerboardMetropolis(theory, HeatBath()), SwendsenWang(theory), RandomSiteMetropolis(theory, SpinFlip())])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run(c, theory.random(be.rng(7), (32, 4, 4), np.float64), be.rng(8), n_therm=100, n_measure=800,
                  measure=lambda s: measure_spins(s, theory, np.float64),
                  analyse=lambda series: ensemble_spins(series, 16, theory), to_host=np.asarray)
    e = res.observables["energy"]
    exact = ising_torus(0.4, 4).energy
    assert math.isfinite(e.error) and e.error > 0
    assert abs(e.value - exact) / e.error < 4.5, (e, exact)
