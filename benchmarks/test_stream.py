"""Bandwidth probe kernels: copy and triad per backend over sizes from in-cache to beyond the
last-level cache. Run with `pytest benchmarks/test_stream.py --benchmark-only`."""
import numpy as np
import pytest
from conftest import TORCH_CUDA, backend_params, bench_sizes, cuda_sync, peer_params, run_benchmark, torch

from fusedops import ops

SIZES = bench_sizes([10_000, 1_000_000, 16_000_000, 64_000_000])


def _host(n):
    return np.full(n, 1.0, np.float32), np.full(n, 2.0, np.float32), np.full(n, 0.5, np.float32)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kernel", ["copy", "triad"])
@pytest.mark.parametrize("backend", backend_params() + peer_params())
def test_stream(benchmark, backend, kernel, n):
    benchmark.group = f"stream-{kernel} n={n}"
    nbytes = (2 if kernel == "copy" else 3) * 4 * n
    a, b, c = _host(n)
    on_gpu = backend in ("cuda", "torch-cuda")
    sync = cuda_sync if backend == "cuda" else None
    if backend.startswith("torch"):
        dev = "cuda" if backend == "torch-cuda" else "cpu"
        a, b, c = (torch.from_numpy(x).to(dev) for x in (a, b, c))
        fn = (lambda: b.copy_(a)) if kernel == "copy" else (lambda: torch.add(b, c, alpha=3.0, out=a))
        sync = torch.cuda.synchronize if dev == "cuda" else None
    else:
        if backend == "cuda":
            from numba import cuda

            a, b, c = (cuda.to_device(x) for x in (a, b, c))
        if kernel == "copy":
            fn = lambda: ops.stream_copy(b, a, backend=backend)  # noqa: E731
        else:
            fn = lambda: ops.stream_triad(a, b, c, scalar=3.0, backend=backend)  # noqa: E731
    fn()  # warm-up (JIT) and the check below
    got = (b if kernel == "copy" else a)
    got = got.cpu().numpy() if hasattr(got, "cpu") else (got.copy_to_host() if hasattr(got, "copy_to_host") else got)
    assert np.all(got == (1.0 if kernel == "copy" else 3.5))
    run_benchmark(benchmark, fn, nbytes=nbytes, on_gpu=on_gpu, sync=sync)
