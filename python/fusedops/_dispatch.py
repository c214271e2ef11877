"""Run one validated kernel call on the chosen backend.

Every backend exposes the kernel under the same name with the same argument order (outputs,
inputs, sizes, hyperparameters):
  numpy  reference.<name>(*arrays, *scalars)             arrays in the caller's shapes
  numba  kernels/cpu/<family>.<name>(*arrays, *scalars)   flat views when flat=True
  c      fo_<name>_<f32|f64>(*pointers, *sizes, *scalars)
  cuda   kernels/cuda/<family>.<name>(*arrays, *scalars, threads_per_block=...)
Host arrays given to the cuda backend are staged: copied to the device, and the written ones
copied back, so the same call works on host and device data.
"""
from __future__ import annotations

import numpy as np

from . import backends
from ._arrays import as_numba_device


def _flat(a, flat):
    if a is None or not flat:
        return a
    return a.reshape(a.size)


def launch(backend, family, name, arrays, *, writes, sizes=None, scalars=(), flat=True, dtype=None):
    """Run kernel `name` of `family`; `writes` are the indices of the arrays it writes.
    Returns what the C kernel returns (a status code where the kernel has one), else None."""
    arrays = list(arrays)
    if dtype is None:
        # None when no float array is passed: the C function then has no f32/f64 suffix
        dtype = next((a.dtype for a in arrays if a is not None and np.dtype(a.dtype).kind == "f"), None)
    if backend == "numpy":
        from . import reference

        getattr(reference, name)(*arrays, *scalars)
    elif backend == "numba":
        getattr(backends.cpu_module(family), name)(*[_flat(a, flat) for a in arrays], *scalars)
    elif backend == "c":
        from . import _c

        if sizes is None:
            sizes = (arrays[0].size,)
        return _c.call(name, dtype, arrays, sizes, scalars)
    elif backend == "cuda":
        _launch_cuda(family, name, arrays, writes, scalars, flat)
    else:  # resolve_backend already rejected anything else
        raise AssertionError(backend)


def _launch_cuda(family, name, arrays, writes, scalars, flat):
    from numba import cuda

    dev, copy_back = [], []
    for i, a in enumerate(arrays):
        if a is None:
            dev.append(None)
            continue
        if isinstance(a, np.ndarray):
            d = cuda.to_device(a)
            if i in writes:
                copy_back.append((d, a))
        else:  # a Numba (or simulator) device array as it is; CuPy, PyTorch, ...: zero copy
            d = as_numba_device(a)
        dev.append(_flat(d, flat))
    fn = getattr(backends.cuda_module(family), name)
    fn(*dev, *scalars, threads_per_block=backends.threads_per_block())
    for d, host in copy_back:
        d.copy_to_host(host.reshape(d.shape) if flat else host)
