"""Dropout: masks bit-identical on every backend and equal to an independent scalar Philox;
y and dx equal to their formulas exactly; eval modes; backward from mask == regenerated; a
finite-difference check; independence from the thread count and the CUDA block size."""
import numpy as np
import pytest
from conftest import SIM, sizes_for
from test_philox import philox_scalar

from fusedops import _arrays, backends, ops

PS = [0.0, 0.1, 0.5, 0.9, 1.0]
SIZES = [0, 1, 3, 4, 5, 8, 9, 1023, 4097, 70_001]  # the last runs the CPU kernels in parallel
# (seed, offset) pairs, including high 32 bits set in either or both
KEYS = [(0, 0), (1234, 5), ((1 << 63) + 17, 3), (99, (1 << 40) + 1), ((1 << 64) - 1, (1 << 64) - 1)]


def _x(shape, dtype, seed=0):
    return np.asarray(np.random.default_rng(seed).standard_normal(shape) * 3 + 1).astype(dtype)


def _keep_scalar(n, p, seed, offset):
    """keep bits from the contract, with the scalar Philox of test_philox (not reference.py)."""
    t = round(p * 2 ** 32)
    key = (seed & 0xFFFFFFFF, seed >> 32)
    words = []
    for b in range((n + 3) // 4):
        words += philox_scalar((b & 0xFFFFFFFF, b >> 32, offset & 0xFFFFFFFF, offset >> 32), key)
    return np.array([w >= t for w in words[:n]], bool)


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
def test_reference_mask_matches_scalar_contract(p):
    for n in [0, 1, 5, 8, 9, 70]:
        for seed, offset in KEYS:
            keep = _keep_scalar(n, p, seed, offset)
            mask = ops.dropout_mask(n, p, seed=seed, offset=offset, backend="numpy")
            np.testing.assert_array_equal(mask, np.packbits(keep, bitorder="little"))


@pytest.mark.parametrize("p", PS)
def test_masks_identical_on_every_backend(kernel_backend, p):
    for n in sizes_for(kernel_backend, SIZES):
        x = _x(n, np.float32, n)
        # the simulator is slow: one ordinary pair and the one with both high halves set
        for seed, offset in [KEYS[1], KEYS[4]] if kernel_backend == "cuda" and SIM else KEYS:
            y_ref, m_ref = ops.dropout_forward(x, p, seed=seed, offset=offset, backend="numpy")
            y, m = ops.dropout_forward(x, p, seed=seed, offset=offset, backend=kernel_backend)
            assert m.dtype == np.uint8 and m.shape == ((n + 7) // 8,)
            np.testing.assert_array_equal(m, m_ref, err_msg=f"n={n} seed={seed} offset={offset}")
            np.testing.assert_array_equal(y.view(np.uint32), y_ref.view(np.uint32))
            m2 = ops.dropout_mask(n, p, seed=seed, offset=offset, backend=kernel_backend)
            np.testing.assert_array_equal(m2, m_ref)


def test_tail_bits_are_zero(backend):
    for n in [1, 3, 9, 4097]:
        m = ops.dropout_mask(n, 0.0, seed=3, backend=backend)  # p = 0: every real bit is 1
        assert m[-1] == (1 << (n % 8 or 8)) - 1 and np.all(m[:-1] == 255)


@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 0, 3), (1,), (64, 33), ()])
def test_any_shape_mask_follows_c_order(backend, dtype, shape):
    x = _x(shape, dtype, 4)
    y, m = ops.dropout_forward(x, 0.4, seed=11, offset=2, backend=backend)
    assert y.shape == x.shape and y.dtype == dtype
    flat_mask = ops.dropout_mask(x.size, 0.4, seed=11, offset=2, backend="numpy")
    np.testing.assert_array_equal(m, flat_mask)
    keep = ops.unpack_mask(m, shape)
    np.testing.assert_array_equal(y, x * keep / (1 - 0.4))


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9])
def test_forward_equals_formula_exactly(backend, dtype, p):
    x = _x(sizes_for(backend, [20000])[0] if not (backend == "cuda" and SIM) else 2000, dtype, 1)
    x[:4] = [0.0, -0.0, np.inf, np.nan]
    y, m = ops.dropout_forward(x, p, seed=77, offset=9, backend=backend)
    keep = ops.unpack_mask(m, x.shape)
    expected = x * keep / (1 - p)  # NumPy's own rounding, in the array's dtype
    np.testing.assert_array_equal(y.view(f"u{dtype.itemsize}"), expected.view(f"u{dtype.itemsize}"))
    yc, mc = ops.dropout_forward(x, p, seed=77, offset=9, mode="classic", backend=backend)
    np.testing.assert_array_equal(mc, m)
    np.testing.assert_array_equal(yc.view(f"u{dtype.itemsize}"), (x * keep).view(f"u{dtype.itemsize}"))


