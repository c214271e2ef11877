"""MPI plumbing of fusedops.distributed: the communicator, errors agreed by every rank before
a collective, abort on an error only one rank saw, and GPU buffers staged through the host.

No hangs is the rule. A collective blocks until every rank of the communicator enters it, so
a rank that raises on its own leaves the others waiting forever. Hence two mechanisms:
- `agreed(comm)` wraps the local checks that come before a step's first collective: one small
  Allreduce tells every rank whether any rank failed, and then every rank raises the same error
  (naming the rank), so all of them leave the collective section together;
- `abort_on_error(comm)` wraps training: an exception that was not agreed prints its traceback
  and calls MPI_Abort, which ends every rank of the job (mpiexec then exits non-zero).
"""
from __future__ import annotations

import builtins
import contextlib
import ctypes
import functools
import os
import re
import sys
import traceback

import numpy as np

try:
    from mpi4py import MPI
except ModuleNotFoundError as exc:  # the optional extra is missing
    raise ModuleNotFoundError("fusedops.distributed needs mpi4py and an MPI library: "
                              "pip install 'fusedops[mpi]' (mpi4py + the mpich wheel, which "
                              f"brings mpiexec), or build mpi4py against your system MPI ({exc})",
                              name=exc.name) from None

from .._arrays import is_device_array

__all__ = ["MPI", "resolve_comm", "agree", "agreed", "is_agreed", "abort_on_error",
           "cuda_aware", "Staged", "all_finite"]

_AGREED = "__fusedops_agreed__"


def resolve_comm(comm=None):
    """`comm`, or MPI.COMM_WORLD when None; an intracommunicator."""
    if comm is None:
        return MPI.COMM_WORLD
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"comm must be an mpi4py intracommunicator such as MPI.COMM_WORLD; "
                        f"got {type(comm).__name__}")
    return comm


def is_agreed(exc: BaseException) -> bool:
    """True for an exception that every rank of the communicator raised together."""
    return bool(getattr(exc, _AGREED, False))


def agree(comm, error: BaseException | None) -> None:
    """Collective: each rank passes the exception its local checks raised, or None. When any
    rank failed, every rank raises the error of the lowest failing rank, as the same built-in
    type (RuntimeError for other types) with the message 'rank r: ...'. Costs one Allreduce
    of 4 bytes when nothing failed."""
    flag = np.array([0 if error is None else 1], np.int32)
    comm.Allreduce(MPI.IN_PLACE, flag, op=MPI.MAX)
    if not flag[0]:
        return
    report = None if error is None else (type(error).__name__, str(error))
    reports = comm.allgather(report)
    rank, (name, message) = next((r, x) for r, x in enumerate(reports) if x is not None)
    cls = getattr(builtins, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls, message = RuntimeError, f"{name}: {message}"
    exc = cls(f"rank {rank}: {message}")
    setattr(exc, _AGREED, True)
    raise exc from error


@contextlib.contextmanager
def agreed(comm):
    """Run the block's local checks, then `agree` on the outcome (every rank must enter)."""
    error = None
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - any local failure must reach the other ranks
        error = exc
    agree(comm, error)


@contextlib.contextmanager
def abort_on_error(comm=None):
    """Within the block, an exception that is not agreed (raised by this rank alone) prints
    its traceback and aborts the whole job with MPI_Abort instead of leaving the other ranks
    blocked in their next collective. Agreed exceptions propagate normally. No effect on a
    communicator of one process."""
    comm = resolve_comm(comm)
    try:
        yield
    except BaseException as exc:
        if is_agreed(exc) or comm.Get_size() == 1:
            raise
        traceback.print_exc()
        sys.stderr.write(f"fusedops.distributed: rank {comm.Get_rank()} of {comm.Get_size()} "
                         f"failed alone ({type(exc).__name__}); aborting the job (MPI_Abort) so "
                         f"that the other ranks do not wait for it forever\n")
        sys.stderr.flush()
        sys.stdout.flush()
        comm.Abort(1)
        os._exit(1)  # MPI_Abort may return while the launcher is still killing the job


@functools.lru_cache(maxsize=None)
def cuda_aware() -> bool:
    """Whether MPI may be handed GPU buffers: FUSEDOPS_MPI_CUDA_AWARE=1 or 0 decides, else the
    MPI library is asked (MPICH's MPIX_GPU_query_support, Open MPI's MPIX_Query_cuda_support).
    The MPI wheels from PyPI are not CUDA-aware: GPU buffers are then staged through the host."""
    env = os.environ.get("FUSEDOPS_MPI_CUDA_AWARE")
    if env in ("0", "1"):
        return env == "1"
    try:
        maps = open("/proc/self/maps").read()
        path = next(iter(re.findall(r"(/\S*libmpi\S*\.so[.\d]*)", maps)), None)
        lib = ctypes.CDLL(path) if path else None
    except OSError:
        return False
    flag = ctypes.c_int(0)
    if lib is not None and hasattr(lib, "MPIX_GPU_query_support"):
        return lib.MPIX_GPU_query_support(0, ctypes.byref(flag)) == 0 and flag.value == 1
    if lib is not None and hasattr(lib, "MPIX_Query_cuda_support"):
        return lib.MPIX_Query_cuda_support() == 1
    return False


class Staged:
    """A buffer MPI can use in place of array `a` (1-D): `a` itself when it is a NumPy array (or
    a GPU array that supports in-place division and the MPI is CUDA-aware), else a host copy
    that `finish()` writes back. GPU work is synchronized before MPI reads device memory."""

    def __init__(self, a, *, read=True):
        self.array = a
        self.device = is_device_array(a)
        if not self.device:
            self.buf = a
        elif cuda_aware() and hasattr(type(a), "__itruediv__"):
            _synchronize()
            self.buf = a
        else:
            self.buf = _to_host(a) if read else np.empty(a.shape, _dtype(a))

    def finish(self) -> None:
        """Copy a staged buffer back to the device array."""
        if self.buf is not self.array:
            _to_device(self.array, self.buf)


def all_finite(a) -> bool:
    """No NaN or Inf in array `a` (a device array is read through a host copy)."""
    return bool(np.isfinite(a if isinstance(a, np.ndarray) else _to_host(a)).all())


def _dtype(a):
    return np.dtype(a.dtype)


def _synchronize():
    from numba import cuda

    cuda.synchronize()


def _to_host(a) -> np.ndarray:
    from .._arrays import host_copy

    return host_copy(a)


def _to_device(dst, src: np.ndarray) -> None:
    from .._arrays import as_numba_device

    as_numba_device(dst).copy_to_device(src)
