"""Input validation: every bad argument is named, with its value, before work starts."""
from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["namespace_of", "positive_int", "positive_float", "nonnegative_float", "finite_float", "choice"]


def namespace_of(name: str, x: Any) -> Any:
    """The Array API namespace of ``x``, or a TypeError naming the parameter."""
    from array_api_compat import array_namespace
    try:
        return array_namespace(x)
    except TypeError as e:
        raise TypeError(f"{name} must be an array of a supported backend, got {type(x).__name__}") from e


def _is_real(value: Any) -> bool:
    # numbers.Real includes NumPy's scalar types (a scan over np.linspace passes np.float64)
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    # numbers.Integral includes NumPy's integer scalars (a scan over np.arange passes np.int64)
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(name: str, value: Any) -> int:
    if not _is_int(value) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {name}={value!r}")
    return int(value)


def nonnegative_int(name: str, value: Any) -> int:
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {name}={value!r}")
    return int(value)


def as_int(value: Any) -> Any:
    """Integers of any library as Python ints; anything else unchanged (to be refused by name later)."""
    return int(value) if _is_int(value) else value


def finite_float(name: str, value: Any) -> float:
    if not _is_real(value) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {name}={value!r}")
    return float(value)


def positive_float(name: str, value: Any) -> float:
    v = finite_float(name, value)
    if v <= 0:
        raise ValueError(f"{name} must be positive, got {name}={value!r}")
    return v


def nonnegative_float(name: str, value: Any) -> float:
    v = finite_float(name, value)
    if v < 0:
        raise ValueError(f"{name} must be non-negative, got {name}={value!r}")
    return v


def choice(name: str, value: Any, options) -> Any:
    if value not in options:
        raise ValueError(f"{name} must be one of {sorted(options)}, got {name}={value!r}")
    return value


def run_sizes(*, L, dim, chains, therm, sweeps, every) -> None:
    """The sizes every simulation takes, each checked by name."""
    for name, value in (("L", L), ("dim", dim), ("chains", chains), ("sweeps", sweeps), ("every", every)):
        positive_int(name, value)
    nonnegative_int("therm", therm)
