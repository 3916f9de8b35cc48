r"""Inverse RG: upscale Ising configurations with a learned, D4-symmetric kernel (Eq. 9 of [IRG]).

One upscaling level takes coarse spins mu on an L x L torus to fine spins sigma
on 2L x 2L: nearest-neighbour x2 upsampling (each coarse spin fills its 2 x 2
block), a k x k convolution W with circular (periodic) padding, and

    p(sigma_i = +1 | mu) = 1 / (1 + exp(-2 (W mu)_i)),

independently for every fine site (the +-1 convention of Eq. 9). No bias term
keeps the Z2 symmetry. W is invariant under the square's rotations and
reflections, so it has (r + 1)(r + 2)/2 free parameters for r = (k - 1)/2:
3, 6 and 10 for k = 3, 5, 7.

**Parameter order** (both conventions): the classes of offsets (a, b),
a >= b >= 0, shell by shell: shell 1 is (1, 1), (1, 0), (0, 0); shell r >= 2
is (r, r), (r, 0), (r, r - 1), ..., (r, 1). This is the order of the
inverse-RG authors' public code. Its weights act on 0/1 spins with the tied
bias -sum(W)/2, which equals Eq. 9 with W_paper = W_code / 4: pass
``convention="code"`` to use such weights as they are.

**Lattices smaller than the kernel** (the first levels from a single spin): the
kernel's taps wrap around the torus, so a tap at offset d acts on the site
x + d mod L, and taps that land on the same site add. This is the convolution
on the torus, the physically right continuation of circular padding; [IRG]'s
code instead switches to its k = 3 model for the first levels.

Generation is core code: it runs unchanged on every backend, with the
backend's random numbers.
"""
from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace, device as device_of

from .._checks import choice, positive_int
from .._delegation import implementation

__all__ = ["kernel_classes", "n_parameters", "symmetric_kernel", "coarse_kernels", "upscale_field",
           "upscale_field_generic",
           "upscale_probabilities",
           "upscale_once", "upscale", "random_spins", "CONVENTIONS"]

CONVENTIONS = ("paper", "code")


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 3 or k % 2 == 0:
        raise ValueError(f"k must be an odd integer >= 3 (the kernel is k x k around a site), got k={k!r}")
    return k


def kernel_classes(k: int) -> list[tuple[int, int]]:
    """The D4 classes of offsets of a k x k kernel, as representatives (a, b), a >= b >= 0, in the
    parameter order of the module docstring."""
    r_max = (_check_k(k) - 1) // 2
    out = [(1, 1), (1, 0), (0, 0)]
    for r in range(2, r_max + 1):
        out += [(r, r), (r, 0)] + [(r, b) for b in range(r - 1, 0, -1)]
    return out


def n_parameters(k: int) -> int:
    """(r + 1)(r + 2)/2 = (k + 1)(k + 3)/8 free parameters of a D4-symmetric k x k kernel."""
    return len(kernel_classes(k))


def _class_of(dx: int, dy: int) -> tuple[int, int]:
    a, b = abs(dx), abs(dy)
    return (a, b) if a >= b else (b, a)


def _check_weights(weights: Any, k: int, convention: str) -> list[float]:
    choice("convention", convention, CONVENTIONS)
    try:
        w = [float(v) for v in weights]
    except TypeError as e:
        raise TypeError(f"weights must be a sequence of {n_parameters(k)} numbers for k={k}, got {weights!r}") from e
    if len(w) != n_parameters(k):
        raise ValueError(f"a D4-symmetric k={k} kernel has {n_parameters(k)} parameters, got {len(w)} weights")
    if not all(math.isfinite(v) for v in w):
        raise ValueError(f"weights must be finite, got {w}")
    # the code's weights act on 0/1 spins with a tied bias: Eq. 9's W is a quarter of them
    return [v / 4.0 for v in w] if convention == "code" else w


def symmetric_kernel(weights: Any, k: int, convention: str = "paper") -> list[list[float]]:
    """The k x k kernel (host lists; row = dx + r, column = dy + r) from its free parameters."""
    w = _check_weights(weights, _check_k(k), convention)
    index = {c: i for i, c in enumerate(kernel_classes(k))}
    r = (k - 1) // 2
    return [[w[index[_class_of(dx, dy)]] for dy in range(-r, r + 1)] for dx in range(-r, r + 1)]


