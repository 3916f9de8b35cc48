"""Ensembles on disk as the run layer sees them: the :class:`Store` protocol, and the stores.

The stores read and write host files (NumPy, zarr, HDF5), so they live in the backend layer
(:mod:`portable_lattice.backends.storage`: the commit protocol, the zarr and HDF5 formats,
the NumPy file readers); this module is the run layer's one door to them. A format is a
subclass of ``EnsembleStore`` registered in ``FORMATS``.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ..backends.storage import (COMMIT, FORMATS, GROUP, STORE_FORMAT, EnsembleStore, StoreError, StoreLockedError,
                                atomic_write, check_output,
                                detect_format, from_json_safe, load_configurations, load_couplings, open_ensemble,
                                remove_uncommitted, to_json_safe)

__all__ = ["Store", "EnsembleStore", "StoreError", "StoreLockedError", "check_output", "FORMATS", "STORE_FORMAT",
           "COMMIT", "GROUP", "open_ensemble",
           "remove_uncommitted", "detect_format", "load_couplings", "load_configurations", "atomic_write",
           "to_json_safe", "from_json_safe"]


@runtime_checkable
class Store(Protocol):
    """What the run layer asks of an ensemble store (``EnsembleStore`` and each format)."""

    path: str
    commit_record: dict

    @property
    def format(self) -> str: ...
    @property
    def card(self) -> dict: ...
    @property
    def versions(self) -> dict: ...
    @property
    def n_meas(self) -> int: ...
    def set_card(self, card: dict) -> None: ...
    def series(self) -> dict: ...
    def fields(self) -> Any: ...
    def field_steps(self) -> Any: ...
    def couplings(self) -> Any: ...
    def checkpoint(self) -> dict: ...
    def append(self, series: dict, fields: Any = None, field_steps: Any = None) -> None: ...
    def commit(self, record: dict, checkpoint: dict) -> None: ...
    def close(self) -> None: ...
