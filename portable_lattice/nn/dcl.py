r"""Distribution-consistent learning jobs ([DCL]): data, training, learned energies, curves, thermodynamics.

The functions behind ``portable-lattice dcl train | energy | curves | thermo`` and
``studies/dcl``. They train and evaluate torch models on host (NumPy) data, so they live
in ``nn/`` beside the models; the samplers and estimators they call are the core's.

* :func:`make_theory` - Ising, the q-state clock form of Eq. 3 (the paper's "Potts") or
  Edwards-Anderson with Gaussian couplings.
* :func:`train_model` - equilibrium data at beta_O from the library's samplers (the
  paper's single-spin Metropolis with its seeds x period, or decorrelated Swendsen-Wang),
  an autoregressive model fitted to it, the held-out likelihood.
* :func:`energy_test_set` - configurations spanning all energies (App. A.1): chains at a
  ladder of inverse temperatures, negative ones included, binned by energy.
* :func:`energy_rmse` - RMSE of a learned energy against the true one (Table 2).
* :func:`train_ednn_from_model` - EDNN on the autoregressive model's energy labels.
* :func:`temperature_curves` - U and |m| against T with a learned energy and the true one (Fig. 2).
* :func:`thermodynamics` - S, F, U per site from model samples: the paper's estimators and
  the importance-weighted ones (Table 3, Table A1), and an exact independence chain.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import torch

from portable_lattice._checks import choice, positive_float, positive_int
from portable_lattice.backends import get_backend
from portable_lattice.exact import enumerate_theory, ising_torus
from portable_lattice.exact.enumeration import MAX_CONFIGURATIONS
from portable_lattice.observables.thermo import model_thermodynamics
from portable_lattice.statistics import gamma_method
from portable_lattice.runs.driver import run
from portable_lattice.runs.simulate import make_kernel
from portable_lattice.samplers import IndependenceMetropolis, learned_energy_metropolis
from portable_lattice.surrogates.data import spin_dataset
from portable_lattice.observables import measure_spins
from portable_lattice.theories import Clock, EdwardsAnderson, Ising, LearnedEnergy

from .autoregressive import ModelProposal, build_model, train_autoregressive
from .ednn import EDNN, EDNNEnergy, ModelEnergy, merge_ednns, save_ednn, train_ednn

__all__ = ["make_theory", "spin_data", "train_model", "energy_test_set", "energy_rmse", "energy_report",
           "train_ednn_from_model", "square_symmetry", "temperature_curves", "thermodynamics", "exact_reference",
           "BETA_C"]

#: the paper's beta_c (0.4407); K_CRITICAL = 0.440686... is the exact one
BETA_C = 0.4407


def make_theory(model: str, beta: float, *, q: int = 3, L: int | None = None, couplings_seed: int = 0,
                backend: Any = "numpy"):
    """The true theory: ``"ising"``, ``"clock"`` (H = -J sum cos(theta_i - theta_j), Eq. 3) or ``"ea"``
    (Gaussian couplings drawn with ``couplings_seed``; needs L)."""
    choice("model", model, ("ising", "clock", "ea"))
    positive_float("beta", beta)
    if model == "ising":
        return Ising(beta=beta)
    if model == "clock":
        return Clock(beta=beta, q=q)
    if L is None:
        raise ValueError("the Edwards-Anderson model needs L (its couplings are drawn per lattice)")
    return EdwardsAnderson.gaussian(L, 2, couplings_seed, beta=beta, backend=get_backend(backend))


def spin_data(theory, L: int, n: int, *, algorithm: str = "swendsen-wang", seeds: int = 32, period: int = 1,
              therm: int | None = None, seed: int = 0, backend: Any = "numpy", progress: bool | None = None):
    """Equilibrium configurations (host NumPy array) and their provenance.

    ``algorithm="metropolis"`` is the paper's single-spin Metropolis (``period`` single-site updates
    between kept configurations); cluster algorithms need a uniform coupling (Ising, Potts, clock).
    """
    if algorithm in ("swendsen-wang", "wolff") and isinstance(theory, EdwardsAnderson):
        raise ValueError(f"algorithm={algorithm!r} needs uniform couplings; use 'metropolis' or 'checkerboard' "
                         f"for Edwards-Anderson")
    if therm is None:
        # in the algorithm's steps: cluster sweeps, checkerboard sweeps, or single-site updates (metropolis)
        therm = {"swendsen-wang": 200, "wolff": 200, "metropolis": 1000 * L * L}.get(algorithm, 1000)
    be = get_backend(backend)
    spins, info = spin_dataset(theory, L, n, algorithm=algorithm, chains=seeds, period=period, therm=therm,
                               seed=seed, backend=be, progress=progress)
    return be.to_numpy(spins), info


def train_model(theory, L: int, *, configs: int = 20000, arch: str = "pixelcnn", hidden: int = 32, layers: int = 3,
                half: int = 3, head: str = "likelihood", symmetrize: bool = True, epochs: int = 10, batch: int = 128,
                lr: float = 2e-3, algorithm: str = "swendsen-wang", seeds: int = 32, period: int = 2,
                val_configs: int | None = None, seed: int = 0, ordering: str = "spiral", log=None,
                progress: bool | None = None) -> tuple[Any, dict]:
    """Data at the theory's beta (= beta_O), an autoregressive model fitted to it; (model, info)."""
    positive_int("configs", configs)
    val_configs = max(500, configs // 5) if val_configs is None else val_configs
    q = len(tuple(theory.state_values()))
    t0 = time.perf_counter()
    data, dinfo = spin_data(theory, L, configs, algorithm=algorithm, seeds=seeds, period=period, seed=seed,
                            progress=progress)
    val, _ = spin_data(theory, L, val_configs, algorithm=algorithm, seeds=seeds, period=period, seed=seed + 7919,
                       progress=progress)
    data_seconds = time.perf_counter() - t0
    cfg = dict(L=L, q=q, head=head, symmetrize=symmetrize)
    if arch == "gru":
        cfg.update(hidden=hidden, layers=layers, ordering=ordering)
    else:
        cfg.update(channels=hidden, layers=layers, half=half)
    model = build_model(arch, **cfg)
    hist = train_autoregressive(model, data, val, epochs=epochs, batch=batch, lr=lr, seed=seed, log=log)
    info = {"theory": theory.params(), "L": L, "beta_obs": theory.beta, "arch": arch, "config": model.config(),
            "parameters": model.n_parameters(), "data": dict(dinfo, configs=configs, val_configs=val_configs,
                                                               seconds=data_seconds),
            "training": {"epochs": epochs, "batch": batch, "lr": lr, "train_loss": hist["train_loss"],
                         "val_nll": hist["val_nll"], "train_nll": hist["train_nll"],
                         "val_nll_final": hist["val_nll_final"], "seconds": hist["seconds"]}}
    return model, info


def energy_test_set(theory, L: int, *, per_level: int = 50, betas: tuple | None = None, chains: int = 64,
                    sweeps: int = 200, seed: int = 0, backend: Any = "numpy"):
    """Configurations spanning all energies (App. A.1 of [DCL]), and their true energies.

    Chains at a ladder of inverse temperatures from -1 to 1 (negative beta reaches the
    high energies), checkerboard Metropolis, every configuration binned by its energy,
    at most ``per_level`` kept per energy level. Returns (spins (N, L, L) NumPy, energies (N,)).
    """
    be = get_backend(backend)
    betas = tuple(np.linspace(-1.0, 1.0, 21)) if betas is None else betas
    rng = be.rng(seed)
    kept: dict = {}
    for b in betas:
        # a negative beta is not a physical theory: the kernel runs at |beta| on the sign-flipped couplings
        th = _with_sign(theory, float(b))
        kernel = make_kernel(th, "checkerboard")
        state = kernel.init(theory.random(rng, (chains, L, L), be.xp.float64))
        for sweep in range(sweeps):
            state, _ = kernel.step(state, rng)
            if sweep >= sweeps // 4:
                s = be.to_numpy(state.spins)
                e = be.to_numpy(theory.energy(state.spins, be.xp.float64))
                for si, ei in zip(s, e):
                    key = round(float(ei), 6)
                    bucket = kept.setdefault(key, [])
                    if len(bucket) < per_level:
                        bucket.append(si.copy())
    energies = np.array([k for k, v in kept.items() for _ in v])
    spins = np.stack([c for v in kept.values() for c in v])
    return spins, energies


def _with_sign(theory, beta: float):
    if beta >= 0:
        return dataclasses.replace(theory, beta=beta)
    if isinstance(theory, EdwardsAnderson):
        return dataclasses.replace(theory, beta=-beta, couplings=-theory.couplings)
    return dataclasses.replace(theory, beta=-beta, J=-theory.J)


def energy_rmse(energy_fn, spins, energies) -> dict:
    """RMSE (total energy, units of J) of ``energy_fn(spins) -> E`` against the true ``energies``,
    also per energy level averaged (every level counts once, as the paper's test set weights them)."""
    pred = np.asarray(energy_fn(spins), dtype=np.float64)
    err = pred - np.asarray(energies, dtype=np.float64)
    levels = {}
    for e, d in zip(energies, err):
        levels.setdefault(round(float(e), 6), []).append(d * d)
    return {"rmse": float(np.sqrt(np.mean(err ** 2))),
            "rmse_levels": float(np.sqrt(np.mean([np.mean(v) for v in levels.values()]))),
            "configs": int(len(err)), "levels": len(levels)}


def energy_report(model, theory, *, per_level: int = 50, seed: int = 0, ednn: str | None = None,
                  labels_on: str = "random", ednn_configs: int = 20000, epochs: int = 20, info: dict | None = None,
                  log=None) -> dict:
    """Table 2 for one model: RMSE of -ln P / beta_O + C over a test set spanning all energies, and
    (``ednn`` a path) of an EDNN trained on the model's labels, saved there."""
    beta_obs, L = theory.beta, model.L
    spins, energies = energy_test_set(theory, L, per_level=per_level, seed=seed)
    me = ModelEnergy(model, beta_obs)
    me.set_constant("random", L, seed=seed)
    out = {"L": L, "beta_obs": beta_obs, "test": {"configs": int(len(energies))},
           "model": energy_rmse(lambda s: me.energy(s, np.float64), spins, energies)}
    if ednn:
        net, _, einfo = train_ednn_from_model(model, beta_obs, labels_on=labels_on, configs=ednn_configs,
                                              epochs=epochs, seed=seed, log=log)
        ee = EDNNEnergy(net)
        ee.set_constant("random", L, seed=seed)
        out["ednn"] = dict(energy_rmse(lambda s: ee.energy(s, np.float64), spins, energies), training=einfo)
        save_ednn(ednn, net, {"beta_obs": beta_obs, **(info or {}), **einfo})
    return out


def square_symmetry(x: torch.Tensor, k: int) -> torch.Tensor:
    """Element ``k`` (0..7) of the square's symmetry group on (B, L, L) configurations:
    rotation by k x 90 degrees, then (k >= 4) a transpose. Every one preserves a torus Hamiltonian
    with equal couplings along both axes."""
    if not 0 <= int(k) < 8:
        raise ValueError(f"k must be in 0..7, got k={k!r}")
    y = torch.rot90(x, int(k) % 4, dims=(-2, -1))
    return y.transpose(-2, -1) if k >= 4 else y


def train_ednn_from_model(model, beta_obs: float, *, labels_on: str = "random", configs: int = 20000,
                          epochs: int = 20, batch: int = 256, lr: float = 1e-3, focus: int = 2, context: int = 1,
                          hidden: tuple = (32, 64), seed: int = 0, label_symmetry: str = "none", ensemble: int = 1,
                          log=None) -> tuple[Any, Any, dict]:
    """An EDNN trained by MSE on the autoregressive model's energies (C: mean over random
    configurations zero), labelled on uniformly random configurations (``labels_on="random"``, the
    authors' first code path), on the model's own samples (``"samples"``, the second), or half and
    half (``"both"``: high and low energies, so the EDNN interpolates instead of extrapolating). Returns
    (EDNN, the model's ModelEnergy, info).

    label_symmetry : ``"d4"`` labels each configuration with the model's energy of a randomly rotated or
        reflected copy (one draw per configuration, no extra cost). A raster-order model is not symmetric
        under the square's symmetries although the data are; the EDNN's least-squares target becomes
        the model energy averaged over them. Needs a square lattice whose couplings are the same along
        both axes (the data's symmetry).
    ensemble : K > 1 trains K EDNNs (seeds seed..seed+K-1, the same labels) and merges them into one
        EDNN (:func:`~portable_lattice.nn.ednn.merge_ednns`, hidden widths K times larger) that is their
        mean: it averages out the members' scatter where they extrapolate (the highest energies).
    """
    choice("labels_on", labels_on, ("random", "samples", "both"))
    choice("label_symmetry", label_symmetry, ("none", "d4"))
    positive_int("ensemble", ensemble)
    energy = ModelEnergy(model, beta_obs)
    energy.set_constant("random", model.L, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    vals = model.values.cpu()
    n_random = {"random": configs, "samples": 0, "both": configs // 2}[labels_on]
    parts = []
    if n_random:
        parts.append(vals[torch.randint(model.q, (n_random, model.L, model.L), generator=gen)])
    if configs - n_random:
        parts.append(model.sample(configs - n_random, gen)[0])
    x = torch.cat(parts)
    with torch.no_grad():
        if label_symmetry == "d4":
            g = torch.randint(8, (x.shape[0],), generator=gen)
            y = torch.empty(x.shape[0], dtype=torch.float64)
            for k in range(8):
                sel = g == k
                if bool(sel.any()):
                    y[sel] = energy._energy(square_symmetry(x[sel], k)).double() + energy.shift
        else:
            y = energy._energy(x).double() + energy.shift
    nets, seconds, rmse = [], 0.0, []
    for member in range(ensemble):
        if ensemble > 1:
            torch.manual_seed(seed + member)    # (a single EDNN keeps the caller's generator state)
        net = EDNN(model.q, focus=focus, context=context, hidden=hidden)
        hist = train_ednn(net, x, y, epochs=epochs, batch=batch, lr=lr, seed=seed + member, log=log)
        nets.append(net)
        seconds += hist["seconds"]
        rmse.append(hist["train_rmse"])
    net = nets[0] if ensemble == 1 else merge_ednns(nets)
    return net, energy, {"labels_on": labels_on, "configs": configs, "epochs": epochs,
                         "label_symmetry": label_symmetry, "ensemble": ensemble,
                         "train_rmse": rmse[0] if ensemble == 1 else rmse, "seconds": seconds,
                         "parameters": sum(p.numel() for p in net.parameters())}


def temperature_curves(theory, energy_model, L: int, betas, *, mode: str = "parallel", chains: int = 16,
                       therm: int = 500, sweeps: int = 2000, every: int = 2, seed: int = 0,
                       backend: Any = "numpy", progress: bool | None = None) -> list[dict]:
    """U (the true energy per site of the sampled configurations) and |m| against beta, sampled with the
    learned energy and with the true Hamiltonian (checkerboard Metropolis), with Gamma-method errors."""
    be = get_backend(backend)
    xp = be.xp
    out = []
    for i, b in enumerate(betas):
        row = {"beta": float(b), "T": 1.0 / float(b)}
        true = dataclasses.replace(theory, beta=float(b))
        for label, kernel in (("learned", learned_energy_metropolis(LearnedEnergy(float(b), energy_model, true),
                                                                    mode)),
                              ("true", make_kernel(true, "checkerboard"))):
            rng = be.rng(seed + 1000 * i + (label == "true"))
            s0 = true.random(rng, (chains, L, L), xp.float64)
            res = run(kernel, s0, rng, n_therm=therm, n_measure=sweeps // every, every=every,
                      measure=lambda s: measure_spins(s, true, xp.float64), progress=progress,
                      analyse=lambda series: {k: gamma_method(series[k]) for k in ("energy", "m_abs")},
                      label=f"{label} beta={float(b):.3f}")
            row[label] = {k: res.observables[k].as_dict() for k in ("energy", "m_abs")}
        out.append(row)
    return out


def exact_reference(theory, L: int) -> dict | None:
    """Exact S, F, U per site where known: the Ising torus (any L), or enumeration (q^V small)."""
    if type(theory) is Ising and theory.J == 1.0 and theory.h == 0.0:
        ex = ising_torus(theory.beta, L)
        return {"entropy": ex.entropy, "free_energy": ex.free_energy, "internal_energy": ex.energy}
    q = len(tuple(theory.state_values()))
    if q ** (L * L) <= MAX_CONFIGURATIONS:
        ex = enumerate_theory(theory, L, xp=np)
        return {"entropy": ex.entropy, "free_energy": ex.free_energy, "internal_energy": ex.energy}
    return None


def thermodynamics(model, theory, *, samples: int = 10000, batch: int = 5000, seed: int = 0,
                   energy: Any = None, chain_sweeps: int = 0) -> dict:
    """S, F and U per site at the theory's beta from ``samples`` exact samples of ``model``.

    energy : None (the true Hamiltonian) or a provider (a learned energy: DCL's free energy).
    chain_sweeps : > 0 adds an exact independence Metropolis chain (the model as proposal,
        16 chains) measuring U and |m| with the Gamma method, and its acceptance.
    Returns the JSON of ``dcl thermo``: {"L", "beta", "samples", "entropy": {"paper", "importance"},
    "free_energy": ..., "internal_energy": ..., "ess", "exact"}.
    """
    positive_int("samples", samples)
    if model.L is None or len(tuple(theory.state_values())) != model.q:
        raise ValueError(f"the model has q={model.q}, the theory {len(tuple(theory.state_values()))} states")
    gen = torch.Generator().manual_seed(seed)
    E, LQ = [], []
    t0 = time.perf_counter()
    for start in range(0, samples, batch):
        x, lq = model.sample(min(batch, samples - start), gen)
        xs = x.numpy()
        E.append(theory.energy(xs, np.float64) if energy is None else energy.energy(xs, np.float64))
        LQ.append(lq.double().numpy())
    seconds = time.perf_counter() - t0
    E, LQ = np.concatenate(E), np.concatenate(LQ)
    L = model.L
    est = model_thermodynamics(E, LQ, theory.beta, L * L)
    out = {"L": L, "beta": theory.beta, "samples": samples, "sampling_seconds": seconds, "ess": est["ess"]}
    for name in ("entropy", "free_energy", "internal_energy"):
        out[name] = {kind: est[kind][name].as_dict() for kind in ("paper", "importance")}
    out["exact"] = exact_reference(theory, L) if energy is None else None
    if chain_sweeps:
        out["independence"] = independence_chain(model, theory, chain_sweeps, seed=seed)
    return out


def independence_chain(model, theory, steps: int, *, chains: int = 16, seed: int = 0) -> dict:
    """An exact independence Metropolis chain with the model as proposal: U and |m| per site."""
    be = get_backend("numpy")
    rng = be.rng(seed)
    kernel = IndependenceMetropolis(theory, ModelProposal(model, seed=seed + 1))
    s0 = theory.random(rng, (chains, model.L, model.L), np.float64)
    res = run(kernel, s0, rng, n_therm=min(100, steps // 10), n_measure=steps, progress=False,
              measure=lambda s: measure_spins(s, theory, np.float64),
              analyse=lambda series: {k: gamma_method(series[k]) for k in ("energy", "m_abs")})
    return {"internal_energy": res.observables["energy"].as_dict(), "m_abs": res.observables["m_abs"].as_dict(),
            "acceptance": res.acceptance.as_dict(), "steps": steps, "chains": chains}

