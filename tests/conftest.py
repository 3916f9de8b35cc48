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


BACKEND_PARAMS = [pytest.param((n, d or None), id=n if d in (None, "", "cpu") else f"{n}-{d}") for n, d in _selected()]


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request):
    name, device = request.param
    return get_backend(name, device)


@pytest.fixture
def xp(backend):
    return backend.xp
