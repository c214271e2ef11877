"""Synchronized batch norm ops (a batch split into parts, as across processes): with one part
the results are bitwise those of the plain training calls; split into uneven parts (one of
them empty) they equal the whole batch's reference; the statistics merge is stable where
E[x^2] - E[x]^2 cancels; bad input names the argument and writes nothing."""
import numpy as np
import pytest
from conftest import SIM, assert_unchanged, snapshot

from fusedops import ops, reference

TOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}  # as test_batchnorm.py


def _inputs(shape, dtype, affine=True, seed=0):
    rng = np.random.default_rng(seed)
    c = shape[1]
    per_channel = (slice(None),) + (None,) * (len(shape) - 2)
    x = (rng.standard_normal(shape) * rng.uniform(0.5, 3, c)[per_channel]
         + rng.uniform(-2, 2, c)[per_channel]).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    g = rng.uniform(0.5, 1.5, c).astype(dtype) if affine else None
    b = rng.uniform(-1, 1, c).astype(dtype) if affine else None
    return x, dy, g, b


def _sync(parts, dparts, g, b, rm, rv, backend):
    """What P processes compute: stats per part, one merge, forward and backward per part."""
    c = parts[0].shape[1]
    stats = [ops.batchnorm_stats(p, backend=backend) for p in parts]
    counts = [p.size // c for p in parts]
    whole = ops.batchnorm_merge_stats(counts, [s[0] for s in stats], [s[1] for s in stats])
    fwd = []
    for i, p in enumerate(parts):  # every process updates its own copy of the running stats
        rmi, rvi = (None, None) if rm is None else (rm.copy(), rv.copy())
        fwd.append((*ops.batchnorm_forward(p, g, b, rmi, rvi, training=True, backend=backend,
                                           batch_stats=whole), rmi, rvi))
    mean, invstd = fwd[0][1], fwd[0][2]
    sums = [ops.batchnorm_grad_sums(dp, p, mean, backend=backend) for dp, p in zip(dparts, parts)]
    gsum, gdot = sum(s[0] for s in sums), sum(s[1] for s in sums)
    bwd = [ops.batchnorm_backward(dp, p, g, mean, invstd, backend=backend,
                                  grad_sums=(gsum, gdot, whole[2])) for dp, p in zip(dparts, parts)]
    return fwd, bwd


SHAPES = [(37, 5), (130, 2, 3), (2, 1)]  # (130, ...): two 128-row chunks


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_one_part_is_bitwise_the_plain_training_call(backend, dtype, shape, affine):
    if backend == "cuda" and SIM and not affine:
        pytest.skip("the simulator is slow: affine=False is a flag of the same CUDA kernels")
    x, dy, g, b = _inputs(shape, dtype, affine)
    c = shape[1]
    rm, rv = np.linspace(-1, 1, c).astype(dtype), np.linspace(0.5, 2, c).astype(dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    y0, m0, i0 = ops.batchnorm_forward(x, g, b, rm0, rv0, training=True, backend=backend)
    dx0, dg0, db0 = ops.batchnorm_backward(dy, x, g, m0, i0, backend=backend)
    (fwd,), (bwd,) = _sync([x], [dy], g, b, rm, rv, backend)
    for name, got, want in zip(("y", "mean", "invstd", "running_mean", "running_var", "dx",
                                "dgamma", "dbeta"), (*fwd, *bwd), (y0, m0, i0, rm0, rv0, dx0, dg0, db0)):
        assert got.dtype == want.dtype, name
        if backend == "numpy" and name in ("dx", "dgamma"):
            # the reference sums dy*xhat; the synced form sums dy*(x - mean), then * invstd
            # (as every compiled backend's plain kernel does): equal up to float64 rounding
            np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14, err_msg=name)
        else:
            np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("shape", [(301, 6), (97, 2, 3)])
@pytest.mark.parametrize("cuts", [(0, 1, 1, 150), (0, 0, 40, 260)])  # a 1-row and empty parts
def test_uneven_parts_equal_the_whole_batch_reference(backend, dtype, shape, cuts):
    if backend == "cuda" and SIM and (shape[0] > 100 or dtype == np.float64):
        pytest.skip("the simulator runs CUDA threads in Python: small float32 inputs only")
    x, dy, g, b = _inputs(shape, dtype, seed=3)
    n, c = shape[0], shape[1]
    bounds = [min(k, n) for k in cuts] + [n]
    parts = [np.ascontiguousarray(x[lo:hi]) for lo, hi in zip(bounds, bounds[1:])]
    dparts = [np.ascontiguousarray(dy[lo:hi]) for lo, hi in zip(bounds, bounds[1:])]
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    fwd, bwd = _sync(parts, dparts, g, b, rm, rv, backend)
    x3 = x.reshape(n, c, -1)
    y, mean, invstd, erm, erv = np.empty(x.shape), np.empty(c), np.empty(c), rm.astype(float), rv.astype(float)
    reference.batchnorm_forward_train(y.reshape(x3.shape), mean, invstd, erm, erv,
                                      x3.astype(np.float64), g.astype(float), b.astype(float), 1e-5, 0.1)
    dx, dg, db = np.empty(x.shape), np.empty(c), np.empty(c)
    reference.batchnorm_backward(dx.reshape(x3.shape), dg, db, dy.reshape(x3.shape).astype(float),
                                 x3.astype(np.float64), mean, invstd, g.astype(float), True)
    tol = TOL[dtype]
    got_y = np.concatenate([f[0] for f in fwd])
    got_dx = np.concatenate([r[0] for r in bwd])
    for name, got, want in (("y", got_y, y), ("dx", got_dx, dx), ("mean", fwd[0][1], mean),
                            ("invstd", fwd[0][2], invstd), ("dgamma", bwd[0][1], dg),
                            ("dbeta", bwd[0][2], db)):
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=name)
    for f in fwd:  # every process ends with the same running statistics, the whole batch's
        np.testing.assert_array_equal(f[3], fwd[0][3])
        np.testing.assert_array_equal(f[4], fwd[0][4])
        np.testing.assert_allclose(f[3], erm, rtol=tol, atol=tol)
        np.testing.assert_allclose(f[4], erv, rtol=tol, atol=tol)
    for r in bwd:  # and the same parameter gradients, the whole batch's
        np.testing.assert_array_equal(r[1], bwd[0][1])


