"""GPU throughput of the fused Triton kernels against the generic paths, measured in the same run.

    python benchmarks/bench_gpu.py [--repeats 3] [--peak-gbs 4800]
    python benchmarks/bench_gpu.py --interpret --small      # a tiny run on the CPU, to check it runs

Rows (torch on CUDA; numbers per ns of wall time, median of the repeats):

* Ising checkerboard Metropolis at K_c, spin flips (attempted updates) per ns: L = 4096 and
  16384 (one chain) and L = 256 x 256 chains;
* phi^4 checkerboard Metropolis, site updates per ns, float32 and float64 (L = 4096);
* HMC, leapfrog site-steps per ns (chains x sites x steps), float32 and float64 (L = 1024 x 4);
* Swendsen-Wang at K_c, site updates per ns, L = 1024 x 4: generic label propagation against
  the Triton union-find.

Each row runs the generic path (the backend's native stream), the fused kernel with Philox
numbers in registers, and the fused kernel fed the native stream's pre-drawn numbers; the ratio
is fused / generic. "BW" is the fused kernel's achieved memory bandwidth under a minimal-traffic
model (every array the kernel must read or write, once per launch: for a checkerboard parity
the whole lattice read and half of it written, plus the pre-drawn numbers; for an HMC step the
field, momentum and cached arrays read and written), as a fraction of the peak
2 x memory clock x bus width / 8 from torch.cuda.get_device_properties (double data rate;
``--peak-gbs`` overrides it where torch does not report the clock).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--interpret", action="store_true",
                    help="run the Triton kernels in Triton's interpreter on CPU tensors (no GPU; slow)")
    ap.add_argument("--small", action="store_true", help="tiny lattices (with --interpret: checks that it runs)")
    ap.add_argument("--peak-gbs", type=float, default=None, help="peak memory bandwidth in GB/s")
    args = ap.parse_args(argv)
    if args.interpret:
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported
    import torch
    if not args.interpret and not torch.cuda.is_available():
        print("bench_gpu: no CUDA GPU here; this benchmark measures the Triton kernels on one. "
              "Run `python benchmarks/bench_gpu.py --interpret --small` to check it on the CPU.", file=sys.stderr)
        return 2
    try:
        import triton  # noqa: F401
    except ImportError:
        print("bench_gpu: triton is not installed (it ships with torch's CUDA builds)", file=sys.stderr)
        return 2
    torch.set_num_threads(1) if args.interpret else None
    Bench(torch, args).run()
    return 0


class Bench:
    def __init__(self, torch, args):
        from portable_lattice.backends import get_backend
        from portable_lattice.backends.fused import triton_clusters, triton_kernels
        from portable_lattice.samplers import fused
        self.torch, self.args = torch, args
        self.device = "cpu" if args.interpret else "cuda"
        self.be = get_backend("torch", None if args.interpret else "cuda")
        self.tk, self.tc = triton_kernels, triton_clusters
        # the samplers' fused path, pointed at the Triton kernels (on CUDA they are the registered
        # ones; under the interpreter CPU tensors would otherwise get the Numba kernels)
        kernels = {"checkerboard": triton_kernels.checkerboard_sweep, "hmc": triton_kernels.hmc_trajectory}
        fused.kernel_for = lambda name, x: kernels[name]
        self.peak = self._peak()
        self.rows = []

    def _peak(self):
        """Peak DRAM bandwidth in bytes/s: 2 x memory clock x bus width / 8, or --peak-gbs."""
        if self.args.peak_gbs:
            return self.args.peak_gbs * 1e9
        if self.args.interpret:
            return None
        p = self.torch.cuda.get_device_properties(0)
        clock_khz, bus_bits = getattr(p, "memory_clock_rate", None), getattr(p, "memory_bus_width", None)
        if not clock_khz or not bus_bits:
            return None
        return 2.0 * clock_khz * 1e3 * bus_bits / 8.0

    def sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def timed(self, fn, steps):
        """Median seconds per step over the repeats (one warm-up step first: compilation)."""
        fn(1)
        self.sync()
        out = []
        for _ in range(max(1, self.args.repeats)):
            t = time.perf_counter()
            fn(steps)
            self.sync()
            out.append((time.perf_counter() - t) / steps)
        return statistics.median(out)

    def sampler_loop(self, kernel, x, rng):
        state = [kernel.init(x)]

        def run(n):
            for _ in range(n):
                state[0], _info = kernel.step(state[0], rng)
        return run

    def add(self, what, work, t_generic, t_fused_philox, t_fused_native, bytes_philox, bytes_native):
        def bw(b, t):
            if self.peak is None or t is None:
                return "n/a"
            return f"{b / t / self.peak:.2f}"
        self.rows.append((what, work / t_generic * 1e-9, work / t_fused_philox * 1e-9,
                          work / t_fused_native * 1e-9 if t_fused_native else None,
                          t_generic / t_fused_philox, bw(bytes_philox, t_fused_philox),
                          bw(bytes_native, t_fused_native)))

    # --- rows ---------------------------------------------------------------------------------
    def checkerboard(self, theory, rule, shape, dtype, hits, steps, what):
        from portable_lattice.philox import PhiloxGenerator
        from portable_lattice.samplers import CheckerboardMetropolis
        xp, dev = self.be.xp, self.be.device
        if dtype == "int8":
            x = theory.random(self.be.rng(0), shape, xp.float64)
            es, drawn = 1, 4 * hits  # int8 spins; 32 bits per hit
        else:
            x = self.be.rng(0).normal(shape, getattr(xp, dtype))
            es = 4 if dtype == "float32" else 8
            drawn = 2 * es * hits  # a proposal and a uniform per hit
        V = 1
        for s in shape:
            V *= s
        times = []
        for fused, rng in ((False, self.be.rng(1)), (True, PhiloxGenerator(xp, 1, dev)), (True, self.be.rng(1))):
            k = CheckerboardMetropolis(theory, rule, hits=hits, fused=fused)
            times.append(self.timed(self.sampler_loop(k, x, rng), steps))
        # per parity: the lattice read, half of it written (+ the half lattice's draws, native)
        per_sweep = 2 * (V * es + V * es / 2)
        self.add(what, V * hits, *times, per_sweep, per_sweep + V * drawn)

    def hmc(self, theory, shape, dtype, n_steps, steps, what):
        from portable_lattice.samplers import HMC
        xp = self.be.xp
        x = self.be.rng(0).normal(shape, getattr(xp, dtype))
        es = 4 if dtype == "float32" else 8
        V = 1
        for s in shape:
            V *= s
        times = []
        for fused in (False, True):
            k = HMC(theory, 1.0, n_steps, fused=fused)
            times.append(self.timed(self.sampler_loop(k, x, self.be.rng(1)), steps))
        # per integration step: field and momentum read, momentum and drifted field written
        traffic = n_steps * 4 * V * es + 3 * V * es
        self.add(what, V * n_steps, times[0], times[1], None, traffic, None)

    def swendsen_wang(self, shape, steps, what):
        from portable_lattice import Ising
        from portable_lattice.exact import K_CRITICAL
        from portable_lattice.samplers import SwendsenWang, clusters
        xp = self.be.xp
        theory = Ising(K_CRITICAL)
        x = theory.random(self.be.rng(0), shape, xp.float64)
        V = 1
        for s in shape:
            V *= s
        saved = clusters.cluster_ids, clusters.cluster_labels
        times = []
        try:
            # the labelling through canonical labels ranked to ids, with each labeller
            clusters.cluster_ids = clusters._ids_from_labels
            for labeller in (clusters.label_propagation, self.tc.cluster_labels):
                clusters.cluster_labels = labeller
                k = SwendsenWang(theory)
                times.append(self.timed(self.sampler_loop(k, x, self.be.rng(1)), steps))
        finally:
            clusters.cluster_ids, clusters.cluster_labels = saved
        self.add(what + " (labels: generic | union-find)", V, times[0], times[1], None, 0, None)

    def run(self):
        from portable_lattice import Ising, Phi4
        from portable_lattice.exact import K_CRITICAL
        from portable_lattice.samplers.rules import GaussianShift, SpinFlip
        small = self.args.small
        ising, phi4 = Ising(K_CRITICAL), Phi4(0.3, 0.5)
        print(f"device: {self.torch.cuda.get_device_name(0) if self.device == 'cuda' else 'CPU (Triton interpreter)'}"
              f" | peak bandwidth: {self.peak / 1e9:.0f} GB/s" if self.peak else
              f"device: {self.device} | peak bandwidth: unknown (--peak-gbs)", flush=True)
        for L, C in (((16, 1), (32, 1), (8, 4)) if small else ((4096, 1), (16384, 1), (256, 256))):
            self.checkerboard(ising, SpinFlip(), (C, L, L), "int8", 1, 2 if small else 10,
                              f"Ising checkerboard L={L} x{C}, flips/ns")
        for dt in ("float32", "float64"):
            L = 16 if small else 4096
            self.checkerboard(phi4, GaussianShift(1.0), (1, L, L), dt, 1, 2 if small else 10,
                              f"phi4 checkerboard {dt} L={L}, updates/ns")
        for dt in ("float32", "float64"):
            L, C = (8, 2) if small else (1024, 4)
            self.hmc(phi4, (C, L, L), dt, 4 if small else 10, 1 if small else 5,
                     f"HMC leapfrog {dt} L={L} x{C}, site-steps/ns")
        L, C = (16, 2) if small else (1024, 4)
        self.swendsen_wang((C, L, L), 1 if small else 5, f"Swendsen-Wang L={L} x{C}, updates/ns")
        self.print_table()

    def print_table(self):
        head = ("what", "generic", "fused philox", "fused native", "fused/generic", "BW philox", "BW native")
        rows = [head] + [(r[0], f"{r[1]:.4g}", f"{r[2]:.4g}", "-" if r[3] is None else f"{r[3]:.4g}",
                          f"{r[4]:.2f}", r[5], "-" if r[6] is None else r[6]) for r in self.rows]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        for n, r in enumerate(rows):
            print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
            if n == 0:
                print("  ".join("-" * w for w in widths))
        print("HMC and Swendsen-Wang rows: 'fused philox' is the fused kernel (HMC's momenta are drawn "
              "by the backend either way); Swendsen-Wang's BW is not modelled (n/a).")


if __name__ == "__main__":
    sys.exit(main())
