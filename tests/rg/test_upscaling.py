"""Inverse-RG upscaling (Eq. 9 of [IRG]): the kernel, the field against SciPy, wrapping on small tori,
every backend the same, and the Bernoulli draws against their probabilities."""
import json
import math
import warnings

import numpy as np
import pytest
import scipy.ndimage as ndi

from portable_lattice.rg.upscaling import (kernel_classes, n_parameters, random_spins, symmetric_kernel, upscale,
                                           upscale_field, upscale_probabilities)


def _mu(seed, shape=(3, 8, 8)):
    return np.random.default_rng(seed).choice(np.array([-1, 1], np.int8), size=shape)


@pytest.mark.parametrize("k,count", [(3, 3), (5, 6), (7, 10), (9, 15)])
def test_kernel_is_d4_symmetric_with_the_paper_count(k, count):
    assert n_parameters(k) == count == (k + 1) * (k + 3) // 8
    w = np.random.default_rng(k).normal(size=count)
    K = np.array(symmetric_kernel(w, k))
    for image in (K.T, K[::-1], K[:, ::-1], np.rot90(K)):
        np.testing.assert_array_equal(K, image)
    assert len(set(kernel_classes(k))) == count
    # the code's weights act on 0/1 spins with a tied bias: 4x the paper's
    np.testing.assert_allclose(symmetric_kernel(4 * w, k, "code"), K)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_field_is_the_circular_convolution_of_the_upsampled_spins(k):
    mu = _mu(k)
    w = np.random.default_rng(10 + k).normal(size=n_parameters(k))
    up = np.repeat(np.repeat(mu, 2, axis=1), 2, axis=2).astype(float)
    K = np.array(symmetric_kernel(w, k))
    ref = np.stack([ndi.correlate(u, K, mode="wrap") for u in up])
    np.testing.assert_allclose(upscale_field(mu, w, k), ref, atol=1e-12)


def test_taps_wrap_on_a_torus_smaller_than_the_kernel():
    """From one spin the 2 x 2 lattice is uniform, so every tap reads mu: p = sigmoid(2 mu sum(W))."""
    w = [0.3, -0.1, 0.2, 0.05, 0.01, -0.02, 0.04, 0.03, -0.01, 0.02]
    mu = np.array([[[1]], [[-1]]], np.int8)
    total = float(np.sum(symmetric_kernel(w, 7)))
    p = upscale_probabilities(mu, w, 7)
    np.testing.assert_allclose(p[0], 1 / (1 + math.exp(-2 * total)))
    np.testing.assert_allclose(p[1], 1 / (1 + math.exp(2 * total)))


def test_every_backend_generates_the_same_configurations(backend):
    w = [0.12, 0.21, 0.33]
    from portable_lattice.backends import get_backend
    ref_be = get_backend("numpy")
    ref_rng = ref_be.rng(5)
    ref = upscale(random_spins(ref_rng, 6, 1, ref_be.xp), w, 3, ref_rng, levels=4)
    rng = backend.rng(5)
    out = upscale(random_spins(rng, 6, 1, backend.xp, backend.device), w, 3, rng, levels=4)
    if backend.name == "cupy" or str(backend.device).startswith("cuda"):
        # another generator: compare the probabilities of one level instead
        mu = backend.from_numpy(_mu(2))
        np.testing.assert_allclose(backend.to_numpy(upscale_probabilities(mu, w, 3)),
                                   upscale_probabilities(_mu(2), w, 3), rtol=1e-12)
        return
    np.testing.assert_array_equal(backend.to_numpy(out), ref)


