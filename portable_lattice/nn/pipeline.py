"""The PEM pipeline: ground truth, (training), surrogate Metropolis and PEM, compared (Sec. III of [PEM]).

Used by ``portable-lattice pem`` and ``studies/pem``. Torch-only (it trains the
residual CNN ensemble), so it lives in the model zoo, not the core.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from portable_lattice import Phi4, run
from portable_lattice.backends import get_backend
from portable_lattice.observables import ensemble_phi4, measure_phi4
from portable_lattice.samplers import surrogate_metropolis
from portable_lattice.surrogates import ExactGradient, NoisyOracle
from portable_lattice.surrogates.calibration import residual_summary
from portable_lattice.surrogates.data import gradient_dataset

__all__ = ["run_pem"]

OBSERVABLES = ("action", "m_abs", "chi", "chi_abs", "phi2", "binder")


def _z(a, b):
    import math
    err = math.hypot(a.error, b.error)
    return (a.value - b.value) / err if err > 0 else float("nan")


def run_pem(*, beta: float, g: float, L: int, ensemble: int = 10, surrogate: str = "cnn", oracle_sigma: float = 1.0,
            train_configs: int = 90, epochs: int = 150, channels: int = 16, mode: str = "parallel",
            step: float = 1.0, chains: int = 8, therm: int = 200, sweeps: int = 1000, backend: Any = "numpy",
            seed: int = 0, log: Callable[[str], None] | None = None, keep_series: bool = False,
            save_ensemble_to: str | None = None, load_ensemble_from: str | None = None) -> dict:
    """Run exact, surrogate and PEM Metropolis on the same parameters and compare their observables.

    ``save_ensemble_to`` keeps the trained ensemble (weights and provenance, a safe format);
    ``load_ensemble_from`` skips the training and uses a saved ensemble (a warning if it was
    trained for other parameters, an error for another architecture).
    """
    from .train import load_ensemble, save_ensemble, train_ensemble
    from portable_lattice.backends.surrogate import TorchEnsemble

    from portable_lattice._checks import nonnegative_int, positive_float, positive_int
    if surrogate not in ("cnn", "oracle"):
        raise ValueError(f"surrogate must be 'cnn' or 'oracle', got surrogate={surrogate!r}")
    # every size is checked by name before any data are generated or a network is built
    for name, value in (("L", L), ("ensemble", ensemble), ("train_configs", train_configs), ("epochs", epochs),
                        ("channels", channels), ("chains", chains), ("sweeps", sweeps)):
        positive_int(name, value)
    nonnegative_int("therm", therm)
    positive_float("step", step)
    if surrogate == "oracle":
        positive_float("oracle_sigma", oracle_sigma)
    if ensemble < 2:
        raise ValueError(f"PEM needs an ensemble of N >= 2, got ensemble={ensemble}")
    action = Phi4.from_beta_g(beta, g)
    be = get_backend(backend)
    log = log or (lambda s: None)
    timing, training = {}, {}
    t0 = time.perf_counter()
    # every method starts from the same equilibrated HMC configurations (as in the paper), so
    # none spends its run leaving a hot start or a domain-wall state in the ordered phase
    pool = 2 * train_configs if surrogate == "cnn" and not load_ensemble_from else 0
    held_out = max(64, chains)
    phi, grad = gradient_dataset(action, L, pool + held_out, chains=chains, seed=seed + 1, backend=backend)
    start = phi[pool + held_out - chains:, ...]
    if (save_ensemble_to or load_ensemble_from) and surrogate != "cnn":
        raise ValueError("saving or loading an ensemble applies to --surrogate cnn")
    if surrogate == "cnn":
        if load_ensemble_from:
            models, meta = load_ensemble(load_ensemble_from, expect={"beta": beta, "g": g, "L": L})
            curves = meta.get("curves") or [[float("nan")] for _ in models]
            log(f"loaded {len(models)} members from {load_ensemble_from}")
        else:
            log(f"training {ensemble} members on {train_configs} of {pool} configurations, {epochs} epochs")
            models, curves = train_ensemble(ensemble, be.to_numpy(phi[:pool]), be.to_numpy(grad[:pool]),
                                            subset=train_configs, epochs=epochs, channels=channels, seed=seed,
                                            log=log)
            if save_ensemble_to:
                save_ensemble(save_ensemble_to, models, {"beta": beta, "g": g, "L": L, "train_configs": train_configs,
                                                         "epochs": epochs, "channels": channels, "seed": seed,
                                                         "curves": [list(map(float, c)) for c in curves]})
                log(f"saved the ensemble to {save_ensemble_to}")
        provider = TorchEnsemble(models)
        held_out_pred = provider(phi[pool:])[0]
        if load_ensemble_from:
            training = {"members": len(models), "loaded_from": load_ensemble_from,
                        **{k: meta.get(k) for k in ("train_configs", "epochs", "channels", "seed")}}
        else:
            training = {"members": ensemble, "train_configs": train_configs, "pool": pool, "epochs": epochs,
                        "channels": channels}
        training.update({"final_loss": [c[-1] for c in curves],
                         "residuals": {k: v for k, v in residual_summary(held_out_pred, grad[pool:]).items()
                                       if k not in ("edges", "density")}})
        if keep_series:
            training["residual_values"] = be.to_numpy(held_out_pred - grad[pool:]).ravel().tolist()
        timing["training_seconds"] = time.perf_counter() - t0
    results, series = {}, {}
    for i, method in enumerate(("exact", "surrogate", "pem")):
        rng = be.rng(seed + 10 + i)
        if method == "exact":
            prov = ExactGradient(action)
        elif surrogate == "oracle":
            prov = NoisyOracle(action, oracle_sigma, ensemble, rng)
        else:
            prov = provider
        kernel = surrogate_metropolis(action, prov, step, mode, penalty=(method == "pem"))
        t = time.perf_counter()
        res = run(kernel, start, rng, n_therm=therm, n_measure=sweeps,
                  measure=lambda p: measure_phi4(p, action), analyse=lambda s: ensemble_phi4(s, L * L, L),
                  to_host=be.to_numpy, progress=False)
        timing[f"{method}_seconds"] = time.perf_counter() - t
        results[method] = res
        log(f"{method}: action {res.observables['action']}, |M| {res.observables['m_abs']}, "
            f"chi {res.observables['chi']}")
        if keep_series:
            series[method] = res.series
    out = {"parameters": {"beta": beta, "g": g, "L": L, "ensemble": ensemble, "surrogate": surrogate,
                          "oracle_sigma": oracle_sigma if surrogate == "oracle" else None, "mode": mode,
                          "chains": chains, "therm": therm, "sweeps": sweeps, "backend": be.name, "seed": seed},
           "methods": {}, "training": training, "timing": timing}
    for method, res in results.items():
        obs = {k: res.observables[k] for k in OBSERVABLES}
        out["methods"][method] = {
            "observables": {k: {"value": e.value, "error": e.error} for k, e in obs.items()},
            "z": {k: (0.0 if method == "exact" else _z(obs[k], results["exact"].observables[k])) for k in obs},
            "acceptance": float(res.series["acceptance"].mean())}
    if keep_series:
        out["series"] = series
    return out
