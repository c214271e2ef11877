"""Dropout ops with a counter-based mask: the same (seed, offset) gives the same mask bits on
every backend, at any size, thread count or CUDA grid (DESIGN.md "Dropout").

Element i of a C-ordered array is kept when word i % 4 of Philox4x32-10(counter = (i//4 low,
i//4 high, offset low, offset high), key = (seed low, seed high)) is >= round(p * 2^32). The
mask is packed 1 bit per element, little-endian (``np.packbits(keep, bitorder="little")``).
Use a fresh (seed, offset) pair per call, e.g. a fixed seed and a step counter as offset.

`start` shifts the stream: element j of the array draws stream index i = start + j (the mask
is still the array's own, bit j % 8 of byte j // 8). A slice that starts at flat index `start`
of a larger array therefore gets exactly the bits it has in the whole array: how the rows of a
batch split across processes each draw the mask one process would have drawn.
"""
from __future__ import annotations

import math

import numpy as np

from .._arrays import empty, host_array, is_device_array
from .._dispatch import DROPOUT_BACKWARD, DROPOUT_FORWARD, DROPOUT_MASK, DROPOUT_SCALE, PHILOX4X32
from .._dispatch import launch
from ..backends import resolve_backend
from ..checks import check_array, check_bool, check_int, check_like, check_no_overlap, check_real

__all__ = ["philox4x32", "dropout_forward", "dropout_backward", "dropout_mask", "unpack_mask"]

MODES = ("inverted", "classic")
_U64_MAX = (1 << 64) - 1


def _threshold(p: float) -> int:
    """round(p * 2^32), ties to even; 2^32 for p = 1, so every 32-bit word is below it."""
    return int(round(p * 4294967296.0))


def _divisor(p: float, mode: str) -> float:
    """Kept elements are divided by 1-p in inverted mode; by 1 in classic mode and at p = 1
    (everything is dropped, so there is nothing to rescale and no division by zero)."""
    return 1.0 - p if mode == "inverted" and p < 1.0 else 1.0


def _check_mode(mode) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be 'inverted' or 'classic'; got {mode!r}")
    return mode


def _check_seed(name, value) -> int:
    return check_int(name, value, lo=0, hi=_U64_MAX)


def _empty(like, shape, dtype):
    """A new array on the same side (host or GPU) as `like`."""
    return empty(shape, dtype, device=is_device_array(like))


def _mask_len(n: int) -> int:
    return (n + 7) // 8


def _check_start(start, n: int) -> int:
    """The stream index of the first element: an integer with start + n <= 2^64 (every
    element's index, and so its Philox counter, is a 64-bit value)."""
    start = check_int("start", start, lo=0, hi=_U64_MAX)
    if start + n > _U64_MAX + 1:
        raise ValueError(f"start + size must be <= 2**64 (each element's stream index is 64-bit); "
                         f"got start={start} for {n} elements")
    return start


def philox4x32(counter, key, *, backend=None) -> np.ndarray:
    """Philox4x32-10 (Salmon et al., SC'11) of host counters (..., 4) under keys (2,) or
    (..., 2): integer arrays with values in [0, 2^32). Returns uint32 words (..., 4)."""
    counter, key = np.asarray(counter), np.asarray(key)
    for name, a, width in (("counter", counter, 4), ("key", key, 2)):
        if a.dtype.kind not in "ui":
            raise TypeError(f"{name} must be an integer array; got dtype {a.dtype}")
        if a.ndim == 0 or a.shape[-1] != width:
            raise ValueError(f"{name} must have shape (..., {width}); got {a.shape}")
        if a.size and (a.min() < 0 or a.max() > 0xFFFFFFFF):
            raise ValueError(f"{name} values must be in [0, 2**32)")
    try:
        key = np.broadcast_to(key, counter.shape[:-1] + (2,))
    except ValueError:
        raise ValueError(f"key of shape {key.shape} does not broadcast to counter {counter.shape}") from None
    be = resolve_backend(backend)
    counter = np.ascontiguousarray(counter, np.uint32)
    key = np.ascontiguousarray(key, np.uint32)
    out = np.empty(counter.shape, np.uint32)
    n = counter.size // 4
    launch(be, PHILOX4X32, (out, counter, key), sizes=(n,))
    return out


