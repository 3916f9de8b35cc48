"""The library's one JSON writer: NaN and infinities become null (JSON has no NaN), so every file
and every ``--json`` output is strict JSON that any reader takes."""
from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["json_ready", "dumps"]


def json_ready(obj: Any) -> Any:
    """``obj`` with every non-finite float (in dicts, lists and tuples, at any depth) replaced by None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def dumps(obj: Any, **kw) -> str:
    """Strict JSON text of ``obj`` (non-finite floats as null)."""
    return json.dumps(json_ready(obj), allow_nan=False, **kw)
