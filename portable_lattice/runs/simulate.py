"""One call from a theory to results, for every theory: the library's main job, used by the CLI.

>>> from portable_lattice import Ising, Phi4, simulate
>>> res = simulate(Phi4.from_beta_g(0.5, 0.1), L=16, algorithm="checkerboard",
...                backend="numpy", chains=8, therm=200, sweeps=500, seed=1)  # doctest: +SKIP
>>> res = simulate(Ising(beta=0.44), L=32, algorithm="swendsen-wang", backend="torch")  # doctest: +SKIP
>>> print(res.observables["chi"])                                              # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

from .._checks import as_int, choice, positive_float, positive_int, run_sizes
from ..backends import backend_of, get_backend
from ..observables import ensemble_phi4, ensemble_spins, measure_phi4, measure_spins
from ..samplers import (HMC, INTEGRATORS, MALA, CheckerboardMetropolis, GaussianShift, HeatBath, Langevin,
                        RandomSiteMetropolis, SpinFlip, StateShift, SwendsenWang, Wolff)
from ..philox import PhiloxGenerator
from ..statistics import gamma_method
from .driver import INFO_SERIES, RunResult, run

__all__ = ["ALGORITHMS", "DEFAULT_ALGORITHM", "KNOBS", "make_kernel", "simulate", "prepare_run", "PreparedRun",
           "family", "knob_defaults"]


def family(theory: Any) -> str:
    """"field" (phi^4) or "spins" (Ising, Edwards-Anderson, Potts, clock)."""
    if hasattr(theory, "check_spins"):
        return "spins"
    if hasattr(theory, "local_delta_action"):
        return "field"
    raise TypeError(f"theory must be a portable_lattice theory (Phi4, Ising, Potts, ...), got {type(theory).__name__}")


def _spin_rule(theory):
    # a flip for +-1 spins; q-state spins (q = 2 included: states 0, 1) move to another state
    return SpinFlip() if tuple(theory.state_values()) == (-1, 1) else StateShift()


# algorithm -> (build(theory, knobs) -> kernel, {knob: (class holding its default, field name)})
_FIELD: dict[str, tuple[Callable, dict]] = {
    "metropolis": (lambda t, k: RandomSiteMetropolis(t, GaussianShift(**_pick(k, "step_size"))),
                   {"step": (GaussianShift, "step_size")}),
    "checkerboard": (lambda t, k: CheckerboardMetropolis(t, GaussianShift(**_pick(k, "step_size")),
                                                         **_pick(k, "hits", "fused")),
                     {"step": (GaussianShift, "step_size"), "hits": (CheckerboardMetropolis, "hits"),
                      "fused": (CheckerboardMetropolis, "fused")}),
    "hmc": (lambda t, k: HMC(t, **_pick(k, "traj_length", "n_steps", "integrator", "fused")),
            {"n_steps": (HMC, "n_steps"), "traj_length": (HMC, "traj_length"), "integrator": (HMC, "integrator"),
             "fused": (HMC, "fused")}),
    "langevin": (lambda t, k: Langevin(t, **_pick(k, "dt")), {"dt": (Langevin, "dt")}),
    "mala": (lambda t, k: MALA(t, **_pick(k, "dt")), {"dt": (MALA, "dt")}),
}
_SPINS: dict[str, tuple[Callable, dict]] = {
    # the random-site single-spin update of Eq. 7 of [DCL]
    "metropolis": (lambda t, k: RandomSiteMetropolis(t, _spin_rule(t), dtype=k["dtype"]), {}),
    "checkerboard": (lambda t, k: CheckerboardMetropolis(t, _spin_rule(t), dtype=k["dtype"], **_pick(k, "fused")),
                     {"fused": (CheckerboardMetropolis, "fused")}),
    "heatbath": (lambda t, k: CheckerboardMetropolis(t, HeatBath(), dtype=k["dtype"]), {}),
    "swendsen-wang": (lambda t, k: SwendsenWang(t), {}),
    "wolff": (lambda t, k: Wolff(t), {}),
}
#: the algorithms of each theory family
ALGORITHMS = {"field": tuple(_FIELD), "spins": tuple(_SPINS)}
#: the random streams a run can use
STREAMS = ("native", "philox")
#: the algorithm used when none is named
DEFAULT_ALGORITHM = {"field": "checkerboard", "spins": "checkerboard"}
#: the knobs each algorithm takes (user-facing names)
KNOBS = {fam: {alg: tuple(spec[1]) for alg, spec in table.items()} for fam, table in (("field", _FIELD), ("spins", _SPINS))}
_RENAMED = {"step": "step_size"}  # user-facing knob -> kernel field


def _pick(knobs: dict, *names: str) -> dict:
    return {n: knobs[n] for n in names if n in knobs}


def knob_defaults(theory: Any, algorithm: str) -> dict:
    """Each knob's default, read off the kernel or rule that defines it (defined once there)."""
    table = _FIELD if family(theory) == "field" else _SPINS
    out = {}
    for knob, (cls, name) in table[algorithm][1].items():
        default = {f.name: f.default for f in dataclasses.fields(cls)}[name]
        out[knob] = getattr(default, "name", default)  # an Integrator default is reported by its name
    return out


