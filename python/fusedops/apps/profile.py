"""`fusedops profile`: time every fused op on every backend across sizes.

For each (op, size) the arrays are built once and copied for every backend; each backend's
call is warmed up outside the timed region (JIT compilation, first-touch page faults, CUDA
context), then `repeat` samples are taken round-robin across the backends; each sample runs
the op back to back for at least `min_sample_s` (tiny sizes take microseconds, below the
timer's useful resolution) and records the mean per call. We
report the median sample, its spread (interquartile range / median), GB/s from the bytes
DESIGN.md assigns each op, that figure as a fraction of the copy probe's memory traffic
(sysinfo.reference_bandwidth, as in the benchmarks), and
the speedup over the NumPy reference backend at the same size.

CUDA is timed twice: "cuda" on device arrays (kernel only, including launch overhead) and
"cuda+transfer" on host arrays, which the dispatcher copies to the device and back: the
crossover where the latter beats the best CPU backend is where the GPU pays off for a caller
whose data lives on the host. PyTorch ("torch", "torch-cuda") runs as a peer when installed.

The targets and op registry live in profile_ops, the tables, CSV and checks in profile_report;
this module times and writes the files, and re-exports both, so `fusedops.apps.profile` is the
one name callers need.
"""
from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np

from .. import backends as _be
from .plots import throughput_plot
from .profile_ops import (DEFAULT_SIZES, HOST, OPS, PEERS, available_backends, available_ops,
                          backend_unavailable_reason, host_arrays, torch_module, torch_peer)
from .profile_report import (CSV_FIELDS, check_settings, crossover, describe_machine, format_size,
                             format_tables, load_warning, write_csv)

__all__ = ["OPS", "PEERS", "HOST", "DEFAULT_SIZES", "available_ops", "available_backends",
           "backend_unavailable_reason", "run_profile", "time_call", "time_interleaved", "crossover",
           "format_tables", "format_size", "write_csv", "emit", "check_settings", "load_warning",
           "describe_machine", "CSV_FIELDS"]


# --------------------------------------------------------------------------- timing

def _sync_for(target):
    if target in ("cuda", "cuda+transfer"):
        from numba import cuda

        return cuda.synchronize
    if target == "torch-cuda":
        return torch_module().cuda.synchronize
    return lambda: None


def _run_for(fn, sync, min_s, max_calls):
    """Call fn back to back until min_s has passed (at least once); (calls, seconds)."""
    calls = 0
    t0 = time.perf_counter()
    while True:
        fn()
        sync()  # GPU: each call is timed to completion, as in the benchmarks
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_s or calls >= max_calls:
            return calls, elapsed


def _stats(samples, counts) -> dict:
    q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else samples * 3
    med = statistics.median(samples)
    return {"median_s": med, "q1_s": q1, "q3_s": q3, "min_s": min(samples), "max_s": max(samples),
            "spread": (q3 - q1) / med if med > 0 else 0.0, "calls_per_sample": min(counts),
            "samples_s": list(samples)}


def time_interleaved(fns: dict, *, repeat: int, min_sample_s: float = 0.02,
                     max_calls: int = 10_000, errors: dict | None = None) -> dict:
    """Time several callables side by side: {name: (fn, sync)} -> {name: stats}.

    Each is warmed up once (JIT, page faults, allocator, idle threads), then the `repeat`
    samples are taken round-robin, one sample of each in turn, so that a burst of load from
    another process hits every contender alike rather than all samples of one. A sample calls
    fn back to back for at least min_sample_s: a single isolated call of a microsecond kernel
    is dominated by waking the thread pool, which a training loop calling it repeatedly does
    not pay. A callable that raises is dropped and its exception put in `errors`."""
    live = dict(fns)
    samples = {k: [] for k in live}
    counts = {k: [] for k in live}
    for rnd in range(repeat + 1):  # round 0 is the warm-up
        for name, (fn, sync) in list(live.items()):
            try:
                calls, elapsed = _run_for(fn, sync, min_sample_s, max_calls)
            except Exception as exc:  # report it, keep timing the others
                if errors is None:
                    raise
                errors[name] = exc
                del live[name]
                continue
            if rnd:
                samples[name].append(elapsed / calls)
                counts[name].append(calls)
    return {k: _stats(samples[k], counts[k]) for k in live}


def time_call(fn, sync, *, repeat: int, min_sample_s: float = 0.02, max_calls: int = 10_000) -> dict:
    """Warm up fn, then `repeat` samples of the mean time per call (seconds)."""
    return time_interleaved({"fn": (fn, sync)}, repeat=repeat, min_sample_s=min_sample_s,
                            max_calls=max_calls)["fn"]


def _callable(spec, target, arrays, params):
    """(fn, impl) for one target on fresh copies of the host arrays."""
    if target in PEERS:
        device = "cuda" if target == "torch-cuda" else "cpu"
        return torch_peer(spec, torch_module(), device, arrays, params)
    if target == "cuda":
        from numba import cuda

        arrays = {k: cuda.to_device(v) for k, v in arrays.items()}
    backend = "cuda" if target == "cuda+transfer" else target
    return (lambda: spec.call(arrays, backend, params)), f"fusedops.ops.{spec.function}"


def _targets(backend_list):
    out = []
    for b in backend_list:
        out.extend(["cuda", "cuda+transfer"] if b == "cuda" else [b])
    return out


