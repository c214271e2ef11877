"""Batch norm: every mode x backend x dtype against reference.py (float64), the (N, C, L)
layout, and the reference itself against independently written formulas."""
import functools

import numpy as np
import pytest
from conftest import SIM

from fusedops import ops, reference

NS = [2, 3, 17, 1000, 4099]
FS = [1, 5, 64, 100, 1000]
MODES = ["train", "train_plain", "eval", "eval_batch"]
# float32 bound: a few times the rounding of an O(1) result; sums are float64 inside
TOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}


def _small_enough(backend, n, j, c):
    """The CUDA simulator runs each thread in Python: keep its inputs (n rows of j values) to a
    few thousand, and its channels c to 100 (4 merge blocks of 32 channels and a tail, the
    paths 1000 channels take; each merge block is 256 simulated threads)."""
    return not (backend == "cuda" and SIM and (n * j > 4100 or c > 100))


@functools.lru_cache(maxsize=None)
def _case(n, f, l, dtype, mode):
    """Inputs and float64-reference outputs for one case (cached across backends)."""
    rng = np.random.default_rng(n * 7919 + f * 31 + l)
    shape = (n, f) if l == 0 else (n, f, l)
    c = f
    per_channel = (slice(None),) + (None,) * (len(shape) - 2)  # broadcast over L
    x = (rng.standard_normal(shape) * rng.uniform(0.5, 3, c)[per_channel]
         + rng.uniform(-2, 2, c)[per_channel]).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    affine = mode != "train_plain"
    gamma = rng.uniform(0.5, 1.5, c).astype(dtype) if affine else None
    beta = rng.uniform(-1, 1, c).astype(dtype) if affine else None
    tracking = mode in ("train", "eval")
    rm = rng.uniform(-1, 1, c).astype(dtype) if tracking else None
    rv = rng.uniform(0.5, 2, c).astype(dtype) if tracking else None
    x3 = x.reshape(n, c, max(l, 1))
    y, mean, invstd = np.empty(x.shape, dtype), np.empty(c, dtype), np.empty(c, dtype)
    erm = None if rm is None else rm.copy()
    erv = None if rv is None else rv.copy()
    if mode == "eval":
        reference.batchnorm_forward_eval(y.reshape(x3.shape), mean, invstd, x3, rm, rv, gamma,
                                         beta, 1e-5)
    else:
        reference.batchnorm_forward_train(y.reshape(x3.shape), mean, invstd,
                                          erm if mode == "train" else None,
                                          erv if mode == "train" else None, x3, gamma, beta,
                                          1e-5, 0.1)
    dx, dg, db = np.empty(x.shape, dtype), np.empty(c, dtype), np.empty(c, dtype)
    reference.batchnorm_backward(dx.reshape(x3.shape), dg, db, dy.reshape(x3.shape), x3, mean,
                                 invstd, gamma, mode != "eval")
    inputs = dict(x=x, dy=dy, gamma=gamma, beta=beta, rm=rm, rv=rv)
    expected = dict(y=y, mean=mean, invstd=invstd, rm=erm, rv=erv, dx=dx, dgamma=dg, dbeta=db)
    return inputs, expected


def _run(backend, inputs, mode):
    rm = None if inputs["rm"] is None else inputs["rm"].copy()
    rv = None if inputs["rv"] is None else inputs["rv"].copy()
    training = mode.startswith("train")
    y, mean, invstd = ops.batchnorm_forward(inputs["x"], inputs["gamma"], inputs["beta"], rm, rv,
                                            training=training, backend=backend)
    dx, dg, db = ops.batchnorm_backward(inputs["dy"], inputs["x"], inputs["gamma"], mean, invstd,
                                        training=mode != "eval", backend=backend)
    return dict(y=y, mean=mean, invstd=invstd, rm=rm, rv=rv, dx=dx, dgamma=dg, dbeta=db)


def _assert_close(got, expected, dtype, what):
    for key, e in expected.items():
        g = got[key]
        if e is None:
            assert g is None, f"{what}: {key} should be None"
            continue
        assert g.dtype == dtype and g.shape == e.shape, f"{what}: {key} {g.dtype} {g.shape}"
        scale = max(1.0, float(np.max(np.abs(e), initial=0.0)))
        np.testing.assert_allclose(g, e, rtol=TOL[dtype], atol=TOL[dtype] * scale,
                                   err_msg=f"{what}: {key}")


# the largest shapes run in training mode only (time); every mode runs on all the others
CASES = [(n, f, mode) for n in NS for f in FS for mode in MODES if n * f <= 100_000 or mode == "train"]


@pytest.mark.parametrize("n, f, mode", CASES)
def test_matches_reference(backend, dtype, n, f, mode):
    """y, mean, invstd, running stats, dx, dgamma, dbeta of every mode and backend."""
    if not _small_enough(backend, n, f, f):
        pytest.skip("too large for the CUDA simulator")
    inputs, expected = _case(n, f, 0, dtype, mode)
    _assert_close(_run(backend, inputs, mode), expected, dtype, f"{backend} {mode} {n}x{f}")


@pytest.mark.parametrize("shape", [(2, 3, 5), (17, 4, 33), (300, 3, 130), (1, 2, 9)])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_ncl_layout(backend, dtype, shape, mode):
    """(N, C, L): statistics per channel over N and L, every backend against the reference."""
    n, c, l = shape
    if not _small_enough(backend, n, c * l, c):
        pytest.skip("too large for the CUDA simulator")
    inputs, expected = _case(n, c, l, dtype, mode)
    _assert_close(_run(backend, inputs, mode), expected, dtype, f"{backend} {mode} {shape}")


