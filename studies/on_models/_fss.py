"""Finite-size-scaling helpers shared by the O(n) studies: weighted polynomial fits of an
observable against beta per lattice size, crossings of two sizes' curves, and a parametric
bootstrap of any estimator built from the (beta, L) table of value +- error."""
from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np

from portable_lattice import simulate
from portable_lattice.theories import ON


def run_grid(n, dim, sizes, betas, *, algorithm, chains, therm, sweeps, seed, names, out=None):
    """simulate() at every (L, beta); rows {L, beta, <name>: [value, error, tau_int], seconds},
    printed as they finish and written to ``out`` (JSON) after each, so an interrupted study
    keeps what it finished."""
    rows = []
    print(f"{'L':>4s} {'beta':>7s} " + " ".join(f"{nm:>22s}" for nm in names) + f" {'s':>7s}", flush=True)
    for L in sizes:
        for beta in betas:
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = simulate(ON(beta, n=n), L=L, dim=dim, algorithm=algorithm, chains=chains, therm=therm,
                               sweeps=sweeps, seed=seed, progress=False)
            row = {"L": L, "beta": beta, "seconds": time.perf_counter() - t}
            for nm in names:
                e = res.observables[nm]
                row[nm] = [e.value, e.error, e.tau_int]
            rows.append(row)
            print(f"{L:4d} {beta:7.4f} " + " ".join(f"{str(res.observables[nm]):>14s} t={row[nm][2]:5.1f}"
                                                   for nm in names) + f" {row['seconds']:7.1f}", flush=True)
            if out:
                with open(out, "w") as fh:
                    json.dump(rows, fh, indent=1)
    return rows


def table(rows, name, transform=None):
    """{L: (betas, values, errors)} of one observable, optionally transformed (value, error, L, beta)."""
    out = {}
    for r in rows:
        v, e = r[name][0], r[name][1]
        if transform is not None:
            v, e = transform(v, e, r["L"], r["beta"])
        out.setdefault(r["L"], ([], [], []))
        for lst, x in zip(out[r["L"]], (r["beta"], v, e)):
            lst.append(x)
    return {L: tuple(np.asarray(a, dtype=float) for a in t) for L, t in sorted(out.items())}


def polyfit(betas, values, errors, degree):
    """Weighted least-squares polynomial in (beta - mean beta): (coefficients, covariance, centre)."""
    c = float(np.mean(betas))
    A = np.vander(betas - c, degree + 1)
    w = 1.0 / errors
    cov = np.linalg.inv((A * w[:, None] ** 2).T @ A)
    coef = cov @ (A.T @ (values * w ** 2))
    return coef, cov, c


def evaluate(fit, beta):
    """(value, error) of a polynomial fit at beta (the fit's covariance propagated)."""
    coef, cov, c = fit
    a = np.vander(np.atleast_1d(np.asarray(beta, dtype=float)) - c, len(coef))
    return a @ coef, np.sqrt(np.einsum("ij,jk,ik->i", a, cov, a))


def crossing(fit1, fit2, lo, hi):
    """beta in [lo, hi] where two fitted curves cross (nan if they do not cross there)."""
    grid = np.linspace(lo, hi, 2001)
    diff = evaluate(fit1, grid)[0] - evaluate(fit2, grid)[0]
    sign = np.nonzero(np.diff(np.sign(diff)))[0]
    if len(sign) == 0:
        return math.nan
    i = sign[0]
    return float(grid[i] - diff[i] * (grid[i + 1] - grid[i]) / (diff[i + 1] - diff[i]))


def bootstrap(tab, estimator, samples, seed):
    """(estimate, bootstrap error, fraction of resamples where it is defined): ``estimator`` maps a
    {L: (betas, values, errors)} table to a number; the resamples draw every value from a normal
    distribution with its error (the (beta, L) points are independent runs)."""
    best = estimator(tab)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(samples):
        fake = {L: (b, v + e * rng.standard_normal(len(v)), e) for L, (b, v, e) in tab.items()}
        draws.append(estimator(fake))
    draws = np.asarray(draws)
    ok = np.isfinite(draws)
    err = float(np.std(draws[ok], ddof=1)) if ok.sum() > 1 else math.nan
    return best, err, float(ok.mean())


def parse_list(text, kind, name):
    """A comma list, or lo:hi:step (both ends included)."""
    try:
        if ":" in text:
            lo, hi, step = (float(t) for t in text.split(":"))
            return [round(lo + i * step, 10) for i in range(int(round((hi - lo) / step)) + 1)]
        return [kind(t) for t in text.split(",")]
    except ValueError:
        raise SystemExit(f"--{name} must be a comma list or lo:hi:step, got {text!r}") from None


def study_main(argv, doc, *, n, dim, title, names, defaults, min_sizes, extra=()):
    """The studies' one command line: the grid's flags (``defaults``: sizes, betas, sweeps, therm,
    degree), checked before any run; then the (L, beta) table, run (written to --out as it fills)
    or loaded (--load). ``extra``: (flag, kwargs) of a study's own options. Returns (args, rows)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=defaults["sizes"])
    ap.add_argument("--betas", default=defaults["betas"])
    ap.add_argument("--sweeps", type=int, default=defaults["sweeps"])
    ap.add_argument("--therm", type=int, default=defaults["therm"])
    ap.add_argument("--chains", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--degree", type=int, default=defaults["degree"],
                    help="of the polynomial in beta through each L's values")
    for flag, kw in extra:
        ap.add_argument(flag, **kw)
    ap.add_argument("--out", help="write the (L, beta) table here as it fills (JSON)")
    ap.add_argument("--load", help="analyse a table written by --out instead of running")
    args = ap.parse_args(argv)
    sizes = parse_list(args.sizes, int, "sizes")
    betas = parse_list(args.betas, float, "betas")
    for name in ("sweeps", "chains", "boot"):
        if getattr(args, name) < 2:
            raise SystemExit(f"--{name} must be at least 2, got {getattr(args, name)}")
    if len(betas) < args.degree + 2:
        raise SystemExit(f"--betas needs at least degree + 2 = {args.degree + 2} values, got {len(betas)}")
    if len(sizes) < min_sizes:
        raise SystemExit(f"--sizes needs at least {min_sizes} sizes, got {sizes}")
    if args.out and not Path(args.out).resolve().parent.is_dir():
        raise SystemExit(f"--out: the folder of {args.out!r} does not exist")
    if args.load:
        return args, json.loads(Path(args.load).read_text())
    print(f"{title}, Swendsen-Wang (Wolff embedding), {args.chains} chains x {args.sweeps} steps after {args.therm}, "
          f"seed {args.seed}\n", flush=True)
    return args, run_grid(n, dim, sizes, betas, algorithm="swendsen-wang", chains=args.chains, therm=args.therm,
                          sweeps=args.sweeps, seed=args.seed, names=names, out=args.out)
