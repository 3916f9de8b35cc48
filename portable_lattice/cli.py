"""``portable-lattice``: the command line.

    portable-lattice simulate --model phi4 --beta 0.5 --g 0.1 --L 16 --algorithm checkerboard
    portable-lattice simulate --kappa 0.21 --lam 0.022 --L 32 --algorithm hmc --backend torch --json
    portable-lattice simulate --model ising --beta 0.4406868 --L 64 --algorithm swendsen-wang
    portable-lattice mcrg --L 32 --configs 10000
    portable-lattice pem --surrogate oracle --L 16
    portable-lattice run CARD.toml --out DIR        (then: resume DIR, analyse DIR, export DIR, plot DIR)
    portable-lattice scan CARD.toml --set kappa=0.20:0.28:9 --scheduler local:2 --out DIR

Every flag means one thing. A flag that does not apply to the chosen model or
algorithm is an error (exit status 2, naming the flag), never silently
ignored. Exit status 3: the field became non-finite (what was measured before
is still reported).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings

from . import __version__
from .backends import BACKENDS, BackendUnavailableError
from .runs import NonFiniteFieldError
from .runs.simulate import run_spec
from .runs.spec import ALGORITHMS, CARD_KEYS, DEFAULT_MODEL, MODEL_KEYS, RunSpec
from .statistics import format_value
from .samplers.base import INFO_SERIES
from .theories import FAMILIES, Phi4

__all__ = ["main", "build_parser"]

#: observables printed and written per theory family, in this order (the family's own list)
REPORTED = {name: fam.reported for name, fam in FAMILIES.items()}
#: per-step sampler statistics, reported beside the observables where the sampler has them
SAMPLER = INFO_SERIES

def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-") if dest not in ("L", "J", "h", "q", "g") else "--" + dest


def _json_ready(obj):
    """NaN and infinities as null: JSON has no NaN, and --json promises JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    return obj


