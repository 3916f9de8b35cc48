"""Upscaling runs ([IRG]): generate critical Ising configurations level by level and analyse them.

Configurations are generated in batches from a single random spin (L0 = 1) or from
stored configurations (e.g. L0 = 8 Monte Carlo ones), upscaled ``levels`` times with
:func:`portable_lattice.rg.upscaling.upscale`, and every level of size >= 4 is
measured (Eq. 14 of [IRG]) at K_c. The levels of one configuration are correlated
(each is drawn from the one before), so all levels share one ensemble label and one
jackknife binning over configurations: the finite-size-scaling exponents from pairs
(L, L/4) then carry the right errors.

A kernel is kept as JSON (:func:`save_kernel_model`, :func:`load_kernel_model`): its
weights in the paper's convention and where they came from, nothing executable.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any

from array_api_compat import array_namespace

from .._checks import choice, positive_int
from ..backends import get_backend
from ..exact import K_CRITICAL
from ..observables import ensemble_spins, fss_exponent, measure_spins
from ..rg.upscaling import CONVENTIONS, n_parameters, random_spins, upscale
from ..statistics import new_ensemble_id
from ..theories import Ising
from .._json import dumps
from .spec import host_memory

__all__ = ["generate_and_analyse", "save_kernel_model", "load_kernel_model"]

#: observables reported per size
REPORTED = ("m_abs", "chi", "c_me", "heat_capacity", "binder", "energy")


def _check_generation(weights, k, levels, configs, L0, start, batch, convention, dtype) -> tuple[int, int]:
    """Every argument of :func:`generate_and_analyse` checked, and the memory one batch needs, before
    any work; returns (L0, L) (L0 from ``start`` when it is given)."""
    positive_int("levels", levels)
    positive_int("configs", configs)
    positive_int("batch", batch)
    choice("convention", convention, CONVENTIONS)
    choice("dtype", dtype, ("float32", "float64"))
    if len(list(weights)) != n_parameters(k):
        raise ValueError(f"a D4-symmetric k={k} kernel has {n_parameters(k)} parameters, got {len(list(weights))} "
                         f"weights")
    if start is None:
        positive_int("L0", L0)
        if L0 & (L0 - 1):
            raise ValueError(f"L0 must be a power of two, got L0={L0}")
    else:
        if start.ndim != 3 or start.shape[1] != start.shape[2]:
            raise ValueError(f"the stored configurations must have shape (configs, L0, L0), got {tuple(start.shape)}")
        L0 = int(start.shape[1])
        if L0 & (L0 - 1):
            raise ValueError(f"the stored configurations' L0={L0} is not a power of two")
        if start.shape[0] < configs:
            raise ValueError(f"configs={configs} exceeds the {start.shape[0]} stored configurations")
    L = L0 * 2 ** levels
    have = host_memory()
    need = min(batch, configs) * L * L * 8 * 4
    if have is not None and need > have:
        raise ValueError(f"upscaling to L={L} in batches of {min(batch, configs)} needs about "
                         f"{need / 2**30:.3g} GiB, more than this machine's {have / 2**30:.3g} GiB")
    return L0, L


def _exponents(out_sizes: dict) -> dict:
    """gamma/nu (from chi) and 1/nu (from c_me) between every size L and L/4 that were both analysed."""
    exponents = {"gamma_nu": {}, "one_nu": {}}
    for size in out_sizes:
        if size // 4 in out_sizes:
            big, small = out_sizes[size], out_sizes[size // 4]
            exponents["gamma_nu"][f"{size},{size // 4}"] = fss_exponent(big["chi"], small["chi"])
            exponents["one_nu"][f"{size},{size // 4}"] = fss_exponent(big["c_me"], small["c_me"])
    return exponents


def generate_and_analyse(weights: Any, k: int, *, levels: int, configs: int, L0: int = 1, start: Any = None,
                         convention: str = "paper", backend: Any = "numpy", device: Any = None, seed: int = 0,
                         batch: int = 256, bins: int = 32, dtype: str = "float64") -> dict:
    """Generate ``configs`` configurations of size L0 2^levels and analyse every level.

    Returns {"sizes": {L: {name: Estimate}}, "exponents": {"gamma_nu": {"L,L/4": Estimate},
    "one_nu": {...}}, "timing": {...}, "configs", "k", "weights", "convention", "L0"}.
    ``start``: stored configurations (configs, L0, L0) of +-1 (host NumPy) instead of random single spins.
    ``dtype``: of the field, the probabilities and the uniforms ("float32" is about twice as fast and
    draws each site with a probability within 2**-24 of Eq. 9's).
    """
    L0, L = _check_generation(weights, k, levels, configs, L0, start, batch, convention, dtype)
    be = get_backend(backend, device)
    rng = be.rng(seed)
    theory = Ising(beta=K_CRITICAL, dim=2)
    sizes = [L0 * 2 ** n for n in range(levels + 1) if L0 * 2 ** n >= 4]
    per_level: dict[int, list] = {size: [] for size in sizes}
    t0 = time.perf_counter()
    samples = 0
    for first in range(0, configs, batch):
        n = min(batch, configs - first)
        mu = random_spins(rng, n, L0, be.xp, be.device) if start is None else \
            be.from_numpy(start[first:first + n, ...])
        for s in upscale(mu, weights, k, rng, levels, convention, keep=True, dtype=be.dtype(dtype)):
            size = int(s.shape[1])
            if size in per_level:
                per_level[size].append({name: be.to_numpy(v) for name, v in
                                        measure_spins(s, theory, be.xp.float64).items()})
        samples += n * L * L
    seconds = time.perf_counter() - t0
    label = new_ensemble_id("upscaled")
    out_sizes = {}
    for size, parts in per_level.items():
        hx = array_namespace(parts[0]["m"])
        series = {name: hx.reshape(hx.concat([p[name] for p in parts]), (-1, 1)) for name in parts[0]}
        # configurations are independent: one "chain" of configs; one binning shared by every level
        out_sizes[size] = ensemble_spins(series, size * size, theory, ensemble=label, bins=min(bins, configs))
    exponents = _exponents(out_sizes)
    return {"k": k, "weights": [float(w) for w in weights], "convention": convention, "L0": L0, "levels": levels,
            "dtype": dtype,
            "configs": configs, "backend": be.name, "sizes": out_sizes, "exponents": exponents,
            "timing": {"generate_seconds": seconds,
                       "site_samples_per_second": samples / seconds if seconds > 0 else math.nan}}


#: the format tag of a saved kernel
KERNEL_MODEL_FORMAT = "portable_lattice.upscaler/1"


def save_kernel_model(path: str, k: int, weights: Any, info: dict) -> None:
    """Write a k x k kernel as JSON: ``weights`` in the paper's convention, and the provenance in
    ``info`` (its "weighted", "loss" and "data" entries, as :func:`~portable_lattice.nn.upscaler.train_upscaler`
    returns them). A non-finite number (a failed fit's loss) is written as null: JSON has no NaN."""
    blob = {"format": KERNEL_MODEL_FORMAT, "k": k, "weights": [float(w) for w in weights], "convention": "paper",
            "provenance": {key: info[key] for key in ("weighted", "loss", "data") if key in info}}
    with open(path, "w") as f:
        f.write(dumps(blob, indent=1))


def load_kernel_model(path: str, k: int) -> tuple[list[float], dict]:
    """The weights (paper convention) and provenance of a kernel saved by :func:`save_kernel_model`;
    ValueError when the file cannot be read, is not a saved kernel, or holds another kernel size than ``k``."""
    try:
        with open(path) as f:
            blob = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read --net {path!r}: {e}") from e
    if not isinstance(blob, dict) or blob.get("format") != KERNEL_MODEL_FORMAT:
        raise ValueError(f"--net {path!r} is not a saved upscaler (format {KERNEL_MODEL_FORMAT})")
    if blob.get("k") != k:
        raise ValueError(f"--net {path!r} is a k={blob.get('k')} model, but --k {k} was asked for")
    return [float(w) for w in blob["weights"]], dict(blob.get("provenance") or {})
