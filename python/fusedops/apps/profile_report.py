"""Output of `fusedops profile`: text tables, CSV, JSON and the plot; argument checks."""
from __future__ import annotations

import os
from importlib import metadata

import numpy as np

from .. import backends
from .profile_ops import (DEFAULT_SIZES, HOST, OPS, PEERS, available_backends, available_ops,
                          backend_unavailable_reason, torch_module)

__all__ = ["crossover", "load_warning", "format_size", "format_tables", "write_csv", "check_settings",
           "describe_machine", "CSV_FIELDS"]

CSV_FIELDS = ("op", "backend", "transfers", "size", "n", "shape", "dtype", "bytes", "median_s",
              "q1_s", "q3_s", "min_s", "max_s", "spread", "calls_per_sample", "gbps",
              "fraction_of_probe", "speedup_vs_numpy", "impl")


def crossover(result: dict, op: str) -> dict:
    """Smallest size from which the GPU beats the fastest CPU backend at every larger size,
    kernel only ("cuda") and with transfers ("cuda+transfer"); None where it never does or
    where there is no GPU result."""
    rows = [r for r in result["results"] if r["op"] == op]
    sizes = sorted({r["size"] for r in rows})
    best_cpu = {s: min((r["median_s"] for r in rows if r["size"] == s and r["backend"] in HOST),
                       default=None) for s in sizes}
    out = {}
    for target in ("cuda", "cuda+transfer"):
        t = {r["size"]: r["median_s"] for r in rows if r["backend"] == target}
        wins = [s for s in sizes if s in t and best_cpu[s] is not None]
        found = None
        for s in reversed(wins):
            if t[s] < best_cpu[s]:
                found = s
            else:
                break
        out[target] = found
    return out


def _load():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def describe_machine() -> dict:
    from .. import __version__
    from .sysinfo import cpu_model, last_level_cache_bytes

    gpu = None
    if backends.backend_unavailable_reason("cuda") is None:
        if backends.cuda_simulator():
            gpu = "Numba CUDA simulator"
        else:
            from numba import cuda

            name = cuda.get_current_device().name
            gpu = name.decode() if isinstance(name, bytes) else str(name)
    try:  # the version without importing torch (slow, and only a peer)
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = None
    return {"fusedops": __version__, "cpu": cpu_model(), "cores": os.cpu_count(),
            "threads": backends.get_num_threads(), "load_average_1min": _load(),
            "last_level_cache_bytes": last_level_cache_bytes(), "gpu": gpu,
            "numpy": np.__version__, "torch": torch_version}


def load_warning(machine: dict) -> str | None:
    """A note when other processes keep cores busy: a parallel region then waits for its
    descheduled threads (milliseconds per call), which no kernel can fix."""
    load, cores, threads = machine.get("load_average_1min"), machine["cores"], machine["threads"]
    if load is not None and cores and load + threads > cores + 1:
        return (f"note: load average {load:.1f} on {cores} cores before this run; the threaded "
                f"backends ({threads} threads) compete with other processes (try --threads "
                f"{max(1, int(cores - load))})")
    return None


def _fmt_time(s):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:7.2f} {unit}"
    return f"{s / 1e-9:7.1f} ns"


def format_size(n: int) -> str:
    """10000 -> 10k, 16000000 -> 16M, 16777216 -> 16.8M."""
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            v = n / scale
            return f"{v:.0f}{suffix}" if v == round(v) else f"{v:.3g}{suffix}"
    return str(n)


def format_tables(result: dict, ops=None) -> str:
    """One table per op: median time, spread, GB/s, % of the probe, speedup over NumPy."""
    out = []
    dtype = np.dtype(result["settings"]["dtype"])
    probe = result["probe_gbps"]
    probe_text = ", ".join(f"{k} {v:.1f} GB/s" for k, v in probe.items()) or "not measured"
    for op in ops or result["settings"]["ops"]:
        rows = [r for r in result["results"] if r["op"] == op]
        if not rows:
            continue
        spec = OPS[op]
        out.append(f"{op}: {spec.description}  ({dtype.name}, {spec.bytes_per_element(dtype):g} "
                   f"bytes/element; probe = copy traffic: {probe_text})")
        out.append(f"  {'size':>7} {'shape':>11}  {'backend':<14} {'median':>10} {'spread':>7} "
                   f"{'GB/s':>8} {'%probe':>7} {'vs numpy':>9}")
        for r in rows:
            frac = f"{100 * r['fraction_of_probe']:6.1f}%" if r["fraction_of_probe"] else f"{'-':>7}"
            sp = f"{r['speedup_vs_numpy']:8.2f}x" if r["speedup_vs_numpy"] else f"{'-':>9}"
            out.append(f"  {format_size(r['size']):>7} {r['shape']:>11}  {r['backend']:<14} "
                       f"{_fmt_time(r['median_s']):>10} {100 * r['spread']:6.1f}% "
                       f"{r['gbps']:8.2f} {frac} {sp}")
        cross = result.get("crossover", {}).get(op) or crossover(result, op)
        for target, size in cross.items():
            if any(r["backend"] == target for r in rows):
                where = f"from {format_size(size)} elements" if size else "not within the sizes run"
                out.append(f"  GPU ({target}) beats the fastest CPU backend {where}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def write_csv(result: dict, path) -> None:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in result["results"]:
            w.writerow({k: ("" if r.get(k) is None else r[k]) for k in CSV_FIELDS})


def check_settings(ops, sizes, backend_list, dtype, features, *, plot=None, threads=None,
                   outputs=()):
    """Validate the CLI's choices; returns the resolved settings dict, or a usage-error message."""
    for path in (*outputs, plot):
        if path and path != "-" and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            return f"cannot write {path}: no such folder"
    ops = ops or available_ops()
    for op in ops:
        if op not in OPS:
            return f"unknown op {op!r}; choose from {', '.join(OPS)}"
        if op not in available_ops():
            return f"op {op!r} is not in this build (fusedops.ops.{OPS[op].function} is missing)"
    for b in backend_list or ():
        try:
            reason = backend_unavailable_reason(b)
        except ValueError:
            return f"unknown backend {b!r}; choose from {', '.join(backends.BACKENDS + PEERS)}"
        if reason:
            return f"backend {b!r} is not available: {reason}"
    sizes = list(sizes or DEFAULT_SIZES)
    itemsize = np.dtype(dtype).itemsize
    from .sysinfo import _available_memory_bytes

    # the seeded originals and one copy per host backend live at once (timed side by side)
    copies = 1 + sum(1 for b in (backend_list or available_backends()) if b != "torch-cuda")
    need = max(copies * (OPS[op].arrays + 2) * max(sizes) * itemsize for op in ops)
    if need > 0.7 * _available_memory_bytes():
        return (f"size {max(sizes)} needs about {need / 2**30:.1f} GiB, more than this machine "
                f"has free ({_available_memory_bytes() / 2**30:.1f} GiB)")
    if plot:
        try:
            import matplotlib  # noqa: F401  (only whether it imports)
        except ImportError:
            return "--plot needs matplotlib (pip install matplotlib)"
    if threads:
        from .. import set_num_threads

        try:
            set_num_threads(threads)
        except ValueError as exc:
            return f"--threads: {exc}"
        if torch_module() is not None:
            torch_module().set_num_threads(threads)
    return {"ops": list(dict.fromkeys(ops)), "sizes": sorted(set(sizes)),
            "backends": list(dict.fromkeys(backend_list or available_backends()))}
