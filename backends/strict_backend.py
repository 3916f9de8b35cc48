"""array_api_strict backend: proves the core uses nothing outside the standard.

Random numbers are drawn with NumPy on the host and wrapped, which is fine:
the point of this backend is portability, not speed.
"""
from __future__ import annotations

import numpy as np

from ._base import Backend, BackendUnavailableError
from .numpy_backend import NumpyGenerator

__all__ = ["make_backend"]


def _import():
    try:
        import array_api_strict
    except ImportError as e:  # pragma: no cover - depends on the install
        raise BackendUnavailableError(
            "backend='array_api_strict' needs the array-api-strict package: "
            "pip install 'portable_lattice[test]'") from e
    return array_api_strict


class StrictGenerator:
    def __init__(self, seed: int, xp, device):
        self._np = NumpyGenerator(seed)
        self._xp, self._device = xp, device

    def _wrap(self, a):
        return self._xp.asarray(a, device=self._device)

    def uniform(self, shape, dtype):
        return self._wrap(self._np.uniform(shape, dtype))

    def normal(self, shape, dtype):
        return self._wrap(self._np.normal(shape, dtype))

    def integers(self, high, shape):
        return self._wrap(self._np.integers(high, shape))

    def bits32(self, shape):
        return self._wrap(self._np.bits32(shape))

    def get_state(self):
        return self._np.get_state()

    def set_state(self, state):
        self._np.set_state(state)


#: the strictest flags: no boolean indexing and no data-dependent output shapes, so the core is
#: held to what every array library (and every compiler) can do
STRICT_FLAGS = {"boolean_indexing": False, "data_dependent_shapes": False}


def make_backend(device=None) -> Backend:
    xp = _import()
    xp.set_array_api_strict_flags(**STRICT_FLAGS)
    dev = xp.Device("CPU_DEVICE")
    if device not in (None, "cpu", "CPU_DEVICE", dev):
        raise BackendUnavailableError(
            f"the array_api_strict backend has only the CPU device, got device={device!r}")
    return Backend(
        name="array_api_strict", xp=xp, device=dev,
        _make_rng=lambda seed: StrictGenerator(seed, xp, dev),
        _to_numpy=lambda a: np.from_dlpack(a) if hasattr(a, "__dlpack__") else np.asarray(a),
        _from_numpy=lambda a: xp.asarray(np.asarray(a), device=dev),
    )


def _register():
    from portable_lattice._delegation import KINDS, register_absent
    for kind in KINDS:
        register_absent(kind, "*", "array_api_strict", "a test backend: the generic path is what it checks")
    register_absent("library", "inplace_site_writes", "array_api_strict",
                    "no in-place writes in the standard: one-hot where(), O(V) per update")


_register()
