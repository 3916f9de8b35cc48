"""Training data for gradient surrogates, from the core samplers.

Equilibrated, decorrelated phi^4 configurations with their exact gradients
(Eq. 4 of [PEM]) as targets. Chains start ordered (a random sign
each), are thermalised by checkerboard Metropolis and then HMC, and are
sampled every ``spacing`` HMC trajectories, several chains side by side.
"""
from __future__ import annotations

from typing import Any

from .._checks import positive_int, run_sizes
from ..backends import get_backend
from ..runs.driver import run, thermalise
from ..runs.simulate import make_kernel
from ..statistics import gamma_method
from ..samplers import HMC, CheckerboardMetropolis, GaussianShift, RandomSiteMetropolis
from ..theories.base import family_of

__all__ = ["gradient_dataset", "stored_gradient_dataset", "spin_dataset"]


def gradient_dataset(theory, L: int, n_configs: int, *, dim: int = 2, chains: int = 8, therm: int = 200,
                     spacing: int = 10, seed: int = 0, backend: Any = "numpy", device: Any = None,
                     progress: bool | None = None) -> tuple[Any, Any]:
    """``n_configs`` configurations and their exact gradients, each (n_configs, L, ..., L), float64.

    ``spacing`` trajectories between kept configurations decorrelates them (tau_int of
    the slowest observable at the parameters of [PEM] is a few trajectories at L = 48).
    """
    positive_int("n_configs", n_configs)
    run_sizes(L=L, dim=dim, chains=chains, therm=therm, sweeps=1, every=spacing)
    be = get_backend(backend, device)
    rng = be.rng(seed)
    per_chain = -(-n_configs // chains)
    xp = be.xp
    # ordered start, a random sign per chain, thermalised first by local Metropolis and then by HMC.
    # In the broken phase a hot start coarsens into domain walls across the torus that neither
    # sampler removes in affordable time (at L = 48, beta = 0.7 they left |M| = 0.8(3) instead of
    # about 1.5); HMC alone from the ordered start is stuck (dH ~ 5 at L = 48, acceptance < 1%).
    sign = xp.where(rng.uniform((chains,), xp.float64) < 0.5, xp.asarray(-1.0, dtype=xp.float64), xp.asarray(1.0, dtype=xp.float64))
    phi0 = xp.asarray(xp.broadcast_to(xp.reshape(sign, (chains,) + (1,) * dim), (chains,) + (L,) * dim), copy=True)
    local = CheckerboardMetropolis(theory, GaussianShift(1.0))
    state = thermalise(local, phi0, rng, therm)
    res = run(HMC(theory, traj_length=1.0, n_steps=10), state.phi, rng,
              n_therm=therm, n_measure=per_chain, every=spacing, measure=lambda phi: {"phi": phi},
              analyse=lambda series: {}, to_host=be.to_numpy, progress=progress, label="training data")
    phi = be.from_numpy(res.series["phi"].reshape((-1,) + (L,) * dim)[:n_configs], "float64")
    return phi, theory.grad_action(phi)


def spin_dataset(theory, L: int, n_configs: int, *, algorithm: str = "swendsen-wang", chains: int = 32,
                 period: int = 1, therm: int = 1000, seed: int = 0, dim: int = 2, backend: Any = "numpy",
                 device: Any = None, progress: bool | None = None) -> tuple[Any, dict]:
    """``n_configs`` equilibrium spin configurations (n_configs, L, ..., L) of ``theory``, and their
    provenance (what [DCL] calls seeds x sampling period).

    algorithm : "swendsen-wang" (decorrelated: ``period`` cluster sweeps between kept
        configurations), "metropolis" (the paper's single-spin Metropolis: ``period`` single-site
        updates per chain between kept configurations, ``therm`` likewise in single-site updates),
        or any other spin algorithm of :func:`~portable_lattice.runs.simulate.make_kernel` (``period``
        in its steps).
    chains : independent chains ("seeds"), each from a hot start; configurations interleave chains.

    The returned info holds the measured integrated autocorrelation time of |m| and of the energy
    in kept configurations (Gamma method), so the decorrelation can be stated.
    """
    positive_int("n_configs", n_configs)
    run_sizes(L=L, dim=dim, chains=chains, therm=therm, sweeps=1, every=period)
    be = get_backend(backend, device)
    rng = be.rng(seed)
    xp = be.xp
    per_chain = -(-n_configs // chains)
    s0 = theory.random(rng, (chains,) + (L,) * dim, xp.float64)
    if algorithm == "metropolis":
        # thermalise with whole sweeps of random-site updates (the same chain, fewer kernel calls), then
        # keep one configuration every `period` single-site updates
        rule = make_kernel(theory, "metropolis").rule
        V = L ** dim
        sweeper = RandomSiteMetropolis(theory, rule)
        state = thermalise(sweeper, s0, rng, -(-therm // V))
        s0 = state.spins
        kernel = RandomSiteMetropolis(theory, rule, updates=period)
        n_therm = 0
        every = 1
    else:
        kernel = make_kernel(theory, algorithm)
        n_therm, every = therm, period

    def measure(s):
        return {"s": s, "m_abs": xp.abs(theory.magnetisation(s, xp.float64)),
                "energy": theory.energy(s, xp.float64)}

    res = run(kernel, s0, rng, n_therm=n_therm, n_measure=per_chain, every=every, measure=measure,
              analyse=lambda series: {}, to_host=be.to_numpy, progress=progress, label="spin data")
    spins = res.series["s"].reshape((-1,) + (L,) * dim)[:n_configs]
    info = {"algorithm": algorithm, "chains": chains, "period": period, "therm": therm, "seed": seed,
            "tau_int": {k: {"value": est.tau_int, "error": est.tau_int_error}
                        for k, est in ((k, gamma_method(res.series[k])) for k in ("m_abs", "energy"))},
            "seconds": res.seconds}
    return be.from_numpy(spins), info


def stored_gradient_dataset(theory, path: str, n_configs: int | None = None, *, backend: Any = "numpy",
                            device: Any = None) -> tuple[Any, Any]:
    """Training data from a stored ensemble (a run with ``--out`` and ``--save-every``): its saved
    phi^4 configurations, every chain, and their exact gradients for ``theory``.

    The store's physics must be the theory's: a store made at other couplings is refused
    (a surrogate trained on it would be biased).
    """
    from ..runs.cards import card_from_theory
    from ..runs.storage import open_ensemble
    if family_of(theory).discrete:
        raise TypeError(f"training data need a field theory (phi^4), got {type(theory).__name__}")
    ens = open_ensemble(path)
    card = ens["card"]
    want = card_from_theory(theory)
    for key, value in want.items():
        if card.get(key) != value:
            raise ValueError(f"the ensemble at {path!r} has {key} = {card.get(key)!r}, the theory {key} = {value!r}")
    fields = ens["fields"]
    if fields.shape[0] == 0:
        raise ValueError(f"the ensemble at {path!r} holds no saved configurations (run it with --save-every N)")
    flat = fields.reshape((-1,) + tuple(fields.shape[2:]))
    if n_configs is not None:
        positive_int("n_configs", n_configs)
        if n_configs > flat.shape[0]:
            raise ValueError(f"n_configs={n_configs} exceeds the {flat.shape[0]} stored configurations in {path!r}")
        flat = flat[:n_configs]
    be = get_backend(backend, device)
    phi = be.from_numpy(flat, "float64")
    return phi, theory.grad_action(phi)
