"""One training step (forward, backward, optimizer) of an MLP with batch norm, dropout and Adam,
per backend, with PyTorch CPU eager (and CUDA when present) as peers in the same groups.

Models: "small" 64-256-256-10 at batch 128 and "large" 1024-4096-4096-1024 at batch 512
(FUSEDOPS_BENCH_MLP=small picks one), each with the default threads and with one thread
(`threads=1`: one BLAS thread, one fusedops thread, one torch thread). On a shared 2-core
machine the default pair of thread pools — OpenBLAS's pthreads for the GEMMs and OpenMP for
the fused kernels — spin against each other between the many short calls of a small model;
one thread each avoids it. For fusedops backends, `extra_info` holds a breakdown of
the step in ms: GEMMs (Linear layers, bias included), fused-op kernels (dropout, batch norm,
optimizer), NumPy/CuPy elementwise work (activations, loss), and Python overhead (the layer
loop plus the fixed validation/dispatch cost of each fused-op call). Run with `-s` to print it.

    pytest benchmarks/test_mlp.py --benchmark-only -s
"""
from __future__ import annotations

import contextlib
import os
import time
from collections import defaultdict

import numpy as np
import pytest
from conftest import backend_params, cuda_sync, peer_params, torch

import fusedops
from fusedops import ops
from fusedops.nn import MLP, BatchNorm1d, Dropout, Linear, Sequential

CASES = {"small": ([64, 256, 256, 10], 128), "large": ([1024, 4096, 4096, 1024], 512)}
SELECTED = [c for c in os.environ.get("FUSEDOPS_BENCH_MLP", "small,large").split(",") if c]
DROPOUT = 0.1
LR = 1e-3


def _batch(sizes, batch):
    rng = np.random.default_rng(0)
    return rng.standard_normal((batch, sizes[0]), dtype=np.float32), rng.integers(0, sizes[-1], batch)


def _ours(case, backend):
    sizes, batch = CASES[case]
    m = MLP(sizes, dropout=DROPOUT, batchnorm=True, seed=0, backend=backend)
    m.set_optimizer("adam", lr=LR)
    m.net.train()
    X, y = _batch(sizes, batch)
    return m, m.xp.asarray(X), m.xp.asarray(y)


def _torch(case, device):
    nn = torch.nn
    sizes, batch = CASES[case]
    layers = []
    for i in range(len(sizes) - 2):
        layers += [nn.Linear(sizes[i], sizes[i + 1], bias=False), nn.BatchNorm1d(sizes[i + 1]), nn.ReLU(),
                   nn.Dropout(DROPOUT)]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    model = nn.Sequential(*layers).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    X, y = _batch(sizes, batch)
    xb, yb = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    return step


