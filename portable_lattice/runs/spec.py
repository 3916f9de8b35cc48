"""One description of a run, and the one table of models, algorithms and knobs.

Every way of starting a run reads this module: ``simulate(...)`` keyword
arguments, a TOML run card, the command line, a scan point and ``resume`` of a
stored run. Each builds a :class:`RunSpec`; its constructor validates every
value (naming the key and the value) before anything is allocated, and
:meth:`RunSpec.prepare` turns it into a :class:`PreparedRun`. A knob added to an
algorithm in :data:`KNOB_TYPES` and the algorithm tables appears as a keyword, a
card key, a command-line flag, a ``scan --set`` key and in a stored card at once.

>>> from portable_lattice import Phi4
>>> spec = RunSpec(Phi4.from_beta_g(0.5, 0.1), L=8, algorithm="hmc", knobs={"n_steps": 5})
>>> spec.knobs["traj_length"]            # the kernel's own default, resolved
1.0
>>> RunSpec.from_card({"model": "ising", "beta": 0.4, "L": 8, "fused": True}).knobs
{'fused': True}
"""
from __future__ import annotations

import dataclasses
import numbers
import os
from typing import Any, Callable, Mapping

from .._checks import as_int, choice, nonnegative_int, positive_float, positive_int, run_sizes
from ..observables import ensemble_phi4, ensemble_spins, measure_phi4, measure_spins
from ..observables.on import ensemble_vector, measure_vector
from ..observables.u1 import ensemble_gauge, measure_gauge
from ..samplers import (HMC, INTEGRATORS, MALA, CheckerboardMetropolis, GaussianShift, HeatBath, Langevin,
                        RandomSiteMetropolis, SpinFlip, StateShift, SwendsenWang, Wolff)
from ..samplers.fused import FusedUniforms, philox_normal as fused_normal
from ..samplers.gauge import GaugeCheckerboard
from ..samplers.vector import VectorCheckerboard, VectorRandomSite, VectorSwendsenWang, VectorWolff
from ..theories import FIELD, ON, U1, Clock, EdwardsAnderson, Ising, Phi4, Potts, family_of

__all__ = ["RunSpec", "PreparedRun", "ALGORITHMS", "DEFAULT_ALGORITHM", "KNOBS", "KNOB_TYPES", "MODELS",
           "MODEL_KEYS", "KNOB_HELP", "RUN_KEYS", "CARD_KEYS", "KEY_TYPES", "STREAMS", "DTYPES", "family", "make_kernel",
           "knob_defaults", "check_knobs", "family_of_card", "MODEL_CLASSES", "state_type", "with_sampler_series", "device_spec", "default", "theory_from_card", "card_from_theory", "check_memory", "host_memory", "OBSERVABLES", "analyse_ensemble"]


def family(theory: Any) -> str:
    """The name of the theory's family ("field": phi^4; "spins": Ising, Edwards-Anderson, Potts,
    clock), the key of the tables below; the family itself is ``theory.family``."""
    return family_of(theory).name


# --- knobs and algorithms -----------------------------------------------------------------------
#: every algorithm knob: its type and the check of its value (the default lives on the kernel)
KNOB_TYPES: dict[str, type] = {"step": float, "hits": int, "dt": float, "n_steps": int, "traj_length": float,
                               "integrator": str, "fused": bool, "overrelax": int}
_KNOB_CHECKS: dict[str, Callable] = {
    "step": positive_float, "dt": positive_float, "traj_length": positive_float,
    "hits": positive_int, "n_steps": positive_int, "overrelax": nonnegative_int,
    "integrator": lambda name, v: choice(name, v, INTEGRATORS),
    "fused": lambda name, v: _boolean(name, v),
}
#: the CLI's help for a knob that has no hand-written flag (the CLI generates one per knob)
KNOB_HELP: dict[str, str] = {"overrelax": "overrelaxation sweeps after each local sweep (default 0)"}
_RENAMED = {"step": "step_size"}  # user-facing knob -> kernel field


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {name}={value!r}")
    return value


def _pick(knobs: dict, *names: str) -> dict:
    return {n: knobs[n] for n in names if n in knobs}


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


