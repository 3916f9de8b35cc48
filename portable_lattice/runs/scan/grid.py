"""The grid of a scan: ``--set`` specifications (:func:`parse_sets`), the grid's points in task
order (:func:`grid_points`), each point's directory name (:func:`point_name`), seed
(:func:`task_seed`) and run card (:func:`point_card`)."""
from __future__ import annotations

import itertools
import math
import numbers
import os
import re
from typing import Any

from ...backends.numpy_backend import spawn_seed
from ..cards import CARD_KEYS, check_card
from ..spec import MODEL_KEYS, RunSpec

_INT = re.compile(r"[+-]?\d+")


def _number(text: str, spec: str) -> int | float:
    t = text.strip()
    if _INT.fullmatch(t):
        return int(t)
    try:
        v = float(t)
    except ValueError:
        raise ValueError(f"--set {spec!r}: {t!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"--set {spec!r}: {t!r} is not finite")
    return v


def _clean(x: float) -> float:
    """12 significant digits: 0.2 + 1 * 0.01 is 0.21, not 0.21000000000000002."""
    return float(f"{x:.12g}")


def _value(text: str, spec: str) -> Any:
    t = text.strip()
    if not t:
        raise ValueError(f"--set {spec!r}: an empty value")
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    try:
        return _number(t, spec)
    except ValueError:
        return t  # a string (algorithm, backend, dtype, ...); check_card decides


def parse_sets(specs: list[str]) -> dict[str, list]:
    """``--set`` specifications as {card key: values}; several keys make a product grid.

    ``KEY=a:b:n`` gives n evenly spaced values from a to b inclusive (floats; ints when a and b
    are integer literals and every value is whole), ``KEY=v1,v2,...`` the values listed (ints
    when every value is an integer literal, then floats, then strings; ``true``/``false`` are
    booleans). Each key must be a run-card key (:data:`runs.cards.CARD_KEYS`), given once, with
    distinct values of the key's type; a bad spec is a ValueError naming it.
    """
    if isinstance(specs, str):
        specs = [specs]
    grid: dict[str, list] = {}
    for spec in specs:
        if not isinstance(spec, str) or "=" not in spec:
            raise ValueError(f"--set {spec!r}: expected KEY=a:b:n or KEY=v1,v2,...")
        key, _, rhs = spec.partition("=")
        key = key.strip().replace("-", "_")
        if key not in CARD_KEYS:
            raise ValueError(f"--set {spec!r}: unknown key {key!r}; a card takes {', '.join(CARD_KEYS)}")
        if key in grid:
            raise ValueError(f"--set {spec!r}: {key} is already set; give each key once")
        if not rhs.strip():
            raise ValueError(f"--set {spec!r}: no values after '='")
        if ":" in rhs and "," not in rhs:
            parts = rhs.split(":")
            if len(parts) != 3:
                raise ValueError(f"--set {spec!r}: a range is a:b:n (from a to b, n points)")
            a, b = _number(parts[0], spec), _number(parts[1], spec)
            n = _number(parts[2], spec)
            if not isinstance(n, int) or n < 1:
                raise ValueError(f"--set {spec!r}: the number of points n in a:b:n must be a positive integer, "
                                 f"got {parts[2].strip()!r}")
            if n == 1 and a != b:
                raise ValueError(f"--set {spec!r}: one point from a to b needs a == b (or n >= 2)")
            values: list = [_clean(a + (b - a) * i / (n - 1)) if n > 1 else float(a) for i in range(n)]
            if isinstance(a, int) and isinstance(b, int) and all(v.is_integer() for v in values):
                values = [int(v) for v in values]
        else:
            values = [_value(t, spec) for t in rhs.split(",")]
            if any(isinstance(v, float) for v in values):
                values = [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in values]
        for v in values:
            try:
                check_card({"model": _model_of(key), key: v} if _model_of(key) else {key: v})
            except ValueError as e:
                raise ValueError(f"--set {spec!r}: {str(e).removeprefix('card: ')}") from None
        seen = set()
        for v in values:
            if (type(v), v) in seen:
                raise ValueError(f"--set {spec!r}: the value {v!r} is given twice")
            seen.add((type(v), v))
        grid[key] = values
    return grid


def _model_of(key: str) -> str | None:
    """A model that takes the coupling ``key`` (None for a key that is not a coupling)."""
    return next((m for m, keys in MODEL_KEYS.items() if key in keys), None)


def grid_points(grid: dict[str, list]) -> list[dict]:
    """The grid's points in task order: the product of the values, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return re.sub(r"[^A-Za-z0-9.+-]", "_", str(v))


def point_name(params: dict) -> str:
    """The directory name of a grid point, e.g. ``kappa=0.2_L=16`` (``base`` for an empty grid)."""
    return "_".join(f"{k}={_fmt(v)}" for k, v in params.items()) or "base"


def task_seed(seed: int, index: int) -> int:
    """The seed of task ``index``: ``SeedSequence(seed, spawn_key=(index,))``, as a 63-bit int."""
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer for a scan, got seed = {seed!r}")
    return spawn_seed(seed, index)


def point_card(card: dict, params: dict, index: int) -> dict:
    """The run card of one grid point: the base card with the point's keys and the task's seed."""
    pc = dict(card, **params)
    pc["seed"] = task_seed(pc.get("seed", RunSpec.seed), index)
    if isinstance(pc.get("couplings"), str):
        pc["couplings"] = os.path.abspath(pc["couplings"])  # workers may run elsewhere
    return pc


def _check_point(pc: dict, name: str) -> RunSpec:
    """The checks a run makes before any work, without allocating a lattice (the client may be small)."""
    check_card(pc, source=f"grid point {name}")
    try:
        return RunSpec.from_card(pc)
    except (ValueError, TypeError) as e:
        raise type(e)(f"grid point {name}: {e}") from e
