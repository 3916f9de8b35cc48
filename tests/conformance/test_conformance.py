"""The quick conformance set, run in CI on every available backend."""
import pytest

from portable_lattice.conformance import exact
from portable_lattice.conformance.__main__ import parse_backends
from portable_lattice.conformance.stats import holm, p_value
from portable_lattice.conformance.suite import CASES, run_case, run_suite


@pytest.fixture(scope="module")
def report():
    # two processes: the quick suite is most of the test time, and CI has two cores
    return run_suite(parse_backends(None), quick=True, log=lambda s: None, workers=2)


def test_quick_suite_passes(report):
    failed = [c for c in report["checks"] if not c["passed"]]
    assert report["n_z_tests"] > 50
    assert not failed, failed


def test_every_backend_took_part(report):
    assert {"numpy", "torch", "array_api_strict"} <= set(report["backends"])


def test_suite_detects_a_wrong_theory():
    """Power: sampling beta = 0.32 checked against beta = 0.3's exact values must fail."""
    case = next(c for c in CASES if c.name == "free-2d-hmc-leapfrog")
    from dataclasses import replace
    from portable_lattice import Phi4
    wrong = replace(case, theory=Phi4.from_beta_g(0.32, 0.0))
    est = run_case(wrong, "numpy").observables
    ref = exact.free_field(0.3, 8, 2)
    z = [est[o].z(ref[o]) for o in ("phi2", "chi")]
    assert max(abs(v) for v in z) > 5


def test_exact_references_agree_with_each_other():
    assert exact.free_field(0.3, 4, 2)["phi2"] == pytest.approx(exact.brute_force_gaussian_check(0.3, 4, 2))
    assert exact.free_field(0.2, 3, 3)["phi2"] == pytest.approx(exact.brute_force_gaussian_check(0.2, 3, 3))
    # Langevin's biased value reduces to the exact one as dt -> 0
    assert exact.free_field_langevin(0.3, 8, 2, 1e-9)["phi2"] == pytest.approx(exact.free_field(0.3, 8, 2)["phi2"])
    # g = 0 single site is the Gaussian exp(-phi^2): <phi^2> = 1/2, <phi^4> = 3/4
    m = exact.single_site_moments(0.0)
    assert m[2] == pytest.approx(0.5) and m[4] == pytest.approx(0.75)


def test_holm():
    assert holm([1e-6, 0.5, 0.01], 1e-3) == [True, False, False]
    assert holm([0.2, 0.3], 1e-3) == [False, False]
    assert p_value(0.0) == 1.0 and p_value(float("inf")) == 0.0


def test_a_crashing_backend_fails_its_case_and_the_suite_goes_on(monkeypatch):
    """A case that raises (as cupyx did without pylibcugraph) is a failed check, not a crash."""
    import portable_lattice.conformance.suite as suite
    keep = [c for c in suite.CASES if c.name == "decoupled-metropolis"]
    monkeypatch.setattr(suite, "CASES", keep)
    monkeypatch.setattr(suite, "SPIN_CASES", [])
    monkeypatch.setattr(suite, "hmc_integrator_checks", lambda name, device: [])

    def broken_oracle(name, device):
        raise RuntimeError("pylibcugraph is not available")
    monkeypatch.setattr(suite, "pem_oracle_checks", broken_oracle)
    real = suite.run_case

    def crash_on_torch(case, name, device=None):
        if name == "torch":
            raise RuntimeError("device lost")
        return real(case, name, device)
    monkeypatch.setattr(suite, "run_case", crash_on_torch)
    report = suite.run_suite([("numpy", None), ("torch", None)], quick=True, log=lambda s: None)
    failed = [(c["case"], c["backend"], c["detail"]) for c in report["checks"] if not c["passed"]]
    assert not report["passed"]
    assert ("decoupled-metropolis", "torch", "RuntimeError: device lost") in failed
    assert ("pem_oracle_checks", "numpy", "RuntimeError: pylibcugraph is not available") in failed
    assert any(c["backend"] == "numpy" and c["kind"] == "exact" and c["passed"] for c in report["checks"])
