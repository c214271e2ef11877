"""Backend registry and threads.

Backends: "numpy" (reference/), "numba" (kernels/cpu), "c" (csrc via cffi), "cuda"
(kernels/cuda). The default is "cuda" when any array argument lives on a GPU (exposes
``__cuda_array_interface__``), else "numba"; ``FUSEDOPS_BACKEND`` overrides the default.
``set_num_threads`` sets the threads of both CPU backends, process-wide (fusedops._threads).

Argument checks live in fusedops.checks, array kinds (host / device / simulator) in
fusedops._arrays.
"""
from __future__ import annotations

import functools
import importlib
import os
import warnings

import numpy as np

from . import _arrays

__all__ = ["BACKENDS", "BackendUnavailableError", "available_backends", "backend_unavailable_reason",
           "check_backend_name", "cuda_simulator", "default_backend", "resolve_backend",
           "cpu_module", "cuda_module", "threads_per_block", "set_num_threads", "get_num_threads"]

BACKENDS = ("numpy", "numba", "c", "cuda")

# Names this module held before the checks and the array kinds got modules of their own: still
# importable from here, with a DeprecationWarning naming the new home, so code written against
# the old layout keeps running while it is updated (tests/test_imports.py fails on any use of
# them inside fusedops).
MOVED = {**dict.fromkeys(("FLOAT_DTYPES", "check_array", "check_like", "check_no_overlap",
                          "check_real", "check_int", "check_bool"), "fusedops.checks"),
         **dict.fromkeys(("ArrayInfo", "array_info", "is_device_array", "overlaps"),
                         "fusedops._arrays")}


def __getattr__(name: str):
    if name in MOVED:
        warnings.warn(f"fusedops.backends.{name} has moved: import it from {MOVED[name]}",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here; the message says why and how to get it."""


# --------------------------------------------------------------------------- registry

def cuda_simulator() -> bool:
    """True when Numba's CUDA simulator is enabled (NUMBA_ENABLE_CUDASIM=1)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


@functools.lru_cache(maxsize=None)
def _probe(name: str) -> str | None:
    """None when backend `name` works here, else the reason it does not."""
    if name in ("numpy", "numba"):
        return None
    if name == "c":
        try:
            from . import _fusedops_c  # noqa: F401
        except ImportError as exc:
            return (f"the C extension fusedops._fusedops_c is not built ({exc}); reinstall with "
                    "`pip install .` (or `pip install -e .`) on a machine with a C compiler")
        from . import _c

        return _c.apply_simd_env()
    if name == "cuda":
        try:
            from numba import cuda
        except ImportError as exc:
            return f"numba.cuda cannot be imported ({exc}); install numba-cuda (`pip install fusedops[cuda]`)"
        try:
            if cuda.is_available():
                return None
        except Exception as exc:  # driver errors surface here
            return f"no usable CUDA device ({exc})"
        return ("no CUDA device or driver was found; run on a machine with an NVIDIA GPU, or set "
                "NUMBA_ENABLE_CUDASIM=1 before importing fusedops to use Numba's (slow) simulator")
    raise ValueError(f"unknown backend {name!r}")


def backend_unavailable_reason(name: str) -> str | None:
    """Why `name` cannot run here, or None when it can."""
    check_backend_name(name)
    return _probe(name)


def available_backends() -> list[str]:
    """The backends that can run on this machine, in registry order."""
    return [b for b in BACKENDS if _probe(b) is None]


def check_backend_name(name, argname="backend") -> str:
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"{argname} must be one of {', '.join(map(repr, BACKENDS))}; got {name!r}")
    return name


def default_backend(*arrays) -> str:
    """The backend used when none is given: FUSEDOPS_BACKEND, else cuda for GPU arrays, else numba."""
    return _default_backend(any(_arrays.is_device_array(a) for a in arrays if a is not None))


def _default_backend(on_device: bool) -> str:
    env = os.environ.get("FUSEDOPS_BACKEND")
    if env:
        return check_backend_name(env, "FUSEDOPS_BACKEND")
    return "cuda" if on_device else "numba"


def resolve_backend(backend, *arrays) -> str:
    """Pick and check the backend for a call on `arrays` (None entries are ignored)."""
    on_device = any(_arrays.is_device_array(a) for a in arrays if a is not None)
    if backend is None:
        name = _default_backend(on_device)
    else:
        name = check_backend_name(backend)
    reason = _probe(name)
    if reason is not None:
        raise BackendUnavailableError(f"backend {name!r} is not available: {reason}")
    if name != "cuda" and on_device:
        raise ValueError(f"backend {name!r} runs on the host but a GPU array was given; "
                         "use backend='cuda' or copy the arrays to the host")
    return name


@functools.lru_cache(maxsize=None)
def cpu_module(family: str):
    """kernels/cpu/<family>.py; first fusedops._threads, which sets how their parallel kernels
    run in this process (the fork handler, the threading layer's set-up)."""
    from . import _threads  # noqa: F401

    return importlib.import_module(f"fusedops.kernels.cpu.{family}")


def cuda_module(family: str):
    """kernels/cuda/<family>.py."""
    return importlib.import_module(f"fusedops.kernels.cuda.{family}")


def threads_per_block() -> int:
    """CUDA block size: FUSEDOPS_CUDA_BLOCK, else 32 under the simulator (so small inputs
    span several blocks and the tail guard), else 256."""
    env = os.environ.get("FUSEDOPS_CUDA_BLOCK")
    if env:
        return int(env)
    return 32 if cuda_simulator() else 256


# --------------------------------------------------------------------------- threads

def set_num_threads(n) -> None:
    """Threads of both CPU backends (Numba's parallel loops and the C kernels' pool), for calls
    from every Python thread of the process; n=None returns to the defaults. It changes no
    setting of Numba or OpenMP for code outside fusedops (fusedops._threads)."""
    from ._threads import set_num_threads as _set

    _set(n)


def get_num_threads() -> int:
    """Threads a parallel CPU kernel called from this thread uses."""
    from ._threads import get_num_threads as _get

    return _get()
