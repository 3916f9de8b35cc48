"""Surrogate samplers: parallel sublattice mode vs the paper's sequential mode, and ensemble evaluation.

    python benchmarks/bench_surrogates.py [--L 48] [--members 10] [--channels 16] [--chains 4] [--threads 2]
                                          [--backend numpy|torch|torch:cuda|cupy]

Prints network calls per sweep and site updates per second of PEM with a
ResidualCNN ensemble (receptive field 3, stride-4 sublattices) in both modes
(sequential timed over a partial sweep), and the time of one ensemble
evaluation: a loop over the torch modules (baseline), a loop over their
inference forms (folded BatchNorm, one circular pad) and one fused pass
(grouped convolutions), at several input sizes. ``--backend`` picks the
fields' backend and device; the networks live on the matching torch device
(CUDA timings synchronise the device before reading the clock).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from portable_lattice import Phi4
from portable_lattice.backends import get_backend
from portable_lattice.backends.surrogate import TorchEnsemble, torch_device
from portable_lattice.nn import ResidualCNN
from portable_lattice.samplers import surrogate_metropolis


class Counting:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0
        self.n_members, self.receptive_field = inner.n_members, inner.receptive_field

    def __call__(self, phi):
        self.calls += 1
        return self.inner(phi)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--L", type=int, default=48)
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seq-updates", type=int, default=24, help="single-site updates timed in sequential mode")
    ap.add_argument("--backend", default="numpy", help="fields' backend[:device], e.g. numpy, torch:cuda, cupy")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    name, _, device = args.backend.partition(":")
    be = get_backend(name, device or None)
    dev = torch_device(be)
    models = [ResidualCNN(args.channels).eval().to(dev) for _ in range(args.members)]
    action = Phi4.from_beta_g(0.5, 0.1)
    L, V, chains = args.L, args.L ** 2, args.chains
    phi = be.rng(0).normal((chains, L, L), be.dtype("float64"))

    rows = []
    for mode in ("parallel", "sequential"):
        prov = Counting(TorchEnsemble(models))
        kernel = surrogate_metropolis(action, prov, 1.0, mode, penalty=True,
                                      updates=args.seq_updates if mode == "sequential" else None)
        state = kernel.init(phi)
        rng = be.rng(1)
        kernel.step(state, rng)  # warm-up
        be.to_numpy(state.phi[0, 0, :1])
        prov.calls = 0
        t = time.perf_counter()
        state, _ = kernel.step(state, rng)
        be.to_numpy(state.phi[0, 0, :1])  # synchronise (GPU)
        dt = time.perf_counter() - t
        updates = V if mode == "parallel" else args.seq_updates
        calls_per_sweep = prov.calls if mode == "parallel" else prov.calls * V / args.seq_updates
        rows.append((mode, calls_per_sweep, chains * updates / dt))
    print(f"PEM, ResidualCNN({args.channels}) ensemble of {args.members}, receptive field {models[0].receptive_field}, "
          f"L={L}, {chains} chains, fields on {be}, networks on {dev}, torch threads {args.threads}\n")
    print(f"{'mode':12s} {'network calls/sweep':>20s} {'site updates/s':>16s}")
    for mode, calls, rate in rows:
        print(f"{mode:12s} {calls:20.0f} {rate:16.4g}")
    print(f"\nparallel / sequential: {rows[1][1] / rows[0][1]:.0f}x fewer network calls, "
          f"{rows[0][2] / rows[1][2]:.0f}x more site updates per second")

    ensemble_table(models, args.repeats, dev)


def ensemble_table(models, repeats, dev):
    """One ensemble evaluation: a plain loop over the torch modules (the baseline), the loop over
    their inference forms, and the fused one pass; interleaved repeats, median times."""
    n = len(models)
    plain = TorchEnsemble(models, vectorised=False)
    plain._loop = models  # the baseline: the modules as trained, called one after another
    variants = {"loop (modules)": plain, "loop (inference form)": TorchEnsemble(models, vectorised=False),
                "one pass (fused)": TorchEnsemble(models, vectorised=True)}
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sizes = ((1, 8), (1, 48), (4, 48), (64, 48)) + (((256, 48), (64, 128)) if dev.type == "cuda" else ())
    print(f"\nensemble of {n} members on {dev}, median of {repeats} interleaved repeats (ms); "
          "ratio = baseline / variant")
    print(f"{'input':>14s} " + " ".join(f"{k:>22s}" for k in variants) + f" {'one pass ratio':>15s} {'inf. loop ratio':>16s}")
    for chains, L in sizes:
        x = torch.from_numpy(np.random.default_rng(0).normal(size=(chains, L, L))).to(dev)
        times = {k: [] for k in variants}
        for e in variants.values():
            e.members(x)
        sync()
        for _ in range(repeats):
            for k, e in variants.items():
                t = time.perf_counter()
                e.members(x)
                sync()
                times[k].append(time.perf_counter() - t)
        med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
        base = med["loop (modules)"]
        print(f"{chains:>5d} x {L:>2d}^2  " + " ".join(f"{v:22.3f}" for v in med.values())
              + f" {base / med['one pass (fused)']:15.2f} {base / med['loop (inference form)']:16.2f}")

if __name__ == "__main__":
    main()