def coarse_kernels(w: list[float], k: int) -> dict[tuple[int, int], dict[tuple[int, int], float]]:
    """For each fine offset o in {0, 1}^2 inside its 2 x 2 block, the kernel on the coarse lattice:
    K_o(D) = sum of w(d) over the taps d with floor((o + d) / 2) = D, since the upsampled spin
    at 2X + o + d is mu(X + floor((o + d) / 2)). Zero entries are dropped."""
    r = (k - 1) // 2
    index = {c: i for i, c in enumerate(kernel_classes(k))}
    out = {}
    for o in ((0, 0), (0, 1), (1, 0), (1, 1)):
        K: dict[tuple[int, int], float] = {}
        for dx in range(-r, r + 1):
            for dy in range(-r, r + 1):
                D = ((o[0] + dx) // 2, (o[1] + dy) // 2)
                K[D] = K.get(D, 0.0) + w[index[_class_of(dx, dy)]]
        out[o] = {D: v for D, v in K.items() if v != 0.0}
    return out


def _field_generic(mu: Any, kernels: dict, dtype: Any) -> Any:
    """(W mu)_i on the fine lattice, computed on the coarse one: per block offset o, a coarse
    convolution with K_o (about (r + 2)^2 taps on a quarter of the sites, the rolls shared by
    the four offsets), then the four quarter lattices interleaved."""
    xp = array_namespace(mu)
    m = xp.astype(mu, dtype)
    rolled: dict[tuple[int, int], Any] = {}
    h = {}
    for o, K in kernels.items():
        total = None
        for D, v in K.items():
            if D not in rolled:
                # mu(X + D) at every coarse X: rolls wrap, so taps wrap on tori smaller than the kernel
                rolled[D] = m if D == (0, 0) else xp.roll(m, shift=(-D[0], -D[1]), axis=(1, 2))
            term = v * rolled[D]
            total = term if total is None else total + term
        h[o] = xp.zeros_like(m) if total is None else total
    chains, L = mu.shape[0], mu.shape[1]
    rows = [xp.stack([h[(a, 0)], h[(a, 1)]], axis=-1) for a in (0, 1)]  # (chains, L, L, 2) each
    return xp.reshape(xp.stack(rows, axis=2), (chains, 2 * L, 2 * L))


def upscale_field(mu: Any, weights: Any, k: int, convention: str = "paper", dtype: Any = None) -> Any:
    """(W mu)_i of Eq. 9 at every fine site: (chains, 2L, 2L) as ``dtype`` (default float64).

    The circular convolution of the upsampled spins, computed on the coarse lattice (the
    upsampled field is constant on 2 x 2 blocks). A backend may register a native twin
    (``"upscale_field"``: torch's conv2d), held equal to this one by a test.
    """
    xp = _check_mu(mu)
    w = _check_weights(weights, _check_k(k), convention)
    dtype = xp.float64 if dtype is None else dtype
    return implementation("upscale_field", xp, _field_generic)(mu, coarse_kernels(w, k), dtype)


def upscale_field_generic(mu: Any, weights: Any, k: int, convention: str = "paper", dtype: Any = None) -> Any:
    """The generic Array API twin of :func:`upscale_field` (for tests and the capabilities table)."""
    xp = _check_mu(mu)
    return _field_generic(mu, coarse_kernels(_check_weights(weights, _check_k(k), convention), k),
                          xp.float64 if dtype is None else dtype)


def upscale_probabilities(mu: Any, weights: Any, k: int, convention: str = "paper", dtype: Any = None) -> Any:
    """p(sigma_i = +1 | mu) = 1 / (1 + exp(-2 (W mu)_i)) at every fine site (Eq. 9 of [IRG])."""
    xp = array_namespace(mu)
    h = upscale_field(mu, weights, k, convention, dtype)
    return 1.0 / (1.0 + xp.exp(-2.0 * h))


def _check_mu(mu: Any) -> Any:
    xp = array_namespace(mu)
    if mu.ndim != 3 or mu.shape[1] != mu.shape[2]:
        raise ValueError(f"spins must have shape (configs, L, L), got shape {tuple(mu.shape)}")
    if not xp.isdtype(mu.dtype, "integral"):
        raise TypeError(f"spins must be integer +-1 (int8), got dtype {mu.dtype}")
    return xp


def upscale_once(mu: Any, weights: Any, k: int, rng, convention: str = "paper", dtype: Any = None) -> Any:
    """One level: fine int8 spins (chains, 2L, 2L) drawn from Eq. 9 given the coarse ``mu``.

    ``dtype`` (default float64) is that of the field, the probabilities and the uniforms;
    float32 is faster and draws each site with a probability within 2**-24 of Eq. 9's.
    """
    xp = _check_mu(mu)
    p = upscale_probabilities(mu, weights, k, convention, dtype)
    u = rng.uniform(tuple(p.shape), p.dtype)
    one = xp.asarray(1, dtype=xp.int8, device=device_of(mu))
    return xp.where(u < p, one, -one)


def random_spins(rng, configs: int, L0: int, xp, device=None) -> Any:
    """Independent fair +-1 spins (configs, L0, L0): the starting point L0 = 1 of [IRG]."""
    positive_int("configs", configs)
    positive_int("L0", L0)
    u = rng.uniform((configs, L0, L0), xp.float64)
    one = xp.asarray(1, dtype=xp.int8, device=device)
    return xp.where(u < 0.5, one, -one)


def upscale(mu: Any, weights: Any, k: int, rng, levels: int, convention: str = "paper",
            keep: bool = False, max_bytes: int | None = None, dtype: Any = None) -> Any:
    """``levels`` upscaling steps from ``mu`` (configs, L0, L0): the fine spins (configs, L0 2^n, L0 2^n),
    or with ``keep=True`` the list of every level [mu, level 1, ..., level n].

    Refuses, before any work, a result whose float64 working arrays would exceed
    ``max_bytes`` (default: no limit; the CLI passes the machine's memory).
    """
    _check_mu(mu)
    positive_int("levels", levels)
    _check_weights(weights, _check_k(k), convention)
    configs, L0 = mu.shape[0], mu.shape[1]
    L = L0 * 2 ** levels
    need = configs * L * L * 8 * 4  # the field, the probabilities, the uniforms and the rolls
    if max_bytes is not None and need > max_bytes:
        raise ValueError(f"{configs} configurations upscaled {levels} times to L={L} need about "
                         f"{need / 2**30:.3g} GiB, more than the {max_bytes / 2**30:.3g} GiB available")
    out = [mu]
    for _ in range(levels):
        out.append(upscale_once(out[-1], weights, k, rng, convention, dtype))
        if not keep:
            out = out[-1:]
    return out if keep else out[-1]
