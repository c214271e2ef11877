"""Backend registry, dispatch and validation: defaults, overrides, and clear errors that
leave every array untouched."""
import numpy as np
import pytest
from conftest import assert_unchanged, snapshot

import fusedops
from fusedops import backends, ops, reference


def _arrays(n=16, dtype=np.float32):
    return np.zeros(n, dtype), np.arange(n, dtype=dtype)


def test_available_backends_lists_the_cpu_ones():
    avail = fusedops.available_backends()
    assert avail[:3] == ["numpy", "numba", "c"]
    assert set(avail) <= set(backends.BACKENDS)


def test_default_backend_is_numba_for_host_arrays(monkeypatch):
    monkeypatch.delenv("FUSEDOPS_BACKEND", raising=False)
    dst, src = _arrays()
    assert backends.resolve_backend(None, dst, src) == "numba"


def test_environment_overrides_the_default(monkeypatch):
    dst, src = _arrays()
    monkeypatch.setenv("FUSEDOPS_BACKEND", "c")
    assert backends.resolve_backend(None, dst, src) == "c"
    ops.stream_copy(dst, src)
    np.testing.assert_array_equal(dst, src)
    # an explicit backend still wins over the environment
    assert backends.resolve_backend("numpy", dst, src) == "numpy"


def test_environment_with_unknown_backend(monkeypatch):
    monkeypatch.setenv("FUSEDOPS_BACKEND", "fortran")
    with pytest.raises(ValueError, match="FUSEDOPS_BACKEND"):
        backends.resolve_backend(None)


def test_unknown_backend_name():
    dst, src = _arrays()
    before = snapshot(dst)
    with pytest.raises(ValueError, match="backend must be one of"):
        ops.stream_copy(dst, src, backend="fortran")
    assert_unchanged([dst], before)


@pytest.mark.skipif(backends.backend_unavailable_reason("cuda") is None, reason="a CUDA device exists")
def test_unavailable_cuda_says_why_and_how():
    dst, src = _arrays()
    with pytest.raises(backends.BackendUnavailableError, match="NUMBA_ENABLE_CUDASIM"):
        ops.stream_copy(dst, src, backend="cuda")
    assert not dst.any()


def test_unbuilt_c_extension_says_how_to_build(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, globals=None, locals=None, fromlist=(), level=0):
        if fromlist and "_fusedops_c" in fromlist:
            raise ImportError("simulated: no module named fusedops._fusedops_c")
        return real_import(name, globals, locals, fromlist, level)

    backends._probe.cache_clear()
    monkeypatch.setattr(builtins, "__import__", fake_import)
    try:
        reason = backends.backend_unavailable_reason("c")
    finally:
        monkeypatch.setattr(builtins, "__import__", real_import)
        backends._probe.cache_clear()
    assert "pip install" in reason
    assert "c" in fusedops.available_backends()


@pytest.mark.parametrize("backend", ["numpy", "numba", "c"])
def test_mixed_dtypes(backend):
    dst = np.zeros(8, np.float32)
    src = np.ones(8, np.float64)
    with pytest.raises(TypeError, match="src must have the same dtype as dst"):
        ops.stream_copy(dst, src, backend=backend)
    assert not dst.any()


@pytest.mark.parametrize("backend", ["numpy", "numba", "c"])
def test_integer_dtype_rejected(backend):
    dst = np.zeros(8, np.int32)
    with pytest.raises(TypeError, match="dst must have dtype float32 or float64"):
        ops.stream_copy(dst, np.ones(8, np.int32), backend=backend)
    assert not dst.any()


@pytest.mark.parametrize("backend", ["numpy", "numba", "c"])
def test_shape_mismatch(backend):
    dst, src = np.zeros(8, np.float32), np.ones(9, np.float32)
    with pytest.raises(ValueError, match="src must have the same shape as dst"):
        ops.stream_copy(dst, src, backend=backend)
    assert not dst.any()


