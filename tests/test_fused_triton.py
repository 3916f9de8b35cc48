"""The Triton fused kernels are bit-identical to the generic paths under the same seed and
stream, through the samplers' own fused code path.

Without a GPU they run under Triton's interpreter on CPU tensors (the kernel lookup is pointed
at them). Triton decides interpreted or compiled once per process, when it is imported (its own
library functions are decorated then), so this module sets TRITON_INTERPRET=1 before importing
it, unless triton is already loaded compiled or a CUDA GPU is present: there the same tests run
on CUDA tensors through the registered (compiled) kernels, their ids naming 'cuda'.
"""
import os
import sys

import pytest

torch = pytest.importorskip("torch")
if "triton" not in sys.modules and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

from portable_lattice.backends import get_backend  # noqa: E402
from portable_lattice.philox import PhiloxGenerator, philox4x32  # noqa: E402
from portable_lattice.samplers import HMC, CheckerboardMetropolis  # noqa: E402
from portable_lattice.samplers import fused as fused_core  # noqa: E402
from portable_lattice.samplers.rules import GaussianShift, SpinFlip  # noqa: E402
from portable_lattice.theories import Ising, Phi4  # noqa: E402

from portable_lattice.backends.fused import triton_kernels as tk  # noqa: E402

if not tk.INTERPRETED and not torch.cuda.is_available():
    pytest.skip("triton was imported compiled and there is no CUDA GPU: set TRITON_INTERPRET=1 before "
                "triton is imported to run these tests in its interpreter", allow_module_level=True)
DEVICE = "interpret" if tk.INTERPRETED else "cuda"
BE = get_backend("torch", None if tk.INTERPRETED else "cuda")
XP = BE.xp
TRITON = {"checkerboard": tk.checkerboard_sweep, "hmc": tk.hmc_trajectory}


@pytest.fixture(params=[DEVICE])
def triton_kernels(request, monkeypatch):
    """Point the samplers' kernel lookup at the Triton kernels (CPU tensors, interpreted) or check
    that it finds them (CUDA); the calls are counted, so a test knows a Triton kernel ran."""
    calls = []
    registered = fused_core.kernel_for

    def kernel_for(name, x):
        fn = TRITON[name] if tk.INTERPRETED else registered(name, x)

        def call(*args):
            calls.append(name)
            return fn(*args)
        return call

    monkeypatch.setattr(fused_core, "kernel_for", kernel_for)
    yield calls
    assert calls, "the Triton kernel was never called"


def _rng(stream, seed):
    return PhiloxGenerator(XP, seed, BE.device) if stream == "philox" else BE.rng(seed)


def _run(kernel, x, rng, n):
    st = kernel.init(x)
    for _ in range(n):
        st, info = kernel.step(st, rng)
    return st, info


