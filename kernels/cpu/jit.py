"""How the CPU kernels are compiled and run.

Compiled: njit, nogil (Python threads run kernels at the same time), cached on disk under a key
that cannot go stale. Numba's cache (numba/core/caching.py) finds an entry by the kernel's own
source file (the index's stamp, a hash of that file), its bytecode and closure, the signature and
the CPU. A body from kernels/common/ or a helper from another cpu/ module is compiled into the
kernel but is in none of these: edit it, and the next process would load the old machine code.
So every kernel here gets a cache whose key also holds
- a digest of every source file a CPU kernel can reach: kernels/common/*.py and
  kernels/cpu/*.py (kernels import nothing else from fusedops; tests/test_numba_cache.py checks
  that, and that an edited body is recompiled), and
- the compile options, so that the serial twin of a parallel kernel (the same function built
  with parallel=False) never shares an entry with it.
The digest is taken at import, over the files the process is about to compile. No kernel uses
fastmath: flags that let LLVM choose (contract, reassoc, ...) let the in-process compile and
the cached object code choose differently, and the bits then depend on the process
(tests/test_cache_bits.py).

Run: `run(kernel, work, *args)` calls the parallel kernel when `work` (elements) reaches the
kernel's `parallel_min`, else its serial twin, which wakes no thread pool. `POLICY` says how
parallel kernels may run in this process; fusedops._threads sets it (kernels import nothing
from the API): a forked child whose threading layer is not fork-safe runs serial twins only, a
process-wide thread count applies in every calling thread, and a layer that is not thread-safe
(workqueue) runs one parallel kernel at a time.
"""
import contextlib
import hashlib
from pathlib import Path

from numba import njit
from numba.core.caching import FunctionCache

_KERNELS = Path(__file__).resolve().parent.parent
SOURCES = ("common", "cpu")  # the subpackages a CPU kernel can import from


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for sub in SOURCES:
        for path in sorted((root / sub).glob("*.py")):
            h.update(f"{sub}/{path.name}\0".encode())
            h.update(path.read_bytes())
    return h.hexdigest()


SOURCE_DIGEST = _digest(_KERNELS)


class SourceKeyedCache(FunctionCache):
    """Numba's FunctionCache with the sources digest and the options added to each key."""

    def __init__(self, py_func, options: str):
        super().__init__(py_func)
        self._salt = (SOURCE_DIGEST, options)

    def _index_key(self, sig, codegen):
        return (*super()._index_key(sig, codegen), self._salt)


def _canonical(options: dict) -> str:
    """A repr of the options that is the same in every process (sets are sorted)."""
    return repr(sorted((k, sorted(v) if isinstance(v, (set, frozenset)) else v)
                       for k, v in options.items()))


def _compile(fn, options: dict):
    kernel = njit(**options)(fn)
    if hasattr(kernel, "enable_caching"):  # a Dispatcher (a plain function with NUMBA_DISABLE_JIT)
        # what enable_caching() (njit(cache=True)) does, with the keyed cache in its place
        kernel._cache = SourceKeyedCache(kernel.py_func, _canonical(options))
        kernel.fusedops_options = dict(options)
    return kernel


def kernel(*, parallel=True, parallel_min=0, **options):
    """@kernel(...): njit(parallel=parallel, nogil=True, **options) with the source-keyed disk
    cache. `parallel_min`: the work (elements) from which `run` calls the parallel kernel
    rather than its serial twin (measured: benchmarks/test_threads.py)."""
    def wrap(fn):
        k = _compile(fn, dict(options, parallel=parallel, nogil=True))
        if parallel:
            k.fusedops_parallel_min = parallel_min
            k.fusedops_serial = serial_twin(k)
        return k
    return wrap


def serial_twin(parallel_kernel):
    """The same function compiled with parallel=False: prange then runs as range, on the
    calling thread, and no thread pool is woken (for inputs too small to repay it). Each
    iteration runs the same code as in the parallel kernel; its cache entries are its own
    (the options are in the key)."""
    options = getattr(parallel_kernel, "fusedops_options", None)
    if options is None:  # NUMBA_DISABLE_JIT: the kernel is the Python function itself
        return parallel_kernel
    return _compile(parallel_kernel.py_func, dict(options, parallel=False))


class Policy:
    """How parallel kernels run in this process (see the module docstring)."""

    def __init__(self):
        self.force = None        # None: by threshold; "serial" / "parallel": always (tests, benchmarks)
        self.serial_only = False  # a forked child whose threading layer is not fork-safe
        self.threads = None      # None: Numba's count of the calling thread; else this, in every thread
        self.exclusive = None    # a lock when the threading layer is not thread-safe
        self.first_parallel = None  # set-up before the first parallel kernel; clears itself


POLICY = Policy()


def parallel_wanted(k, work) -> bool:
    """Whether run() would call the parallel kernel `k` for `work` elements."""
    if POLICY.serial_only or POLICY.force == "serial":
        return False
    return POLICY.force == "parallel" or work >= k.fusedops_parallel_min


def run(k, work, *args):
    """k(*args) when `work` reaches k's parallel_min (and POLICY allows), else its serial twin."""
    if not parallel_wanted(k, work):
        return k.fusedops_serial(*args)
    if POLICY.first_parallel is not None:
        POLICY.first_parallel()
    if POLICY.threads is None and POLICY.exclusive is None:
        return k(*args)
    return _run_parallel(k, args)


def _run_parallel(k, args):
    lock = POLICY.exclusive
    if lock is not None and not lock.acquire(blocking=False):
        return k.fusedops_serial(*args)  # another thread holds the pool: run here, serially
    try:
        with _thread_count(POLICY.threads):
            return k(*args)
    finally:
        if lock is not None:
            lock.release()


@contextlib.contextmanager
def _thread_count(n):
    """Numba's thread mask is per calling thread: set this thread's to n for the call and put
    the caller's own back afterwards."""
    import numba

    before = numba.get_num_threads() if n is not None else None
    if before is None or before == n:
        yield
        return
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(before)