def print_json(obj) -> None:
    """Exactly one JSON object on stdout, newline-terminated (what --json promises)."""
    json.dump(_json_ready(obj), sys.stdout, allow_nan=False)
    sys.stdout.write("\n")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="portable-lattice",
                                 description="Lattice Monte Carlo on NumPy, torch or CuPy.")
    ap.add_argument("--version", action="version", version=f"portable_lattice {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="sample a lattice theory and print observables with errors")
    sim.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(MODEL_KEYS))
    par = sim.add_argument_group("phi4: (beta, g) as in the PEM paper, or (kappa, lam) as in the diffusion paper")
    par.add_argument("--beta", type=float, help="phi4: hopping coupling; spins: inverse temperature")
    par.add_argument("--g", type=float)
    par.add_argument("--kappa", type=float)
    par.add_argument("--lam", type=float)
    spin = sim.add_argument_group("spin models: H = -J sum s_i s_j - h sum s_i (ising), -J sum delta (potts), "
                                  "-J sum cos (clock), -sum J_ij s_i s_j (ea); weight exp(-beta H)")
    spin.add_argument("--q", type=int, help="potts/clock: number of states (default 3)")
    spin.add_argument("--h", type=float, help="ising: magnetic field (default 0)")
    spin.add_argument("--J", type=float, help="ising/potts/clock: coupling (default 1)")
    spin.add_argument("--couplings", help="ea: couplings as .npy of shape (d, L, ..., L)")
    spin.add_argument("--couplings-seed", type=int, help="ea: draw J_ij ~ N(0,1) from this seed")
    lat = sim.add_argument_group("lattice")
    lat.add_argument("--L", type=int, help=f"extent in every direction (default {RunSpec.L})")
    lat.add_argument("--dim", type=int, help=f"number of dimensions, 1..4 (default {RunSpec.dim})")
    alg = sim.add_argument_group("sampler (knobs default to the kernel's own defaults)")
    alg.add_argument("--algorithm", default=None,
                     choices=sorted(set(ALGORITHMS["field"]) | set(ALGORITHMS["spins"])),
                     help="phi4: metropolis (PEM paper's random site), checkerboard, hmc, langevin, mala; "
                          "spins: metropolis (DCL's random-site single flip), checkerboard, heatbath, "
                          "swendsen-wang, wolff; default checkerboard for every model")
    alg.add_argument("--step", type=float, help="phi4 metropolis/checkerboard: proposal width (default 1.0)")
    alg.add_argument("--hits", type=int, help="phi4 checkerboard: proposals per site (default 1)")
    alg.add_argument("--dt", type=float, help="phi4 langevin/mala: time step (default 0.01)")
    alg.add_argument("--n-steps", type=int, help="phi4 hmc: integration steps (default 10)")
    alg.add_argument("--traj-length", type=float, help="phi4 hmc: trajectory length (default 1.0)")
    alg.add_argument("--integrator", choices=["leapfrog", "omelyan"], help="phi4 hmc (default leapfrog)")
    alg.add_argument("--fused", action="store_true", default=None,
                     help="checkerboard (phi4, ising) and hmc: one fused kernel per sweep or trajectory, "
                          "bit-identical to the generic path (numba on the CPU: the 'fast' extra)")
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
    _store_flags(sim)

    card = sub.add_parser("run", help="run a TOML run card into an ensemble directory")
    card.add_argument("card", help="run card: keys are simulate's long flag names with _ for - "
                                   "(model, beta, g, L, algorithm, chains, sweeps, save_every, ...)")
    card.add_argument("--out", help="ensemble directory (default: the card's name without .toml, plus .ensemble)")
    card.add_argument("--json", action="store_true")
    card.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)

    res = sub.add_parser("resume", help="continue a stored run from its last commit, appending to the same store")
    res.add_argument("dir", help="ensemble directory")
    res.add_argument("--sweeps", type=int, help="total number of measurements (default: the stored card's)")
    res.add_argument("--save-every", type=int)
    res.add_argument("--checkpoint-every", type=int)
    res.add_argument("--card", help="a run card that must agree on every physics key (run length may differ)")
    res.add_argument("--backend", choices=sorted(BACKENDS), help="continue on another backend "
                                                                "(needs --allow-backend-change)")
    res.add_argument("--device", help="continue on another device (needs --allow-backend-change)")
    res.add_argument("--allow-backend-change", action="store_true",
                     help="continue on another backend or device: statistically equal, not bit-identical")
    res.add_argument("--json", action="store_true")
    res.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)

    an = sub.add_parser("analyse", help="redo the analysis of a stored run from its measurement streams")
    an.add_argument("dir", help="ensemble directory")
    an.add_argument("--discard", type=int, default=0, help="measurements dropped from the start (default 0)")
    an.add_argument("--json", action="store_true")

    ex = sub.add_parser("export", help="export a stored run's streams for other analysis tools")
    ex.add_argument("dir", help="ensemble directory")
    ex.add_argument("--pyerrors", required=True, metavar="OUT.json.gz", help="pyerrors' json.gz format")

    pl = sub.add_parser("plot", help="Monte Carlo histories, autocorrelations and histograms of a stored run "
                                     "(needs matplotlib)")
    pl.add_argument("dir", help="ensemble directory")
    pl.add_argument("--out", help="folder for the PNG files (default: DIR/plots)")

    sc = sub.add_parser("scan", help="run a card over a grid of parameters, one ensemble per point (Dask)")
    sc.add_argument("card", help="run card of the base point")
    sc.add_argument("--set", action="append", default=[], metavar="KEY=VALUES",
                    help="KEY=a:b:n (n points from a to b) or KEY=v1,v2,...; repeat for a product grid")
    sc.add_argument("--scheduler", default="serial",
                    help="serial, local:N (a LocalCluster of N workers) or tcp://HOST:PORT (default serial)")
    sc.add_argument("--out", required=True, help="folder holding one ensemble directory per point")
    sc.add_argument("--threads", type=int, help="threads per task (default: the cores divided among the workers)")
    sc.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="one line per finished point on stderr (default: on a terminal)")
    sc.add_argument("--json", action="store_true")

    up = sub.add_parser("upscale", help="inverse RG: generate critical 2D Ising configurations with a D4-symmetric "
                                        "upscaling kernel and test them by finite-size scaling")
    up.add_argument("--k", type=int, default=3, help="kernel size, odd >= 3 (default 3)")
    src = up.add_argument_group("the model: exactly one of --weights, --net, --train-configs")
    src.add_argument("--weights", help="the kernel's (k+1)(k+3)/8 free parameters, comma separated, in the order "
                                       "(1,1), (1,0), (0,0), then shell by shell (see docs)")
    src.add_argument("--net", metavar="PATH", help="a model saved with --save-net (JSON: k, weights, provenance)")
    src.add_argument("--train-configs", type=int, help="train on this many Swendsen-Wang configurations at K_c "
                                                       "(exact L-BFGS fit of Eq. 12/13)")
    src.add_argument("--train-L", type=int, default=None, help="training lattice size L_t (default 32)")
    src.add_argument("--weighted", action="store_true", help="train with the majority rule's weights D(mu|sigma) "
                                                             "(Eq. 13); default: uniform weights (Eq. 12)")
    src.add_argument("--save-net", metavar="PATH", help="save the model (JSON) for --net")
    up.add_argument("--convention", default="paper", choices=["paper", "code"],
                    help="paper: Eq. 9 on +-1 spins; code: the authors' 0/1 spins with a tied bias (4x the paper's)")
    up.add_argument("--levels", type=int, default=7, help="upscaling steps (default 7: L0 2^7)")
    up.add_argument("--L0", type=int, default=1, help="start from random L0 x L0 spins, L0 a power of two (default 1)")
    up.add_argument("--input", help="start from stored configurations instead (.npy/.npz of +-1, or an ensemble dir)")
    up.add_argument("--configs", type=int, default=1024, help="configurations generated (default 1024)")
    up.add_argument("--batch", type=int, default=256, help="configurations per batch (default 256)")
    up.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                    help="of the field and the draws; float32 is about twice as fast (default float64)")
    _run_flags(up)
    up.add_argument("--json", action="store_true")

    pem = sub.add_parser("pem", help="surrogate Metropolis vs the Penalty Ensemble Method vs the exact sampler")
    pem.add_argument("--beta", type=float, default=0.5)
    pem.add_argument("--g", type=float, default=0.1)
    pem.add_argument("--L", type=int, default=16)
    pem.add_argument("--ensemble", type=int, default=10, help="members N (default 10)")
    pem.add_argument("--surrogate", default="cnn", choices=["cnn", "oracle"],
                     help="cnn: train the residual CNN ensemble (needs torch); oracle: exact gradient + noise")
    pem.add_argument("--oracle-sigma", type=float, default=1.0)
    pem.add_argument("--train-configs", type=int, default=90)
    pem.add_argument("--epochs", type=int, default=150)
    pem.add_argument("--channels", type=int, default=16)
    pem.add_argument("--mode", default="parallel", choices=["parallel", "sequential"])
    pem.add_argument("--step", type=float, default=1.0)
    pem.add_argument("--chains", type=int, default=8)
    pem.add_argument("--therm", type=int, default=200)
    pem.add_argument("--sweeps", type=int, default=1000)
    pem.add_argument("--backend", default="numpy", choices=sorted(BACKENDS))
    pem.add_argument("--seed", type=int, default=0)
    pem.add_argument("--save-ensemble", metavar="PATH", help="cnn: keep the trained ensemble (weights, provenance)")
    pem.add_argument("--load-ensemble", metavar="PATH", help="cnn: use a saved ensemble instead of training one")
    pem.add_argument("--json", action="store_true")

    mc = sub.add_parser("mcrg", help="Monte Carlo RG of the 2D Ising model: exponents from the T matrix")
    gen = mc.add_argument_group("generating an ensemble (not with --input)")
    gen.add_argument("--L", type=int, help="lattice extent (default 32)")
    gen.add_argument("--beta", type=float, help="default: K_c = ln(1 + sqrt 2)/2")
    gen.add_argument("--algorithm", choices=["swendsen-wang", "wolff", "checkerboard", "heatbath"],
                     help="default swendsen-wang")
    gen.add_argument("--configs", type=int, help="configurations analysed (default 10000)")
    gen.add_argument("--chains", type=int, help="default 64")
    gen.add_argument("--therm", type=int, help="default 200")
    gen.add_argument("--every", type=int, help="default 1")
    gen.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    mc.add_argument("--levels", type=int, default=2, help="blocking steps (default 2)")
    mc.add_argument("--input", default=None, help="analyse stored configurations, (configs, L, L) of +-1 (or "
                                                  "booleans), instead of generating an ensemble: FILE.npy, "
                                                  "FILE.npz (one array) or FILE.npz:KEY")
    mc.add_argument("--pair", type=int, default=None, help="blocking step n -> n+1 reported, 0..levels-1 "
                                                          "(default: the last)")
    mc.add_argument("--basis", default="symmetric", choices=["symmetric", "oriented"],
                    help="couplings summed over rotations/reflections (default), or one orientation per shape "
                         "as in the inverse-RG authors' code")
    _run_flags(mc)
    mc.add_argument("--json", action="store_true")
    _dcl_parser(sub)
    _diffusion_parser(sub)
    return ap