@pytest.mark.parametrize("dev", [DEVICE])
def test_in_register_philox_words_equal_the_generators(dev):
    key, draw, chain, n = (0x89ABCDEF, 0x01234567), 7, 3, 40
    i = torch.arange(n, dtype=torch.int64)
    w = philox4x32(i // 4, torch.tensor(draw), torch.tensor(chain), torch.tensor(0), *key)
    want = torch.stack(w)[i % 4, i]
    assert torch.equal(tk.philox_words(n, draw, chain, key, BE.device).cpu(), want)


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
@pytest.mark.parametrize("d,L,hits", [(2, 8, 2), (3, 6, 1), (3, 4, 3)])
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
@pytest.mark.parametrize("d,L,stream", [(2, 6, "native"), (3, 4, "native"), (2, 6, "philox"), (3, 4, "philox")])
def test_hmc_trajectory_is_bit_identical(triton_kernels, d, L, dtype, stream):
    th = Phi4(0.3, 0.5) if d == 2 else Phi4(0.2, 0.5)
    x0 = BE.rng(1).normal((3,) + (L,) * d, getattr(XP, dtype))
    out = []
    for f in (False, True):
        # under Philox the kernel computes the momenta in registers
        k = HMC(th, 1.0, 5, fused=f)
        st, info = _run(k, x0, _rng(stream, 3), 3)
        out.append((st.phi, st.action, st.grad, info.acceptance, info.delta_h))
    assert torch.equal(out[0][0], out[1][0])
    assert torch.equal(out[0][2], out[1][2])
    assert torch.equal(out[0][3], out[1][3])
    # the Hamiltonian's sums run in another order: equal to rounding
    tol = 1e-4 if dtype == "float32" else 1e-10
    assert torch.allclose(out[0][1], out[1][1], rtol=tol, atol=tol)
    assert torch.allclose(out[0][4], out[1][4], rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("dev", [DEVICE])
def test_unsupported_inputs_are_refused_by_name(dev):
    plan = {"kind": "ising", "dim": 2, "hits": 1, "thresholds": [0] * 18, "offset": 9}
    with pytest.raises(TypeError, match="int8"):
        tk.checkerboard_sweep(torch.zeros((1, 4, 4), device=BE.device), plan, {"stream": "native", "draws": []})
    with pytest.raises(ValueError, match="4-dimensional"):
        tk.checkerboard_sweep(torch.zeros((1, 4, 4, 4, 4), dtype=torch.int8, device=BE.device), dict(plan, dim=4), {"stream": "native"})
    with pytest.raises(TypeError, match="float16"):
        tk.checkerboard_sweep(torch.zeros((1, 4, 4), dtype=torch.float16, device=BE.device), dict(plan, kind="phi4"), {})


@pytest.mark.parametrize("dev", [DEVICE])
@pytest.mark.parametrize("d,L,chains", [(2, 8, 3), (2, 5, 2), (3, 4, 2)])
def test_union_find_labels_equal_label_propagation(dev, d, L, chains):
    from portable_lattice.backends.fused.triton_clusters import cluster_labels
    from portable_lattice.samplers.clusters import label_propagation
    g = torch.Generator().manual_seed(d * 100 + L)
    for p in (0.2, 0.5, 0.8):
        bonds = [(torch.rand((chains,) + (L,) * d, generator=g) < p).to(BE.device) for _ in range(d)]
        got = cluster_labels(bonds)
        assert got.dtype == torch.int64
        assert torch.equal(got, label_propagation(bonds))


@pytest.mark.parametrize("dev", [DEVICE])
def test_union_find_declines_what_it_does_not_do(dev):
    from portable_lattice.backends.fused.triton_clusters import cluster_labels
    bonds = [torch.zeros((1, 2, 2, 2, 2), dtype=torch.bool, device=BE.device)] * 4
    assert cluster_labels(bonds) is NotImplemented


_COMPILE = r'''
import json, os, re
os.environ.pop("TRITON_INTERPRET", None)
try:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    import triton.backends.nvidia  # noqa: F401  (ptxas ships in the wheel: no GPU needed)
except ImportError as e:
    print(json.dumps({"skip": str(e)}))
    raise SystemExit(0)
from portable_lattice.backends.fused import triton_clusters as tc, triton_kernels as tk


def fmas(fn, sig, const):
    const = {(fn.arg_names.index(k),): v for k, v in const.items()}
    k = triton.compile(ASTSource(fn, sig, const), target=GPUTarget("cuda", 90, 32), options={"enable_fp_fusion": False})
    return len(re.findall(r"\bfma\.", k.asm["ptx"]))


out = {}
cb = {"part_ptr": "*i32", "meta_ptr": "*i64", "bidx_ptr": "*i64", "t_ptr": "*i64", "mc_ptr": "*fp64", "L": "i32",
      "nhalf": "i32", "chains": "i32", "p": "i32", "hits": "i32", "nblocks": "i32", "off": "i32", "DIM": "constexpr",
      "PHI4": "constexpr", "PHILOX": "constexpr", "F64": "constexpr", "BLOCK": "constexpr"}
for ft, d in (("fp64", 2), ("fp32", 3)):
    sig = dict(cb, x_ptr="*" + ft, cst_ptr="*" + ft, d1_ptr="*" + ft, d2_ptr="*" + ft)
    for philox in (True, False):
        out[f"phi4-{ft}-{d}-{philox}"] = fmas(tk._checkerboard_kernel, sig, {"DIM": d, "PHI4": True, "PHILOX": philox,
                                              "F64": ft == "fp64", "BLOCK": 256})
sig = dict(cb, x_ptr="*i8", cst_ptr="*fp32", d1_ptr="*i32", d2_ptr="*i32")
out["ising"] = fmas(tk._checkerboard_kernel, sig, {"DIM": 3, "PHI4": False, "PHILOX": True, "F64": False,
                                                   "BLOCK": 256})
hs = {k: "*fp32" for k in ("src_ptr", "dst_ptr", "pin_ptr", "pout_ptr", "gin_ptr", "gout_ptr", "cst_ptr", "coef_ptr")}
hs.update({"part_ptr": "*fp64", "L": "i32", "V": "i32", "nblocks": "i32", "j": "i32", "DIM": "constexpr",
           "FIRST": "constexpr", "LAST": "constexpr", "BLOCK": "constexpr"})
for last in (False, True):
    out[f"hmc-{last}"] = fmas(tk._hmc_kernel, hs, {"DIM": 3, "FIRST": False, "LAST": last, "BLOCK": 256})
out["union"] = fmas(tc._union_kernel, {"lab_ptr": "*i32", "bond_ptr": "*u8", "L": "i32", "V": "i32", "n": "i32",
                                       "DIM": "constexpr", "BLOCK": "constexpr"}, {"DIM": 2, "BLOCK": 256})
print(json.dumps(out))
'''


@pytest.mark.parametrize("dev", [DEVICE])
def test_kernels_compile_for_sm90_without_contracting_into_fma(dev):
    """Compiled for an sm_90 target (TTIR to PTX, no GPU needed), in a fresh process since this one
    may interpret: no FMA anywhere (a contracted a * b + c rounds once where the generic path
    rounds twice), with the Box-Muller normals and the acceptance logarithms in registers or not."""
    import json
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, "-c", _COMPILE], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    if "skip" in out:
        pytest.skip(f"triton's CUDA backend is missing: {out['skip']}")
    assert set(out.values()) == {0}, out