def test_merge_is_stable_when_the_mean_dwarfs_the_spread(kernel_backend):
    """Parts of data with mean 1e6 and std 1e-2: the merged variance keeps ~8 digits (the
    sum-of-squares form E[x^2] - E[x]^2 would keep none: 1e12 against 1e-4)."""
    rng = np.random.default_rng(4)
    x = 1e6 + 1e-2 * rng.standard_normal((600, 3))
    parts = np.split(x, [1, 250, 251, 600])
    stats = [ops.batchnorm_stats(np.ascontiguousarray(p), backend=kernel_backend) for p in parts]
    mean, m2, count = ops.batchnorm_merge_stats([len(p) for p in parts], [s[0] for s in stats],
                                                [s[1] for s in stats])
    assert count == 600
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(m2 / count, x.var(axis=0), rtol=1e-7)  # the data's own limit


def test_merge_of_one_part_returns_it_unchanged():
    rng = np.random.default_rng(5)
    mean, m2 = rng.standard_normal(7) * 1e3, rng.uniform(0, 10, 7)
    got = ops.batchnorm_merge_stats([13], mean[None], m2[None])
    assert got[2] == 13
    np.testing.assert_array_equal(got[0], mean)
    np.testing.assert_array_equal(got[1], m2)


def test_an_empty_part_has_zero_statistics_and_empty_gradients(backend):
    x = np.empty((0, 4), np.float32)
    mean, m2 = ops.batchnorm_stats(x, backend=backend)
    assert mean.dtype == np.float64 and np.all(mean == 0) and np.all(m2 == 0)
    whole = (np.arange(4.0), np.ones(4), 10)
    y, m, inv = ops.batchnorm_forward(x, None, None, None, None, training=True, backend=backend,
                                      batch_stats=whole)
    assert y.shape == (0, 4)
    np.testing.assert_allclose(inv, 1 / np.sqrt(0.1 + 1e-5), rtol=1e-6)
    s, d = ops.batchnorm_grad_sums(x, x, m, backend=backend)
    assert np.all(s == 0) and np.all(d == 0)
    dx, dg, db = ops.batchnorm_backward(x, x, None, m, inv, backend=backend,
                                        grad_sums=(np.ones(4), np.ones(4), 10))
    assert dx.shape == (0, 4)
    np.testing.assert_array_equal(db, np.ones(4, np.float32))


