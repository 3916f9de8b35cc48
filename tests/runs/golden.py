"""A fixed set of small runs whose results must not change when the run layer moves.

``python tests/runs/golden.py`` rewrites ``data/golden.json`` (only on purpose: a change of
stream or result); ``test_golden.py`` reruns the set and compares.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "golden.json")

SIZES = dict(L=6, chains=2, therm=5, sweeps=30, seed=11)
#: (name, model, algorithm, extra keyword arguments)
RUNS = [
    ("phi4-checkerboard-native", "phi4", "checkerboard", {"step": 1.1}),
    ("phi4-checkerboard-philox-fused", "phi4", "checkerboard", {"stream": "philox", "fused": True, "hits": 2}),
    ("phi4-metropolis", "phi4", "metropolis", {}),
    ("phi4-hmc-philox", "phi4", "hmc", {"stream": "philox", "n_steps": 4, "integrator": "omelyan"}),
    ("phi4-hmc-fused", "phi4", "hmc", {"stream": "philox", "fused": True}),
    ("phi4-langevin-3d", "phi4", "langevin", {"dim": 3, "dt": 0.02}),
    ("phi4-mala-f32", "phi4", "mala", {"dtype": "float32"}),
    ("ising-checkerboard-philox", "ising", "checkerboard", {"stream": "philox"}),
    ("ising-checkerboard-fused", "ising", "checkerboard", {"stream": "philox", "fused": True}),
    ("ising-metropolis-h", "ising-h", "metropolis", {}),
    ("ising-sw", "ising", "swendsen-wang", {}),
    ("ising-wolff", "ising", "wolff", {}),
    ("potts-heatbath", "potts", "heatbath", {}),
    ("clock-checkerboard", "clock", "checkerboard", {}),
    ("ea-checkerboard", "ea", "checkerboard", {}),
    ("phi4-torch-philox", "phi4", "checkerboard", {"backend": "torch", "stream": "philox"}),
    ("ising-strict-philox", "ising", "heatbath", {"backend": "array_api_strict", "stream": "philox"}),
]


def _theory(model: str):
    from portable_lattice.backends import get_backend
    from portable_lattice.theories import Clock, EdwardsAnderson, Ising, Phi4, Potts
    return {"phi4": lambda: Phi4.from_beta_g(0.5, 0.1), "ising": lambda: Ising(beta=0.4),
            "ising-h": lambda: Ising(beta=0.3, h=0.2), "potts": lambda: Potts(beta=0.9, q=3),
            "clock": lambda: Clock(beta=1.1, q=5),
            "ea": lambda: EdwardsAnderson.gaussian(6, 2, 3, beta=0.8, backend=get_backend("numpy"))}[model]()


def run_one(model: str, algorithm: str, extra: dict) -> dict:
    from portable_lattice import simulate
    kw = dict(SIZES, **extra)
    res = simulate(_theory(model), algorithm=algorithm, progress=False, **kw)
    be_name = res.meta["backend"]
    import numpy as np
    series = {k: np.asarray(v if be_name == "numpy" else np.asarray(v), dtype=np.float64)
              for k, v in sorted(res.series.items())}
    return {"series_sums": {k: float(v.sum()) for k, v in series.items()},
            "series_digest": hashlib.sha256(b"".join(series[k].tobytes() for k in series)).hexdigest(),
            "observables": {k: [e.value, e.error] for k, e in sorted(res.observables.items())}}


def stored_run(tmp: str) -> dict:
    """A run on disk, stopped half-way and resumed: its card and its streams."""
    import numpy as np

    from portable_lattice import simulate
    from portable_lattice.runs.production import resume
    from portable_lattice.runs.storage import EnsembleStore
    out = os.path.join(tmp, "ens")
    simulate(_theory("phi4"), algorithm="checkerboard", out=out, save_every=3, checkpoint_every=5,
             progress=False, **dict(SIZES, sweeps=10, stream="philox", hits=2))
    resume(out, sweeps=20, progress=False)
    store = EnsembleStore.open(out)
    series = {k: np.asarray(v, dtype=np.float64) for k, v in sorted(store.series().items())}
    return {"card": store.card,
            "series_digest": hashlib.sha256(b"".join(series[k].tobytes() for k in series)).hexdigest(),
            "fields_sum": float(np.asarray(store.fields()[:]).sum())}


def all_runs() -> dict:
    import tempfile
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {name: run_one(model, alg, extra) for name, model, alg, extra in RUNS}
        with tempfile.TemporaryDirectory() as tmp:
            out["stored-and-resumed"] = stored_run(tmp)
    return out


if __name__ == "__main__":
    out = all_runs()
    with open(DATA, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
    print(f"wrote {len(out)} runs to {DATA}", file=sys.stderr)
