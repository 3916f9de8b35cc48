r"""Monte Carlo renormalisation group for the 2D Ising model (Sec. V of [IRG]).

Couplings: the 36 spin products of one to four spins that fit in a 3 x 3
plaquette, each summed over all translations and all rotations/reflections
of the square lattice (the D4 images of one shape). Up to translation there
are 1, 12, 48 and 97 shapes of 1, 2, 3 and 4 spins; up to D4 they fall into
1 + 5 + 10 + 20 = 36 classes. The 11 odd ones (1 and 3 spins) change sign under
a global flip, the 25 even ones (2 and 4 spins) do not, so the linearised RG
transformation splits into an odd (y_h) and an even (y_t) block.

With S^(n) the couplings measured on the configuration blocked n times,
Swendsen's chain rule (Eq. 18-22) gives, for the step n -> n+1,

    A = Cov(S^(n+1), S^(n)),  B = Cov(S^(n+1), S^(n+1)),  T = B^{-1} A,

T_{ab} = dK_a^(n+1)/dK_b^(n), and the exponents y = ln(lambda)/ln 2 from its
eigenvalues lambda: the largest odd one gives y_h, the largest even one y_t.
Errors come from a jackknife over blocks of configurations; the exponents are
Estimates with their replicas, so they compose. The small dense linear algebra
runs on the host arrays the driver returns (SciPy's general eigenvalue solver).

``basis="oriented"`` measures instead one fixed orientation of each shape
(the class representative, without the D4 sum), as the inverse-RG authors'
public code does. The truncated T then also carries the operators' non-
symmetric parts: y_h and y_t barely move, but the redundant exponent and the
ordering behind "omega" do (studies/mcrg/README.md has measured values).
"""
from __future__ import annotations

import itertools
import math
from typing import Any

import scipy.linalg
from array_api_compat import array_namespace

from .._checks import choice, positive_int
from ..statistics import Estimate, new_ensemble_id
from ..lattice import shift

__all__ = ["COUPLINGS", "ODD", "EVEN", "BASES", "measure_couplings", "t_matrix_exponents", "analyse_couplings"]


def _translate_to_origin(shape):
    mx = min(x for x, _ in shape)
    my = min(y for _, y in shape)
    return tuple(sorted((x - mx, y - my) for x, y in shape))


_D4 = [lambda x, y: (x, y), lambda x, y: (-y, x), lambda x, y: (-x, -y), lambda x, y: (y, -x),
       lambda x, y: (-x, y), lambda x, y: (x, -y), lambda x, y: (y, x), lambda x, y: (-y, -x)]


def _build_couplings():
    sites = [(x, y) for x in range(3) for y in range(3)]
    classes: dict[tuple, set] = {}
    for n in range(1, 5):
        for combo in itertools.combinations(sites, n):
            images = {_translate_to_origin([f(*p) for p in combo]) for f in _D4}
            key = min(images)
            classes.setdefault(key, set()).update(images)
    ordered = sorted(classes.items(), key=lambda kv: (len(kv[0]), kv[0]))
    return [(rep, sorted(images)) for rep, images in ordered]


#: (representative shape, list of its distinct images up to translation), 36 entries
COUPLINGS = _build_couplings()
#: indices of the spin-flip odd (1 or 3 spins) and even (2 or 4 spins) couplings
ODD = [i for i, (rep, _) in enumerate(COUPLINGS) if len(rep) % 2 == 1]
EVEN = [i for i, (rep, _) in enumerate(COUPLINGS) if len(rep) % 2 == 0]
#: operator bases: the D4-symmetrised sums, or one orientation (the representative) per class
BASES = ("symmetric", "oriented")


def measure_couplings(s: Any, basis: str = "symmetric") -> Any:
    """S_a per chain for the 36 couplings: array (chains, 36), float64.

    Extensive (summed over the lattice, not divided by V): S_a is the operator
    conjugate to K_a, which is what the chain rule of Eq. 18 differentiates.
    Per-site values would scale T by V_coarse / V_fine = 1/4. ``basis``
    "symmetric" sums each shape over its D4 images; "oriented" takes only
    the class representative (one orientation).
    """
    choice("basis", basis, BASES)
    xp = array_namespace(s)
    if s.ndim != 3:
        raise ValueError(f"MCRG couplings are defined for 2D Ising spins, got shape {tuple(s.shape)}")
    shifted = {}
    for dx in range(3):
        for dy in range(3):
            shifted[(dx, dy)] = shift(shift(s, 0, dx), 1, dy)  # s_{x + (dx, dy)}
    cols = []
    for rep, images in COUPLINGS:
        total = None
        for image in (images if basis == "symmetric" else [rep]):
            prod = shifted[image[0]]
            for p in image[1:]:
                prod = prod * shifted[p]
            term = xp.sum(xp.astype(prod, xp.float64), axis=(1, 2))
            total = term if total is None else total + term
        cols.append(total)
    return xp.stack(cols, axis=1)


