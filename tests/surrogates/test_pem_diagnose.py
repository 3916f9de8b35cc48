"""The PEM diagnosis study's error statistics on synthetic ensembles with known error structure."""
import importlib.util
import math
import os

import numpy as np
import pytest

pytest.importorskip("torch")


def _study():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "studies", "pem", "diagnose.py")
    spec = importlib.util.spec_from_file_location("pem_diagnose", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("rho", [0.0, 0.6])
def test_error_statistics_recover_the_shared_part(rho):
    """Member errors sigma_k (sqrt(rho) shared + sqrt(1 - rho) own): the measured correlation is rho
    and the calibration ratio sqrt((rho + (1 - rho)/N) / ((1 - rho)/N)). 32 x 16^2 sites per
    statistic: the bounds are > 6 standard errors (false-alarm rate < 1e-8)."""
    study = _study()
    rng = np.random.default_rng(3)
    n_members, n, L, sigma_k = 10, 32, 16, 0.2
    exact = rng.normal(size=(n, L, L))
    phi = rng.normal(size=(n, L, L))
    shared = rng.normal(size=(n, L, L))
    own = rng.normal(size=(n_members, n, L, L))
    members = exact[None] + sigma_k * (math.sqrt(rho) * shared[None] + math.sqrt(1 - rho) * own)
    out = study.error_statistics(members, exact, phi, step=1.0)
    assert abs(out["member_error_correlation"][0] - rho) < 0.03
    expected = math.sqrt(1.0 + rho * n_members / (1 - rho))
    assert abs(out["calibration"][0] / expected - 1) < 0.05
    assert abs(out["rms_sigma"][0] / (sigma_k * math.sqrt(1 - rho)) - 1) < 0.05
    assert abs(out["mean_penalty"][0] / (sigma_k ** 2 * (1 - rho) / (2 * n_members)) - 1) < 0.05
    assert abs(out["error_slope_vs_phi"][0]) < 6 * out["error_slope_vs_phi"][1]
