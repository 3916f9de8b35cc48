"""One call from parameters to results: the library's main job, used by the CLI.

>>> from portable_lattice import Phi4, simulate
>>> res = simulate(Phi4.from_beta_g(0.5, 0.1), L=16, algorithm="checkerboard",
...                backend="numpy", chains=8, therm=200, sweeps=500, seed=1)  # doctest: +SKIP
>>> print(res.observables["chi"])                                              # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any

from ._checks import choice, positive_float, positive_int, run_sizes
from .backends import get_backend
from .driver import RunResult, run
from .lattice import check_field
from .observables import ensemble_phi4, measure_phi4
from .samplers import HMC, INTEGRATORS, MALA, CheckerboardMetropolis, Langevin, RandomSiteMetropolis

__all__ = ["ALGORITHMS", "KNOBS", "make_kernel", "simulate"]

ALGORITHMS = ("metropolis", "checkerboard", "hmc", "langevin", "mala")
#: the knobs each algorithm takes
KNOBS = {"metropolis": ("step",), "checkerboard": ("step", "hits"),
         "hmc": ("n_steps", "traj_length", "integrator"), "langevin": ("dt",), "mala": ("dt",)}


def _check_knobs(algorithm: str, knobs: dict) -> None:
    choice("algorithm", algorithm, ALGORITHMS)
    extra = sorted(set(knobs) - set(KNOBS[algorithm]))
    if extra:
        raise TypeError(f"algorithm={algorithm!r} takes the knobs {KNOBS[algorithm]}, got {extra[0]}={knobs[extra[0]]!r}")


def make_kernel(action, algorithm: str, *, step: float = 1.0, hits: int = 1, dt: float = 0.01,
                n_steps: int = 10, traj_length: float = 1.0, integrator: str = "leapfrog"):
    """The sampler kernel for ``algorithm`` with its knobs (each validated)."""
    if algorithm == "metropolis":
        return RandomSiteMetropolis(action, step_size=step)
    if algorithm == "checkerboard":
        return CheckerboardMetropolis(action, step_size=step, hits=hits)
    if algorithm == "hmc":
        choice("integrator", integrator, INTEGRATORS)
        return HMC(action, traj_length=traj_length, n_steps=n_steps, integrator=integrator)
    if algorithm == "langevin":
        return Langevin(action, dt=dt)
    return MALA(action, dt=dt)


def simulate(action, *, L: int, dim: int = 2, algorithm: str = "checkerboard",
             backend: Any = "numpy", device: Any = None, dtype: str = "float64",
             chains: int = 4, therm: int = 500, sweeps: int = 1000, every: int = 1, seed: int = 0,
             progress: bool | None = None, phi0: Any = None, compile: bool = False, **knobs) -> RunResult:
    """Sample the phi^4 ``action`` on an ``L**dim`` torus and analyse the run.

    Parameters
    ----------
    action : Phi4
    L, dim : int
        Lattice extent and dimension.
    algorithm : {"metropolis", "checkerboard", "hmc", "langevin", "mala"}
    backend, device, dtype : where and how to compute.
    chains : int
        Independent chains run side by side (the leading axis).
    therm, sweeps, every : int
        Thermalisation steps, measurements, steps between measurements.
    seed : int
    phi0 : array, optional
        Start field of shape (chains, L, ..., L); default: a hot start N(0, 1).
    compile : bool
        torch only: fuse the kernels with ``torch.compile`` (see
        :func:`portable_lattice.backends.torch_backend.use_compile`).
    **knobs : step, hits, dt, n_steps, traj_length, integrator

    Returns
    -------
    RunResult
        ``observables`` holds phi2, m, m_abs, m2, m4, action (density S/V),
        chi, chi_abs, binder, xi2nd and acceptance as Estimates.
    """
    run_sizes(L=L, dim=dim, chains=chains, therm=therm, sweeps=sweeps, every=every)
    _check_knobs(algorithm, knobs)
    for name in ("step", "dt", "traj_length"):
        if name in knobs:
            positive_float(name, knobs[name])
    for name in ("hits", "n_steps"):
        if name in knobs:
            positive_int(name, knobs[name])
    action.check_dimension(dim)
    kernel = make_kernel(action, algorithm, **knobs)
    be = get_backend(backend, device)
    dt = be.dtype(dtype)
    if compile and be.name != "torch":
        raise ValueError(f"compile=True needs the torch backend, got backend={be.name!r}")
    rng = be.rng(seed)
    shape = (chains,) + (L,) * dim
    if phi0 is None:
        phi0 = rng.normal(shape, dt)
    else:
        check_field(phi0, name="phi0", shape=shape, dtype=dt, device=be.device)
    volume = L ** dim

    def analyse(series):
        out = ensemble_phi4(series, volume, L)
        from .analysis import gamma_method
        out["acceptance"] = gamma_method(series["acceptance"])
        if "exp_minus_dh" in series:
            out["exp_minus_dh"] = gamma_method(series["exp_minus_dh"])
        return out

    previous = None
    if compile:
        from .backends.torch_backend import use_compile
        previous = use_compile(True)
    try:
        result = run(kernel, phi0, rng, n_therm=therm, n_measure=sweeps, every=every,
                     measure=lambda phi: measure_phi4(phi, action), analyse=analyse,
                     to_host=be.to_numpy, progress=progress, label=f"{algorithm} [{be}]")
    finally:
        if previous is not None:
            use_compile(previous)
    result.meta.update({"backend": be.name, "device": str(be.device), "dtype": dtype,
                        "model": dict(action.params(), L=L, dim=dim), "algorithm": algorithm,
                        "knobs": knobs, "seed": seed, "compile": compile})
    return result