def _vector_local(update):
    def build(t, k):
        return VectorCheckerboard(t, update, **_pick(k, "step_size", "hits", "overrelax", "fused"))
    return build


_VECTOR_LOCAL = {"step": (VectorCheckerboard, "step_size"), "hits": (VectorCheckerboard, "hits"),
                 "overrelax": (VectorCheckerboard, "overrelax"), "fused": (VectorCheckerboard, "fused")}
_VECTOR: dict[str, tuple[Callable, dict]] = {
    # checkerboard and heat bath take overrelax: that many overrelaxation sweeps after each local sweep
    "checkerboard": (_vector_local("metropolis"), _VECTOR_LOCAL),
    "heatbath": (_vector_local("heatbath"), {"overrelax": (VectorCheckerboard, "overrelax")}),
    "metropolis": (lambda t, k: VectorRandomSite(t, **_pick(k, "step_size")),
                   {"step": (VectorRandomSite, "step_size")}),
    "swendsen-wang": (lambda t, k: VectorSwendsenWang(t), {}),
    "wolff": (lambda t, k: VectorWolff(t), {}),
}
_GAUGE: dict[str, tuple[Callable, dict]] = {
    "hmc": (lambda t, k: HMC(t, **_pick(k, "traj_length", "n_steps", "integrator")),
            {"n_steps": (HMC, "n_steps"), "traj_length": (HMC, "traj_length"), "integrator": (HMC, "integrator")}),
    "checkerboard": (lambda t, k: GaugeCheckerboard(t, "metropolis", **_pick(k, "step_size", "hits", "overrelax")),
                     {"step": (GaugeCheckerboard, "step_size"), "hits": (GaugeCheckerboard, "hits"),
                      "overrelax": (GaugeCheckerboard, "overrelax")}),
    "heatbath": (lambda t, k: GaugeCheckerboard(t, "heatbath", **_pick(k, "overrelax")),
                 {"overrelax": (GaugeCheckerboard, "overrelax")}),
}
_TABLES = {"field": _FIELD, "spins": _SPINS, "vector": _VECTOR, "gauge": _GAUGE}
#: the algorithms of each theory family
ALGORITHMS = {fam: tuple(table) for fam, table in _TABLES.items()}
#: the algorithm used when none is named
DEFAULT_ALGORITHM = {"field": "checkerboard", "spins": "checkerboard", "vector": "checkerboard", "gauge": "hmc"}
#: the knobs each algorithm takes (user-facing names)
KNOBS = {fam: {alg: tuple(spec[1]) for alg, spec in table.items()} for fam, table in _TABLES.items()}
assert all(k in KNOB_TYPES for t in KNOBS.values() for ks in t.values() for k in ks), "a knob without a type"
#: the random streams a run can use
STREAMS = ("native", "philox")
DTYPES = ("float32", "float64")


def knob_defaults(theory: Any, algorithm: str) -> dict:
    """Each knob's default, read off the kernel or rule that defines it (defined once there)."""
    out = {}
    for knob, (cls, name) in _TABLES[family(theory)][algorithm][1].items():
        default = {f.name: f.default for f in dataclasses.fields(cls)}[name]
        out[knob] = getattr(default, "name", default)  # an Integrator default is reported by its name
    return out


def check_knobs(theory: Any, algorithm: str, knobs: Mapping) -> dict:
    """The knobs checked by name against ``algorithm``, completed with their defaults."""
    fam = family(theory)
    if algorithm not in ALGORITHMS[fam]:
        raise ValueError(f"algorithm={algorithm!r} does not apply to {type(theory).__name__}; "
                         f"it takes {list(ALGORITHMS[fam])}")
    allowed = KNOBS[fam][algorithm]
    extra = sorted(set(knobs) - set(allowed))
    if extra:
        takes = f"it takes {', '.join(allowed)}" if allowed else "it takes no knobs"
        raise TypeError(f"{extra[0]} does not apply to algorithm={algorithm!r} for {type(theory).__name__} "
                        f"({takes}); got {extra[0]}={knobs[extra[0]]!r}")
    for name, value in knobs.items():
        _KNOB_CHECKS[name](name, value)
    return dict(knob_defaults(theory, algorithm), **knobs)


