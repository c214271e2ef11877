"""fusedops inside a user's own NumPy training loop: does it compose with NumPy's BLAS threads?

The loop of issue 10: an MLP (ReLU, softmax cross-entropy) whose matrix products run in NumPy
(OpenBLAS, its own thread pool, default threads), and `ops.adam_step` on every weight and bias
each step, batch 128. Three sizes: 64-256-10 (18.9K parameters: every step below the serial
thresholds), 784-1024-1024-10 (1.86M) and 2048-4096-2048-10 (16.8M). Each backend (numpy, the
reference; numba; c) runs in its own process with default threads, also with PyTorch imported
first (its own OpenMP runtime then lives in the process). Target: numba and c no slower than
1.1x the numpy loop at the small size, faster at the large ones.

    pytest benchmarks/test_composability.py --benchmark-only     # one group per (size, torch)
    python benchmarks/test_composability.py table [--rounds 7] [--python PATH]   # the README table

Each worker process keeps its model and answers "run k steps" on stdin with the seconds taken,
so a timing includes no process start or JIT. `table` asks the three backends in turn, round
after round (a burst of other load hits all alike), and prints the minimum and median ms per
step, the ratio to numpy's median, and the CPU the process burns in the 20 ms after a step
while its main thread sleeps (idle threads spinning: the BLAS pool's and the kernels').
FUSEDOPS_COMPOSE_SIZES=small,medium picks sizes; --python runs the workers with another
installation's interpreter (a checkout before a change, side by side with this one).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

SIZES = {"small": [64, 256, 10], "medium": [784, 1024, 1024, 10], "large": [2048, 4096, 2048, 10]}
SELECTED = [s for s in os.environ.get("FUSEDOPS_COMPOSE_SIZES", "small,medium,large").split(",")
            if s]
BACKENDS = ["numpy", "numba", "c"]
BATCH = 128


class Loop:
    """The user's loop: NumPy forward and backward, one ops.adam_step per parameter."""

    def __init__(self, sizes, backend):
        import numpy as np

        from fusedops import ops

        self.np, self.ops, self.backend = np, ops, backend
        rng = np.random.default_rng(0)
        self.W = [(rng.standard_normal((a, b), dtype=np.float32) / np.float32(np.sqrt(a)))
                  for a, b in zip(sizes, sizes[1:])]
        self.b = [np.zeros(b, np.float32) for b in sizes[1:]]
        self.params = [p for pair in zip(self.W, self.b) for p in pair]
        self.grads = [np.empty_like(p) for p in self.params]
        self.state = [(np.zeros_like(p), np.zeros_like(p)) for p in self.params]
        self.X = rng.standard_normal((BATCH, sizes[0]), dtype=np.float32)
        self.y = rng.integers(0, sizes[-1], BATCH)
        self.t = 0

    def step(self):
        np = self.np
        acts, h = [self.X], self.X
        for i, (W, b) in enumerate(zip(self.W, self.b)):
            h = h @ W + b
            if i < len(self.W) - 1:
                h = np.maximum(h, 0)
            acts.append(h)
        p = np.exp(h - h.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(BATCH), self.y] -= 1
        d = p / np.float32(BATCH)
        for i in range(len(self.W) - 1, -1, -1):
            np.matmul(acts[i].T, d, out=self.grads[2 * i])
            d.sum(axis=0, out=self.grads[2 * i + 1])
            if i:
                d = (d @ self.W[i].T) * (acts[i] > 0)
        self.t += 1
        for w, g, (m, v) in zip(self.params, self.grads, self.state):
            self.ops.adam_step(w, g, m, v, step=self.t, lr=1e-3, backend=self.backend)


