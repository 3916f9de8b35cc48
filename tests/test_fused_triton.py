"""The Triton fused kernels, run by Triton's interpreter on CPU tensors (no GPU needed): each is
bit-identical to the generic path under the same seed and stream, through the samplers' own
fused code path (the kernel lookup is pointed at the Triton kernels)."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported, anywhere

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from portable_lattice.backends import get_backend  # noqa: E402
from portable_lattice.philox import PhiloxGenerator, philox4x32  # noqa: E402
from portable_lattice.samplers import HMC, CheckerboardMetropolis  # noqa: E402
from portable_lattice.samplers import fused as fused_core  # noqa: E402
from portable_lattice.samplers.rules import GaussianShift, SpinFlip  # noqa: E402
from portable_lattice.theories import Ising, Phi4  # noqa: E402

if os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
    pytest.skip("these tests drive Triton's interpreter on CPU tensors: TRITON_INTERPRET=1 must be set "
                "before triton is imported (it was imported without it)", allow_module_level=True)

from backends.fused import triton_kernels as tk  # noqa: E402

BE = get_backend("torch")
XP = BE.xp
TRITON = {"checkerboard": tk.checkerboard_sweep, "hmc": tk.hmc_trajectory}


@pytest.fixture
def triton_kernels(monkeypatch):
    """Point the samplers' kernel lookup at the Triton kernels (CPU tensors, interpreted); the
    calls are counted, so a test knows the Triton kernel ran."""
    calls = []

    def kernel_for(name, x):
        def call(*args):
            calls.append(name)
            return TRITON[name](*args)
        return call

    monkeypatch.setattr(fused_core, "kernel_for", kernel_for)
    yield calls
    assert calls, "the Triton kernel was never called"


def _rng(stream, seed):
    return PhiloxGenerator(XP, seed) if stream == "philox" else BE.rng(seed)


def _run(kernel, x, rng, n):
    st = kernel.init(x)
    for _ in range(n):
        st, info = kernel.step(st, rng)
    return st, info


def test_in_register_philox_words_equal_the_generators():
    key, draw, chain, n = (0x89ABCDEF, 0x01234567), 7, 3, 40
    i = torch.arange(n, dtype=torch.int64)
    w = philox4x32(i // 4, torch.tensor(draw), torch.tensor(chain), torch.tensor(0), *key)
    want = torch.stack(w)[i % 4, i]
    assert torch.equal(tk.philox_words(n, draw, chain, key), want)


CASES = [(2, 8, 2), (3, 4, 1)]  # (d, L, hits)


@pytest.mark.parametrize("stream", ["philox", "native"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("d,L,hits", CASES)
def test_phi4_checkerboard_is_bit_identical(triton_kernels, d, L, hits, dtype, stream):
    th = Phi4(0.3, 0.5) if d == 2 else Phi4(0.2, 0.5)
    x0 = _rng(stream, 5).normal((3,) + (L,) * d, getattr(XP, dtype))
    out = []
    for f in (False, True):
        k = CheckerboardMetropolis(th, GaussianShift(1.2), hits=hits, fused=f)
        st, info = _run(k, x0, _rng(stream, 5), 2)
        out.append((st.config, info.acceptance))
    assert torch.equal(out[0][0], out[1][0])
    assert torch.equal(out[0][1], out[1][1])
    assert 0 < float(out[0][1].mean()) < 1


@pytest.mark.parametrize("stream", ["philox", "native"])
@pytest.mark.parametrize("d,L,hits", [(2, 8, 2), (3, 6, 1)])
def test_ising_checkerboard_is_bit_identical(triton_kernels, d, L, hits, stream):
    th = Ising(0.4)
    x0 = th.random(_rng(stream, 5), (3,) + (L,) * d, XP.float64)
    out = []
    for f in (False, True):
        k = CheckerboardMetropolis(th, SpinFlip(), hits=hits, fused=f)
        st, info = _run(k, x0, _rng(stream, 5), 3)
        out.append((st.config, info.acceptance))
    assert out[1][0].dtype == torch.int8
    assert torch.equal(out[0][0], out[1][0])
    assert torch.equal(out[0][1], out[1][1])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("d,L", [(2, 6), (3, 4)])
def test_hmc_trajectory_is_bit_identical(triton_kernels, d, L, dtype):
    th = Phi4(0.3, 0.5) if d == 2 else Phi4(0.2, 0.5)
    x0 = BE.rng(1).normal((3,) + (L,) * d, getattr(XP, dtype))
    out = []
    for f in (False, True):
        k = HMC(th, 1.0, 5, fused=f)
        st, info = _run(k, x0, BE.rng(3), 3)
        out.append((st.phi, st.action, st.grad, info.acceptance, info.delta_h))
    assert torch.equal(out[0][0], out[1][0])
    assert torch.equal(out[0][2], out[1][2])
    assert torch.equal(out[0][3], out[1][3])
    # the Hamiltonian's sums run in another order: equal to rounding
    tol = 1e-4 if dtype == "float32" else 1e-10
    assert torch.allclose(out[0][1], out[1][1], rtol=tol, atol=tol)
    assert torch.allclose(out[0][4], out[1][4], rtol=tol, atol=tol * 10)


def test_unsupported_inputs_are_refused_by_name():
    plan = {"kind": "ising", "dim": 2, "hits": 1, "thresholds": [0] * 18, "offset": 9}
    with pytest.raises(TypeError, match="int8"):
        tk.checkerboard_sweep(torch.zeros((1, 4, 4)), plan, {"stream": "native", "draws": []})
    with pytest.raises(ValueError, match="4-dimensional"):
        tk.checkerboard_sweep(torch.zeros((1, 4, 4, 4, 4), dtype=torch.int8), dict(plan, dim=4), {"stream": "native"})
    with pytest.raises(TypeError, match="float16"):
        tk.checkerboard_sweep(torch.zeros((1, 4, 4), dtype=torch.float16), dict(plan, kind="phi4"), {})