def make_kernel(theory: Any, algorithm: str | None = None, *, dtype: str = "float64", **knobs):
    """The sampler kernel for ``algorithm`` on ``theory`` with its knobs (each validated)."""
    fam = family(theory)
    algorithm = DEFAULT_ALGORITHM[fam] if algorithm is None else algorithm
    resolved = check_knobs(theory, algorithm, knobs)
    kernel_knobs = {_RENAMED.get(k, k): v for k, v in resolved.items()}
    return _TABLES[fam][algorithm][0](theory, dict(kernel_knobs, dtype=dtype))


# --- models: a theory from card keys and back ----------------------------------------------------
#: which couplings each model takes
MODEL_KEYS = {"phi4": ("beta", "g", "kappa", "lam"), "ising": ("beta", "J", "h"), "potts": ("beta", "J", "q"),
              "clock": ("beta", "J", "q"), "ea": ("beta", "couplings", "couplings_seed"),
              "on": ("beta", "n", "J", "h"), "u1": ("beta",)}
MODELS = tuple(MODEL_KEYS)
#: the theory class of each model (its family is the class's)
MODEL_CLASSES = {"phi4": Phi4, "ising": Ising, "potts": Potts, "clock": Clock, "ea": EdwardsAnderson, "on": ON,
                 "u1": U1}
DEFAULT_MODEL = "phi4"
_COUPLING_TYPES = {"couplings": str, "q": int, "couplings_seed": int, "n": int}


def stray_model_keys(card: Mapping, model: str) -> list:
    """The coupling keys of ``card`` that belong to another model than ``model``."""
    return [k for k in card if k in _ALL_MODEL_KEYS - set(MODEL_KEYS[model]) and card[k] is not None]


def theory_from_card(card: Mapping, couplings: Any = None, backend: Any = None):
    """The theory a card names (keys of :data:`MODEL_KEYS`; flags and keywords use the same names).
    Edwards-Anderson couplings come from ``couplings`` (an array), a ``couplings`` file, or
    ``couplings_seed`` drawn on ``backend``."""
    c = card
    model = c.get("model", DEFAULT_MODEL)
    choice("model", model, MODELS)
    stray = stray_model_keys(c, model)
    if stray:
        raise ValueError(f"{stray[0]} does not apply to model = {model!r} (it takes {', '.join(MODEL_KEYS[model])})")
    if couplings is None and isinstance(c.get("couplings"), str):
        if "couplings_seed" in c:
            raise ValueError("model ea needs exactly one of couplings (a .npy file) or couplings_seed")
        from .storage import load_couplings  # a file named by the card: host I/O
        couplings = load_couplings(c["couplings"])
    if backend is None:
        from ..backends import get_backend
        backend = get_backend("numpy")
    return MODEL_CLASSES[model].from_card(c, dim=c.get("dim", _DEFAULTS["dim"]), L=c.get("L", _DEFAULTS["L"]),
                                          couplings=couplings, backend=backend)


def family_of_card(card: Mapping):
    """The family of the model a card names (no theory built: a stored Edwards-Anderson card has
    its couplings beside it)."""
    return MODEL_CLASSES[card.get("model", DEFAULT_MODEL)].family


def card_from_theory(theory: Any) -> dict:
    """The card keys that name ``theory`` (the theory says them: ``theory.card()``)."""
    return theory.card()


# --- the run specification -----------------------------------------------------------------------
def host_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


#: a run holds about this many configuration-sized arrays at once (field, proposals, uniforms,
#: gradients, masks, measurement buffers)
_WORKING_COPIES = 8


