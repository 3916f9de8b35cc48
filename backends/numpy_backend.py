"""NumPy backend: the CPU reference."""
from __future__ import annotations

import numpy as np
import array_api_compat.numpy as xp_numpy

from ._base import Backend, BackendUnavailableError, check_shape

__all__ = ["make_backend", "NumpyGenerator"]


class NumpyGenerator:
    """PCG64 stream; draws of shape ``(chains, ...)`` give each chain its own numbers."""

    def __init__(self, seed: int):
        self._g = np.random.Generator(np.random.PCG64(seed))

    def uniform(self, shape, dtype):
        return self._g.random(check_shape(shape), dtype=dtype)

    def normal(self, shape, dtype):
        return self._g.standard_normal(check_shape(shape), dtype=dtype)

    def integers(self, high, shape):
        return self._g.integers(0, high, size=check_shape(shape), dtype=np.int64)

    def get_state(self):
        return {"kind": "numpy-pcg64", "state": self._g.bit_generator.state}

    def set_state(self, state):
        if state.get("kind") != "numpy-pcg64":
            raise ValueError(f"state is not a numpy generator state: kind={state.get('kind')!r}")
        self._g.bit_generator.state = state["state"]


def make_backend(device=None) -> Backend:
    if device not in (None, "cpu"):
        raise BackendUnavailableError(
            f"the numpy backend runs on the CPU only, got device={device!r}")
    return Backend(
        name="numpy", xp=xp_numpy, device="cpu",
        _make_rng=NumpyGenerator,
        _to_numpy=np.asarray,
        _from_numpy=lambda a: np.asarray(a),
    )
