"""Shared fixtures: backends (cuda ones marked and skipped with a reason when unavailable),
dtypes with their tolerances, and size lists that stay small under the CUDA simulator."""
import numpy as np
import pytest

from fusedops import backends


def backend_param(name):
    marks = [pytest.mark.cuda] if name == "cuda" else []
    reason = backends.backend_unavailable_reason(name)
    if reason is not None:
        marks.append(pytest.mark.skip(reason=f"{name} unavailable: {reason}"))
    return pytest.param(name, marks=marks, id=name)


ALL_BACKENDS = [backend_param(b) for b in backends.BACKENDS]
# the backends that are not the reference itself
KERNEL_BACKENDS = [backend_param(b) for b in backends.BACKENDS if b != "numpy"]

SIM = backends.cuda_simulator()


def sizes_for(backend, sizes):
    """The simulator runs every CUDA thread in Python: keep its sizes small (still several
    blocks of the simulator's 32 threads, and a tail)."""
    if backend == "cuda" and SIM:
        return [n for n in sizes if n <= 5000]
    return list(sizes)


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(params=KERNEL_BACKENDS)
def kernel_backend(request):
    return request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return np.dtype(request.param)


def snapshot(*arrays):
    """Copies of arrays, to prove later that a failed call modified nothing."""
    return [None if a is None else np.array(a, copy=True) for a in arrays]


def assert_unchanged(arrays, copies):
    for a, c in zip(arrays, copies):
        if a is not None:
            np.testing.assert_array_equal(a, c)


@pytest.fixture(scope="session")
def compile_ptx():
    """fn, signature -> sm_90 PTX text of a CUDA kernel (no GPU needed); skips the test where
    NVVM / NVRTC or numba-cuda are missing (tests/test_dropout_ptx.py, test_lowbit_ptx.py)."""
    try:
        from numba import cuda, types

        def probe(a):
            a[0] = 1.0

        cuda.compile_ptx(probe, (types.float32[::1],), cc=(9, 0))
    except Exception as exc:  # missing NVVM / NVRTC / numba-cuda: nothing to test here
        pytest.skip(f"no CUDA compiler here: {type(exc).__name__}: {str(exc)[:120]}")
    return lambda fn, sig: cuda.compile_ptx(fn.py_func, sig, cc=(9, 0))[0]