def _check_knobs(theory: Any, algorithm: str, knobs: dict) -> dict:
    fam = family(theory)
    choice("algorithm", algorithm, ALGORITHMS[fam])
    allowed = KNOBS[fam][algorithm]
    extra = sorted(set(knobs) - set(allowed))
    if extra:
        takes = f"takes the knobs {list(allowed)}" if allowed else "takes no knobs"
        raise TypeError(f"algorithm={algorithm!r} for {type(theory).__name__} {takes}, "
                        f"got {extra[0]}={knobs[extra[0]]!r}")
    for name in ("step", "dt", "traj_length"):
        if name in knobs:
            positive_float(name, knobs[name])
    for name in ("hits", "n_steps"):
        if name in knobs:
            positive_int(name, knobs[name])
    if "integrator" in knobs:
        choice("integrator", knobs["integrator"], INTEGRATORS)
    if "fused" in knobs and not isinstance(knobs["fused"], bool):
        raise TypeError(f"fused must be True or False, got fused={knobs['fused']!r}")
    return dict(knob_defaults(theory, algorithm), **knobs)


def make_kernel(theory: Any, algorithm: str | None = None, *, dtype: str = "float64", **knobs):
    """The sampler kernel for ``algorithm`` on ``theory`` with its knobs (each validated)."""
    fam = family(theory)
    algorithm = DEFAULT_ALGORITHM[fam] if algorithm is None else algorithm
    resolved = _check_knobs(theory, algorithm, knobs)
    table = _FIELD if fam == "field" else _SPINS
    kernel_knobs = {_RENAMED.get(k, k): v for k, v in resolved.items()}
    return table[algorithm][0](theory, dict(kernel_knobs, dtype=dtype))


def _host_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


#: a run holds about this many configuration-sized arrays at once (field, proposals, uniforms,
#: gradients, masks, measurement buffers)
_WORKING_COPIES = 8


def check_memory(chains: int, L: int, dim: int, itemsize: int) -> None:
    """Refuse, before allocating, a lattice that cannot fit in the host's memory."""
    need = chains * L ** dim * itemsize * _WORKING_COPIES
    have = _host_memory()
    if have is not None and need > have:
        raise ValueError(f"chains={chains} x L={L}**{dim} needs about {need / 2**30:.3g} GiB "
                         f"(8 configuration-sized arrays), more than this machine's {have / 2**30:.3g} GiB")


def simulate(theory: Any, *, L: int, dim: int = 2, algorithm: str | None = None,
             backend: Any = "numpy", device: Any = None, dtype: str = "float64",
             chains: int = 4, therm: int = 500, sweeps: int = 1000, every: int = 1, seed: int = 0,
             progress: bool | None = None, start: Any = None, compile: bool = False, out: str | None = None,
             save_every: int = 0, checkpoint_every: int = 100, stream: str = "native", **knobs) -> RunResult:
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
    prep = prepare_run(theory, L=L, dim=dim, algorithm=algorithm, backend=backend, device=device, dtype=dtype,
                       chains=chains, therm=therm, sweeps=sweeps, every=every, seed=seed, start=start,
                       compile=compile, stream=stream, **knobs)
    if out is not None:
        from .production import run_to_store
        return run_to_store(prep, out, save_every=save_every, checkpoint_every=checkpoint_every,
                            progress=progress)
    with _compiled(prep.compile):
        result = run(prep.kernel, prep.start, prep.rng, n_therm=prep.therm, n_measure=prep.sweeps,
                     every=prep.every, measure=prep.measure, analyse=prep.analyse, to_host=prep.backend.to_numpy,
                     progress=progress, label=f"{prep.algorithm} [{prep.backend}]")
    result.meta.update(prep.meta)
    return result


class _compiled:
    """torch.compile switched on for one run: in this thread / context only (a context variable of
    the torch backend), so concurrent runs in one process, e.g. the tasks of a Dask worker with
    several threads, never race on it. compile=False follows the process-wide ``use_compile``."""

    def __init__(self, on: bool):
        self.on, self.cm = on, None

    def __enter__(self):
        if self.on:
            from ..backends.torch_backend import compile_for_run
            self.cm = compile_for_run(True)
            self.cm.__enter__()

    def __exit__(self, *exc):
        if self.cm is not None:
            cm, self.cm = self.cm, None
            cm.__exit__(*exc)


