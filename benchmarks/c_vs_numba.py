"""C against Numba on every optimizer variant, side by side in one process (a script, not a
pytest file: benchmarks/test_optim.py has the pytest-benchmark groups).

    python benchmarks/c_vs_numba.py [N] [--rounds 21] [--threads K] [--wall]

Each variant gets its own arrays per backend (fp32, N elements, default 16M), one warm-up call
each, then the two backends are called round-robin (numba, c, numba, ...) `rounds` times; the
table gives min / median ms per call and C / Numba of both. The default clock is the process's
CPU time, steadier than wall time on a shared machine, and meaningful with --threads 1 (with
more threads it sums the threads' time); --wall times wall-clock.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from fusedops import backends, ops

VARIANTS = {  # name: (number of state arrays, call(w, g, state, backend))
    "sgd": (0, lambda w, g, s, be: ops.sgd_step(w, g, lr=1e-3, backend=be)),
    "momentum": (1, lambda w, g, s, be: ops.sgd_step(w, g, s[0], lr=1e-3, momentum=0.9, backend=be)),
    "nesterov": (1, lambda w, g, s, be: ops.sgd_step(w, g, s[0], lr=1e-3, momentum=0.9,
                                                     nesterov=True, backend=be)),
    "adagrad": (1, lambda w, g, s, be: ops.adagrad_step(w, g, s[0], lr=1e-3, backend=be)),
    "rmsprop": (1, lambda w, g, s, be: ops.rmsprop_step(w, g, s[0], lr=1e-3, backend=be)),
    "rmsprop centered+momentum": (3, lambda w, g, s, be: ops.rmsprop_step(
        w, g, s[0], s[1], s[2], lr=1e-3, momentum=0.9, centered=True, backend=be)),
    "adam": (2, lambda w, g, s, be: ops.adam_step(w, g, s[0], s[1], step=5, lr=1e-3, backend=be)),
    "adamw": (2, lambda w, g, s, be: ops.adam_step(w, g, s[0], s[1], step=5, lr=1e-3,
                                                   weight_decay=0.01, decoupled=True, backend=be)),
    "amsgrad": (3, lambda w, g, s, be: ops.adam_step(w, g, s[0], s[1], s[2], step=5, lr=1e-3,
                                                     amsgrad=True, backend=be)),
}
BACKENDS = ("numba", "c")


def _arrays(n, k):
    rng = np.random.default_rng(0)
    w, g = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    return w, g, [np.full(n, 0.01, np.float32) for _ in range(k)]


def measure(n, rounds, clock):
    """{variant: {backend: [ms per call]}}, the backends interleaved."""
    out = {}
    for name, (k, call) in VARIANTS.items():
        arrays = {be: _arrays(n, k) for be in BACKENDS}
        for be in BACKENDS:
            call(*arrays[be], be)  # compile / load, first touch
        times = {be: [] for be in BACKENDS}
        for _ in range(rounds):
            for be in BACKENDS:
                t0 = clock()
                call(*arrays[be], be)
                times[be].append((clock() - t0) * 1e3)
        out[name] = times
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", nargs="?", type=float, default=16e6)
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--wall", action="store_true", help="wall-clock instead of CPU time")
    args = ap.parse_args(argv)
    if args.threads is not None:
        backends.set_num_threads(args.threads)
    clock = time.perf_counter if args.wall else time.process_time
    n = int(args.n)
    print(f"fp32, n={n:,}, {backends.get_num_threads()} thread(s), {args.rounds} rounds, "
          f"{'wall' if args.wall else 'CPU'} time, ms per call (min / median)")
    print("| optimizer | Numba | C | C / Numba (min, median) |\n| --- | ---: | ---: | ---: |")
    for name, t in measure(n, args.rounds, clock).items():
        lo = {be: min(v) for be, v in t.items()}
        med = {be: statistics.median(v) for be, v in t.items()}
        print(f"| {name} | {lo['numba']:.2f} / {med['numba']:.2f} | {lo['c']:.2f} / {med['c']:.2f} "
              f"| {lo['c'] / lo['numba']:.2f}, {med['c'] / med['numba']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
