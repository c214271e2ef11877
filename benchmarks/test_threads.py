"""Threads: where a parallel kernel starts to pay (the serial thresholds), and Python threads
calling kernels at the same time.

    pytest benchmarks/test_threads.py --benchmark-only
    python benchmarks/test_threads.py thresholds [--rounds 10]    # the crossover table
    python benchmarks/test_threads.py idle [--python PATH]        # CPU idle threads burn

test_parallel_threshold times every CPU op forced serial and forced parallel
(fusedops._threads.forced) at sizes around the thresholds, one group per (op, backend, size).
The threshold of a family is the smallest size from which its parallel kernel beats the serial
one by a margin (MARGIN, on the minimum times) at every larger size: below it, waking the pool costs more than it
saves, and a pool that is woken also competes with the user's BLAS for the cores. The script
mode times single calls, serial and parallel interleaved round-robin in blocks at every size,
and prints the ratio of the fastest calls (and of the medians) and the crossover; the thresholds in kernels/cpu/*.py (PARALLEL_MIN) and csrc/threads.h
cite it.

`idle` measures what the pools cost between calls: in a fresh process per backend and Numba
threading layer, the CPU the process burns while its only busy thread sleeps right after a
parallel 1M-element Adam step (idle workers spinning), for windows of 1 to 100 ms (--python:
another installation, e.g. a checkout before a change).

test_python_threads runs the same four independent Adam steps from 4 Python threads at once and
one after the other from one thread: Numba kernels are nogil and cffi releases the GIL, so below
the threshold (serial kernels) the threaded run uses every core.
"""
from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import backend_params, bench_sizes

from fusedops import ops
from fusedops._threads import forced

SIZES = bench_sizes([4096, 16384, 32768, 65536, 131072, 262144, 1048576])
MARGIN = 1.1  # parallel must be this much faster to count as paying
CPU = ["numba", "c"]


def _optim(kind, n):
    rng = np.random.default_rng(0)
    w, g = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    state = [np.full(n, 0.01, np.float32) for _ in range(2)]
    if kind == "sgd":
        return lambda be: ops.sgd_step(w, g, lr=1e-3, backend=be)
    return lambda be: ops.adam_step(w, g, *state, step=3, lr=1e-3, backend=be)


def _adam8(n):
    from fusedops.ops.lowbit import BlockQuantized, adam_step

    rng = np.random.default_rng(0)
    w, g = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    m, v = (BlockQuantized.zeros(n, signed=s) for s in (True, False))
    return lambda be: adam_step(w, g, m, v, step=3, lr=1e-3, backend=be)


def _dropout(n):
    x = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    y = np.empty_like(x)
    return lambda be: ops.dropout_forward(x, 0.5, seed=1, out=y, backend=be)


