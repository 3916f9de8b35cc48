"""The 2D XY model's BKT coupling from the helicity modulus's universal jump (and its Binder ratio).

    python studies/on_models/xy_bkt.py [--sizes 8,16,32,64] [--betas 1.00:1.24:0.04]
        [--sweeps 10000] [--therm 1000] [--chains 8] [--seed 1] [--boot 200] [--out xy.json]
        [--degree 4] [--lmin 0]
    python studies/on_models/xy_bkt.py --load xy.json          # the analysis again, no runs

Swendsen-Wang by Wolff's embedding (``simulate(..., algorithm="swendsen-wang")``) at every
(L, beta). The helicity modulus Upsilon jumps from 2 / (pi beta_BKT) to 0 at the transition
(Nelson & Kosterlitz 1977); on an L x L torus Kosterlitz's RG gives at beta_BKT
(Weber & Minnhagen 1988)

    Y(L) = pi beta Upsilon(L) / 2 = 1 + 1 / (2 ln L + C),

so beta_BKT is the beta where this one-parameter form fits the sizes best: per L a weighted
polynomial in beta through Y(L, beta) (degree 4: seven betas leave two degrees of freedom),
then chi^2(beta) minimised over C, and beta_BKT at the smallest chi^2. Its error is a
parametric bootstrap over the (L, beta) points (independent runs); the spread over the
analysis choices (--degree, --lmin) is the larger, systematic part. Also printed: the beta
where each L's Y crosses 1 (below beta_BKT, since Y(L) > 1 there; they approach it only as
1 / ln^2 L), and the crossings of the Binder ratio of L and 2L (in the BKT phase the curves
merge instead of crossing, so these are not an estimator of beta_BKT; shown for completeness).
Reference: beta_BKT = 1.1199(1) (Hasenbusch 2005, J. Phys. A 38, 5869).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fss import bootstrap, crossing, evaluate, polyfit, study_main, table  # noqa: E402

BETA_BKT = 1.1199


def _y(v, e, L, beta):
    return math.pi * beta * v / 2, math.pi * beta * e / 2


def wm_fit(fits, beta):
    """(chi^2, C) of Y(L) = 1 + 1 / (2 ln L + C) at beta over the fitted sizes."""
    Ls = np.asarray(sorted(fits), dtype=float)
    ys = np.array([evaluate(fits[int(L)], beta)[0][0] for L in Ls])
    es = np.array([evaluate(fits[int(L)], beta)[1][0] for L in Ls])

    def chi2(C):
        return float(np.sum(((ys - 1.0 - 1.0 / (2 * np.log(Ls) + C)) / es) ** 2))
    lo = -2 * math.log(Ls.min()) + 0.05
    r = minimize_scalar(chi2, bounds=(lo, 200.0), method="bounded")
    return r.fun, r.x


def beta_bkt(tab, degree=2, grid=None):
    fits = {L: polyfit(b, v, e, degree) for L, (b, v, e) in tab.items()}
    b_all = next(iter(tab.values()))[0]
    grid = np.linspace(b_all.min(), b_all.max(), 121) if grid is None else grid
    chi = np.array([wm_fit(fits, b)[0] for b in grid])
    i = int(np.argmin(chi))
    if i in (0, len(grid) - 1):
        return math.nan  # the minimum is at the edge of the beta range: not located
    # refine between the neighbouring grid points
    r = minimize_scalar(lambda b: wm_fit(fits, b)[0], bounds=(grid[i - 1], grid[i + 1]), method="bounded")
    return float(r.x)


def analyse(rows, boot, seed, degree=4, lmin=0):
    tab = {L: t for L, t in table(rows, "helicity", _y).items() if L >= lmin}
    if len(tab) < 3:
        raise SystemExit(f"--lmin {lmin} leaves {len(tab)} sizes; the fit needs at least 3")
    sizes = sorted(tab)
    print(f"\nY = pi beta Upsilon / 2, a weighted degree-{degree} polynomial in beta per L:")
    fits = {}
    for L, (b, v, e) in tab.items():
        fits[L] = polyfit(b, v, e, degree)
        res = (v - evaluate(fits[L], b)[0]) / e
        print(f"  L={L:3d}: chi^2/dof of the fit = {np.sum(res ** 2):.1f}/{len(b) - degree - 1}")
    one = (np.array([1.0]), np.zeros((1, 1)), 0.0)
    b_all = next(iter(tab.values()))[0]
    print("\nbeta where Y(L) = 1 (the infinite-volume jump line; approaches beta_BKT from below as 1/ln^2 L):")
    for L in sizes:
        est, err, ok = bootstrap({L: tab[L]}, lambda t, L=L: crossing(polyfit(*t[L], degree), one, b_all.min(),
                                                                      b_all.max()), boot, seed)
        print(f"  L={L:3d}: {est:.4f} +- {err:.4f}")
    est, err, ok = bootstrap(tab, lambda t: beta_bkt(t, degree), boot, seed)
    chi2, C = wm_fit(fits, est) if math.isfinite(est) else (math.nan, math.nan)
    dof = len(sizes) - 1
    dev = 100 * (est - BETA_BKT) / BETA_BKT
    print(f"\nWeber-Minnhagen fit over L = {', '.join(map(str, sizes))}: beta_BKT = {est:.4f} +- {err:.4f} "
          f"(bootstrap, {boot} resamples, {100 * ok:.0f}% located), chi^2/dof = {chi2:.2f}/{dof}, C = {C:.2f}")
    print(f"  against Hasenbusch's {BETA_BKT}: {dev:+.2f}% ({(est - BETA_BKT) / err:+.1f} sigma); "
          f"within 2%: {'yes' if abs(dev) < 2 else 'no'}")
    btab = table(rows, "binder")
    print("\nBinder ratio crossings of L and 2L (the curves merge in the BKT phase: not an estimator):")
    for L in sizes:
        if 2 * L in btab:
            est2, err2, ok2 = bootstrap(btab, lambda t, L=L: crossing(polyfit(*t[L], degree),
                                                                      polyfit(*t[2 * L], degree),
                                                                      b_all.min(), b_all.max()), boot, seed)
            print(f"  L={L:3d}, {2 * L:3d}: {est2:.4f} +- {err2:.4f} (crossing found in {100 * ok2:.0f}% of "
                  f"resamples)")


def main(argv=None):
    args, rows = study_main(argv, __doc__, n=2, dim=2, title="2D XY", names=("helicity", "binder"),
                            defaults={"sizes": "8,16,32,64", "betas": "1.00:1.24:0.04", "sweeps": 10000,
                                      "therm": 1000, "degree": 4},
                            min_sizes=3, extra=[("--lmin", {"type": int, "default": 0,
                                                             "help": "fit only the sizes L >= lmin"})])
    analyse(rows, args.boot, args.seed, args.degree, args.lmin)


if __name__ == "__main__":
    main()
