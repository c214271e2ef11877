"""Real data for the examples and tests: scikit-learn's bundled 8x8 digits (no download),
noise for denoising autoencoders, and PSNR to measure it."""
from __future__ import annotations

import numpy as np

from .checks import check_int, check_real

__all__ = ["load_digits", "stratified_split", "add_noise", "psnr", "NOISE_KINDS"]

NOISE_KINDS = ("gaussian", "masking", "salt_pepper")


def stratified_split(y, test_size: float = 0.2, seed: int = 0):
    """(train_idx, test_idx): every class split in the proportion test_size (rounded per
    class), each part shuffled with `seed`."""
    test_size = check_real("test_size", test_size, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    rng = np.random.default_rng(check_int("seed", seed, lo=0))
    y = np.asarray(y)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(test_size * len(idx)))
        test.append(idx[:k])
        train.append(idx[k:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def load_digits(test_size: float = 0.2, seed: int = 0, *, dtype=np.float32):
    """scikit-learn's 1797 handwritten 8x8 digits (UCI optdigits test set), pixels scaled from
    0..16 to [0, 1], split into train and test sets stratified by class.

    Returns (X_train, X_test, y_train, y_test): X of shape (n, 64) and `dtype`, y int64 in 0..9.
    Needs scikit-learn (`pip install fusedops[data]`); the data ship with it, no download.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:
        raise ImportError(f"load_digits needs scikit-learn ({exc}): pip install 'fusedops[data]'") from None
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64; got {dtype}")
    d = _sk_load_digits()
    X = (d.data / 16.0).astype(dtype)
    y = d.target.astype(np.int64)
    tr, te = stratified_split(y, test_size, seed)
    return X[tr], X[te], y[tr], y[te]


def add_noise(X, kind: str = "gaussian", level: float = 0.1, seed: int = 0, *, clip=None) -> np.ndarray:
    """A noisy copy of X (X is not modified).

    kind "gaussian": add N(0, level^2); "masking": set each entry to 0 with probability
    `level`; "salt_pepper": set each entry with probability `level` to 0 or 1 (half each).
    clip=(lo, hi) clips the result (e.g. (0, 1) for pixel data).
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"kind must be one of {NOISE_KINDS}; got {kind!r}")
    X = np.asarray(X)
    if X.dtype.kind != "f":
        raise TypeError(f"X must be a float array; got dtype {X.dtype}")
    if kind == "gaussian":
        level = check_real("level", level, lo=0.0)
    else:
        level = check_real("level", level, lo=0.0, hi=1.0)
    rng = np.random.default_rng(check_int("seed", seed, lo=0))
    if kind == "gaussian":
        out = X + (level * rng.standard_normal(X.shape)).astype(X.dtype)
    elif kind == "masking":
        out = np.where(rng.random(X.shape) < level, X.dtype.type(0), X)
    else:
        hit = rng.random(X.shape) < level
        out = np.where(hit, (rng.random(X.shape) < 0.5).astype(X.dtype), X)
    if clip is not None:
        lo, hi = clip
        out = np.clip(out, lo, hi)
    return out.astype(X.dtype, copy=False)


def psnr(reference, estimate, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: 10 log10(data_range^2 / MSE) over all entries."""
    data_range = check_real("data_range", data_range, lo=0.0, lo_open=True)
    ref = np.asarray(reference, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    if ref.shape != est.shape:
        raise ValueError(f"reference and estimate must have the same shape; got {ref.shape} and {est.shape}")
    mse = np.mean((ref - est) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))
