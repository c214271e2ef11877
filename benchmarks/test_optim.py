"""Optimizer steps per backend over sizes from in-cache to far beyond the last-level cache, plus
an MLP-shaped parameter list (24 matrices 1024x1024 and their biases). PyTorch's Adam (fused,
foreach and for-loop) runs in the same groups when installed.

    pytest benchmarks/test_optim.py --benchmark-only
    FUSEDOPS_BENCH_SIZES=16000000 pytest benchmarks/test_optim.py --benchmark-only -k "adam and not mlp"

Bytes per fp32 parameter (each array read once, written once): SGD 12, momentum / AdaGrad /
RMSprop 20, Adam 28, AMSGrad 36. Before timing, one step is checked against the NumPy
reference on a prefix of the data (the ops are elementwise, so the prefix stands for all).
"""
import numpy as np
import pytest
from conftest import backend_params, bench_sizes, cuda_sync, peer_params, run_benchmark, torch

from fusedops import ops, optim

SIZES = bench_sizes([10_000, 1_000_000, 16_000_000, 64_000_000])
CHECK = 4096  # prefix checked against the reference
# name: (functional op, state buffers, hyperparameters, fp32 bytes per parameter)
OPS = {
    "sgd": (ops.sgd_step, 0, dict(lr=0.01), 12),
    "momentum": (ops.sgd_step, 1, dict(lr=0.01, momentum=0.9), 20),
    "adagrad": (ops.adagrad_step, 1, dict(lr=0.01), 20),
    "rmsprop": (ops.rmsprop_step, 1, dict(lr=0.01), 20),
    "adam": (ops.adam_step, 2, dict(step=10, lr=1e-3), 28),
    "adamw": (ops.adam_step, 2, dict(step=10, lr=1e-3, weight_decay=0.01, decoupled=True), 28),
    "amsgrad": (ops.adam_step, 3, dict(step=10, lr=1e-3, amsgrad=True), 36),
}
TORCH_ADAM = {"torch-fused": dict(fused=True), "torch-foreach": dict(foreach=True),
              "torch-forloop": dict(foreach=False)}


def _host_arrays(n, n_state):
    rng = np.random.default_rng(0)
    w = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    state = [np.full(n, 0.01, np.float32) for _ in range(n_state)]
    return w, g, state


def _call(op, w, g, state, backend):
    fn, _, hyper, _ = OPS[op]
    return lambda: fn(w, g, *state, **hyper, backend=backend)


