"""Compile and link the C kernels for another architecture, to show a portable build works
there (one SIMD level, the compiler's default target; csrc/simd.h).

    apt-get install gcc-aarch64-linux-gnu            # or another cross compiler
    python tools/cross_build.py [aarch64-linux-gnu-gcc] [OUTDIR]

Generates the sources exactly as csrc/build_ffi.py does for a build on a non-x86 machine
(FUSEDOPS_MARCH unset), compiles each with -Wall -pedantic -Werror, compiles the forwarders
that the extension's module would hold (without Python.h: they need none), links a shared
library with OpenMP, and checks its symbols: every kernel entry point and its level-0 copy,
no copy of another level. Not part of `make test`: CI has no cross compiler.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _build_ffi():
    spec = importlib.util.spec_from_file_location("build_ffi", ROOT / "csrc" / "build_ffi.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(cc="aarch64-linux-gnu-gcc", out=None) -> int:
    out = Path(out or tempfile.mkdtemp(prefix="fusedops-cross-"))
    bf = _build_ffi()
    bf._x86_64 = lambda: False  # what build_config sees on the target machine
    bf.GEN_DIR = str(out / "gen")
    os.environ.pop("FUSEDOPS_MARCH", None)
    ffi = bf.make_ffi(absolute=True)
    _, preamble, _, kw = ffi._assigned_source  # (module name, source, extension, kwds)
    forwarders = out / "forwarders.c"
    forwarders.write_text(preamble)
    flags, _, _ = bf.build_config()
    defines = [f"-D{k}={v}" for k, v in kw["define_macros"]]
    objects = []
    for src in [*kw["sources"], str(forwarders)]:
        obj = out / (Path(src).stem + ".o")
        subprocess.run([cc, "-fPIC", "-Wall", "-pedantic", "-Werror", "-Wno-unused-function",
                        *flags, *defines, f"-I{ROOT / 'csrc'}", "-c", src, "-o", str(obj)],
                       check=True)
        objects.append(str(obj))
    lib = out / "libfusedops_kernels.so"
    subprocess.run([cc, "-shared", "-fopenmp", *objects, "-o", str(lib)], check=True)
    nm = cc[:-len("gcc")] + "nm" if cc.endswith("gcc") else "nm"
    symbols = set(subprocess.run([nm, "--defined-only", str(lib)], check=True,
                                 capture_output=True, text=True).stdout.split())
    names = [p[2] for p in bf.prototypes((ROOT / "csrc" / "fusedops.h").read_text())]
    missing = [n for n in names if n not in symbols]
    copies = sorted(s for s in symbols if re.search(r"__l\d+$", s))
    bad = [s for s in copies if not s.endswith("__l0")]
    print(f"{lib}: {len(names)} entry points, {len(copies)} level copies")
    for problem in [f"missing {n}" for n in missing] + [f"unexpected {s}" for s in bad]:
        print("  " + problem)
    return 1 if missing or bad else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
