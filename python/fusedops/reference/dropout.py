"""Dropout reference (Srivastava et al., JMLR 2014) with the counter-based mask of DESIGN.md.

Element i of the flattened array is kept when word (i % 4) of Philox4x32-10(counter =
(b lo, b hi, offset lo, offset hi), key = (seed lo, seed hi)), b = i // 4, is >= threshold,
threshold = round(p * 2^32). Kept elements are scaled by 1/divisor: divisor = 1-p in
inverted mode (1 when p = 1: everything is dropped) and 1 in classic mode. The mask is packed
little-endian: bit (i % 8) of byte (i // 8); the tail bits of the last byte are 0.

`start` (last argument everywhere, default 0) is the flat index of the array's first element
in the mask stream: element j of the array draws the bit of stream index i = start + j, so a
slice of a larger array (rows lo..hi of a batch split across processes: start = lo * F) gets
exactly the bits it has in the whole array. The packed mask is the array's own: bit (j % 8)
of byte (j // 8).
"""
import numpy as np

from .philox import philox_words

__all__ = ["dropout_keep", "dropout_forward", "dropout_backward", "dropout_mask", "dropout_scale"]

_LO = np.uint64(0xFFFFFFFF)


def _halves(v):
    v = np.uint64(v)
    return v & _LO, v >> np.uint64(32)


def dropout_keep(n, seed, offset, threshold, start=0):
    """keep (n,) bool: the Philox words of stream indices start .. start+n-1 compared with
    threshold."""
    first, r = divmod(int(start), 4)  # the Philox block of the first element, its word
    blocks = np.arange(first, first + (r + n + 3) // 4, dtype=np.uint64)
    (k0, k1), (o0, o1) = _halves(seed), _halves(offset)
    words = philox_words(blocks & _LO, blocks >> np.uint64(32), o0, o1, k0, k1)
    u = np.stack(words, axis=-1).reshape(-1)[r:r + n]
    return u >= np.uint64(threshold)


def dropout_mask(mask, n, seed, offset, threshold, start=0):
    """mask (ceil(n/8),) uint8 <- packed keep bits of n elements from stream index start."""
    mask[...] = np.packbits(dropout_keep(n, seed, offset, threshold, start), bitorder="little")


def dropout_forward(y, mask, x, seed, offset, threshold, divisor, start=0):
    """y <- x * keep / divisor (any shape, C order); mask (or None) <- packed keep; element j
    draws stream index start + j."""
    keep = dropout_keep(x.size, seed, offset, threshold, start)
    y[...] = (x.reshape(-1) * keep / x.dtype.type(divisor)).reshape(x.shape)
    if mask is not None:
        mask[...] = np.packbits(keep, bitorder="little")


def dropout_backward(dx, dy, mask, divisor):
    """dx <- dy * keep / divisor with keep unpacked from mask (ceil(n/8),) uint8."""
    keep = np.unpackbits(mask, count=dy.size, bitorder="little").astype(bool)
    dx[...] = (dy.reshape(-1) * keep / dy.dtype.type(divisor)).reshape(dy.shape)


def dropout_scale(y, x, scale):
    """y <- scale * x: eval mode (scale 1 for inverted, 1-p for classic)."""
    np.multiply(x, x.dtype.type(scale), out=y)
