import numpy as np
import pytest

from portable_lattice.backends import BackendUnavailableError, available_backends, backend_of, get_backend


def test_cpu_backends_always_available():
    names = [n for n, _ in available_backends()]
    assert {"numpy", "torch", "array_api_strict"} <= set(names)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_draws_have_dtype_device_and_shape(backend, dtype):
    rng = backend.rng(3)
    for draw in (rng.uniform, rng.normal):
        x = draw((4, 6, 6), backend.dtype(dtype))
        assert x.shape == (4, 6, 6) and x.dtype == backend.dtype(dtype)
        assert str(backend_of(x).device) == str(backend.device)
    u = backend.to_numpy(rng.uniform((10000,), backend.dtype(dtype)))
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.02
    n = backend.to_numpy(rng.normal((10000,), backend.dtype(dtype)))
    assert abs(n.mean()) < 0.05 and abs(n.std() - 1) < 0.05


def test_same_seed_reproduces_bit_for_bit(backend):
    a = backend.to_numpy(backend.rng(11).normal((8, 5), backend.xp.float64))
    b = backend.to_numpy(backend.rng(11).normal((8, 5), backend.xp.float64))
    c = backend.to_numpy(backend.rng(12).normal((8, 5), backend.xp.float64))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # chains get different numbers
    assert len({row.tobytes() for row in a}) == 8


def test_state_save_restore_continues_the_stream(backend):
    rng = backend.rng(5)
    rng.normal((3, 3), backend.xp.float64)
    saved = rng.get_state()
    first = backend.to_numpy(rng.normal((3, 3), backend.xp.float64))
    rng.uniform((7,), backend.xp.float64)
    rng.set_state(saved)
    again = backend.to_numpy(rng.normal((3, 3), backend.xp.float64))
    assert np.array_equal(first, again)
    fresh = backend.rng(0)
    fresh.set_state(saved)
    assert np.array_equal(first, backend.to_numpy(fresh.normal((3, 3), backend.xp.float64)))


