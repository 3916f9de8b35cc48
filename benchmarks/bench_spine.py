"""Throughput of the spine's samplers per backend, against hand-written NumPy.

    python benchmarks/bench_spine.py [--backends numpy,torch] [--threads 2] [--repeats 3]

Prints one table: checkerboard Metropolis site-updates/s (phi^4, beta = 0.5,
g = 0.1, L = 48, 64 chains, float64) and HMC chain-trajectories/s
(kappa = 0.21, lambda = 0.022, L = 32, 256 chains, 10 leapfrog steps), each
beside a plain hand-written NumPy version of the same algorithm measured in
the same run, as a ratio. Best of ``--repeats`` timings.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from portable_lattice import Phi4
from portable_lattice.backends import available_backends, get_backend
from portable_lattice.samplers import HMC, CheckerboardMetropolis, GaussianShift

CB = dict(beta=0.5, g=0.1, L=48, chains=64, step=1.0, sweeps=20)
HM = dict(kappa=0.21, lam=0.022, L=32, chains=256, n_steps=10, traj=1.0, trajectories=5)


# ---- the hand-written NumPy baselines: what a physicist would write without the library ----
def numpy_checkerboard(phi, beta, g, step, sweeps, rng):
    L = phi.shape[1]
    x, y = np.indices((L, L))
    masks = [(x + y) % 2 == 0, (x + y) % 2 == 1]
    for _ in range(sweeps):
        for mask in masks:
            nsum = np.roll(phi, 1, 1) + np.roll(phi, -1, 1) + np.roll(phi, 1, 2) + np.roll(phi, -1, 2)
            phi2 = phi * phi
            grad = -beta * nsum + (2 * (1 - 2 * g) + 4 * g * phi2) * phi
            delta = step * rng.standard_normal(phi.shape)
            # Eq. 3 of the PEM paper in Horner form (products, not slow float powers)
            dS = delta * (grad + delta * ((1 - 2 * g + 6 * g * phi2) + delta * (4 * g * phi + g * delta)))
            acc = mask & (rng.random(phi.shape) < np.exp(-dS))
            phi = np.where(acc, phi + delta, phi)
    return phi


def numpy_hmc(phi, kappa, lam, n_steps, traj, trajectories, rng):
    beta = 2 * kappa

    def action(f):
        hop = f * (np.roll(f, -1, 1) + np.roll(f, -1, 2))
        f2 = f * f
        return np.sum(-beta * hop + ((1 - 2 * lam) + lam * f2) * f2, axis=(1, 2))

    def grad(f):
        nsum = np.roll(f, 1, 1) + np.roll(f, -1, 1) + np.roll(f, 1, 2) + np.roll(f, -1, 2)
        return -beta * nsum + (2 * (1 - 2 * lam) + 4 * lam * f * f) * f

    dt = traj / n_steps
    for _ in range(trajectories):
        p = rng.standard_normal(phi.shape)
        h0 = action(phi) + 0.5 * np.sum(p * p, axis=(1, 2))
        f = phi + 0
        p = p - 0.5 * dt * grad(f)
        for i in range(n_steps):
            f = f + dt * p
            p = p - (dt if i < n_steps - 1 else 0.5 * dt) * grad(f)
        dh = action(f) + 0.5 * np.sum(p * p, axis=(1, 2)) - h0
        acc = rng.random(phi.shape[0]) < np.exp(-dh)
        phi = np.where(acc[:, None, None], f, phi)
    return phi


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def stepper(kernel, x0, rng, n, be):
    """A timed closure: ``n`` steps of ``kernel`` from ``kernel.init(x0)`` with ``rng``, synchronised
    by reading one element back."""
    state0 = kernel.init(x0)

    def go():
        state = state0
        for _ in range(n):
            state, _ = kernel.step(state, rng)
        be.to_numpy(state.config[0, 0, :1])
    return go


def interleaved(baseline, candidate, repeats):
    """Time baseline and candidate alternately (this VM's speed drifts between runs);
    returns (best baseline time, best candidate time, ratios of each adjacent pair)."""
    baseline(), candidate()  # warm-up (allocations, lazy initialisation)
    tb, tc, ratios = [], [], []
    for _ in range(repeats):
        tb.append(timed(baseline))
        tc.append(timed(candidate))
        ratios.append(tb[-1] / tc[-1])
    return min(tb), min(tc), sorted(ratios)


def library_checkerboard(be, dtype):
    rng = be.rng(1)
    kernel = CheckerboardMetropolis(Phi4.from_beta_g(CB["beta"], CB["g"]), GaussianShift(CB["step"]))
    state0 = kernel.init(rng.normal((CB["chains"], CB["L"], CB["L"]), dtype))

    def go():
        state = state0
        for _ in range(CB["sweeps"]):
            state, info = kernel.step(state, rng)
        be.to_numpy(state.phi[0, 0, :1])  # synchronise (GPU)
    return go


def library_hmc(be, dtype):
    rng = be.rng(2)
    kernel = HMC(Phi4.from_kappa_lambda(HM["kappa"], HM["lam"]), traj_length=HM["traj"], n_steps=HM["n_steps"])
    state0 = kernel.init(0.3 * rng.normal((HM["chains"], HM["L"], HM["L"]), dtype))

    def go():
        state = state0
        for _ in range(HM["trajectories"]):
            state, info = kernel.step(state, rng)
        be.to_numpy(state.phi[0, 0, :1])
    return go


def pin_allocator(mode: str) -> str:
    """Fix glibc malloc's regime for the whole run, so every row pays the same allocation costs.

    By default glibc adapts its mmap threshold as large blocks are freed: the
    same code then runs up to ~2x faster or slower depending on what ran
    before, which made adjacent timings in one process disagree. ``tuned``
    keeps blocks up to 32 MiB on the heap and never trims it (no page faults
    on reuse); ``default`` pins the stock 128 KiB threshold (every temporary
    array is a fresh mmap). Setting the threshold explicitly switches the
    adaptation off in both cases.
    """
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
    except OSError:
        return "unpinned (no glibc)"
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    mmap, trim = (32 << 20, 1 << 30) if mode == "tuned" else (128 << 10, 128 << 10)
    ok = libc.mallopt(M_MMAP_THRESHOLD, mmap) and libc.mallopt(M_TRIM_THRESHOLD, trim)
    return f"{mode} (mmap threshold {mmap >> 10} KiB, trim threshold {trim >> 10} KiB)" if ok else "unpinned"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default=None, help="comma list (default: all available but array_api_strict)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--compile", action="store_true",
                    help="add torch rows with the torch.compile fast path (compilation excluded from timings)")
    ap.add_argument("--malloc", choices=["tuned", "default"], default="tuned",
                    help="glibc allocator regime, pinned for the whole run (default: tuned)")
    args = ap.parse_args(argv)
    allocator = pin_allocator(args.malloc)
    if args.backends:
        backends = [tuple(s.partition(":")[::2]) for s in args.backends.split(",")]
    else:
        backends = [b for b in available_backends() if b[0] != "array_api_strict"]
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        pass

    rng = np.random.default_rng(0)
    phi_cb = rng.standard_normal((CB["chains"], CB["L"], CB["L"]))
    phi_hmc = 0.3 * rng.standard_normal((HM["chains"], HM["L"], HM["L"]))
    hand_cb = lambda: numpy_checkerboard(phi_cb, CB["beta"], CB["g"], CB["step"], CB["sweeps"],  # noqa: E731
                                         np.random.default_rng(1))
    hand_hmc = lambda: numpy_hmc(phi_hmc, HM["kappa"], HM["lam"], HM["n_steps"], HM["traj"],  # noqa: E731
                                 HM["trajectories"], np.random.default_rng(2))
    cb_units = CB["chains"] * CB["L"] ** 2 * CB["sweeps"]
    hmc_units = HM["chains"] * HM["trajectories"]
    print(f"checkerboard Metropolis: phi^4 beta={CB['beta']} g={CB['g']} L={CB['L']} chains={CB['chains']} float64, "
          f"{CB['sweeps']} sweeps per timing")
    print(f"HMC: kappa={HM['kappa']} lambda={HM['lam']} L={HM['L']} chains={HM['chains']} float64, "
          f"{HM['n_steps']} leapfrog steps, {HM['trajectories']} trajectories per timing")
    print(f"{args.repeats} interleaved repeats; ratio = median (min-max) of hand-written NumPy time / backend time "
          f"over adjacent pairs; torch threads = {args.threads}; malloc {allocator}")
    print()
    print(f"{'backend':15s} {'hand site-upd/s':>16s} {'site-upd/s':>12s} {'checkerboard ratio':>22s}   "
          f"{'hand traj/s':>12s} {'traj/s':>10s} {'HMC ratio':>20s}")
    rows = [(name, device, False) for name, device in backends]
    if args.compile:
        rows += [(name, device, True) for name, device in backends if name == "torch"]
    for name, device, fused in rows:
        be = get_backend(name, device or None)
        if be.name == "torch":
            from portable_lattice.backends.torch_backend import use_compile
            use_compile(fused)
        dtype = be.xp.float64
        hb, lb, rc = interleaved(hand_cb, library_checkerboard(be, dtype), args.repeats)
        hh, lh, rh = interleaved(hand_hmc, library_hmc(be, dtype), args.repeats)
        label = (name if device in (None, "", "cpu") else f"{name}:{device}") + ("+compile" if fused else "")
        med = lambda r: r[len(r) // 2]  # noqa: E731
        print(f"{label:15s} {cb_units / hb:16.3e} {cb_units / lb:12.3e} "
              f"{med(rc):8.2f} ({rc[0]:.2f}-{rc[-1]:.2f})   "
              f"{hmc_units / hh:12.1f} {hmc_units / lh:10.1f} {med(rh):8.2f} ({rh[0]:.2f}-{rh[-1]:.2f})", flush=True)


if __name__ == "__main__":
    main()