@dataclasses.dataclass
class PreparedRun:
    """Everything a run needs, validated: the kernel, generator, start, measurement and analysis."""

    theory: Any
    kernel: Any
    backend: Any
    rng: Any
    start: Any
    measure: Callable
    analyse: Callable
    algorithm: str
    therm: int
    sweeps: int
    every: int
    compile: bool
    meta: dict


def prepare_run(theory: Any, *, L: int, dim: int = 2, algorithm: str | None = None, backend: Any = "numpy",
                device: Any = None, dtype: str = "float64", chains: int = 4, therm: int = 500, sweeps: int = 1000,
                every: int = 1, seed: int = 0, start: Any = None, compile: bool = False, stream: str = "native",
                **knobs) -> PreparedRun:
    """Validate a run's parameters (before any work) and build its parts; see :func:`simulate`."""
    # numpy integers (a scan over np.arange) are accepted as the Python ints they are
    L, dim, chains, therm, sweeps, every, seed = (as_int(v) for v in (L, dim, chains, therm, sweeps, every, seed))
    run_sizes(L=L, dim=dim, chains=chains, therm=therm, sweeps=sweeps, every=every)
    if dim > 4:
        raise ValueError(f"dim must be 1..4, got dim={dim}")
    fam = family(theory)
    algorithm = DEFAULT_ALGORITHM[fam] if algorithm is None else algorithm
    choice("dtype", dtype, ("float32", "float64"))
    resolved = _check_knobs(theory, algorithm, knobs)
    if compile and fam != "field":
        raise ValueError(f"compile=True applies to phi^4 kernels, not to {type(theory).__name__}")
    be = get_backend(backend, device)
    if compile and be.name != "torch":
        raise ValueError(f"compile=True needs the torch backend, got backend={be.name!r}")
    check_memory(chains, L, dim, 1 if fam == "spins" else (4 if dtype == "float32" else 8))
    if fam == "field":
        theory.check_dimension(dim)
    elif hasattr(theory, "couplings"):
        if theory.dim != dim or theory.couplings.shape[1] != L:
            raise ValueError(f"couplings of shape {tuple(theory.couplings.shape)} do not fit L={L}, dim={dim}")
        # quenched couplings move to the run's backend and device
        c = theory.couplings
        theory = theory.with_couplings(be.from_numpy(backend_of(c).to_numpy(c), "float64"))
    elif getattr(theory, "dim", None) not in (None, dim):
        raise ValueError(f"the theory is {theory.dim}-dimensional, got dim={dim}")
    kernel = make_kernel(theory, algorithm, dtype=dtype, **knobs)
    dt = be.dtype(dtype)
    choice("stream", stream, STREAMS)
    rng = be.rng(seed) if stream == "native" else PhiloxGenerator(be.xp, seed, be.device)
    shape = (chains,) + (L,) * dim
    if start is None:
        start = rng.normal(shape, dt) if fam == "field" else theory.random(rng, shape, be.xp.float64)
    elif fam == "field":
        from ..lattice import check_field
        check_field(start, name="start", shape=shape, dtype=dt, device=be.device)
    elif tuple(start.shape) != shape:
        raise ValueError(f"start must have shape {shape}, got start.shape={tuple(start.shape)}")
    volume = L ** dim

    if fam == "field":
        def measure(phi):
            return measure_phi4(phi, theory)

        def analyse(series):
            out = ensemble_phi4(series, volume, L)
            return _with_info_series(out, series)
    else:
        def measure(s):
            return measure_spins(s, theory, dt)

        def analyse(series):
            out = ensemble_spins(series, volume, theory)
            return _with_info_series(out, series)

    from .. import __version__
    meta = {"backend": be.name, "device": str(be.device), "dtype": dtype, "theory": theory.params(), "L": L,
            "dim": dim, "algorithm": algorithm, "knobs": resolved, "chains": chains, "therm": therm,
            "sweeps": sweeps, "every": every, "seed": seed, "compile": compile, "stream": stream,
            "version": __version__}
    return PreparedRun(theory, kernel, be, rng, start, measure, analyse, algorithm, therm, sweeps, every,
                       compile, meta)




def _with_info_series(out: dict, series: dict) -> dict:
    for name in INFO_SERIES + ("exp_minus_dh",):
        if name in series:
            out[name] = gamma_method(series[name])
    return out
