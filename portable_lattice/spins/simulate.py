"""One call from parameters to results for spin models (used by the CLI)."""
from __future__ import annotations

from typing import Any

from .._checks import choice, run_sizes
from ..analysis import gamma_method
from ..backends import backend_of, get_backend
from ..driver import RunResult, run
from .clusters import SwendsenWang, Wolff
from .local import SequentialSpinMetropolis, SpinCheckerboard, check_beta
from .models import EdwardsAnderson
from .observables import ensemble_spins, measure_spins

__all__ = ["SPIN_ALGORITHMS", "make_spin_kernel", "simulate_spins"]

SPIN_ALGORITHMS = ("metropolis", "checkerboard", "heatbath", "swendsen-wang", "wolff")


def make_spin_kernel(model, beta: float, algorithm: str):
    """metropolis = DCL's random-site single-spin flip (Eq. 7 of 004); checkerboard = Metropolis
    on both parities; heatbath = checkerboard heat bath; swendsen-wang; wolff (one cluster per step)."""
    choice("algorithm", algorithm, SPIN_ALGORITHMS)
    if algorithm == "metropolis":
        return SequentialSpinMetropolis(model, beta)
    if algorithm == "checkerboard":
        return SpinCheckerboard(model, beta, "metropolis")
    if algorithm == "heatbath":
        return SpinCheckerboard(model, beta, "heatbath")
    if algorithm == "swendsen-wang":
        return SwendsenWang(model, beta)
    return Wolff(model, beta)


def simulate_spins(model, *, beta: float, L: int, dim: int = 2, algorithm: str = "swendsen-wang",
                   backend: Any = "numpy", device: Any = None, chains: int = 4, therm: int = 500,
                   sweeps: int = 1000, every: int = 1, seed: int = 0, progress: bool | None = None,
                   spins0: Any = None) -> RunResult:
    """Sample a spin ``model`` at inverse temperature ``beta`` on an ``L**dim`` torus.

    Returns a RunResult whose ``observables`` hold energy (per site), m, m_abs,
    m2, m4, chi, heat_capacity, binder, c_me and acceptance (for Wolff: the
    flipped cluster's fraction of V), all with errors.
    """
    check_beta(beta)
    run_sizes(L=L, dim=dim, chains=chains, therm=therm, sweeps=sweeps, every=every)
    if isinstance(model, EdwardsAnderson) and (model.dim != dim or model.couplings.shape[1] != L):
        raise ValueError(f"couplings of shape {tuple(model.couplings.shape)} do not fit L={L}, dim={dim}")
    kernel = make_spin_kernel(model, beta, algorithm)
    be = get_backend(backend, device)
    rng = be.rng(seed)
    if isinstance(model, EdwardsAnderson):
        # quenched couplings move to the run's backend and device
        model_be = type(model)(couplings=be.from_numpy(backend_of(model.couplings).to_numpy(model.couplings),
                                                         "float64"))
        kernel = make_spin_kernel(model_be, beta, algorithm)
        model = model_be
    if spins0 is None:
        spins0 = model.random(rng, (chains,) + (L,) * dim, be.xp.float64)
    volume = L ** dim
    dtype = be.xp.float64

    def analyse(series):
        out = ensemble_spins(series, volume, beta)
        out["acceptance"] = gamma_method(series["acceptance"])
        return out

    result = run(kernel, spins0, rng, n_therm=therm, n_measure=sweeps, every=every,
                 measure=lambda s: measure_spins(s, model, dtype), analyse=analyse,
                 to_host=be.to_numpy, progress=progress, label=f"{algorithm} [{be}]")
    result.meta.update({"backend": be.name, "device": str(be.device), "dtype": "float64",
                        "model": dict(model.params(), beta=beta, L=L, dim=dim), "algorithm": algorithm,
                        "seed": seed})
    return result