def _dcl_parser(sub) -> None:
    """``dcl train | energy | curves | thermo``: distribution-consistent learning ([DCL])."""
    dcl = sub.add_parser("dcl", help="distribution-consistent learning: autoregressive models of observed spins, "
                                     "learned energies, entropies and free energies")
    jobs = dcl.add_subparsers(dest="job", required=True)
    helps = {"train": "sample at beta_O, fit an autoregressive model, write it to --net",
             "energy": "RMSE of the model's energy (and of an EDNN trained on it) over all energies (Table 2)",
             "curves": "U and |m| against beta with the learned energy and the true one (Fig. 2)",
             "thermo": "S, F, U per site from the model's samples: the paper's and the importance-weighted "
                       "estimators (Tables 3, A1)"}
    for job, text in helps.items():
        p = jobs.add_parser(job, help=text)
        p.add_argument("--model", default="ising", choices=["ising", "clock", "ea"])
        p.add_argument("--q", type=int, default=None, help="clock: states (default 3)")
        p.add_argument("--couplings-seed", "--couplings", dest="couplings_seed", type=int, default=None,
                       help="ea: Gaussian couplings J_ij ~ N(0, 1) drawn from this seed (default 0)")
        p.add_argument("--L", type=int, default=None, help="lattice extent (train: required; others: the model's)")
        p.add_argument("--beta-obs", type=float, default=0.4407, help="observation inverse temperature (0.4407)")
        p.add_argument("--net", required=True, metavar="PATH",
                       help="the autoregressive model: written by train, read by the others")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--backend", default="numpy", choices=sorted(BACKENDS),
                       help="array backend of the Monte Carlo (the networks run in torch on the CPU)")
        p.add_argument("--device", default=None)
        p.add_argument("--json", action="store_true")
        if job == "train":
            g = p.add_argument_group("data")
            g.add_argument("--configs", type=int, default=20000, help="training configurations (default 20000)")
            g.add_argument("--seeds", type=int, default=32, help="independent chains (default 32)")
            g.add_argument("--period", type=int, default=2,
                           help="steps between kept configurations: cluster sweeps, or single-spin updates for "
                                "--algorithm metropolis (default 2)")
            g.add_argument("--algorithm", default="swendsen-wang",
                           choices=["swendsen-wang", "metropolis", "checkerboard"])
            g = p.add_argument_group("network")
            g.add_argument("--arch", default="pixelcnn", choices=["gru", "pixelcnn"])
            g.add_argument("--hidden", type=int, default=32, help="GRU hidden size or PixelCNN channels (32)")
            g.add_argument("--layers", type=int, default=3)
            g.add_argument("--half", type=int, default=3, help="pixelcnn: kernel half-width (3)")
            g.add_argument("--ordering", default="spiral", choices=["spiral", "snake", "raster"], help="gru only")
            g.add_argument("--head", default="likelihood", choices=["likelihood", "regression"])
            g.add_argument("--symmetrize", action=argparse.BooleanOptionalAction, default=True,
                           help="average the model over the global symmetry of the states (default on)")
            g = p.add_argument_group("training")
            g.add_argument("--epochs", type=int, default=10)
            g.add_argument("--batch", type=int, default=128)
            g.add_argument("--lr", type=float, default=2e-3)
        elif job == "energy":
            p.add_argument("--per-level", type=int, default=50, help="test configurations per energy level (50)")
            p.add_argument("--ednn", metavar="PATH", help="also train an EDNN on the model's energies, write it here")
            p.add_argument("--labels-on", default="random", choices=["random", "samples", "both"])
            p.add_argument("--ednn-configs", type=int, default=20000)
            p.add_argument("--epochs", type=int, default=20, help="EDNN epochs (20)")
        elif job == "curves":
            p.add_argument("--energy", default="ednn", choices=["ednn", "model"],
                           help="ednn (any L divisible by its focus; --ednn PATH) or the model's -ln P (its L)")
            p.add_argument("--ednn", metavar="PATH")
            p.add_argument("--betas", default="0.3:0.6:7", help="A:B:N or a comma list (default 0.3:0.6:7)")
            p.add_argument("--mode", default="parallel", choices=["parallel", "sequential"])
            p.add_argument("--chains", type=int, default=16)
            p.add_argument("--therm", type=int, default=300)
            p.add_argument("--sweeps", type=int, default=1000)
        else:
            p.add_argument("--beta", type=float, default=None, help="default: the model's beta_O")
            p.add_argument("--samples", type=int, default=10000)
            p.add_argument("--chain-sweeps", type=int, default=0,
                           help="also run an exact independence Metropolis chain with the model as proposal")
            p.add_argument("--ednn", metavar="PATH", help="use this learned energy instead of the true H (DCL's F)")
            p.add_argument("--ground-state", type=float, default=None,
                           help="with --ednn: energy per site of the aligned states (the paper: -2)")


def _store_flags(parser) -> None:
    st = parser.add_argument_group("on disk (a production run: resumable, analysable later)")
    st.add_argument("--out", help="write the ensemble (measurements, configurations, checkpoints) to this directory")
    st.add_argument("--save-every", type=int, help="with --out: save a configuration every N measurements "
                                                   f"(default {RunSpec.save_every}: none)")
    st.add_argument("--checkpoint-every", type=int, help="with --out: commit and checkpoint every N measurements "
                                                         f"(default {RunSpec.checkpoint_every})")


def _run_flags(group) -> None:
    group.add_argument("--backend", default="numpy", choices=sorted(BACKENDS))
    group.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the backend's own)")
    group.add_argument("--seed", type=int, default=0)


def _given(args, dests) -> list[str]:
    return [d for d in dests if getattr(args, d, None) is not None]


def card_from_args(args) -> dict:
    """The run card the simulate flags say (a flag left out is absent: RunSpec's default applies)."""
    return {key: getattr(args, key) for key in CARD_KEYS if getattr(args, key, None) is not None}


def _finite(x: float):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None  # JSON has no NaN


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
            "acceptance": {"value": _finite(res.acceptance.value), "error": _finite(res.acceptance.error)},
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


def _main_simulate(ap, args, prog="portable-lattice simulate") -> int:
    try:
        if args.out is None:
            stray = _given(args, ("save_every", "checkpoint_every"))
            if stray:
                raise ValueError(f"{_flag(stray[0])} applies to a run on disk: give --out DIR")
        spec = RunSpec.from_card(card_from_args(args)).replace(out=args.out)
    except (ValueError, TypeError, BackendUnavailableError) as e:
        ap.exit(2, f"{prog}: error: {e}\n")
    return _run_and_report(ap, spec, args, prog)


