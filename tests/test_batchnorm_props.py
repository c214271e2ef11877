"""Batch norm properties: finite-difference gradients, numerical stability, determinism
across thread counts, NaN propagation, running-statistics rules and bad input."""
import numpy as np
import pytest
from conftest import assert_unchanged, snapshot

import fusedops
from fusedops import ops


def _loss_parts(x, g, b, w, training):
    """L = sum(w * y) for batch-stat (training) or fixed running-stat normalization, with the
    reference forward (every backend's forward equals it: test_batchnorm.py); a backend's own
    forward here would cost the CUDA simulator 4 launches per difference and a minute a test."""
    rm, rv = np.full(x.shape[1], 0.3), np.full(x.shape[1], 1.7)
    y, _, _ = ops.batchnorm_forward(x, g, b, rm, rv, training=training, backend="numpy")
    return float(np.sum(w * y))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(7, 3), (5, 2, 4)])
def test_gradients_match_finite_differences(backend, shape, training):
    """The backend's dx, dgamma, dbeta against central differences of sum(w*y) in float64."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape) * 1.5 + 0.5
    c = shape[1]
    g, b = rng.uniform(0.5, 1.5, c), rng.uniform(-1, 1, c)
    w = rng.standard_normal(shape)
    rm, rv = np.full(c, 0.3), np.full(c, 1.7)
    _, mean, invstd = ops.batchnorm_forward(x, g, b, rm, rv, training=training, backend=backend)
    dx, dg, db = ops.batchnorm_backward(w, x, g, mean, invstd, training=training, backend=backend)
    h = 1e-6
    for arr, grad in ((x, dx), (g, dg), (b, db)):
        num = np.empty(arr.shape)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + h
            up = _loss_parts(x, g, b, w, training)
            arr[i] = old - h
            down = _loss_parts(x, g, b, w, training)
            arr[i] = old
            num[i] = (up - down) / (2 * h)
        np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype,mean,atol", [(np.float32, 1e4, 2e-3), (np.float64, 1e8, 1e-6)])
def test_large_mean_is_stable(backend, dtype, mean, atol):
    """Features with mean >> std: E[x^2]-E[x]^2 in the input dtype cancels completely here,
    the two-pass / Chan merge keeps mean ~0 and std ~1 after normalization."""
    rng = np.random.default_rng(4)
    n, f = (1000, 8) if backend != "cuda" else (300, 8)
    x = (mean + rng.standard_normal((n, f))).astype(dtype)
    naive = (x * x).mean(axis=0, dtype=dtype) - x.mean(axis=0, dtype=dtype) ** 2
    assert np.max(np.abs(naive - 1)) > 0.5  # the data really does defeat the naive formula
    y, _, invstd = ops.batchnorm_forward(x, None, None, None, None, training=True,
                                         backend=backend)
    y64 = y.astype(np.float64)
    true_std = x.astype(np.float64).std(axis=0)
    np.testing.assert_allclose(y64.mean(axis=0), 0, atol=atol)
    # std 1 up to eps: var / (var + eps)
    np.testing.assert_allclose(y64.std(axis=0), true_std / np.sqrt(true_std**2 + 1e-5), atol=atol)
    # the float64 chunk means carry ulp(mean) ~ mean*eps, which enters the variance once
    rtol = 1e-6 if dtype == np.float32 else 1e-8
    np.testing.assert_allclose(1 / invstd.astype(np.float64), np.sqrt(true_std**2 + 1e-5),
                               rtol=rtol)


def test_constant_features_give_beta_not_nan(backend, dtype):
    x = np.full((33, 3), 5.5, dtype)
    x[:, 1] = -1e3
    beta = np.array([0.25, -1.0, 0.0], dtype)
    y, mean, invstd = ops.batchnorm_forward(x, np.ones(3, dtype), beta, None, None,
                                            training=True, backend=backend)
    np.testing.assert_array_equal(y, np.broadcast_to(beta, x.shape))
    np.testing.assert_allclose(invstd, 1 / np.sqrt(1e-5), rtol=1e-6)
    dx, dg, db = ops.batchnorm_backward(np.ones_like(x), x, None, mean, invstd, backend=backend)
    assert np.all(np.isfinite(dx)) and np.all(np.isfinite(dg))


@pytest.mark.parametrize("be", ["numba", "c"])
def test_same_bits_for_any_thread_count(be, dtype):
    """Fixed chunks + fixed-order merge: 1 and 2 threads give identical bits."""
    if fusedops.backends.backend_unavailable_reason(be):
        pytest.skip(be)
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((3001, 70)) * 2 + 3).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    results = []
    before = fusedops.get_num_threads()
    try:
        for threads in (1, 2, 1):
            fusedops.set_num_threads(threads)
            rm, rv = np.zeros(70, dtype), np.ones(70, dtype)
            y, m, s = ops.batchnorm_forward(x, None, None, rm, rv, training=True, backend=be)
            dx, dg, db = ops.batchnorm_backward(dy, x, None, m, s, backend=be)
            results.append([a.view(np.uint8).copy() for a in (y, m, s, rm, rv, dx, dg, db)])
    finally:
        fusedops.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.cuda
def test_cuda_same_bits_for_any_block_size(monkeypatch):
    if fusedops.backends.backend_unavailable_reason("cuda"):
        pytest.skip("cuda unavailable")
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((300, 9)) + 2).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for block in ("32", "64"):
        monkeypatch.setenv("FUSEDOPS_CUDA_BLOCK", block)
        y, m, s = ops.batchnorm_forward(x, None, None, None, None, training=True, backend="cuda")
        dx, dg, db = ops.batchnorm_backward(dy, x, None, m, s, backend="cuda")
        results.append([a.view(np.uint8).copy() for a in (y, m, s, dx, dg, db)])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_nan_stays_in_its_channel(backend):
    """Documented: NaN is not checked for; it poisons its own channel only."""
    x = np.random.default_rng(7).standard_normal((20, 3))
    x[4, 1] = np.nan
    rm, rv = np.zeros(3), np.ones(3)
    y, mean, invstd = ops.batchnorm_forward(x, None, None, rm, rv, training=True,
                                            backend=backend)
    assert np.all(np.isnan(y[:, 1])) and np.isnan(mean[1]) and np.isnan(rm[1])
    assert np.all(np.isfinite(y[:, [0, 2]])) and np.all(np.isfinite(rv[[0, 2]]))


def test_running_statistics_rules(backend):
    """eval leaves them alone; momentum 0 keeps them; momentum 1 sets mean and unbiased var."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((9, 4)) * 2 + 1
    rm, rv = np.full(4, 0.5), np.full(4, 2.0)
    ops.batchnorm_forward(x, None, None, rm, rv, training=False, backend=backend)
    ops.batchnorm_forward(x, None, None, rm, rv, training=True, momentum=0.0, backend=backend)
    np.testing.assert_array_equal(rm, 0.5)
    np.testing.assert_array_equal(rv, 2.0)
    ops.batchnorm_forward(x, None, None, rm, rv, training=True, momentum=1.0, backend=backend)
    np.testing.assert_allclose(rm, x.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(rv, x.var(axis=0, ddof=1), rtol=1e-13)


def _good(dtype=np.float32):
    rng = np.random.default_rng(9)
    return dict(x=rng.standard_normal((6, 4)).astype(dtype), gamma=np.ones(4, dtype),
                beta=np.zeros(4, dtype), running_mean=np.zeros(4, dtype),
                running_var=np.ones(4, dtype))


BAD_FORWARD = [
    ("x", dict(x=np.ones((1, 4), np.float32)), ValueError, "more than one value"),
    ("x", dict(x=np.ones(4, np.float32)), ValueError, "x must be 2-D"),
    ("x", dict(x=np.ones((6, 4), np.int32)), TypeError, "x must have dtype"),
    ("gamma", dict(gamma=np.ones(3, np.float32)), ValueError, "gamma must have shape"),
    ("beta", dict(beta=np.ones((4, 1), np.float32)), ValueError, "beta must have shape"),
    ("running_mean", dict(running_mean=np.zeros(5, np.float32)), ValueError, "running_mean"),
    ("running_var", dict(running_var=np.ones(4, np.float64)), TypeError, "running_var"),
    ("gamma", dict(gamma=np.ones(4, np.float64)), TypeError, "gamma must have dtype"),
    ("running_var", dict(running_var=None), ValueError, "given together"),
    ("eps", dict(eps=-1e-5), ValueError, "eps"),
    ("eps", dict(eps=0.0), ValueError, "eps"),
    ("momentum", dict(momentum=1.5), ValueError, "momentum"),
    ("momentum", dict(momentum=-0.1), ValueError, "momentum"),
    ("training", dict(training=1), TypeError, "training"),
    ("out", dict(out=np.empty((6, 3), np.float32)), ValueError, "out"),
]


@pytest.mark.parametrize("name,change,exc,match", BAD_FORWARD, ids=[b[3] for b in BAD_FORWARD])
def test_bad_forward_input_raises_and_writes_nothing(backend, name, change, exc, match):
    args = _good()
    kw = dict(training=True, momentum=0.1, eps=1e-5, out=None)
    for k, v in change.items():
        (args if k in args else kw)[k] = v
    arrays = list(args.values()) + [kw["out"]]
    copies = snapshot(*arrays)
    with pytest.raises(exc, match=match):
        ops.batchnorm_forward(*args.values(), backend=backend, **kw)
    assert_unchanged(arrays, copies)


def test_overlapping_or_read_only_outputs_rejected(backend):
    args = _good()
    copies = snapshot(*args.values())
    with pytest.raises(ValueError, match="share memory"):
        ops.batchnorm_forward(*args.values(), training=True, out=args["x"], backend=backend)
    args["running_mean"].flags.writeable = False
    with pytest.raises(ValueError, match="running_mean is read-only"):
        ops.batchnorm_forward(*args.values(), training=True, backend=backend)
    assert_unchanged(list(args.values()), copies)


def test_bad_backward_input(backend):
    a = _good()
    x, g = a["x"], a["gamma"]
    m, s = np.zeros(4, np.float32), np.ones(4, np.float32)
    with pytest.raises(ValueError, match="dy must have the same shape"):
        ops.batchnorm_backward(np.ones((5, 4), np.float32), x, g, m, s, backend=backend)
    with pytest.raises(TypeError, match="mean must be"):
        ops.batchnorm_backward(np.ones_like(x), x, g, None, s, backend=backend)
    with pytest.raises(ValueError, match="invstd must have shape"):
        ops.batchnorm_backward(np.ones_like(x), x, g, m, np.ones(3, np.float32), backend=backend)
    with pytest.raises(TypeError, match="dy must have the same dtype"):
        ops.batchnorm_backward(np.ones((6, 4)), x, g, m, s, backend=backend)
    dy = np.ones_like(x)
    copies = snapshot(dy, x)
    with pytest.raises(ValueError, match="share memory"):
        ops.batchnorm_backward(dy, x, g, m, s, out=dy, backend=backend)
    with pytest.raises(ValueError, match="out must have the same shape"):
        ops.batchnorm_backward(dy, x, g, m, s, out=np.empty((6, 5), np.float32), backend=backend)
    assert_unchanged([dy, x], copies)




def test_numba_and_c_agree(dtype):
    """Both CPU backends sum and merge in the same order with the same formulas: the forward
    outputs are bit-identical; backward agrees to a few ulps (compilers round dx's float32
    coefficients differently)."""
    if fusedops.backends.backend_unavailable_reason("c"):
        pytest.skip("c unavailable")
    rng = np.random.default_rng(10)
    x = (rng.standard_normal((700, 3, 5)) * 3 + 7).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    g, b = rng.uniform(0.5, 2, 3).astype(dtype), rng.uniform(-1, 1, 3).astype(dtype)
    got = []
    for be in ("numba", "c"):
        rm, rv = np.zeros(3, dtype), np.ones(3, dtype)
        y, m, s = ops.batchnorm_forward(x, g, b, rm, rv, training=True, backend=be)
        got.append((y, m, s, rm, rv) + ops.batchnorm_backward(dy, x, g, m, s, backend=be))
    for a, c in zip(got[0][:5], got[1][:5]):
        np.testing.assert_array_equal(a.view(np.uint8), c.view(np.uint8))
    eps = np.finfo(dtype).eps
    for a, c in zip(got[0][5:], got[1][5:]):
        np.testing.assert_allclose(a, c, rtol=4 * eps, atol=4 * eps * np.max(np.abs(c)))
