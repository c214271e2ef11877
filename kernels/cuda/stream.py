"""Bandwidth probe (STREAM copy and triad) for the CUDA backend: grid-stride loops."""
from numba import cuda

from .launch import block_for, current_stream, grid_for


@cuda.jit
def _copy_kernel(dst, src):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, src.size, stride):
        dst[i] = src[i]


@cuda.jit
def _triad_kernel(a, b, c, s):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, a.size, stride):
        a[i] = b[i] + s * c[i]


def stream_copy(dst, src, *, threads_per_block):
    """dst (n,) <- src (n,), device arrays."""
    if src.size:
        tpb = block_for(src.size, threads_per_block)
        _copy_kernel[grid_for(src.size, tpb), tpb, current_stream()](dst, src)


def stream_triad(a, b, c, scalar, *, threads_per_block):
    """a (n,) <- b (n,) + scalar * c (n,), device arrays."""
    if a.size:
        s, tpb = a.dtype.type(scalar), block_for(a.size, threads_per_block)
        _triad_kernel[grid_for(a.size, tpb), tpb, current_stream()](a, b, c, s)
