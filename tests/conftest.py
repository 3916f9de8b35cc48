"""The ``backend`` fixture: every test that takes it runs on each installed backend.

numpy, torch (cpu) and array_api_strict always; cupy and torch on cuda when a
GPU is present. Select with ``PL_BACKENDS=numpy,torch:cuda pytest``.
"""
from __future__ import annotations

import os

import pytest

from portable_lattice.backends import available_backends, get_backend


def _selected():
    spec = os.environ.get("PL_BACKENDS")
    if spec:
        return [tuple(s.strip().partition(":")[::2]) for s in spec.split(",")]
    return available_backends()


def pytest_configure(config):
    """One torch thread per pytest-xdist worker: the workers already fill the cores, and torch's
    spinning intra-op threads on an oversubscribed machine make small models 10-30x slower."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # numba's threads likewise (read when numba is first imported)
        os.environ.setdefault("NUMBA_NUM_THREADS", "1")
        try:
            import torch
        except ImportError:
            return
        torch.set_num_threads(1)


BACKEND_PARAMS = [pytest.param((n, d or None), id=n if d in (None, "", "cpu") else f"{n}-{d}") for n, d in _selected()]


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request):
    name, device = request.param
    return get_backend(name, device)


@pytest.fixture
def xp(backend):
    return backend.xp