def _probe_figures(probe, targets) -> dict:
    """GB/s that each side's results are divided by: sysinfo.reference_bandwidth, the best
    copy probe counted as memory traffic (the CPU's write-allocate read included), as the
    benchmarks do."""
    if isinstance(probe, dict):
        return dict(probe)
    if not probe:
        return {}
    from .sysinfo import reference_bandwidth

    out = {"cpu": reference_bandwidth("cpu")}
    if any(t.startswith("cuda") or t == "torch-cuda" for t in targets) and not _be.cuda_simulator():
        out["gpu"] = reference_bandwidth("gpu")
    return out


def _progress(total, enabled):
    if not enabled or not sys.stderr.isatty():  # no bar in logs and CI
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainProgress(total)
    return tqdm(total=total, file=sys.stderr, unit="run", leave=False, dynamic_ncols=True)


class _PlainProgress:
    """tqdm's interface, reduced to one updating line on stderr (tqdm is optional)."""

    def __init__(self, total):
        self.total, self.n = total, 0

    def set_description(self, text):
        sys.stderr.write(f"\r[{self.n + 1}/{self.total}] {text:<48}")
        sys.stderr.flush()

    def update(self, k=1):
        self.n += k

    def clear(self):
        sys.stderr.write("\r" + " " * 64 + "\r")

    def close(self):
        sys.stderr.write("\r" + " " * 64 + "\r")
        sys.stderr.flush()


def run_profile(ops=None, sizes=DEFAULT_SIZES, backends=None, *, dtype="float32", repeat: int = 5,
                features: int = 256, probe=True, progress: bool = True, on_op_done=None,
                min_sample_s: float = 0.02) -> dict:
    """Profile `ops` (names in OPS) at `sizes` (elements) on `backends` (fusedops backends and
    peers). `probe`: True measures the copy probe, False skips it, or a dict {"cpu": GB/s,
    "gpu": GB/s} supplies it. `on_op_done(result, op)` is called after each op (to print its
    table while the rest runs). Returns a JSON-ready dict (see CSV_FIELDS for a result row)."""
    ops = list(ops or available_ops())
    backend_list = list(backends or available_backends())
    dtype = np.dtype(dtype)
    targets = _targets(backend_list)
    result = {"settings": {"ops": ops, "sizes": [int(s) for s in sizes], "backends": backend_list,
                           "dtype": dtype.name, "repeat": repeat, "features": features},
              "machine": describe_machine(), "probe_gbps": _probe_figures(probe, targets),
              "results": [], "errors": []}
    bar = _progress(len(ops) * len(sizes), progress)
    try:
        for op in ops:
            for size in sizes:
                if bar is not None:
                    bar.set_description(f"{op} n={size:g}")
                _profile_size(OPS[op], op, int(size), targets, dtype, features, repeat,
                              min_sample_s, result)
                if bar is not None:
                    bar.update(1)
            _add_ratios(result, op)
            if on_op_done is not None:
                if bar is not None:
                    bar.clear()
                on_op_done(result, op)
    finally:
        if bar is not None:
            bar.close()
    result["crossover"] = {op: crossover(result, op) for op in ops}
    return result


def _profile_size(spec, op, size, targets, dtype, features, repeat, min_sample_s, result):
    """Every target on its own copy of the same seeded arrays, timed side by side."""
    base, params = host_arrays(spec, size, dtype, features)
    fns, impls, errors = {}, {}, {}
    for target in targets:
        try:
            fn, impls[target] = _callable(spec, target, {k: v.copy() for k, v in base.items()},
                                          params)
            fns[target] = (fn, _sync_for(target))
        except Exception as exc:  # e.g. a peer without this op
            errors[target] = exc
    times = time_interleaved(fns, repeat=repeat, min_sample_s=min_sample_s, errors=errors)
    for target, exc in errors.items():
        result["errors"].append({"op": op, "size": size, "backend": target,
                                 "peer": target in PEERS, "error": f"{type(exc).__name__}: {exc}"})
    n = int(params["n"])
    nbytes = spec.bytes_per_element(dtype) * n
    for target in targets:
        if target not in times:
            continue
        t = times[target]
        gbps = nbytes / t["median_s"] / 1e9
        side = "gpu" if target in ("cuda", "cuda+transfer", "torch-cuda") else "cpu"
        probe = result["probe_gbps"].get(side)
        result["results"].append({
            "op": op, "backend": target, "transfers": target == "cuda+transfer", "size": size,
            "n": n, "shape": "x".join(map(str, params["shape"])), "dtype": dtype.name,
            "bytes": int(round(nbytes)), **t, "gbps": gbps,
            "fraction_of_probe": gbps / probe if probe else None, "speedup_vs_numpy": None,
            "impl": impls[target]})


def _add_ratios(result, op):
    rows = [r for r in result["results"] if r["op"] == op]
    ref = {r["size"]: r["median_s"] for r in rows if r["backend"] == "numpy"}
    for r in rows:
        if r["size"] in ref:
            r["speedup_vs_numpy"] = ref[r["size"]] / r["median_s"]


def emit(result: dict, *, json_path=None, csv_path=None, plot_path=None) -> int:
    """Write the requested files; exit code 1 when a fusedops backend failed (peers may)."""
    if json_path == "-":
        print(json.dumps(result, indent=1))
    elif json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=1)
    if csv_path:
        write_csv(result, csv_path)
    if plot_path:
        throughput_plot(result, plot_path)
    failed = [e for e in result["errors"] if not e["peer"]]
    for e in result["errors"]:
        print(f"{'error' if not e['peer'] else 'peer skipped'}: {e['backend']} {e['op']} "
              f"n={e['size']}: {e['error']}", file=sys.stderr)
    return 1 if failed else 0
