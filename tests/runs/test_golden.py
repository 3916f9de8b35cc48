"""The run layer may move; the chains may not: a fixed set of runs gives the results stored
before the move (``golden.py`` made ``data/golden.json``), every stream and family included."""
import json
import math
import os
import sys
import tempfile
import warnings

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden  # noqa: E402

with open(golden.DATA) as f:
    STORED = json.load(f)


def _close(a, b, rel=1e-10):
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        return (a is None or math.isnan(a)) and (b is None or math.isnan(b))
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


@pytest.mark.parametrize("name,model,algorithm,extra", golden.RUNS, ids=[r[0] for r in golden.RUNS])
def test_same_chains_as_before(name, model, algorithm, extra):
    if extra.get("fused"):
        pytest.importorskip("numba")
    if extra.get("backend") == "torch":
        pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = golden.run_one(model, algorithm, extra)
    want = STORED[name]
    assert sorted(got["series_sums"]) == sorted(want["series_sums"])
    for k, v in want["series_sums"].items():
        assert _close(got["series_sums"][k], v), (k, got["series_sums"][k], v)
    assert sorted(got["observables"]) == sorted(want["observables"])
    for k, (v, e) in want["observables"].items():
        gv, ge = got["observables"][k]
        assert _close(gv, v, 1e-9) and _close(ge, e, 1e-6), (k, (gv, ge), (v, e))


def test_stored_and_resumed_run_unchanged():
    pytest.importorskip("zarr")
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")
        got = golden.stored_run(tmp)
    want = STORED["stored-and-resumed"]
    assert got["card"] == want["card"]
    assert _close(got["fields_sum"], want["fields_sum"])
