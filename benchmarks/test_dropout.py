"""Dropout forward and backward per backend, fp32, p = 0.5, sizes from in-cache to 6.4e7
elements, with NumPy (`rng.random(shape, dtype=float32) >= p`, then multiply) and PyTorch's
dropout as peers in the same groups. Run with
`pytest benchmarks/test_dropout.py --benchmark-only` (FUSEDOPS_BENCH_SIZES=... for fewer sizes).

Bytes per element: forward 8 + 1/8 (x read, y written, 1 mask bit written); backward from the
mask 8 + 1/8; backward regenerated from (seed, offset) 8. Peers are charged the same bytes, so
their GB/s compare directly (they actually move more: a float or bool mask, a random array).
"""
import numpy as np
import pytest
from conftest import TORCH_CUDA, backend_params, bench_sizes, cuda_sync, peer_params, run_benchmark, torch  # noqa: F401

from fusedops import ops

SIZES = bench_sizes([10_000, 1_000_000, 16_777_216, 64_000_000])
P, SEED, OFFSET = 0.5, 1234, 5
REFERENCE_MAX = 1_000_000  # the NumPy reference Philox holds ~10 uint64 temporaries per block
BACKENDS = backend_params() + [pytest.param("numpy-rng", id="numpy-rng")] + peer_params()
BYTES = {"forward": 8.125, "backward-mask": 8.125, "backward-regen": 8.0}


def _to_host(a):
    if hasattr(a, "cpu"):
        return a.cpu().numpy()
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)


def _fusedops_case(backend, op, x):
    """(fn, check) for one of our backends; check() runs once, after the warm-up call."""
    dev = x
    if backend == "cuda":
        from numba import cuda

        dev = cuda.to_device(x)
    y, mask = ops.dropout_forward(dev, P, seed=SEED, offset=OFFSET, backend=backend)
    keep = ops.unpack_mask(mask, x.shape)
    if op == "forward":
        fn = lambda: ops.dropout_forward(dev, P, seed=SEED, offset=OFFSET, out=y, backend=backend)  # noqa: E731
    elif op == "backward-mask":
        fn = lambda: ops.dropout_backward(dev, p=P, mask=mask, out=y, backend=backend)  # noqa: E731
    else:
        fn = lambda: ops.dropout_backward(dev, p=P, seed=SEED, offset=OFFSET, out=y, backend=backend)  # noqa: E731

    def check():
        assert abs(keep.mean() - (1 - P)) < 0.05
        np.testing.assert_array_equal(_to_host(y), x * keep / (1 - P))
        small = min(x.size, 100_000)  # a whole-byte prefix of the mask equals the reference's
        np.testing.assert_array_equal(_to_host(mask)[: (small + 7) // 8],
                                      ops.dropout_mask(small, P, seed=SEED, offset=OFFSET, backend="numpy"))
    return fn, check


def _peer_case(backend, op, x):
    """NumPy and PyTorch: a new random mask per forward call, as they would be used."""
    scale = 1 / (1 - P)
    if backend == "numpy-rng":
        rng = np.random.default_rng(SEED)
        keep = rng.random(x.shape, dtype=np.float32) >= P
        if op == "forward":
            fn = lambda: x * (rng.random(x.shape, dtype=np.float32) >= P) * np.float32(scale)  # noqa: E731
        else:
            fn = lambda: x * keep * np.float32(scale)  # noqa: E731
        return fn, lambda: None
    dev = "cuda" if backend == "torch-cuda" else "cpu"
    t = torch.from_numpy(x).to(dev)
    mask = torch.rand(t.shape, device=dev) >= P
    if op == "forward":
        fn = lambda: torch.nn.functional.dropout(t, P, training=True)  # noqa: E731
    else:
        fn = lambda: torch.ops.aten.native_dropout_backward(t, mask, scale)  # noqa: E731
    return fn, lambda: None


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("op", ["forward", "backward-mask", "backward-regen"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout(benchmark, backend, op, n):
    if backend == "numpy" and n > REFERENCE_MAX:
        pytest.skip("the NumPy reference is a specification, not timed beyond 1e6 elements")
    if op == "backward-regen" and (backend == "numpy-rng" or backend.startswith("torch")):
        pytest.skip("peers cannot regenerate a mask; their backward is timed in backward-mask")
    benchmark.group = f"dropout-{op} n={n}"
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    peer = backend == "numpy-rng" or backend.startswith("torch")
    fn, check = (_peer_case if peer else _fusedops_case)(backend, op, x)
    fn()  # warm-up (JIT) outside the timed region
    check()
    on_gpu = backend in ("cuda", "torch-cuda")
    sync = cuda_sync if backend == "cuda" else (torch.cuda.synchronize if backend == "torch-cuda" else None)
    run_benchmark(benchmark, fn, nbytes=int(BYTES[op] * n), on_gpu=on_gpu, sync=sync)
