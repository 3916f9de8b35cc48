"""Every native fast path equals its generic twin (STYLE: delegation over an agnostic layer)."""
import warnings

import numpy as np
import pytest

from portable_lattice import Phi4
from portable_lattice._delegation import accelerated
from portable_lattice.samplers import HMC, CheckerboardMetropolis, GaussianShift, RandomSiteMetropolis
from portable_lattice.samplers.rules import gaussian_block_update

torch = pytest.importorskip("torch")
from portable_lattice.backends import get_backend  # noqa: E402
from portable_lattice.backends.torch_backend import use_compile  # noqa: E402


def _run(kernel, compiled, steps=3):
    be = get_backend("torch")
    previous = use_compile(compiled)
    try:
        rng = be.rng(3)
        state = kernel.init(rng.normal((2, 4, 4), torch.float64))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(steps):
                state, info = kernel.step(state, rng)
        fell_back = [w for w in caught if "torch.compile failed" in str(w.message)]
        if compiled and fell_back:
            pytest.skip(f"torch.compile unavailable here: {fell_back[0].message}")
        return be.to_numpy(state.phi), be.to_numpy(info.acceptance)
    finally:
        use_compile(previous)


@pytest.mark.parametrize("kernel", [CheckerboardMetropolis(Phi4.from_beta_g(0.5, 0.1), GaussianShift(1.0), hits=2),
                                    HMC(Phi4.from_kappa_lambda(0.21, 0.022), 1.0, 4)],
                         ids=["checkerboard", "hmc"])
def test_torch_compile_equals_generic(kernel):
    generic = _run(kernel, False)
    fused = _run(kernel, True)
    # same random numbers; fused arithmetic may round differently in the last bits
    np.testing.assert_allclose(fused[0], generic[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(fused[1], generic[1])


def test_accelerator_is_opt_in():
    be = get_backend("torch")
    fn = gaussian_block_update  # the unit the checkerboard's Gaussian shift hands the accelerator
    previous = use_compile(False)
    try:
        assert accelerated(fn, be.xp) is fn
        use_compile(True)
        assert accelerated(fn, be.xp) is not fn
        assert accelerated(fn, get_backend("numpy").xp) is fn  # other namespaces untouched
    finally:
        use_compile(previous)


def test_random_site_inplace_equals_generic_on_torch():
    be = get_backend("torch")
    phi = be.rng(0).normal((2, 5, 5), torch.float64)
    outs = []
    for inplace in (False, True):
        k = RandomSiteMetropolis(Phi4.from_beta_g(0.5, 0.1), GaussianShift(1.0), inplace=inplace)
        state, _ = k.step(k.init(phi), be.rng(4))
        outs.append(be.to_numpy(state.phi))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_torch_lookup_equals_generic():
    """The torch ``lookup`` (one index_select) equals the generic take over the flattened index."""
    from portable_lattice._delegation import implementation
    from portable_lattice.backends.torch_backend import _torch_lookup
    from portable_lattice.theories.base import lookup
    xp = get_backend("torch").xp
    dispatched = implementation("lookup", xp, lookup)
    assert dispatched is not lookup
    native = dispatched.native  # the registered function itself, not the wrapper that may fall back
    assert native is _torch_lookup
    table = torch.arange(-5, 22, dtype=torch.int32) * 7
    index = torch.from_numpy(np.random.default_rng(0).integers(0, 27, size=(3, 2, 5, 4)).astype(np.int32))
    assert torch.equal(native(table, index), lookup(table, index))
    assert native(table, index).shape == index.shape
    assert torch.equal(dispatched(table, index), lookup(table, index))
