"""Philox4x32-10 counter-based RNG in NumPy (Salmon, Moraes, Dror, Shaw, "Parallel Random
Numbers: As Easy as 1, 2, 3", SC'11; constants and round function as in Random123's
philox.h). Vectorized over counters; every word is held in uint64 so the 32x32 -> 64-bit
products are exact."""
import numpy as np

__all__ = ["philox4x32", "PHILOX_M0", "PHILOX_M1", "PHILOX_W0", "PHILOX_W1", "PHILOX_ROUNDS"]

PHILOX_M0 = 0xD2511F53  # round multipliers
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9  # key schedule increments (golden ratio, sqrt(3)-1)
PHILOX_W1 = 0xBB67AE85
PHILOX_ROUNDS = 10
_MASK = np.uint64(0xFFFFFFFF)


def philox_words(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of counters (c0, c1, c2, c3) under keys (k0, k1): broadcastable integer
    arrays of 32-bit values. Returns the four output words as uint64 arrays."""
    c0, c1, c2, c3, k0, k1 = (np.asarray(v, dtype=np.uint64) & _MASK for v in (c0, c1, c2, c3, k0, k1))
    m0, m1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
    w0, w1 = np.uint64(PHILOX_W0), np.uint64(PHILOX_W1)
    for r in range(PHILOX_ROUNDS):
        if r:  # the key is bumped between rounds, not before the first
            k0, k1 = (k0 + w0) & _MASK, (k1 + w1) & _MASK
        p0, p1 = m0 * c0, m1 * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & _MASK,
                          (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & _MASK)
    return c0, c1, c2, c3


def philox4x32(out, counter, key):
    """out (n, 4) uint32 <- Philox4x32-10(counter (n, 4) uint32, key (n, 2) uint32)."""
    words = philox_words(*(counter[..., w] for w in range(4)), key[..., 0], key[..., 1])
    for w in range(4):
        out[..., w] = words[w].astype(np.uint32)