def test_p_one_drops_everything_and_p_zero_keeps_everything(backend, dtype):
    x = _x(1000, dtype, 2)
    y, m = ops.dropout_forward(x, 1.0, seed=5, backend=backend)
    assert np.all(m == 0) and np.all(y == 0)
    y, m = ops.dropout_forward(x, 0.0, seed=5, backend=backend)
    assert np.all(m == 255) and np.array_equal(y, x)


def test_eval_modes(backend, dtype):
    x = _x((10, 31), dtype, 3)
    snap = x.copy()
    y, m = ops.dropout_forward(x, 0.25, seed=1, training=False, backend=backend)
    assert m is None and y is not x and np.array_equal(y, x)
    y, m = ops.dropout_forward(x, 0.25, seed=1, training=False, mode="classic", backend=backend)
    assert m is None
    np.testing.assert_array_equal(y, (1 - 0.25) * x)
    np.testing.assert_array_equal(x, snap)


def test_out_and_return_mask(backend, dtype):
    x = _x(777, dtype, 6)
    out = np.full_like(x, np.nan)
    y, m = ops.dropout_forward(x, 0.3, seed=8, out=out, return_mask=False, backend=backend)
    assert y is out and m is None
    y_ref, m_ref = ops.dropout_forward(x, 0.3, seed=8, backend="numpy")
    np.testing.assert_array_equal(out, y_ref)


@pytest.mark.parametrize("mode", ["inverted", "classic"])
@pytest.mark.parametrize("p", [0.0, 0.35, 1.0])
def test_backward_mask_equals_regenerated_equals_formula(backend, dtype, mode, p):
    n = 777 if backend == "cuda" and SIM else 3001
    x, dy = _x(n, dtype, 7), _x(n, dtype, 8)
    _, m = ops.dropout_forward(x, p, seed=(1 << 50) + 3, offset=(1 << 33) + 4, mode=mode, backend=backend)
    dx_mask = ops.dropout_backward(dy, p=p, mask=m, mode=mode, backend=backend)
    dx_regen = ops.dropout_backward(dy, p=p, seed=(1 << 50) + 3, offset=(1 << 33) + 4, mode=mode,
                                    backend=backend)
    keep = ops.unpack_mask(m, (n,))
    expected = dy * keep / (1 - p) if mode == "inverted" and p < 1 else dy * keep
    np.testing.assert_array_equal(dx_mask, expected)
    np.testing.assert_array_equal(dx_regen, expected)
    out = np.empty_like(dy)
    assert ops.dropout_backward(dy, p=p, mask=m, mode=mode, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, expected)


def test_backward_finite_differences(backend):
    """L(x) = sum(w * dropout(x)); dL/dx from backward(dy=w) against central differences."""
    rng = np.random.default_rng(9)
    x, w = rng.standard_normal(200), rng.standard_normal(200)
    p, seed, offset = 0.3, 42, 7

    def loss(xv):
        return float(np.sum(w * ops.dropout_forward(xv, p, seed=seed, offset=offset, backend=backend)[0]))

    grad = ops.dropout_backward(w, p=p, seed=seed, offset=offset, backend=backend)
    h = 1e-6
    for i in range(0, 200, 7):
        e = np.zeros_like(x)
        e[i] = h
        fd = (loss(x + e) - loss(x - e)) / (2 * h)
        assert abs(fd - grad[i]) <= 1e-6 * (1 + abs(grad[i])), i