def _check_prefix(op, w0, g, state0, got_w):
    """One step of the reference on the first CHECK elements equals the backend's first step."""
    w, st = w0[:CHECK].copy(), [s[:CHECK].copy() for s in state0]
    _call(op, w, g[:CHECK].copy(), st, "numpy")()
    np.testing.assert_allclose(got_w[:CHECK], w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("backend", backend_params())
def test_step(benchmark, backend, op, n):
    benchmark.group = f"optim-{op} n={n}"
    w, g, state = _host_arrays(n, OPS[op][1])
    w0, state0 = w[:CHECK].copy(), [s[:CHECK].copy() for s in state]
    sync = None
    if backend == "cuda":
        from numba import cuda

        w, g, state, sync = cuda.to_device(w), cuda.to_device(g), [cuda.to_device(s) for s in state], cuda_sync
    fn = _call(op, w, g, state, backend)
    fn()  # JIT warm-up, and the step checked below
    got = w.copy_to_host() if backend == "cuda" else w
    _check_prefix(op, w0, g if backend != "cuda" else g.copy_to_host(), state0, got)
    run_benchmark(benchmark, fn, nbytes=OPS[op][3] * n, on_gpu=backend == "cuda", sync=sync)


def _torch_adam(n_or_shapes, device, kwargs):
    shapes = n_or_shapes if isinstance(n_or_shapes, list) else [(n_or_shapes,)]
    gen = torch.Generator().manual_seed(0)
    params = []
    for s in shapes:
        p = torch.nn.Parameter(torch.randn(s, generator=gen).to(device))
        p.grad = torch.randn(s, generator=gen).to(device)
        params.append(p)
    if len(params) > 1:  # the MLP list: decayed weights, then biases without decay
        half = len(params) // 2
        params = [{"params": params[:half], "weight_decay": 0.01}, {"params": params[half:]}]
    opt = torch.optim.Adam(params, lr=1e-3, **kwargs)
    sync = torch.cuda.synchronize if device == "cuda" else None
    return opt.step, sync


def _torch_params():
    """(peer, device) pairs, skipping (with the reason) where torch or its CUDA is missing."""
    cpu, gpu = peer_params()
    return [pytest.param(k, dev, marks=p.marks, id=k + suffix)
            for dev, p, suffix in (("cpu", cpu, ""), ("cuda", gpu, "-cuda")) for k in TORCH_ADAM]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("peer, device", _torch_params())
def test_torch_adam(benchmark, peer, device, n):
    benchmark.group = f"optim-adam n={n}"
    step, sync = _torch_adam(n, device, TORCH_ADAM[peer])
    step()
    run_benchmark(benchmark, step, nbytes=28 * n, on_gpu=device == "cuda", sync=sync)


MLP_SHAPES = [(1024, 1024)] * 24 + [(1024,)] * 24
MLP_PARAMS = sum(int(np.prod(s)) for s in MLP_SHAPES)


@pytest.mark.parametrize("layout", ["flat", "arrays"])
@pytest.mark.parametrize("backend", backend_params())
def test_mlp_adam(benchmark, backend, layout):
    """fusedops.optim.Adam over the MLP-shaped list: 'flat' = views of one buffer (one kernel call
    per group: weights with decay, biases without), 'arrays' = 48 separate arrays."""
    if backend == "numpy" and layout == "arrays":
        pytest.skip("the NumPy reference is timed once, flat")
    benchmark.group = "optim-adam mlp 24x(1024x1024)+biases"
    rng = np.random.default_rng(0)
    host = [rng.standard_normal(s, dtype=np.float32) for s in MLP_SHAPES]
    grads = [rng.standard_normal(s, dtype=np.float32) for s in MLP_SHAPES]
    sync = None
    if backend == "cuda":
        from numba import cuda

        host, grads, sync = [cuda.to_device(a) for a in host], [cuda.to_device(a) for a in grads], cuda_sync
    if layout == "flat":
        (_, params), (_, grads) = optim.flatten(host), optim.flatten(grads)
    else:
        params = host
    groups = [{"params": params[:24], "weight_decay": 0.01}, {"params": params[24:]}]
    opt = optim.Adam(groups, lr=1e-3, backend=backend)
    fn = lambda: opt.step(grads)  # noqa: E731
    to_host = (lambda a: a.copy_to_host()) if backend == "cuda" else (lambda a: np.array(a))
    w0, b0 = to_host(params[23]), to_host(params[47])
    fn()  # warm-up, and the step checked against the reference: last weight and last bias
    for k, w, wd in ((23, w0, 0.01), (47, b0, 0.0)):
        g = to_host(grads[k])
        ops.adam_step(w, g, np.zeros_like(w), np.zeros_like(w), step=1, lr=1e-3, weight_decay=wd,
                      backend="numpy")
        np.testing.assert_allclose(to_host(params[k]), w, rtol=1e-5, atol=1e-6)
    run_benchmark(benchmark, fn, nbytes=28 * MLP_PARAMS, on_gpu=backend == "cuda", sync=sync)


@pytest.mark.parametrize("peer, device", _torch_params())
def test_mlp_torch_adam(benchmark, peer, device):
    benchmark.group = "optim-adam mlp 24x(1024x1024)+biases"
    step, sync = _torch_adam(MLP_SHAPES, device, TORCH_ADAM[peer])
    step()
    run_benchmark(benchmark, step, nbytes=28 * MLP_PARAMS, on_gpu=device == "cuda", sync=sync)
