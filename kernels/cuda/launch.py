"""Launch geometry and the stream shared by the CUDA launchers."""
import contextlib
import threading

from numba import config, cuda

_WAVES = 32  # resident blocks per SM a grid-stride launch aims for
_local = threading.local()
# The simulator runs every CUDA thread as a Python thread (numba-cuda's simulator/kernel.py),
# so its time grows with the threads launched more than with the elements: an Adam step on
# 4099 elements took 1.3 s of CPU as 129 blocks of 32 threads, 0.18 s as 4. A grid of
# SIM_BLOCKS blocks walks larger inputs with the grid-stride loops, the path a GPU takes for
# inputs larger than its grid (Adam's second element per iteration included); no result
# depends on the grid.
SIM_BLOCKS = 4
MAX_GRID_Y = 65535  # CUDA's limit on gridDim.y


def block_for(n, threads_per_block):
    """threads_per_block; under the simulator no more threads than the n items (a step on 2
    elements then runs 2 Python threads, not 32; no result depends on the block size)."""
    if config.ENABLE_CUDASIM:
        return max(1, min(threads_per_block, n))
    return threads_per_block


def grid_for(n, threads_per_block):
    """Blocks for a grid-stride loop over n items: enough to fill the device, no more than n needs."""
    blocks = (n + threads_per_block - 1) // threads_per_block
    if config.ENABLE_CUDASIM:
        return max(1, min(blocks, SIM_BLOCKS))
    try:
        sms = cuda.get_current_device().MULTIPROCESSOR_COUNT
    except Exception:  # a device without the attribute: one block per chunk
        return max(1, blocks)
    return max(1, min(blocks, sms * _WAVES))


def current_stream():
    """The stream every launcher passes to its kernels: the innermost `using_stream` of this
    thread, else 0 (the default stream). Launches on one stream run in order, so the scratch
    buffers a launcher reuses are safe per stream."""
    return getattr(_local, "stream", 0)


def stream_key(stream=None) -> int:
    """An int naming `stream` (default: the current one), for per-stream caches."""
    s = current_stream() if stream is None else stream
    if isinstance(s, int):
        return s
    try:
        return int(s)  # numba Stream: its CUstream handle
    except (TypeError, ValueError):
        return id(s)  # the simulator's streams have no handle


@contextlib.contextmanager
def using_stream(stream):
    """Launch this thread's fusedops CUDA kernels on `stream` (a Numba stream, e.g.
    `cuda.external_stream(torch.cuda.current_stream().cuda_stream)`, or 0) inside the block.
    Kernels are asynchronous on it: the caller orders other work against that stream."""
    prev = current_stream()
    _local.stream = stream
    try:
        yield stream
    finally:
        _local.stream = prev


def grid_y_for(n):
    """Blocks along y for a loop that strides over n rows of work by gridDim.y."""
    return max(1, min(n, SIM_BLOCKS if config.ENABLE_CUDASIM else MAX_GRID_Y))
