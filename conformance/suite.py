"""Does every backend give the same, correct statistics?

Cases (model, parameters, sampler) run on every available backend. Checks:

(a) exact references (free field by momentum sums, decoupled sites by
    quadrature, unadjusted Langevin's exact O(dt)-biased free-field values);
(b) agreement between backends (pairwise z) and between algorithms on one backend;
(c) HMC: reversibility (< 1e-10 in float64), <exp(-dH)> = 1, rms dH ~ dt^2;
(d) unadjusted Langevin's bias linear in dt (extrapolating to the exact value) while
    MALA at the same dt is unbiased.

All z-tests form one family controlled by Holm's method at ALPHA = 1e-3
overall; the deterministic checks have fixed tolerances.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from portable_lattice import Clock, EdwardsAnderson, Ising, Phi4, Potts, simulate
from portable_lattice.exact import on_chain, u1_2d
from portable_lattice.theories import ON, U1
from portable_lattice.backends import get_backend
from portable_lattice.lattice import lattice_axes
from portable_lattice.samplers import HMC, INTEGRATORS, integrate

from . import exact
from .stats import ALPHA, holm, p_value

__all__ = ["Case", "CASES", "SpinCase", "SPIN_CASES", "Check", "run_suite", "run_case", "spin_theory",
           "hmc_integrator_checks"]


@dataclass(frozen=True)
class Case:
    name: str
    theory: Phi4
    L: int
    dim: int
    algorithm: str
    knobs: dict
    chains: int
    therm: int
    sweeps: int
    reference: Callable[[], dict] | None  # exact values by observable name
    observables: tuple[str, ...]
    quick: bool = True
    group: str | None = None  # cases of one group are compared across algorithms
    every: int = 1
    seed: int = 1234


@dataclass
class Check:
    case: str
    backend: str
    check: str
    kind: str  # exact | backends | algorithms | langevin | hmc | pem
    estimate: float
    error: float
    reference: float
    z: float | None = None
    passed: bool | None = None
    detail: str = ""


def _free(beta, L, dim):
    return lambda: exact.free_field(beta, L, dim)


FREE_OBS = ("phi2", "chi", "binder")
CASES: list[Case] = [
    Case("free-2d-checkerboard", Phi4.from_beta_g(0.3, 0.0), 8, 2, "checkerboard", {"step": 1.5, "hits": 1},
         16, 200, 1500, _free(0.3, 8, 2), FREE_OBS, group="free-2d"),
    Case("free-2d-hmc-leapfrog", Phi4.from_beta_g(0.3, 0.0), 8, 2, "hmc",
         {"traj_length": 1.0, "n_steps": 8, "integrator": "leapfrog"},
         16, 100, 800, _free(0.3, 8, 2), FREE_OBS + ("exp_minus_dh",), group="free-2d"),
    Case("free-3d-hmc-omelyan", Phi4.from_kappa_lambda(0.1, 0.0), 4, 3, "hmc",
         {"traj_length": 1.0, "n_steps": 4, "integrator": "omelyan"},
         16, 100, 800, _free(0.2, 4, 3), FREE_OBS + ("exp_minus_dh",)),
    Case("free-2d-mala", Phi4.from_beta_g(0.3, 0.0), 8, 2, "mala", {"dt": 0.2},
         16, 200, 1500, _free(0.3, 8, 2), ("phi2", "chi"), group="free-2d", every=2),
    Case("decoupled-metropolis", Phi4.from_beta_g(0.0, 0.5), 4, 2, "metropolis", {"step": 1.5},
         8, 50, 400, lambda: exact.decoupled_phi4(0.5, 4, 2), ("phi2", "chi", "binder")),
    Case("decoupled-checkerboard-multihit", Phi4.from_beta_g(0.0, 0.3), 6, 2, "checkerboard",
         {"step": 2.0, "hits": 3}, 16, 50, 600, lambda: exact.decoupled_phi4(0.3, 6, 2),
         ("phi2", "chi", "binder")),
    Case("phi4-pem-checkerboard", Phi4.from_beta_g(0.5, 0.1), 8, 2, "checkerboard", {"step": 1.2},
         16, 300, 2000, None, ("phi2", "m_abs", "chi", "binder", "action"), group="phi4-pem"),
    Case("phi4-pem-hmc", Phi4.from_beta_g(0.5, 0.1), 8, 2, "hmc",
         {"traj_length": 1.0, "n_steps": 10, "integrator": "leapfrog"},
         16, 200, 1000, None, ("phi2", "m_abs", "chi", "binder", "action", "exp_minus_dh"), group="phi4-pem"),
    # the full (non-quick) set: more dimensions and the paper's parameters
    Case("free-1d-hmc", Phi4.from_beta_g(0.8, 0.0), 16, 1, "hmc", {"traj_length": 1.0, "n_steps": 10},
         16, 100, 2000, _free(0.8, 16, 1), FREE_OBS, quick=False),
    Case("free-4d-checkerboard", Phi4.from_beta_g(0.2, 0.0), 4, 4, "checkerboard", {"step": 1.5},
         16, 200, 2000, _free(0.2, 4, 4), FREE_OBS, quick=False),
    Case("phi4-dm-hmc", Phi4.from_kappa_lambda(0.21, 0.022), 16, 2, "hmc",
         {"traj_length": 1.0, "n_steps": 10}, 16, 300, 2000, None,
         ("phi2", "m_abs", "chi", "binder", "action"), quick=False, group="phi4-dm"),
    Case("phi4-dm-checkerboard", Phi4.from_kappa_lambda(0.21, 0.022), 16, 2, "checkerboard",
         {"step": 1.5, "hits": 2}, 16, 300, 4000, None,
         ("phi2", "m_abs", "chi", "binder", "action"), quick=False, group="phi4-dm"),
]

# O(n) on the periodic chain (transfer-operator sectors) and compact U(1) on the 2D torus
# (Z = sum_n I_n(beta)^V): every new kernel against an exact value; the quick (CI) set takes one
# local and one cluster update of each model, since array_api_strict runs these at 7-25 s a case
ON_OBS, U1_OBS = ("energy", "chi", "heat_capacity"), ("plaquette", "chi_top")
CASES += [
    Case("on2-chain-checkerboard-or", ON(1.0, n=2, dim=1), 8, 1, "checkerboard", {"overrelax": 1}, 16, 100, 1000,
         lambda: on_chain(2, 8, 1.0), ON_OBS, group="on2-chain"),
    Case("on2-chain-heatbath", ON(1.0, n=2, dim=1), 8, 1, "heatbath", {}, 16, 100, 1000,
         lambda: on_chain(2, 8, 1.0), ON_OBS, group="on2-chain", quick=False),
    Case("on2-chain-swendsen-wang", ON(1.0, n=2, dim=1), 8, 1, "swendsen-wang", {}, 16, 100, 1000,
         lambda: on_chain(2, 8, 1.0), ON_OBS, group="on2-chain", quick=False),
    Case("on3-chain-heatbath-or", ON(1.2, n=3, dim=1), 8, 1, "heatbath", {"overrelax": 1}, 16, 100, 1000,
         lambda: on_chain(3, 8, 1.2), ON_OBS, group="on3-chain", quick=False),
    Case("on3-chain-wolff", ON(1.2, n=3, dim=1), 8, 1, "wolff", {}, 16, 100, 1000,
         lambda: on_chain(3, 8, 1.2), ON_OBS, group="on3-chain", every=2),
    Case("on3-chain-metropolis", ON(1.2, n=3, dim=1), 8, 1, "metropolis", {"step": 1.0}, 16, 100, 1000,
         lambda: on_chain(3, 8, 1.2), ON_OBS, group="on3-chain", quick=False),
    Case("u1-4x4-hmc", U1(1.0, dim=2), 4, 2, "hmc", {"traj_length": 1.0, "n_steps": 8}, 16, 100, 800,
         lambda: u1_2d(4, 1.0), U1_OBS, group="u1-4x4"),
    Case("u1-4x4-checkerboard", U1(1.0, dim=2), 4, 2, "checkerboard", {"step": 2.0}, 16, 100, 800,
         lambda: u1_2d(4, 1.0), U1_OBS, group="u1-4x4"),
    Case("u1-4x4-heatbath-or", U1(1.0, dim=2), 4, 2, "heatbath", {"overrelax": 1}, 16, 100, 800,
         lambda: u1_2d(4, 1.0), U1_OBS, group="u1-4x4", quick=False),
]

# small enough that the exact bias is linear to 3e-4 (the fit error is ~2e-3)
ULA_BETA, ULA_L, ULA_DIM, ULA_DTS = 0.3, 8, 2, (0.01, 0.02, 0.04)
for _dt in ULA_DTS:
    CASES.append(Case(f"free-2d-langevin-dt{_dt}", Phi4.from_beta_g(ULA_BETA, 0.0), ULA_L, ULA_DIM, "langevin",
                      {"dt": _dt}, 16, 200, 1500,
                      (lambda dt=_dt: exact.free_field_langevin(ULA_BETA, ULA_L, ULA_DIM, dt)),
                      ("phi2",), every=max(1, int(round(0.2 / _dt)))))


@dataclass(frozen=True)
class SpinCase:
    """A spin-model case: :func:`spin_theory` builds the theory (its beta included); references by
    enumeration or Kaufman."""

    name: str
    model: str  # ising | potts | clock | ea
    beta: float
    L: int
    dim: int
    algorithm: str
    chains: int
    therm: int
    sweeps: int
    reference: Callable[[], dict] | None
    observables: tuple[str, ...]
    quick: bool = True
    group: str | None = None
    every: int = 1
    seed: int = 4321
    q: int = 3
    h: float = 0.0
    couplings_seed: int | None = None


def spin_theory(case: SpinCase):
    """The case's theory at its beta; Edwards-Anderson couplings are drawn on NumPy from the
    case's couplings seed (``simulate`` moves them to the run's backend)."""
    if case.model == "ising":
        return Ising(beta=case.beta, h=case.h)
    if case.model == "potts":
        return Potts(beta=case.beta, q=case.q)
    if case.model == "clock":
        return Clock(beta=case.beta, q=case.q)
    return EdwardsAnderson.gaussian(case.L, case.dim, case.couplings_seed, beta=case.beta,
                                    backend=get_backend("numpy"))


def _ea_couplings(case):
    return get_backend("numpy").to_numpy(spin_theory(case).couplings)


def _enum(case_kwargs):
    from .exact_spins import enumerate_model
    return lambda: enumerate_model(**case_kwargs)


def _kaufman(K, L):
    from portable_lattice.exact import ising_torus
    def ref():
        ex = ising_torus(K, L)
        return {"energy": ex.energy, "heat_capacity": ex.heat_capacity}
    return ref


from portable_lattice.exact import K_CRITICAL  # noqa: E402

SPIN_CASES: list[SpinCase] = [
    SpinCase("ising-4x4-checkerboard", "ising", 0.4, 4, 2, "checkerboard", 16, 100, 2000,
             _enum(dict(name="ising", beta=0.4, L=4)), ("energy", "m2", "binder", "heat_capacity"), group="ising-4x4"),
    SpinCase("ising-4x4-swendsen-wang", "ising", 0.4, 4, 2, "swendsen-wang", 16, 100, 2000,
             _enum(dict(name="ising", beta=0.4, L=4)), ("energy", "m2", "binder", "heat_capacity"), group="ising-4x4"),
    SpinCase("ising-4x4-field-heatbath", "ising", 0.3, 4, 2, "heatbath", 16, 100, 2000,
             _enum(dict(name="ising", beta=0.3, L=4, h=0.2)), ("energy", "m2", "m_abs"), h=0.2,
             group="ising-4x4-field"),
    # the blocked Metropolis path with a field: integer thresholds indexed by (s_x, neighbour sum)
    SpinCase("ising-4x4-field-checkerboard", "ising", 0.3, 4, 2, "checkerboard", 16, 100, 2000,
             _enum(dict(name="ising", beta=0.3, L=4, h=0.2)), ("energy", "m2", "m_abs"), h=0.2,
             group="ising-4x4-field"),
    SpinCase("ising-4x4-heatbath", "ising", 0.4, 4, 2, "heatbath", 16, 100, 2000,
             _enum(dict(name="ising", beta=0.4, L=4)), ("energy", "m2", "binder", "heat_capacity"), group="ising-4x4"),
    SpinCase("ising-3x3-dcl-metropolis", "ising", 0.35, 3, 2, "metropolis", 8, 50, 500,
             _enum(dict(name="ising", beta=0.35, L=3)), ("energy", "m2")),
    SpinCase("potts3-3x3-swendsen-wang", "potts", 1.0, 3, 2, "swendsen-wang", 16, 100, 1500,
             _enum(dict(name="potts", beta=1.0, L=3, q=3)), ("energy", "m2", "binder")),
    SpinCase("clock3-3x3-dcl-metropolis", "clock", 0.8, 3, 2, "metropolis", 8, 50, 500,
             _enum(dict(name="clock", beta=0.8, L=3, q=3)), ("energy", "m2")),
    SpinCase("potts3-3x3-dcl-metropolis", "potts", 1.0, 3, 2, "metropolis", 8, 50, 500,
             _enum(dict(name="potts", beta=1.0, L=3, q=3)), ("energy", "m2")),
    SpinCase("ea-4x4-checkerboard", "ea", 0.8, 4, 2, "checkerboard", 16, 100, 2000, None,
             ("energy", "m2", "binder"), couplings_seed=11, group="ea-4x4"),
    SpinCase("ea-4x4-heatbath", "ea", 0.8, 4, 2, "heatbath", 16, 100, 2000, None,
             ("energy", "m2", "binder"), couplings_seed=11, group="ea-4x4"),
    SpinCase("ea-4x4-dcl-metropolis", "ea", 0.8, 4, 2, "metropolis", 8, 50, 800, None,
             ("energy", "m2"), couplings_seed=11, group="ea-4x4"),
    # Checkerboard needs an even L, beyond the 3x3 enumeration of q = 3 models: at 4x4 the
    # samplers are held to each other, and across models: the q = 3 clock bond is
    # cos(2 pi k / 3) = (3 delta - 1) / 2, so clock at beta = 2/3 is Potts at beta = 1 with
    # e_clock = 1.5 e_Potts + 1; m^2, Binder and C = beta^2 V var(e) are the same numbers.
    # (Swendsen-Wang is Potts-only; the clock runs take another seed, so that the cross-model
    # pairs are independent tests rather than the same chain mapped twice.)
    *[SpinCase(f"{model}3-4x4-{alg}", model, beta, 4, 2, alg, 16, 100, 2000, None,
               ("m2", "binder", "heat_capacity"), group="q3-4x4", seed=seed)
      for model, beta, seed, algs in (("potts", 1.0, 4321, ("swendsen-wang", "checkerboard", "heatbath")),
                                      ("clock", 2.0 / 3.0, 4322, ("checkerboard", "heatbath")))
      for alg in algs],
    SpinCase("ising-16-kc-swendsen-wang", "ising", K_CRITICAL, 16, 2, "swendsen-wang", 16, 100, 800,
             _kaufman(K_CRITICAL, 16), ("energy", "heat_capacity", "binder"), group="ising-16-kc"),
    SpinCase("ising-16-kc-wolff", "ising", K_CRITICAL, 16, 2, "wolff", 16, 200, 1000,
             _kaufman(K_CRITICAL, 16), ("energy", "heat_capacity", "binder"), group="ising-16-kc", every=1),
    SpinCase("ising-3d-checkerboard", "ising", 0.2, 4, 3, "checkerboard", 16, 100, 1000, None,
             ("energy", "m2", "binder"), group="ising-3d"),
    SpinCase("ising-3d-swendsen-wang", "ising", 0.2, 4, 3, "swendsen-wang", 16, 100, 1000, None,
             ("energy", "m2", "binder"), group="ising-3d"),
    SpinCase("ising-32-kc-swendsen-wang", "ising", K_CRITICAL, 32, 2, "swendsen-wang", 16, 200, 3000,
             _kaufman(K_CRITICAL, 32), ("energy", "heat_capacity"), quick=False),
]


def _ea_reference(case: SpinCase):
    from .exact_spins import enumerate_model
    return enumerate_model("ea", case.beta, case.L, case.dim, couplings=_ea_couplings(case))


def run_case(case, backend: str, device: str | None = None):
    theory = spin_theory(case) if isinstance(case, SpinCase) else case.theory
    knobs = {} if isinstance(case, SpinCase) else case.knobs
    return simulate(theory, L=case.L, dim=case.dim, algorithm=case.algorithm, backend=backend,
                    device=device, chains=case.chains, therm=case.therm, sweeps=case.sweeps,
                    every=case.every, seed=case.seed, progress=False, **knobs)


def _z(a: float, ea: float, b: float, eb: float = 0.0) -> float:
    err = math.sqrt(ea * ea + eb * eb)
    return (a - b) / err if err > 0 else (0.0 if a == b else math.inf)


def hmc_integrator_checks(backend: str, device: str | None = None, seed: int = 7) -> list[Check]:
    """Deterministic HMC checks on an interacting field in float64.

    Reversibility: integrate, flip the momentum, integrate back; the start must
    be recovered to 1e-10. dH scaling: rms dH over 64 chains at dt, dt/2, dt/4
    from the same (phi, p); the fitted log-log slope must be 2 +- 0.2 (both
    integrators are second order).
    """
    be = get_backend(backend, device)
    xp = be.xp
    action = Phi4.from_kappa_lambda(0.21, 0.022)
    rng = be.rng(seed)
    # a roughly equilibrated start from a short HMC run
    kernel = HMC(action, traj_length=1.0, n_steps=10)
    state = kernel.init(0.5 * rng.normal((64, 8, 8), xp.float64))
    for _ in range(30):
        state, _ = kernel.step(state, rng)
    phi0, g0 = state.phi, state.grad
    p0 = rng.normal(tuple(phi0.shape), xp.float64)
    out = []
    for name, integrator in INTEGRATORS.items():
        phi1, p1, g1 = integrate(phi0, p0, g0, action.grad_action, 0.1, 10, integrator)
        phi2, p2, _ = integrate(phi1, -p1, g1, action.grad_action, 0.1, 10, integrator)
        err = float(np.max(np.abs(be.to_numpy(phi2) - be.to_numpy(phi0))))
        out.append(Check("hmc-integrators", backend, f"reversibility-{name}", "hmc", err, 0.0, 0.0,
                         passed=err < 1e-10, detail="max |phi_back - phi_start|, tolerance 1e-10"))
        dts, rms = [0.2, 0.1, 0.05], []
        h0 = be.to_numpy(state.action + 0.5 * xp.sum(p0 * p0, axis=lattice_axes(p0)))
        for dt in dts:
            phi_t, p_t, _ = integrate(phi0, p0, g0, action.grad_action, dt, int(round(1.0 / dt)), integrator)
            h1 = be.to_numpy(action.action(phi_t) + 0.5 * xp.sum(p_t * p_t, axis=lattice_axes(p_t)))
            rms.append(float(np.sqrt(np.mean((h1 - h0) ** 2))))
        slope = float(np.polyfit(np.log(dts), np.log(rms), 1)[0])
        out.append(Check("hmc-integrators", backend, f"dH-scaling-{name}", "hmc", slope, 0.0, 2.0,
                         passed=abs(slope - 2.0) < 0.2,
                         detail=f"slope of log rms dH vs log dt; rms dH = {', '.join(f'{r:.3g}' for r in rms)}"))
    return out


ORACLE_SIGMA, ORACLE_MEMBERS = 1.0, 10


def pem_oracle_checks(backend: str, device: str | None = None) -> list[Check]:
    """Noisy oracle (exact gradient + N(0, sigma^2) per member, N = 10, sigma = 1): PEM must agree
    with the exact sampler (z-tests in the Holm family), and plain surrogate Metropolis must show
    its bias, |z| > 5 for at least one observable (a fixed-seed power check).

    phi^4 at beta = 0.5, g = 0.1 (the PEM paper's), L = 8, parallel sublattice mode, 16 chains.
    """
    from portable_lattice import run
    from portable_lattice.observables import ensemble_phi4, measure_phi4
    from portable_lattice.samplers import surrogate_metropolis
    from portable_lattice.surrogates import ExactGradient, NoisyOracle

    be = get_backend(backend, device)
    action = Phi4.from_beta_g(0.5, 0.1)
    L = 8
    out = {}
    for i, name in enumerate(("exact", "surrogate", "pem")):
        rng = be.rng(100 + i)
        provider = ExactGradient(action) if name == "exact" else NoisyOracle(action, ORACLE_SIGMA, ORACLE_MEMBERS, rng)
        kernel = surrogate_metropolis(action, provider, 1.0, "parallel", penalty=(name == "pem"))
        res = run(kernel, rng.normal((16, L, L), be.xp.float64), rng, n_therm=150, n_measure=1200,
                  measure=lambda p: measure_phi4(p, action), analyse=lambda s: ensemble_phi4(s, L * L, L),
                  to_host=be.to_numpy, progress=False)
        out[name] = res.observables
    label = backend if device in (None, "cpu") else f"{backend}:{device}"
    checks = []
    for obs in ("action", "m_abs", "chi"):
        e, p = out["exact"][obs], out["pem"][obs]
        checks.append(Check("pem-noisy-oracle", label, f"pem {obs}", "pem", p.value, math.hypot(p.error, e.error),
                            e.value, z=_z(p.value, p.error, e.value, e.error), detail="PEM vs exact sampler"))
    zs = {obs: _z(out["surrogate"][obs].value, out["surrogate"][obs].error, out["exact"][obs].value,
                  out["exact"][obs].error) for obs in ("action", "m_abs", "chi")}
    worst = max(zs, key=lambda k: abs(zs[k]))
    s_est = out["surrogate"][worst]
    checks.append(Check("pem-noisy-oracle", label, "surrogate bias", "pem", s_est.value, s_est.error,
                        out["exact"][worst].value, passed=abs(zs[worst]) > 5,
                        detail=f"plain surrogate Metropolis must be biased: max |z| = {abs(zs[worst]):.1f} "
                               f"({worst}) must exceed 5"))
    return checks


def _langevin_checks(results: dict, backend: str) -> list[Check]:
    """Unadjusted Langevin: weighted linear fit of <phi^2>(dt) must extrapolate to the
    exact value (a z-test), and the bias at the largest dt must be resolved (|z| > 5
    against the unbiased value, a fixed-seed power check)."""
    pts = [(dt, results[(f"free-2d-langevin-dt{dt}", backend)]["phi2"]) for dt in ULA_DTS
           if (f"free-2d-langevin-dt{dt}", backend) in results]
    if len(pts) < 3:
        return []
    truth = exact.free_field(ULA_BETA, ULA_L, ULA_DIM)["phi2"]
    x = np.array([p[0] for p in pts])
    y = np.array([p[1].value for p in pts])
    w = 1.0 / np.array([p[1].error for p in pts]) ** 2
    X = np.stack([np.ones_like(x), x], axis=1)
    cov = np.linalg.inv(X.T @ (w[:, None] * X))
    coef = cov @ X.T @ (w * y)
    intercept, e_int = float(coef[0]), float(math.sqrt(cov[0, 0]))
    big = pts[-1][1]
    z_big = big.z(truth)
    return [
        Check("langevin-extrapolation", backend, "phi2(dt->0)", "langevin", intercept, e_int, truth,
              z=_z(intercept, e_int, truth), detail=f"slope {coef[1]:.4f} +- {math.sqrt(cov[1, 1]):.4f} per unit dt"),
        Check("langevin-bias-resolved", backend, f"phi2(dt={pts[-1][0]})", "langevin", big.value, big.error, truth,
              passed=abs(z_big) > 5, detail=f"z vs unbiased = {z_big:.1f} (must exceed 5)"),
    ]


def _crashed(what: str, label: str, error: Exception, log) -> Check:
    """A failed ``runs`` check for a case (or check family) that raised on one backend."""
    detail = f"{getattr(error, 'name', type(error).__name__)}: {error}"
    log(f"  {label:18s} {what:34s} FAILED: {detail}")
    return Check(what, label, "runs", "exact", math.nan, 0.0, math.nan, passed=False, detail=detail)


class _JobError(Exception):
    """An exception raised in a worker process, carried back by name and message."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name

    def __str__(self):
        return f"{self.args[0]}"


def upscale_checks(backend: str, device: str | None = None) -> list[Check]:
    """Inverse-RG generation ([IRG], Eq. 9) with fixed k = 3 weights, from one spin to L = 16:
    (a) one level's probabilities equal the host reference (SciPy's circular correlation), 1e-12;
    (b) U4, chi and c_me on this backend agree with an independent NumPy run (z-tests)."""
    import warnings

    import scipy.ndimage as ndi

    from portable_lattice.rg.upscaling import symmetric_kernel, upscale_probabilities
    from portable_lattice.runs.upscaling import generate_and_analyse

    w = [0.1, 0.2, 0.3]
    be = get_backend(backend, device)
    mu = np.random.default_rng(0).choice(np.array([-1, 1], np.int8), size=(2, 8, 8))
    p = be.to_numpy(upscale_probabilities(be.from_numpy(mu), w, 3))
    up = np.repeat(np.repeat(mu, 2, axis=1), 2, axis=2).astype(float)
    K = np.array(symmetric_kernel(w, 3))
    ref = 1 / (1 + np.exp(-2 * np.stack([ndi.correlate(u, K, mode="wrap") for u in up])))
    dev = float(np.abs(p - ref).max())
    label = backend if device in (None, "cpu") else f"{backend}:{device}"
    checks = [Check("upscale-k3-probabilities", label, "max |p - p_ref|", "exact", dev, 0.0, 0.0,
                    passed=dev < 1e-12, detail="tolerance 1e-12")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        here = generate_and_analyse(w, 3, levels=4, configs=2048, seed=21, backend=be)["sizes"][16]
        there = generate_and_analyse(w, 3, levels=4, configs=2048, seed=22, backend="numpy")["sizes"][16]
    for obs in ("binder", "chi", "c_me"):
        a, b = here[obs], there[obs]
        checks.append(Check("upscale-k3-L16", f"{label} vs numpy (independent)", obs, "backends", a.value,
                            math.hypot(a.error, b.error), b.value, z=_z(a.value, a.error, b.value, b.error)))
    return checks


_DCL_MODEL: dict = {}


def _dcl_model():
    """A small masked-convolution model trained briefly on 4 x 4 Swendsen-Wang data at beta = 0.4407
    (once per process; seeded, so every backend is checked against the same model)."""
    if "m" not in _DCL_MODEL:
        import torch

        from portable_lattice.nn.autoregressive import MaskedConvModel, train_autoregressive
        from portable_lattice.surrogates.data import spin_dataset
        data, _ = spin_dataset(Ising(beta=0.4407), 4, 4000, chains=16, period=2, therm=100, seed=3)
        torch.manual_seed(4)
        m = MaskedConvModel(4, channels=8, layers=2, half=2, symmetrize=True)
        train_autoregressive(m, np.asarray(data), epochs=3, batch=64, lr=5e-3)
        _DCL_MODEL["m"] = m
    return _DCL_MODEL["m"]


def dcl_checks(backend: str, device: str | None = None) -> list[Check]:
    """Distribution-consistent learning ([DCL]) on a 4 x 4 Ising torus at beta = 0.4407, against enumeration:
    (a) the importance-weighted F, S, U per site from 20 000 samples of a small trained autoregressive
        model (the estimators run on this backend's arrays);
    (b) the exact independence Metropolis chain with that model as proposal: U and |m|;
    (c) Metropolis with a learned-energy theory holding the exact energy (parallel sublattices): U and |m|."""
    import torch

    from portable_lattice.exact import enumerate_theory
    from portable_lattice.nn.autoregressive import ModelProposal
    from portable_lattice.observables import measure_spins
    from portable_lattice.observables.thermo import model_thermodynamics
    from portable_lattice.runs.driver import run
    from portable_lattice.samplers import IndependenceMetropolis, learned_energy_metropolis
    from portable_lattice.surrogates import ExactEnergy
    from portable_lattice.theories import LearnedEnergy

    be = get_backend(backend, device)
    xp = be.xp
    label = backend if device in (None, "cpu") else f"{backend}:{device}"
    th = Ising(beta=0.4407)
    ex = enumerate_theory(th, 4, xp=np)
    model = _dcl_model()
    x, lq = model.sample(20000, torch.Generator().manual_seed(9))
    s = be.from_numpy(x.numpy())
    out = model_thermodynamics(th.energy(s, xp.float64), be.from_numpy(lq.double().numpy()), th.beta, 16)
    checks = []
    for name, ref in (("free_energy", ex.free_energy), ("entropy", ex.entropy), ("internal_energy", ex.energy)):
        e = out["importance"][name]
        checks.append(Check("dcl-4x4-importance", label, name, "exact", e.value, e.error, ref, z=e.z(ref)))
    refs = {"energy": ex.energy, "m_abs": ex.m_abs}
    for case, kernel, seed in (("dcl-4x4-independence", IndependenceMetropolis(th, ModelProposal(model, seed=8)), 7),
                               ("dcl-4x4-learned-energy",
                                learned_energy_metropolis(LearnedEnergy(th.beta, ExactEnergy(th), th)), 11)):
        rng = be.rng(seed)
        res = run(kernel, th.random(rng, (32, 4, 4), xp.float64), rng, n_therm=50, n_measure=400, progress=False,
                  measure=lambda c: measure_spins(c, th, xp.float64))
        for obs, ref in refs.items():
            e = res.observables[obs]
            checks.append(Check(case, label, obs, "exact", e.value, e.error, ref, z=e.z(ref)))
    return checks


def diffusion_checks(backend: str, device: str | None = None) -> list[Check]:
    """DM-MC made exact ([DMSQ] Eq. 4.13, route 4 "exact"): independence Metropolis on the free
    field (L = 4, kappa = 0.2) with a deliberately wrong diffusion model - the exact score of the
    free field at kappa = 0.23 - sampled by the probability-flow ODE (RK4) with log q from the exact
    divergence. For a Gaussian score the ODE is linear, so RK4's error shifts log q by a constant
    and the chain is exact at any step count. Every reported observable against the exact value
    (z-tests in the Holm family); the wrong model costs acceptance only."""
    import warnings

    try:
        import torch  # noqa: F401
    except ImportError:
        return []
    from portable_lattice.exact import free_field_exact
    from portable_lattice.nn.diffusion import VESDE, DiffusionProposal
    from portable_lattice.nn.unet import GaussianScore, free_field_spectrum
    from portable_lattice.runs.diffusion import REPORTED, independence_chain

    be = get_backend(backend, device)
    L, kappa = 4, 0.2
    theory = Phi4.from_kappa_lambda(kappa, 0.0)
    model = GaussianScore(free_field_spectrum(L, 0.23))
    if be.name == "cupy" or (be.name == "torch" and str(be.device) != "cpu"):
        from portable_lattice.backends.surrogate import torch_device
        model = model.to(torch_device(be))
    proposal = DiffusionProposal(model, VESDE(), "exact", steps=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = independence_chain(theory, proposal, be.zeros((16, L, L)), sweeps=250, therm=5, seed=41)
    exact_values = free_field_exact(L, theory.beta)
    label = backend if device in (None, "cpu") else f"{backend}:{device}"
    checks = [Check("dm-mc-free-L4-exact-divergence", label, obs, "exact", res.observables[obs].value,
                    res.observables[obs].error, exact_values[obs], z=res.observables[obs].z(exact_values[obs]))
              for obs in REPORTED]
    acc = res.acceptance.value
    checks.append(Check("dm-mc-free-L4-exact-divergence", label, "acceptance", "exact", acc, res.acceptance.error,
                        0.0, passed=0.2 < acc < 0.95, detail="a wrong model: acceptance must be well below 1"))
    return checks


#: check families run once per backend besides the cases (looked up by name when run)
_EXTRAS = ("hmc_integrator_checks", "pem_oracle_checks", "upscale_checks", "dcl_checks", "diffusion_checks",
           "fused_checks")


def fused_checks(backend: str, device: str | None = None) -> list[Check]:
    """The fused kernels (``fused=True``) where the backend has them (none: no checks).

    Exact values: the free field (checkerboard, Philox stream; HMC, native stream) and the
    4x4 Ising model by enumeration (native stream); each run takes its own seed, so these are
    tests independent of the generic cases. Bit identity: three sweeps (trajectories) of the
    fused and the generic path from the same seed under the Philox stream must give the same
    configuration.
    """
    from portable_lattice._delegation import fused_kernel
    from portable_lattice.philox import PhiloxGenerator
    from portable_lattice.samplers import CheckerboardMetropolis, GaussianShift, SpinFlip

    from .exact_spins import enumerate_model

    be = get_backend(backend, device)
    probe = be.rng(0).normal((1, 4, 4), be.xp.float64)
    if fused_kernel("checkerboard", probe) is None:
        return []
    out: list[Check] = []
    free = Phi4.from_beta_g(0.3, 0.0)
    runs = [("fused-free-2d-checkerboard", free, "checkerboard", {"step": 1.5, "fused": True}, "philox",
             exact.free_field(0.3, 8, 2), ("phi2", "chi"), 8),
            ("fused-free-2d-hmc", free, "hmc", {"traj_length": 1.0, "n_steps": 8, "fused": True}, "native",
             exact.free_field(0.3, 8, 2), ("phi2", "chi", "exp_minus_dh"), 8),
            ("fused-ising-4x4-checkerboard", Ising(0.4), "checkerboard", {"fused": True}, "native",
             enumerate_model("ising", 0.4, 4, 2), ("energy", "m2", "binder"), 4)]
    for name, theory, algorithm, knobs, stream, ref, observables, L in runs:
        r = simulate(theory, L=L, algorithm=algorithm, backend=backend, device=device, chains=16, therm=200,
                     sweeps=1500, seed=2468, stream=stream, progress=False, **knobs)
        for obs in observables:
            target = 1.0 if obs == "exp_minus_dh" else ref[obs]
            est = r.observables[obs]
            out.append(Check(name, backend, obs, "exact", est.value, est.error, target, z=est.z(target)))
    xp = be.xp
    identity = [("phi4-checkerboard", Phi4.from_beta_g(0.5, 0.1), lambda f: CheckerboardMetropolis(
                    Phi4.from_beta_g(0.5, 0.1), GaussianShift(1.2), hits=2, fused=f), "field"),
                ("ising-checkerboard", Ising(0.44), lambda f: CheckerboardMetropolis(Ising(0.44), SpinFlip(), fused=f),
                 "spins"),
                ("phi4-hmc", Phi4.from_beta_g(0.5, 0.1), lambda f: HMC(Phi4.from_beta_g(0.5, 0.1), 1.0, 5, fused=f),
                 "field")]
    for name, theory, make, fam in identity:
        gen = PhiloxGenerator(xp, 99, be.device)
        x0 = gen.normal((4, 8, 8), xp.float64) if fam == "field" else theory.random(gen, (4, 8, 8), xp.float64)
        configs = []
        for f in (False, True):
            rng = PhiloxGenerator(xp, 7, be.device)
            kernel = make(f)
            state = kernel.init(x0)
            for _ in range(3):
                state, _ = kernel.step(state, rng)
            configs.append(be.to_numpy(state.config))
        same = bool(np.array_equal(configs[0], configs[1]))
        out.append(Check(f"fused-identity-{name}", backend, "configuration", "fused", float(same), 0.0, 1.0,
                         passed=same, detail="fused == generic after 3 sweeps, same seed, Philox stream"))
    return out


def _job(kind: str, what: str, backend: str, device: str | None, quick: bool):
    """One unit of work, (case or check family) x backend; module level so a process pool can run it.

    Returns ("ok", payload, seconds) or ("error", (exception name, message), seconds).
    """
    t = time.perf_counter()
    try:
        if kind == "case":
            case = next(c for c in CASES + SPIN_CASES if c.name == what)
            payload = run_case(case, backend, device).observables
        else:
            payload = globals()[what](backend, device)
        return "ok", payload, time.perf_counter() - t
    except Exception as e:  # a backend that crashes fails its case; the suite goes on
        return "error", (type(e).__name__, str(e)), time.perf_counter() - t


def _cost(case, backend: str) -> float:
    """Rough relative cost, to start the longest jobs first when running in parallel."""
    size = case.chains * (case.therm + case.sweeps * case.every) * case.L ** case.dim
    return size * {"array_api_strict": 4.0, "torch": 1.5}.get(backend, 1.0)


def run_suite(backends: list[tuple[str, str | None]], quick: bool = True, log=print, workers: int = 1) -> dict:
    """Run every case on every backend; returns {"checks": [...], "passed": bool, ...}.

    ``workers`` > 1 runs the (case, backend) jobs in that many processes; the checks, their
    order and the verdict are the same as in a serial run (each job has its own seed).
    """
    cases = [c for c in CASES + SPIN_CASES if c.quick or not quick]
    labels = {(name, device): (name if device in (None, "cpu") else f"{name}:{device}") for name, device in backends}
    jobs = [("case", c.name, name, device) for name, device in backends for c in cases]
    jobs += [("extra", what, name, device) for name, device in backends for what in _EXTRAS]
    outcomes: dict[tuple, tuple] = {}
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        by_name = {c.name: c for c in cases}
        order = sorted(jobs, key=lambda j: -(_cost(by_name[j[1]], j[2]) if j[0] == "case" else 1e9))
        # spawn, not fork: torch and the NumPy generator's thread pool must start fresh in each worker
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {job: pool.submit(_job, *job, quick) for job in order}
            for job, fut in futures.items():
                outcomes[job] = fut.result()
    else:
        for job in jobs:
            outcomes[job] = _job(*job, quick)
    results: dict[tuple[str, str], dict] = {}
    timings: dict[str, float] = {}
    checks: list[Check] = []
    for name, device in backends:
        label = labels[(name, device)]
        timings[label] = 0.0
        for case in cases:
            status, payload, seconds = outcomes[("case", case.name, name, device)]
            timings[label] += seconds
            if status == "error":
                checks.append(_crashed(case.name, label, _JobError(*payload), log))
                continue
            results[(case.name, label)] = payload
            log(f"  {label:18s} {case.name:34s} {seconds:6.1f}s")
            if case.reference is not None or getattr(case, "couplings_seed", None) is not None:
                ref = case.reference() if case.reference is not None else _ea_reference(case)
                for obs in case.observables:
                    if obs != "exp_minus_dh" and obs not in ref:
                        continue  # no exact value: compared across backends and algorithms only
                    est = payload[obs]
                    target = 1.0 if obs == "exp_minus_dh" else ref[obs]
                    checks.append(Check(case.name, label, obs, "exact", est.value, est.error, target,
                                        z=est.z(target)))
            elif "exp_minus_dh" in case.observables:
                est = payload["exp_minus_dh"]
                checks.append(Check(case.name, label, "exp_minus_dh", "exact", est.value, est.error, 1.0,
                                    z=est.z(1.0)))
        for what in _EXTRAS:
            status, payload, seconds = outcomes[("extra", what, name, device)]
            timings[label] += seconds
            if status == "error":
                checks.append(_crashed(what, label, _JobError(*payload), log))
            else:
                checks.extend(payload)
        checks.extend(_langevin_checks(results, label))
    labels = list(timings)
    # (b) backends against each other, and algorithms against each other on one backend
    for case in cases:
        for a, b in itertools.combinations(labels, 2):
            if (case.name, a) not in results or (case.name, b) not in results:
                continue  # a crashed run, already failed above
            for obs in case.observables:
                ea, eb = results[(case.name, a)][obs], results[(case.name, b)][obs]
                checks.append(Check(case.name, f"{a} vs {b}", obs, "backends", ea.value,
                                    math.hypot(ea.error, eb.error), eb.value, z=_z(ea.value, ea.error, eb.value, eb.error)))
    groups: dict[str, list[Case]] = {}
    for case in cases:
        if case.group:
            groups.setdefault(case.group, []).append(case)
    for members in groups.values():
        for c1, c2 in itertools.combinations(members, 2):
            shared = [o for o in c1.observables if o in c2.observables and o != "exp_minus_dh"]
            for label in labels:
                if (c1.name, label) not in results or (c2.name, label) not in results:
                    continue
                for obs in shared:
                    e1, e2 = results[(c1.name, label)][obs], results[(c2.name, label)][obs]
                    checks.append(Check(f"{c1.name} vs {c2.name}", label, obs, "algorithms", e1.value,
                                        math.hypot(e1.error, e2.error), e2.value,
                                        z=_z(e1.value, e1.error, e2.value, e2.error)))
    # one Holm family over every z-test
    tested = [c for c in checks if c.z is not None]
    rejected = holm([p_value(c.z) for c in tested], ALPHA)
    for c, r in zip(tested, rejected):
        c.passed = not r
    return {"alpha": ALPHA, "quick": quick, "backends": labels, "timings": timings,
            "n_z_tests": len(tested), "passed": all(c.passed for c in checks),
            "checks": [asdict(c) for c in checks]}
