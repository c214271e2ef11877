"""cffi build script (API mode): one extension, fusedops._fusedops_c, from csrc/*.c.

Flags: -O3 -fopenmp -ffp-contract=off -fno-math-errno plus -march=native (the package is built on the
machine that runs it). FUSEDOPS_MARCH overrides the -march value ("" drops it) for portable
builds; FUSEDOPS_EXTRA_CFLAGS appends flags. The flags are compiled into the module so
`fusedops info` reports what was actually used.
"""
import glob
import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))


def _cdef_text(header_path):
    text = open(header_path).read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)  # comments
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _cflags():
    march = os.environ.get("FUSEDOPS_MARCH", "native")
    # -fno-math-errno: no kernel reads errno, and with it set gcc guards every sqrtf with an
    # errno branch that keeps the loop from vectorizing (no pragma or attribute lifts it in
    # gcc 12). The results are the same IEEE square roots.
    flags = ["-O3", "-fopenmp", "-ffp-contract=off", "-fno-math-errno", "-std=c11"]
    if march:
        flags.append(f"-march={march}")
    flags += os.environ.get("FUSEDOPS_EXTRA_CFLAGS", "").split()
    return flags


CFLAGS = _cflags()
ffi = FFI()
ffi.cdef(_cdef_text(os.path.join(HERE, "fusedops.h")))
ffi.set_source(
    "fusedops._fusedops_c",
    '#include "fusedops.h"',
    sources=sorted(os.path.relpath(p) for p in glob.glob(os.path.join(HERE, "*.c"))),
    include_dirs=[os.path.relpath(HERE)],
    define_macros=[("FO_CFLAGS", '"' + " ".join(CFLAGS) + '"')],
    extra_compile_args=CFLAGS,
    extra_link_args=["-fopenmp"],
)

if __name__ == "__main__":
    ffi.compile(verbose=True)
