"""`fusedops info`: versions, machine, backends, and the measured bandwidth probe.

The probe (STREAM copy and triad) runs on every available backend at a size chosen from this
machine's last-level cache, so the arrays come from memory, not cache. Benchmarks and the
profiler divide their GB/s by these figures.
"""
from __future__ import annotations

import functools
import glob
import os
import platform
import statistics
import time
from importlib import metadata

import numpy as np

from .. import backends
from ..backends import available_backends, backend_unavailable_reason, get_num_threads

# bytes moved per element for each probe kernel, in units of the itemsize
STREAM_ARRAYS = {"copy": 2, "triad": 3}


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def last_level_cache_bytes() -> int:
    """Size of the largest CPU cache listed in sysfs (32 MiB if unknown)."""
    best = 0
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            best = max(best, int(digits) * mult)
    return best or 32 << 20


def _available_memory_bytes() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def probe_elements(itemsize: int = 4) -> int:
    """Elements per probe array: 8x the last-level cache (at least 64 MiB), capped so that
    the three triad arrays use at most a quarter of the free memory."""
    nbytes = max(8 * last_level_cache_bytes(), 64 << 20)
    nbytes = min(nbytes, _available_memory_bytes() // 12)
    return max(nbytes // itemsize, 1 << 16)


def _time_host(fn, repeat):
    fn()  # JIT compile, first-touch page faults
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _time_cuda(fn, repeat):
    from numba import cuda

    fn()
    cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, stop = cuda.event(), cuda.event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cuda.event_elapsed_time(start, stop) / 1e3)
    return times


def measure_bandwidth(backend: str, kernel: str = "copy", *, n: int | None = None,
                      dtype=np.float32, repeat: int = 5) -> dict:
    """Time one probe kernel; GB/s counts each array once (copy 2, triad 3 per element)."""
    from .. import ops

    if kernel not in STREAM_ARRAYS:
        raise ValueError(f"kernel must be 'copy' or 'triad'; got {kernel!r}")
    dtype = np.dtype(dtype)
    n = probe_elements(dtype.itemsize) if n is None else int(n)
    if backend == "cuda" and not backends.cuda_simulator():
        from numba import cuda

        a, b, c = (cuda.to_device(np.full(n, v, dtype)) for v in (1.0, 2.0, 0.5))
        timer = _time_cuda
    else:
        a, b, c = (np.full(n, v, dtype) for v in (1.0, 2.0, 0.5))
        timer = _time_host
    if kernel == "copy":
        times = timer(lambda: ops.stream_copy(b, a, backend=backend), repeat)
    else:
        times = timer(lambda: ops.stream_triad(a, b, c, scalar=3.0, backend=backend), repeat)
    nbytes = STREAM_ARRAYS[kernel] * n * dtype.itemsize
    med = statistics.median(times)
    return {"backend": backend, "kernel": kernel, "n": n, "dtype": dtype.name,
            "seconds_median": med, "gbps": nbytes / med / 1e9,
            "gbps_best": nbytes / min(times) / 1e9}


@functools.lru_cache(maxsize=None)
def probe(backend: str, kernel: str = "copy", dtype: str = "float32", repeat: int = 5) -> float:
    """Memoized probe GB/s (median, STREAM's byte count) for a backend at the default size."""
    return measure_bandwidth(backend, kernel, dtype=dtype, repeat=repeat)["gbps"]


# A CPU store to a line that is not in cache first reads the line (write-allocate), so
# STREAM's copy, counted as 2 arrays, really moves 3. In-place kernels (the optimizers) read
# every line they write and pay no such extra read, so against the 2-array figure they
# appeared to run at 1.5x "the memory limit". GPUs write whole sectors without reading them.
WRITE_ALLOCATE_FACTOR = {"cpu": 1.5, "gpu": 1.0}


@functools.lru_cache(maxsize=None)
def reference_bandwidth(side: str = "cpu") -> float:
    """The GB/s that benchmarks and `fusedops profile` divide by ("fraction of the probe"):
    the best copy probe on that side (cpu: numba or c; gpu: cuda), counted as memory traffic,
    i.e. with the write-allocate read on the CPU."""
    if side == "cpu":
        names = [b for b in ("numba", "c") if backend_unavailable_reason(b) is None] or ["numpy"]
    elif side == "gpu":
        names = ["cuda"]
    else:
        raise ValueError(f"side must be 'cpu' or 'gpu'; got {side!r}")
    return max(probe(b, "copy") for b in names) * WRITE_ALLOCATE_FACTOR[side]


def _cuda_device() -> dict | None:
    if backend_unavailable_reason("cuda") is not None:
        return None
    from numba import cuda

    if backends.cuda_simulator():
        return {"name": "Numba CUDA simulator", "simulator": True}
    dev = cuda.get_current_device()
    free, total = cuda.current_context().get_memory_info()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    return {"name": name, "memory_bytes": int(total), "compute_capability": list(dev.compute_capability),
            "multiprocessors": int(dev.MULTIPROCESSOR_COUNT), "simulator": False}


def info(*, probe_bandwidth: bool = True, repeat: int = 5) -> dict:
    """Everything `fusedops info` prints, as a dict."""
    avail = available_backends()
    out = {
        "versions": {name: _version(dist) for name, dist in (
            ("fusedops", "fusedops"), ("python", None), ("numpy", "numpy"), ("numba", "numba"),
            ("numba-cuda", "numba-cuda"), ("cffi", "cffi"), ("torch", "torch"))
            if dist is not None},
        "cpu": {"model": cpu_model(), "cores": os.cpu_count(), "threads": get_num_threads(),
                "last_level_cache_bytes": last_level_cache_bytes()},
        "backends": {b: backend_unavailable_reason(b) or "available" for b in backends.BACKENDS},
        "c": None,
        "cuda": _cuda_device(),
    }
    out["versions"]["python"] = platform.python_version()
    if "c" in avail:
        from .. import _c

        out["c"] = {"compiler": _c.ffi.string(_c.lib.fo_compiler()).decode(),
                    "flags": _c.ffi.string(_c.lib.fo_cflags()).decode(),
                    "threads": int(_c.lib.fo_get_num_threads()),
                    "simd": {"path": _c.simd_path(), "compiled": _c.simd_paths(),
                             "chosen_by": _simd_chooser(_c.simd_paths()),
                             "supported": [p for p in _c.simd_paths() if _c.simd_supported(p)],
                             "targets": {p: _c.simd_target(p) for p in _c.simd_paths()}}}
    if probe_bandwidth:
        n = probe_elements(4)
        results = {}
        for b in avail:
            if b == "cuda" and backends.cuda_simulator():
                continue  # the simulator's speed means nothing
            nb = n if b != "cuda" else _cuda_probe_elements()
            results[b] = {k: round(measure_bandwidth(b, k, n=nb, repeat=repeat)["gbps"], 2)
                          for k in STREAM_ARRAYS}
            results[b]["n"] = nb
        out["probe"] = {"dtype": "float32", "unit": "GB/s (median)", "results": results}
        cpu = [results[b]["copy"] for b in ("numba", "c") if b in results]
        if cpu:  # what benchmarks divide by (see reference_bandwidth)
            out["probe"]["reference_gbps_cpu"] = round(max(cpu) * WRITE_ALLOCATE_FACTOR["cpu"], 2)
    from .._threads import numba_layer, tbb_library

    out["cpu"]["numba_threading_layer"] = numba_layer()  # starts Numba's pool if need be
    out["cpu"]["tbb_wheel"] = tbb_library() is not None
    return out


def _simd_chooser(compiled) -> str:
    """Who picked the C backend's SIMD path: the user, the CPU check at load, or the build."""
    if os.environ.get("FUSEDOPS_SIMD"):
        return "FUSEDOPS_SIMD"
    return "cpu" if len(compiled) > 1 else "build"


def _cuda_probe_elements() -> int:
    from numba import cuda

    free, _ = cuda.current_context().get_memory_info()
    return int(min(1 << 28, free // 16))  # 1 GiB fp32 arrays, or what fits three times over


def format_info(d: dict) -> str:
    """Human-readable rendering of info()."""
    lines = ["fusedops " + str(d["versions"].get("fusedops")),
             "versions: " + ", ".join(f"{k} {v}" for k, v in d["versions"].items() if k != "fusedops"),
             f"cpu: {d['cpu']['model']}, {d['cpu']['cores']} cores, {d['cpu']['threads']} threads, "
             f"last-level cache {d['cpu']['last_level_cache_bytes'] >> 20} MiB, numba threading layer "
             f"{d['cpu'].get('numba_threading_layer')}"]
    if d["cpu"].get("numba_threading_layer") == "omp" and not d["cpu"].get("tbb_wheel"):
        lines[-1] += " (pip install 'fusedops[tbb]': idle threads that yield, fork-safe)"
    c = d["c"]
    lines.append(f"c: {c['compiler']}; flags {c['flags']}; {c['threads']} threads (its own pool)" if c
                 else f"c: {d['backends']['c']}")
    if c:
        simd = c["simd"]
        how = {"FUSEDOPS_SIMD": "set by FUSEDOPS_SIMD", "cpu": "chosen at run time",
               "build": "the only one compiled"}[simd["chosen_by"]]
        lines.append(f"c SIMD path: {simd['path']} ({how}; compiled: {', '.join(simd['compiled'])}; "
                     f"this CPU runs: {', '.join(simd['supported'])})")
    cu = d["cuda"]
    if cu is None:
        lines.append("cuda device: none")
    elif cu.get("simulator"):
        lines.append("cuda device: Numba CUDA simulator (correctness only)")
    else:
        lines.append(f"cuda device: {cu['name']}, {cu['memory_bytes'] / 2**30:.1f} GiB, "
                     f"compute capability {cu['compute_capability'][0]}.{cu['compute_capability'][1]}, "
                     f"{cu['multiprocessors']} SMs")
    lines.append("backends: " + ", ".join(f"{k} ({'yes' if v == 'available' else 'no'})"
                                          for k, v in d["backends"].items()))
    if "probe" in d:
        lines.append(f"bandwidth probe ({d['probe']['dtype']}, {d['probe']['unit']}):")
        for b, r in d["probe"]["results"].items():
            mib = r["n"] * 4 / 2**20
            lines.append(f"  {b:<6} copy {r['copy']:8.2f}   triad {r['triad']:8.2f}   ({mib:.0f} MiB per array)")
        if "reference_gbps_cpu" in d["probe"]:
            lines.append(f"  memory traffic of the best CPU copy, write-allocate included: "
                         f"{d['probe']['reference_gbps_cpu']:.2f} GB/s (benchmarks' 'fraction of probe' divides by this)")
    return "\n".join(lines)