def check_memory(chains: int, L: int, dim: int, itemsize: int, components: int = 1) -> None:
    """Refuse, before allocating, a lattice that cannot fit in the host's memory (``components``
    values of ``itemsize`` bytes per site)."""
    need = chains * L ** dim * components * itemsize * _WORKING_COPIES
    have = host_memory()
    if have is not None and need > have:
        raise ValueError(f"chains={chains} x L={L}**{dim} needs about {need / 2**30:.3g} GiB "
                         f"(8 configuration-sized arrays), more than this machine's {have / 2**30:.3g} GiB")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """A run, validated: theory, lattice, algorithm and knobs, placement, stream, sizes, seed, storage.

    The defaults below are the library's, for every entry point. ``algorithm`` and
    ``knobs`` are stored resolved (the family's default algorithm, every knob with
    its kernel default). ``sweeps`` is the number of measurements, ``every`` the
    steps between two of them. ``out`` (a directory) makes a run on disk with
    ``save_every`` and ``checkpoint_every``, in the store ``format`` ("zarr" or "hdf5").
    """

    theory: Any
    L: int = 16
    dim: int = 2
    algorithm: str | None = None
    knobs: Mapping = dataclasses.field(default_factory=dict)
    backend: Any = "numpy"
    device: Any = None
    dtype: str = "float64"
    stream: str = "native"
    chains: int = 4
    therm: int = 500
    sweeps: int = 1000
    every: int = 1
    seed: int = 0
    compile: bool = False
    out: str | None = None
    save_every: int = 0
    checkpoint_every: int = 100
    format: str = "zarr"

    def __post_init__(self):
        s = self._set
        for name in ("L", "dim", "chains", "therm", "sweeps", "every", "seed", "save_every", "checkpoint_every"):
            s(name, as_int(getattr(self, name)))  # numpy integers (a scan over np.arange) are Python ints
        run_sizes(L=self.L, dim=self.dim, chains=self.chains, therm=self.therm, sweeps=self.sweeps,
                  every=self.every)
        if self.dim > 4:
            raise ValueError(f"dim must be 1..4, got dim={self.dim}")
        if not isinstance(self.seed, numbers.Integral):
            raise ValueError(f"seed must be an integer, got seed={self.seed!r}")
        choice("dtype", self.dtype, DTYPES)
        choice("stream", self.stream, STREAMS)
        _boolean("compile", self.compile)
        nonnegative_int("save_every", self.save_every)
        positive_int("checkpoint_every", self.checkpoint_every)
        from .storage import FORMATS  # the registry of store formats (host-I/O modules)
        choice("format", self.format, FORMATS)
        if self.out is not None:
            if not isinstance(self.out, (str, os.PathLike)) or not str(self.out):
                raise ValueError(f"out must be a directory path, got out={self.out!r}")
            from .storage import check_output
            check_output(self.out, "out", "dir")  # a missing or read-only parent, a place inside a store
        fam = family_of(self.theory)
        s("algorithm", DEFAULT_ALGORITHM[fam.name] if self.algorithm is None else self.algorithm)
        s("knobs", check_knobs(self.theory, self.algorithm, dict(self.knobs)))
        # the kernel checks what only it knows (a heat bath's n, a cluster update's field) here, before
        # any allocation; kernels are frozen parameter records, so building one costs nothing
        make_kernel(self.theory, self.algorithm, dtype=self.dtype, **self.knobs)
        from ..backends import BACKENDS, Backend
        if not isinstance(self.backend, Backend):
            choice("backend", self.backend, BACKENDS)
        backend_name = getattr(self.backend, "name", self.backend)
        if self.compile and fam is not FIELD:
            raise ValueError(f"compile=True applies to phi^4 kernels, not to {type(self.theory).__name__}")
        if self.compile and backend_name != "torch":
            raise ValueError(f"compile=True needs the torch backend, got backend={backend_name!r}")
        itemsize = {"int8": 1, "float32": 4, "float64": 8}[fam.config_dtype(self.dtype)]
        components = 1
        for k in self.theory.config_shape(1, 1, self.dim):
            components *= k
        check_memory(self.chains, self.L, self.dim, itemsize, components)
        self.theory.check_lattice(self.L, self.dim)

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    @property
    def family(self) -> str:
        return family(self.theory)

    def replace(self, **changes) -> "RunSpec":
        """A copy with ``changes``, validated again."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_card(cls, card: Mapping, *, couplings: Any = None, backend: Any = None) -> "RunSpec":
        """The run a flat card names (keys of :data:`CARD_KEYS`; ``None`` values are absent)."""
        card = {k: v for k, v in card.items() if v is not None}
        unknown = sorted(set(card) - set(CARD_KEYS))
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r}; a card takes {', '.join(CARD_KEYS)}")
        theory = theory_from_card(card, couplings=couplings, backend=backend)
        run = {k: card[k] for k in RUN_KEYS if k in card}
        return cls(theory, knobs={k: card[k] for k in KNOB_TYPES if k in card}, **run)

    def describe(self) -> dict:
        """What a result records of its run (``RunResult.meta``, the JSON), before placement."""
        from .. import __version__
        be = self.backend if isinstance(self.backend, str) else self.backend.name
        return {"backend": be, "device": str(self.device or "default"), "dtype": self.dtype,
                "theory": self.theory.params(), "family": self.family, "L": self.L, "dim": self.dim,
                "algorithm": self.algorithm, "knobs": dict(self.knobs), "chains": self.chains, "therm": self.therm,
                "sweeps": self.sweeps, "every": self.every, "seed": self.seed, "compile": self.compile,
                "stream": self.stream, "version": __version__}

    def prepare(self, start: Any = None) -> "PreparedRun":
        """Build the run's parts: backend, kernel, generator, start, measurement and analysis."""
        from ..backends import backend_of, get_backend
        from ..philox import PhiloxGenerator
        be = get_backend(self.backend, self.device)
        fam = family_of(self.theory)
        # quenched couplings move to the run's backend and device
        theory = self.theory.with_arrays(lambda c: be.from_numpy(backend_of(c).to_numpy(c), "float64"))
        kernel = make_kernel(theory, self.algorithm, dtype=self.dtype, **self.knobs)
        dt = be.dtype(self.dtype)
        rng = be.rng(self.seed) if self.stream == "native" else PhiloxGenerator(be.xp, self.seed, be.device)
        shape = theory.config_shape(self.chains, self.L, self.dim)
        if fam.name in _OWN_STARTS:
            start = _theory_start(theory, rng, shape, dt, start)
        elif start is None:
            # a hot start; a fused run draws its numbers with the fused Philox draws (the same numbers)
            fused = bool(self.knobs.get("fused"))
            like = be.xp.zeros((1,), dtype=dt, device=be.device)
            if fam.discrete:
                start = theory.random(FusedUniforms(rng, like) if fused else rng, shape, be.xp.float64)
            else:
                start = fused_normal(rng, shape, dt, like) if fused else rng.normal(shape, dt)
        elif not fam.discrete:
            from ..lattice import check_field
            check_field(start, name="start", shape=shape, dtype=dt, device=be.device)
        elif tuple(start.shape) != shape:
            raise ValueError(f"start must have shape {shape}, got start.shape={tuple(start.shape)}")
        measure, analyse = _measurement(theory, fam, dt, self.L, self.dim, bool(self.knobs.get("fused", False)))
        meta = dict(self.describe(), backend=be.name, device=str(be.device), theory=theory.params())
        return PreparedRun(theory, kernel, be, rng, start, measure, analyse, self.algorithm, self.therm,
                           self.sweeps, self.every, self.compile, meta, self)


