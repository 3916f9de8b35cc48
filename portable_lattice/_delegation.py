"""Delegation to native fast paths (array-api-extra's pattern: a delegation layer over a generic one).

One registry of *routes*. A route is a backend's fast path for a named operation,
with the backends it serves and a sentence saying what it is; an *absence* says
why a backend has none (the generic Array API twin then runs). The core asks the
registry and never imports a backend; backends register when they are loaded, and
the capabilities table (``portable_lattice.backends.capabilities``) and its docs
page are views of this registry, so the table cannot claim a path nobody registered.

Kinds of route:

``implementation``
    a native implementation of a named operation (always on: it is exact); it may
    decline a call by returning ``NotImplemented``, and the generic twin runs.
``fused``
    a fused kernel (opt-in, ``fused=True``): one pass over memory, random numbers in
    registers. It takes plain data from the core (a *plan*) and arrays, never a
    theory or a sampler: the core decides what is computed, the kernel only how fast.
``accelerator``
    a wrapper of generic array functions (torch's ``torch.compile``), opt-in.
``library``
    a fast path inside a library the core calls (array-api-extra's in-place writes):
    no function is registered, the entry documents what the backend gets.

Tests hold every route equal to its generic twin.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Route", "Absent", "KINDS", "BACKEND_KEYS", "register", "register_absent", "routes", "absences",
           "capability_name", "accelerated", "implementation", "fused_kernel"]

KINDS = ("implementation", "fused", "accelerator", "library")
#: the keys a route serves: a backend, and for torch its device type
BACKEND_KEYS = ("numpy", "torch:cpu", "torch:cuda", "cupy", "array_api_strict")


@dataclass(frozen=True)
class Route:
    """A backend's fast path ``name`` of ``kind``.

    ``matches(x)`` says whether it applies to an array or namespace (asked at call time,
    so a route may depend on a library found only then); ``fn`` is the function
    (for an accelerator, the wrapper of a generic function); ``enabled()`` says whether
    an opt-in accelerator is switched on.
    """
    kind: str
    name: str
    backends: tuple[str, ...]
    doc: str
    matches: Callable[[Any], bool] | None = None
    fn: Callable | None = None
    enabled: Callable[[], bool] | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"route kind={self.kind!r}; choose one of {KINDS}")
        bad = [b for b in self.backends if b not in BACKEND_KEYS]
        if bad or not self.backends:
            raise ValueError(f"route {self.name!r}: backends={self.backends!r}; choose from {BACKEND_KEYS}")
        if (self.fn is None) != (self.kind == "library"):
            raise ValueError(f"route {self.name!r} of kind {self.kind!r}: a function exactly where the kind "
                             f"is not 'library'")


@dataclass(frozen=True)
class Absent:
    """Why backend ``backend`` has no route ``name`` of ``kind`` (``name`` ``"*"``: no route of that
    kind at all, e.g. on a test backend that exists to run the generic path)."""
    kind: str
    name: str
    backend: str
    reason: str


_ROUTES: list[Route] = []
_ABSENT: list[Absent] = []
# (kind, name) -> routes, and kind -> routes: the lookups below run once per kernel step, so they
# read an index rebuilt on registration rather than scan the list
_INDEX: dict[tuple[str, str | None], tuple[Route, ...]] = {}
_WRAPPED: dict[tuple[Route, Any], Callable] = {}
_FALLBACKS: dict[tuple[Callable, Callable], Callable] = {}


def register(route: Route) -> None:
    """Register ``route``, replacing one of the same kind, name and backends (loading twice is harmless)."""
    _ROUTES[:] = [r for r in _ROUTES if (r.kind, r.name, r.backends) != (route.kind, route.name, route.backends)]
    _ROUTES.append(route)
    _WRAPPED.clear()
    _INDEX.clear()


def register_absent(kind: str, name: str, backend: str, reason: str) -> None:
    """Say why ``backend`` has no route ``name`` (or ``"*"``: none) of ``kind``."""
    if backend not in BACKEND_KEYS:
        raise ValueError(f"absence of {name!r}: backend={backend!r}; choose from {BACKEND_KEYS}")
    _ABSENT[:] = [a for a in _ABSENT if (a.kind, a.name, a.backend) != (kind, name, backend)]
    _ABSENT.append(Absent(kind, name, backend, reason))


def routes(kind: str | None = None, name: str | None = None) -> tuple[Route, ...]:
    """The registered routes, in order of registration (optionally of one kind and name)."""
    if kind is None:
        return tuple(r for r in _ROUTES if name is None or r.name == name)
    found = _INDEX.get((kind, name))
    if found is None:
        found = _INDEX[(kind, name)] = tuple(r for r in _ROUTES if r.kind == kind and (name is None or r.name == name))
    return found


def absences() -> tuple[Absent, ...]:
    return tuple(_ABSENT)


def capability_name(kind: str, name: str) -> str:
    """The route's name in the capabilities table: fused kernels are ``fused_<name>``."""
    return f"fused_{name}" if kind == "fused" else name


def accelerated(fn: Callable, xp: Any) -> Callable:
    """``fn`` itself, or its fast path for namespace ``xp`` when an accelerator applies and is switched on."""
    for r in routes("accelerator"):
        if r.enabled() and r.matches(xp):
            key = (r, fn)
            if key not in _WRAPPED:
                _WRAPPED[key] = r.fn(fn)
            return _WRAPPED[key]
    return fn


def implementation(name: str, xp: Any, default: Callable) -> Callable:
    """The registered native implementation of ``name`` for ``xp``, else the generic ``default``.

    A native implementation may decline a call (for example a CPU-only routine handed CUDA
    tensors) by returning ``NotImplemented``: the generic ``default`` then runs.
    """
    for r in routes("implementation", name):
        if r.matches(xp):
            return _with_fallback(r.fn, default)
    return default


def _with_fallback(fn: Callable, default: Callable) -> Callable:
    key = (fn, default)
    if key not in _FALLBACKS:
        def call(*args, **kwargs):
            out = fn(*args, **kwargs)
            return default(*args, **kwargs) if out is NotImplemented else out
        call.native = fn  # the registered function, for tests
        _FALLBACKS[key] = call
    return _FALLBACKS[key]


def fused_kernel(name: str, x: Any) -> Callable | None:
    """The fused kernel ``name`` for the array ``x``, or None where no backend has one."""
    for r in routes("fused", name):
        if r.matches(x):
            return r.fn
    return None
