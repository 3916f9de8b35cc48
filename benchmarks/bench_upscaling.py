"""Generation speed of the inverse-RG upscaler (Eq. 9 of [IRG]) per backend, against plain torch.

    python benchmarks/bench_upscaling.py [--backends numpy,torch] [--repeats 5] [--threads 2]

One upscaling level at the last step of a generation: 256 configurations from L = 64 to
L = 128, for k = 3 and k = 7. The baseline is a plain torch-CPU implementation of the same
model (nearest upsampling, circular padding, conv2d, sigmoid, Bernoulli draw) in float32,
timed in the same run, interleaved with the library. The library runs in float64 (its
default) and float32. Prints site samples per second and the ratio library / baseline
(median over the repeats; above 1 means the library is faster).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from portable_lattice.backends import get_backend
from portable_lattice.rg.upscaling import n_parameters, symmetric_kernel, upscale_once

B, L = 256, 64


def baseline(mu_t, kernel, k):
    x = F.interpolate(mu_t, scale_factor=2, mode="nearest")
    x = F.pad(x, (k // 2,) * 4, mode="circular")
    p = torch.sigmoid(2 * F.conv2d(x, kernel))
    return torch.where(torch.rand_like(p) < p, 1, -1).to(torch.int8)


def best(f, n=1):
    f()
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="numpy,torch")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sites = B * 4 * L * L
    print(f"one upscaling level, {B} configurations, L = {L} -> {2 * L}; baseline: plain torch CPU float32; "
          f"{args.repeats} interleaved repeats, median; torch threads {args.threads}\n")
    print(f"{'k':>3s} {'backend':10s} {'dtype':8s} {'samples/s':>11s} {'baseline/s':>11s} {'ratio':>6s}")
    for k in (3, 7):
        w = list(np.random.default_rng(k).normal(scale=0.1, size=n_parameters(k)))
        kernel = torch.tensor(symmetric_kernel(w, k), dtype=torch.float32)[None, None]
        spins = np.random.default_rng(1).choice(np.array([-1, 1], np.int8), size=(B, L, L))
        mu_t = torch.from_numpy(spins.astype(np.float32))[:, None]
        for name in args.backends.split(","):
            be = get_backend(name)
            mu, rng = be.from_numpy(spins), be.rng(0)
            for dtype in ("float64", "float32"):
                dt = be.dtype(dtype)
                ratios, ours, refs = [], [], []
                for _ in range(args.repeats):
                    tr = best(lambda: baseline(mu_t, kernel, k))
                    tl = best(lambda: upscale_once(mu, w, k, rng, dtype=dt))
                    ratios.append(tr / tl)
                    ours.append(sites / tl)
                    refs.append(sites / tr)
                print(f"{k:3d} {name:10s} {dtype:8s} {statistics.median(ours):11.3g} {statistics.median(refs):11.3g} "
                      f"{statistics.median(ratios):6.2f}")


if __name__ == "__main__":
    main()
