"""Ensembles on disk and configuration files: the runs' view of the host I/O in
:mod:`portable_lattice.backends.storage` (which imports NumPy and zarr, so it
lives in the backend layer; see that module for the layout and the commit protocol)."""
from ..backends.storage import (load_couplings, load_configurations, StoreError, atomic_write, to_json_safe, from_json_safe, EnsembleStore, open_ensemble, STORE_FORMAT, COMMIT, GROUP)

__all__ = ["load_couplings", "load_configurations", "StoreError", "atomic_write", "to_json_safe", "from_json_safe", "EnsembleStore", "open_ensemble", "STORE_FORMAT", "COMMIT", "GROUP"]
