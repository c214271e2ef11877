"""Array kinds: the one module that tells host, device and simulator arrays apart.

- host: a NumPy ndarray.
- device: anything exposing ``__cuda_array_interface__`` (Numba device arrays, CuPy arrays,
  PyTorch CUDA tensors), used zero copy.
- simulator: under ``NUMBA_ENABLE_CUDASIM=1`` Numba's device arrays are ``FakeCUDAArray``
  objects wrapping a host ndarray (``._ary``); they count as device arrays, but their bytes
  are read through the wrapped ndarray.

Everything else in fusedops asks these functions instead of testing for ``FakeCUDAArray``,
``copy_to_host`` or ``__cuda_array_interface__`` itself. Private to the package (its
subpackages and adapters included): not a user API.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["ArrayInfo", "array_info", "is_device_array", "is_simulator_array",
           "is_numba_device_array", "is_array", "host_data", "address", "overlaps",
           "as_numba_device", "empty", "full", "host_array", "host_copy", "copy_into", "zero_fill"]


# --------------------------------------------------------------------------- kinds

def is_simulator_array(a) -> bool:
    """A CUDA-simulator device array (a host ndarray behind a device array's interface)."""
    return type(a).__name__ == "FakeCUDAArray"


def is_device_array(a) -> bool:
    """True for GPU arrays: anything with __cuda_array_interface__, or a simulator array."""
    if type(a) is np.ndarray:
        return False
    return hasattr(a, "__cuda_array_interface__") or is_simulator_array(a)


def is_numba_device_array(a) -> bool:
    """A Numba device array (or the simulator's): has copy_to_host / copy_to_device."""
    return hasattr(a, "copy_to_host")


def is_array(a) -> bool:
    """A host or device array."""
    return isinstance(a, np.ndarray) or is_device_array(a)


def host_data(a) -> np.ndarray | None:
    """The ndarray holding a host or simulator array's bytes; None for real device memory."""
    if isinstance(a, np.ndarray):
        return a
    if is_simulator_array(a):
        return a._ary
    return None


def address(a) -> int:
    """Address of a's first byte (host or device)."""
    h = host_data(a)
    if h is not None:
        return h.__array_interface__["data"][0]
    return a.__cuda_array_interface__["data"][0]


# --------------------------------------------------------------------------- layout

class ArrayInfo(NamedTuple):
    dtype: np.dtype
    shape: tuple
    c_contiguous: bool
    writable: bool
    device: bool


def array_info(name: str, a) -> ArrayInfo:
    """dtype, shape, layout and writability of a host or device array, without copying."""
    if isinstance(a, np.ndarray):
        return ArrayInfo(a.dtype, a.shape, a.flags.c_contiguous, a.flags.writeable, False)
    h = host_data(a)
    if h is not None:  # simulator
        return ArrayInfo(h.dtype, h.shape, h.flags.c_contiguous, h.flags.writeable, True)
    cai = getattr(a, "__cuda_array_interface__", None)
    if cai is None:
        raise TypeError(f"{name} must be a numpy.ndarray or a CUDA array; got {type(a).__name__}")
    dtype = np.dtype(cai["typestr"])
    shape = tuple(cai["shape"])
    strides = cai.get("strides")
    contiguous = strides is None or tuple(strides) == _c_strides(shape, dtype.itemsize)
    return ArrayInfo(dtype, shape, contiguous, not cai["data"][1], True)


def _c_strides(shape, itemsize):
    strides, acc = [], itemsize
    for dim in reversed(shape):
        strides.append(acc)
        acc *= dim
    return tuple(reversed(strides))


def _span(a):
    """(start, end) device addresses of the bytes `a` covers, for overlap tests."""
    cai = a.__cuda_array_interface__
    start = cai["data"][0]
    n = int(np.prod(cai["shape"], dtype=np.int64)) * np.dtype(cai["typestr"]).itemsize
    return start, start + n


def overlaps(a, b) -> bool:
    """True when arrays a and b share any memory (host or device)."""
    ha, hb = host_data(a), host_data(b)
    if ha is not None and hb is not None:
        return bool(np.shares_memory(ha, hb))
    if ha is not None or hb is not None:
        return False
    sa, sb = _span(a), _span(b)
    return sa[0] < sb[1] and sb[0] < sa[1] and sa[0] != sa[1] and sb[0] != sb[1]


# --------------------------------------------------------------------------- kind-blind helpers

def as_numba_device(a):
    """A Numba device array over a device array's memory (zero copy)."""
    if is_numba_device_array(a):
        return a
    from numba import cuda

    return cuda.as_cuda_array(a)


def empty(shape, dtype, *, device: bool):
    """A new uninitialized array on the host, or on the GPU (a Numba device array)."""
    if not device:
        return np.empty(shape, dtype)
    from numba import cuda

    return cuda.device_array(shape, dtype)


def full(n, dtype, device: bool, value=0.0):
    """A new 1-D array of n elements set to value, on the host or (Numba) device."""
    a = np.full(n, value, dtype)
    if not device:
        return a
    from numba import cuda

    return cuda.to_device(a)


def host_array(a) -> np.ndarray:
    """a's values as an ndarray: a itself for a host array, else a copy on the host (Numba and
    simulator arrays, CuPy through .get(), other CUDA arrays through Numba); anything else
    through np.asarray (a PyTorch CPU tensor, a list)."""
    if isinstance(a, np.ndarray):
        return a
    if is_numba_device_array(a):
        return a.copy_to_host()
    if hasattr(a, "__cuda_array_interface__"):
        if hasattr(a, "get"):  # CuPy: no detour through numba.cuda
            return a.get()
        return as_numba_device(a).copy_to_host()
    return np.asarray(a)


def host_copy(a) -> np.ndarray:
    """A host ndarray copy of a host or device array (never a view of a)."""
    h = host_data(a)
    if h is not None:
        return np.array(h, copy=True)
    return as_numba_device(a).copy_to_host()


def copy_into(dst, src: np.ndarray) -> None:
    """dst[...] = src (same number of elements), dst on the host or device."""
    if isinstance(dst, np.ndarray):
        np.copyto(dst, src.reshape(dst.shape))
    else:
        dst.copy_to_device(np.ascontiguousarray(src, dtype=dst.dtype).reshape(dst.shape))


def zero_fill(a) -> None:
    """a[...] = 0 for a NumPy, Numba/simulator, CuPy or PyTorch array."""
    if isinstance(a, np.ndarray):
        a.fill(0)
    elif hasattr(a, "zero_"):  # torch
        a.zero_()
    elif hasattr(a, "fill") and not is_numba_device_array(a):  # CuPy
        a.fill(0)
    else:
        d = as_numba_device(a)
        d.copy_to_device(np.zeros(d.shape, d.dtype))
