"""Adam with fewer bytes per parameter: 8-bit / bfloat16 state and bfloat16 parameters with float32
master weights, against the float32 step (fusedops and torch.optim.Adam(fused=True)).

    pytest benchmarks/test_lowbit.py --benchmark-only
    FUSEDOPS_BENCH_SIZES=16000000 pytest benchmarks/test_lowbit.py --benchmark-only -s -k round_robin

Bytes per parameter of one step (each array read once, written once): float32 Adam 28; 8-bit
state with float32 params 16 (+ 16/256 for the scales); bfloat16 params and grads, 8-bit state
and a float32 master copy 14; bfloat16 params and state, no master 10. Each contender's first
step is checked bit for bit against the NumPy reference on a prefix of whole blocks. The
round-robin test times every contender in turn, REPEAT times, and reports min and median per
contender and the ratio to torch's fused Adam in its extra_info (and on stdout with -s).
"""
import time

import numpy as np
import pytest
from conftest import bench_sizes, run_benchmark, torch

from fusedops import ops
from fusedops.ops import lowbit as L

ml_dtypes = pytest.importorskip("ml_dtypes")
SIZES = bench_sizes([1_000_000, 16_000_000])
CHECK = 4096  # 16 whole blocks: the prefix the reference recomputes
REPEAT = 15
HYPER = dict(lr=1e-3, weight_decay=0.01, decoupled=True)
# name: (param dtype, state dtype, master, stochastic rounding, bytes per parameter)
FORMATS = {
    "f32-params+int8-state": ("float32", "int8", False, False, 16 + 16 / 256),
    "bf16-params+int8-state+f32-master": ("bfloat16", "int8", True, False, 14 + 16 / 256),
    "bf16-params+bf16-state+sr": ("bfloat16", "bfloat16", False, True, 10),
}


def _contender(fmt, n, backend):
    """A step function over fresh arrays, its state arrays, and the arrays to check."""
    pdt, sdt, master, sr, _ = FORMATS[fmt]
    rng = np.random.default_rng(0)
    w32 = rng.standard_normal(n, dtype=np.float32)
    dt = np.float32 if pdt == "float32" else ml_dtypes.bfloat16
    p, g = w32.astype(dt), rng.standard_normal(n, dtype=np.float32).astype(dt)
    m32 = w32.copy() if master else None
    if sdt == "int8":
        m, v = L.BlockQuantized.zeros(n, signed=True), L.BlockQuantized.zeros(n, signed=False)
    else:
        m, v = np.zeros(n, ml_dtypes.bfloat16), np.zeros(n, ml_dtypes.bfloat16)
    steps = iter(range(1, 1 << 30))

    def step():
        L.adam_step(p, g, m, v, master=m32, step=next(steps), stochastic_rounding=sr, **HYPER,
                    backend=backend)
    return step, (p, g, m, v, m32)


def _state_bytes(m, v):
    return sum(s.nbytes for s in (m, v))


def _check_prefix(fmt, arrays_before, arrays_after):
    """The first step on the first CHECK elements equals the reference's, bit for bit."""
    pdt, sdt, master, sr, _ = FORMATS[fmt]
    p0, g, m32 = arrays_before
    p, _, m, v, _ = arrays_after
    k = CHECK
    if sdt == "int8":
        mr, vr = L.BlockQuantized.zeros(k, signed=True), L.BlockQuantized.zeros(k, signed=False)
    else:
        mr, vr = np.zeros(k, ml_dtypes.bfloat16), np.zeros(k, ml_dtypes.bfloat16)
    pr = p0[:k].copy()
    L.adam_step(pr, g[:k], mr, vr, master=None if m32 is None else m32[:k].copy(), step=1,
                stochastic_rounding=sr, **HYPER, backend="numpy")
    np.testing.assert_array_equal(p[:k].view(np.uint8), pr.view(np.uint8))


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("backend", ["numba", "c"])
def test_adam_lowbit(benchmark, backend, fmt, n):
    benchmark.group = f"optim-adam-lowbit n={n}"
    step, arrays = _contender(fmt, n, backend)
    before = (arrays[0][:CHECK].copy(), arrays[1], None if arrays[4] is None else arrays[4].copy())
    step()  # JIT warm-up, and the step checked
    _check_prefix(fmt, before, arrays)
    run_benchmark(benchmark, step, nbytes=FORMATS[fmt][4] * n)
    benchmark.extra_info["state_bytes_per_param"] = round(_state_bytes(*arrays[2:4]) / n, 4)


def _float32_steps(n):
    rng = np.random.default_rng(0)
    w, g = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
    out = {"numba-f32": lambda: ops.adam_step(w, g, m, v, step=10, **HYPER, backend="numba")}
    if torch is not None:
        tp = torch.nn.Parameter(torch.from_numpy(w.copy()))
        tp.grad = torch.from_numpy(g.copy())
        out["torch-fused-f32"] = torch.optim.AdamW([tp], lr=1e-3, weight_decay=0.01,
                                                   fused=True).step
    return out


@pytest.mark.parametrize("n", SIZES)
def test_adam_lowbit_round_robin(benchmark, n):
    """Every contender in turn, REPEAT rounds: min / median ms and the ratio to torch fused."""
    benchmark.group = f"optim-adam-lowbit round robin n={n}"
    steps = _float32_steps(n)
    for fmt in FORMATS:
        for be in ("numba", "c"):
            steps[f"{be}-{fmt}"] = _contender(fmt, n, be)[0]
    for f in steps.values():
        f()  # warm-up
    times = {k: [] for k in steps}

    def rounds():
        for _ in range(REPEAT):
            for k, f in steps.items():
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)

    benchmark.pedantic(rounds, rounds=1, iterations=1)
    ref = np.median(times.get("torch-fused-f32", times["numba-f32"]))
    print(f"\nAdam step, n={n}, {REPEAT} round-robin rounds (ms; x = torch fused median / median)")
    for k, ts in times.items():
        info = {"min_ms": round(1e3 * min(ts), 3), "median_ms": round(1e3 * np.median(ts), 3),
                "speedup_vs_torch_fused": round(ref / np.median(ts), 3)}
        benchmark.extra_info[k] = info
        print(f"  {k:<40} min {info['min_ms']:8.2f}  median {info['median_ms']:8.2f}  "
              f"x {info['speedup_vs_torch_fused']:.2f}")
