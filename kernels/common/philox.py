"""Philox4x32-10 (Salmon et al., SC'11; Random123's philox.h), the round function once.

Every word is carried in a uint64 holding a 32-bit value: each 32x32 -> 64-bit product is then
a plain uint64 multiply (vpmuludq once LLVM vectorizes a loop over counters; one IMAD.WIDE.U32
on the GPU, the same work as umulhi + mul.lo, and the simulator, which has no umulhi, runs the
same code), and no Numba integer promotion can silently turn a uint32 expression into int64 or
float64. The multiplicands are masked to 32 bits: that shows the compilers that both factors fit
(ptxas then emits IMAD.WIDE.U32, checked in the sm_90 SASS, not a 64-bit multiply); the values
are below 2^32 already, so the masks change no result.
"""
from collections import namedtuple

import numpy as np

M0 = np.uint64(0xD2511F53)
M1 = np.uint64(0xCD9E8D57)
W0 = np.uint64(0x9E3779B9)
W1 = np.uint64(0xBB67AE85)
LO = np.uint64(0xFFFFFFFF)
S32 = np.uint64(32)
ROUNDS = 10

Bodies = namedtuple("Bodies", "philox4x32_10")


def build(jit) -> Bodies:
    """The Philox round function compiled by `jit` (see kernels/common/__init__.py)."""

    @jit
    def philox4x32_10(c0, c1, c2, c3, k0, k1):
        """The four random words (uint64 < 2^32) of counter (c0..c3) under key (k0, k1)."""
        for _ in range(ROUNDS):
            p0 = M0 * (c0 & LO)
            p1 = M1 * (c2 & LO)
            c0, c1, c2, c3 = (p1 >> S32) ^ c1 ^ k0, p1 & LO, (p0 >> S32) ^ c3 ^ k1, p0 & LO
            k0 = (k0 + W0) & LO  # the bump after the last round is unused
            k1 = (k1 + W1) & LO
        return c0, c1, c2, c3

    return Bodies(philox4x32_10)
