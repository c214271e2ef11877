"""Run one validated kernel call on the chosen backend.

Every backend exposes a kernel under the same name with the same argument order (outputs,
inputs, sizes, hyperparameters):
  numpy  reference.<name>(*arrays, *scalars)             arrays in the caller's shapes
  numba  kernels/cpu/<family>.<name>(*arrays, *scalars)   flat views when flat=True
  c      fo_<name>_<f32|f64>(*pointers, *sizes, *scalars)
  cuda   kernels/cuda/<family>.<name>(*arrays, *scalars, threads_per_block=...)
The kernels are declared once, below: with the outputs first, a kernel's output count says
which arrays it writes. Host arrays given to the cuda backend are staged: copied to the
device, and the written ones copied back, so the same call works on host and device data.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import backends
from ._arrays import as_numba_device


class Kernel(NamedTuple):
    """A kernel as every backend serves it (see the module docstring)."""

    family: str      # the module in reference/, kernels/cpu/, kernels/cuda/ (csrc/<family>.c)
    name: str        # its function in each of them (fo_<name>_<f32|f64> in C)
    outputs: int     # the first `outputs` arrays are written, the rest only read
    flat: bool = True  # numba and cuda get 1-D views; False: the arrays keep their shapes


STREAM_COPY = Kernel("stream", "stream_copy", 1)
STREAM_TRIAD = Kernel("stream", "stream_triad", 1)
SGD_UPDATE = Kernel("optim", "sgd_update", 2)               # w, h | g
ADAGRAD_UPDATE = Kernel("optim", "adagrad_update", 2)       # w, s | g
RMSPROP_UPDATE = Kernel("optim", "rmsprop_update", 4)       # w, s, h, ga | g
ADAM_UPDATE = Kernel("optim", "adam_update", 4)             # w, m, v, vmax | g
NONFINITE_COUNT = Kernel("optim", "nonfinite_count", 1)     # count | g
PHILOX4X32 = Kernel("philox", "philox4x32", 1)              # out | counter, key
DROPOUT_FORWARD = Kernel("dropout", "dropout_forward", 2)   # y, mask | x
DROPOUT_BACKWARD = Kernel("dropout", "dropout_backward", 1)  # dx | dy, mask
DROPOUT_MASK = Kernel("dropout", "dropout_mask", 1)         # mask
DROPOUT_SCALE = Kernel("dropout", "dropout_scale", 1)       # y | x
# y, mean, invstd, running_mean, running_var | x, gamma, beta
BATCHNORM_FORWARD_TRAIN = Kernel("batchnorm", "batchnorm_forward_train", 5, flat=False)
# y, mean, invstd | x, running_mean, running_var, gamma, beta
BATCHNORM_FORWARD_EVAL = Kernel("batchnorm", "batchnorm_forward_eval", 3, flat=False)
# dx, dgamma, dbeta | dy, x, mean, invstd, gamma
BATCHNORM_BACKWARD = Kernel("batchnorm", "batchnorm_backward", 3, flat=False)
# synchronized batch norm (a batch split across processes; reference/batchnorm_sync.py):
# mean, m2 (C,) float64 | x
BATCHNORM_STATS = Kernel("batchnorm_sync", "batchnorm_stats", 2, flat=False)
# y, mean, invstd, running_mean, running_var | x, gamma, beta, whole batch's mean, m2
BATCHNORM_FORWARD_STATS = Kernel("batchnorm_sync", "batchnorm_forward_stats", 5, flat=False)
# sum dy, sum dy*(x - mean) (C,) float64 | dy, x, mean
BATCHNORM_GRAD_SUMS = Kernel("batchnorm_sync", "batchnorm_grad_sums", 2, flat=False)
# dx, dgamma, dbeta | dy, x, mean, invstd, gamma, whole batch's sum dy, sum dy*(x - mean)
BATCHNORM_BACKWARD_SUMS = Kernel("batchnorm_sync", "batchnorm_backward_sums", 3, flat=False)

# low-bit state (fusedops.reference.lowbit): a state slot is (values, scales), scales None
# unless the values are 8-bit codes
ADAM_LOWBIT = Kernel("lowbit", "adam_lowbit", 6)            # p, w32, m, ms, v, vs | g
SGD_LOWBIT = Kernel("lowbit", "sgd_lowbit", 4)              # p, w32, h, hs | g
RMSPROP_LOWBIT = Kernel("lowbit", "rmsprop_lowbit", 8)      # p, w32, s, ss, h, hs, ga, gas | g
QUANTIZE_BLOCKS = Kernel("lowbit", "quantize_blocks", 2)    # codes, scales | x
DEQUANTIZE_BLOCKS = Kernel("lowbit", "dequantize_blocks", 1)  # out | codes, scales

KERNELS = (STREAM_COPY, STREAM_TRIAD, SGD_UPDATE, ADAGRAD_UPDATE, RMSPROP_UPDATE, ADAM_UPDATE,
           NONFINITE_COUNT, PHILOX4X32, DROPOUT_FORWARD, DROPOUT_BACKWARD, DROPOUT_MASK,
           DROPOUT_SCALE, BATCHNORM_FORWARD_TRAIN, BATCHNORM_FORWARD_EVAL, BATCHNORM_BACKWARD,
           BATCHNORM_STATS, BATCHNORM_FORWARD_STATS, BATCHNORM_GRAD_SUMS, BATCHNORM_BACKWARD_SUMS,
           ADAM_LOWBIT, SGD_LOWBIT, RMSPROP_LOWBIT, QUANTIZE_BLOCKS, DEQUANTIZE_BLOCKS)


def _flat(a, flat):
    if a is None or not flat:
        return a
    return a.reshape(a.size)


def launch(backend, kernel: Kernel, arrays, *, sizes=None, scalars=(), dtype=None):
    """Run `kernel` on `arrays` (outputs first; None for an absent optional buffer).
    Returns what the C kernel returns (a status code where the kernel has one), else None."""
    arrays, family, name, flat = list(arrays), kernel.family, kernel.name, kernel.flat
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
        _launch_cuda(family, name, arrays, range(kernel.outputs), scalars, flat)
    else:  # resolve_backend already rejected anything else
        raise AssertionError(backend)


def _launch_cuda(family, name, arrays, writes, scalars, flat):
    from numba import cuda

    from .kernels.cuda.launch import current_stream

    stream = current_stream()  # kernels and staging copies go to the same stream, in order
    dev, copy_back = [], []
    for i, a in enumerate(arrays):
        if a is None:
            dev.append(None)
            continue
        if isinstance(a, np.ndarray):
            d = cuda.to_device(a, stream=stream)
            if i in writes:
                copy_back.append((d, a))
        else:  # a Numba (or simulator) device array as it is; CuPy, PyTorch, ...: zero copy
            d = as_numba_device(a)
        dev.append(_flat(d, flat))
    fn = getattr(backends.cuda_module(family), name)
    fn(*dev, *scalars, threads_per_block=backends.threads_per_block())
    for d, host in copy_back:
        d.copy_to_host(host.reshape(d.shape) if flat else host, stream=stream)
    if copy_back and stream != 0:
        stream.synchronize()  # the host arrays are the caller's once this returns
