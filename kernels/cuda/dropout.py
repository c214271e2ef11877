"""Dropout with the counter-based mask of DESIGN.md for the CUDA backend.

One thread per mask byte (8 elements, two Philox blocks) in a grid-stride loop: every byte has
exactly one writer, so there are no races on mask bits and the tail byte is handled by the
thread that owns it. The result does not depend on the grid or block size. y = x * keep /
divisor is written as a select (x or x*0) so it rounds exactly as NumPy's x * keep / divisor.
"""
import numpy as np
from numba import cuda

from .launch import grid_for
from .philox import LO, S32, philox4x32_10

SPREAD = np.uint64(0x0101010101010101)


@cuda.jit(device=True, inline=True)
def _keep_byte(k, n, k0, k1, o0, o1, t32, allk):
    """Packed keep bits of elements 8k .. 8k+7 (bits past n are 0)."""
    byte = 0
    for half in range(2):
        b = np.uint64(2 * k + half)
        w0, w1, w2, w3 = philox4x32_10(b & LO, b >> S32, o0, o1, k0, k1)
        nib = (w0 >= t32) | ((w1 >= t32) << 1) | ((w2 >= t32) << 2) | ((w3 >= t32) << 3)
        byte |= (nib * allk) << (4 * half)
    last = n - 8 * k  # valid elements in this byte
    if last < 8:
        byte &= (1 << last) - 1
    return byte


@cuda.jit(device=True, inline=True)
def _scale_byte(y, x, k, n, byte, divisor):
    zero = divisor - divisor
    for b in range(min(8, n - 8 * k)):
        v = x[8 * k + b]
        y[8 * k + b] = (v if (byte >> b) & 1 else v * zero) / divisor


@cuda.jit
def _forward_kernel(y, mask, x, k0, k1, o0, o1, t32, allk, divisor):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    n = x.size
    for k in range(start, (n + 7) // 8, stride):
        byte = _keep_byte(k, n, k0, k1, o0, o1, t32, allk)
        _scale_byte(y, x, k, n, byte, divisor)
        mask[k] = np.uint8(byte)


@cuda.jit
def _forward_nomask_kernel(y, x, k0, k1, o0, o1, t32, allk, divisor):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    n = x.size
    for k in range(start, (n + 7) // 8, stride):
        _scale_byte(y, x, k, n, _keep_byte(k, n, k0, k1, o0, o1, t32, allk), divisor)


@cuda.jit
def _mask_kernel(mask, n, k0, k1, o0, o1, t32, allk):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, mask.size, stride):
        mask[k] = np.uint8(_keep_byte(k, n, k0, k1, o0, o1, t32, allk))


@cuda.jit
def _backward_kernel(dx, dy, mask, divisor):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    n = dy.size
    for k in range(start, (n + 7) // 8, stride):
        _scale_byte(dx, dy, k, n, mask[k], divisor)


@cuda.jit
def _scale_kernel(y, x, s):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, x.size, stride):
        y[i] = s * x[i]


def _words(seed, offset, threshold):
    """Key and counter halves, and the threshold as a 32-bit compare value plus a flag that is 0
    when threshold = 2^32 (p = 1: nothing is >= it)."""
    s, o, t = int(seed), int(offset), int(threshold)
    return (np.uint64(s & 0xFFFFFFFF), np.uint64(s >> 32), np.uint64(o & 0xFFFFFFFF),
            np.uint64(o >> 32), np.uint64(min(t, 0xFFFFFFFF)), np.int64(t <= 0xFFFFFFFF))


def _grid(n, threads_per_block):
    return grid_for((n + 7) // 8, threads_per_block), threads_per_block


def dropout_forward(y, mask, x, seed, offset, threshold, divisor, *, threads_per_block):
    """y (n,) = x (n,) * keep / divisor; mask (ceil(n/8),) uint8 or None; device arrays."""
    if x.size == 0:
        return
    words, d = _words(seed, offset, threshold), x.dtype.type(divisor)
    if mask is None:
        _forward_nomask_kernel[_grid(x.size, threads_per_block)](y, x, *words, d)
    else:
        _forward_kernel[_grid(x.size, threads_per_block)](y, mask, x, *words, d)


def dropout_mask(mask, n, seed, offset, threshold, *, threads_per_block):
    """mask (ceil(n/8),) uint8 <- packed keep bits of n elements, a device array."""
    if n:
        _mask_kernel[_grid(n, threads_per_block)](mask, np.int64(n), *_words(seed, offset, threshold))


def dropout_backward(dx, dy, mask, divisor, *, threads_per_block):
    """dx (n,) = dy (n,) * keep / divisor, keep unpacked from mask (ceil(n/8),); device arrays."""
    if dy.size:
        _backward_kernel[_grid(dy.size, threads_per_block)](dx, dy, mask, dy.dtype.type(divisor))


def dropout_scale(y, x, scale, *, threads_per_block):
    """y (n,) = scale * x (n,): eval mode; device arrays."""
    if x.size:
        _scale_kernel[grid_for(x.size, threads_per_block), threads_per_block](y, x, x.dtype.type(scale))
