"""The one door to the C extension: `ffi`, `lib`, array -> pointer conversion, SIMD paths.

Callers have already checked dtype, shape, contiguity and writability (checks.py); this
module only converts. cffi releases the GIL around every call.

SIMD paths (csrc/simd.h): a portable build holds the kernels compiled for several instruction
sets ("baseline", "avx2", "avx512"); the extension runs the best one this CPU supports.
FUSEDOPS_SIMD=<path> picks another (checked when the C backend is first probed);
`set_simd_path` switches in-process, for tests that run every path on one machine.
"""
from __future__ import annotations

import os

import numpy as np

from ._fusedops_c import ffi, lib  # noqa: F401  (ImportError = extension not built)

_CTYPES = {
    np.dtype(np.float32): "float *",
    np.dtype(np.float64): "double *",
    np.dtype(np.uint8): "uint8_t *",
    np.dtype(np.uint16): "uint16_t *",
    np.dtype(np.uint32): "uint32_t *",
    np.dtype(np.uint64): "uint64_t *",
    np.dtype(np.int64): "int64_t *",
}
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def ptr(a):
    """Typed pointer to a C-contiguous ndarray's data (NULL for None)."""
    if a is None:
        return ffi.NULL
    return ffi.cast(_CTYPES[a.dtype], ffi.from_buffer(a))


def function(name: str, dtype):
    """lib.fo_<name>_<f32|f64> for the given float dtype; lib.fo_<name> when dtype is None
    (kernels with no float arrays, such as the RNG and the dropout mask)."""
    if dtype is None:
        return getattr(lib, f"fo_{name}")
    return getattr(lib, f"fo_{name}_{_SUFFIX[np.dtype(dtype)]}")


def call(name: str, dtype, arrays, sizes, scalars):
    """fo_<name>_<sfx>(*pointers, *sizes, *scalars): outputs, inputs, sizes, hyperparameters."""
    return function(name, dtype)(*[ptr(a) for a in arrays], *sizes, *scalars)


# --------------------------------------------------------------------------- SIMD paths

def simd_paths() -> list[str]:
    """The SIMD paths compiled into this build, from the oldest instruction set up."""
    return [ffi.string(lib.fo_simd_name(k)).decode() for k in range(lib.fo_simd_count())]


def simd_supported(name: str) -> bool:
    """Whether this CPU can run the compiled path `name`."""
    return bool(lib.fo_simd_supported(_level(name)))


def simd_path() -> str:
    """The path the C kernels run now."""
    return simd_paths()[lib.fo_simd_get()]


def simd_target(name: str) -> str:
    """What path `name` was compiled for (a gcc target, e.g. "arch=x86-64-v3")."""
    return ffi.string(lib.fo_simd_target(_level(name))).decode()


def set_simd_path(name: str, argname: str = "name") -> str:
    """Run the C kernels on path `name` from now on; returns the previous path. Not
    thread-safe: switch only while no C kernel is running."""
    level = _level(name, argname)
    previous = simd_path()
    if lib.fo_simd_set(level) != 0:
        usable = [p for p in simd_paths() if simd_supported(p)]
        raise ValueError(f"{argname}={name!r}: this CPU cannot run that SIMD path (it runs: "
                         f"{', '.join(usable)})")
    return previous


def _level(name, argname="name") -> int:
    paths = simd_paths()
    if name not in paths:
        raise ValueError(f"{argname} must be one of the SIMD paths of this build "
                         f"({', '.join(map(repr, paths))}); got {name!r}")
    return paths.index(name)


def apply_simd_env() -> str | None:
    """Apply FUSEDOPS_SIMD if set; None, or why the C backend cannot run as asked."""
    name = os.environ.get("FUSEDOPS_SIMD")
    if not name:
        return None
    try:
        set_simd_path(name, "FUSEDOPS_SIMD")
    except ValueError as exc:
        return str(exc)
    return None
