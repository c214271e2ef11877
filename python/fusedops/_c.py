"""The one door to the C extension: `ffi`, `lib`, and array -> pointer conversion.

Callers have already checked dtype, shape, contiguity and writability (checks.py); this
module only converts. cffi releases the GIL around every call.
"""
from __future__ import annotations

import numpy as np

from ._fusedops_c import ffi, lib  # noqa: F401  (ImportError = extension not built)

_CTYPES = {
    np.dtype(np.float32): "float *",
    np.dtype(np.float64): "double *",
    np.dtype(np.uint8): "uint8_t *",
    np.dtype(np.uint16): "uint16_t *",
    np.dtype(np.uint32): "uint32_t *",
    np.dtype(np.uint64): "uint64_t *",
    np.dtype(np.int64): "int64_t *",
}
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def ptr(a):
    """Typed pointer to a C-contiguous ndarray's data (NULL for None)."""
    if a is None:
        return ffi.NULL
    return ffi.cast(_CTYPES[a.dtype], ffi.from_buffer(a))


def function(name: str, dtype):
    """lib.fo_<name>_<f32|f64> for the given float dtype; lib.fo_<name> when dtype is None
    (kernels with no float arrays, such as the RNG and the dropout mask)."""
    if dtype is None:
        return getattr(lib, f"fo_{name}")
    return getattr(lib, f"fo_{name}_{_SUFFIX[np.dtype(dtype)]}")


def call(name: str, dtype, arrays, sizes, scalars):
    """fo_<name>_<sfx>(*pointers, *sizes, *scalars): outputs, inputs, sizes, hyperparameters."""
    return function(name, dtype)(*[ptr(a) for a in arrays], *sizes, *scalars)
