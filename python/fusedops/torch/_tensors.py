"""Tensors as fusedops kernel arguments, without copies.

A CPU tensor goes to the host backends as the NumPy array over its memory (`Tensor.numpy()`),
a CUDA tensor to the cuda backend as itself (it exports `__cuda_array_interface__`). CUDA kernels
are launched on the tensor's current PyTorch stream (`on_stream`), so they are ordered with the
PyTorch work around them exactly as a native PyTorch op would be.
"""
import contextlib
import threading

import numpy as np
import torch

FLOAT_DTYPES = (torch.float32, torch.float64)
_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}
# NumPy asks Linux for transparent huge pages (madvise) on allocations from 4 MiB up; PyTorch's
# CPU allocator does only under THP_MEM_ALLOC_ENABLE=1. First touch of a fresh 64 MiB output
# then costs 2 MiB faults, not 4 KiB ones: 30 ms instead of 95 ms on the 2-core EPYC VM
# (THP "madvise" mode), which is most of a fused dropout's or batch norm's time.
_HUGE_MIN = 4 << 20
_streams = threading.local()  # per thread: {(device index, cudaStream_t): numba stream}


def check_float(name, t):
    """t must be a dense float32/float64 tensor (the dtypes every fusedops kernel serves)."""
    if t.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor; got layout {t.layout}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype torch.float32 or torch.float64; got {t.dtype}")


def empty_like(x):
    """A fresh C-contiguous tensor shaped and typed as x, on x's device: the output of an op.
    Large CPU float outputs come from NumPy's allocator (huge pages, see _HUGE_MIN)."""
    if (not x.is_cuda and x.dtype in _NUMPY
            and x.numel() * x.element_size() >= _HUGE_MIN):
        return torch.from_numpy(np.empty(tuple(x.shape), _NUMPY[x.dtype]))
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def kernel_array(t):
    """The array a fusedops op takes for tensor t (detached, C-contiguous): a NumPy view of a
    CPU tensor, the tensor itself on CUDA."""
    t = t.detach()
    return t if t.is_cuda else t.numpy()


def memory_view(t):
    """A 1-D view of t's elements in memory order when t is non-overlapping and dense (any
    permutation of dimensions: C-contiguous, channels_last, ...), else None."""
    if t.is_contiguous():
        return t.detach().view(-1)
    expect = 1
    for stride, size in sorted((st, sz) for st, sz in zip(t.stride(), t.shape) if sz != 1):
        if stride != expect:
            return None
        expect *= size
    return t.detach().as_strided((t.numel(),), (1,))


def span(tensors):
    """A 1-D view covering `tensors` when they lie end to end, in this order, in one storage
    (C-contiguous, one dtype and device), else None. Empty tensors are ignored."""
    tensors = [t for t in tensors if t.numel()]
    if not tensors:
        return None
    first = tensors[0]
    size, start, total = first.element_size(), first.data_ptr(), 0
    storage = first.untyped_storage().data_ptr()
    for t in tensors:
        if (t.dtype != first.dtype or t.device != first.device or not t.is_contiguous()
                or t.data_ptr() != start + total * size
                or t.untyped_storage().data_ptr() != storage):
            return None
        total += t.numel()
    return first.detach().as_strided((total,), (1,))


def _numba_stream(index):
    """The Numba stream for PyTorch's current stream on device `index` (0: the default stream)."""
    handle = torch.cuda.current_stream(index).cuda_stream
    if handle == 0:
        return 0
    cache = getattr(_streams, "cache", None)
    if cache is None:
        cache = _streams.cache = {}
    key = (index, handle)
    if key not in cache:
        from numba import cuda

        cache[key] = cuda.external_stream(handle)
    return cache[key]


@contextlib.contextmanager
def on_stream(t):
    """Inside the block, fusedops CUDA kernels run on t's device and PyTorch's current stream
    there; for a CPU tensor the block is unchanged."""
    if not t.is_cuda:
        yield
        return
    from numba import cuda

    from ..kernels.cuda.launch import using_stream

    index = t.device.index if t.device.index is not None else torch.cuda.current_device()
    with torch.cuda.device(index), cuda.gpus[index], using_stream(_numba_stream(index)):
        yield


def as_tensor(a, like):
    """A tensor over an op's output `a` (NumPy array or CUDA device array), on like's device,
    without a copy."""
    if isinstance(a, torch.Tensor):
        return a
    if like.is_cuda:
        return torch.as_tensor(a, device=like.device)
    return torch.from_numpy(a)
