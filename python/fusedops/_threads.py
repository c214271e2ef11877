"""How fusedops' CPU threads live inside the user's process (README "Using fusedops inside your
program").

- Small calls wake no pool: each kernel runs serially below its family's size threshold
  (Numba: kernels/cpu/jit.py `run` and the serial twins; C: csrc/threads.h).
- The thread count is process-wide: `set_num_threads(n)` applies to calls from every Python
  thread (Numba's mask and OpenMP's ICV are per calling thread; the Numba launcher sets the
  calling thread's mask for the call and puts the caller's own back; the C pool reads one
  process-wide value). It changes nothing for the user's own Numba or OpenMP code.
- The C kernels have their own pool (csrc/pool.c): its idle workers sleep after ~0.1 ms, and a
  forked child starts fresh workers. Numba's pool is Numba's threading layer, shared with the
  user's own Numba code: with the `tbb` wheel installed (`pip install fusedops[tbb]`) fusedops
  makes its libtbb loadable, so Numba's default order (tbb, omp, workqueue) finds it; TBB's
  workers yield within ~0.2 ms and TBB is fork-safe. NUMBA_THREADING_LAYER, when set, wins.
- fork(): a child of a process that ran Numba's GNU OpenMP layer cannot use it (Numba
  terminates such a child; a grandchild would hang in libgomp), so fusedops' Numba kernels run
  their serial twins there. TBB and workqueue children, and every C child, run in parallel.
- A threading layer that is not thread-safe (workqueue) runs one parallel kernel at a time; a
  call from another Python thread meanwhile runs its serial twin.
No environment variable is set and no other library's thread setting is touched.
"""
from __future__ import annotations

import contextlib
import os
import threading

from .kernels.cpu.jit import POLICY

__all__ = ["set_num_threads", "get_num_threads", "forced", "numba_layer", "threads_info"]

_SETUP_LOCK = threading.Lock()
_FORK_SAFE = {"tbb": True, "workqueue": True}  # omp: by vendor (GNU: no; Intel: yes)


def _c_lib():
    """The C extension's lib, None when it is not built (backends says why)."""
    try:
        from ._fusedops_c import lib
    except ImportError:
        return None
    return lib


def tbb_library() -> str | None:
    """Path of the tbb wheel's libtbb.so.12 (or its platform's name), None when not installed."""
    from importlib import metadata

    try:
        files = metadata.files("tbb") or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name in ("libtbb.so.12", "libtbb.12.dylib", "tbb12.dll"):
            path = f.locate()
            if os.path.exists(path):
                return str(path)
    return None


def _layer_chosen() -> bool:
    from numba.np.ufunc import parallel

    return parallel._is_initialized


def _make_tbb_loadable():
    """Numba's tbbpool extension needs libtbb.so.12 on the loader path, and the tbb wheel puts
    it in <prefix>/lib, which is not (numba/numba#7148). Loaded here by its path (RTLD_LOCAL:
    its symbols stay out of the global namespace), Numba's dlopen of tbbpool finds it by
    soname. Only before Numba has chosen a layer, and only when the user has not named one."""
    from numba.core import config

    if _layer_chosen() or config.THREADING_LAYER not in ("default", "tbb", "safe", "threadsafe",
                                                         "forksafe"):
        return
    path = tbb_library()
    if path is not None:
        import ctypes

        try:
            ctypes.CDLL(path)
        except OSError:  # a broken install: Numba falls back to its next layer
            pass


def numba_layer() -> str:
    """The threading layer Numba runs parallel kernels on in this process (starts it)."""
    import numba

    _first_parallel()
    return numba.threading_layer()


def _first_parallel():
    """Once, before fusedops' first parallel Numba kernel (or thread query): the tbb loader fix,
    then Numba's pool, then what its layer needs from the launcher."""
    if POLICY.first_parallel is None:
        return
    with _SETUP_LOCK:
        if POLICY.first_parallel is None:
            return
        _make_tbb_loadable()
        from numba.np.ufunc import parallel

        parallel._launch_threads()
        if parallel._threading_layer == "workqueue":
            POLICY.exclusive = threading.Lock()
        POLICY.first_parallel = None


POLICY.first_parallel = _first_parallel


def _fork_safe_layer() -> bool:
    from numba.np.ufunc import parallel

    layer = parallel._threading_layer
    if layer == "omp":
        from numba.np.ufunc import omppool

        return getattr(omppool, "openmp_vendor", "GNU") != "GNU"
    return _FORK_SAFE.get(layer, False)


def _after_fork_in_child():
    import sys

    parallel = sys.modules.get("numba.np.ufunc.parallel")
    if parallel is not None and parallel._is_initialized and not _fork_safe_layer():
        POLICY.serial_only = True
    if POLICY.exclusive is not None:  # another thread may have held it at the fork
        POLICY.exclusive = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _limit() -> int:
    from numba.core import config

    return config.NUMBA_NUM_THREADS


def set_num_threads(n) -> None:
    """Threads of both CPU backends, for calls from every Python thread of this process;
    n=None returns to the defaults (Numba's count of the calling thread; OMP_NUM_THREADS or
    the usable CPUs for C)."""
    import numpy as np

    if n is not None:
        limit = _limit()
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= limit:
            raise ValueError(f"n must be an integer in [1, {limit}] or None; got {n!r}")
        n = int(n)
    POLICY.threads = n
    lib = _c_lib()
    if lib is not None:
        lib.fo_set_num_threads(0 if n is None else n)  # 0: its default again


def get_num_threads() -> int:
    """The threads a parallel kernel called from this thread uses."""
    if POLICY.threads is not None:
        return POLICY.threads
    import numba

    _first_parallel()
    return numba.get_num_threads()


def thread_setting():
    """The raw setting (None: the defaults), for code that restores it."""
    return POLICY.threads


@contextlib.contextmanager
def forced(mode: str):
    """Within the block every CPU kernel runs "serial" or "parallel" whatever its size (tests,
    and the threshold benchmark); the thresholds apply again afterwards. Not thread-safe."""
    if mode not in ("serial", "parallel"):
        raise ValueError(f"mode must be 'serial' or 'parallel'; got {mode!r}")
    lib = _c_lib()
    before = POLICY.force
    POLICY.force = mode
    if lib is not None:
        lib.fo_set_parallel_mode(1 if mode == "serial" else 2)
    try:
        yield
    finally:
        POLICY.force = before
        if lib is not None:
            lib.fo_set_parallel_mode({None: 0, "serial": 1, "parallel": 2}[before])


def threads_info() -> dict:
    """What `fusedops info` reports about threads."""
    from .kernels.cpu import batchnorm, dropout, lowbit, optim

    out = {"threads": get_num_threads(), "numba_layer": numba_layer(),
           "tbb_wheel": tbb_library() is not None, "serial_only": POLICY.serial_only,
           "numba_parallel_min": {"optim": optim.PARALLEL_MIN, "dropout": dropout.PARALLEL_MIN,
                                  "batchnorm": batchnorm.PARALLEL_MIN,
                                  "lowbit": lowbit.PARALLEL_MIN}}
    lib = _c_lib()
    if lib is not None:
        out["c_threads"] = int(lib.fo_get_num_threads())
        out["c_pool_workers"] = int(lib.fo_pool_workers())
    return out
