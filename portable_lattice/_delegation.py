"""Delegation to native fast paths (array-api-extra's pattern: a delegation layer over a generic one).

A kernel routes its pure array arithmetic (never the random numbers, which
stay on the backend's seeded generator) through :func:`accelerated`. By
default that returns the generic Array API function unchanged. A backend may
register an accelerator for its namespace, e.g. torch's ``torch.compile``,
which fuses the same code into one pass over memory; it is opt-in, and tests
hold it equal to the generic twin.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["register_accelerator", "accelerated", "Accelerator", "register_implementation", "implementation",
           "register_fused", "fused_kernel"]


@dataclass(frozen=True)
class Accelerator:
    name: str
    matches: Callable[[Any], bool]   # namespace -> applies?
    enabled: Callable[[], bool]      # switched on by the user?
    wrap: Callable[[Callable], Callable]


_ACCELERATORS: dict[str, Accelerator] = {}
_WRAPPED: dict[tuple[str, Any], Callable] = {}


def register_accelerator(acc: Accelerator) -> None:
    """Register (or replace) a backend's accelerator."""
    _ACCELERATORS[acc.name] = acc
    for key in [k for k in _WRAPPED if k[0] == acc.name]:
        del _WRAPPED[key]


def accelerated(fn: Callable, xp: Any) -> Callable:
    """``fn`` itself, or its fast path for namespace ``xp`` when one is registered and enabled."""
    for acc in _ACCELERATORS.values():
        if acc.enabled() and acc.matches(xp):
            key = (acc.name, fn)
            if key not in _WRAPPED:
                _WRAPPED[key] = acc.wrap(fn)
            return _WRAPPED[key]
    return fn


# --- named operations with backend implementations (always on: they are exact) -------------
_IMPLEMENTATIONS: dict[str, list[tuple[Callable[[Any], bool], Callable]]] = {}


def register_implementation(name: str, matches: Callable[[Any], bool], fn: Callable) -> None:
    """A backend's native implementation of the operation ``name`` for namespaces ``matches``."""
    _IMPLEMENTATIONS.setdefault(name, []).append((matches, fn))


def implementation(name: str, xp: Any, default: Callable) -> Callable:
    """The registered native implementation of ``name`` for ``xp``, else the generic ``default``.

    Backends register when they are loaded (``portable_lattice.backends.get_backend``), so the
    core never imports a backend. A native implementation may decline a call (for example a
    CPU-only routine handed CUDA tensors) by returning ``NotImplemented``: the generic
    ``default`` then runs.
    """
    for matches, fn in _IMPLEMENTATIONS.get(name, []):
        if matches(xp):
            return _with_fallback(fn, default)
    return default


_FALLBACKS: dict[tuple[Callable, Callable], Callable] = {}


def _with_fallback(fn: Callable, default: Callable) -> Callable:
    key = (fn, default)
    if key not in _FALLBACKS:
        def call(*args, **kwargs):
            out = fn(*args, **kwargs)
            return default(*args, **kwargs) if out is NotImplemented else out
        call.native = fn  # the registered function, for tests and the capabilities table
        _FALLBACKS[key] = call
    return _FALLBACKS[key]


# --- fused kernels (opt-in: ``fused=True``): one pass over memory, random numbers in registers ---
_FUSED: dict[str, list[tuple[Callable[[Any], bool], Callable]]] = {}


def register_fused(name: str, matches: Callable[[Any], bool], fn: Callable) -> None:
    """A backend's fused kernel ``name`` for the arrays ``matches(x)`` accepts (namespace and device).

    The kernel takes plain data from the core (a *plan*: the theory's constants, the
    random stream's key and counter or the drawn numbers) and arrays, never a theory or a
    sampler: the core decides what is computed, the kernel only how fast.
    """
    _FUSED.setdefault(name, []).append((matches, fn))


def fused_kernel(name: str, x: Any) -> Callable | None:
    """The fused kernel ``name`` for the array ``x``, or None where no backend has one."""
    for matches, fn in _FUSED.get(name, []):
        if matches(x):
            return fn
    return None