def _bad(x):
    c = x.shape[1]
    ok = (np.zeros(c), np.ones(c), 40)
    return [
        (dict(training=False), ValueError, "batch_stats applies in training only"),
        (dict(batch_stats=ok[:2]), TypeError, "batch_stats must be a tuple"),
        (dict(batch_stats=(np.zeros(c, np.float32), ok[1], 40)), TypeError, "batch_stats mean"),
        (dict(batch_stats=(ok[0], np.ones(c + 1), 40)), ValueError, "batch_stats m2"),
        (dict(batch_stats=(*ok[:2], 1)), ValueError, "batch_stats count must be in"),
        (dict(batch_stats=(*ok[:2], 5)), ValueError, "smaller than the 20 values"),
        (dict(batch_stats=(*ok[:2], 40.0)), TypeError, "batch_stats count must be an integer"),
    ]


@pytest.mark.parametrize("case", range(7))
def test_bad_batch_stats_name_the_argument_and_write_nothing(backend, case):
    x, _, g, b = _inputs((20, 3), np.float32)
    rm, rv, out = np.zeros(3, np.float32), np.ones(3, np.float32), np.full_like(x, 7.0)
    kwargs, exc, words = _bad(x)[case]
    args = dict(training=True, batch_stats=(np.zeros(3), np.ones(3), 40), out=out, backend=backend)
    args.update(kwargs)
    snap = snapshot(x, rm, rv, out)
    with pytest.raises(exc, match=words):
        ops.batchnorm_forward(x, g, b, rm, rv, **args)
    assert_unchanged([x, rm, rv, out], snap)


def test_bad_grad_sums_name_the_argument_and_write_nothing(backend):
    x, dy, g, _ = _inputs((20, 3), np.float32)
    mean, inv, out = np.zeros(3, np.float32), np.ones(3, np.float32), np.full_like(x, 7.0)
    snap = snapshot(x, dy, out)
    for kwargs, exc, words in [
            (dict(training=False), ValueError, "grad_sums applies in training only"),
            (dict(grad_sums=(np.zeros(3), np.zeros(3))), TypeError, "grad_sums must be a tuple"),
            (dict(grad_sums=(np.zeros(3), np.zeros(2), 40)), ValueError, "grad_sums sum_dy_xmu"),
            (dict(grad_sums=(np.zeros(3), np.zeros(3), 19)), ValueError, "smaller than the 20")]:
        args = dict(grad_sums=(np.zeros(3), np.zeros(3), 40), out=out, backend=backend)
        args.update(kwargs)
        with pytest.raises(exc, match=words):
            ops.batchnorm_backward(dy, x, g, mean, inv, **args)
    assert_unchanged([x, dy, out], snap)


@pytest.mark.parametrize("counts, means, words", [
    ([3, -1], np.zeros((2, 2)), "counts must be a 1-D array of non-negative integers"),
    ([3.0, 1.0], np.zeros((2, 2)), "counts must be a 1-D array"),
    ([3, 1], np.zeros((3, 2)), "means and m2s must both be"),
])
def test_merge_rejects_bad_parts(counts, means, words):
    with pytest.raises(ValueError, match=words):
        ops.batchnorm_merge_stats(counts, means, means)