def _t_eigenvalues(xp, S_fine, S_coarse, sector):
    """Eigenvalues of T = B^-1 A within one symmetry sector, largest modulus first (host arrays)."""
    idx = xp.asarray(sector)
    a = xp.take(S_coarse, idx, axis=1)
    b = xp.take(S_fine, idx, axis=1)
    a_c = a - xp.mean(a, axis=0)
    b_c = b - xp.mean(b, axis=0)
    if not bool(xp.all(xp.std(a_c, axis=0) > 0)):
        raise ValueError("the blocked configurations do not fluctuate (a coupling is constant over the "
                         "ensemble), so the MCRG covariance matrix is singular: use more or "
                         "less ordered configurations")
    A = a_c.T @ b_c / a.shape[0]
    B = a_c.T @ a_c / a.shape[0]
    ev = [complex(e) for e in scipy.linalg.eigvals(xp.linalg.solve(B, A))]
    return sorted(ev, key=lambda e: -abs(e))


def t_matrix_exponents(S_fine, S_coarse, n_blocks: int = 20, ensemble: str | None = None) -> dict:
    """Exponents from coupling measurements at levels n and n+1 (host arrays (configs, 36)).

    Returns {"exponents": {"y_h", "y_t", "redundant", "omega"} as Estimates (jackknife over
    ``n_blocks`` blocks of configurations, replicas kept), "eigenvalues": odd/even lists}.
    y_h and y_t come from the largest odd and even eigenvalues. Following Sec. V of [IRG],
    ``redundant`` is the exponent of the third eigenvalue overall and ``omega`` that of the
    sixth (exact omega = -1); both are identified by ordering alone, so treat them as indicative.
    """
    positive_int("n_blocks", n_blocks)
    xp = array_namespace(S_fine, S_coarse)
    S_fine, S_coarse = xp.astype(S_fine, xp.float64), xp.astype(S_coarse, xp.float64)
    if tuple(S_fine.shape) != tuple(S_coarse.shape) or S_fine.ndim != 2 or S_fine.shape[1] != len(COUPLINGS):
        raise ValueError(f"coupling arrays must both be (configs, {len(COUPLINGS)}), "
                         f"got {tuple(S_fine.shape)} and {tuple(S_coarse.shape)}")

    def exponents(fine, coarse):
        odd = _t_eigenvalues(xp, fine, coarse, ODD)
        even = _t_eigenvalues(xp, fine, coarse, EVEN)
        y = lambda ev: math.log(abs(ev)) / math.log(2.0)  # noqa: E731
        # the paper's labelling (Sec. V): y_h, y_t from the leading odd and even eigenvalues;
        # the redundant exponent from the 3rd eigenvalue overall, omega from the 6th
        overall = sorted([abs(e) for e in odd] + [abs(e) for e in even], reverse=True)
        return {"y_h": y(odd[0]), "y_t": y(even[0]), "redundant": y(overall[2]), "omega": y(overall[5])}, odd, even

    n = S_fine.shape[0] // n_blocks * n_blocks
    if n_blocks < 2 or n < n_blocks:
        raise ValueError(f"need at least n_blocks={n_blocks} configurations, got {S_fine.shape[0]}")
    full, odd, even = exponents(S_fine, S_coarse)
    size = n // n_blocks
    jk = []
    for k in range(n_blocks):
        keep = xp.concat([xp.arange(0, k * size), xp.arange((k + 1) * size, n)])
        jk.append(exponents(xp.take(S_fine, keep, axis=0), xp.take(S_coarse, keep, axis=0))[0])
    ensemble = ensemble or new_ensemble_id("mcrg")
    out = {}
    for name, value in full.items():
        reps = tuple(j[name] for j in jk)
        mean = sum(reps) / n_blocks
        err = math.sqrt((n_blocks - 1) / n_blocks * sum((r - mean) ** 2 for r in reps))
        out[name] = Estimate(value, err, n=int(S_fine.shape[0]), replicas={ensemble: reps})
    return {"exponents": out, "eigenvalues": {"odd": [abs(e) for e in odd], "even": [abs(e) for e in even]}}


def analyse_couplings(S: Any, n_blocks: int = 20) -> dict:
    """Every blocking step's exponents from couplings ``S`` (configs, levels + 1, 36) (host array):
    {n: t_matrix_exponents(level n, level n + 1)}; the steps share one ensemble label."""
    ensemble = new_ensemble_id("mcrg")
    return {n: t_matrix_exponents(S[:, n, :], S[:, n + 1, :], n_blocks, ensemble) for n in range(S.shape[1] - 1)}
