"""Statistics of the dropout mask: keep rate within a 5-sigma binomial bound of 1-p (overall and
per Philox output word), masks of neighbouring offsets and seeds uncorrelated, and the number of
runs of kept / dropped elements as expected (Wald-Wolfowitz runs test). Masks are the same on
every backend (test_dropout.py), so one fast backend suffices here."""
import numpy as np
import pytest

from fusedops import ops

N = 1 << 18


def _keep(p, seed, offset, n=N):
    return ops.unpack_mask(ops.dropout_mask(n, p, seed=seed, offset=offset, backend="numba"), (n,))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("seed, offset", [(0, 0), (2024, 17), ((1 << 64) - 1, 1 << 40)])
def test_keep_rate_binomial(p, seed, offset):
    keep = _keep(p, seed, offset)
    sigma = np.sqrt(N * p * (1 - p))
    assert abs(keep.sum() - N * (1 - p)) <= 5 * sigma
    for w in range(4):  # each of the four Philox words, and the low / high half of each byte
        part = keep[w::4]
        assert abs(part.sum() - part.size * (1 - p)) <= 5 * np.sqrt(part.size * p * (1 - p)), w


def _corr(a, b):
    return float(np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1])


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_neighbouring_streams_uncorrelated(p):
    base = _keep(p, 7, 100)
    bound = 5 / np.sqrt(N)  # 5 sigma for the sample correlation of independent sequences
    others = [_keep(p, 7, 101), _keep(p, 8, 100), _keep(p, 7, 100 + (1 << 32)),
              _keep(p, 7 + (1 << 32), 100)]
    for other in others:
        assert abs(_corr(base, other)) <= bound
        assert not np.array_equal(base, other)
    # and neighbouring elements of one stream: lag-1 and lag-4 (across Philox blocks)
    assert abs(_corr(base[:-1], base[1:])) <= bound
    assert abs(_corr(base[:-4], base[4:])) <= bound


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_runs(p):
    keep = _keep(p, 31337, 5)
    n1 = int(keep.sum())
    n0 = N - n1
    runs = 1 + int(np.count_nonzero(keep[1:] != keep[:-1]))
    mu = 2.0 * n1 * n0 / N + 1
    var = (mu - 1) * (mu - 2) / (N - 1)
    assert abs(runs - mu) <= 5 * np.sqrt(var)


def test_reference_agrees_on_statistics_sample():
    """The numba masks above are the reference's masks (checked bit for bit on a large size)."""
    n = 100_003
    np.testing.assert_array_equal(ops.dropout_mask(n, 0.5, seed=2, offset=3, backend="numba"),
                                  ops.dropout_mask(n, 0.5, seed=2, offset=3, backend="numpy"))
