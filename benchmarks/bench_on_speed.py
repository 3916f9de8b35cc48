"""O(n) checkerboard Metropolis: the library's generic kernel against a hand-written NumPy sweep.

    python benchmarks/bench_on_speed.py [--L 64] [--chains 16] [--n 2] [--sweeps 20] [--repeats 5] [--no-fused]

The hand-written version is what a physicist writes in NumPy for the same update (the
library's proposal s' = (s + step g) / |s + step g| and Metropolis test, both parities
through masks over the whole lattice, neighbour sums by np.roll): the baseline. The
library's `VectorCheckerboard` runs on the numpy backend (and on torch CPU tensors), timed
interleaved with the baseline in the same run; ratios are baseline time / library time
(above 1: the library is faster), medians of the interleaved pairs.

The last table answers the fused-kernel question with a measurement: a fused kernel twin of
the generic sweep under a native stream must read the generic path's own draws (that is what
makes it bit-identical), so it can remove the arithmetic and the layout changes but not the
drawing. The table times the sweep's draws alone (the same calls, shapes and generator as
the library's sweep) against the whole sweep: library time / draws time is the most any
such kernel could gain (Amdahl's bound).
"""
from __future__ import annotations

import argparse

import numpy as np

from bench_spine import interleaved  # beside this script

from portable_lattice.backends import get_backend
from portable_lattice.samplers.base import log_uniform
from portable_lattice.samplers import VectorCheckerboard
from portable_lattice.theories import ON


def hand_sweeps(s, beta, step, sweeps, rng):
    """The same update written by hand: s (chains, n, L, L), unit vectors, J = 1, h = 0."""
    chains, n, L, _ = s.shape
    x, y = np.indices((L, L))
    even = ((x + y) % 2 == 0)[None, None]
    for _ in range(sweeps):
        for mask in (even, ~even):
            f = (np.roll(s, 1, 2) + np.roll(s, -1, 2) + np.roll(s, 1, 3) + np.roll(s, -1, 3))
            t = s + step * rng.standard_normal(s.shape)
            t /= np.sqrt(np.sum(t * t, axis=1, keepdims=True))
            dlogw = beta * np.sum((t - s) * f, axis=1, keepdims=True)
            acc = mask & (np.log(rng.random((chains, 1, L, L))) < dlogw)
            s = np.where(acc, t, s)
    return s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--L", type=int, default=64)
    ap.add_argument("--chains", type=int, default=16)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--sweeps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--fused", action=argparse.BooleanOptionalAction, default=True,
                    help="also time fused=True on numpy (needs numba: the 'fast' extra)")
    args = ap.parse_args(argv)
    for name in ("L", "chains", "sweeps", "repeats"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.L % 2:
        raise SystemExit(f"--L must be even (a checkerboard), got {args.L}")
    theory = ON(args.beta, n=args.n)
    s0 = np.random.default_rng(0).standard_normal((args.chains, args.n, args.L, args.L))
    s0 /= np.linalg.norm(s0, axis=1, keepdims=True)
    hand = lambda: hand_sweeps(s0, args.beta, 1.0, args.sweeps, np.random.default_rng(2))  # noqa: E731
    V = args.chains * args.L ** 2 * args.sweeps
    print(f"O({args.n}) checkerboard Metropolis, beta={args.beta}, L={args.L}, {args.chains} chains, {args.sweeps} "
          f"sweeps; {args.repeats} interleaved repeats\n")
    print(f"{'backend':12s} {'hand (site upd/s)':>16s} {'library (site upd/s)':>21s} {'library/hand':>20s}")
    bounds = []
    rows = [("numpy", False), ("torch", False)] + ([("numpy", True)] if args.fused else [])
    for name, fused in rows:
        be = get_backend(name)
        kernel = VectorCheckerboard(theory, "metropolis", step_size=1.0, fused=fused)
        x0 = be.from_numpy(s0, "float64")
        rng = be.rng(1)

        def lib(kernel=kernel, x0=x0, rng=rng, be=be):
            st = kernel.init(x0)
            for _ in range(args.sweeps):
                st, _ = kernel.step(st, rng)
            be.to_numpy(st.phi[0, 0, :1, :1])
        th, tl, r = interleaved(hand, lib, args.repeats)
        label = name + (" fused" if fused else "")
        print(f"{label:12s} {V / th:16.3g} {V / tl:21.3g} {r[len(r) // 2]:10.2f} ({r[0]:.2f}-{r[-1]:.2f})", flush=True)
        bounds.append((label, lib, draws_only(be, args)))
    print("\nthe fused-kernel bound: the sweep's draws alone against the whole library sweep")
    print(f"{'backend':12s} {'draws (site upd/s)':>17s} {'library (site upd/s)':>21s} {'draws share':>12s} "
          f"{'fused bound':>12s}")
    for name, lib, draws in bounds:
        td, tl, r = interleaved(draws, lib, args.repeats)
        share = r[len(r) // 2]  # draws time / library time, median of the pairs
        print(f"{name:12s} {V / td:17.3g} {V / tl:21.3g} {share:12.2f} {1.0 / share:11.2f}x", flush=True)


def draws_only(be, args):
    """The random numbers of ``args.sweeps`` library sweeps, drawn as the sweep draws them: per
    parity n normals and one uniform (as its log) per site of the parity, (chains, n, blocks, L/2, L/2)."""
    rng = be.rng(1)
    half = (args.L // 2,) * 2
    dtype = be.xp.float64

    def go():
        for _ in range(args.sweeps):
            for _p in (0, 1):
                rng.normal((args.chains, args.n, 2) + half, dtype)
                u = log_uniform(rng, (args.chains, 1, 2) + half, dtype)
        be.to_numpy(u[0, 0, 0, :1, :1])
    return go


if __name__ == "__main__":
    main()
