"""The error model of the conformance suite: z-scores and Holm's step-down correction.

Every statistical check is a two-sided z-test, z = (estimate - reference) / error,
with the error from the Gamma method (means) or a blocked jackknife (derived
quantities), over independent chains. The whole family is controlled with
Holm's method at an overall false-alarm rate ``alpha`` (default 1e-3): the
probability that a correct library fails any check is at most alpha.
"""
from __future__ import annotations

import math

__all__ = ["p_value", "holm", "ALPHA"]

ALPHA = 1e-3


def p_value(z: float) -> float:
    """Two-sided Gaussian p-value of a z-score."""
    if not math.isfinite(z):
        return 0.0
    return math.erfc(abs(z) / math.sqrt(2.0))


def holm(p_values: list[float], alpha: float = ALPHA) -> list[bool]:
    """Holm's step-down test: True where the null (library correct) is rejected."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    m = len(p_values)
    reject = [False] * m
    for rank, i in enumerate(order):
        if p_values[i] < alpha / (m - rank):
            reject[i] = True
        else:
            break
    return reject
