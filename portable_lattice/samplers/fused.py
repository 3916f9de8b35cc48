r"""What a fused kernel is asked to do: plain data from the core, arithmetic in the backend.

A fused kernel (``fused=True`` on :class:`~portable_lattice.samplers.CheckerboardMetropolis`
and :class:`~portable_lattice.samplers.HMC`) does a whole sweep or trajectory in one pass
over memory. It is the generic path's twin, held **bit-identical** to it: the same random
numbers, the same arithmetic in the same order. The core therefore hands it a *plan*:

* the theory's constants in the order its local functions evaluate them
  (:meth:`Phi4.local_constants`, :meth:`Ising.flip_thresholds`);
* the random stream: under the Philox stream (:mod:`portable_lattice.philox`) its key and
  counter, so the kernel draws every number in registers, with the library's own
  :func:`~portable_lattice.philox.log_unit`, :func:`~portable_lattice.philox.cos_2pi` and
  :func:`~portable_lattice.philox.sqrt_nonnegative` for the normals; under a backend's native
  stream the numbers themselves, drawn by the generic path's calls in the generic path's order.

What remains different, and why it does not matter: the acceptance test ``log u < -dS`` uses
the kernel's logarithm, which may differ from the backend's in the last bit (measured: 0.3%
of float64 arguments for NumPy's SIMD log); a decision flips only when ``-dS`` falls between
the two, about once in 10^16 updates in float64 and once in 10^7 or 10^8 in float32. HMC's
action and kinetic-energy sums run in another order (rounding of order 1e-16 relative in dH).
"""
from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from .._delegation import capability_name, fused_kernel
from ..lattice import Checkerboard
from ..theories.base import FIELD, family_of
from ..philox import KERNEL_CONSTANTS, cos_2pi_scalar, is_philox, log_unit_reduced_scalar, sqrt_reduced_scalar

__all__ = ["philox_normal", "FusedUniforms", "checkerboard_plan", "hmc_plan", "kernel_for", "stream_plan", "advance_stream",
           "uses_philox", "check_philox_range"]

#: dimensions the fused kernels are written for
FUSED_DIMS = (2, 3)


def _backend_name(x: Any) -> str:
    mod = type(x).__module__.split(".")[0]
    dev = getattr(x, "device", "cpu")
    return f"{mod} arrays on {dev}"


def kernel_for(name: str, x: Any):
    """The fused kernel ``name`` for ``x``, or a ValueError naming the capability."""
    fn = fused_kernel(name, x)
    if fn is None:
        raise ValueError(f"fused=True: no backend has the capability {capability_name('fused', name)!r} for "
                         f"{_backend_name(x)} (numpy and torch on the CPU need numba: pip install "
                         f"'portable-lattice[fast]'; torch and cupy on a GPU need triton); "
                         f"see portable_lattice.backends.CAPABILITIES")
    return fn


def _check_dim(x: Any) -> int:
    d = x.ndim - 1
    if d not in FUSED_DIMS:
        raise ValueError(f"the fused kernels are written for d in {FUSED_DIMS}, got a {d}-dimensional lattice")
    return d


def _float_name(x: Any, dtype: Any) -> str:
    """"float32" or "float64" for a dtype of ``x``'s namespace; TypeError otherwise."""
    xp = array_namespace(x)
    for name in ("float32", "float64"):
        if dtype == getattr(xp, name):
            return name
    raise TypeError(f"fused kernels compute in float32 or float64, got dtype={dtype!r}")


def _block_index(d: int) -> list[int]:
    """bidx[k]: the position of block k (offsets in C order) in its parity's stack, the order of
    :class:`~portable_lattice.lattice.Checkerboard` and so of the generic path's blocked draws."""
    board = Checkerboard(d)
    out = [0] * 2 ** d
    for p in (0, 1):
        for j, k in enumerate(board.members(p)):
            out[k] = j
    return out


def _phi4_plan(theory: Any, rule: Any, x: Any, d: int, hits: int, dtype: Any) -> dict:
    field = _float_name(x, x.dtype)
    if _float_name(x, dtype) != field:
        raise TypeError(f"the fused phi^4 sweep computes in the field's dtype ({field}), got dtype={dtype!r}")
    # draws per sweep: a normal and a uniform per hit and parity
    # a native stream's draws: the normals unscaled, the kernel scales them in the same pass
    return {"kind": "phi4", "dim": d, "hits": int(hits), "dtype": field, "step_size": float(rule.step_size),
            "draw_args": {"scaled": False},
            "constants": theory.local_constants(), "block_index": _block_index(d), "draws_per_sweep": 4 * hits}


def _ising_plan(theory: Any, rule: Any, x: Any, d: int, hits: int, dtype: Any) -> dict:
    if "int8" not in str(x.dtype):
        raise TypeError(f"the fused Ising sweep works on int8 spins, got spins.dtype={x.dtype}")
    # draws per sweep: 32 random bits per hit and parity
    return {"kind": "ising", "dim": d, "draw_args": {}, "hits": int(hits), "thresholds": list(theory.flip_thresholds(d)),
            "offset": 4 * d + 1, "block_index": _block_index(d), "draws_per_sweep": 2 * hits}


