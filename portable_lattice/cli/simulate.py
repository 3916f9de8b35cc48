"""``portable-lattice simulate``: sample one theory, print every observable with its error.

Also the reporting that ``run`` and ``resume`` share: a result as a table or as JSON.
"""
from __future__ import annotations

import argparse
import math
import sys

from ..backends import BACKENDS
from ..runs import NonFiniteFieldError
from ..runs.simulate import run_spec
from ..runs.spec import KNOBS, ALGORITHMS, CARD_KEYS, DEFAULT_ALGORITHM, DEFAULT_MODEL, KEY_TYPES, KNOB_HELP, KNOB_TYPES, MODEL_CLASSES, MODEL_KEYS, \
    RunSpec
from ..samplers.base import INFO_SERIES
from ..statistics import format_value
from ..theories import FAMILIES
from ._common import _flag, _given, _store_flags, exits_2, json_ready, print_json

#: observables printed and written per theory family, in this order (the family's own list)
REPORTED = {name: fam.reported for name, fam in FAMILIES.items()}
#: per-step sampler statistics, reported beside the observables where the sampler has them
SAMPLER = INFO_SERIES


def add_parser(sub) -> None:
    sim = sub.add_parser("simulate", help="sample a lattice theory and print observables with errors")
    sim.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(MODEL_KEYS))
    _theory_flags(sim)
    lat = sim.add_argument_group("lattice")
    lat.add_argument("--L", type=int, help=f"extent in every direction (default {RunSpec.L})")
    lat.add_argument("--dim", type=int, help=f"number of dimensions, 1..4 (default {RunSpec.dim})")
    _sampler_flags(sim)
    _run_group(sim)
    _store_flags(sim)


def _theory_flags(sim) -> None:
    par = sim.add_argument_group("phi4: (beta, g) as in the PEM paper, or (kappa, lam) as in the diffusion paper")
    par.add_argument("--beta", type=float, help="phi4: hopping coupling; spins: inverse temperature")
    par.add_argument("--g", type=float, help="phi4: quartic coupling with --beta (the PEM paper's form)")
    par.add_argument("--kappa", type=float, help="phi4: hopping parameter with --lam (the diffusion paper's form)")
    par.add_argument("--lam", type=float, help="phi4: quartic coupling with --kappa")
    spin = sim.add_argument_group("spin models: H = -J sum s_i s_j - h sum s_i (ising), -J sum delta (potts), "
                                  "-J sum cos (clock), -sum J_ij s_i s_j (ea); weight exp(-beta H)")
    spin.add_argument("--q", type=int, help="potts/clock: number of states (default 3)")
    spin.add_argument("--h", type=float, help="ising: magnetic field (default 0)")
    spin.add_argument("--J", type=float, help="ising/potts/clock: coupling (default 1)")
    spin.add_argument("--couplings", help="ea: couplings as .npy of shape (d, L, ..., L)")
    spin.add_argument("--couplings-seed", type=int, help="ea: draw J_ij ~ N(0,1) from this seed")
    other = sim.add_argument_group("the other models' couplings (--beta, --J, --h as above; each theory's class "
                                   "documents its action)")
    _generated_flags(sim, other, [k for keys in MODEL_KEYS.values() for k in keys], _coupling_help)


def _coupling_help(key: str) -> str:
    models = [m for m, ks in MODEL_KEYS.items() if key in ks]
    helps = [getattr(MODEL_CLASSES[m], "card_help", {}).get(key) for m in models]
    return f"{'/'.join(models)}: {'; '.join(h for h in helps if h) or 'a coupling (see the theory class)'}"


def _generated_flags(sim, group, keys, help_for) -> None:
    """A flag for every card key in ``keys`` that has none yet, typed as the card's key: a theory
    that brings a new coupling (its help from the class's ``card_help``), or a sampler a new
    knob (its help from :data:`~portable_lattice.runs.spec.KNOB_HELP`), gets its flag without
    an edit here."""
    have = {a.dest for a in sim._actions}
    for key in dict.fromkeys(keys):
        if key not in have:
            group.add_argument("--" + key.replace("_", "-"), dest=key, type=KEY_TYPES[key], help=help_for(key))


