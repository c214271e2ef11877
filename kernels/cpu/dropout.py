"""Dropout with the counter-based mask of DESIGN.md for the Numba CPU backend.

Chunks of CHUNK elements (a multiple of 8: no two threads share a mask byte) run in parallel;
each chunk's keep bits live in a small per-chunk buffer, never a full-size random array, so one
pass generates, compares, scales and writes y and the packed mask. The result is independent
of the thread count. y = x * keep / divisor is written as a select (x or x*0) so it rounds,
and propagates NaN and signed zeros, exactly as NumPy's x * keep / divisor.

`start` enters as its Philox block sb and word r (kernels/common/dropout.py). With r = 0 a
chunk's elements are whole blocks from block sb + e0/4 (the fused path); otherwise a chunk's
bits are the m + r words of those blocks, shifted by r.
"""
import numpy as np
from numba import njit, prange

from ..common import dropout as common
from .jit import kernel, run

CHUNK = 1024  # elements per chunk: 256 Philox blocks, 128 mask bytes
PACK = np.uint64(0x0102040810204080)  # gathers 8 little-endian 0/1 bytes into the top byte
SPREAD = np.uint64(0x0101010101010101)
LANE_BITS = np.uint64(0x8040201008040201)
CARRY = np.uint64(0x7F7F7F7F7F7F7F7F)
S56, S7 = np.uint64(56), np.uint64(7)

_b = common.build(njit(inline="always"))  # the element rules, shared with CUDA
_apply_keep, _block_words = _b.apply_keep, _b.block_words


