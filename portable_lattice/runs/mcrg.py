"""MCRG runs: generate (or read) a 2D Ising ensemble, block it, and analyse the couplings ([IRG] Sec. V)."""
from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from .._checks import choice, positive_int
from ..backends import backend_of, get_backend
from ..exact import K_CRITICAL
from ..rg.blocking import block_levels
from ..rg.mcrg import BASES, analyse_couplings, measure_couplings
from ..theories import Ising
from .driver import run
from .simulate import make_kernel

__all__ = ["run_mcrg", "analyse_ensemble"]


def _check_levels(L: int, levels: int, pair: int | None) -> int:
    positive_int("levels", levels)
    if L % (2 ** levels) or L // 2 ** levels < 3:
        raise ValueError(f"L must be divisible by 2**levels with a blocked lattice of at least 3 sites per side; "
                         f"got L={L} and levels={levels}")
    pair = levels - 1 if pair is None else pair
    if isinstance(pair, bool) or not isinstance(pair, int) or not 0 <= pair < levels:
        raise ValueError(f"pair must be a blocking step in 0..levels-1 = 0..{levels - 1}, got pair={pair!r}")
    return pair


def _report(L, beta, configs, levels, pair, algorithm, backend, seconds, steps, basis):
    chosen = steps[pair]
    return {"L": L, "beta": beta, "configs": configs, "levels": levels, "pair": [pair, pair + 1], "basis": basis,
            "algorithm": algorithm, "backend": backend, "seconds": seconds,
            "exponents": chosen["exponents"], "eigenvalues": chosen["eigenvalues"],
            "steps": {f"{n}->{n + 1}": st["exponents"] for n, st in steps.items()}}


def analyse_ensemble(spins: Any, *, levels: int = 2, pair: int | None = None, seed: int = 0,
                     n_blocks: int = 20, batch: int = 256, basis: str = "symmetric") -> dict:
    """MCRG on stored configurations: ``spins`` (configs, L, L) of +-1 (any backend).

    Returns a dict whose "exponents" and "steps" hold Estimates."""
    choice("basis", basis, BASES)
    Ising(beta=0.0, dim=2).check_spins(spins, name="spins")
    L = spins.shape[1]
    pair = _check_levels(L, levels, pair)
    be = backend_of(spins)
    rng = be.rng(seed)
    xp = be.xp
    chunks = []
    for start in range(0, spins.shape[0], batch):
        s = spins[start:start + batch, ...]
        chunks.append(be.to_numpy(xp.stack([measure_couplings(b, basis) for b in block_levels(s, rng, levels)],
                                           axis=1)))
    hx = array_namespace(chunks[0])
    S = hx.concat(chunks, axis=0)
    steps = analyse_couplings(S, n_blocks)
    return _report(L, None, int(S.shape[0]), levels, pair, "stored ensemble", be.name, 0.0, steps, basis)


def run_mcrg(*, L: int = 32, beta: float | None = None, algorithm: str = "swendsen-wang", configs: int = 10000,
             chains: int = 64, therm: int = 200, every: int = 1, levels: int = 2, pair: int | None = None,
             backend: Any = "numpy", device: Any = None, seed: int = 0, progress: bool | None = None,
             n_blocks: int = 20, basis: str = "symmetric") -> dict:
    """Generate a 2D Ising ensemble at ``beta`` (default K_c), block it ``levels`` times and run
    the MCRG analysis.

    ``pair`` selects the blocking step n -> n+1 reported (default: the last,
    levels-1 -> levels); every step's exponents are returned under "steps", as Estimates.
    """
    theory = Ising(beta=K_CRITICAL if beta is None else beta, dim=2)
    choice("basis", basis, BASES)
    for name, v in (("L", L), ("configs", configs), ("chains", chains), ("every", every)):
        positive_int(name, v)
    pair = _check_levels(L, levels, pair)
    choice("algorithm", algorithm, ("swendsen-wang", "wolff", "checkerboard", "heatbath"))
    kernel = make_kernel(theory, algorithm)
    be = get_backend(backend, device)
    rng = be.rng(seed)
    n_measure = -(-configs // chains)

    def measure(s):
        xp = array_namespace(s)
        return {"S": xp.stack([measure_couplings(b, basis) for b in block_levels(s, rng, levels)], axis=1)}

    res = run(kernel, theory.random(rng, (chains, L, L), be.xp.float64), rng, n_therm=therm,
              n_measure=n_measure, every=every, measure=measure, analyse=lambda series: {},
              to_host=be.to_numpy, progress=progress, label=f"mcrg {algorithm} [{be}]")
    S = res.series["S"]  # (n_measure, chains, levels + 1, 36), host
    hx = array_namespace(S)
    S = hx.reshape(S, (-1,) + tuple(S.shape[2:]))
    steps = analyse_couplings(S, n_blocks)
    return _report(L, theory.beta, int(S.shape[0]), levels, pair, algorithm, be.name, res.seconds, steps, basis)
