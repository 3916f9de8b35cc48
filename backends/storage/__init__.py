"""Ensembles on disk, the host I/O under :mod:`portable_lattice.runs.storage`: one interface,
two formats (zarr, the default, and HDF5).

:class:`EnsembleStore` is the interface every format implements (create, open, append, commit,
series, fields, checkpoint, card, versions; :func:`remove_uncommitted`), with the commit
protocol shared; ``EnsembleStore.create(..., format="hdf5")`` picks a format and
``EnsembleStore.open(path)`` recognises it. Backend code: these modules import NumPy, zarr
and h5py, so they live in the backend layer; the run layer reaches them through
:mod:`portable_lattice.runs.storage`.
"""
from . import zarr_store as _zarr_store  # noqa: F401  (registers the format, the default first)
from . import hdf5_store as _hdf5_store  # noqa: F401  (registers the format)
from .base import (COMMIT, FORMATS, STORE_FORMAT, EnsembleStore, StoreError, StoreLockedError, check_output,
                   detect_format, open_ensemble, remove_uncommitted)
from .files import atomic_write, from_json_safe, load_configurations, load_couplings, to_json_safe
from .zarr_store import GROUP

__all__ = ["EnsembleStore", "StoreError", "StoreLockedError", "check_output", "FORMATS", "STORE_FORMAT", "COMMIT",
           "GROUP", "open_ensemble",
           "remove_uncommitted", "detect_format", "load_couplings", "load_configurations", "atomic_write",
           "to_json_safe", "from_json_safe"]
