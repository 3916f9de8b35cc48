"""Residual analysis of gradient surrogates (Eq. 7, Figs. 4-5 of [PEM]).

R = grad S_surrogate - grad S on held-out configurations: a histogram, the
Gaussian fit (mu, sigma, with errors), and the tail weight beyond 3 sigma
compared with the Gaussian's 0.27%. The Ceperley-Dewing penalty assumes
Gaussian residuals, and heavy tails are what breaks it.
"""
from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace

__all__ = ["residual_summary"]

GAUSSIAN_TAIL_3SIGMA = math.erfc(3.0 / math.sqrt(2.0))


def residual_summary(pred: Any, exact: Any, bins: int = 61) -> dict:
    """Histogram and Gaussian fit of R = pred - exact (any shapes, flattened).

    Returns mu, sigma (maximum-likelihood Gaussian fit, with standard errors
    for independent residuals), the fraction of |R - mu| > 3 sigma with its
    binomial error and the Gaussian expectation, and the histogram
    (``edges``, ``density``) over mu +- 5 sigma.
    """
    xp = array_namespace(pred, exact)
    r = xp.reshape(pred - exact, (-1,))
    n = r.shape[0]
    mu = float(xp.mean(r))
    sigma = float(xp.std(r))
    tail = float(xp.mean(xp.astype(xp.abs(r - mu) > 3.0 * sigma, r.dtype)))
    lo, hi = mu - 5.0 * sigma, mu + 5.0 * sigma
    width = (hi - lo) / bins
    idx = xp.astype(xp.floor((r - lo) / width), xp.int64)
    inside = (idx >= 0) & (idx < bins)
    density = [float(xp.sum(xp.astype(inside & (idx == b), r.dtype))) / (n * width) for b in range(bins)]
    return {"n": n, "mu": mu, "mu_error": sigma / math.sqrt(n), "sigma": sigma,
            "sigma_error": sigma / math.sqrt(2.0 * n), "tail_3sigma": tail,
            "tail_3sigma_error": math.sqrt(max(tail * (1 - tail), 1.0 / n) / n),
            "tail_3sigma_gaussian": GAUSSIAN_TAIL_3SIGMA,
            "edges": [lo + width * k for k in range(bins + 1)], "density": density}
