"""Argument checks shared by every fusedops module, the optional adapters included.

Each check raises a TypeError (wrong kind of value) or ValueError (right kind, wrong value)
whose message names the argument, and returns the checked value, so a caller validates every
argument before any kernel touches memory: a bad call raises and changes nothing.

    from fusedops.checks import check_array, check_bool, check_int, check_real
    lr = check_real("lr", lr, lo=0.0)
    info = check_array("param", param, writable=True)      # dtype, shape, device, ...

This is a stable part of the API: fusedops.ops, optim, nn, data and the adapters (torch,
sklearn, distributed) all import their checks from here.
"""
from __future__ import annotations

import numpy as np

from ._arrays import ArrayInfo, array_info, overlaps

__all__ = ["FLOAT_DTYPES", "ArrayInfo", "check_array", "check_like", "check_no_overlap",
           "check_real", "check_int", "check_bool"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# --------------------------------------------------------------------------- arrays

def _allowed_dtypes(dtype):
    if dtype is None:
        return FLOAT_DTYPES
    if isinstance(dtype, (tuple, list)):
        return tuple(np.dtype(d) for d in dtype)
    return (np.dtype(dtype),)


def _check_layout(name, info, writable):
    if not info.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name})")
    if writable and not info.writable:
        raise ValueError(f"{name} is read-only but is written by this op")


def check_array(name, a, *, dtype=None, shape=None, ndim=None, writable=False) -> ArrayInfo:
    """Check one array argument (host or GPU). `dtype` may be a dtype or a tuple of allowed
    dtypes (default: float32 or float64). Arrays must be C-contiguous; outputs must be writable."""
    info = array_info(name, a)
    allowed = _allowed_dtypes(dtype)
    if info.dtype not in allowed:
        names = " or ".join(str(d) for d in allowed)
        raise TypeError(f"{name} must have dtype {names}; got {info.dtype}")
    if ndim is not None and len(info.shape) != ndim:
        raise ValueError(f"{name} must be {ndim}-D; got shape {info.shape}")
    if shape is not None and tuple(info.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got {info.shape}")
    _check_layout(name, info, writable)
    return info


def check_like(name, a, ref_name, ref, *, writable=False) -> ArrayInfo:
    """`a` must have the same dtype and shape as `ref` (already checked), same memory side."""
    ri, info = array_info(ref_name, ref), array_info(name, a)
    if info.dtype != ri.dtype:
        raise TypeError(f"{name} must have the same dtype as {ref_name} ({ri.dtype}); got {info.dtype}")
    if info.shape != ri.shape:
        raise ValueError(f"{name} must have the same shape as {ref_name} {ri.shape}; got {info.shape}")
    _check_layout(name, info, writable)
    if info.device != ri.device:
        raise ValueError(f"{name} and {ref_name} must both be host arrays or both GPU arrays")
    return info


def check_no_overlap(outputs: dict, inputs: dict | None = None) -> None:
    """No output may share memory with another output or with an input (None entries are
    ignored): a fused pass would read what it has already overwritten. Inputs may alias each
    other."""
    outs = [(k, v) for k, v in outputs.items() if v is not None]
    ins = [(k, v) for k, v in (inputs or {}).items() if v is not None]
    for i, (na, a) in enumerate(outs):
        for nb, b in outs[i + 1:] + ins:
            if overlaps(a, b):
                raise ValueError(f"{na} and {nb} share memory; pass separate arrays")


# --------------------------------------------------------------------------- scalars

def check_real(name, value, *, lo=None, hi=None, lo_open=False, hi_open=False) -> float:
    """A finite real number in [lo, hi] (open ends where asked)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite; got {value!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}; got {value!r}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ValueError(f"{name} must be {'<' if hi_open else '<='} {hi}; got {value!r}")
    return v


def check_int(name, value, *, lo=None, hi=None) -> int:
    """An integer (Python or NumPy, not bool, not float) in [lo, hi]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer; got {type(value).__name__}")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}]; got {value!r}")
    return v


def check_bool(name, value) -> bool:
    """True or False (Python or NumPy bool; not 0 / 1)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)
