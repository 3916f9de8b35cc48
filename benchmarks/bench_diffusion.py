"""Sampling and likelihood speed of the diffusion models ([DMSQ]) per network, against the paper's network.

    python benchmarks/bench_diffusion.py [--L 8] [--batch 256] [--repeats 3] [--threads 1] [--device cpu]

For each score network (the paper's 1.1 M-parameter U-Net as published, the lattice-native
network) on a batch of L x L configurations, timed in the same run:

* EM samples/s: 500 Euler-Maruyama steps per sample (the paper's setting; the paper reports
  97.5 configurations/s for its network at L = 32 on an RTX 3090);
* ODE samples/s: 50 RK4 steps (200 evaluations) without the log-density;
* log q/s: 50 RK4 steps with the divergence from 4 Rademacher probes, and with the exact
  divergence (V directions; skipped where one configuration needs more than 2 GiB).

Each rate is measured on a few steps and scaled to the full count (the per-step cost does not
depend on t). Printed: median over the repeats +- half their range, and the ratio to the paper
network (above 1: faster).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from portable_lattice.nn.diffusion import VESDE, _drift_and_div, exact_divergence_bytes
from portable_lattice.nn.unet import build_network

SDE = VESDE()


def per_eval(fn, repeats):
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def rates(net, L, batch, repeats, device):
    x = torch.randn(batch, L, L, device=device)
    t = torch.full((batch,), 0.5, device=device)
    n_fwd = 5

    def fwd():
        with torch.no_grad():
            for _ in range(n_fwd):
                net(x, t)
        if device.type == "cuda":
            torch.cuda.synchronize()
    fwd_times = [s / n_fwd for s in per_eval(fwd, repeats)]
    probes = torch.sign(torch.randn(4, batch, L, L, device=device))

    def hutch():
        _drift_and_div(net, SDE, x, 0.5, "hutchinson", probes, 2 ** 31)
        if device.type == "cuda":
            torch.cuda.synchronize()
    hutch_times = per_eval(hutch, repeats)
    out = {"EM samples/s": [batch / (500 * s) for s in fwd_times],
           "ODE samples/s": [batch / (200 * s) for s in fwd_times],
           "log q/s (4 probes)": [batch / (200 * s) for s in hutch_times]}
    if exact_divergence_bytes(net, 1, L * L) <= 2 ** 31:
        nb = max(1, min(batch, 2 ** 31 // exact_divergence_bytes(net, 1, L * L)))
        xe = x[:nb]

        def exact():
            _drift_and_div(net, SDE, xe, 0.5, "exact", None, 2 ** 31)
            if device.type == "cuda":
                torch.cuda.synchronize()
        out["log q/s (exact)"] = [nb / (200 * s) for s in per_eval(exact, max(1, repeats - 1))]
    return out


def fmt(values):
    med = statistics.median(values)
    half = (max(values) - min(values)) / 2
    return f"{med:9.3g} +- {half:.2g}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--L", type=int, default=8)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    nets = {"paper": build_network("paper", args.L).to(device).eval(),
            "lattice": build_network("lattice", args.L).to(device).eval()}
    results = {name: rates(net, args.L, args.batch, args.repeats, device) for name, net in nets.items()}
    print(f"diffusion models, L = {args.L}, batch {args.batch}, {device}, torch threads {args.threads}; "
          f"median of {args.repeats} repeats +- half range; baseline: the paper network\n")
    print(f"{'network':8s} {'params':>9s} {'measure':20s} {'rate':>18s} {'ratio':>7s}")
    for name, net in nets.items():
        params = sum(p.numel() for p in net.parameters())
        for measure, values in results[name].items():
            base = results["paper"].get(measure)
            ratio = statistics.median(values) / statistics.median(base) if base else float("nan")
            print(f"{name:8s} {params:9d} {measure:20s} {fmt(values):>18s} {ratio:7.2f}")
    print("\nthe paper: 97.5 EM samples/s (L = 32, its network, RTX 3090)")


if __name__ == "__main__":
    main()
