"""One training step (forward, backward, optimizer) of an MLP with batch norm, dropout and Adam,
per backend, with PyTorch CPU eager (and CUDA when present) as peers in the same groups.

Models: "small" 64-256-256-10 at batch 128 and "large" 1024-4096-4096-1024 at batch 512
(FUSEDOPS_BENCH_MLP=small picks one). For fusedops backends, `extra_info` holds a breakdown of
the step in ms: GEMMs (Linear layers, bias included), fused-op kernels (dropout, batch norm,
optimizer), NumPy/CuPy elementwise work (activations, loss), and Python overhead (the layer
loop plus the fixed validation/dispatch cost of each fused-op call). Run with `-s` to print it.

    pytest benchmarks/test_mlp.py --benchmark-only -s
"""
from __future__ import annotations

import os
import time
from collections import defaultdict

import numpy as np
import pytest
from conftest import backend_params, cuda_sync, peer_params, torch

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


def breakdown(m, xb, yb, total_s, reps=10, sync=None):
    """Split one step's time (ms) into GEMM, fused kernels, elementwise and Python overhead."""
    sync = sync or (lambda: None)
    layers = list(_leaves(m.net))
    cats, calls = defaultdict(float), 0

    def timed(cat, fn, *args):
        sync()
        t0 = time.perf_counter()
        r = fn(*args)
        sync()
        cats[cat] += time.perf_counter() - t0
        return r

    for _ in range(reps):
        x = xb
        for layer in layers:
            x = timed(_category(layer), layer.forward, x)
        _, g = timed("elementwise", m.loss_fn.value_and_grad, x, yb)
        for layer in reversed(layers):
            g = timed(_category(layer), layer.backward, g)
        timed("fused", m.optimizer.step)
    n_fused_calls = 2 * sum(_category(layer) == "fused" for layer in layers) + len(m.optimizer.param_groups)
    per_call = 0.0 if m.backend == "cuda" else _call_overhead(m.backend)
    ms = {k: 1e3 * v / reps for k, v in cats.items()}
    calls = 1e3 * per_call * n_fused_calls
    ms["fused"] = max(ms.get("fused", 0.0) - calls, 0.0)
    ms["python_overhead"] = max(1e3 * total_s - ms["gemm"] - ms["fused"] - ms["elementwise"], 0.0)
    ms["fused_call_overhead_included"] = calls
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
@pytest.mark.parametrize("backend", backend_params() + peer_params())
def test_mlp_step(benchmark, backend, case):
    sizes, batch = CASES[case]
    benchmark.group = f"mlp-step {case} {'-'.join(map(str, sizes))} batch={batch}"
    rounds = dict(rounds=5, iterations=1, warmup_rounds=1) if case == "large" else None
    if backend.startswith("torch"):
        device = "cuda" if backend == "torch-cuda" else "cpu"
        step = _torch(case, device)
        first = float(step())
        for _ in range(3):
            last = float(step())
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
        parts = breakdown(m, xb, yb, stats.stats.median, reps=3 if case == "large" else 20, sync=sync)
        benchmark.extra_info.update({f"ms_{k}": v for k, v in parts.items()})
        print(f"\n{benchmark.group} {backend}: step {1e3 * stats.stats.median:.3f} ms = {parts}")