#: the run keys of a card: every field of RunSpec but the theory, the knobs and the output path
RUN_KEYS = tuple(f.name for f in dataclasses.fields(RunSpec) if f.name not in ("theory", "knobs", "out"))
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunSpec) if f.default is not dataclasses.MISSING}
_ALL_MODEL_KEYS = set().union(*map(set, MODEL_KEYS.values()))
#: every key a card may hold
CARD_KEYS = ("model",) + tuple(dict.fromkeys(k for ks in MODEL_KEYS.values() for k in ks)) + tuple(KNOB_TYPES) \
    + RUN_KEYS
#: each card key's type (a float key takes an int too)
KEY_TYPES: dict[str, type] = dict({k: float for k in _ALL_MODEL_KEYS}, **_COUPLING_TYPES, **KNOB_TYPES,
                                  model=str, algorithm=str, backend=str, device=str, dtype=str, stream=str, format=str,
                                  compile=bool,
                                  **{k: int for k in ("L", "dim", "chains", "therm", "sweeps", "every", "seed",
                                                      "save_every", "checkpoint_every")})
assert set(KEY_TYPES) == set(CARD_KEYS)


def default(key: str) -> Any:
    """The library's default for a run key (the one definition: :class:`RunSpec`'s fields)."""
    return _DEFAULTS[key]