@pytest.mark.parametrize("shape", [(17, 4, 33), (3, 5, 1)])
def test_reference_ncl_equals_transposed_rows(shape):
    """The reference's (N, C, L) result equals the (N*L, C) result on x moved to rows."""
    rng = np.random.default_rng(1)
    n, c, l = shape
    x = rng.standard_normal(shape) * 2 + 1
    x2 = np.ascontiguousarray(x.transpose(0, 2, 1)).reshape(n * l, c)
    y3, y2 = np.empty_like(x), np.empty_like(x2)
    m3, i3, m2, i2 = (np.empty(c) for _ in range(4))
    reference.batchnorm_forward_train(y3, m3, i3, None, None, x, None, None, 1e-5, 0.1)
    reference.batchnorm_forward_train(y2[:, :, None], m2, i2, None, None, x2[:, :, None], None,
                                      None, 1e-5, 0.1)
    np.testing.assert_allclose(m3, m2, rtol=1e-13)
    np.testing.assert_allclose(i3, i2, rtol=1e-13)
    np.testing.assert_allclose(y3.transpose(0, 2, 1).reshape(n * l, c), y2, atol=1e-13)


def test_reference_matches_textbook_formulas():
    """The reference against np.mean / np.var written out, PyTorch's running-stat rule."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 6)) * 3 + 2
    g, b = rng.uniform(0.5, 2, 6), rng.uniform(-1, 1, 6)
    rm, rv = np.zeros(6), np.ones(6)
    y, mean, invstd = np.empty_like(x), np.empty(6), np.empty(6)
    reference.batchnorm_forward_train(y[:, :, None], mean, invstd, rm, rv, x[:, :, None], g, b,
                                      1e-5, 0.1)
    mu, var = x.mean(axis=0), x.var(axis=0)
    np.testing.assert_allclose(mean, mu, rtol=1e-14)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(var + 1e-5), rtol=1e-14)
    np.testing.assert_allclose(y, g * (x - mu) / np.sqrt(var + 1e-5) + b, atol=1e-13)
    np.testing.assert_allclose(rm, 0.1 * mu, rtol=1e-14)
    np.testing.assert_allclose(rv, 0.9 + 0.1 * x.var(axis=0, ddof=1), rtol=1e-14)
    z = (y - b) / g  # normalized: mean 0, biased std 1 (up to eps)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), np.sqrt(var / (var + 1e-5)), rtol=1e-12)


def test_out_is_filled_and_returned(kernel_backend, dtype):
    inputs, expected = _case(17, 5, 0, dtype, "train")
    out = np.full((17, 5), np.nan, dtype)
    y, _, _ = ops.batchnorm_forward(inputs["x"], inputs["gamma"], inputs["beta"], None, None,
                                    training=True, out=out, backend=kernel_backend)
    assert y is out
    np.testing.assert_allclose(out, expected["y"], rtol=TOL[dtype], atol=TOL[dtype] * 5)
    dx_out = np.full((17, 5), np.nan, dtype)
    _, mean, invstd = ops.batchnorm_forward(inputs["x"], inputs["gamma"], inputs["beta"],
                                            None, None, training=True, backend=kernel_backend)
    dx, _, _ = ops.batchnorm_backward(inputs["dy"], inputs["x"], inputs["gamma"], mean, invstd,
                                      out=dx_out, backend=kernel_backend)
    assert dx is dx_out
    np.testing.assert_allclose(dx, expected["dx"], rtol=TOL[dtype], atol=TOL[dtype] * 5)


def test_empty_feature_axis_and_eval_empty_batch(backend, dtype):
    """F = 0 gives empty results; eval with N = 0 needs no statistics of the batch."""
    x = np.empty((4, 0), dtype)
    y, mean, invstd = ops.batchnorm_forward(x, None, None, None, None, training=True,
                                            backend=backend)
    assert y.shape == (4, 0) and mean.shape == (0,) and invstd.shape == (0,)
    x = np.empty((0, 3), dtype)
    rm, rv = np.zeros(3, dtype), np.full(3, 4.0, dtype)
    y, mean, invstd = ops.batchnorm_forward(x, None, None, rm, rv, training=False,
                                            backend=backend)
    assert y.shape == (0, 3)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(4.0 + 1e-5), rtol=1e-6)


@pytest.mark.cuda
def test_cuda_device_arrays_stay_on_device():
    """Device inputs give device outputs (default backend: cuda), same values as the host."""
    from fusedops import _arrays, backends

    if backends.backend_unavailable_reason("cuda"):
        pytest.skip("cuda unavailable")
    from numba import cuda

    inputs, expected = _case(17, 5, 0, np.dtype(np.float32), "train")
    d = {k: None if v is None else cuda.to_device(v) for k, v in inputs.items()}
    y, mean, invstd = ops.batchnorm_forward(d["x"], d["gamma"], d["beta"], d["rm"], d["rv"],
                                            training=True)
    dx, dg, db = ops.batchnorm_backward(d["dy"], d["x"], d["gamma"], mean, invstd)
    got = dict(y=y, mean=mean, invstd=invstd, rm=d["rm"], rv=d["rv"], dx=dx, dgamma=dg, dbeta=db)
    for a in got.values():
        assert _arrays.is_device_array(a)
    _assert_close({k: v.copy_to_host() for k, v in got.items()}, expected, np.dtype(np.float32),
                  "cuda device")
