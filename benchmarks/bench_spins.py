"""Throughput of the spin-model samplers per backend, against hand-written NumPy.

    python benchmarks/bench_spins.py [--backends numpy,torch] [--threads 2] [--repeats 5] [--malloc tuned|default]

2D Ising at K_c, L = 128, 64 chains: checkerboard Metropolis in spin flips
(attempted single-spin updates) per ns, and Swendsen-Wang in site updates per
second, each beside a plain hand-written NumPy version measured in the same run
(interleaved timings, median ratio; glibc malloc pinned as in bench_spine.py).
"""
from __future__ import annotations

import argparse

import numpy as np

from bench_spine import interleaved, pin_allocator, stepper  # beside this script: on sys.path when it is run
from portable_lattice import Ising
from portable_lattice.backends import available_backends, get_backend
from portable_lattice.exact import K_CRITICAL
from portable_lattice.samplers import CheckerboardMetropolis, SpinFlip, SwendsenWang

L, CHAINS, CB_SWEEPS, SW_SWEEPS = 128, 64, 10, 5


def hand_checkerboard(s, beta, sweeps, rng):
    x, y = np.indices((L, L))
    masks = [(x + y) % 2 == 0, (x + y) % 2 == 1]
    for _ in range(sweeps):
        for mask in masks:
            nsum = np.roll(s, 1, 1) + np.roll(s, -1, 1) + np.roll(s, 1, 2) + np.roll(s, -1, 2)
            dE = 2.0 * s * nsum
            acc = mask & (rng.random(s.shape) < np.exp(-beta * dE))
            s = np.where(acc, -s, s)
    return s


def hand_swendsen_wang(s, beta, sweeps, rng):
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    p = 1 - np.exp(-2 * beta)
    n = s.size
    idx = np.arange(n).reshape(s.shape)
    for _ in range(sweeps):
        rows, cols = [], []
        for ax in (1, 2):
            nb = np.roll(idx, -1, axis=ax)
            b = (s == np.roll(s, -1, axis=ax)) & (rng.random(s.shape) < p)
            rows.append(idx[b])
            cols.append(nb[b])
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        g = sp.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
        ncomp, comp = connected_components(g, directed=False)
        flip = rng.random(ncomp) < 0.5
        s = np.where(flip[comp].reshape(s.shape), -s, s)
    return s


def library(kernel, be, sweeps):
    rng = be.rng(1)
    return stepper(kernel, kernel.theory.random(rng, (CHAINS, L, L), be.xp.float64), rng, sweeps, be)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--malloc", choices=["tuned", "default"], default="tuned")
    args = ap.parse_args(argv)
    allocator = pin_allocator(args.malloc)
    backends = ([tuple(b.partition(":")[::2]) for b in args.backends.split(",")] if args.backends
                else [b for b in available_backends() if b[0] != "array_api_strict"])
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    s0 = np.random.default_rng(0).choice(np.array([-1, 1], np.int8), size=(CHAINS, L, L))
    hand_cb = lambda: hand_checkerboard(s0, K_CRITICAL, CB_SWEEPS, np.random.default_rng(1))  # noqa: E731
    hand_sw = lambda: hand_swendsen_wang(s0, K_CRITICAL, SW_SWEEPS, np.random.default_rng(2))  # noqa: E731
    units_cb, units_sw = CHAINS * L * L * CB_SWEEPS, CHAINS * L * L * SW_SWEEPS
    print(f"2D Ising at K_c, L={L}, {CHAINS} chains; {args.repeats} interleaved repeats, median ratio "
          f"(min-max) hand-written NumPy time / backend time; torch threads {args.threads}; malloc {allocator}\n")
    print(f"{'backend':10s} {'hand flips/ns':>14s} {'flips/ns':>9s} {'checkerboard ratio':>20s}   "
          f"{'hand SW upd/s':>14s} {'SW upd/s':>10s} {'SW ratio':>20s}")
    med = lambda r: r[len(r) // 2]  # noqa: E731
    for name, device in backends:
        be = get_backend(name, device or None)
        label = name if device in (None, "", "cpu") else f"{name}:{device}"
        ising = Ising(beta=K_CRITICAL)
        hb, lb, rc = interleaved(hand_cb, library(CheckerboardMetropolis(ising, SpinFlip()), be, CB_SWEEPS),
                                 args.repeats)
        hs, ls, rs = interleaved(hand_sw, library(SwendsenWang(ising), be, SW_SWEEPS), args.repeats)
        print(f"{label:10s} {units_cb / hb * 1e-9:14.3f} {units_cb / lb * 1e-9:9.3f} "
              f"{med(rc):8.2f} ({rc[0]:.2f}-{rc[-1]:.2f})   {units_sw / hs:14.3e} {units_sw / ls:10.3e} "
              f"{med(rs):8.2f} ({rs[0]:.2f}-{rs[-1]:.2f})", flush=True)


if __name__ == "__main__":
    main()