def _batchnorm(n, features=256):
    rows = max(2, n // features)
    x = np.random.default_rng(0).standard_normal((rows, features), dtype=np.float32)
    dy = np.ones_like(x)
    rm, rv = np.zeros(features, np.float32), np.ones(features, np.float32)

    def step(be):
        _, mean, invstd = ops.batchnorm_forward(x, None, None, rm, rv, training=True, backend=be)
        ops.batchnorm_backward(dy, x, None, mean, invstd, backend=be)
    return step


OPS = {"sgd": lambda n: _optim("sgd", n), "adam": lambda n: _optim("adam", n),
       "adam8": _adam8, "dropout": _dropout, "batchnorm": _batchnorm}


def _calls(fn, be, mode, calls):
    """Seconds of each of `calls` single calls (a busy machine: the fastest calls are the ones
    no other process interrupted)."""
    out = np.empty(calls)
    with forced(mode):
        for i in range(calls):
            t0 = time.perf_counter()
            fn(be)
            out[i] = time.perf_counter() - t0
    return out


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("mode", ["serial", "parallel"])
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("backend", backend_params(CPU))
def test_parallel_threshold(benchmark, backend, op, mode, n):
    benchmark.group = f"threshold-{op}-{backend} n={n}"
    fn = OPS[op](n)
    with forced(mode):
        fn(backend)  # JIT warm-up (each mode compiles its own twin)
        benchmark(fn, backend)
    benchmark.extra_info["mode"] = mode


def _sweep(rounds: int):
    """{(op, backend): [(n, min ratio, median ratio, serial min us, parallel min us)]}, ratio =
    serial time / parallel time over single calls, serial and parallel interleaved round-robin
    in blocks at every size."""
    out = {}
    for op, make in OPS.items():
        for be in CPU:
            rows = []
            for n in SIZES:
                fn = make(n)
                calls = max(2, 400_000 // (n * (8 if op == "dropout" else 1)))
                _calls(fn, be, "serial", 1), _calls(fn, be, "parallel", 1)  # compile
                t = {"serial": [], "parallel": []}
                for _ in range(rounds):
                    for mode in t:
                        t[mode].append(_calls(fn, be, mode, calls))
                s, p = np.concatenate(t["serial"]), np.concatenate(t["parallel"])
                rows.append((n, s.min() / p.min(), float(np.median(s) / np.median(p)),
                             s.min() * 1e6, p.min() * 1e6))
            out[(op, be)] = rows
    return out


def crossover(rows):
    """The smallest size from which the parallel kernel pays (ratio of the minimum times >=
    MARGIN) at that size and every larger one; None when it never does. Minimum times: on a
    shared machine a sample that lost its core to other work says nothing about the kernels."""
    best = None
    for n, rmin, *_ in reversed(rows):
        if rmin >= MARGIN:
            best = n
        else:
            break
    return best


def main(argv):
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 10
    import fusedops

    print(f"threads {fusedops.get_num_threads()}, numba layer "
          f"{fusedops._threads.numba_layer()}, {rounds} rounds; ratio = serial/parallel time")
    for (op, be), rows in _sweep(rounds).items():
        print(f"{op:9s} {be:5s} crossover {crossover(rows)}")
        for n, rmin, rmed, s, p in rows:
            print(f"    n={n:8d} serial {s:9.1f} us  parallel {p:9.1f} us  "
                  f"ratio min {rmin:5.2f} median {rmed:5.2f}")


# --------------------------------------------------------------------------- Python threads

N_THREAD_SIZES = bench_sizes([16384, 1048576])


def _four_adams(n):
    rng = np.random.default_rng(1)
    return [(rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32),
             np.zeros(n, np.float32), np.zeros(n, np.float32)) for _ in range(4)]


def _steps(arrays, be, k):
    w, g, m, v = arrays
    for t in range(1, k + 1):
        ops.adam_step(w, g, m, v, step=t, lr=1e-3, backend=be)


@pytest.mark.parametrize("n", N_THREAD_SIZES)
@pytest.mark.parametrize("how", ["4-threads", "serial"])
@pytest.mark.parametrize("backend", backend_params(CPU))
def test_python_threads(benchmark, backend, how, n):
    benchmark.group = f"python-threads-{backend} n={n}"
    work = _four_adams(n)
    k = max(1, 200_000 // n)  # steps per array per round: calls long enough to overlap
    _steps(work[0], backend, 1)
    with ThreadPoolExecutor(4) as pool:
        if how == "4-threads":
            run = lambda: list(pool.map(lambda a: _steps(a, backend, k), work))  # noqa: E731
        else:
            run = lambda: [_steps(a, backend, k) for a in work]  # noqa: E731
        benchmark(run)
    benchmark.extra_info["steps_per_array"] = k


# --------------------------------------------------------------------------- idle threads

IDLE = """
import resource, sys, time
import numpy as np
from fusedops import ops
n = 1 << 20
w, g = np.ones(n, np.float32), np.ones(n, np.float32)
m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
out = []
for window in (0.001, 0.005, 0.02, 0.1):
    burned = []
    for _ in range(11):
        ops.adam_step(w, g, m, v, step=1, lr=1e-3, backend=sys.argv[1])
        c0 = cpu()
        time.sleep(window)
        burned.append(cpu() - c0)
    out.append(sorted(burned)[5] * 1e3)
print(" ".join(f"{x:.2f}" for x in out))
"""


def idle(python):
    import os
    import subprocess

    print("CPU ms burned while the main thread sleeps 1 / 5 / 20 / 100 ms after a parallel "
          "1M-element Adam step (median of 11)")
    for be, layer, env in [("numba", "omp", {}), ("numba", "tbb", {}), ("numba", "workqueue", {}),
                           ("numba", "omp", {"OMP_WAIT_POLICY": "passive"}), ("c", "", {}),
                           ("c", "", {"OMP_WAIT_POLICY": "passive"})]:
        env = dict(os.environ, **env, **({"NUMBA_THREADING_LAYER": layer} if layer else {}))
        res = subprocess.run([python, "-c", IDLE, be], env=env, capture_output=True, text=True,
                             timeout=300)
        extra = " OMP_WAIT_POLICY=passive" if "OMP_WAIT_POLICY" in env else ""
        print(f"    {be:5s} {layer:9s}{extra:25s} {res.stdout.strip() or res.stderr[-200:]}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["thresholds"]:
        main(sys.argv)
    elif sys.argv[1:2] == ["idle"]:
        idle(sys.argv[sys.argv.index("--python") + 1] if "--python" in sys.argv else sys.executable)
    else:
        print(__doc__)