def _run_and_report(ap, spec: RunSpec, args, prog: str) -> int:
    from .runs.production import StopRequested
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
    except (ValueError, TypeError, BackendUnavailableError) as e:
        ap.exit(2, f"{prog}: error: {e}\n")
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


def _main_pem(ap, args) -> int:
    try:
        # the pipeline trains torch models, so it lives in the torch-only model zoo
        from .nn import pipeline
    except ImportError as e:
        ap.exit(2, f"portable-lattice pem: error: needs PyTorch: pip install 'portable_lattice[torch]' ({e})\n")
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if not args.json else None
    try:
        out = pipeline.run_pem(beta=args.beta, g=args.g, L=args.L, ensemble=args.ensemble, surrogate=args.surrogate,
                               oracle_sigma=args.oracle_sigma, train_configs=args.train_configs, epochs=args.epochs,
                               channels=args.channels, mode=args.mode, step=args.step, chains=args.chains,
                               therm=args.therm, sweeps=args.sweeps, backend=args.backend, seed=args.seed, log=log,
                               save_ensemble_to=args.save_ensemble, load_ensemble_from=args.load_ensemble)
    except (ValueError, TypeError, BackendUnavailableError) as e:
        ap.exit(2, f"portable-lattice pem: error: {e}\n")
    if args.json:
        print_json(out)
        return 0
    p = out["parameters"]
    print(f"PEM study: phi^4 beta={p['beta']} g={p['g']} L={p['L']} | surrogate {p['surrogate']}"
          f"{' sigma=' + str(p['oracle_sigma']) if p['oracle_sigma'] else ''}, N={p['ensemble']} | {p['mode']} mode\n")
    print(f"{'method':10s} {'action':>14s} {'z':>7s} {'|M|':>14s} {'z':>7s} {'chi':>12s} {'z':>7s} {'acc':>6s}")
    for method, r in out["methods"].items():
        o, z = r["observables"], r["z"]
        cells = "".join(f" {format_value(o[k]['value'], o[k]['error']):>14s} {z[k]:7.2f}" for k in ("action", "m_abs", "chi"))
        print(f"{method:10s}{cells} {r['acceptance']:6.3f}")
    return 0


def _main_run(ap, args) -> int:
    from .runs.cards import read_card
    prog = "portable-lattice run"
    out = args.out or (args.card[:-5] if args.card.endswith(".toml") else args.card) + ".ensemble"
    try:
        spec = RunSpec.from_card(read_card(args.card)).replace(out=out)
    except (ValueError, TypeError, BackendUnavailableError) as e:
        ap.exit(2, f"{prog}: error: {e}\n")
    return _run_and_report(ap, spec, args, prog)


def _main_resume(ap, args) -> int:
    from .runs.cards import read_card
    from .runs.production import StopRequested, resume
    from .runs.storage import StoreError
    prog = "portable-lattice resume"
    try:
        card = read_card(args.card) if args.card else None
        res = resume(args.dir, sweeps=args.sweeps, save_every=args.save_every, checkpoint_every=args.checkpoint_every,
                     backend=args.backend, device=args.device, allow_backend_change=args.allow_backend_change,
                     card=card, progress=False if args.json and args.progress is None else args.progress)
    except StopRequested as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return e.status
    except (ValueError, TypeError, BackendUnavailableError, StoreError) as e:
        ap.exit(2, f"{prog}: error: {e}\n")
    return _report_run(res, res.meta["family"], args)


def _main_analyse(ap, args) -> int:
    from .runs.analysis import analyse_store, print_analysis
    try:
        out = analyse_store(args.dir, discard=args.discard)
    except (ValueError, TypeError) as e:
        ap.exit(2, f"portable-lattice analyse: error: {e}\n")
    if args.json:
        print_json(out)
    else:
        print_analysis(out)
    return 0


def _main_export(ap, args) -> int:
    from .runs.export import export_pyerrors
    try:
        path = export_pyerrors(args.dir, args.pyerrors)
    except (ValueError, TypeError) as e:
        ap.exit(2, f"portable-lattice export: error: {e}\n")
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _main_plot(ap, args) -> int:
    try:
        from .runs.plots import plot_store
    except ImportError as e:
        ap.exit(2, f"portable-lattice plot: error: needs matplotlib: pip install 'portable_lattice[plot]' ({e})\n")
    try:
        paths = plot_store(args.dir, args.out)
    except (ValueError, TypeError) as e:
        ap.exit(2, f"portable-lattice plot: error: {e}\n")
    for path in paths:
        print(path)
    return 0


NET_FORMAT = "portable_lattice.upscaler/1"


def _save_net(path: str, k: int, weights: list, info: dict) -> None:
    """A model as JSON (weights in the paper's convention and provenance): nothing executable."""
    blob = {"format": NET_FORMAT, "k": k, "weights": [float(w) for w in weights], "convention": "paper",
            "provenance": {key: info[key] for key in ("weighted", "loss", "data") if key in info}}
    with open(path, "w") as f:
        json.dump(_json_ready(blob), f, indent=1)


def _load_net(path: str, k: int) -> tuple[list, dict]:
    try:
        with open(path) as f:
            blob = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read --net {path!r}: {e}") from e
    if not isinstance(blob, dict) or blob.get("format") != NET_FORMAT:
        raise ValueError(f"--net {path!r} is not a saved upscaler (format {NET_FORMAT})")
    if blob.get("k") != k:
        raise ValueError(f"--net {path!r} is a k={blob.get('k')} model, but --k {k} was asked for")
    return [float(w) for w in blob["weights"]], dict(blob.get("provenance") or {})


