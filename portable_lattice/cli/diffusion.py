"""``portable-lattice diffusion train | sample | likelihood | mc``: diffusion models of phi^4 ([DMSQ])."""
from __future__ import annotations

import argparse
import json
import sys
import time

from .. import __version__
from ..theories import Phi4
from ._common import _run_flags, exits_2, format_estimate, print_json


def add_parser(sub) -> None:
    common = _shared_flags()
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


def _shared_flags() -> argparse.ArgumentParser:
    """The parent parser of every job: physics, network, sampling and likelihood, run flags."""
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
    return common


def main(args, ap) -> int:
    with exits_2(f"portable-lattice diffusion {args.job}", ap):
        out = _run(args)
    if args.json:
        print_json(out)
        return 0
    for key in ("loss", "acceptance", "tau_int", "r2", "nfe_per_config", "seconds"):
        if key in out:
            print(f"{key}: {out[key]}")
    for name, o in out.get("observables", {}).items():
        z = out.get("z", {}).get(name)
        print(f"{name:>8s} {format_estimate(o):>16s}" + ("" if z is None else f"   z = {z:+.2f}"))
    return 0


def _run(args) -> dict:
    """Check the flags, then train, or load the model and use it: the job's JSON."""
    from ..backends import get_backend
    from ..backends.surrogate import torch_device
    from ..nn import diffusion as dm
    from ..runs import diffusion as runs_dm
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
    be = get_backend(args.backend, args.device)
    device = torch_device(be)
    sde = dm.VESDE()
    out = {"version": __version__, "job": args.job, "theory": theory.params(), "L": args.L,
           "network": args.network, "backend": str(be)}
    if args.job == "train":
        out.update(_train(args, theory, be, sde, dm, runs_dm, device))
    else:
        model, _ = dm.load_score_model(args.net, network=args.network,
                                       expect={"L": args.L, "kappa": args.kappa, "lam": args.lam})
        out.update(_use(args, theory, be, sde, dm, runs_dm, model.to(device)))
    return out


def _reference(args, theory) -> dict:
    """Observables to compare with: --reference, else the free field's exact values at lam = 0."""
    if args.reference:
        try:
            with open(args.reference) as f:
                return dict(json.load(f)["observables"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"--reference {args.reference!r} is not a JSON with 'observables': {e}") from e
    if args.lam == 0:
        from ..exact import free_field_exact
        return free_field_exact(args.L, theory.beta)
    return {}


def _train(args, theory, be, sde, dm, runs_dm, device) -> dict:
    from ..runs.storage import check_output
    check_output(args.net, "--net")  # where the trained model goes: checked before the training
    for flag, v in (("--train-configs", args.train_configs), ("--epochs", args.epochs), ("--batch", args.batch)):
        if v < 1:
            raise ValueError(f"{flag} must be a positive integer, got {flag} {v}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be positive, got --lr {args.lr}")
    from ..nn.unet import build_network
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


def _use(args, theory, be, sde, dm, runs_dm, model) -> dict:
    """sample, likelihood or mc with a trained model."""
    probes = 4 if args.probes is None else args.probes
    em_draws = args.route == "paper" if args.job == "mc" else args.sampler == "em"
    ode_steps = args.steps if (args.steps and not em_draws) else 50
    em_steps = args.steps if (args.steps and em_draws) else 500
    ref = _reference(args, theory)
    t0 = time.perf_counter()
    if args.job == "mc":
        obs, out = _chain(args, theory, be, sde, dm, runs_dm, model, probes=probes,
                          steps=args.lik_steps if em_draws else ode_steps, em_steps=em_steps)
    else:
        steps = em_steps if em_draws else ode_steps
        host = dm.draw(model, sde, args.samples, args.L, sampler=args.sampler, steps=steps, seed=args.seed)
        configs = be.from_numpy(host)
        obs = runs_dm.analyse_configurations(theory, configs)
        out = {"sampler": args.sampler, "steps": steps}
        if args.job == "likelihood":
            divergence = "exact" if args.exact_divergence else "hutchinson"
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


def _chain(args, theory, be, sde, dm, runs_dm, model, *, probes: int, steps: int, em_steps: int):
    """DM-MC: an independence Metropolis chain with the model as proposal; its observables and its JSON."""
    route = args.route
    prop = dm.DiffusionProposal(model, sde, route, steps=steps, em_steps=em_steps,
                                probes=probes if route != "exact" else 1, probe=args.probe)
    if args.chains < 1 or args.sweeps < 1 or args.therm < 0:
        raise ValueError(f"--chains and --sweeps must be positive, --therm non-negative; got --chains "
                         f"{args.chains} --sweeps {args.sweeps} --therm {args.therm}")
    res = runs_dm.independence_chain(theory, prop, be.zeros((args.chains, args.L, args.L)), sweeps=args.sweeps,
                                     therm=args.therm, seed=args.seed, penalty=route == "penalty")
    m_abs = res.observables["m_abs"]
    return res.observables, {"route": route, "acceptance": res.acceptance.as_dict(),
                             "tau_int": {"m_abs": {"value": m_abs.tau_int, "error": m_abs.tau_int_error}},
                             "nfe_per_config": prop.nfe / max(1, args.chains * (args.sweeps + args.therm))}
