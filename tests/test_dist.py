"""The sdist and the wheel hold the package and nothing else (tools/check_dist.py): no byte
code, no Numba cache files (.nbi/.nbc), no build products; every module is in the wheel.

Both are built from a copy of this tree into which cache files have been planted (as a checkout
that has run the tests has them), with setuptools' PEP 517 hooks in one subprocess. The wheel is
built without setup.py, i.e. without the C extension: setup.py only adds cffi's extension (one
build_ext, 30-60 s of compiling here), while the files that leaked - Numba's cache, picked up as
package data through MANIFEST.in's graft - are chosen the same way with or without it. So this
test takes seconds; `make dist-check` builds the real wheel with `pip wheel` and checks it.
"""
import importlib.util
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".git", ".venv", "build", "dist", ".benchmarks", ".pytest_cache", "fusedops-report"}


def _check_dist():
    spec = importlib.util.spec_from_file_location("check_dist", ROOT / "tools" / "check_dist.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    tree = tmp_path_factory.mktemp("tree") / "fusedops"
    shutil.copytree(ROOT, tree, ignore=lambda d, names: [n for n in names if n in SKIP
                                                         or n.endswith(".egg-info")])
    for d in ("kernels/cpu/__pycache__", "kernels/common/__pycache__", "python/fusedops/__pycache__"):
        (tree / d).mkdir(parents=True, exist_ok=True)
        for name in ("k-12.py311.nbi", "k-12.py311.1.nbc", "m.cpython-311.pyc"):
            (tree / d / name).write_bytes(b"cache")
    (tree / "python/fusedops/_fusedops_c.abi3.so").write_bytes(b"stale build")
    out = tree.parent / "dist"
    code = textwrap.dedent(f"""
        import os
        from setuptools import build_meta
        sdist = build_meta.build_sdist({str(out)!r})  # setup.py is needed here, compiles nothing
        os.remove("setup.py")  # the wheel without the C extension: see the module docstring
        print("built:", sdist, build_meta.build_wheel({str(out)!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sdist, wheel = proc.stdout.rsplit("built:", 1)[1].split()
    return out / sdist, out / wheel, tree


def test_wheel_holds_every_module_and_no_cache(dists):
    cd = _check_dist()
    _, wheel, tree = dists
    names = cd.names_of(wheel)
    assert cd.wheel_problems(names, extension=False, root=tree) == []
    assert "fusedops/kernels/cpu/optim.py" in names and "fusedops/_c.py" in names


def test_sdist_holds_the_sources_and_no_cache(dists):
    cd = _check_dist()
    sdist, _, tree = dists
    names = cd.names_of(sdist)
    assert cd.sdist_problems(names, root=tree) == []
    assert any(n.endswith("/csrc/simd.c") for n in names)


def test_the_check_catches_what_leaked_before():
    cd = _check_dist()
    leaked = sorted(set(cd.source_modules().values())) + [
        "fusedops/kernels/cpu/__pycache__/optim._adam_kernel-50.py311.nbi",
        "fusedops/kernels/cpu/__pycache__/optim._adam_kernel-50.py311.1.nbc",
        "fusedops/_fusedops_c.abi3.so"]
    problems = cd.wheel_problems(leaked, extension=True)
    assert len(problems) == 2 and all("cache" in p for p in problems)
    assert cd.wheel_problems(leaked[:-3] + ["fusedops/_fusedops_c.abi3.so"], extension=True) == []
    missing = cd.wheel_problems(leaked[1:-3], extension=False)
    assert missing == [f"missing module: {leaked[0]}"]
