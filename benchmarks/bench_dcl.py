"""Distribution-consistent learning: the cost of the autoregressive models and of the learned-energy Metropolis.

    python benchmarks/bench_dcl.py [--L 16] [--batch 1000] [--threads N] [--mc-L 24]

Table 1: log P evaluations per second and exact samples per second at L x L, float32, for the
GRU (the paper's architecture, at the paper's hidden size 378 and at 64) and the masked-convolution
model (the study's: 16 channels, 3 layers, 5 x 5 kernels; and a 32-channel one), batch of --batch.
Ratios against the baseline measured in the same run: the paper's GRU (hidden 378).

Table 2: Metropolis sweeps per second with the EDNN energy (the paper's f = 2, c = 1, 16-32-64-1
network) at --mc-L, for 1 chain (the paper's runs) and 16: the paper's sequential random-site
updates (one site per chain at a time, from the 4 tiles that see it) against the parallel stride-4
sublattices; ratio against sequential. Both modes evaluate the same number of tiles per sweep;
the parallel one makes 32 network calls per sweep instead of V.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from portable_lattice.nn.autoregressive import GRUModel, MaskedConvModel
from portable_lattice.nn.ednn import EDNN, EDNNEnergy
from portable_lattice.backends import get_backend
from portable_lattice.samplers import learned_energy_metropolis
from portable_lattice.theories import Ising, LearnedEnergy


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--L", type=int, default=16)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mc-L", type=int, default=24)
    ap.add_argument("--mc-sweeps", type=int, default=2)
    ap.add_argument("--mc-chains", default="1,16", help="chain counts for Table 2 (the paper ran single chains)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    L, B = args.L, args.batch
    torch.manual_seed(0)
    models = [("GRU hidden 378 (paper)", GRUModel(L, hidden=378)), ("GRU hidden 64", GRUModel(L, hidden=64)),
              ("masked conv 16 ch (study)", MaskedConvModel(L, channels=16, layers=3, half=2)),
              ("masked conv 32 ch", MaskedConvModel(L, channels=32, layers=3, half=3))]
    x = torch.where(torch.rand(B, L, L) < 0.5, -1, 1).to(torch.int8)
    rows = []
    for name, m in models:
        m.eval()
        with torch.no_grad():
            m.log_prob(x[:8])
            t_lp = best(lambda: m.log_prob(x), args.repeats)
        n_s = max(B // 10, 10)
        t_s = best(lambda: m.sample(n_s, torch.Generator().manual_seed(1)), 1)
        rows.append((name, m.n_parameters(), B / t_lp, n_s / t_s))
    base_lp, base_s = rows[0][2], rows[0][3]
    print(f"autoregressive models at L = {L}, float32, {torch.get_num_threads()} torch threads "
          f"(log P batch {B}, sampling batch {max(B // 10, 10)})")
    print(f"{'model':28s} {'params':>8s} {'log P /s':>10s} {'ratio':>7s} {'samples /s':>11s} {'ratio':>7s}")
    for name, npar, lp, s in rows:
        print(f"{name:28s} {npar:8d} {lp:10.1f} {lp / base_lp:7.2f} {s:11.1f} {s / base_s:7.2f}")
    print("ratio: against the paper's GRU (hidden 378), measured in this run\n")

    Lm = args.mc_L
    net = EDNN(2)
    th = LearnedEnergy(0.4407, EDNNEnergy(net), Ising(beta=1.0))
    be = get_backend("numpy")
    print(f"Metropolis with the EDNN energy (f = 2, c = 1, 2721 parameters), L = {Lm}")
    print(f"{'chains':>6s} {'mode':12s} {'sweeps /s':>10s} {'ratio':>7s}")
    for chains in (int(c) for c in args.mc_chains.split(",")):
        out = {}
        for mode in ("sequential", "parallel"):
            k = learned_energy_metropolis(th, mode)
            rng = be.rng(0)
            state = k.init(th.random(rng, (chains, Lm, Lm), np.float64))
            state, _ = k.step(state, rng)

            def sweeps():
                nonlocal state
                for _ in range(args.mc_sweeps):
                    state, _ = k.step(state, rng)
            out[mode] = args.mc_sweeps / best(sweeps, args.repeats)
        for mode, v in out.items():
            print(f"{chains:6d} {mode:12s} {v:10.3f} {v / out['sequential']:7.1f}")
    print("ratio: against sequential (random-site, 4 tiles per update) at the same chain count, measured in this run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