def test_independent_of_thread_count():
    x = _x(100_003, np.float32, 10)
    before = backends.get_num_threads()
    try:
        results = {}
        for threads in sorted({1, before}):
            backends.set_num_threads(threads)
            for be in [b for b in ("numba", "c") if backends.backend_unavailable_reason(b) is None]:
                results[(be, threads)] = ops.dropout_forward(x, 0.5, seed=1, offset=2, backend=be)
    finally:
        backends.set_num_threads(before)
    y0, m0 = ops.dropout_forward(x, 0.5, seed=1, offset=2, backend="numpy")
    for y, m in results.values():
        np.testing.assert_array_equal(m, m0)
        np.testing.assert_array_equal(y, y0)


@pytest.mark.cuda
@pytest.mark.parametrize("block", ["32", "64", "128"])
def test_cuda_independent_of_block_size(monkeypatch, block):
    if backends.backend_unavailable_reason("cuda"):
        pytest.skip("cuda unavailable")
    monkeypatch.setenv("FUSEDOPS_CUDA_BLOCK", block)
    x = _x(2053, np.float32, 12)
    y, m = ops.dropout_forward(x, 0.5, seed=3, offset=1 << 35, backend="cuda")
    y0, m0 = ops.dropout_forward(x, 0.5, seed=3, offset=1 << 35, backend="numpy")
    np.testing.assert_array_equal(m, m0)
    np.testing.assert_array_equal(y, y0)


@pytest.mark.cuda
def test_cuda_device_arrays_stay_on_device():
    if backends.backend_unavailable_reason("cuda"):
        pytest.skip("cuda unavailable")
    from numba import cuda

    x = _x((40, 25), np.float64, 13)
    dx_in = cuda.to_device(x)
    y, m = ops.dropout_forward(dx_in, 0.2, seed=21, offset=4)  # default backend: cuda
    assert _arrays.is_device_array(y) and _arrays.is_device_array(m)
    y0, m0 = ops.dropout_forward(x, 0.2, seed=21, offset=4, backend="numpy")
    np.testing.assert_array_equal(m.copy_to_host(), m0)
    np.testing.assert_array_equal(y.copy_to_host(), y0)
    g = ops.dropout_backward(dx_in, p=0.2, mask=m)
    np.testing.assert_array_equal(g.copy_to_host(), ops.dropout_backward(x, p=0.2, mask=m0, backend="numpy"))
    np.testing.assert_array_equal(ops.unpack_mask(m, x.shape), ops.unpack_mask(m0, x.shape))


# word w of Philox4x32-10 at counter 0, key 0 (DESIGN.md's known answer): element w of seed 0,
# offset 0
KAT0 = (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)


@pytest.mark.parametrize("word", range(4))
def test_threshold_boundary(backend, word):
    """keep(i) = u >= round(p * 2^32): p = u / 2^32 keeps element i, p = (u + 1) / 2^32 drops
    it (a `>` for `>=` in any compare flips the first). Every path that draws the bits: forward
    (whole Philox blocks and the partial last block), the mask alone, backward by regeneration;
    n = 1..3 puts the element in a partial block, 70 in a chunk of whole blocks (the x16 SIMD
    path of the C kernels where compiled), 40000 in the parallel kernels."""
    sizes = [word + 1, 70] + ([] if backend == "cuda" and SIM else [40_000])
    u = KAT0[word]
    for n in sizes:
        x = np.ones(n, np.float32)
        for t, kept in ((u, 1), (u + 1, 0)):
            p = t / 2**32  # exact in float64, so round(p * 2^32) == t
            y, m = ops.dropout_forward(x, p, seed=0, offset=0, backend=backend)
            mask_only = ops.dropout_mask(n, p, seed=0, offset=0, backend=backend)
            dx = ops.dropout_backward(x, p=p, seed=0, offset=0, mode="classic", backend=backend)
            got = ((m[0] >> word) & 1, (mask_only[0] >> word) & 1, int(y[word] != 0),
                   int(dx[word] != 0))
            assert got == (kept,) * 4, (n, hex(t), got)
