"""The bandwidth probe's kernels equal NumPy bit for bit on every backend."""
import numpy as np
import pytest
from conftest import sizes_for

from fusedops import ops, reference

SIZES = [0, 1, 7, 1023, 1025, 1 << 20]


def _data(n, dtype, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n) * 1e3).astype(dtype)


def test_copy_bitwise(kernel_backend, dtype):
    for n in sizes_for(kernel_backend, SIZES):
        src = _data(n, dtype, n)
        dst = np.full(n, np.nan, dtype)
        out = ops.stream_copy(dst, src, backend=kernel_backend)
        assert out is dst
        np.testing.assert_array_equal(dst.view(np.uint8), src.view(np.uint8))


def test_triad_bitwise(kernel_backend, dtype):
    for n in sizes_for(kernel_backend, SIZES):
        b, c = _data(n, dtype, 1), _data(n, dtype, 2)
        expected = np.empty(n, dtype)
        reference.stream_triad(expected, b, c, 3.1)
        a = np.full(n, np.nan, dtype)
        ops.stream_triad(a, b, c, scalar=3.1, backend=kernel_backend)
        np.testing.assert_array_equal(a.view(np.uint8), expected.view(np.uint8))


def test_reference_triad_matches_formula(dtype):
    b, c = _data(1000, dtype, 3), _data(1000, dtype, 4)
    a = np.empty_like(b)
    reference.stream_triad(a, b, c, 0.5)
    s = dtype.type(0.5)
    np.testing.assert_array_equal(a, (s * c) + b)


def test_multidimensional_arrays(kernel_backend):
    src = _data(3 * 5 * 7, np.float32, 5).reshape(3, 5, 7)
    dst = np.zeros_like(src)
    ops.stream_copy(dst, src, backend=kernel_backend)
    np.testing.assert_array_equal(dst, src)


@pytest.mark.cuda
def test_cuda_device_arrays_in_place():
    """Device arrays stay on the device: no staging, results read back by the caller."""
    from fusedops import backends

    if backends.backend_unavailable_reason("cuda"):
        pytest.skip("cuda unavailable")
    from numba import cuda

    b, c = _data(2000, np.float32, 6), _data(2000, np.float32, 7)
    db, dc = cuda.to_device(b), cuda.to_device(c)
    da = cuda.device_array_like(db)
    ops.stream_triad(da, db, dc, scalar=-2.0)  # default backend for device arrays is cuda
    expected = np.empty_like(b)
    reference.stream_triad(expected, b, c, -2.0)
    np.testing.assert_array_equal(da.copy_to_host(), expected)
