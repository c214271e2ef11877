"""Dropout's element rules and key words (DESIGN.md "Dropout"), once for both Numba backends.

The mask layouts differ by design (CPU: per-chunk byte buffers packed by a multiply; CUDA:
one mask byte per thread through shared memory), but what an element becomes does not: the
random words of its Philox block, and the select that applies its keep bit (word >= the
threshold, compared by each backend in its own layout).

`start` (the stream index of element 0, see reference/dropout.py) enters every kernel as its
Philox block and word, `start_words`: element e then draws word (r + e) % 4 of block
sb + (r + e) // 4. With r = 0 an aligned run of elements is whole blocks (each backend's
plain path); r > 0 shifts the words by r.
"""
from collections import namedtuple

import numpy as np

from . import philox

Bodies = namedtuple("Bodies", "apply_keep block_words")


def build(jit) -> Bodies:
    """The dropout element rules compiled by `jit` (see kernels/common/__init__.py)."""
    philox4x32_10 = philox.build(jit).philox4x32_10
    LO, S32 = philox.LO, philox.S32

    @jit
    def apply_keep(v, keep, zero, divisor):
        """v * keep / divisor written as a select (v or v*0), so it rounds, and propagates NaN
        and signed zeros, exactly as NumPy's x * keep / divisor; zero = divisor - divisor."""
        return (v if keep else v * zero) / divisor

    @jit
    def block_words(b, k0, k1, o0, o1):
        """The 4 random words (uint64 < 2^32) of Philox block b (an int64 >= 0): counter
        (b low, b high, offset low, offset high) under key (seed low, seed high)."""
        u = np.uint64(b)
        return philox4x32_10(u & LO, u >> S32, o0, o1, k0, k1)

    return Bodies(apply_keep, block_words)


def key_words(seed, offset, threshold):
    """Key and counter halves as uint64, the threshold as a 32-bit compare value, and a flag
    that is False when threshold = 2^32 (p = 1: no 32-bit word is >= it)."""
    s, o, t = int(seed), int(offset), int(threshold)
    return (np.uint64(s & 0xFFFFFFFF), np.uint64(s >> 32), np.uint64(o & 0xFFFFFFFF),
            np.uint64(o >> 32), np.uint64(min(t, 0xFFFFFFFF)), t <= 0xFFFFFFFF)


def start_words(start):
    """start as its Philox block sb = start // 4 and word r = start % 4, both int64 (start <
    2^64, so sb < 2^62 and sb + any block offset of an array stays an int64)."""
    s = int(start)
    return np.int64(s >> 2), np.int64(s & 3)
