"""How the CPU kernels are compiled: njit, cached on disk under a key that cannot go stale.

Numba's cache (numba/core/caching.py) finds an entry by the kernel's own source file (the
index's stamp, a hash of that file), its bytecode and closure, the signature and the CPU. A body
from kernels/common/ or a helper from another cpu/ module is compiled into the kernel but is in
none of these: edit it, and the next process would load the old machine code. So every kernel
here gets a cache whose key also holds
- a digest of every source file a CPU kernel can reach: kernels/common/*.py and
  kernels/cpu/*.py (kernels import nothing else from fusedops; tests/test_numba_cache.py checks
  that, and that an edited body is recompiled), and
- the compile options, so that the serial twin of a parallel kernel (the same function built
  with parallel=False) never shares an entry with it.
The digest is taken at import, over the files the process is about to compile.
"""
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


def kernel(*, parallel=True, **options):
    """@kernel(...): njit(parallel=parallel, **options) with the source-keyed disk cache."""
    return lambda fn: _compile(fn, dict(options, parallel=parallel))


def serial_twin(parallel_kernel):
    """The same function compiled with parallel=False: prange then runs as range, on the
    calling thread, and no thread pool is woken (for inputs too small to repay it). Each
    iteration runs the same code as in the parallel kernel; its cache entries are its own
    (the options are in the key)."""
    options = getattr(parallel_kernel, "fusedops_options", None)
    if options is None:  # NUMBA_DISABLE_JIT: the kernel is the Python function itself
        return parallel_kernel
    return _compile(parallel_kernel.py_func, dict(options, parallel=False))
