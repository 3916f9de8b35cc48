"""Finite-size-scaling helpers shared by the O(n) studies: weighted polynomial fits of an
observable against beta per lattice size, crossings of two sizes' curves, and a parametric
bootstrap of any estimator built from the (beta, L) table of value +- error."""
from __future__ import annotations

import json
import math
import time
import warnings

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
