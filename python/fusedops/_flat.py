"""Flat parameter buffers for fusedops.optim: build one (`flatten`), recognise one (`span`).

Host arrays are NumPy arrays; device arrays are Numba device arrays (or the simulator's), CuPy
arrays or PyTorch CUDA tensors (fusedops._arrays tells them apart and copies between them).
"""
from __future__ import annotations

import warnings
from importlib import import_module

import numpy as np

from ._arrays import address, array_info, as_numba_device, host_data, is_device_array

# kind-blind helpers that lived here before fusedops._arrays: importable from here with a
# DeprecationWarning while code written against the old layout is updated
MOVED = dict.fromkeys(("full", "host_copy", "copy_into", "zero_fill"), "fusedops._arrays")


def __getattr__(name: str):
    if name in MOVED:
        warnings.warn(f"fusedops._flat.{name} has moved: import it from {MOVED[name]}",
                      DeprecationWarning, stacklevel=2)
        return getattr(import_module(MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


class _DeviceSpan:
    """__cuda_array_interface__ of consecutive device arrays; keeps them alive."""

    def __init__(self, arrays, total, dtype):
        self._arrays = list(arrays)
        self.__cuda_array_interface__ = {"shape": (total,), "typestr": dtype.str, "strides": None,
                                         "data": (address(arrays[0]), False), "version": 3}


def span(arrays):
    """One writable 1-D array over `arrays` when they lie end to end in one buffer (same dtype,
    C-contiguous, consecutive, host arrays sharing one base), else None. Zero copy."""
    if not arrays:
        return None
    infos = [array_info("array", a) for a in arrays]
    dtype, device = infos[0].dtype, infos[0].device
    if any(i.dtype != dtype or i.device != device or not i.c_contiguous for i in infos):
        return None
    start, total = address(arrays[0]), 0
    for a, info in zip(arrays, infos):
        if address(a) != start + total * dtype.itemsize:
            return None
        total += int(np.prod(info.shape, dtype=np.int64))
    hosts = [host_data(a) for a in arrays]
    if hosts[0] is None:  # real device memory: consecutive spans cover exactly these arrays
        from numba import cuda

        return cuda.as_cuda_array(_DeviceSpan(arrays, total, dtype))
    root = _root(hosts[0])
    if any(_root(h) is not root for h in hosts) or not root.flags.c_contiguous:
        return None
    off = start - address(root)
    flat = root.reshape(-1).view(np.uint8)[off:off + total * dtype.itemsize].view(dtype)
    return flat if isinstance(arrays[0], np.ndarray) else type(arrays[0])(flat)


def flatten(arrays, *, dtype=None):
    """Copy `arrays` into one new C-contiguous 1-D buffer; return (flat, views), views[i] shaped
    like arrays[i], laid end to end in flat, so an optimizer step over them is one kernel call.
    Host arrays give a NumPy buffer (cast to `dtype` if given); device arrays a Numba device
    buffer (all of one dtype)."""
    arrays = list(arrays)
    if not arrays:
        raise ValueError("arrays must not be empty")
    device = [is_device_array(a) for a in arrays]
    if any(device) and not all(device):
        raise ValueError("arrays must be all host arrays or all GPU arrays")
    infos = [array_info(f"arrays[{i}]", a) for i, a in enumerate(arrays)]
    kinds = {i.dtype for i in infos}
    if dtype is None and len(kinds) > 1:
        raise TypeError(f"arrays have different dtypes {sorted(map(str, kinds))}; pass dtype=")
    dt = np.dtype(dtype) if dtype is not None else infos[0].dtype
    sizes = [int(np.prod(i.shape, dtype=np.int64)) for i in infos]
    if all(device):
        if dt not in kinds or len(kinds) > 1:
            raise TypeError("device arrays are not cast: they must all have dtype " + str(dt))
        from numba import cuda

        flat = cuda.device_array(sum(sizes), dt)
    else:
        flat = np.empty(sum(sizes), dt)
    views, off = [], 0
    for a, n, info in zip(arrays, sizes, infos):
        v = flat[off:off + n].reshape(info.shape)
        if n and all(device):
            v.copy_to_device(as_numba_device(a))
        elif n:
            v[...] = a
        views.append(v)
        off += n
    return flat, views