def state_type(theory: Any) -> type:
    """The sampler state class of the theory's family (what a checkpoint is read back into)."""
    from ..samplers import FieldState, SpinState
    return SpinState if family_of(theory).discrete else FieldState


def with_sampler_series(out: dict, series: dict) -> dict:
    """``out`` with the Gamma-method estimate of each per-step sampler series present in ``series``."""
    from ..samplers.base import INFO_SERIES
    from ..statistics import gamma_method
    for name in INFO_SERIES + ("exp_minus_dh",):
        if name in series:
            out[name] = gamma_method(series[name])
    return out


def _theory_start(theory, rng, shape, dt, start):
    """A hot start from the theory (n-vectors, link angles), or ``start`` checked by the theory."""
    if start is None:
        return theory.random(rng, shape, dt)
    theory.check_field(start, name="start")
    if tuple(start.shape) != shape or start.dtype != dt:
        raise ValueError(f"start must have shape {shape} and dtype {dt}, got start.shape={tuple(start.shape)}, "
                         f"start.dtype={start.dtype}")
    return start


#: families whose theory draws and checks its own start (several values per site)
_OWN_STARTS = frozenset({"vector", "gauge"})


#: each family's measurement of one configuration, (config, theory, dtype, fused) -> {name: (chains,)}
#: (``fused``: a fused run also measures in one pass where a backend can), and its ensemble
#: analysis, (series, theory, L, dim) -> {name: Estimate}
OBSERVABLES: dict[str, tuple[Callable, Callable]] = {
    "field": (lambda x, theory, dt, fused: measure_phi4(x, theory, fused),
              lambda series, theory, L, dim: ensemble_phi4(series, L ** dim, L)),
    "spins": (lambda x, theory, dt, fused: measure_spins(x, theory, dt, fused),
              lambda series, theory, L, dim: ensemble_spins(series, L ** dim, theory)),
    "vector": (measure_vector, lambda series, theory, L, dim: ensemble_vector(series, L ** dim, theory, L)),
    "gauge": (measure_gauge, ensemble_gauge),
}


def analyse_ensemble(series: dict, theory: Any, L: int, dim: int) -> dict:
    """The family's ensemble quantities of ``series`` and the Gamma method on the sampler series."""
    return with_sampler_series(OBSERVABLES[family(theory)][1](series, theory, L, dim), series)


def _measurement(theory, fam, dt, L: int, dim: int, fused: bool):
    measure = OBSERVABLES[fam.name][0]
    return (lambda x: measure(x, theory, dt, fused), lambda series: analyse_ensemble(series, theory, L, dim))


class _Compiled:
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


def device_spec(be) -> str:
    """The backend's device as ``get_backend`` takes it back ("cpu", "cuda:0"): str() of a cupy
    or array_api_strict device ("<CUDA Device 0>", "array_api_strict.Device('CPU_DEVICE')") is not."""
    if be.name == "cupy":
        return f"cuda:{be.device.id}"
    if be.name == "array_api_strict":
        return "cpu"
    return str(be.device)


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
    spec: RunSpec | None = None

    def compiled(self) -> _Compiled:
        """The context in which the run's kernels run (torch.compile on request)."""
        return _Compiled(self.compile)

    def card(self) -> dict:
        """The resolved run card (what a store records): every key, every knob, the placement."""
        m, spec = self.meta, self.spec
        card = dict(card_from_theory(self.theory), L=m["L"], dim=m["dim"], algorithm=m["algorithm"],
                    backend=m["backend"], device=device_spec(self.backend), dtype=m["dtype"], chains=m["chains"],
                    therm=m["therm"], sweeps=m["sweeps"], every=m["every"], seed=m["seed"], compile=m["compile"],
                    save_every=spec.save_every, checkpoint_every=spec.checkpoint_every, stream=m["stream"])
        card.update(m["knobs"])
        return card