def _main_upscale(ap, args) -> int:
    from .runs.upscaling import REPORTED as UP_REPORTED
    from .runs.upscaling import generate_and_analyse
    prog = "portable-lattice upscale"
    model_info = {}
    try:
        given = [f for f, v in (("--weights", args.weights), ("--net", args.net), ("--train-configs", args.train_configs))
                 if v is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of --weights, --net, --train-configs (got {', '.join(given) or 'none'})")
        if args.train_configs is None and (args.weighted or args.train_L is not None):
            raise ValueError(f"{'--weighted' if args.weighted else '--train-L'} applies to training: "
                             f"give --train-configs N")
        if args.net is not None and args.convention != "paper":
            raise ValueError("--convention applies to --weights (a saved net is in the paper's convention)")
        if args.weights is not None:
            try:
                weights = [float(w) for w in args.weights.split(",")]
            except ValueError as e:
                raise ValueError(f"--weights must be comma-separated numbers, got --weights {args.weights!r}") from e
        elif args.net is not None:
            weights, model_info = _load_net(args.net, args.k)
        else:
            from .nn.upscaler import train_upscaler
            model_info = train_upscaler(args.k, 32 if args.train_L is None else args.train_L, args.train_configs,
                                        weighted=args.weighted, seed=args.seed, backend=args.backend,
                                        log=None if args.json else (lambda m: print(m, file=sys.stderr)))
            weights = model_info["weights"]
        if args.save_net:
            _save_net(args.save_net, args.k, weights if args.convention == "paper" else [w / 4 for w in weights],
                      model_info)
        start = None
        if args.input:
            if args.L0 != 1:
                raise ValueError("--L0 is set by the stored configurations; do not give it with --input")
            from .runs.storage import load_configurations
            start = load_configurations(args.input)
        out = generate_and_analyse(weights, args.k, levels=args.levels, configs=args.configs, L0=args.L0,
                                   start=start, convention=args.convention, backend=args.backend,
                                   device=args.device, seed=args.seed, batch=args.batch, dtype=args.dtype)
    except (ValueError, TypeError, BackendUnavailableError) as e:
        ap.exit(2, f"{prog}: error: {e}\n")
    paper = [w / 4.0 for w in weights] if args.convention == "code" else weights
    if args.json:
        model = {"k": args.k, "weights": paper, "convention": "paper"}
        if "loss" in model_info:
            model.update(weighted=model_info.get("weighted"), loss=model_info["loss"], data=model_info.get("data"))
        print_json({"version": __version__, "model": model,
                    "L0": out["L0"], "levels": args.levels, "configs": args.configs, "backend": out["backend"],
                    "dtype": args.dtype,
                    "sizes": {str(L): {name: obs[name].as_dict() for name in UP_REPORTED}
                              for L, obs in out["sizes"].items()},
                    "exponents": {kind: {pair: e.as_dict() for pair, e in pairs.items()}
                                  for kind, pairs in out["exponents"].items()},
                    "timing": out["timing"]})
        return 0
    print(f"upscaled 2D Ising (Eq. 9 of [IRG]): k={args.k}, weights {paper} (paper convention), from L0={out['L0']}, "
          f"{args.configs} configurations, {out['backend']}\n")
    print(f"{'L':>5s} " + " ".join(f"{name:>16s}" for name in UP_REPORTED))
    for L, obs in out["sizes"].items():
        print(f"{L:5d} " + " ".join(f"{str(obs[name]):>16s}" for name in UP_REPORTED))
    print(f"\n{'pair':>8s} {'gamma/nu (chi)':>16s} {'1/nu (c_me)':>16s}   exact 1.75 and 1")
    for pair in out["exponents"]["gamma_nu"]:
        print(f"{pair:>8s} {str(out['exponents']['gamma_nu'][pair]):>16s} {str(out['exponents']['one_nu'][pair]):>16s}")
    print(f"\n{out['timing']['site_samples_per_second']:.3g} site samples/s")
    return 0


def _main_scan(ap, args) -> int:
    from .runs.cards import read_card
    from .runs.distributed import parse_sets, print_scan, scan
    try:
        card = read_card(args.card)
        grid = parse_sets(args.set)
        if args.threads is not None and (isinstance(args.threads, bool) or args.threads < 1):
            raise ValueError(f"--threads must be a positive integer, got --threads {args.threads}")
        progress = sys.stderr.isatty() and not args.json if args.progress is None else args.progress
        out = scan(card, grid, out=args.out, scheduler=args.scheduler, threads=args.threads, progress=progress)
    except (ValueError, TypeError, BackendUnavailableError, OSError) as e:
        ap.exit(2, f"portable-lattice scan: error: {e}\n")
    if args.json:
        print_json(out)
    else:
        print_scan(out)
    return 0 if out.get("failed", 0) == 0 else 1


_MCRG_GENERATE = ("L", "beta", "algorithm", "configs", "chains", "therm", "every", "progress")


def _estimates_json(d: dict) -> dict:
    return {k: {"value": _finite(e.value), "error": _finite(e.error)} for k, e in d.items()}


def _main_mcrg(ap, args) -> int:
    from .runs.mcrg import analyse_ensemble, run_mcrg
    try:
        if args.input:
            stray = _given(args, _MCRG_GENERATE)
            if stray:
                raise ValueError(f"{_flag(stray[0])} generates an ensemble and does not apply with --input")
            from .backends import get_backend
            from .runs.storage import load_configurations
            spins = load_configurations(args.input)
            be = get_backend(args.backend, args.device)
            out = analyse_ensemble(be.from_numpy(spins), levels=args.levels, pair=args.pair,
                                   seed=args.seed, basis=args.basis)
        else:
            given = {k: getattr(args, k) for k in _MCRG_GENERATE if getattr(args, k) is not None and k != "progress"}
            out = run_mcrg(levels=args.levels, pair=args.pair, backend=args.backend, device=args.device,
                           seed=args.seed, basis=args.basis,
                           progress=False if args.json and args.progress is None else args.progress, **given)
    except (ValueError, TypeError, BackendUnavailableError) as e:
        ap.exit(2, f"portable-lattice mcrg: error: {e}\n")
    if args.json:
        print_json(dict(out, exponents=_estimates_json(out["exponents"]),
                        steps={k: _estimates_json(v) for k, v in out["steps"].items()}, version=__version__))
        return 0
    beta = "stored" if out["beta"] is None else f"{out['beta']:.6f}"
    print(f"MCRG: 2D Ising L={out['L']} beta={beta} | {out['algorithm']} on {out['backend']} | "
          f"{out['configs']} configurations, {out['seconds']:.1f} s | 36 couplings (11 odd, 25 even), "
          f"{out['basis']} basis\n")
    print(f"{'step':8s} {'y_h':>14s} {'y_t':>12s} {'redundant':>12s} {'omega':>12s}")
    for step, ex in out["steps"].items():
        print(f"{step:8s} " + " ".join(f"{str(ex[k]):>12s}" for k in ("y_h", "y_t", "redundant", "omega")))
    print("\nexact: y_h = 1.875, y_t = 1, omega = -1; eigenvalues (step "
          f"{out['pair'][0]}->{out['pair'][1]}): odd {[round(e, 4) for e in out['eigenvalues']['odd'][:3]]}, "
          f"even {[round(e, 4) for e in out['eigenvalues']['even'][:4]]}")
    return 0


def _betas(spec: str) -> list[float]:
    try:
        if ":" in spec:
            a, b, n = spec.split(":")
            n = int(n)
            if n < 1:
                raise ValueError
            return [float(a) + (float(b) - float(a)) * i / max(n - 1, 1) for i in range(n)]
        return [float(v) for v in spec.split(",")]
    except ValueError as e:
        raise ValueError(f"--betas must be A:B:N or a comma-separated list, got --betas {spec!r}") from e


def _main_dcl(ap, args) -> int:
    from .nn import dcl
    prog = f"portable-lattice dcl {args.job}"
    try:
        for name in ("L", "q", "configs", "seeds", "period", "epochs", "batch", "hidden", "layers", "half",
                     "samples", "chains", "sweeps", "per_level", "ednn_configs"):
            v = getattr(args, name, None)
            if v is not None and v < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {v}")
        for name in ("beta_obs", "beta", "lr"):
            v = getattr(args, name, None)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {v}")
        if args.q is not None and args.model != "clock":
            raise ValueError(f"--q applies to --model clock, got --q {args.q} with --model {args.model}")
        if args.couplings_seed is not None and args.model != "ea":
            raise ValueError("--couplings applies to --model ea")
        q = (args.q or 3) if args.model == "clock" else 2
        log = None if args.json else (lambda m: print(m, file=sys.stderr))
        if args.job == "train":
            if args.L is None:
                raise ValueError("dcl train needs --L")
            if args.arch == "pixelcnn" and args.ordering != "spiral":
                raise ValueError("--ordering applies to --arch gru (the masked-convolution model reads in raster order)")
            theory = dcl.make_theory(args.model, args.beta_obs, q=q, L=args.L, couplings_seed=args.couplings_seed or 0)
            from .nn.autoregressive import save_model
            model, info = dcl.train_model(theory, args.L, configs=args.configs, arch=args.arch, hidden=args.hidden,
                                          layers=args.layers, half=args.half, head=args.head,
                                          symmetrize=args.symmetrize, epochs=args.epochs, batch=args.batch,
                                          lr=args.lr, algorithm=args.algorithm, seeds=args.seeds,
                                          period=args.period, seed=args.seed, ordering=args.ordering, log=log)
            info["model"] = args.model
            info["couplings_seed"] = args.couplings_seed
            exact = dcl.exact_reference(theory, args.L)
            info["exact_entropy"] = None if exact is None else exact["entropy"]
            save_model(args.net, model, info)
            out = {"L": args.L, "beta_obs": args.beta_obs, "arch": args.arch, "parameters": info["parameters"],
                   "train_nll": info["training"]["train_nll"], "val_nll": info["training"]["val_nll_final"],
                   "exact_entropy": info["exact_entropy"], "data": info["data"],
                   "seconds": info["training"]["seconds"], "net": args.net}
            if args.json:
                print_json(out)
            else:
                ex = "" if out["exact_entropy"] is None else f" (exact entropy per site {out['exact_entropy']:.5f})"
                print(f"{args.arch}, {out['parameters']} parameters, {args.configs} configurations at beta_O = "
                      f"{args.beta_obs}: held-out -ln P / V = {out['val_nll']:.5f}{ex}; written to {args.net}")
            return 0
        from .nn.autoregressive import load_model
        model, info = load_model(args.net, q=q, L=args.L if args.job != "curves" else None)
        if info.get("model", args.model) != args.model:
            raise ValueError(f"the model in {args.net!r} was trained on --model {info.get('model')}, "
                             f"not {args.model}")
        L = model.L
        beta_obs = info.get("beta_obs", args.beta_obs)
        seed_c = info.get("couplings_seed") or 0
        if args.job == "energy":
            theory = dcl.make_theory(args.model, beta_obs, q=q, L=L, couplings_seed=seed_c)
            out = dcl.energy_report(model, theory, per_level=args.per_level, seed=args.seed, ednn=args.ednn,
                                    labels_on=args.labels_on, ednn_configs=args.ednn_configs, epochs=args.epochs,
                                    info={"model": args.model, "q": q}, log=log)
            if args.json:
                print_json(out)
            else:
                for k in ("model", "ednn"):
                    if k in out:
                        print(f"{k:6s} RMSE {out[k]['rmse']:.4f} J over {out[k]['configs']} configurations "
                              f"({out[k]['levels']} energy levels; per-level RMSE {out[k]['rmse_levels']:.4f})")
            return 0
        if args.job == "curves":
            if args.energy == "ednn":
                if not args.ednn:
                    raise ValueError("--energy ednn needs --ednn PATH (written by dcl energy --ednn PATH)")
                from .nn.ednn import EDNNEnergy, load_ednn
                net, _ = load_ednn(args.ednn, q=q)
                provider = EDNNEnergy(net)
                Lc = args.L or L
                net.check_size(Lc)
            else:
                if args.ednn:
                    raise ValueError("--ednn applies to --energy ednn")
                from .nn.ednn import ModelEnergy
                provider = ModelEnergy(model, beta_obs)
                Lc = L
                if args.L not in (None, L):
                    raise ValueError(f"the model's energy is for L={L} (autoregressive models are size-specific), "
                                     f"got --L {args.L}")
                if args.mode == "parallel":
                    raise ValueError("--energy model is global: use --mode sequential")
            theory = dcl.make_theory(args.model, beta_obs, q=q, L=Lc, couplings_seed=seed_c)
            rows = dcl.temperature_curves(theory, provider, Lc, _betas(args.betas), mode=args.mode,
                                          chains=args.chains, therm=args.therm, sweeps=args.sweeps, seed=args.seed,
                                          backend=args.backend)
            if args.json:
                print_json({"L": Lc, "energy": args.energy, "mode": args.mode, "rows": rows})
            else:
                print(f"{'beta':>7s} {'U learned':>16s} {'U true':>16s} {'|m| learned':>16s} {'|m| true':>16s}")
                for r in rows:
                    cells = [format_value(r[k][o]["value"], r[k][o]["error"] or float("nan"))
                             for o in ("energy", "m_abs") for k in ("learned", "true")]
                    print(f"{r['beta']:7.4f} " + " ".join(f"{c:>16s}" for c in cells))
            return 0
        beta = beta_obs if args.beta is None else args.beta
        theory = dcl.make_theory(args.model, beta, q=q, L=L, couplings_seed=seed_c)
        energy = None
        if args.ednn:
            from .nn.ednn import EDNNEnergy, load_ednn
            net, _ = load_ednn(args.ednn, q=q)
            energy = EDNNEnergy(net)
            energy.set_constant("random" if args.ground_state is None else args.ground_state, L, seed=args.seed)
        elif args.ground_state is not None:
            raise ValueError("--ground-state applies to --ednn")
        out = dcl.thermodynamics(model, theory, samples=args.samples, seed=args.seed, energy=energy,
                                 chain_sweeps=args.chain_sweeps)
        if args.json:
            print_json(out)
        else:
            print(f"L = {L}, beta = {beta}, {args.samples} samples, ESS {out['ess']:.1f}")
            print(f"{'per site':>16s} {'paper (Eqs. 10-11)':>20s} {'importance':>20s} {'exact':>12s}")
            for name in ("entropy", "free_energy", "internal_energy"):
                cells = [format_value(out[name][k]["value"], out[name][k]["error"] or float("nan"))
                         for k in ("paper", "importance")]
                ex = "" if out["exact"] is None else f"{out['exact'][name]:.6f}"
                print(f"{name:>16s} {cells[0]:>20s} {cells[1]:>20s} {ex:>12s}")
            if "independence" in out:
                ind = out["independence"]
                print(f"independence Metropolis with the model as proposal ({ind['chains']} chains x "
                      f"{ind['steps']} steps): U = {format_value(ind['internal_energy']['value'], ind['internal_energy']['error'] or float('nan'))}, "
                      f"|m| = {format_value(ind['m_abs']['value'], ind['m_abs']['error'] or float('nan'))}, "
                      f"acceptance {ind['acceptance']['value']:.3f}")
        return 0
    except (ValueError, TypeError, BackendUnavailableError) as e:
        ap.exit(2, f"{prog}: error: {e}\n")


# --- diffusion models ([DMSQ], issue 15) ---------------------------------------------------------
def _diffusion_parser(sub) -> None:
    common = argparse.ArgumentParser(add_help=False)
    phys = common.add_argument_group("physics (Eq. 4.2 of [DMSQ])")
    phys.add_argument("--kappa", type=float, default=0.21)
    phys.add_argument("--lam", type=float, default=0.022)
    phys.add_argument("--L", type=int, default=8)
    net = common.add_argument_group("network")
    net.add_argument("--network", default="lattice", choices=["lattice", "paper"],
                     help="lattice: periodic, Z2-odd, multi-scale (default); paper: the published 1.1 M U-Net")
    net.add_argument("--net", metavar="PATH", required=True, help="train writes the model here; the others read it")
    samp = common.add_argument_group("sampling and likelihood")
    samp.add_argument("--sampler", default="em", choices=["em", "ode"], help="reverse SDE (Euler-Maruyama) or "
                                                                                 "probability-flow ODE (RK4)")
    samp.add_argument("--steps", type=int, default=None, help="steps of the sampler that draws: EM (default 500; "
                                                              "mc --route paper) or RK4 (default 50)")
    samp.add_argument("--lik-steps", type=int, default=50, help="RK4 steps of the likelihood ODE (likelihood; "
                                                                 "mc --route paper)")
    samp.add_argument("--samples", type=int, default=1024)
    lik = samp.add_mutually_exclusive_group()
    lik.add_argument("--probes", type=int, default=None, help="Skilling-Hutchinson probes P (default 4)")
    lik.add_argument("--exact-divergence", action="store_true", help="the divergence from all V directions")
    samp.add_argument("--probe", default="rademacher", choices=["rademacher", "gaussian"])
    samp.add_argument("--reference", metavar="JSON", help="a JSON with observables {name: {value, error}} (e.g. "
                                                          "`simulate --json`): z against it")
    _run_flags(common)
    common.add_argument("--json", action="store_true")
    dif = sub.add_parser("diffusion", help="diffusion models of phi^4 ([DMSQ]): train, sample, likelihood, DM-MC")
    jobs = dif.add_subparsers(dest="job", required=True)
    tr = jobs.add_parser("train", parents=[common], help="HMC training set, denoising score matching")
    tr.add_argument("--train-configs", type=int, default=5120)
    tr.add_argument("--spacing", type=int, default=10, help="HMC trajectories between training configurations")
    tr.add_argument("--epochs", type=int, default=100)
    tr.add_argument("--batch", type=int, default=64)
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--no-flips", action="store_true", help="no Z2 flips as augmentation")
    jobs.add_parser("sample", parents=[common], help="draw configurations and measure them (no accept/reject)")
    jobs.add_parser("likelihood", parents=[common], help="log q of drawn configurations against the action (R^2)")
    mc = jobs.add_parser("mc", parents=[common], help="DM-MC: independence Metropolis with the model's log q")
    mc.add_argument("--route", default="exact", choices=["paper", "ode", "penalty", "exact"],
                    help="1 paper: EM + Hutchinson; 2 ode: ODE + Hutchinson; 3 penalty: 2 with the "
                         "Ceperley-Dewing penalty; 4 exact: ODE + exact divergence (default)")
    mc.add_argument("--chains", type=int, default=4)
    mc.add_argument("--sweeps", type=int, default=256)
    mc.add_argument("--therm", type=int, default=4)


def _diffusion_reference(args, theory) -> dict:
    if args.reference:
        try:
            with open(args.reference) as f:
                return dict(json.load(f)["observables"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"--reference {args.reference!r} is not a JSON with 'observables': {e}") from e
    if args.lam == 0:
        from .exact import free_field_exact
        return free_field_exact(args.L, theory.beta)
    return {}


def _main_diffusion(ap, args) -> int:
    prog = f"portable-lattice diffusion {args.job}"
    try:
        from .nn import diffusion as dm
        from .runs import diffusion as runs_dm
        theory = Phi4.from_kappa_lambda(args.kappa, args.lam)
        if args.L < 2:
            raise ValueError(f"--L must be at least 2, got --L {args.L}")
        for flag, v in (("--steps", args.steps), ("--lik-steps", args.lik_steps)):
            if v is not None and v < 1:
                raise ValueError(f"{flag} must be a positive integer, got {flag} {v}")
        if args.probes is not None and args.probes < 1:
            raise ValueError(f"--probes must be a positive integer, got --probes {args.probes}")
        if args.samples < 1:
            raise ValueError(f"--samples must be a positive integer, got --samples {args.samples}")
        from .backends import get_backend
        be = get_backend(args.backend, args.device)
        from .backends.surrogate import torch_device
        device = torch_device(be)
        sde = dm.VESDE()
        out = {"version": __version__, "job": args.job, "theory": theory.params(), "L": args.L,
               "network": args.network, "backend": str(be)}
        if args.job == "train":
            out.update(_diffusion_train(args, theory, be, sde, dm, runs_dm, device))
        else:
            model, meta = dm.load_score_model(args.net, network=args.network,
                                              expect={"L": args.L, "kappa": args.kappa, "lam": args.lam})
            model = model.to(device)
            out.update(_diffusion_use(args, theory, be, sde, dm, runs_dm, model))
    except (ValueError, TypeError, BackendUnavailableError) as e:
        ap.exit(2, f"{prog}: error: {e}\n")
    if args.json:
        print_json(out)
        return 0
    for key in ("loss", "acceptance", "tau_int", "r2", "nfe_per_config", "seconds"):
        if key in out:
            print(f"{key}: {out[key]}")
    for name, o in out.get("observables", {}).items():
        z = out.get("z", {}).get(name)
        print(f"{name:>8s} {format_value(o['value'], o['error'] or float('nan')):>16s}"
              + ("" if z is None else f"   z = {z:+.2f}"))
    return 0


def _diffusion_train(args, theory, be, sde, dm, runs_dm, device) -> dict:
    for flag, v in (("--train-configs", args.train_configs), ("--epochs", args.epochs), ("--batch", args.batch)):
        if v < 1:
            raise ValueError(f"{flag} must be a positive integer, got {flag} {v}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be positive, got --lr {args.lr}")
    from .nn.unet import build_network
    build_network(args.network, args.L, sde.sigma)  # architecture errors (e.g. L) before the HMC run
    configs, info = runs_dm.hmc_configurations(theory, args.L, args.train_configs, spacing=args.spacing,
                                               backend=be, seed=args.seed)
    log = None if args.json else (lambda m: print(m, file=sys.stderr))
    net, curve = dm.train_network(args.network, args.L, be.to_numpy(configs), sde, epochs=args.epochs,
                                  batch=args.batch, lr=args.lr, seed=args.seed, flips=not args.no_flips,
                                  device=device, log=log)
    dm.save_score_model(args.net, net, {"L": args.L, "kappa": args.kappa, "lam": args.lam,
                                        "loss": curve["loss"], "data": info, "epochs": args.epochs})
    return {"loss": curve["loss"][-1], "loss_curve": curve["loss"], "data": info, "seconds": curve["seconds"],
            "parameters": curve["parameters"]}


def _diffusion_use(args, theory, be, sde, dm, runs_dm, model) -> dict:
    import time
    divergence = "exact" if args.exact_divergence else "hutchinson"
    probes = 4 if args.probes is None else args.probes
    em_draws = args.route == "paper" if args.job == "mc" else args.sampler == "em"
    ode_steps = args.steps if (args.steps and not em_draws) else 50
    em_steps = args.steps if (args.steps and em_draws) else 500
    ref = _diffusion_reference(args, theory)
    t0 = time.perf_counter()
    out: dict = {}
    if args.job == "mc":
        route = args.route
        prop = dm.DiffusionProposal(model, sde, route, steps=args.lik_steps if em_draws else ode_steps,
                                    em_steps=em_steps, probes=probes if route != "exact" else 1, probe=args.probe)
        if args.chains < 1 or args.sweeps < 1 or args.therm < 0:
            raise ValueError(f"--chains and --sweeps must be positive, --therm non-negative; got --chains "
                             f"{args.chains} --sweeps {args.sweeps} --therm {args.therm}")
        res = runs_dm.independence_chain(theory, prop, be.zeros((args.chains, args.L, args.L)), sweeps=args.sweeps,
                                         therm=args.therm, seed=args.seed, penalty=route == "penalty")
        obs = res.observables
        m_abs = obs["m_abs"]
        out.update(route=route, acceptance=res.acceptance.as_dict(),
                   tau_int={"m_abs": {"value": m_abs.tau_int, "error": m_abs.tau_int_error}},
                   nfe_per_config=prop.nfe / max(1, args.chains * (args.sweeps + args.therm)))
    else:
        host = dm.draw(model, sde, args.samples, args.L, sampler=args.sampler,
                       steps=em_steps if em_draws else ode_steps, seed=args.seed)
        configs = be.from_numpy(host)
        obs = runs_dm.analyse_configurations(theory, configs)
        out.update(sampler=args.sampler, steps=em_steps if em_draws else ode_steps)
        if args.job == "likelihood":
            lik = dm.likelihood_against_action(model, sde, host, be.to_numpy(theory.action(configs)),
                                               steps=args.lik_steps, divergence=divergence, probes=probes,
                                               probe=args.probe, seed=args.seed + 1)
            out.update(divergence=divergence, probes=probes if divergence == "hutchinson" else None,
                       r2=lik["r2"], nfe_per_config=lik["nfe"], log_q_probe_var=lik["log_q_probe_var"])
    out["observables"] = runs_dm.observables_json(obs)
    if ref:
        out["z"] = runs_dm.z_scores({k: obs[k] for k in runs_dm.REPORTED}, ref)
    out["seconds"] = time.perf_counter() - t0
    return out


def _report_warnings(caught) -> None:
    """Each distinct warning once, as one line on stderr (no library source lines)."""
    from .statistics import UnreliableErrorWarning
    unreliable = [w for w in caught if issubclass(w.category, UnreliableErrorWarning)]
    seen = set()
    for w in caught:
        if issubclass(w.category, UnreliableErrorWarning) or str(w.message) in seen:
            continue
        seen.add(str(w.message))
        sys.stderr.write(f"portable-lattice: warning: {w.message}\n")
    if unreliable:
        sys.stderr.write(f"portable-lattice: warning: {len(unreliable)} estimate(s) have no honest error "
                         f"(e.g. {unreliable[0].message}); run longer (--sweeps) or measure less often\n")


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            handler = {"pem": _main_pem, "mcrg": _main_mcrg, "simulate": _main_simulate, "run": _main_run,
                       "upscale": _main_upscale, "dcl": _main_dcl, "diffusion": _main_diffusion,
                       "resume": _main_resume, "analyse": _main_analyse, "export": _main_export,
                       "plot": _main_plot, "scan": _main_scan}[args.command]
            status = handler(ap, args)
            sys.stdout.flush()
        except BrokenPipeError:
            # the reader (e.g. `| head`) went away: nothing more to say, and no traceback
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
        except KeyboardInterrupt:
            # a second Ctrl-C (the first stops a run on disk at its next commit): stop now, no traceback
            sys.stderr.write(f"portable-lattice {args.command}: interrupted; a run on disk keeps its last commit "
                             f"(portable-lattice resume DIR continues it)\n")
            return 130
    _report_warnings(caught)
    return status


if __name__ == "__main__":
    sys.exit(main())
