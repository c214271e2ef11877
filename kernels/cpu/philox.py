"""Philox4x32-10 for the Numba CPU backend: kernels/common/philox.py's rounds, inlined.

Words are carried in uint64 holding 32-bit values (see kernels/common/philox.py): the 32x32 ->
64-bit products are plain uint64 multiplies, vpmuludq once LLVM vectorizes a loop over counters.
"""
import numpy as np
from numba import njit, prange

from ..common import philox as common
from .jit import kernel, run

philox4x32_10 = common.build(njit(inline="always")).philox4x32_10

# Words from which the known-answer entry point runs in parallel: Philox is compute-bound, as
# dropout is (dropout.PARALLEL_MIN, measured; this one only serves tests).
PARALLEL_MIN = 16384


@kernel(parallel_min=PARALLEL_MIN)
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
    run(_philox_kernel, out.size, out, counter, key)