def test_large_draws_split_over_streams(backend):
    """Draws of >= 2^16 numbers are filled from two spawned sub-streams (two threads on the
    CPU): reproducible from the seed and a saved state, uniform, and with independent halves.
    Bounds are ~5 sigma (false-alarm rate < 1e-5 per check)."""
    shape = (4, 128, 256)  # 131072 numbers: split
    n = 4 * 128 * 256
    rng = backend.rng(9)
    saved = rng.get_state()
    u = backend.to_numpy(rng.uniform(shape, backend.xp.float64)).reshape(-1)
    rng.set_state(saved)
    assert np.array_equal(u, backend.to_numpy(rng.uniform(shape, backend.xp.float64)).reshape(-1))
    assert np.array_equal(u, backend.to_numpy(backend.rng(9).uniform(shape, backend.xp.float64)).reshape(-1))
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n)
    first, second = u[: n // 2], u[n // 2:]
    assert not np.array_equal(first, second)
    r = np.corrcoef(first, second)[0, 1]
    assert abs(r) < 5 / np.sqrt(n // 2)
    z = backend.to_numpy(rng.normal(shape, backend.xp.float64)).reshape(-1)
    assert abs(z.mean()) < 5 / np.sqrt(n) and abs(z.var() - 1) < 5 * np.sqrt(2 / n)


def test_torch_cpu_draws_equal_numpy_draws():
    """The torch CPU generator is the NumPy backend's: same seed, same numbers (small and split draws)."""
    pytest.importorskip("torch")
    t, n = get_backend("torch").rng(4), get_backend("numpy").rng(4)
    for shape in ((3, 5), (2, 256, 256)):
        assert np.array_equal(t.uniform(shape, get_backend("torch").xp.float64).numpy(), n.uniform(shape, np.float64))
        assert np.array_equal(t.normal(shape, get_backend("torch").xp.float32).numpy(), n.normal(shape, np.float32))
    assert np.array_equal(t.integers(9, (100,)).numpy(), n.integers(9, (100,)))


def test_numpy_generator_works_in_a_forked_child():
    """The draw threads do not survive fork(); a child must start its own (not hang)."""
    import multiprocessing as mp
    import sys
    if sys.platform != "linux":
        pytest.skip("fork start method is Linux's default")
    get_backend("numpy").rng(0).uniform((300, 300), np.float64)  # parent's pool exists
    with mp.get_context("fork").Pool(1) as pool:
        means = pool.map(_child_mean, [1])
    assert abs(means[0] - 0.5) < 0.01


def _child_mean(seed):
    return float(get_backend("numpy").rng(seed).uniform((300, 300), np.float64).mean())


def test_integers_in_range(backend):
    k = backend.to_numpy(backend.rng(1).integers(7, (1000,)))
    assert k.min() == 0 and k.max() == 6


@pytest.mark.parametrize("shape", [(3, 7), (2, 181, 181)], ids=["small", "split-odd"])
def test_bits32_are_uniform_int32_words(backend, shape):
    """bits32: int32 on the field's device, reproducible from the seed and a saved state, and
    each of the 32 bits a fair coin, independent of its neighbour bit. Bounds are 5 sigma per
    bit (false-alarm rate < 2e-5 for the 63 checks together); the odd size (65522 words, over
    the split threshold) exercises the split draw and the half-used last 64-bit output."""
    rng = backend.rng(21)
    saved = rng.get_state()
    b = rng.bits32(shape)
    assert b.dtype == backend.xp.int32 and tuple(b.shape) == shape
    assert str(backend_of(b).device) == str(backend.device)
    words = backend.to_numpy(b).reshape(-1)
    rng.set_state(saved)
    assert np.array_equal(words, backend.to_numpy(rng.bits32(shape)).reshape(-1))
    assert np.array_equal(words, backend.to_numpy(backend.rng(21).bits32(shape)).reshape(-1))
    if words.size < 1000:
        return
    bits = (words.view(np.uint32)[:, None] >> np.arange(32, dtype=np.uint32)) & 1
    n = words.size
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 5 * 0.5 / np.sqrt(n))
    agree = (bits[:, 1:] == bits[:, :-1]).mean(axis=0)
    assert np.all(np.abs(agree - 0.5) < 5 * 0.5 / np.sqrt(n))


def test_round_trip_host(backend):
    a = np.arange(6.0).reshape(2, 3)
    x = backend.from_numpy(a, "float64")
    assert np.array_equal(backend.to_numpy(x), a)
    assert backend_of(x).name == backend.name


def test_unknown_backend_and_device_errors():
    with pytest.raises(ValueError, match="backend='jax'"):
        get_backend("jax")
    with pytest.raises(BackendUnavailableError, match="device='cuda'"):
        get_backend("numpy", "cuda")
    with pytest.raises(BackendUnavailableError, match="tpu"):
        get_backend("torch", "tpu")


def test_cupy_without_gpu_names_the_problem():
    try:
        get_backend("cupy")
    except BackendUnavailableError as e:
        assert "cupy" in str(e).lower()
    else:  # a GPU machine: then it must work
        assert get_backend("cupy").name == "cupy"


def test_bad_seed_and_dtype(backend):
    with pytest.raises(ValueError, match="seed=-1"):
        backend.rng(-1)
    with pytest.raises(ValueError, match="dtype='float16'"):
        backend.dtype("float16")


def test_draw_dtype_by_name_or_any_librarys_dtype(backend):
    """A generator takes float32/float64 by name or as any library's dtype, and refuses the rest
    with a TypeError naming the value (not a traceback from inside torch or CuPy)."""
    rng = backend.rng(3)
    for spec in ("float64", np.float64, backend.xp.float64):
        assert rng.normal((2, 3), spec).dtype == backend.xp.float64
    assert rng.uniform((2,), np.dtype("float32")).dtype == backend.xp.float32
    with pytest.raises(TypeError, match="dtype=<class 'numpy.int64'>"):
        rng.uniform((2,), np.int64)
