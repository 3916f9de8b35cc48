"""The capabilities table: which backend has which native fast path, and why not.

SciPy's ``xp_capabilities`` pattern, derived rather than written: the table is a
view of the core's delegation registry (``portable_lattice._delegation``), which
every backend module fills when it is imported, so it lists exactly what is
registered. Every entry is a fast path over a generic Array API twin in the core,
held equal to it by a test; a backend without the path runs the twin, and the
table gives the reason. ``docs/capabilities.md`` renders :func:`markdown` at build
time (``docs/_hooks/capabilities.py``).
"""
from __future__ import annotations

from portable_lattice._delegation import BACKEND_KEYS, absences, capability_name, routes

# importing a backend's module registers its routes; none imports its array library at import
# time, so the whole table is known on a machine without torch, CuPy or a GPU
from . import cupy_backend as _cupy_backend  # noqa: F401
from . import numpy_backend as _numpy_backend  # noqa: F401
from . import strict_backend as _strict_backend  # noqa: F401
from . import torch_backend as _torch_backend  # noqa: F401

__all__ = ["CAPABILITIES", "capability", "table", "markdown"]

def table() -> dict[str, dict[str, object]]:
    """path -> {backend key: description where a route is registered, else (None, reason)}.

    Backend keys: ``BACKEND_KEYS`` ("numpy", "torch:cpu", "torch:cuda", "cupy", "array_api_strict").
    A path with a backend that has neither a route nor a stated reason is an error: the
    registry must say why a backend runs the generic twin.
    """
    out: dict[str, dict[str, object]] = {}
    kinds: dict[str, str] = {}
    for r in routes():
        path = capability_name(r.kind, r.name)
        kinds[path] = r.kind
        entry = out.setdefault(path, {})
        for key in r.backends:
            entry.setdefault(key, r.doc)
    reasons = {(a.kind, a.name, a.backend): a.reason for a in absences()}
    for path, entry in out.items():
        kind = kinds[path]
        name = path.removeprefix("fused_") if kind == "fused" else path
        for key in BACKEND_KEYS:
            if key in entry:
                continue
            reason = reasons.get((kind, name, key), reasons.get((kind, "*", key)))
            if reason is None:
                raise RuntimeError(f"the delegation registry has neither a route nor a reason for {path!r} on "
                                   f"{key!r}: register one (portable_lattice._delegation.register_absent)")
            entry[key] = (None, reason)
        out[path] = {key: entry[key] for key in BACKEND_KEYS}
    return out


#: the table as it stands once every backend module is imported (see :func:`table`)
CAPABILITIES: dict[str, dict[str, object]] = table()


def capability(path: str, backend: str, device: str | None = None) -> tuple[bool, str]:
    """(present, description or reason) of ``path`` on ``backend`` (and ``device`` for torch)."""
    current = table()
    if path not in current:
        raise ValueError(f"unknown capability path={path!r}; choose one of {sorted(current)}")
    key = backend
    if backend == "torch":
        key = "torch:cuda" if device and str(device).startswith("cuda") else "torch:cpu"
    entry = current[path].get(key)
    if entry is None:
        raise ValueError(f"unknown backend={backend!r}")
    if isinstance(entry, tuple):
        return False, entry[1]
    return True, entry


def markdown() -> str:
    """The table as a Markdown section per path (rendered into ``docs/capabilities.md``)."""
    lines = []
    kinds = {capability_name(r.kind, r.name): r.kind for r in routes()}
    for path, entry in table().items():
        lines += [f"### `{path}` ({kinds[path]})", "", "| backend | fast path (or why the generic twin runs) |",
                  "|---|---|"]
        for key, value in entry.items():
            text = f"generic: {value[1]}" if isinstance(value, tuple) else f"**{value}**"
            lines.append(f"| {key} | {text.replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)