def _cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def worker(backend, size, with_torch):
    """stdin: "k" -> stdout: seconds for k steps; "idle" -> CPU ms burned in 20 ms of sleep
    after a step (median of 5); "info" -> the process's thread facts as JSON."""
    if with_torch:
        import torch  # noqa: F401  (its OpenMP runtime and thread pools enter the process)
    loop = Loop(SIZES[size], backend)
    for _ in range(2):
        loop.step()  # JIT, page faults
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "info":
            import numba

            import fusedops

            threads = getattr(fusedops, "_threads", None)  # None in an older installation
            out = threads.threads_info() if threads is not None else {
                "numba_layer": numba.threading_layer() if backend == "numba" else None}
            print(json.dumps(out, default=str), flush=True)
        elif cmd == "idle":
            burned = []
            for _ in range(5):
                loop.step()
                c0 = _cpu_seconds()
                time.sleep(0.02)
                burned.append(_cpu_seconds() - c0)
            print(sorted(burned)[2] * 1e3, flush=True)
        else:
            t0 = time.perf_counter()
            for _ in range(int(cmd)):
                loop.step()
            print(time.perf_counter() - t0, flush=True)


class Worker:
    def __init__(self, backend, size, with_torch, python=sys.executable):
        self.proc = subprocess.Popen(
            [python, __file__, "worker", backend, size, "1" if with_torch else "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, cmd):
        self.proc.stdin.write(f"{cmd}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker died (exit {self.proc.wait()})")
        return line.strip()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def steps_per_call(size):
    return {"small": 200, "medium": 10, "large": 2}[size]


def table(rounds, python=sys.executable):
    import numpy as np

    print(f"batch {BATCH}, {rounds} rounds round-robin, ms per step; ratio = median / numpy's "
          "median; idle = CPU ms burned in 20 ms after a step")
    for size in SELECTED:
        for with_torch in (False, True):
            workers = {be: Worker(be, size, with_torch, python) for be in BACKENDS}
            k = steps_per_call(size)
            times = {be: [] for be in BACKENDS}
            try:
                for _ in range(rounds):
                    for be, w in workers.items():
                        times[be].append(float(w.ask(k)) / k * 1e3)
                idle = {be: float(w.ask("idle")) for be, w in workers.items()}
                info = json.loads(workers["numba"].ask("info"))
            finally:
                for w in workers.values():
                    w.close()
            base = np.median(times["numpy"])
            label = "-".join(map(str, SIZES[size])) + (" +torch" if with_torch else "")
            print(f"{label}  (numba layer {info.get('numba_layer')})")
            for be in BACKENDS:
                t = np.array(times[be])
                print(f"    {be:6s} min {t.min():9.3f}  median {np.median(t):9.3f}  "
                      f"ratio {np.median(t) / base:5.2f}  idle {idle[be]:6.2f}")


# --------------------------------------------------------------------------- pytest-benchmark

def _params():
    import pytest
    from conftest import backend_params

    return [pytest.param(s, id=s) for s in SELECTED], backend_params(BACKENDS)


if "pytest" in sys.modules:
    import pytest

    _SIZES, _BACKENDS = _params()

    @pytest.mark.parametrize("with_torch", [False, True], ids=["numpy-only", "torch-imported"])
    @pytest.mark.parametrize("backend", _BACKENDS)
    @pytest.mark.parametrize("size", _SIZES)
    def test_user_loop(benchmark, size, backend, with_torch):
        if with_torch:
            pytest.importorskip("torch")
        benchmark.group = f"compose-{size}-{'torch' if with_torch else 'numpy'}"
        w = Worker(backend, size, with_torch)
        k = steps_per_call(size)
        try:
            w.ask(1)
            benchmark.pedantic(lambda: w.ask(k), rounds=5, iterations=1)
            benchmark.extra_info["steps_per_round"] = k
            benchmark.extra_info["idle_cpu_ms_after_step"] = float(w.ask("idle"))
        finally:
            w.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        worker(sys.argv[2], sys.argv[3], sys.argv[4] == "1")
    elif sys.argv[1:2] == ["table"]:
        args = sys.argv
        table(int(args[args.index("--rounds") + 1]) if "--rounds" in args else 7,
              args[args.index("--python") + 1] if "--python" in args else sys.executable)
    else:
        print(__doc__)