@pytest.mark.parametrize("backend", ["numpy", "numba", "c"])
def test_non_contiguous_output(backend):
    base = np.zeros(16, np.float32)
    with pytest.raises(ValueError, match="a must be C-contiguous"):
        ops.stream_triad(base[::2], np.ones(8, np.float32), np.ones(8, np.float32), scalar=1.0,
                         backend=backend)
    assert not base.any()


@pytest.mark.parametrize("backend", ["numpy", "numba", "c"])
def test_non_contiguous_input(backend):
    dst, src = np.zeros(8, np.float32), np.ones(16, np.float32)[::2]
    with pytest.raises(ValueError, match="src must be C-contiguous"):
        ops.stream_copy(dst, src, backend=backend)
    assert not dst.any()


@pytest.mark.parametrize("backend", ["numpy", "numba", "c"])
def test_read_only_output(backend):
    dst, src = _arrays()
    dst.setflags(write=False)
    with pytest.raises(ValueError, match="dst is read-only"):
        ops.stream_copy(dst, src, backend=backend)
    assert not dst.any()


@pytest.mark.parametrize("backend", ["numpy", "numba", "c"])
def test_aliased_output(backend):
    buf = np.arange(16, dtype=np.float32)
    before = snapshot(buf)
    with pytest.raises(ValueError, match="a and c share memory"):
        ops.stream_triad(buf[:8], np.ones(8, np.float32), buf[4:12], scalar=2.0, backend=backend)
    assert_unchanged([buf], before)


def test_inputs_may_alias_each_other():
    a, b = np.zeros(8, np.float32), np.arange(8, dtype=np.float32)
    ops.stream_triad(a, b, b, scalar=2.0, backend="numba")
    np.testing.assert_array_equal(a, 3 * b)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "2", None, True])
def test_bad_scalar(bad):
    a, b = _arrays()
    with pytest.raises((TypeError, ValueError), match="scalar"):
        ops.stream_triad(a, b, b, scalar=bad, backend="numba")
    assert not a.any()


def test_not_an_array():
    with pytest.raises(TypeError, match="dst must be a numpy.ndarray or a CUDA array"):
        ops.stream_copy([0.0, 1.0], np.ones(2, np.float32))


def test_set_num_threads_governs_both_cpu_backends():
    """fusedops' own count, for both backends; the caller's Numba mask is left alone (its own
    Numba code keeps its count). Other threads and forks: tests/test_threads.py."""
    import numba

    from fusedops._c import lib
    from fusedops._threads import thread_setting

    before, mask = thread_setting(), numba.get_num_threads()
    try:
        fusedops.set_num_threads(1)
        assert fusedops.get_num_threads() == 1
        assert lib.fo_get_num_threads() == 1
        assert numba.get_num_threads() == mask
        fusedops.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        assert lib.fo_get_num_threads() == numba.config.NUMBA_NUM_THREADS
        fusedops.set_num_threads(None)
        assert fusedops.get_num_threads() == mask
    finally:
        fusedops.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -1, 10**6, 1.5, "2", True])
def test_set_num_threads_rejects_bad_values(bad):
    old = fusedops.get_num_threads()
    with pytest.raises(ValueError, match="n must be an integer"):
        fusedops.set_num_threads(bad)
    assert fusedops.get_num_threads() == old


@pytest.mark.parametrize("threads", [1, 2])
def test_results_independent_of_threads(threads):
    import numba

    old = fusedops.get_num_threads()
    b, c = np.random.default_rng(0).standard_normal((2, 100_003)).astype(np.float32)
    ref = np.empty_like(b)
    reference.stream_triad(ref, b, c, 0.25)
    try:
        fusedops.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        for be in ("numba", "c"):
            a = np.empty_like(b)
            ops.stream_triad(a, b, c, scalar=0.25, backend=be)
            np.testing.assert_array_equal(a, ref)
    finally:
        fusedops.set_num_threads(old)
