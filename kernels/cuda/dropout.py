"""Dropout with the counter-based mask of DESIGN.md for the CUDA backend.

Forward works in tiles of 8 * blockDim elements, grid-stride over tiles. Phase 1: thread t
makes the mask byte of elements 8t .. 8t+7 of the tile (two Philox blocks), writes it to
global memory (consecutive threads, consecutive bytes) and to shared memory. Phase 2: thread t
scales elements t, t + blockDim, ... reading its bit from shared memory, so every load and
store of x and y is coalesced (a thread-per-byte loop would make each warp access touch 32
sectors, 8x the L1 / L2 transactions). Every mask byte has one writer and the result does not
depend on the grid or block size. The random words of a Philox block are common.block_words'
and an element becomes common.apply_keep's select, as on the CPU (kernels/common/dropout.py).

`start` enters as its Philox block sb and word r (common.start_words): mask byte k covers
stream words 4*sb + r + 8k .. + 7, which lie in blocks sb + 2k .. sb + 2k + 2; the third
block is generated only when r > 0.
"""
import numpy as np
from numba import cuda, uint8

from ..common import dropout as common
from .launch import block_for, current_stream, grid_for

MAX_THREADS = 1024  # shared bytes per block: one mask byte per thread of the largest block

_b = common.build(cuda.jit(device=True, inline="always"))  # shared with the CPU backend
_apply_keep, _block_words = _b.apply_keep, _b.block_words


@cuda.jit(device=True, inline=True)
def _nibble(b, k0, k1, o0, o1, t32, allk):
    """The 4 keep bits of Philox block b (int64), word i in bit i."""
    w0, w1, w2, w3 = _block_words(b, k0, k1, o0, o1)
    return ((w0 >= t32) | ((w1 >= t32) << 1) | ((w2 >= t32) << 2) | ((w3 >= t32) << 3)) * allk


@cuda.jit(device=True, inline=True)
def _keep_byte(k, n, k0, k1, o0, o1, t32, allk, sb, r):
    """Packed keep bits of elements 8k .. 8k+7 (bits past n are 0); element i draws stream
    word 4*sb + r + i."""
    b = sb + 2 * k
    byte = _nibble(b, k0, k1, o0, o1, t32, allk) | (_nibble(b + 1, k0, k1, o0, o1, t32, allk) << 4)
    if r:  # the byte starts r words into block b: 12 bits from 3 blocks, shifted
        byte = (((_nibble(b + 2, k0, k1, o0, o1, t32, allk) << 8) | byte) >> r) & 0xFF
    last = n - 8 * k  # valid elements in this byte
    if last < 8:
        byte &= (1 << last) - 1
    return byte


@cuda.jit(device=True, inline=True)
def _keep(byte, b):
    return (byte >> b) & 1


@cuda.jit(device=True, inline=True)
def _tile(y, mask, x, smask, tile, k0, k1, o0, o1, t32, allk, divisor, sb, r):
    """One tile: mask bytes to smask (and mask unless it is None), then y, coalesced."""
    t, tpb, n = cuda.threadIdx.x, cuda.blockDim.x, x.size
    k = tile * tpb + t
    if k < (n + 7) // 8:
        byte = _keep_byte(k, n, k0, k1, o0, o1, t32, allk, sb, r)
        smask[t] = byte
        if mask is not None:
            mask[k] = byte
    cuda.syncthreads()
    zero = divisor - divisor
    for i in range(8):
        local = i * tpb + t
        e = tile * tpb * 8 + local
        if e < n:
            y[e] = _apply_keep(x[e], _keep(smask[local >> 3], local & 7), zero, divisor)
    cuda.syncthreads()  # smask is rewritten by the next tile


@cuda.jit
def _forward_kernel(y, mask, x, k0, k1, o0, o1, t32, allk, divisor, sb, r):
    smask = cuda.shared.array(MAX_THREADS, uint8)
    ntiles = ((x.size + 7) // 8 + cuda.blockDim.x - 1) // cuda.blockDim.x
    for tile in range(cuda.blockIdx.x, ntiles, cuda.gridDim.x):  # uniform per block: syncthreads
        _tile(y, mask, x, smask, tile, k0, k1, o0, o1, t32, allk, divisor, sb, r)


@cuda.jit
def _mask_kernel(mask, n, k0, k1, o0, o1, t32, allk, sb, r):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, mask.size, stride):
        mask[k] = np.uint8(_keep_byte(k, n, k0, k1, o0, o1, t32, allk, sb, r))


@cuda.jit
def _backward_kernel(dx, dy, mask, divisor):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    zero = divisor - divisor
    for e in range(start, dy.size, stride):  # one element per thread: coalesced
        dx[e] = _apply_keep(dy[e], _keep(mask[e >> 3], e & 7), zero, divisor)


@cuda.jit
def _scale_kernel(y, x, s):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, x.size, stride):
        y[i] = s * x[i]


def _words(seed, offset, threshold):
    """common.key_words with the p = 1 flag as an int64 (it multiplies the keep bits)."""
    *words, allk = common.key_words(seed, offset, threshold)
    return (*words, np.int64(allk))


def _grid(n, threads_per_block):
    """One thread per mask byte."""
    tpb = block_for((n + 7) // 8, threads_per_block)
    return grid_for((n + 7) // 8, tpb), tpb, current_stream()


def dropout_forward(y, mask, x, seed, offset, threshold, divisor, start=0, *, threads_per_block):
    """y (n,) = x (n,) * keep / divisor; mask (ceil(n/8),) uint8 or None; device arrays;
    element j draws stream index start + j."""
    if x.size == 0:
        return
    if threads_per_block > MAX_THREADS:
        raise ValueError(f"threads_per_block must be <= {MAX_THREADS}; got {threads_per_block}")
    words, d = _words(seed, offset, threshold), x.dtype.type(divisor)
    _forward_kernel[_grid(x.size, threads_per_block)](y, mask, x, *words, d,
                                                      *common.start_words(start))


def dropout_mask(mask, n, seed, offset, threshold, start=0, *, threads_per_block):
    """mask (ceil(n/8),) uint8 <- packed keep bits of n elements from stream index start, a
    device array."""
    if n:
        _mask_kernel[_grid(n, threads_per_block)](mask, np.int64(n), *_words(seed, offset, threshold),
                                                  *common.start_words(start))


def dropout_backward(dx, dy, mask, divisor, *, threads_per_block):
    """dx (n,) = dy (n,) * keep / divisor, keep unpacked from mask (ceil(n/8),); device arrays."""
    if dy.size:
        tpb = block_for(dy.size, threads_per_block)
        _backward_kernel[grid_for(dy.size, tpb), tpb, current_stream()](dx, dy, mask, dy.dtype.type(divisor))


def dropout_scale(y, x, scale, *, threads_per_block):
    """y (n,) = scale * x (n,): eval mode; device arrays."""
    if x.size:
        tpb = block_for(x.size, threads_per_block)
        _scale_kernel[grid_for(x.size, tpb), tpb, current_stream()](y, x, x.dtype.type(scale))
