"""Why the torch generic path trails or leads NumPy: one step of each generic kernel, both backends.

    python benchmarks/bench_torch_generic.py [--repeats 5] [--steps 20]

Rows: phi^4 checkerboard (L = 48, 64 chains, float64), Ising checkerboard (L = 128, 64
chains), HMC (L = 32, 256 chains, 10 leapfrog steps). Columns: milliseconds per step with
NumPy (one thread, as NumPy's elementwise operations are) and with torch on 1 and 2
intra-op threads; then torch on 2 threads while another process keeps one core busy (a
shared machine, or a second job), which is where torch's OpenMP threads lose most: a
parallel region waits for its slowest thread, and a thread that shares its core with
another process arrives late at every barrier. Ratios are torch time / NumPy time (below 1:
torch faster), medians of interleaved repeats; the Python calls per step (cProfile) stand
beside them, since per-operation overhead is the other difference.
"""
from __future__ import annotations

import argparse
import cProfile
import multiprocessing as mp
import pstats
import statistics
import time

import numpy as np


def _burn(stop):
    x = 0
    while not stop.is_set():
        for _ in range(100000):
            x += 1


def _cases():
    from portable_lattice import Ising, Phi4
    from portable_lattice.exact import K_CRITICAL
    from portable_lattice.samplers import HMC, CheckerboardMetropolis, GaussianShift, SpinFlip

    def phi4(be):
        th = Phi4.from_beta_g(0.5, 0.1)
        return CheckerboardMetropolis(th, GaussianShift(1.0)), \
            be.from_numpy(np.random.default_rng(0).standard_normal((64, 48, 48)), "float64")

    def ising(be):
        th = Ising(K_CRITICAL)
        return CheckerboardMetropolis(th, SpinFlip()), th.random(be.rng(0), (64, 128, 128), be.xp.float64)

    def hmc(be):
        th = Phi4.from_kappa_lambda(0.21, 0.022)
        return HMC(th, 1.0, 10), be.from_numpy(0.3 * np.random.default_rng(0).standard_normal((256, 32, 32)), "float64")
    return {"phi^4 checkerboard L=48": phi4, "Ising checkerboard L=128": ising, "HMC L=32 10 steps": hmc}


def _stepper(make, backend, steps):
    from portable_lattice.backends import get_backend
    be = get_backend(backend)
    kernel, x = make(be)
    box = {"state": kernel.init(x)}
    rng = be.rng(1)

    def run():
        t = time.perf_counter()
        for _ in range(steps):
            box["state"], _ = kernel.step(box["state"], rng)
        return (time.perf_counter() - t) / steps
    run()  # warm up
    return run


def _calls(run, steps):
    pr = cProfile.Profile()
    pr.enable()
    run()
    pr.disable()
    return sum(v[1] for v in pstats.Stats(pr).stats.values()) / steps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)
    for name, value in (("repeats", args.repeats), ("steps", args.steps)):
        if value < 1:
            raise SystemExit(f"--{name} must be at least 1, got {value}")
    import torch
    print(f"torch {torch.__version__}; {args.repeats} interleaved repeats of {args.steps} steps; ms per step\n")
    print(f"{'case':26s} {'numpy':>8s} {'torch 1t':>9s} {'torch 2t':>9s} {'2t, busy core':>14s} "
          f"{'1t/np':>6s} {'2t/np':>6s} {'busy/np':>8s} {'calls np':>9s} {'calls torch':>12s}")
    for name, make in _cases().items():
        np_run = _stepper(make, "numpy", args.steps)
        t_run = _stepper(make, "torch", args.steps)
        times = {"np": [], "1t": [], "2t": [], "busy": []}
        for _ in range(args.repeats):
            times["np"].append(np_run())
            torch.set_num_threads(1)
            times["1t"].append(t_run())
            torch.set_num_threads(2)
            times["2t"].append(t_run())
            stop = mp.Event()
            burner = mp.Process(target=_burn, args=(stop,))
            burner.start()
            time.sleep(0.2)
            times["busy"].append(t_run())
            stop.set()
            burner.join()
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        print(f"{name:26s} {med['np']:8.2f} {med['1t']:9.2f} {med['2t']:9.2f} {med['busy']:14.2f} "
              f"{med['1t'] / med['np']:6.2f} {med['2t'] / med['np']:6.2f} {med['busy'] / med['np']:8.2f} "
              f"{_calls(np_run, args.steps):9.0f} {_calls(t_run, args.steps):12.0f}", flush=True)


if __name__ == "__main__":
    main()
