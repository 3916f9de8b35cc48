"""Diffusion-model jobs ([DMSQ]): training sets from HMC, analysis of generated samples, DM-MC chains.

The torch side (score networks, training, samplers, likelihoods, the proposal) lives in
:mod:`portable_lattice.nn.diffusion`; the CLI and the study build it there and hand the
proposal or the generated configurations to the functions here, which are Array API code
on any backend.
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Any

from array_api_compat import array_namespace

from .._checks import nonnegative_int, positive_int
from ..backends import backend_of, get_backend
from ..observables import ensemble_phi4, measure_phi4
from ..samplers import HMC, IndependenceMetropolis
from ..statistics import Estimate, UnreliableErrorWarning, gamma_method
from .driver import run, thermalise

__all__ = ["REPORTED", "hmc_configurations", "analyse_configurations", "independence_chain", "z_scores",
           "observables_json"]

#: observables every diffusion job reports
REPORTED = ("m", "m_abs", "phi2", "chi", "binder", "action")


def hmc_configurations(theory: Any, L: int, n: int, *, chains: int = 64, spacing: int = 10, therm: int = 100,
                       traj_length: float = 1.0, n_steps: int = 10, integrator: str = "leapfrog",
                       backend: Any = "numpy", device: Any = None, seed: int = 0, dim: int = 2) -> tuple[Any, dict]:
    """``n`` configurations of ``theory`` on L^dim from ``chains`` HMC chains, ``spacing`` trajectories
    apart after ``therm`` thermalisation trajectories. Returns (configs (n, L, ..., L), info) with
    the measured tau_int of |M| in trajectories (so the spacing can be judged) and the acceptance."""
    for name, v in (("L", L), ("n", n), ("chains", chains), ("spacing", spacing)):
        positive_int(name, v)
    nonnegative_int("therm", therm)
    be = get_backend(backend, device)
    xp = be.xp
    rng = be.rng(seed)
    kernel = HMC(theory, traj_length=traj_length, n_steps=n_steps, integrator=integrator)
    shape = (chains,) + (L,) * dim
    state = thermalise(kernel, 0.1 * rng.normal(shape, xp.float64), rng, therm)
    out, m_abs, acc = [], [], []
    t0 = time.perf_counter()
    rounds = -(-n // chains)
    for _ in range(rounds):
        for _ in range(spacing):
            state, info = kernel.step(state, rng)
            acc.append(be.to_numpy(info.acceptance))
            m_abs.append(be.to_numpy(xp.abs(xp.mean(state.phi, axis=tuple(range(1, dim + 1))))))
        out.append(state.phi)
    configs = xp.concat(out, axis=0)[:n]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableErrorWarning)
        tau = gamma_method(xp_to_rows(m_abs))
        a = gamma_method(xp_to_rows(acc))
    return configs, {"chains": chains, "spacing": spacing, "therm": therm, "traj_length": traj_length,
                     "n_steps": n_steps, "integrator": kernel.integrator.name,
                     "tau_int_m_abs": {"value": tau.tau_int, "error": tau.tau_int_error},
                     "acceptance": {"value": a.value, "error": a.error}, "seconds": time.perf_counter() - t0}


def xp_to_rows(rows: list) -> Any:
    """Stack per-step host rows (chains,) into (steps, chains) for the Gamma method."""
    xp = array_namespace(rows[0])
    return xp.stack([xp.asarray(r) for r in rows], axis=0)


def analyse_configurations(theory: Any, configs: Any) -> dict[str, Estimate]:
    """Observables of independent configurations (n, L, ..., L): means with their standard errors,
    chi and the Binder cumulant with jackknife errors (Table 1 of [DMSQ])."""
    xp = array_namespace(configs)
    per = measure_phi4(configs, theory)
    series = {k: xp.reshape(v, (v.shape[0], 1)) for k, v in per.items()}
    series = {k: backend_of(configs).to_numpy(v) for k, v in series.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableErrorWarning)
        return ensemble_phi4(series, volume=math.prod(configs.shape[1:]), L=configs.shape[1])


def independence_chain(theory: Any, proposal: Any, start: Any, *, sweeps: int, therm: int = 10, seed: int = 0,
                       penalty: bool = False, progress: bool | None = False):
    """DM-MC (Eq. 4.13 of [DMSQ]): ``sweeps`` independence-Metropolis steps of every chain of ``start``
    after ``therm`` steps; returns the driver's RunResult (observables, acceptance, series)."""
    positive_int("sweeps", sweeps)
    be = backend_of(start)
    kernel = IndependenceMetropolis(theory, proposal, penalty=penalty)
    return run(kernel, start, be.rng(seed), n_therm=therm, n_measure=sweeps,
               measure=lambda phi: measure_phi4(phi, theory),
               analyse=lambda s: ensemble_phi4(s, volume=math.prod(start.shape[1:]), L=start.shape[1]),
               to_host=be.to_numpy, progress=progress, label="DM-MC")


def z_scores(obs: dict[str, Estimate], reference: dict[str, Any]) -> dict[str, float]:
    """z = (a - b) / sqrt(da^2 + db^2) per observable against a reference: exact numbers (db = 0)
    or {"value", "error"} dicts / Estimates (combined errors)."""
    out = {}
    for name, est in obs.items():
        if name not in reference:
            continue
        ref = reference[name]
        if isinstance(ref, Estimate):
            value, error = ref.value, ref.error
        elif isinstance(ref, dict):
            value, error = ref["value"], ref.get("error") or 0.0
        else:
            value, error = float(ref), 0.0
        err = math.hypot(est.error, error)
        out[name] = (est.value - value) / err if err > 0 else float("nan")
    return out


def observables_json(obs: dict[str, Estimate], names=REPORTED) -> dict:
    return {name: obs[name].as_dict() for name in names if name in obs}
