"""Check the file lists of fusedops distributions: the package's files and nothing else.

    python tools/check_dist.py dist/fusedops-*.whl dist/fusedops-*.tar.gz

Fails (exit 1, one line per problem) on byte code, Numba's cache files (.nbi index, .nbc code),
object files or cffi's generated C in either; on a wheel file outside the package and its
dist-info, a missing module of the source tree, or an extension count other than expected; on
an sdist that lacks a source the build needs. `make dist-check` runs it on a real `pip wheel`;
tests/test_dist.py on distributions built without the C extension.
"""
from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_SUFFIXES = {".pyc", ".pyo", ".nbi", ".nbc", ".o"}
FORBIDDEN_NAMES = {"_fusedops_c.c"}


def names_of(path: Path) -> list[str]:
    """The file names (not directories) inside a wheel or an sdist."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as z:
            return [n for n in z.namelist() if not n.endswith("/")]
    with tarfile.open(path) as t:
        return [m.name for m in t.getmembers() if m.isfile()]


def _junk(names):
    out = []
    for n in names:
        p = PurePosixPath(n)
        if "__pycache__" in p.parts or p.suffix in FORBIDDEN_SUFFIXES or p.name in FORBIDDEN_NAMES:
            out.append(f"build product or cache: {n}")
    return out


PACKAGE_DIRS = (("python/fusedops", "fusedops"), ("kernels", "fusedops/kernels"))  # pyproject


def source_modules(root: Path = ROOT) -> dict[str, str]:
    """{source path: installed path} of every module of the package (pyproject's package-dir
    maps python/fusedops to fusedops and kernels to fusedops.kernels)."""
    out = {}
    for src, dst in PACKAGE_DIRS:
        for p in (root / src).rglob("*.py"):
            if "__pycache__" not in p.parts:
                rel = p.relative_to(root / src).as_posix()
                out[f"{src}/{rel}"] = f"{dst}/{rel}"
    return out


def wheel_problems(names, *, extension: bool, root: Path = ROOT) -> list[str]:
    problems = _junk(names)
    for n in names:
        top = n.split("/", 1)[0]
        if top != "fusedops" and not (top.startswith("fusedops-") and top.endswith(".dist-info")):
            problems.append(f"outside the package: {n}")
    ext = [n for n in names if n.endswith((".so", ".pyd"))]
    want = 1 if extension else 0
    if len(ext) != want or any(not n.startswith("fusedops/_fusedops_c.") for n in ext):
        problems.append(f"expected {want} extension fusedops/_fusedops_c.*; found {ext}")
    missing = set(source_modules(root).values()) - set(names)
    return problems + [f"missing module: {m}" for m in sorted(missing)]


def sdist_problems(names, root: Path = ROOT) -> list[str]:
    problems = _junk(names) + [f"build product: {n}" for n in names if n.endswith(".so")]
    inner = {n.split("/", 1)[1] for n in names if "/" in n}  # below fusedops-<version>/
    needed = {"setup.py", "pyproject.toml", "MANIFEST.in", *source_modules(root)}
    needed |= {f"csrc/{p.name}" for p in (root / "csrc").iterdir() if p.suffix in (".c", ".h", ".py")}
    return problems + [f"missing from the sdist: {n}" for n in sorted(needed - inner)]


def main(argv) -> int:
    problems = []
    for arg in argv:
        path = Path(arg)
        names = names_of(path)
        found = (wheel_problems(names, extension=True) if path.suffix == ".whl"
                 else sdist_problems(names))
        problems += [f"{path.name}: {p}" for p in found]
        print(f"{path.name}: {len(names)} files, {len(found)} problems")
    for p in problems:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
