"""Every optimizer x option x regularization x backend x dtype against the NumPy reference run
in extended precision over 10 steps, comparing the parameters and every state buffer element by
element (optim_cases.bound), on empty, tiny, odd and prime sizes (the prime ones beyond the C
kernels' block and parallel thresholds)."""
import numpy as np
import pytest
from conftest import SIM, sizes_for
from optim_cases import (CASES, REGULARIZATION, bound, case_id, gradients, initial,
                         references, run)

SIZES = [0, 1, 7, 97, 1031, 65537]
STEPS = 10


def _sizes(backend):
    # the simulator runs each CUDA thread in Python: sizes that still span several 32-thread blocks
    return [n for n in sizes_for(backend, SIZES) if not (backend == "cuda" and SIM and n > 300)]


@pytest.mark.parametrize("reg", list(REGULARIZATION))
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_matches_reference(case, reg, kernel_backend, dtype):
    for n in _sizes(kernel_backend):
        w, grads = initial(n, dtype), gradients(n, STEPS, dtype)
        got = run(case, reg, kernel_backend, w, grads)
        truth, ref_dt, peaks = references(case, reg, w, grads)
        for name, ref in truth.items():
            assert got[name].dtype == dtype
            err = np.abs(got[name] - ref).astype(np.float64)
            bad = np.flatnonzero(~(err <= bound(dtype, ref, ref_dt[name], peaks[name])))  # NaN too
            assert bad.size == 0, (name, n, bad[:5], got[name][bad[:5]], ref[bad[:5]])


def test_steps_move_the_parameters(kernel_backend):
    """Guard against a comparison that passes because nothing happened."""
    for case in CASES:
        w, grads = initial(101, np.float32), gradients(101, 3, np.float32)
        got = run(case, "none", kernel_backend, w, grads)
        nonzero = grads.any(axis=0)
        assert np.all(got["param"][nonzero] != w[nonzero]), case_id(case)


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_multidimensional_and_float64_bitwise_between_runs(case, kernel_backend):
    """2-D parameters work like flat ones, and a rerun gives the same bits."""
    w, grads = initial(6 * 35, np.float64), gradients(6 * 35, 4, np.float64)
    flat = run(case, "elastic", kernel_backend, w, grads)
    shaped = run(case, "elastic", kernel_backend, w.reshape(6, 35), grads.reshape(4, 6, 35))
    for name in flat:
        np.testing.assert_array_equal(shaped[name].ravel(), flat[name])


def test_nonfinite_count(backend):
    from fusedops.ops.optim import count_nonfinite

    for n in _sizes(backend):
        for dtype in (np.float32, np.float64):
            g = gradients(n, 1, dtype)[0]
            bad = np.arange(0, n, 13)
            g[bad[::3]] = np.nan
            g[bad[1::3]] = np.inf
            g[bad[2::3]] = -np.inf
            count = np.zeros(1, np.int64)
            count_nonfinite(backend, [g, g[: n // 2]], count)
            assert count[0] == bad.size + np.count_nonzero(bad < n // 2)


@pytest.mark.cuda
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_cuda_grid_stride_loops(case, monkeypatch):
    """A grid smaller than the data: every thread walks several elements (test_matches_reference's
    simulator sizes fit in one pass of the 4-block grid). Adam's kernel takes a second element a
    grid apart per iteration: that path runs only here, in float32 too (dropping inv_c2 from the
    second element passes every test_matches_reference case and fails this one)."""
    from fusedops import backends

    if backends.backend_unavailable_reason("cuda"):
        pytest.skip("cuda unavailable")
    from fusedops.kernels.cuda import optim as cuda_optim

    monkeypatch.setattr(cuda_optim, "grid_for", lambda n, tpb: 2)
    n = 300
    w, grads = initial(n, np.float64), gradients(n, 3, np.float64)
    got = run(case, "elastic", "cuda", w, grads)
    ref = run(case, "elastic", "numpy", w, grads)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-13, atol=1e-15, err_msg=name)
    if case[0] == "adam":
        w, grads = initial(n, np.float32), gradients(n, 3, np.float32)
        got = run(case, "elastic", "cuda", w, grads)
        truth, ref32, peaks = references(case, "elastic", w, grads)
        for name, ref in truth.items():
            err = np.abs(got[name] - ref)
            assert np.all(err <= bound(np.float32, ref, ref32[name], peaks[name])), name


@pytest.mark.cuda
def test_cuda_nonfinite_count_grid_stride(monkeypatch):
    from fusedops import backends
    from fusedops.ops.optim import count_nonfinite

    if backends.backend_unavailable_reason("cuda"):
        pytest.skip("cuda unavailable")
    from fusedops.kernels.cuda import optim as cuda_optim

    monkeypatch.setattr(cuda_optim, "grid_for", lambda n, tpb: 2)
    g = np.ones(300, np.float32)
    g[[0, 63, 64, 200, 299]] = [np.nan, np.inf, -np.inf, np.nan, np.inf]
    count = np.zeros(1, np.int64)
    count_nonfinite("cuda", [g], count)
    assert count[0] == 5
