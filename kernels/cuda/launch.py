"""Launch geometry and the stream shared by the CUDA launchers."""
import contextlib
import threading

from numba import cuda

_WAVES = 32  # resident blocks per SM a grid-stride launch aims for
_local = threading.local()


def grid_for(n, threads_per_block):
    """Blocks for a grid-stride loop over n items: enough to fill the device, no more than n needs."""
    blocks = (n + threads_per_block - 1) // threads_per_block
    try:
        sms = cuda.get_current_device().MULTIPROCESSOR_COUNT
    except Exception:  # simulator or no attribute: one block per chunk
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
