"""One call from a theory to results, for every theory: the library's main job, used by the CLI.

>>> from portable_lattice import Ising, Phi4, simulate
>>> res = simulate(Phi4.from_beta_g(0.5, 0.1), L=16, algorithm="checkerboard",
...                backend="numpy", chains=8, therm=200, sweeps=500, seed=1)  # doctest: +SKIP
>>> res = simulate(Ising(beta=0.44), L=32, algorithm="swendsen-wang", backend="torch")  # doctest: +SKIP
>>> print(res.observables["chi"])                                              # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any

from .driver import RunResult, run
from .spec import (ALGORITHMS, DEFAULT_ALGORITHM, KNOBS, PreparedRun, RunSpec, check_memory, family,
                   knob_defaults, make_kernel)

__all__ = ["ALGORITHMS", "DEFAULT_ALGORITHM", "KNOBS", "make_kernel", "simulate", "prepare_run", "PreparedRun",
           "family", "knob_defaults", "check_memory", "RunSpec"]

_D = RunSpec  # the defaults below are RunSpec's (defined once there)


# Over 60 lines only by its docstring (the user's reference for every argument): the body is one
# RunSpec and one call.
def simulate(theory: Any, *, L: int = _D.L, dim: int = _D.dim, algorithm: str | None = None,
             backend: Any = _D.backend, device: Any = None, dtype: str = _D.dtype,
             chains: int = _D.chains, therm: int = _D.therm, sweeps: int = _D.sweeps, every: int = _D.every,
             seed: int = _D.seed, progress: bool | None = None, start: Any = None, compile: bool = _D.compile,
             out: str | None = None, save_every: int = _D.save_every, checkpoint_every: int = _D.checkpoint_every,
             stream: str = _D.stream, format: str = _D.format, **knobs) -> RunResult:
    """Sample ``theory`` on an ``L**dim`` torus and analyse the run.

    Parameters
    ----------
    theory : Phi4, Ising, EdwardsAnderson, Potts or Clock
        Owns every coupling, the inverse temperature included.
    L : int
        Lattice extent.
    dim : int
        Lattice dimension, 1..4.
    algorithm : str, optional
        phi^4: "metropolis" (random site, Sec. II of [PEM]), "checkerboard", "hmc",
        "langevin", "mala". Spins: "metropolis" (random site, Eq. 7 of [DCL]),
        "checkerboard", "heatbath", "swendsen-wang", "wolff". Default:
        :data:`DEFAULT_ALGORITHM` of the theory's family.
    backend : str or Backend
        "numpy", "torch", "cupy" or "array_api_strict".
    device : str, optional
        "cpu", "cuda" or "cuda:N"; default: the backend's own.
    dtype : {"float32", "float64"}
        The field's dtype (phi^4), or the dtype in which spin energies and
        observables are computed.
    chains : int
        Independent chains run side by side (the leading axis).
    therm : int
        Thermalisation steps.
    sweeps : int
        Number of measurements.
    every : int
        Steps between measurements.
    seed : int
    start : array, optional
        Start configuration of shape (chains, L, ..., L) on the run's backend;
        default: a hot start (N(0, 1) field, random spins).
    compile : bool
        phi^4 on torch only: fuse the kernels with ``torch.compile``.
    out : str, optional
        A directory for the ensemble (:mod:`portable_lattice.runs.storage`): the
        measurements, every ``save_every``-th configuration and a checkpoint every
        ``checkpoint_every`` measurements go to disk, and the run can be continued
        (``portable-lattice resume``). Needs the ``storage`` extra (zarr).
    save_every : int
        With ``out``: save a configuration every this many measurements (0: none).
    checkpoint_every : int
        With ``out``: commit measurements and a checkpoint every this many measurements.
    format : {"zarr", "hdf5"}
        With ``out``: the store's format (:mod:`portable_lattice.runs.storage`); ``resume``
        and the analysis recognise it. "hdf5" needs the ``hdf5`` extra (h5py).
    stream : {"native", "philox"}
        The random numbers: the backend's own generator, or the counter-based
        Philox4x32-10 stream of :mod:`portable_lattice.philox`, whose words and
        uniforms are the same on every backend (Ising checkerboard, heat bath and
        Swendsen-Wang chains are then identical across backends).
    **knobs
        The algorithm's knobs (:data:`KNOBS`): step, hits, dt, n_steps,
        traj_length, integrator, fused. A knob the algorithm does not take is an error.
        ``fused=True`` (checkerboard for phi^4 and Ising, hmc) runs each sweep or
        trajectory as one fused kernel (Numba on the CPU, the ``fast`` extra),
        bit-identical to the generic path under the same seed and stream.

    Returns
    -------
    RunResult
        ``observables`` name -> Estimate; ``meta`` holds everything needed to
        reproduce the run (theory, algorithm and resolved knobs, sizes, seed,
        backend, dtype, library version).
    """
    spec = RunSpec(theory, L=L, dim=dim, algorithm=algorithm, knobs=knobs, backend=backend, device=device,
                   dtype=dtype, stream=stream, chains=chains, therm=therm, sweeps=sweeps, every=every, seed=seed,
                   compile=compile, out=out, save_every=save_every, checkpoint_every=checkpoint_every,
                   format=format)
    return run_spec(spec, start=start, progress=progress)


def run_spec(spec: RunSpec, *, start: Any = None, progress: bool | None = None) -> RunResult:
    """Run a :class:`RunSpec`: in memory, or into a new store at ``spec.out``."""
    prep = spec.prepare(start)
    if spec.out is not None:
        from .production import run_to_store
        return run_to_store(prep, spec.out, save_every=spec.save_every, checkpoint_every=spec.checkpoint_every,
                            progress=progress)
    with prep.compiled():
        result = run(prep.kernel, prep.start, prep.rng, n_therm=prep.therm, n_measure=prep.sweeps,
                     every=prep.every, measure=prep.measure, analyse=prep.analyse, to_host=prep.backend.to_numpy,
                     progress=progress, label=f"{prep.algorithm} [{prep.backend}]")
    result.meta.update(prep.meta)
    return result


def prepare_run(theory: Any, *, start: Any = None, **options) -> PreparedRun:
    """Validate a run's parameters (before any work) and build its parts; see :func:`simulate`."""
    knobs = {k: options.pop(k) for k in list(options) if k not in RunSpec.__dataclass_fields__}
    return RunSpec(theory, knobs=knobs, **options).prepare(start)
