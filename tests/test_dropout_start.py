"""Dropout's `start`: element j of an array draws stream index start + j, so the mask of a
slice equals the corresponding part of the whole array's mask (how the rows of a batch split
across processes get the bits one process would give them), on every backend.

Starts that are not multiples of 4 (a Philox block) or 8 (a mask byte) are the cases that
matter: the kernels' fast paths assume whole blocks from element 0."""
import numpy as np
import pytest
from conftest import SIM, assert_unchanged, snapshot, sizes_for
from test_philox import philox_scalar

from fusedops import ops

P, SEED, OFFSET = 0.4, (1 << 40) + 77, (1 << 33) + 5


def _keep_scalar(start, n, p=P, seed=SEED, offset=OFFSET):
    """keep bits of stream indices start .. start+n-1 from the contract, with the scalar
    Philox of test_philox (no fusedops code)."""
    t = round(p * 2 ** 32)
    key = (seed & 0xFFFFFFFF, seed >> 32)
    out = []
    for i in range(start, start + n):
        b = i // 4
        words = philox_scalar((b & 0xFFFFFFFF, b >> 32, offset & 0xFFFFFFFF, offset >> 32), key)
        out.append(words[i % 4] >= t)
    return np.array(out, bool)


def _x(n, dtype=np.float32, seed=0):
    return (np.random.default_rng(seed).standard_normal(n) * 2 + 0.5).astype(dtype)


def _slices(n):
    """(lo, hi) pairs: starts at every residue mod 8, across a CPU chunk boundary (1024)."""
    los = sorted({1, 2, 3, 4, 5, 6, 7, 9, 13, n // 3, n - 1} - {n} if n > 1 else {0})
    return [(lo, hi) for lo in los for hi in sorted({lo, lo + 1, (lo + n) // 2 + 5, n}) if hi <= n]


@pytest.mark.parametrize("n", [40, 2100, 70_001])  # one chunk, several, the parallel CPU path
def test_slice_mask_and_output_equal_the_whole_arrays(backend, dtype, n):
    if n not in sizes_for(backend, [n]):
        pytest.skip("the simulator runs the CUDA kernels in Python: small sizes only")
    x = _x(n, dtype, n)
    y_all, m_all = ops.dropout_forward(x, P, seed=SEED, offset=OFFSET, backend=backend)
    keep_all = ops.unpack_mask(m_all, (n,))
    cases = _slices(n)
    if backend == "cuda" and SIM:  # to the end of the array from starts 3, 5 and n // 3
        cases = [(lo, hi) for lo, hi in cases if hi == n and lo in (3, 5, n // 3)]
    for lo, hi in cases:
        xs = np.ascontiguousarray(x[lo:hi])
        y, m = ops.dropout_forward(xs, P, seed=SEED, offset=OFFSET, start=lo, backend=backend)
        np.testing.assert_array_equal(ops.unpack_mask(m, (hi - lo,)), keep_all[lo:hi],
                                      err_msg=f"slice {lo}:{hi}")
        assert np.all(np.unpackbits(m[-1:], bitorder="little")[(hi - lo) % 8 or 8:] == 0)
        np.testing.assert_array_equal(y, y_all[lo:hi], err_msg=f"slice {lo}:{hi}")
        mask_only = ops.dropout_mask(hi - lo, P, seed=SEED, offset=OFFSET, start=lo, backend=backend)
        np.testing.assert_array_equal(mask_only, m)
        dx = ops.dropout_backward(xs, p=P, seed=SEED, offset=OFFSET, start=lo, backend=backend)
        np.testing.assert_array_equal(dx, y_all[lo:hi])  # regenerated from (seed, offset, start)


@pytest.mark.parametrize("start", [0, 1, 3, 6, 1021, (1 << 35) + 7, (1 << 64) - 37])
def test_start_follows_the_scalar_contract(backend, start):
    """Far starts (high counter word set, the very end of the 64-bit stream) against the
    contract computed with Python integers."""
    n = 37
    m = ops.dropout_mask(n, P, seed=SEED, offset=OFFSET, start=start, backend=backend)
    np.testing.assert_array_equal(ops.unpack_mask(m, (n,)), _keep_scalar(start, n))
    x = _x(n, np.float64, 3)
    y, m2 = ops.dropout_forward(x, P, seed=SEED, offset=OFFSET, start=start, backend=backend)
    np.testing.assert_array_equal(m2, m)
    np.testing.assert_array_equal(y, x * _keep_scalar(start, n) / (1 - P))


def test_rows_of_a_split_batch_get_one_process_masks(backend):
    """A (B, F) batch split by rows as 3 processes would split it (uneven, F odd): each
    part's dropout with start = lo * F equals its rows of the whole batch's dropout."""
    b, f = 23, 13
    x = _x(b * f, np.float32, 5).reshape(b, f)
    y_all, _ = ops.dropout_forward(x, 0.5, seed=9, offset=2, backend=backend)
    for lo, hi in [(0, 8), (8, 16), (16, 23)]:
        y, _ = ops.dropout_forward(np.ascontiguousarray(x[lo:hi]), 0.5, seed=9, offset=2,
                                   start=lo * f, backend=backend)
        np.testing.assert_array_equal(y, y_all[lo:hi])


@pytest.mark.parametrize("start, exc, words", [
    (-1, ValueError, "start must be in"),
    (2.0, TypeError, "start must be an integer"),
    (True, TypeError, "start must be an integer"),
    ((1 << 64) - 49, ValueError, "start \\+ size must be <= 2\\*\\*64"),
])
def test_bad_start_names_it_and_writes_nothing(backend, start, exc, words):
    x = _x(50)
    out = np.full(50, 7.0, np.float32)
    snap = snapshot(x, out)
    with pytest.raises(exc, match=words):
        ops.dropout_forward(x, P, seed=1, start=start, out=out, backend=backend)
    with pytest.raises(exc, match=words):
        ops.dropout_backward(x, p=P, seed=1, start=start, out=out, backend=backend)
    with pytest.raises(exc, match=words):
        ops.dropout_mask(50, P, seed=1, start=start, backend=backend)
    assert_unchanged([x, out], snap)


def test_last_valid_start_is_accepted(backend):
    n = 50
    m = ops.dropout_mask(n, P, seed=SEED, offset=OFFSET, start=(1 << 64) - n, backend=backend)
    np.testing.assert_array_equal(ops.unpack_mask(m, (n,)), _keep_scalar((1 << 64) - n, n))
