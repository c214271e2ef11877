"""Philox4x32-10 for the CUDA backend: kernels/common/philox.py's rounds as a device function.

Words are carried in uint64 holding 32-bit values, as in the CPU kernels: the same code runs
under the simulator (which has no umulhi), and on the GPU each 32x32 -> 64-bit product is one
IMAD.WIDE.U32, the same work as umulhi + mul.lo.
"""
import numpy as np
from numba import cuda

from ..common import philox as common
from .launch import block_for, current_stream, grid_for

philox4x32_10 = common.build(cuda.jit(device=True, inline="always")).philox4x32_10


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
        tpb = block_for(n, threads_per_block)
        _philox_kernel[grid_for(n, tpb), tpb, current_stream()](out, counter, key)
