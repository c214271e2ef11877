"""make mutate: run the mutants of tools/mutate_catalogue.py against the tests that cover each file.

    python tools/mutate.py [-j 2] [--files csrc/optim.c ...] [--limit N] [--out .mutate]

Each worker owns a copy of the checkout under the output folder (the working tree is never
touched): fusedops is imported from the copy (PYTHONPATH), the Numba cache lives in the copy,
and for a C mutant only the mutated file is recompiled and the extension relinked (the cffi
wrapper and the other objects are built once per worker). A mutant is killed when its tests
fail, crash or time out, and survives when they pass. A C mutant whose object code is byte for
byte the original's (a line in a branch the preprocessor drops on this CPU, a no-op the
compiler folds away) is reported as equivalent without running tests. Survivors listed in
tools/mutate_equivalent.txt
(file:line: what | why) are reported as explained. The report (report.json, report.md) goes to
the output folder. Mutation testing is not part of `make test`: a full run takes hours.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from mutate_catalogue import mutants

ROOT = Path(__file__).resolve().parent.parent
T = "tests/"
OPTIM = [T + "test_optim_kernels.py", T + "test_optim_nonfinite.py", T + "test_optim_reference.py"]
DROPOUT = [T + "test_dropout.py", T + "test_philox.py", T + "test_dropout_stats.py",
           T + "test_dropout_start.py"]
BN = [T + "test_batchnorm.py", T + "test_batchnorm_props.py"]
BN_SYNC = [T + "test_batchnorm_sync.py"]
LOWBIT = [T + "test_lowbit_kernels.py", T + "test_lowbit_reference.py"]
C = "c-f32 or c-f64 or [c- or -c] or [c]"  # the C cases' test ids
REF = "not numba and not cuda"  # a reference mutant: the reference tests and C against it
STREAM = [T + "test_stream.py"]
# file -> (tests, pytest -k expression or None, CUDA simulator?)
MAP = {
    "python/fusedops/reference/optim.py": (OPTIM, REF, False),
    "python/fusedops/reference/dropout.py": (DROPOUT, REF, False),
    "python/fusedops/reference/philox.py": (DROPOUT, REF, False),
    "python/fusedops/reference/batchnorm.py": (BN + BN_SYNC, REF, False),
    "kernels/common/optim.py": (OPTIM, "numba or cuda", False),
    "kernels/common/dropout.py": (DROPOUT, "numba", False),
    "kernels/common/philox.py": (DROPOUT, "numba", False),
    "kernels/common/batchnorm.py": (BN + BN_SYNC, "numba", False),
    "kernels/cpu/optim.py": (OPTIM, "numba", False),
    "kernels/cpu/dropout.py": (DROPOUT + [T + "test_dropout_bounds.py"], "numba", False),
    "kernels/cpu/philox.py": (DROPOUT, "numba", False),
    "kernels/cpu/batchnorm.py": (BN, "numba", False),
    "kernels/cpu/stream.py": (STREAM, "numba", False),
    "kernels/cuda/optim.py": (OPTIM, "cuda", True),
    "kernels/cuda/dropout.py": (DROPOUT, "cuda", True),
    "kernels/cuda/philox.py": (DROPOUT, "cuda", True),
    "kernels/cuda/batchnorm.py": (BN, "cuda", True),
    "kernels/cuda/stream.py": (STREAM + [T + "test_cuda_stream.py"], "cuda", True),
    "csrc/optim.c": (OPTIM + [T + "test_threads.py"], C, False),
    "csrc/dropout.c": (DROPOUT + [T + "test_dropout_bounds.py", T + "test_threads.py"], C, False),
    "csrc/philox.h": (DROPOUT, C, False),
    "csrc/batchnorm.c": (BN, C, False),
    "csrc/stream.c": (STREAM, "[c-", False),
    "python/fusedops/reference/lowbit.py": (LOWBIT, REF, False),
    "kernels/common/lowbit.py": (LOWBIT, "numba", False),
    "kernels/cpu/lowbit.py": (LOWBIT, "numba", False),
    "kernels/cuda/lowbit.py": (LOWBIT, "cuda", True),
    "csrc/lowbit.c": (LOWBIT, C, False),
    "csrc/lowbit.h": (LOWBIT, C, False),
    "python/fusedops/reference/batchnorm_sync.py": (BN_SYNC, REF, False),
    "kernels/cpu/batchnorm_sync.py": (BN_SYNC, "numba", False),
    "kernels/cuda/batchnorm_sync.py": (BN_SYNC, "cuda", True),
    "csrc/batchnorm_sync.c": (BN_SYNC, C, False),
    "csrc/batchnorm_impl.h": (BN + BN_SYNC, C, False),
}
IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "build", "*.egg-info",
                                ".mutate", ".benchmarks", "*.so", "*.o")


class Worker:
    def __init__(self, out: Path, k: int):
        self.dir = out / f"w{k}"
        if self.dir.exists():
            shutil.rmtree(self.dir)
        shutil.copytree(ROOT, self.dir, ignore=IGNORE)
        (self.dir / "python/fusedops/kernels").symlink_to("../../kernels")
        self.env = dict(os.environ, PYTHONPATH=str(self.dir / "python"),
                        NUMBA_CACHE_DIR=str(self.dir / ".numba"))
        self.env.pop("NUMBA_ENABLE_CUDASIM", None)
        self._objects = None

    # ------------------------------------------------------------------ C extension
    def _cc(self, src, obj):
        subprocess.run(["gcc", "-fPIC", *self._cflags, "-c", str(src), "-o", str(obj)],
                       check=True, capture_output=True, cwd=self.dir)

    def _describe_build(self):
        """The extension as csrc/build_ffi.py builds it, for one SIMD level (FUSEDOPS_MARCH=
        native: a mutant is judged on this CPU's code): the cffi module's C text, written to
        build_mutate/, and {source: object}, compile flags. A kernel source is compiled through
        its generated wrapper (build/fusedops-simd/<name>__l0.c, which #includes it)."""
        b = self.dir / "build_mutate"
        b.mkdir(exist_ok=True)
        script = ("import json, sys; sys.path.insert(0, 'csrc'); import build_ffi; "
                  "ffi = build_ffi.make_ffi(absolute=True); "
                  "ffi.emit_c_code('build_mutate/_fusedops_c.c'); "
                  "_, _, _, kw = ffi._assigned_source; print(json.dumps(kw))")
        env = dict(self.env, FUSEDOPS_MARCH="native")
        out = subprocess.run([sys.executable, "-c", script], check=True, cwd=self.dir, env=env,
                             capture_output=True, text=True).stdout
        kw = json.loads(out.strip().splitlines()[-1])  # after cffi's "generating ..." lines
        macros = [f"-D{k}={v}" if v is not None else f"-D{k}" for k, v in kw["define_macros"]]
        self._cflags = [*kw["extra_compile_args"], *macros,
                        *[f"-I{d}" for d in kw["include_dirs"]],
                        "-I", sysconfig.get_paths()["include"]]
        srcs = [b / "_fusedops_c.c", *map(Path, kw["sources"])]
        return {s: b / f"{i:02d}_{s.stem}.o" for i, s in enumerate(srcs)}

    def _sources_of(self, changed):
        """The compiled sources a change of csrc file `changed` reaches: itself (compiled once)
        or its wrapper; for a header, every source."""
        name = Path(changed).stem
        hits = [s for s in self._objects if s.stem in (name, f"{name}__l0")]
        return hits if changed.endswith(".c") and hits else list(self._objects)

    def build_c(self, changed=None, skip_if_same=False):
        """Build (first call) or rebuild the extension after `changed` (a csrc path) changed;
        False (and no relink) when skip_if_same and the objects equal the original's."""
        if self._objects is None:
            self._objects = self._describe_build()
            for s, o in self._objects.items():
                self._cc(s, o)
            self._pristine = {s: o.read_bytes() for s, o in self._objects.items()}
        elif changed is not None:
            for s in self._sources_of(changed):
                self._cc(s, self._objects[s])
            if skip_if_same and all(o.read_bytes() == self._pristine[s]
                                    for s, o in self._objects.items()):
                return False  # the same machine code as the original: nothing to test
        so = self.dir / "python/fusedops" / ("_fusedops_c" + sysconfig.get_config_var("EXT_SUFFIX"))
        subprocess.run(["gcc", "-shared", "-pthread", *map(str, self._objects.values()), "-o",
                        str(so)], check=True, capture_output=True)
        return True

    # ------------------------------------------------------------------ one mutant
    def run(self, m, timeout):
        tests, expr, sim = MAP[m.path]
        target = self.dir / m.path
        original = target.read_text()
        t0 = time.time()
        try:
            target.write_text(m.source)
            if m.path.startswith("csrc/"):
                try:
                    if not self.build_c(m.path, skip_if_same=True):
                        return "equivalent (same object code)", time.time() - t0
                except subprocess.CalledProcessError:
                    return "killed (does not compile)", time.time() - t0
            cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                   "-W", "ignore", *tests] + (["-k", expr] if expr else [])
            env = dict(self.env, NUMBA_ENABLE_CUDASIM="1") if sim else self.env
            try:
                r = subprocess.run(cmd, cwd=self.dir, env=env, capture_output=True, text=True,
                                   timeout=timeout)
            except subprocess.TimeoutExpired:
                return "killed (timeout)", time.time() - t0
            if r.returncode == 0:
                return "survived", time.time() - t0
            if r.returncode == 1:
                return "killed", time.time() - t0
            if r.returncode < 0:  # a signal: the mutant crashed the process (out of bounds, ...)
                return f"killed (crash, signal {-r.returncode})", time.time() - t0
            return f"error (pytest exit {r.returncode}: {r.stdout[-300:]})", time.time() - t0
        finally:
            target.write_text(original)
            if m.path.startswith("csrc/"):
                self.build_c(m.path)


def _equivalent():
    out = {}
    p = ROOT / "tools/mutate_equivalent.txt"
    for line in p.read_text().splitlines() if p.exists() else []:
        if line.strip() and not line.startswith("#"):
            key, _, why = line.partition(" | ")
            out[key.strip()] = why.strip()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-j", type=int, default=2, help="parallel workers (default 2)")
    ap.add_argument("--files", nargs="*", default=list(MAP), help="sources to mutate")
    ap.add_argument("--limit", type=int, default=0, help="at most N mutants per file (evenly spaced)")
    ap.add_argument("--match", default="", help="only mutants whose 'file:line: what' contains this")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per mutant's tests")
    ap.add_argument("--out", default=".mutate", help="working and report folder")
    ap.add_argument("--report-from", nargs="*", default=None, metavar="LOG",
                    help="only write the report of earlier runs from their printed lines")
    args = ap.parse_args(argv)
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.report_from is not None:
        return report(_parse_logs(args.report_from), out)
    todo = []
    for f in args.files:
        if f not in MAP:
            ap.error(f"{f}: no tests mapped (tools/mutate.py MAP)")
        ms = [m for m in mutants(f, (ROOT / f).read_text()) if args.match in m.key]
        if args.limit and len(ms) > args.limit:
            ms = [ms[round(i * (len(ms) - 1) / (args.limit - 1))] for i in range(args.limit)] \
                if args.limit > 1 else ms[:1]
        todo += ms
    workers = [Worker(out, k) for k in range(args.j)]
    for w in workers:  # every mutant's tests compare with C where they can (REF: the reference's)
        w.build_c()
    free = list(workers)
    results = []
    with cf.ThreadPoolExecutor(args.j) as pool:
        def job(m):
            w = free.pop()
            try:
                return m, *w.run(m, args.timeout)
            finally:
                free.append(w)
        for m, status, secs in (f.result() for f in cf.as_completed([pool.submit(job, m) for m in todo])):
            results.append({"file": m.path, "line": m.line, "what": m.what, "status": status,
                            "seconds": round(secs, 1)})
            print(f"{status:28s} {secs:6.1f}s  {m.key}", flush=True)
    report(results, out)


def _parse_logs(paths):
    """The result lines a run printed ("<status> <seconds>s  <file>:<line>: <what>")."""
    results = {}
    for p in paths:
        for line in Path(p).read_text().splitlines():
            head, sep, key = line.partition("s  ")
            if not sep or ":" not in key or not head.split():
                continue
            f, line_no, what = key.split(":", 2)
            status, secs = head.rsplit(None, 1)
            results[key] = {"file": f, "line": int(line_no), "what": what.strip(),
                            "status": status.strip(), "seconds": float(secs)}
    return list(results.values())


def report(results, out):
    eq = _equivalent()
    rows, lines = {}, ["| file | mutants | killed | same object code | survived | explained |",
                       "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        key = f"{r['file']}:{r['line']}: {r['what']}"
        r["explained"] = eq.get(key)
        c = rows.setdefault(r["file"], [0, 0, 0, 0, 0])
        c[0] += 1
        c[1] += r["status"].startswith("killed")
        c[2] += r["status"].startswith("equivalent")
        c[3] += r["status"] == "survived"
        c[4] += r["status"] == "survived" and r["explained"] is not None
    for f, (n, k, q, s, e) in sorted(rows.items()):
        lines.append(f"| {f} | {n} | {k} | {q} | {s} | {e} |")
    lines += ["", "Survivors:"] + [
        f"- {r['file']}:{r['line']}: {r['what']}" + (f" — equivalent: {r['explained']}" if r["explained"] else " — UNEXPLAINED")
        for r in sorted(results, key=lambda r: (r["file"], r["line"])) if r["status"] == "survived"]
    (out / "report.json").write_text(json.dumps(results, indent=1))
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "tools"))
    main()
