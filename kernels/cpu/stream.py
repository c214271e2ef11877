"""Bandwidth probe (STREAM copy and triad) for the Numba CPU backend.

No fastmath: triad must round s*c and the add separately to match NumPy bit for bit.
"""
from numba import njit, prange


@njit(parallel=True, cache=True)
def _copy_kernel(dst, src):
    for i in prange(src.size):
        dst[i] = src[i]


@njit(parallel=True, cache=True)
def _triad_kernel(a, b, c, s):
    for i in prange(a.size):
        a[i] = b[i] + s * c[i]


def stream_copy(dst, src):
    """dst (n,) <- src (n,)."""
    _copy_kernel(dst, src)


def stream_triad(a, b, c, scalar):
    """a (n,) <- b (n,) + scalar * c (n,); scalar is cast to the arrays' dtype."""
    _triad_kernel(a, b, c, a.dtype.type(scalar))
