"""Shared benchmark helpers.

Every benchmark: JIT warm-up and a correctness check outside the timed region, one group per
(op, size), and `extra_info` with bytes moved, GB/s (median) and the fraction of the bandwidth
probe (`fusedops.apps.sysinfo.reference_bandwidth`: the best CPU copy probe counted with its
write-allocate traffic for host code, the CUDA copy probe for GPU code). PyTorch runs as a peer in the same groups when installed.

FUSEDOPS_BENCH_SIZES=10000,1000000 overrides a suite's size sweep (a quick run).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from fusedops import backends
from fusedops.apps.sysinfo import reference_bandwidth

try:
    import torch
except ImportError:  # an optional peer
    torch = None

TORCH_CUDA = torch is not None and torch.cuda.is_available()


def bench_sizes(default):
    env = os.environ.get("FUSEDOPS_BENCH_SIZES")
    return [int(float(s)) for s in env.split(",")] if env else list(default)


def backend_params(names=backends.BACKENDS):
    """Backends as params; unavailable ones skip with the reason."""
    params = []
    for name in names:
        reason = backends.backend_unavailable_reason(name)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        if name == "cuda" and backends.cuda_simulator():
            marks = [pytest.mark.skip(reason="the CUDA simulator is not timed")]
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def peer_params():
    """PyTorch peers: 'torch' (CPU) and 'torch-cuda', skipping when absent."""
    return [
        pytest.param("torch", marks=[pytest.mark.skipif(torch is None, reason="torch not installed")]),
        pytest.param("torch-cuda", marks=[pytest.mark.skipif(not TORCH_CUDA, reason="no torch CUDA")]),
    ]


def probe_gbps(on_gpu: bool) -> float:
    """The bandwidth figure GB/s are divided by (sysinfo.reference_bandwidth): the CUDA copy
    probe on the GPU, else the best CPU copy probe counted with its write-allocate traffic."""
    return reference_bandwidth("gpu" if on_gpu else "cpu")


def cuda_sync():
    from numba import cuda

    cuda.synchronize()


def run_benchmark(benchmark, fn, *, nbytes: int, on_gpu: bool = False, sync=None):
    """Time fn (already warmed up and checked by the caller) and record GB/s in extra_info.

    GPU timings call `sync` inside the timed function so they include the kernel's run.
    """
    timed = (lambda: (fn(), sync())) if sync is not None else fn
    benchmark(timed)
    benchmark.extra_info["bytes"] = int(nbytes)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.median > 0:
        gbps = nbytes / stats.stats.median / 1e9
        benchmark.extra_info["gbps"] = round(gbps, 3)
        benchmark.extra_info["fraction_of_probe"] = round(gbps / probe_gbps(on_gpu), 3)


def _mpi_rank() -> int:
    """This process's rank when an MPI launcher started it (MPICH, Open MPI, PMIx), else 0."""
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Under mpiexec (benchmarks/test_distributed.py) every rank times the same calls, so that
    the collectives match; only rank 0 reports and saves. Runs before pytest-benchmark reads
    its options."""
    if _mpi_rank() == 0:
        return
    for name, off in (("benchmark_autosave", False), ("benchmark_save", None),
                      ("benchmark_json", None), ("benchmark_histogram", None)):
        if hasattr(config.option, name):
            setattr(config.option, name, off)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    """Ranks other than 0 run silently: rank 0's report is the one to read."""
    if _mpi_rank() != 0:
        reporter = session.config.pluginmanager.getplugin("terminalreporter")
        if reporter is not None:
            session.config.pluginmanager.unregister(reporter)