def _algorithm_help() -> str:
    """Each model's algorithms and default, from the run specification's tables (phi4's
    metropolis is the PEM paper's random-site update, the spin models' the DCL paper's)."""
    fams = {m: cls.family.name for m, cls in MODEL_CLASSES.items()}
    return "; ".join(f"{m}: {', '.join(ALGORITHMS[f])} (default {DEFAULT_ALGORITHM[f]})" for m, f in fams.items())


def _knob_help(key: str, text: str) -> str:
    """``text``, then the models and algorithms that take the knob (from the run specification)."""
    where = []
    for m, cls in MODEL_CLASSES.items():
        algs = [a for a, ks in KNOBS[cls.family.name].items() if key in ks]
        if algs:
            where.append(f"{m} {'/'.join(algs)}")
    return f"{text}; taken by {', '.join(where) or 'no algorithm'}"


def _sampler_flags(sim) -> None:
    alg = sim.add_argument_group("sampler (knobs default to the kernel's own defaults)")
    alg.add_argument("--algorithm", default=None,
                     choices=sorted(set().union(*ALGORITHMS.values())),
                     help=_algorithm_help())
    alg.add_argument("--step", type=float, help=_knob_help("step", "proposal width (default 1.0)"))
    alg.add_argument("--hits", type=int, help=_knob_help("hits", "proposals per site (default 1)"))
    alg.add_argument("--dt", type=float, help=_knob_help("dt", "time step (default 0.01)"))
    alg.add_argument("--n-steps", type=int, help=_knob_help("n_steps", "integration steps (default 10)"))
    alg.add_argument("--traj-length", type=float, help=_knob_help("traj_length", "trajectory length (default 1.0)"))
    alg.add_argument("--integrator", choices=["leapfrog", "omelyan"],
                     help=_knob_help("integrator", "the molecular-dynamics integrator (default leapfrog)"))
    alg.add_argument("--fused", action="store_true", default=None,
                     help="checkerboard (phi4, ising) and hmc: one fused kernel per sweep or trajectory, "
                          "bit-identical to the generic path (numba on the CPU: the 'fast' extra)")
    _generated_flags(sim, alg, KNOB_TYPES, lambda key: _knob_help(key, KNOB_HELP.get(key, "see the kernel's docs")))


def _run_group(sim) -> None:
    run = sim.add_argument_group("run (the defaults are RunSpec's)")
    run.add_argument("--backend", choices=sorted(BACKENDS), help=f"default {RunSpec.backend}")
    run.add_argument("--device", help="cpu, cuda or cuda:N (default: the backend's own)")
    run.add_argument("--seed", type=int, help=f"default {RunSpec.seed}")
    run.add_argument("--dtype", choices=["float32", "float64"],
                     help=f"phi4: the field's dtype; spins: the dtype of energies and observables "
                          f"(default {RunSpec.dtype})")
    run.add_argument("--chains", type=int, help=f"independent chains (default {RunSpec.chains})")
    run.add_argument("--therm", type=int, help=f"thermalisation steps (default {RunSpec.therm})")
    run.add_argument("--sweeps", type=int, help=f"number of measurements (default {RunSpec.sweeps})")
    run.add_argument("--every", type=int, help=f"steps between measurements (default {RunSpec.every})")
    run.add_argument("--stream", choices=["native", "philox"],
                     help="random numbers: the backend's own generator, or Philox4x32-10, the same on every "
                          f"backend (default {RunSpec.stream})")
    run.add_argument("--compile", action="store_true", default=None,
                     help="phi4 on torch only: fuse the kernels with torch.compile (compiled before timing)")
    run.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="status line on stderr (default: only on a terminal)")


def card_from_args(args) -> dict:
    """The run card the simulate flags say (a flag left out is absent: RunSpec's default applies)."""
    return {key: getattr(args, key) for key in CARD_KEYS if getattr(args, key, None) is not None}


