"""Backend registry, dispatch and validation.

Backends: "numpy" (reference.py), "numba" (kernels/cpu), "c" (csrc via cffi), "cuda"
(kernels/cuda). The default is "cuda" when any array argument lives on a GPU (exposes
``__cuda_array_interface__``), else "numba"; ``FUSEDOPS_BACKEND`` overrides the default.

Validation happens here, once, before any kernel touches memory: a bad call raises and changes
nothing. Every check names the offending argument.
"""
from __future__ import annotations

import functools
import importlib
import os
from typing import NamedTuple

import numpy as np

BACKENDS = ("numpy", "numba", "c", "cuda")
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


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
        return None
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
    return _default_backend(any(is_device_array(a) for a in arrays if a is not None))


def _default_backend(on_device: bool) -> str:
    env = os.environ.get("FUSEDOPS_BACKEND")
    if env:
        return check_backend_name(env, "FUSEDOPS_BACKEND")
    return "cuda" if on_device else "numba"


def resolve_backend(backend, *arrays) -> str:
    """Pick and check the backend for a call on `arrays` (None entries are ignored)."""
    on_device = any(is_device_array(a) for a in arrays if a is not None)
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


def cpu_module(family: str):
    """kernels/cpu/<family>.py."""
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

def set_num_threads(n: int) -> None:
    """Set the threads of both CPU backends (Numba's parallel loops and the OpenMP C code)."""
    import numba

    limit = numba.config.NUMBA_NUM_THREADS
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= limit:
        raise ValueError(f"n must be an integer in [1, {limit}]; got {n!r}")
    numba.set_num_threads(int(n))
    if _probe("c") is None:
        from ._c import lib

        lib.fo_set_num_threads(int(n))


def get_num_threads() -> int:
    """Threads used by the CPU backends."""
    import numba

    return numba.get_num_threads()


# --------------------------------------------------------------------------- arrays

def is_device_array(a) -> bool:
    """True for GPU arrays: anything with __cuda_array_interface__, or a simulator array."""
    if type(a) is np.ndarray:
        return False
    if hasattr(a, "__cuda_array_interface__"):
        return True
    return type(a).__name__ == "FakeCUDAArray"


class ArrayInfo(NamedTuple):
    dtype: np.dtype
    shape: tuple
    c_contiguous: bool
    writable: bool
    device: bool


def array_info(name: str, a) -> ArrayInfo:
    """dtype, shape, layout and writability of a host or device array, without copying."""
    if isinstance(a, np.ndarray):
        return ArrayInfo(a.dtype, a.shape, a.flags.c_contiguous, a.flags.writeable, False)
    if type(a).__name__ == "FakeCUDAArray":  # simulator: wraps a host ndarray
        h = a._ary
        return ArrayInfo(h.dtype, h.shape, h.flags.c_contiguous, h.flags.writeable, True)
    cai = getattr(a, "__cuda_array_interface__", None)
    if cai is None:
        raise TypeError(f"{name} must be a numpy.ndarray or a CUDA array; got {type(a).__name__}")
    dtype = np.dtype(cai["typestr"])
    shape = tuple(cai["shape"])
    strides = cai.get("strides")
    contiguous = strides is None or tuple(strides) == _c_strides(shape, dtype.itemsize)
    return ArrayInfo(dtype, shape, contiguous, not cai["data"][1], True)


def _c_strides(shape, itemsize):
    strides, acc = [], itemsize
    for dim in reversed(shape):
        strides.append(acc)
        acc *= dim
    return tuple(reversed(strides))


def _allowed_dtypes(dtype):
    if dtype is None:
        return FLOAT_DTYPES
    if isinstance(dtype, (tuple, list)):
        return tuple(np.dtype(d) for d in dtype)
    return (np.dtype(dtype),)


def _check_layout(name, info, writable):
    if not info.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name})")
    if writable and not info.writable:
        raise ValueError(f"{name} is read-only but is written by this op")


def check_array(name, a, *, dtype=None, shape=None, ndim=None, writable=False) -> ArrayInfo:
    """Check one array argument. `dtype` may be a dtype or a tuple of allowed dtypes
    (default: float32 or float64). Arrays must be C-contiguous; outputs must be writable."""
    info = array_info(name, a)
    allowed = _allowed_dtypes(dtype)
    if info.dtype not in allowed:
        names = " or ".join(str(d) for d in allowed)
        raise TypeError(f"{name} must have dtype {names}; got {info.dtype}")
    if ndim is not None and len(info.shape) != ndim:
        raise ValueError(f"{name} must be {ndim}-D; got shape {info.shape}")
    if shape is not None and tuple(info.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got {info.shape}")
    _check_layout(name, info, writable)
    return info


def check_like(name, a, ref_name, ref, *, writable=False) -> ArrayInfo:
    """`a` must have the same dtype and shape as `ref` (already checked), same memory side."""
    ri, info = array_info(ref_name, ref), array_info(name, a)
    if info.dtype != ri.dtype:
        raise TypeError(f"{name} must have the same dtype as {ref_name} ({ri.dtype}); got {info.dtype}")
    if info.shape != ri.shape:
        raise ValueError(f"{name} must have the same shape as {ref_name} {ri.shape}; got {info.shape}")
    _check_layout(name, info, writable)
    if info.device != ri.device:
        raise ValueError(f"{name} and {ref_name} must both be host arrays or both GPU arrays")
    return info


def _span(a):
    """(start, end) device addresses of the bytes `a` covers, for overlap tests."""
    cai = a.__cuda_array_interface__
    start = cai["data"][0]
    n = int(np.prod(cai["shape"], dtype=np.int64)) * np.dtype(cai["typestr"]).itemsize
    return start, start + n


def overlaps(a, b) -> bool:
    """True when arrays a and b share any memory (host or device)."""
    ha = a._ary if type(a).__name__ == "FakeCUDAArray" else a
    hb = b._ary if type(b).__name__ == "FakeCUDAArray" else b
    if isinstance(ha, np.ndarray) and isinstance(hb, np.ndarray):
        return bool(np.shares_memory(ha, hb))
    if isinstance(ha, np.ndarray) or isinstance(hb, np.ndarray):
        return False
    sa, sb = _span(a), _span(b)
    return sa[0] < sb[1] and sb[0] < sa[1] and sa[0] != sa[1] and sb[0] != sb[1]


def check_no_overlap(outputs: dict, inputs: dict | None = None) -> None:
    """No output may share memory with another output or with an input (None entries are
    ignored): a fused pass would read what it has already overwritten. Inputs may alias each
    other."""
    outs = [(k, v) for k, v in outputs.items() if v is not None]
    ins = [(k, v) for k, v in (inputs or {}).items() if v is not None]
    for i, (na, a) in enumerate(outs):
        for nb, b in outs[i + 1:] + ins:
            if overlaps(a, b):
                raise ValueError(f"{na} and {nb} share memory; pass separate arrays")


# --------------------------------------------------------------------------- scalars

def check_real(name, value, *, lo=None, hi=None, lo_open=False, hi_open=False) -> float:
    """A finite real number in [lo, hi] (open ends where asked)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite; got {value!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}; got {value!r}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ValueError(f"{name} must be {'<' if hi_open else '<='} {hi}; got {value!r}")
    return v


def check_int(name, value, *, lo=None, hi=None) -> int:
    """An integer (Python or NumPy, not bool, not float) in [lo, hi]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer; got {type(value).__name__}")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}]; got {value!r}")
    return v


def check_bool(name, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)
