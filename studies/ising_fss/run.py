"""Finite-size scaling of the 2D Ising model at K_c from Swendsen-Wang data (Table II of the inverse-RG paper).

    python studies/ising_fss/run.py [--sizes 8 16 32 64 128] [--configs 60000] [--backend numpy]

For each L: chi = V(<m^2> - <m>^2), c_me and the heat capacity, with errors;
exponents from size pairs (L, L/4): gamma/nu = ln(chi(L)/chi(L/4))/ln 4 and
1/nu from c_me likewise; the heat capacity against the exact finite-lattice
value (Ferdinand-Fisher). Prints a table and writes results.json beside this file.
"""
from __future__ import annotations

import argparse
import json
import os
import time

from portable_lattice import Ising, simulate
from portable_lattice.exact import K_CRITICAL, ising_torus
from portable_lattice.observables import fss_exponent

# Table II of 001, MC rows: (L, L/4) -> (gamma/nu, 1/nu)
PAPER = {(32, 8): (1.754, 1.077), (64, 16): (1.751, 1.038), (128, 32): (1.749, 1.020)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    ap.add_argument("--configs", type=int, default=60000, help="configurations per size")
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results.json"))
    args = ap.parse_args(argv)
    results = {}
    estimates = {}  # L -> observables (Estimates with their jackknife replicas, for the exponents)
    print(f"2D Ising at K_c = {K_CRITICAL:.8f}, Swendsen-Wang, {args.configs} configurations per size, "
          f"backend {args.backend}\n")
    print(f"{'L':>5s} {'energy':>14s} {'exact':>10s} {'z':>6s} {'C':>12s} {'exact':>8s} {'z':>6s} "
          f"{'chi':>12s} {'c_me':>11s} {'U4':>11s} {'sec':>6s}", flush=True)
    for L in args.sizes:
        chains = max(8, min(64, 262144 // (L * L)))
        t = time.perf_counter()
        res = simulate(Ising(beta=K_CRITICAL), L=L, algorithm="swendsen-wang", backend=args.backend,
                       chains=chains, therm=300, sweeps=-(-args.configs // chains), seed=args.seed + L,
                       progress=False)
        o = estimates[L] = res.observables
        ex = ising_torus(K_CRITICAL, L)
        results[L] = {k: {"value": o[k].value, "error": o[k].error} for k in
                      ("energy", "heat_capacity", "chi", "c_me", "binder", "m_abs")}
        results[L]["exact"] = {"energy": ex.energy, "heat_capacity": ex.heat_capacity}
        results[L]["configs"] = int(res.series["m"].size)
        print(f"{L:5d} {str(o['energy']):>14s} {ex.energy:10.6f} {o['energy'].z(ex.energy):6.2f} "
              f"{str(o['heat_capacity']):>12s} {ex.heat_capacity:8.4f} {o['heat_capacity'].z(ex.heat_capacity):6.2f} "
              f"{str(o['chi']):>12s} {str(o['c_me']):>11s} {str(o['binder']):>11s} {time.perf_counter() - t:6.1f}",
              flush=True)
    print(f"\n{'pair':>10s} {'gamma/nu':>12s} {'paper MC':>9s} {'z':>6s} {'1/nu':>12s} {'paper MC':>9s} {'z':>6s}")
    pairs = {}
    for L in args.sizes:
        if L // 4 in results:
            # the two sizes are independent runs: the exponent's error comes from both runs' replicas
            g = fss_exponent(estimates[L]["chi"], estimates[L // 4]["chi"])
            n = fss_exponent(estimates[L]["c_me"], estimates[L // 4]["c_me"])
            paper = PAPER.get((L, L // 4))
            zg = g.z(paper[0]) if paper else float("nan")
            zn = n.z(paper[1]) if paper else float("nan")
            pairs[f"{L},{L // 4}"] = {"gamma_over_nu": {"value": g.value, "error": g.error},
                                      "one_over_nu": {"value": n.value, "error": n.error}, "paper_mc": paper}
            print(f"{f'({L},{L // 4})':>10s} {str(g):>12s} {paper[0] if paper else '-':>9} {zg:6.2f} "
                  f"{str(n):>12s} {paper[1] if paper else '-':>9} {zn:6.2f}")
    with open(args.out, "w") as fh:
        json.dump({"sizes": results, "pairs": pairs, "configs": args.configs}, fh, indent=1)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