def dropout_forward(x, p, *, seed, offset=0, mode="inverted", training=True, out=None,
                    return_mask=True, backend=None, start=0):
    """Dropout of x (any shape, C-contiguous float32/float64, host or GPU) with drop rate p.

    Training: inverted mode ``y = x * keep / (1-p)``, classic ``y = x * keep``; returns
    ``(y, mask)`` with the packed uint8 mask (ceil(x.size/8),), or None if return_mask is False.
    Eval (training=False): inverted ``y = x``, classic ``y = (1-p) * x``; the mask is None.
    seed and offset are integers in [0, 2^64). y goes to `out` when given (same shape and
    dtype as x, not overlapping it). start: the stream index of x's first element (see the
    module docstring; start + x.size <= 2^64).
    """
    be = resolve_backend(backend, x, out)
    info = check_array("x", x)
    p = check_real("p", p, lo=0.0, hi=1.0)
    seed, offset = _check_seed("seed", seed), _check_seed("offset", offset)
    mode = _check_mode(mode)
    training, return_mask = check_bool("training", training), check_bool("return_mask", return_mask)
    n = math.prod(info.shape)
    start = _check_start(start, n)
    if out is not None:
        check_like("out", out, "x", x, writable=True)
        check_no_overlap({"out": out}, {"x": x})
    y = _empty(x, info.shape, info.dtype) if out is None else out
    if not training:
        scale = 1.0 if mode == "inverted" else 1.0 - p
        launch(be, DROPOUT_SCALE, (y, x), scalars=(scale,))
        return y, None
    mask = _empty(x, (_mask_len(n),), np.uint8) if return_mask else None
    launch(be, DROPOUT_FORWARD, (y, mask, x), sizes=(n,),
           scalars=(seed, offset, _threshold(p), _divisor(p, mode), start))
    return y, mask


def dropout_backward(dy, *, p, mask=None, seed=None, offset=0, mode="inverted", out=None,
                     backend=None, start=0):
    """Gradient of dropout: ``dx = dy * keep / (1-p)`` (inverted) or ``dy * keep`` (classic).

    keep comes from the packed `mask` returned by dropout_forward, or, with no mask, is
    regenerated from (seed, offset, start): pass one or the other (a mask already holds this
    array's own bits, so offset and start apply only when regenerating). dx goes to `out`
    when given.
    """
    be = resolve_backend(backend, dy, mask, out)
    info = check_array("dy", dy)
    p = check_real("p", p, lo=0.0, hi=1.0)
    mode = _check_mode(mode)
    n = math.prod(info.shape)
    if (mask is None) == (seed is None):
        raise ValueError("pass either mask (from dropout_forward) or seed (and offset) to "
                         "regenerate it, not both and not neither")
    if mask is not None:
        minfo = check_array("mask", mask, dtype=np.uint8, ndim=1)
        if minfo.shape[0] != _mask_len(n):
            raise ValueError(f"mask must have ceil(dy.size / 8) = {_mask_len(n)} bytes for dy of "
                             f"shape {info.shape}; got {minfo.shape[0]}")
        if minfo.device != info.device:
            raise ValueError("mask and dy must both be host arrays or both GPU arrays")
    else:
        seed, offset = _check_seed("seed", seed), _check_seed("offset", offset)
        start = _check_start(start, n)
    if out is not None:
        check_like("out", out, "dy", dy, writable=True)
        check_no_overlap({"out": out}, {"dy": dy, "mask": mask})
    dx = _empty(dy, info.shape, info.dtype) if out is None else out
    divisor = _divisor(p, mode)
    if mask is not None:
        launch(be, DROPOUT_BACKWARD, (dx, dy, mask), sizes=(n,), scalars=(divisor,))
    else:  # the forward kernel with no mask output: the same keep bits, applied to dy
        launch(be, DROPOUT_FORWARD, (dx, None, dy), sizes=(n,),
               scalars=(seed, offset, _threshold(p), divisor, start))
    return dx


def _check_shape(shape) -> tuple:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, tuple) or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ValueError(f"shape must be a non-negative int or a tuple of them; got {shape!r}")
    return tuple(int(d) for d in shape)


def dropout_mask(shape, p, *, seed, offset=0, backend=None, start=0) -> np.ndarray:
    """The packed uint8 keep mask (ceil(prod(shape)/8),) that dropout_forward would use for an
    array of this shape (whose first element has stream index `start`), as a host array,
    without touching any data."""
    shape = _check_shape(shape)
    be = resolve_backend(backend)
    p = check_real("p", p, lo=0.0, hi=1.0)
    seed, offset = _check_seed("seed", seed), _check_seed("offset", offset)
    n = math.prod(shape)
    start = _check_start(start, n)
    mask = np.empty(_mask_len(n), np.uint8)
    launch(be, DROPOUT_MASK, (mask,), sizes=(), scalars=(n, seed, offset, _threshold(p), start))
    return mask


def unpack_mask(mask, shape) -> np.ndarray:
    """The packed mask as a bool array of `shape` (True = kept), on the host, for inspection."""
    shape = _check_shape(shape)
    n = math.prod(shape)
    info = check_array("mask", mask, dtype=np.uint8, ndim=1)
    if info.shape[0] != _mask_len(n):
        raise ValueError(f"mask must have ceil(prod(shape) / 8) = {_mask_len(n)} bytes for shape "
                         f"{shape}; got {info.shape[0]}")
    return np.unpackbits(host_array(mask), count=n, bitorder="little").astype(bool).reshape(shape)

