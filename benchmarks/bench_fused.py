"""Fused CPU kernels (Numba) against the hand-written NumPy versions and the generic paths.

    python benchmarks/bench_fused.py [--threads 2] [--repeats 5] [--backend numpy|torch] [--quick]

One table, every row measured in the same run (interleaved timings, median ratio; glibc
malloc pinned as in bench_spine.py):

* phi^4 checkerboard Metropolis, beta = 0.5, g = 0.1, float64, 64 chains, L = 48 and 256;
* Ising checkerboard Metropolis at K_c, L = 128, 64 chains (int8 spins);
* HMC, kappa = 0.21, lambda = 0.022, L = 32, 256 chains, 10 leapfrog steps, float64.

Columns: the hand-written NumPy version (bench_spine.py / bench_spins.py: what a physicist
writes without the library), the library's generic path on the backend, and the fused
kernel with the backend's native stream and with the Philox stream (numbers drawn in
registers); ratios are hand-written time / fused time. "simulate" is the speed as the user
sees it: ``simulate(..., fused=True, stream="philox")`` end to end with a measurement after
every sweep (preparation, the loop, the measurements and their analysis), and "e2e/kernel"
its rate over the kernel-only Philox rate (interleaved in the same run). The achieved bandwidth of the fused
native kernels counts the bytes a sweep must move at least (the field read and written once
per parity it updates, the drawn numbers read once) and stands beside a measured copy
bandwidth (numpy.copyto of a 256 MiB array, best of 5).
"""
from __future__ import annotations

import argparse
import os
import warnings

import numpy as np

from bench_spine import interleaved, numpy_checkerboard, numpy_hmc, pin_allocator, stepper, timed  # beside this script
from bench_spins import hand_checkerboard

from portable_lattice import Ising, Phi4, simulate
from portable_lattice.backends import get_backend
from portable_lattice.exact import K_CRITICAL
from portable_lattice.philox import PhiloxGenerator
from portable_lattice.samplers import HMC, CheckerboardMetropolis, GaussianShift, SpinFlip


