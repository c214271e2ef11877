"""Dropout's element rule and key words (DESIGN.md "Dropout"), once for both Numba backends.

The mask layouts differ by design (CPU: per-chunk byte buffers packed by a multiply; CUDA:
one mask byte per thread through shared memory), but what an element becomes does not.
"""
from collections import namedtuple

import numpy as np

Bodies = namedtuple("Bodies", "apply_keep")


def build(jit) -> Bodies:
    """The dropout element rule compiled by `jit` (see kernels/common/__init__.py)."""

    @jit
    def apply_keep(v, keep, zero, divisor):
        """v * keep / divisor written as a select (v or v*0), so it rounds, and propagates NaN
        and signed zeros, exactly as NumPy's x * keep / divisor; zero = divisor - divisor."""
        return (v if keep else v * zero) / divisor

    return Bodies(apply_keep)


def key_words(seed, offset, threshold):
    """Key and counter halves as uint64, the threshold as a 32-bit compare value, and a flag
    that is False when threshold = 2^32 (p = 1: no 32-bit word is >= it)."""
    s, o, t = int(seed), int(offset), int(threshold)
    return (np.uint64(s & 0xFFFFFFFF), np.uint64(s >> 32), np.uint64(o & 0xFFFFFFFF),
            np.uint64(o >> 32), np.uint64(min(t, 0xFFFFFFFF)), t <= 0xFFFFFFFF)


def start_words(start):
    """start (the stream index of element 0, see reference/dropout.py) as its Philox block
    sb = start // 4 and word r = start % 4, both int64 (start < 2^64, so sb < 2^62 and sb plus
    any block offset of an array stays an int64): element e draws word (r + e) % 4 of block
    sb + (r + e) // 4."""
    s = int(start)
    return np.int64(s >> 2), np.int64(s & 3)
