"""fusedops.data: the digits split, noise and PSNR."""
import numpy as np
import pytest
from conftest import assert_unchanged, snapshot

from fusedops.data import add_noise, load_digits, psnr, stratified_split


def test_load_digits_scaled_stratified_and_reproducible():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits as sk

    Xtr, Xte, ytr, yte = load_digits(test_size=0.2, seed=0)
    assert Xtr.shape == (1438, 64) and Xte.shape == (359, 64) and Xtr.dtype == np.float32
    assert ytr.dtype == np.int64 and Xtr.min() == 0 and Xtr.max() == 1
    # stratified: each class's test share is 20% up to rounding
    counts = np.bincount(np.concatenate([ytr, yte]), minlength=10)
    assert np.all(np.abs(np.bincount(yte, minlength=10) - 0.2 * counts) <= 0.5)
    # a partition of the original rows, pixels /16
    d = sk()
    both = np.concatenate([Xtr, Xte]).astype(np.float64) * 16
    assert sorted(map(bytes, both.astype(np.uint8))) == sorted(map(bytes, d.data.astype(np.uint8)))
    again = load_digits(test_size=0.2, seed=0)
    for a, b in zip((Xtr, Xte, ytr, yte), again):
        np.testing.assert_array_equal(a, b)
    other = load_digits(test_size=0.2, seed=1)
    assert not np.array_equal(other[3], yte)
    assert load_digits(0.5, dtype=np.float64)[0].dtype == np.float64


def test_stratified_split_indices():
    y = np.repeat(np.arange(3), [10, 20, 31])
    tr, te = stratified_split(y, 0.3, seed=4)
    assert sorted(np.concatenate([tr, te])) == list(range(61))
    assert np.bincount(y[te]).tolist() == [3, 6, 9]
    with pytest.raises(ValueError, match="test_size"):
        stratified_split(y, 1.0)


def test_add_noise_kinds():
    X = np.full((400, 50), 0.5, np.float32)
    copy = snapshot(X)
    g = add_noise(X, "gaussian", 0.2, seed=3)
    assert g.dtype == np.float32 and abs((g - X).std() - 0.2) < 0.01 and abs((g - X).mean()) < 0.01
    m = add_noise(X, "masking", 0.3, seed=3)
    assert abs((m == 0).mean() - 0.3) < 0.02 and set(np.unique(m)) == {0.0, 0.5}
    s = add_noise(X, "salt_pepper", 0.2, seed=3)
    assert abs((s != 0.5).mean() - 0.2) < 0.02 and set(np.unique(s)) == {0.0, 0.5, 1.0}
    c = add_noise(X, "gaussian", 2.0, seed=3, clip=(0, 1))
    assert c.min() == 0 and c.max() == 1
    np.testing.assert_array_equal(add_noise(X, "gaussian", 0.2, seed=3), g)
    assert_unchanged([X], copy)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(kind="speckle"), ValueError, "kind"),
    (dict(kind="masking", level=1.5), ValueError, "level"),
    (dict(kind="gaussian", level=-0.1), ValueError, "level"),
    (dict(X=np.zeros((3, 3), np.int64)), TypeError, "float"),
])
def test_add_noise_bad_input(kwargs, exc, match):
    args = dict(X=np.zeros((3, 3)), kind="gaussian", level=0.1)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        add_noise(args.pop("X"), **args)


def test_psnr():
    a = np.zeros((4, 4))
    b = a + 0.1  # MSE 0.01 -> 20 dB at range 1
    assert psnr(a, b) == pytest.approx(20.0)
    assert psnr(a, b, data_range=255) == pytest.approx(20 + 20 * np.log10(255))
    assert psnr(a, a) == float("inf")
    with pytest.raises(ValueError, match="same shape"):
        psnr(a, b[:2])
