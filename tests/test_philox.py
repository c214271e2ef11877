"""Philox4x32-10: published known answers on every backend, and every backend equal to an
independent scalar implementation written here with Python integers."""
import numpy as np
import pytest

from fusedops import ops

# Random123 (D. E. Shaw Research) kat_vectors, "philox4x32 10" lines: counter; key -> output.
# The first two are also in DESIGN.md; the third (pi's hex digits as counter and key) is from
# the same file: philox4x32 10 243f6a88 85a308d3 13198a2e 03707344 a4093822 299f31d0.
KATS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def philox_scalar(counter, key):
    """Philox4x32-10 on Python ints, written from the paper (Salmon et al., SC'11, Sec. 4)."""
    c, (k0, k1) = list(counter), key
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
        hi0, lo0 = divmod(0xD2511F53 * c[0], 1 << 32)
        hi1, lo1 = divmod(0xCD9E8D57 * c[2], 1 << 32)
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
    return tuple(c)


def test_scalar_helper_matches_known_answers():
    for counter, key, expected in KATS:
        assert philox_scalar(counter, key) == expected


def test_known_answers(backend):
    counters = np.array([k[0] for k in KATS], np.uint32)
    keys = np.array([k[1] for k in KATS], np.uint32)
    out = ops.philox4x32(counters, keys, backend=backend)
    assert out.dtype == np.uint32 and out.shape == (3, 4)
    assert [tuple(int(w) for w in row) for row in out] == [k[2] for k in KATS]


def test_random_counters_match_scalar(backend):
    rng = np.random.default_rng(5)
    counters = rng.integers(0, 1 << 32, size=(2, 37, 4), dtype=np.uint64)
    keys = rng.integers(0, 1 << 32, size=(2, 37, 2), dtype=np.uint64)
    out = ops.philox4x32(counters, keys, backend=backend)
    assert out.shape == (2, 37, 4)
    for idx in np.ndindex(2, 37):
        expected = philox_scalar([int(v) for v in counters[idx]], [int(v) for v in keys[idx]])
        assert tuple(int(w) for w in out[idx]) == expected, idx


def test_one_key_broadcasts(backend):
    counters = np.arange(40, dtype=np.uint32).reshape(10, 4)
    out = ops.philox4x32(counters, [7, 1 << 31], backend=backend)
    for j in range(10):
        assert tuple(int(w) for w in out[j]) == philox_scalar([int(v) for v in counters[j]], (7, 1 << 31))


def test_empty(backend):
    assert ops.philox4x32(np.zeros((0, 4), np.uint32), [1, 2], backend=backend).shape == (0, 4)


@pytest.mark.parametrize("counter, key, exc, words", [
    (np.zeros((3, 3), np.uint32), [0, 0], ValueError, "counter must have shape"),
    (np.zeros((3, 4), np.uint32), [0, 0, 0], ValueError, "key must have shape"),
    (np.zeros((3, 4)), [0, 0], TypeError, "counter must be an integer array"),
    (np.full((1, 4), 1 << 32), [0, 0], ValueError, "counter values"),
    (np.zeros((1, 4), np.int64), [-1, 0], ValueError, "key values"),
    (np.zeros((3, 4), np.uint32), np.zeros((2, 2), np.uint32), ValueError, "does not broadcast"),
])
def test_bad_input(counter, key, exc, words):
    with pytest.raises(exc, match=words):
        ops.philox4x32(counter, key)