def copy_bandwidth() -> float:
    """Bytes per second of numpy.copyto on 256 MiB (read + write counted), best of 5."""
    a = np.ones(32 << 20)
    b = np.empty_like(a)
    best = min(timed(lambda: np.copyto(b, a)) for _ in range(5))
    return 2 * a.nbytes / best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="numba and torch threads (default 2)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backend", default="numpy", choices=["numpy", "torch"])
    ap.add_argument("--malloc", default="tuned", choices=["tuned", "default"])
    ap.add_argument("--quick", action="store_true", help="fewer sweeps (a smoke run, not for quoting)")
    args = ap.parse_args(argv)
    if args.threads < 1:
        raise SystemExit(f"--threads must be at least 1, got {args.threads}")
    import numba
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    if args.backend == "torch":
        import torch
        torch.set_num_threads(args.threads)
    allocator = pin_allocator(args.malloc)
    be = get_backend(args.backend)
    xp = be.xp
    scale = 0.25 if args.quick else 1.0
    bw = copy_bandwidth()
    print(f"backend {args.backend}; numba threads {numba.get_num_threads()}; {args.repeats} interleaved repeats; "
          f"malloc {allocator}; copy bandwidth {bw / 1e9:.1f} GB/s\n")
    print(f"{'case':32s} {'hand':>10s} {'generic':>10s} {'fused':>10s} {'fused philox':>13s} {'simulate':>10s} "
          f"{'unit':>12s} {'fused/hand':>18s} {'fused/generic':>14s} {'philox/hand':>12s} {'e2e/kernel':>11s} "
          f"{'GB/s (of copy)':>16s}")

    def row(name, hand, make, work, unit, nbytes, end_to_end):
        # make(fused, stream) -> timed closure; work = units of work per call; end_to_end = (simulate closure,
        # its steps / the kernel closure's steps: the user's run is longer, so its fixed costs are amortised
        # as in a real run)
        end_to_end, more = end_to_end
        gen = make(False, "native")
        fus = make(True, "native")
        phx = make(True, "philox")
        th, tf, rf = interleaved(hand, fus, args.repeats)
        _, tg, rg = interleaved(gen, fus, args.repeats)
        _, tp, rp = interleaved(hand, phx, args.repeats)
        _, te, re_ = interleaved(phx, end_to_end, args.repeats)
        te, re_ = te / more, [r * more for r in re_]  # per kernel call's work: rate ratios simulate / kernel
        med = lambda r: f"{r[len(r) // 2]:.1f} ({r[0]:.1f}-{r[-1]:.1f})"  # noqa: E731
        print(f"{name:32s} {work / th:10.3g} {work / tg:10.3g} {work / tf:10.3g} {work / tp:13.3g} {work / te:10.3g} "
              f"{unit:>12s} {med(rf):>18s} {rg[len(rg) // 2]:14.1f} {rp[len(rp) // 2]:12.1f} "
              f"{re_[len(re_) // 2]:11.2f} {nbytes / tf / 1e9:9.1f} ({nbytes / tf / bw:.0%})", flush=True)

    def user_run(theory, algorithm, L, chains, n, more, **knobs):
        """``simulate`` end to end as a user calls it: fused, Philox, a measurement every step, ``more``
        times the kernel row's steps."""
        n = n * more

        def go():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # short runs: the analysis warns about its error bars
                simulate(theory, algorithm=algorithm, L=L, chains=chains, therm=0, sweeps=n, every=1,
                         backend=args.backend, fused=True, stream="philox", seed=3, progress=False, **knobs)
        return go, more

    # phi^4 checkerboard
    for L in (48, 256):
        chains, sweeps = 64, max(1, int((20 if L == 48 else 2) * scale))
        theory = Phi4.from_beta_g(0.5, 0.1)
        phi0 = np.random.default_rng(0).standard_normal((chains, L, L))
        x0 = be.from_numpy(phi0, "float64")

        def make(fused, stream, x0=x0, sweeps=sweeps, theory=theory):
            rng = be.rng(1) if stream == "native" else PhiloxGenerator(xp, 1, be.device)
            return stepper(CheckerboardMetropolis(theory, GaussianShift(1.0), fused=fused), x0, rng, sweeps, be)
        hand = lambda phi0=phi0, sweeps=sweeps: numpy_checkerboard(phi0, 0.5, 0.1, 1.0, sweeps,  # noqa: E731
                                                                   np.random.default_rng(2))
        V = chains * L * L
        # per sweep: the field read and written (8 + 8 B per site), a normal and a uniform per site
        row(f"phi^4 checkerboard L={L} f64", hand, make, V * sweeps, "site upd/s", V * sweeps * (16 + 16),
            user_run(theory, "checkerboard", L, chains, sweeps, 50 if L == 48 else 10, step=1.0))

    # Ising checkerboard
    L, chains, sweeps = 128, 64, max(1, int(10 * scale))
    ising = Ising(K_CRITICAL)
    s0 = ising.random(be.rng(0), (chains, L, L), xp.float64)
    s0_host = be.to_numpy(s0)

    def make_ising(fused, stream):
        rng = be.rng(1) if stream == "native" else PhiloxGenerator(xp, 1, be.device)
        return stepper(CheckerboardMetropolis(ising, SpinFlip(), fused=fused), s0, rng, sweeps, be)
    V = chains * L * L
    row(f"Ising checkerboard L={L} int8", lambda: hand_checkerboard(s0_host, K_CRITICAL, sweeps, np.random.default_rng(1)),
        make_ising, V * sweeps, "flips/s", V * sweeps * (1 + 1 + 4), user_run(ising, "checkerboard", L, chains, sweeps, 20))

    # HMC
    L, chains, n_steps, trajs = 32, 256, 10, max(1, int(5 * scale))
    theory = Phi4.from_kappa_lambda(0.21, 0.022)
    phi0 = 0.3 * np.random.default_rng(0).standard_normal((chains, L, L))
    x0 = be.from_numpy(phi0, "float64")

    def make_hmc(fused, stream):
        rng = be.rng(2) if stream == "native" else PhiloxGenerator(xp, 2, be.device)
        return stepper(HMC(theory, 1.0, n_steps, fused=fused), x0, rng, trajs, be)
    V = chains * L * L
    row(f"HMC L={L} {n_steps} steps f64", lambda: numpy_hmc(phi0, 0.21, 0.022, n_steps, 1.0, trajs,
                                                             np.random.default_rng(2)),
        make_hmc, V * trajs * n_steps, "site steps/s", V * trajs * (n_steps + 2) * 32,
        user_run(theory, "hmc", L, chains, trajs, 20, n_steps=n_steps, traj_length=1.0))


if __name__ == "__main__":
    os.environ.setdefault("NUMBA_NUM_THREADS", "2")
    main()
