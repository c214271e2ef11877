"""Bandwidth probe (STREAM copy and triad) for the Numba CPU backend.

No fastmath: triad must round s*c and the add separately to match NumPy bit for bit. The probe
measures sizes far beyond the last-level cache, where it always runs in parallel; small calls
run the serial twin like every other kernel (PARALLEL_MIN: 1M, where SGD, the same kind of
memory-bound stream, crossed over; see optim.PARALLEL_MIN and csrc/threads.h).
"""
from numba import prange

from .jit import kernel, run

PARALLEL_MIN = 1 << 20


@kernel(parallel_min=PARALLEL_MIN)
def _copy_kernel(dst, src):
    for i in prange(src.size):
        dst[i] = src[i]


@kernel(parallel_min=PARALLEL_MIN)
def _triad_kernel(a, b, c, s):
    for i in prange(a.size):
        a[i] = b[i] + s * c[i]


def stream_copy(dst, src):
    """dst (n,) <- src (n,)."""
    run(_copy_kernel, src.size, dst, src)


def stream_triad(a, b, c, scalar):
    """a (n,) <- b (n,) + scalar * c (n,); scalar is cast to the arrays' dtype."""
    run(_triad_kernel, a.size, a, b, c, a.dtype.type(scalar))
