"""Thread counts while a model trains on the CPU.

A host training step interleaves two thread pools: the BLAS library's (OpenBLAS pthreads, for
the GEMMs) and OpenMP's / Numba's (for the fused kernels). Each spins for a while after its
call before sleeping, so with short calls — a small model — the idle pool keeps cores busy
that the other pool needs: on an otherwise idle 2-core machine a 64-256-256-10 step takes
~1.3 ms with one thread each and ~40 ms with the defaults. Small GEMMs and kernels gain
nothing from threads anyway, so `fit` runs small models with one thread in both pools unless
told otherwise.
"""
from __future__ import annotations

import contextlib

from .._threads import set_num_threads, thread_setting
from ..checks import check_int

__all__ = ["limit_threads", "auto_threads", "SMALL_MODEL_PARAMS"]

SMALL_MODEL_PARAMS = 1 << 20


def auto_threads(model, threads):
    """The thread count `fit` uses: `threads` when given; else 1 for a host model under
    SMALL_MODEL_PARAMS parameters; else None (leave the defaults)."""
    if threads is not None:
        return check_int("threads", threads, lo=1)
    if model.backend != "cuda" and model.n_params < SMALL_MODEL_PARAMS:
        return 1
    return None


@contextlib.contextmanager
def limit_threads(n):
    """Within the block, n fusedops CPU threads and n BLAS threads (through threadpoolctl when
    it is installed); n=None changes nothing. Restores the previous counts."""
    if n is None:
        yield
        return
    before = thread_setting()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: then only the fusedops kernels are limited
        blas = contextlib.nullcontext()
    else:
        blas = threadpool_limits(n, user_api="blas")
    import numba

    set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        with blas:
            yield
    finally:
        set_num_threads(before)