def test_draws_follow_their_probabilities():
    """Per-site frequencies of +1 over 4000 draws against p (binomial errors, Bonferroni over 64 sites x 2
    configurations: a false alarm below 1e-4)."""
    from portable_lattice.backends import get_backend
    be = get_backend("numpy")
    w = [0.15, 0.25, 0.4]
    mu = _mu(7, (2, 4, 4))
    p = upscale_probabilities(mu, w, 3)
    n = 4000
    rng = be.rng(11)
    counts = np.zeros(p.shape)
    for _ in range(n // 100):
        batch = np.repeat(mu, 100, axis=0)
        s = upscale(batch, w, 3, rng, levels=1)
        counts += (s.reshape(2, 100, 8, 8) == 1).sum(axis=1)
    z = (counts / n - p) / np.sqrt(p * (1 - p) / n)
    assert np.abs(z).max() < 4.9, np.abs(z).max()


def test_zero_weights_give_independent_fair_spins():
    from portable_lattice.backends import get_backend
    be = get_backend("numpy")
    rng = be.rng(3)
    s = upscale(random_spins(rng, 400, 1, be.xp), [0.0, 0.0, 0.0], 3, rng, levels=4).astype(float)
    m2 = (s.mean(axis=(1, 2)) ** 2)
    V = 256
    # <m^2> = 1/V for independent fair spins; Var(m^2) = (2/V^2)(1 - 1/V) approximately
    z = (m2.mean() - 1 / V) / (m2.std(ddof=1) / math.sqrt(len(m2)))
    assert abs(z) < 4


def test_bad_input_is_named():
    mu = _mu(1)
    with pytest.raises(ValueError, match="k must be an odd integer"):
        upscale_field(mu, [1, 2, 3], 4)
    with pytest.raises(ValueError, match="6 parameters, got 3"):
        upscale_field(mu, [1, 2, 3], 5)
    with pytest.raises(ValueError, match="convention"):
        upscale_field(mu, [1, 2, 3], 3, convention="torch")
    with pytest.raises(ValueError, match="GiB"):
        upscale(mu, [1, 2, 3], 3, None, levels=12, max_bytes=2 ** 30)
    with pytest.raises(ValueError, match="shape"):
        upscale_field(mu[0], [1, 2, 3], 3)


def test_generate_and_analyse_composes_exponents_across_levels():
    from portable_lattice.runs.upscaling import generate_and_analyse
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = generate_and_analyse([0.1, 0.2, 0.3], 3, levels=5, configs=256, seed=1, batch=128)
    assert sorted(out["sizes"]) == [4, 8, 16, 32]
    g = out["exponents"]["gamma_nu"]["32,8"]
    assert math.isfinite(g.value) and 0 < g.error < 0.05
    # chi(32) and chi(8) come from the same configurations: their replicas share one label
    assert set(out["sizes"][32]["chi"].replicas) == set(out["sizes"][8]["chi"].replicas)


def test_upscale_cli_json(capsys):
    import json

    from portable_lattice.cli import main
    assert main(["upscale", "--k", "3", "--weights", "0.4,0.8,1.2", "--convention", "code", "--levels", "4",
                 "--configs", "64", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert main(["upscale", "--k", "3", "--weights", "0.1,0.2,0.3", "--levels", "4", "--configs", "64",
                 "--dtype", "float32", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dtype"] == "float32"
    assert out["model"]["weights"] == [0.1, 0.2, 0.3] and set(out["sizes"]) == {"4", "8", "16"}
    assert "16,4" in out["exponents"]["gamma_nu"]
    for bad, msg in ((["--k", "4"], "odd"), (["--L0", "3"], "power of two"), (["--weights", "1,2"], "3 parameters")):
        args = ["upscale", "--weights", "1,2,3", "--levels", "2", "--configs", "8", *bad]
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 2 and msg in capsys.readouterr().err


@pytest.mark.parametrize("k", [3, 5, 7])
def test_native_field_equals_the_generic_twin(backend, k):
    from portable_lattice.rg.upscaling import upscale_field_generic
    w = np.random.default_rng(k).normal(size=n_parameters(k))
    for shape in ((2, 8, 8), (2, 1, 1), (2, 2, 2)):  # tiny tori: the native path declines, the rolls wrap
        mu = backend.from_numpy(_mu(k, shape))
        a = backend.to_numpy(upscale_field(mu, w, k))
        b = backend.to_numpy(upscale_field_generic(mu, w, k))
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_degenerate_model_gives_nan_exponents_and_a_warning(capsys):
    """Spins that never fluctuate (all ties broken one way) have chi or c_me = 0 at a size:
    the exponent is NaN with a warning, never a ZeroDivisionError."""
    import math

    from portable_lattice.cli import main
    assert main(["upscale", "--k", "7", "--weights", ",".join(["0.1"] * 10), "--levels", "4", "--configs", "64",
                 "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    pairs = out["exponents"] if "exponents" in out else out
    assert "no fluctuations" in captured.err
    assert any(v is None or (isinstance(v, float) and math.isnan(v)) for v in _values(pairs))


def _values(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _values(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _values(v)
    else:
        yield obj