#: the fused checkerboard kernels by the name a rule gives (``Rule.fused_kind``), and their plans
CHECKERBOARD_PLANS = {"phi4": _phi4_plan, "ising": _ising_plan}


def checkerboard_plan(theory: Any, rule: Any, x: Any, hits: int, dtype: Any) -> dict:
    """The plan of one fused checkerboard sweep (both parities, ``hits`` per site), or a
    ValueError/TypeError naming what no fused kernel does."""
    d = _check_dim(x)
    build = CHECKERBOARD_PLANS.get(rule.fused_kind(theory))  # the rule knows its fast path
    if build is None:
        raise ValueError(f"no fused checkerboard kernel for the rule {type(rule).__name__} on {type(theory).__name__} "
                         f"(there are two: GaussianShift on Phi4, SpinFlip on Ising with uniform couplings)")
    return build(theory, rule, x, d, hits, dtype)


def hmc_plan(hmc: Any, phi: Any) -> dict:
    """The plan of one fused HMC trajectory: the theory's constants and the integrator's
    whole sequence with its (coefficient x dt) products, computed as the generic path does."""
    d = _check_dim(phi)
    if family_of(hmc.theory) is not FIELD:
        raise ValueError(f"the fused HMC trajectory is written for Phi4, got {type(hmc.theory).__name__}")
    seq = hmc.integrator.sequence(hmc.n_steps)
    return {"kind": "hmc", "dim": d, "dtype": _float_name(phi, phi.dtype),
            "constants": hmc.theory.local_constants(), "constant_per_site": hmc.theory.constant_per_site,
            "sequence": [(kind, c * hmc.dt) for kind, c in seq]}


def uses_philox(rng: Any) -> bool:
    """Is ``rng`` the Philox stream (whose numbers a kernel can draw in registers)?"""
    return is_philox(rng)


def stream_plan(rng: Any, draws_per_sweep: int) -> dict:
    """Under the Philox stream: its key and the counter of the sweep's first draw."""
    if not uses_philox(rng):
        return {"stream": "native"}
    if rng.draws + draws_per_sweep > 2 ** 32:
        raise ValueError(f"the Philox counter range is exhausted: draw {rng.draws} + {draws_per_sweep}")
    # the library's own log, cos and sqrt as scalar functions (a kernel compiles these; the
    # log and the sqrt after their exact power-of-two reductions, which a kernel may do on
    # the bits) and their constants (for kernels that load them), so its normals are the
    # generic path's
    return {"stream": "philox", "key": (int(rng.k0), int(rng.k1)), "draw": int(rng.draws),
            "normal_math": (log_unit_reduced_scalar, cos_2pi_scalar, sqrt_reduced_scalar),
            "normal_constants": KERNEL_CONSTANTS}


def uniform_at(rng: Any, draw: int, shape: tuple, dtype: Any) -> Any:
    """``rng.uniform(shape, dtype)`` at the Philox counter ``draw`` (a draw a fused step has
    reserved), leaving the generator's counter where it is."""
    saved = rng.draws
    rng.draws = draw
    try:
        return rng.uniform(shape, dtype)
    finally:
        rng.draws = saved


def advance_stream(rng: Any, draws: int) -> None:
    """Move the Philox counter past the draws a fused sweep made in registers."""
    rng.draws += draws


def check_philox_range(x: Any, per_site_words: int) -> None:
    """A chain's draw must fit the 32-bit block counter (4 words per block)."""
    n = 1
    for s in x.shape[1:]:
        n *= int(s)
    if x.shape[0] > 2 ** 32 or n * per_site_words > 4 * 2 ** 32:
        raise ValueError(f"a lattice of shape {tuple(x.shape)} is beyond the Philox counter range "
                         f"(2^32 chains, 2^34 words per chain and draw)")


def _philox_draw(kind: str, rng: Any, shape: tuple, dtype: Any, like: Any) -> Any:
    """``rng.normal`` or ``rng.uniform`` of ``shape`` (two or more axes), by a fused kernel where
    the backend of ``like`` has one and ``rng`` is the Philox stream (equal bit for bit, and the
    counter advanced the same way; a fused run's hot start), else by the generator itself."""
    kernel = fused_kernel(f"philox_{kind}s", like) if uses_philox(rng) and len(shape) >= 2 else None
    if kernel is None:
        return getattr(rng, kind)(shape, dtype)
    out = kernel(like, tuple(shape), _float_name(like, dtype), stream_plan(rng, 1))
    advance_stream(rng, 1)
    return out


def philox_normal(rng: Any, shape: tuple, dtype: Any, like: Any) -> Any:
    """``rng.normal(shape, dtype)``, fused where it can be (see :func:`_philox_draw`)."""
    return _philox_draw("normal", rng, shape, dtype, like)


class FusedUniforms:
    """``rng`` whose n-d ``uniform`` draws are fused where they can be (a fused run's spin hot
    start, ``theory.random(FusedUniforms(rng, like), ...)``); everything else is ``rng``'s."""

    def __init__(self, rng: Any, like: Any):
        self._rng, self._like = rng, like

    def uniform(self, shape, dtype):
        return _philox_draw("uniform", self._rng, tuple(shape), dtype, self._like)

    def __getattr__(self, name):
        return getattr(self._rng, name)
