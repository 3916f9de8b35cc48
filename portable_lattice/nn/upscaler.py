r"""Training the inverse-RG upscaler (Sec. II B of [IRG]) on Monte Carlo configurations.

The model of Eq. 9 is a logistic regression: with the class-summed features
F_c(mu)_i = sum of the upsampled coarse spins over the kernel taps of class c
around site i, p(sigma_i | mu) = sigmoid(2 sigma_i sum_c w_c F_c). The loss of
Eq. 12 (Eq. 13 with the majority rule's weights w_a = D(mu|sigma)) is then a
convex function of the (k + 1)(k + 3)/8 weights, and it depends on a site only
through the integer vector z_i = sigma_i F(mu)_i. So the training set is
reduced, exactly, to the distinct z and their summed weights, and L-BFGS finds
the global minimum: no learning rate, no batch size, no epochs. (The paper
trains with a stochastic optimiser; both minimise the same loss.)

Host-side (NumPy and SciPy), like the rest of ``nn/``; the data come from the
library's Swendsen-Wang sampler, the blocking from :func:`portable_lattice.rg.majority_block`.
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Any, Callable

import numpy as np
import scipy.optimize

from portable_lattice._checks import positive_int
from portable_lattice.backends import get_backend
from portable_lattice.exact import K_CRITICAL
from portable_lattice.rg.blocking import majority_block
from portable_lattice.rg.upscaling import _class_of, kernel_classes, n_parameters
from portable_lattice.runs.driver import thermalise
from portable_lattice.samplers import SwendsenWang
from portable_lattice.statistics import gamma_method
from portable_lattice.theories import Ising

__all__ = ["pattern_counts", "fit_weights", "train_upscaler", "PatternSet"]


class PatternSet:
    """Distinct feature vectors z = sigma F(mu) with their summed weights (the whole training set)."""

    def __init__(self, k: int):
        self.k = k
        classes = kernel_classes(k)
        r = (k - 1) // 2
        self.sizes = [sum(1 for dx in range(-r, r + 1) for dy in range(-r, r + 1) if _class_of(dx, dy) == c)
                      for c in classes]
        self.radix = [2 * n + 1 for n in self.sizes]
        self.keys = np.zeros(0, dtype=np.int64)
        self.weights = np.zeros(0, dtype=np.float64)
        self.sites = 0.0  # total weight (sites x configuration weights)

    def features(self, mu: np.ndarray) -> np.ndarray:
        """F_c(mu) at every fine site: int8 (configs, 2L, 2L, n_classes)."""
        up = np.repeat(np.repeat(mu, 2, axis=1), 2, axis=2).astype(np.int8)
        r = (self.k - 1) // 2
        index = {c: i for i, c in enumerate(kernel_classes(self.k))}
        out = np.zeros(up.shape + (len(index),), dtype=np.int8)
        for dx in range(-r, r + 1):
            for dy in range(-r, r + 1):
                out[..., index[_class_of(dx, dy)]] += np.roll(up, shift=(-dx, -dy), axis=(1, 2))
        return out

    def add(self, sigma: np.ndarray, mu: np.ndarray, config_weights: np.ndarray) -> None:
        """Add fine configurations ``sigma`` with their blocked ``mu`` and per-configuration weights."""
        z = self.features(mu) * sigma[..., None].astype(np.int8)
        key = np.zeros(z.shape[:-1], dtype=np.int64)
        for c, base in enumerate(self.radix):
            key = key * base + (z[..., c].astype(np.int64) + self.sizes[c])
        w = np.broadcast_to(config_weights[:, None, None], key.shape)
        keys, inverse = np.unique(key.reshape(-1), return_inverse=True)
        sums = np.bincount(inverse, weights=w.reshape(-1))
        merged, inv = np.unique(np.concatenate([self.keys, keys]), return_inverse=True)
        self.weights = np.bincount(inv, weights=np.concatenate([self.weights, sums]))
        self.keys = merged
        self.sites += float(w.sum())

    def vectors(self) -> np.ndarray:
        """The distinct z, decoded: (patterns, n_classes) float64."""
        out = np.zeros((self.keys.size, len(self.radix)))
        key = self.keys.copy()
        for c in range(len(self.radix) - 1, -1, -1):
            out[:, c] = key % self.radix[c] - self.sizes[c]
            key //= self.radix[c]
        return out


def _loss_and_grad(w: np.ndarray, Z: np.ndarray, counts: np.ndarray, total: float) -> tuple[float, np.ndarray]:
    """Mean over sites of -log sigmoid(2 z.w) (Eq. 12/13) and its gradient."""
    x = 2.0 * Z @ w
    loss = float(counts @ np.logaddexp(0.0, -x)) / total
    s = 0.5 * (1.0 - np.tanh(0.5 * x))  # sigmoid(-x), without overflow
    grad = -(2.0 * Z.T @ (counts * s)) / total
    return loss, grad


def fit_weights(patterns: PatternSet, x0: Any = None) -> tuple[np.ndarray, float]:
    """The weights minimising the loss over ``patterns`` (L-BFGS, convex: the global minimum), and the loss."""
    Z, counts = patterns.vectors(), patterns.weights
    x0 = np.zeros(Z.shape[1]) if x0 is None else np.asarray(x0, dtype=float)
    res = scipy.optimize.minimize(_loss_and_grad, x0, args=(Z, counts, patterns.sites), jac=True,
                                  method="L-BFGS-B", options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-14})
    if not res.success:
        raise RuntimeError(f"L-BFGS did not converge: {res.message}")
    return res.x, float(res.fun)


def loss_of(weights: Any, patterns: PatternSet) -> float:
    return _loss_and_grad(np.asarray(weights, dtype=float), patterns.vectors(), patterns.weights, patterns.sites)[0]


def pattern_counts(k: int, L_t: int, configs: int, *, weighted: bool, seed: int, chains: int = 64,
                   spacing: int = 4, therm: int = 200, backend: Any = "numpy",
                   log: Callable[[str], None] | None = None) -> tuple[PatternSet, dict]:
    """Draw ``configs`` Swendsen-Wang configurations of the critical 2D Ising model on L_t x L_t,
    ``spacing`` sweeps apart in each of ``chains`` chains, block each once by the majority rule
    (random tie-break) and reduce them to a :class:`PatternSet`. Returns it with the measured
    tau_int of |m| and E in sweeps (so the spacing can be judged)."""
    for name, v in (("L_t", L_t), ("configs", configs), ("chains", chains), ("spacing", spacing)):
        positive_int(name, v)
    if L_t % 2:
        raise ValueError(f"L_t must be even (2 x 2 majority blocks), got L_t={L_t}")
    be = get_backend(backend)
    rng = be.rng(seed)
    theory = Ising(beta=K_CRITICAL, dim=2)
    kernel = SwendsenWang(theory)
    state = thermalise(kernel, theory.random(rng, (chains, L_t, L_t), be.xp.float64), rng, therm)
    patterns = PatternSet(k)
    m_abs, energy = [], []
    done = 0
    while done < configs:
        for _ in range(spacing):
            state, _ = kernel.step(state, rng)
        s = state.spins
        n = min(chains, configs - done)
        mu, log_d = majority_block(s, rng)
        sig, mu_h, log_dh = (be.to_numpy(a) for a in (s, mu, log_d))
        w = np.exp(log_dh) if weighted else np.ones(chains)
        patterns.add(sig[:n], mu_h[:n], w[:n])
        m_abs.append(np.abs(sig.mean(axis=(1, 2))))
        energy.append(be.to_numpy(theory.energy(s, be.xp.float64)))
        done += n
        if log and done % max(chains * 50, 1) < chains:
            log(f"{done}/{configs} configurations, {patterns.keys.size} distinct patterns")
    m_abs, energy = np.array(m_abs), np.array(energy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short validation set: tau_int is reported, not used for errors
        tau_m, tau_e = gamma_method(m_abs).tau_int, gamma_method(energy).tau_int
    info = {"spacing_sweeps": spacing, "tau_int_m_abs": tau_m * spacing, "tau_int_energy": tau_e * spacing,
            "patterns": int(patterns.keys.size)}
    return patterns, info


def train_upscaler(k: int = 3, L_t: int = 32, configs: int = 10000, *, weighted: bool = True, seed: int = 0,
                   validation: int | None = None, chains: int = 64, spacing: int = 4, backend: Any = "numpy",
                   log: Callable[[str], None] | None = None) -> dict:
    """Train the k x k upscaler at K_c on ``configs`` Swendsen-Wang configurations of size L_t, and
    measure the loss on ``validation`` independent ones (default configs / 5). Returns
    {"k", "weights" (paper convention), "loss": {"train", "validation"}, "data": {...}, "seconds"}."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 3 or k % 2 == 0:
        raise ValueError(f"k must be an odd integer >= 3, got k={k!r}")
    validation = max(chains, configs // 5) if validation is None else validation
    t0 = time.perf_counter()
    train, info = pattern_counts(k, L_t, configs, weighted=weighted, seed=seed, chains=chains, spacing=spacing,
                                 backend=backend, log=log)
    weights, loss = fit_weights(train)
    val, _ = pattern_counts(k, L_t, validation, weighted=weighted, seed=seed + 1_000_003, chains=chains,
                            spacing=spacing, backend=backend)
    return {"k": k, "weighted": weighted, "weights": [float(v) for v in weights], "n_parameters": n_parameters(k),
            "loss": {"train": loss, "validation": loss_of(weights, val)},
            "data": dict(info, L_t=L_t, configs=configs, validation=validation, chains=chains),
            "seconds": time.perf_counter() - t0,
            "loss_ln2": math.log(2.0)}