@contextlib.contextmanager
def _threads(n):
    """n = None: leave the defaults; else n BLAS, fusedops and torch threads."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    before = fusedops.get_num_threads(), (torch.get_num_threads() if torch is not None else None)
    fusedops.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(n, user_api="blas"):
            yield
    finally:
        fusedops.set_num_threads(before[0])
        if torch is not None:
            torch.set_num_threads(before[1])


def _leaves(seq):
    for layer in seq:
        if isinstance(layer, Sequential):
            yield from _leaves(layer)
        else:
            yield layer


def _category(layer):
    if isinstance(layer, Linear):
        return "gemm"
    if isinstance(layer, (Dropout, BatchNorm1d)):
        return "fused"
    return "elementwise"


def _call_overhead(backend, reps=200):
    """Fixed cost (s) of one fused-op call: validation and dispatch, on 2x2 arrays."""
    x = np.ones((2, 2), np.float32)
    g, b, rm, rv = (np.ones(2, np.float32) for _ in range(4))
    calls = [
        lambda: ops.dropout_forward(x, 0.1, seed=1, out=np.empty_like(x), backend=backend),
        lambda: ops.batchnorm_forward(x, g, b, rm, rv, training=True, out=np.empty_like(x), backend=backend),
    ]
    costs = []
    for call in calls:
        call()
        t0 = time.perf_counter()
        for _ in range(reps):
            call()
        costs.append((time.perf_counter() - t0) / reps)
    return float(np.mean(costs))


def breakdown(m, xb, yb, reps=10, sync=None):
    """Split one step's time (ms, medians over `reps` instrumented steps) into GEMM, fused
    kernels, elementwise work and Python overhead (what the instrumented step spends outside
    the timed calls, plus the fixed validation/dispatch cost of each fused-op call)."""
    sync = sync or (lambda: None)
    layers = list(_leaves(m.net))
    rows = []

    def timed(cats, cat, fn, *args):
        t0 = time.perf_counter()
        r = fn(*args)
        sync()
        cats[cat] += time.perf_counter() - t0
        return r

    for _ in range(reps):
        cats = defaultdict(float)
        sync()
        t0 = time.perf_counter()
        x = xb
        for layer in layers:
            x = timed(cats, _category(layer), layer.forward, x)
        _, g = timed(cats, "elementwise", m.loss_fn.value_and_grad, x, yb)
        for layer in reversed(layers):
            g = timed(cats, _category(layer), layer.backward, g)
        timed(cats, "fused", m.optimizer.step)
        cats["step"] = time.perf_counter() - t0
        rows.append(cats)
    ms = {k: 1e3 * float(np.median([r[k] for r in rows])) for k in ("step", "gemm", "fused", "elementwise")}
    n_calls = 2 * sum(_category(layer) == "fused" for layer in layers) + len(m.optimizer.param_groups)
    calls = 0.0 if m.backend == "cuda" else 1e3 * _call_overhead(m.backend) * n_calls
    ms["fused"] = max(ms["fused"] - calls, 0.0)
    ms["python_overhead"] = max(ms["step"] - ms["gemm"] - ms["fused"] - ms["elementwise"], 0.0)
    ms["fused_call_overhead"] = calls  # part of python_overhead
    return {k: round(v, 3) for k, v in ms.items()}


def _check_ours(m, xb, yb, case):
    """Same first-step loss as the NumPy reference backend (same seeds, same dropout masks),
    and the loss falls over a few steps on one batch."""
    ref, rx, ry = _ours(case, "numpy")
    l0 = float(m._step(xb, yb)[0])
    assert l0 == pytest.approx(float(ref._step(rx, ry)[0]), rel=1e-4)
    for _ in range(3):
        last = float(m._step(xb, yb)[0])
    assert last < l0


@pytest.mark.parametrize("case", SELECTED)
@pytest.mark.parametrize("threads", [None, 1], ids=["threads=default", "threads=1"])
@pytest.mark.parametrize("backend", backend_params() + peer_params())
def test_mlp_step(benchmark, backend, threads, case):
    if threads is not None and backend in ("cuda", "torch-cuda"):
        pytest.skip("host threads do not apply to a GPU step")
    pytest.importorskip("threadpoolctl")
    with _threads(threads):
        _run(benchmark, backend, case, threads)


def _run(benchmark, backend, case, threads):
    sizes, batch = CASES[case]
    benchmark.group = f"mlp-step {case} {'-'.join(map(str, sizes))} batch={batch}"
    rounds = dict(rounds=5, iterations=1, warmup_rounds=1) if case == "large" else None
    if backend.startswith("torch"):
        device = "cuda" if backend == "torch-cuda" else "cpu"
        step = _torch(case, device)
        first = float(step().detach())
        for _ in range(3):
            last = float(step().detach())
        assert last < first
        sync = torch.cuda.synchronize if device == "cuda" else None
    else:
        m, xb, yb = _ours(case, backend)
        _check_ours(m, xb, yb, case)
        step = lambda: m._step(xb, yb)  # noqa: E731  (data already on the device, as in fit)
        sync = cuda_sync if backend == "cuda" else None
    timed = (lambda: (step(), sync())) if sync is not None else step
    if rounds:
        benchmark.pedantic(timed, **rounds)
    else:
        benchmark(timed)
    benchmark.extra_info["params"] = int(sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:])))
    stats = getattr(benchmark, "stats", None)
    if stats is not None and not backend.startswith("torch"):
        parts = breakdown(m, xb, yb, reps=3 if case == "large" else 50, sync=sync)
        benchmark.extra_info.update({f"ms_{k}": v for k, v in parts.items()})
        print(f"\n{benchmark.group} {backend} threads={threads or 'default'}: step {1e3 * stats.stats.median:.3f} ms = {parts}")
