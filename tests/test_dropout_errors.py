"""Bad input to the dropout ops: a clear exception naming the argument, and nothing written."""
import numpy as np
import pytest
from conftest import assert_unchanged, snapshot

from fusedops import ops


def _arrays(n=50, dtype=np.float32):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n).astype(dtype)
    out = np.full(n, 7.0, dtype)
    mask = np.full((n + 7) // 8, 0xA5, np.uint8)
    return x, out, mask


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(p=-0.1), ValueError, "p must be >= 0"),
    (dict(p=1.5), ValueError, "p must be <= 1"),
    (dict(p=float("nan")), ValueError, "p must be finite"),
    (dict(p="0.5"), TypeError, "p must be a real number"),
    (dict(seed=-1), ValueError, "seed must be in"),
    (dict(seed=1.5), TypeError, "seed must be an integer"),
    (dict(seed=1 << 64), ValueError, "seed must be in"),
    (dict(offset=-3), ValueError, "offset must be in"),
    (dict(offset=2.0), TypeError, "offset must be an integer"),
    (dict(mode="spatial"), ValueError, "mode must be"),
    (dict(training=1), TypeError, "training must be"),
    (dict(return_mask=None), TypeError, "return_mask must be"),
])
def test_forward_bad_hyperparameters(backend, kwargs, exc, words):
    x, out, _ = _arrays()
    args = dict(p=0.5, seed=1, out=out, backend=backend)
    args.update(kwargs)
    snap = snapshot(x, out)
    with pytest.raises(exc, match=words):
        ops.dropout_forward(x, args.pop("p"), **args)
    assert_unchanged([x, out], snap)


def test_forward_bad_arrays(backend):
    x, out, _ = _arrays()
    snap = snapshot(x, out)
    cases = [
        (dict(out=np.empty((50, 2), np.float32)[:, 0]), ValueError, "out must be C-contiguous"),
        (dict(out=np.empty(49, np.float32)), ValueError, "out must have the same shape"),
        (dict(out=np.empty(50, np.float64)), TypeError, "out must have the same dtype"),
        (dict(out=x), ValueError, "share memory"),
        (dict(x=np.arange(50)), TypeError, "x must have dtype"),
        (dict(x=np.empty((50, 2), np.float32)[:, 0]), ValueError, "x must be C-contiguous"),
    ]
    ro = np.empty(50, np.float32)
    ro.flags.writeable = False
    cases.append((dict(out=ro), ValueError, "out is read-only"))
    for kwargs, exc, words in cases:
        args = dict(x=x, out=out)
        args.update(kwargs)
        with pytest.raises(exc, match=words):
            ops.dropout_forward(args.pop("x"), 0.5, seed=1, backend=backend, **args)
        assert_unchanged([x, out], snap)


def test_backward_bad_input(backend):
    dy, out, mask = _arrays()
    snap = snapshot(dy, out, mask)
    cases = [
        (dict(mask=mask[:-1]), ValueError, "mask must have ceil"),
        (dict(mask=np.zeros(8, np.uint8)), ValueError, "mask must have ceil"),
        (dict(mask=mask.astype(np.int8)), TypeError, "mask must have dtype uint8"),
        (dict(mask=mask.astype(bool)), TypeError, "mask must have dtype uint8"),
        (dict(mask=np.zeros((7, 1), np.uint8)), ValueError, "mask must be 1-D"),
        (dict(dy=np.ones(80, np.float32)), ValueError, "mask must have ceil"),  # dy vs mask
        (dict(mask=None), ValueError, "either mask"),
        (dict(seed=3), ValueError, "either mask"),
        (dict(mask=None, seed=-2), ValueError, "seed must be in"),
        (dict(mask=None, seed=2, offset=1.0), TypeError, "offset must be an integer"),
        (dict(p=1.01), ValueError, "p must be <= 1"),
        (dict(mode="Inverted"), ValueError, "mode must be"),
        (dict(out=np.empty((50, 2), np.float32)[:, 0]), ValueError, "out must be C-contiguous"),
        (dict(out=np.empty(50, np.float64)), TypeError, "out must have the same dtype"),
        (dict(out=dy), ValueError, "share memory"),
    ]
    for kwargs, exc, words in cases:
        args = dict(dy=dy, p=0.5, mask=mask, out=out)
        args.update(kwargs)
        with pytest.raises(exc, match=words):
            ops.dropout_backward(args.pop("dy"), backend=backend, **args)
        assert_unchanged([dy, out, mask], snap)


def test_mask_and_unpack_bad_input():
    with pytest.raises(ValueError, match="shape must be"):
        ops.dropout_mask((3, -1), 0.5, seed=1)
    with pytest.raises(ValueError, match="shape must be"):
        ops.dropout_mask(2.5, 0.5, seed=1)
    with pytest.raises(ValueError, match="p must be <= 1"):
        ops.dropout_mask(10, 2.0, seed=1)
    with pytest.raises(ValueError, match="seed must be in"):
        ops.dropout_mask(10, 0.5, seed=-5)
    with pytest.raises(ValueError, match="mask must have ceil"):
        ops.unpack_mask(np.zeros(2, np.uint8), (17,))
    with pytest.raises(TypeError, match="mask must have dtype uint8"):
        ops.unpack_mask(np.zeros(3, np.float32), (17,))
