"""Philox4x32-10 as a CUDA device function (Salmon et al., SC'11; Random123's philox.h).

Words are carried in uint64 holding 32-bit values, as in the CPU kernels: the same code runs
under the simulator (which has no umulhi), and on the GPU each 32x32 -> 64-bit product is one
IMAD.WIDE.U32, the same work as umulhi + mul.lo.
"""
import numpy as np
from numba import cuda

from .launch import current_stream, grid_for

M0 = np.uint64(0xD2511F53)
M1 = np.uint64(0xCD9E8D57)
W0 = np.uint64(0x9E3779B9)
W1 = np.uint64(0xBB67AE85)
LO = np.uint64(0xFFFFFFFF)
S32 = np.uint64(32)
ROUNDS = 10


@cuda.jit(device=True, inline=True)
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """The four random words (uint64 < 2^32) of counter (c0..c3) under key (k0, k1)."""
    for _ in range(ROUNDS):
        # The masks show ptxas that both factors fit 32 bits: each product becomes one
        # IMAD.WIDE.U32 (hi and lo at once; checked in the sm_90 SASS), not a 64-bit multiply.
        p0 = M0 * (c0 & LO)
        p1 = M1 * (c2 & LO)
        c0, c1, c2, c3 = (p1 >> S32) ^ c1 ^ k0, p1 & LO, (p0 >> S32) ^ c3 ^ k1, p0 & LO
        k0 = (k0 + W0) & LO  # the bump after the last round is unused
        k1 = (k1 + W1) & LO
    return c0, c1, c2, c3


@cuda.jit
def _philox_kernel(out, counter, key):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for j in range(start, out.size // 4, stride):
        w0, w1, w2, w3 = philox4x32_10(np.uint64(counter[4 * j]), np.uint64(counter[4 * j + 1]),
                                       np.uint64(counter[4 * j + 2]), np.uint64(counter[4 * j + 3]),
                                       np.uint64(key[2 * j]), np.uint64(key[2 * j + 1]))
        out[4 * j] = np.uint32(w0)
        out[4 * j + 1] = np.uint32(w1)
        out[4 * j + 2] = np.uint32(w2)
        out[4 * j + 3] = np.uint32(w3)


def philox4x32(out, counter, key, *, threads_per_block):
    """out (4n,) uint32 <- Philox4x32-10 of counter (4n,) under key (2n,), device arrays."""
    n = out.size // 4
    if n:
        grid = grid_for(n, threads_per_block)
        _philox_kernel[grid, threads_per_block, current_stream()](out, counter, key)