@njit(inline="always")
def _chunk_keep(keep, b0, m, k0, k1, o0, o1, t32, allk):
    """keep[0 .. ceil4(m)) (uint8 0/1) <- the words of Philox blocks b0 .. (int64)."""
    for j in range((m + 3) // 4):
        w0, w1, w2, w3 = _block_words(b0 + j, k0, k1, o0, o1)
        keep[4 * j] = (w0 >= t32) & allk
        keep[4 * j + 1] = (w1 >= t32) & allk
        keep[4 * j + 2] = (w2 >= t32) & allk
        keep[4 * j + 3] = (w3 >= t32) & allk


@njit(inline="always")
def _shifted_keep(keep, b0, r, m, k0, k1, o0, o1, t32, allk):
    """keep[0 .. m) <- the keep bits of words r .. r+m-1 counted from block b0 (r = start % 4
    > 0): the chunk's m + r words, less the first r."""
    words = np.empty(CHUNK + 8, np.uint8)
    _chunk_keep(words, b0, m + r, k0, k1, o0, o1, t32, allk)
    for e in range(m):
        keep[e] = words[r + e]


@njit(inline="always")
def _pad(keep, m):
    """keep[m .. ceil8(m)) = 0: the tail bits of the last mask byte are 0."""
    for e in range(m, (m + 7) // 8 * 8):
        keep[e] = 0


# The chunk loops index slices from 0, never x[e0 + e]: Numba's negative-index wraparound
# check on a computed index keeps LLVM from vectorizing (5x slower, measured).

@njit(inline="always")
def _pack(mask, keep64):
    """mask <- keep bytes packed: byte i of each uint64 moves 56-7i bits up into the top byte."""
    for k in range(mask.size):
        mask[k] = np.uint8((keep64[k] * PACK) >> S56)


@njit(inline="always")
def _scale(y, x, keep, divisor):
    zero = divisor - divisor
    for e in range(x.size):
        y[e] = _apply_keep(x[e], keep[e], zero, divisor)


@njit(inline="always")
def _keep_scale(keep, ys, xs, b0, k0, k1, o0, o1, t32, allk, divisor):
    """keep and ys = xs * keep / divisor for the whole Philox blocks of a chunk, blocks from
    b0, in one loop (8% faster than a keep pass then a scale pass: the loads overlap the
    Philox arithmetic). Returns the elements done."""
    zero = divisor - divisor
    for j in range(xs.size // 4):
        w0, w1, w2, w3 = _block_words(b0 + j, k0, k1, o0, o1)
        q0, q1 = (w0 >= t32) & allk, (w1 >= t32) & allk
        q2, q3 = (w2 >= t32) & allk, (w3 >= t32) & allk
        keep[4 * j], keep[4 * j + 1], keep[4 * j + 2], keep[4 * j + 3] = q0, q1, q2, q3
        ys[4 * j] = _apply_keep(xs[4 * j], q0, zero, divisor)
        ys[4 * j + 1] = _apply_keep(xs[4 * j + 1], q1, zero, divisor)
        ys[4 * j + 2] = _apply_keep(xs[4 * j + 2], q2, zero, divisor)
        ys[4 * j + 3] = _apply_keep(xs[4 * j + 3], q3, zero, divisor)
    return xs.size // 4 * 4


@njit(inline="always")
def _forward_chunk(c, y, mask, x, k0, k1, o0, o1, t32, allk, divisor, sb, r):
    e0 = c * CHUNK
    m = min(CHUNK, x.size - e0)
    keep64 = np.empty(CHUNK // 8, np.uint64)
    keep = keep64.view(np.uint8)  # little-endian host: byte i of keep64[k] is keep[8k + i]
    ys, xs = y[e0:e0 + m], x[e0:e0 + m]
    b0 = sb + e0 // 4
    if r == 0:
        d = _keep_scale(keep, ys, xs, b0, k0, k1, o0, o1, t32, allk, divisor)
        _chunk_keep(keep[d:], b0 + d // 4, m - d, k0, k1, o0, o1, t32, allk)  # last partial block
        _scale(ys[d:], xs[d:], keep[d:], divisor)
    else:
        _shifted_keep(keep, b0, r, m, k0, k1, o0, o1, t32, allk)
        _scale(ys, xs, keep, divisor)
    _pad(keep, m)
    if mask is not None:
        _pack(mask[e0 // 8:(e0 + m + 7) // 8], keep64)


@njit(inline="always")
def _mask_chunk(c, mask, n, k0, k1, o0, o1, t32, allk, sb, r):
    e0 = c * CHUNK
    m = min(CHUNK, n - e0)
    keep64 = np.empty(CHUNK // 8, np.uint64)
    keep = keep64.view(np.uint8)
    if r == 0:
        _chunk_keep(keep, sb + e0 // 4, m, k0, k1, o0, o1, t32, allk)
    else:
        _shifted_keep(keep, sb + e0 // 4, r, m, k0, k1, o0, o1, t32, allk)
    _pad(keep, m)
    _pack(mask[e0 // 8:(e0 + m + 7) // 8], keep64)


@njit(inline="always")
def _backward_chunk(c, dx, dy, mask, divisor):
    e0 = c * CHUNK
    m = min(CHUNK, dy.size - e0)
    keep64 = np.empty(CHUNK // 8, np.uint64)
    bits = mask[e0 // 8:(e0 + m + 7) // 8]
    for k in range(bits.size):  # byte -> 8 lanes, bit i kept in lane i, carried to 0/1
        v = (np.uint64(bits[k]) * SPREAD) & LANE_BITS
        keep64[k] = ((v + CARRY) >> S7) & SPREAD
    _scale(dx[e0:e0 + m], dy[e0:e0 + m], keep64.view(np.uint8), divisor)


# Each kernel runs over chunks in parallel from PARALLEL_MIN elements, else as its serial twin
# (the same function built with parallel=False, cpu/jit.py), which wakes no thread pool.
# Measured (benchmarks/test_threads.py thresholds, README "Using fusedops inside your
# program"): from 16K elements the parallel forward beats the twin by 1.7x on the fastest calls
# (5x at 64K, 10x from 1M; quiet 2-core VM, 2026-11-29; at 4K the twin is 2x faster). Part
# of that is the twin's own slowness: its Philox loop runs ~2.5x (16K) to ~5x (1M) slower than
# the same body inside the parallel kernel's gufunc on one thread, a Numba codegen difference
# not found yet.
PARALLEL_MIN = 16384


@kernel(parallel_min=PARALLEL_MIN)
def _forward_par(y, mask, x, k0, k1, o0, o1, t32, allk, divisor, sb, r):
    for c in prange((x.size + CHUNK - 1) // CHUNK):
        _forward_chunk(c, y, mask, x, k0, k1, o0, o1, t32, allk, divisor, sb, r)


@kernel(parallel_min=PARALLEL_MIN)
def _mask_par(mask, n, k0, k1, o0, o1, t32, allk, sb, r):
    for c in prange((n + CHUNK - 1) // CHUNK):
        _mask_chunk(c, mask, n, k0, k1, o0, o1, t32, allk, sb, r)


@kernel(parallel_min=PARALLEL_MIN)
def _backward_par(dx, dy, mask, divisor):
    for c in prange((dy.size + CHUNK - 1) // CHUNK):
        _backward_chunk(c, dx, dy, mask, divisor)


@kernel(parallel_min=PARALLEL_MIN)
def _scale_par(y, x, s):
    for i in prange(x.size):
        y[i] = s * x[i]


def dropout_forward(y, mask, x, seed, offset, threshold, divisor, start=0):
    """y (n,) = x (n,) * keep / divisor; mask (ceil(n/8),) uint8 or None <- packed keep;
    element j draws stream index start + j."""
    run(_forward_par, x.size, y, mask, x, *common.key_words(seed, offset, threshold),
        x.dtype.type(divisor), *common.start_words(start))


def dropout_mask(mask, n, seed, offset, threshold, start=0):
    """mask (ceil(n/8),) uint8 <- packed keep bits of n elements from stream index start."""
    run(_mask_par, n, mask, int(n), *common.key_words(seed, offset, threshold),
        *common.start_words(start))


def dropout_backward(dx, dy, mask, divisor):
    """dx (n,) = dy (n,) * keep / divisor, keep unpacked from mask (ceil(n/8),) uint8."""
    run(_backward_par, dy.size, dx, dy, mask, dy.dtype.type(divisor))


def dropout_scale(y, x, scale):
    """y (n,) = scale * x (n,): eval mode."""
    run(_scale_par, x.size, y, x, x.dtype.type(scale))
