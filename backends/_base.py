"""What every backend provides beyond the Array API standard.

The standard has no random numbers, no device strings and no way back to
host NumPy; a :class:`Backend` bundles those with the namespace ``xp`` so the
core can stay backend-agnostic.
"""
from __future__ import annotations

import numbers

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

__all__ = ["Backend", "Generator", "BackendUnavailableError", "FLOAT_DTYPES", "float_name"]

FLOAT_DTYPES = ("float32", "float64")


class BackendUnavailableError(ImportError):
    """A backend is unknown, not installed, or has no usable device."""


class Generator(Protocol):
    """Seeded random numbers on one backend and device.

    A generator draws arrays with a leading chain axis. Different chains get
    different (independent) numbers; a run is reproduced bit for bit by the
    same seed, backend, device and chain count. ``get_state``/``set_state``
    give a picklable snapshot for checkpoints.

    ``bits32`` gives 32 random bits per element as int32, i.e. integers uniform
    on [-2**31, 2**31): half the generator work and memory of float64 uniforms,
    for accept/reject steps that compare against a precomputed integer threshold.
    """

    def uniform(self, shape: tuple[int, ...], dtype: Any) -> Any: ...
    def normal(self, shape: tuple[int, ...], dtype: Any) -> Any: ...
    def integers(self, high: int, shape: tuple[int, ...]) -> Any: ...
    def bits32(self, shape: tuple[int, ...]) -> Any: ...
    def get_state(self) -> dict: ...
    def set_state(self, state: dict) -> None: ...


def check_seed(seed: Any) -> int:
    # numbers.Integral admits NumPy integers (a seed scan over np.arange)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got seed={seed!r}")
    return int(seed)


def check_shape(shape: Any) -> tuple[int, ...]:
    shape = tuple(shape)
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise ValueError(f"shape must be a tuple of non-negative integers, got shape={shape!r}")
    return shape


def float_name(dtype: Any) -> str:
    """``"float32"`` or ``"float64"`` for a float dtype given by name or as any library's dtype
    object (NumPy, torch, CuPy, array_api_strict); TypeError for anything else."""
    if isinstance(dtype, str):
        name = dtype
    else:
        name = getattr(dtype, "__name__", None) or str(dtype).rsplit(".", 1)[-1]
    if name not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64 (by name or as a dtype), got dtype={dtype!r}")
    return name


@dataclass(frozen=True)
class Backend:
    """A compute backend: namespace, device and the non-standard extras.

    Attributes
    ----------
    name : str
        ``"numpy"``, ``"torch"``, ``"cupy"`` or ``"array_api_strict"``.
    xp : module
        The Array API namespace (array-api-compat wrapped where needed).
    device : object
        The namespace's device object; every array this backend creates lives there.
    """

    name: str
    xp: Any
    device: Any
    _make_rng: Callable[[int], Generator] = field(repr=False, compare=False)
    _to_numpy: Callable[[Any], Any] = field(repr=False, compare=False)
    _from_numpy: Callable[[Any], Any] = field(repr=False, compare=False)

    @property
    def default_float(self) -> Any:
        """float64: lattice Monte Carlo needs it for reversibility and sums over large volumes."""
        return self.xp.float64

    def dtype(self, name: Any) -> Any:
        """The namespace's float dtype for ``"float32"``/``"float64"`` (or a dtype object)."""
        if isinstance(name, str):
            if name not in FLOAT_DTYPES:
                raise ValueError(f"dtype must be one of {FLOAT_DTYPES}, got dtype={name!r}")
            return getattr(self.xp, name)
        for n in FLOAT_DTYPES:
            if name == getattr(self.xp, n):
                return name
        raise ValueError(f"dtype must be one of {FLOAT_DTYPES}, got dtype={name!r}")

    def rng(self, seed: int) -> Generator:
        """A seeded generator drawing on this backend's device."""
        return self._make_rng(check_seed(seed))

    def to_numpy(self, x: Any) -> Any:
        """Copy an array of this backend to host NumPy (for reporting and analysis)."""
        return self._to_numpy(x)

    def from_numpy(self, x: Any, dtype: Any = None) -> Any:
        """An array of this backend, on its device, from host data."""
        a = self._from_numpy(x)
        return a if dtype is None else self.xp.astype(a, self.dtype(dtype))

    def zeros(self, shape: tuple[int, ...], dtype: Any = "float64") -> Any:
        return self.xp.zeros(tuple(shape), dtype=self.dtype(dtype), device=self.device)

    def __str__(self) -> str:  # e.g. "torch (cuda:0)"
        return f"{self.name} ({self.device})"