def result_json(res, fam: str) -> dict:
    meta = res.meta
    obs = {name: e.as_dict() for name, e in res.observables.items() if name in REPORTED[fam]}
    sampler = {name: e.as_dict() for name, e in res.observables.items() if name in SAMPLER}
    model = dict(meta["theory"], L=meta["L"], dim=meta["dim"])
    return {"version": meta["version"], "backend": meta["backend"], "device": meta["device"], "dtype": meta["dtype"],
            "model": model, "algorithm": meta["algorithm"], "knobs": meta["knobs"], "chains": meta["chains"],
            "stream": meta.get("stream", "native"),
            "therm": meta["therm"], "sweeps": meta["sweeps"], "every": meta["every"], "seed": meta["seed"],
            "compile": meta["compile"],
            "acceptance": json_ready({"value": res.acceptance.value, "error": res.acceptance.error}),
            "sampler": sampler, "observables": obs,
            "timing": {"seconds": res.seconds, "site_updates_per_second": res.site_updates_per_second}}


def print_table(res, fam: str, out=None) -> None:
    out = out or sys.stdout
    m = res.meta
    params = ", ".join(f"{k}={v}" for k, v in m["theory"].items() if k not in ("name", "form"))
    knobs = ", ".join(f"{k}={v}" for k, v in m["knobs"].items())
    out.write(f"{m['theory']['name']} ({params}) L={m['L']} d={m['dim']} | {m['algorithm']}"
              f"{' (' + knobs + ')' if knobs else ''} | backend {m['backend']} on {m['device']}, {m['dtype']} | "
              f"{m['chains']} chains x {m['sweeps']} measurements\n\n")
    out.write(f"{'observable':14s} {'value':>20s} {'tau_int':>14s}\n")
    for name in REPORTED[fam] + SAMPLER:
        if name not in res.observables:
            continue
        e = res.observables[name]
        tau = format_value(e.tau_int, e.tau_int_error) if math.isfinite(e.tau_int_error) and e.tau_int_error > 0 \
            else f"{e.tau_int:.2f}"
        out.write(f"{name:14s} {str(e):>20s} {tau:>14s}\n")
    out.write(f"\ntime {res.seconds:.2f} s   {res.site_updates_per_second:.3g} site updates/s\n")


def main(args, ap, prog="portable-lattice simulate") -> int:
    with exits_2(prog, ap):
        if args.out is None:
            stray = _given(args, ("save_every", "checkpoint_every", "format"))
            if stray:
                raise ValueError(f"{_flag(stray[0])} applies to a run on disk: give --out DIR")
        spec = RunSpec.from_card(card_from_args(args)).replace(out=args.out)
    return _run_and_report(ap, spec, args, prog)


def _run_and_report(ap, spec: RunSpec, args, prog: str) -> int:
    """Run ``spec`` and report it; a stop keeps its exit status, a non-finite field reports what came before."""
    from ..runs.production import StopRequested
    # NonFiniteFieldError is a ValueError: it is handled inside the block, before it could count as bad input
    with exits_2(prog, ap):
        try:
            if spec.compile:
                # compile once outside the timed run, so the reported throughput is the compiled kernel's
                run_spec(spec.replace(therm=1, sweeps=2, every=1, out=None), progress=False)
            res = run_spec(spec, progress=False if args.json and args.progress is None else args.progress)
            status = 0
        except StopRequested as e:
            print(f"{prog}: {e}", file=sys.stderr)
            return e.status
        except NonFiniteFieldError as e:
            # report what was measured before the blow-up, then fail
            print(f"{prog}: error: {e}", file=sys.stderr)
            res, status = e.partial, 3
            if res is None or not res.series:
                return status
            res.meta.update(spec.describe(), sweeps=res.series["m"].shape[0], partial=True)
    return _report_run(res, spec.family, args, status)


def _report_run(res, fam, args, status=0) -> int:
    if args.json:
        out = result_json(res, fam)
        if res.meta.get("partial"):
            out["partial"] = True
        print_json(out)
    else:
        print_table(res, fam)
    return status
