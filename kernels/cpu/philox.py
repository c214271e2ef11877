"""Philox4x32-10 for the Numba CPU backend (Salmon et al., SC'11; Random123's philox.h).

Every word is carried in a uint64 holding a 32-bit value: the 32x32 -> 64-bit products are then
plain uint64 multiplies (vpmuludq once LLVM vectorizes a loop over counters), and no Numba
integer promotion can silently turn a uint32 expression into int64 or float64.
"""
import numpy as np
from numba import njit, prange

M0 = np.uint64(0xD2511F53)
M1 = np.uint64(0xCD9E8D57)
W0 = np.uint64(0x9E3779B9)
W1 = np.uint64(0xBB67AE85)
LO = np.uint64(0xFFFFFFFF)
S32 = np.uint64(32)
ROUNDS = 10


@njit(cache=True, inline="always")
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """The four random words (uint64 < 2^32) of counter (c0..c3) under key (k0, k1)."""
    for _ in range(ROUNDS):
        p0 = M0 * c0
        p1 = M1 * c2
        c0, c1, c2, c3 = (p1 >> S32) ^ c1 ^ k0, p1 & LO, (p0 >> S32) ^ c3 ^ k1, p0 & LO
        k0 = (k0 + W0) & LO  # the bump after the last round is unused
        k1 = (k1 + W1) & LO
    return c0, c1, c2, c3


@njit(parallel=True, cache=True)
def _philox_kernel(out, counter, key):
    for j in prange(out.size // 4):
        c = counter[4 * j: 4 * j + 4]
        w0, w1, w2, w3 = philox4x32_10(np.uint64(c[0]), np.uint64(c[1]), np.uint64(c[2]),
                                       np.uint64(c[3]), np.uint64(key[2 * j]),
                                       np.uint64(key[2 * j + 1]))
        out[4 * j] = w0
        out[4 * j + 1] = w1
        out[4 * j + 2] = w2
        out[4 * j + 3] = w3


def philox4x32(out, counter, key):
    """out (4n,) uint32 <- Philox4x32-10 of counter (4n,) uint32 under key (2n,) uint32."""
    _philox_kernel(out, counter, key)
