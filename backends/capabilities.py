"""One table of the native fast paths and compile routes: which backend has which, and why not.

SciPy's ``xp_capabilities`` pattern. Every entry is a fast path over a generic
Array API twin in the core, held equal to it by a test; a backend without the
path runs the twin. Tests skip with the reason given here.
"""
from __future__ import annotations

__all__ = ["CAPABILITIES", "capability"]

#: path -> {backend key: description if present, or (None, reason) if absent}.
#: Backend keys: "numpy", "torch:cpu", "torch:cuda", "cupy", "array_api_strict".
CAPABILITIES: dict[str, dict[str, object]] = {
    "cluster_labels": {
        "numpy": "scipy.sparse.csgraph.connected_components on a CSR lattice graph",
        "torch:cpu": "SciPy's connected components through zero-copy NumPy views",
        "torch:cuda": "Triton union-find (Komura 2015) where triton is installed (d = 2, 3; else, and without "
                      "triton, generic label propagation on the GPU)",
        "cupy": "cupyx.scipy.sparse.csgraph, only where RAPIDS' pylibcugraph is installed",
        "array_api_strict": (None, "a test backend: the generic path is what it checks"),
    },
    "cluster_ids": {
        "numpy": "SciPy's component numbering (already in order of the smallest site)",
        "torch:cpu": "SciPy's numbering through zero-copy NumPy views",
        "torch:cuda": (None, "ranked generic labels"),
        "cupy": (None, "ranked labels from cluster_labels"),
        "array_api_strict": (None, "a test backend: the generic path is what it checks"),
    },
    "lookup": {
        "numpy": (None, "array-api-compat's take is already one gather"),
        "torch:cpu": "torch.index_select (array-api-compat's take remaps negative indices first)",
        "torch:cuda": "torch.index_select",
        "cupy": (None, "cupy.take is already one gather"),
        "array_api_strict": (None, "a test backend"),
    },
    "upscale_field": {
        "numpy": (None, "the generic coarse-lattice rolls are the NumPy path"),
        "torch:cpu": "one conv2d with the four block offsets as channels, then pixel_shuffle",
        "torch:cuda": "one conv2d with the four block offsets as channels, then pixel_shuffle",
        "cupy": (None, "the generic coarse-lattice rolls run on the GPU"),
        "array_api_strict": (None, "a test backend"),
    },
    "torch.compile": {
        "numpy": (None, "no tracing compiler for NumPy arrays"),
        "torch:cpu": "Inductor (C++/OpenMP), opt-in: simulate(..., compile=True)",
        "torch:cuda": "Inductor (Triton), opt-in",
        "cupy": (None, "no tracing compiler for CuPy arrays"),
        "array_api_strict": (None, "a test backend"),
    },
    "fused_checkerboard": {
        "numpy": "Numba @njit(parallel=True): both parities in place, phi^4 and Ising (pip install "
                 "'portable-lattice[fast]')",
        "torch:cpu": "the Numba kernel through zero-copy NumPy views",
        "torch:cuda": "Triton: one launch per parity, Philox numbers in registers (triton ships with torch's "
                      "CUDA builds)",
        "cupy": "the Triton kernel on zero-copy torch views (torch.as_tensor of the CUDA array interface), "
                "where torch with CUDA and triton are installed",
        "array_api_strict": (None, "a test backend: the generic path is what it checks"),
    },
    "fused_hmc": {
        "numpy": "Numba @njit(parallel=True): one pass per integration step",
        "torch:cpu": "the Numba kernel through zero-copy NumPy views",
        "torch:cuda": "Triton: one launch per integration step, the Hamiltonian's sums in the first and last",
        "cupy": "the Triton kernel on zero-copy torch views, where torch with CUDA and triton are installed",
        "array_api_strict": (None, "a test backend: the generic path is what it checks"),
    },
    "fused_cluster_labels": {
        "numpy": (None, "SciPy's connected components (cluster_labels) are already one native call"),
        "torch:cpu": (None, "SciPy's connected components through zero-copy NumPy views (cluster_labels)"),
        "torch:cuda": "Triton union-find (Komura 2015): union by atomic minimum, flatten, check; canonical "
                      "labels; d = 2, 3, below 2^31 sites",
        "cupy": (None, "cupyx's connected components where pylibcugraph is installed, else generic label "
                       "propagation (the Triton kernel takes torch tensors)"),
        "array_api_strict": (None, "a test backend: the generic path is what it checks"),
    },
    "inplace_site_writes": {
        "numpy": "array-api-extra's at(...).set: O(1) per random-site update",
        "torch:cpu": "array-api-extra's at(...).set",
        "torch:cuda": "array-api-extra's at(...).set",
        "cupy": "array-api-extra's at(...).set",
        "array_api_strict": (None, "no in-place writes in the standard: one-hot where(), O(V) per update"),
    },
}


def capability(path: str, backend: str, device: str | None = None) -> tuple[bool, str]:
    """(present, description or reason) of ``path`` on ``backend`` (and ``device`` for torch)."""
    if path not in CAPABILITIES:
        raise ValueError(f"unknown capability path={path!r}; choose one of {sorted(CAPABILITIES)}")
    key = backend
    if backend == "torch":
        key = "torch:cuda" if device and str(device).startswith("cuda") else "torch:cpu"
    entry = CAPABILITIES[path].get(key)
    if entry is None:
        raise ValueError(f"unknown backend={backend!r}")
    if isinstance(entry, tuple):
        return False, entry[1]
    return True, entry
