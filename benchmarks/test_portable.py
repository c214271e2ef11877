"""The portable C build (run-time SIMD dispatch, csrc/simd.h) against a -march=native build of
the same sources, side by side in one process.

The installed extension is the portable one (unless it was installed with FUSEDOPS_MARCH set:
then this file skips). A -march=native twin is built once into build/bench-native/ (~30 s;
rebuilt when a csrc file is newer) and loaded under another module name; each kernel is called
straight through each build's `lib`, on the same arrays, so the only difference is the compiled
code. Before timing, one call of each build is checked to give the same bits.

    pytest benchmarks/test_portable.py --benchmark-only           # pytest-benchmark groups
    python benchmarks/test_portable.py [N ...] [--threads 1 --cpu-time]   # interleaved table

The table times the two builds round-robin (portable, native, portable, ...) and reports min
and median of each and native / portable: the figure behind "within 5% of -march=native".
"""
from __future__ import annotations

import glob
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

try:
    from conftest import bench_sizes, run_benchmark
except ImportError:  # run as a script
    bench_sizes = run_benchmark = None

ROOT = Path(__file__).resolve().parent.parent
NATIVE_DIR = ROOT / "build" / "bench-native"
SIZES = [1_000_000, 16_000_000]
# name: (C function fo_<name>_f32, fp32 bytes moved per element)
KERNELS = {
    "sgd": ("sgd_update", 12), "momentum": ("sgd_update", 20), "adagrad": ("adagrad_update", 20),
    "rmsprop": ("rmsprop_update", 20), "adam": ("adam_update", 28), "amsgrad": ("adam_update", 36),
    "dropout": ("dropout_forward", 8.125), "batchnorm": ("batchnorm_forward_train", 12),
    "triad": ("stream_triad", 12),
    "adam8": ("adam_lowbit", 16.06),  # float32 params, 8-bit state (sfmt S_Q8 = 2)
}


def _arrays(n):
    rng = np.random.default_rng(0)
    w, g = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    return w, g, [np.full(n, 0.01, np.float32) for _ in range(3)]


def _args(kernel, n, ptr):
    """The argument list of `kernel` over fresh arrays; pointers made by `ptr`."""
    w, g, (s1, s2, s3) = _arrays(n)
    null = ptr(None)
    if kernel in ("sgd", "momentum"):
        mom = kernel == "momentum"
        return [ptr(w), ptr(s1) if mom else null, ptr(g), n, 0.01, 0.9 if mom else 0.0, 0, 0.0, 0.0]
    if kernel == "adagrad":
        return [ptr(w), ptr(s1), ptr(g), n, 0.01, 1e-10, 0, 0.0, 0.0]
    if kernel == "rmsprop":
        return [ptr(w), ptr(s1), null, null, ptr(g), n, 0.01, 0.99, 1e-8, 0, 0.0, 0.0, 0.0]
    if kernel in ("adam", "amsgrad"):
        vmax = ptr(s3) if kernel == "amsgrad" else null
        return [ptr(w), ptr(s1), ptr(s2), vmax, ptr(g), n, 1e-3, 0.9, 0.999, 1e-8, 0, 1.0, 0.0,
                0.0, 1 - 0.9**10, 1 - 0.999**10]
    if kernel == "dropout":
        mask = np.empty((n + 7) // 8, np.uint8)
        return [ptr(s1), ptr(mask), ptr(g), n, 7, 0, round(0.3 * 2**32), 0.7, 0]
    if kernel == "batchnorm":
        c = 256
        rows = n // c
        stats = [np.zeros(c, np.float32) for _ in range(2)] + [np.zeros(c, np.float32), np.ones(c, np.float32)]
        gb = [np.ones(c, np.float32), np.zeros(c, np.float32)]
        return [ptr(s1), *map(ptr, stats), ptr(g), *map(ptr, gb), rows, c, 1, 1e-5, 0.1]
    if kernel == "adam8":
        codes = [np.full(n, 40, np.uint8) for _ in range(2)]
        scales = [np.full((n + 255) // 256, 0.01, np.float32) for _ in range(2)]
        null = ptr(None)
        return [ptr(w), null, ptr(codes[0]), ptr(scales[0]), ptr(codes[1]), ptr(scales[1]), ptr(g),
                n, 1e-3 / (1 - 0.9**10), 0.9, 0.1, 0.999, 0.001, 1 / (1 - 0.999**10), 0.0, 1e-8,
                1.0, 0.0, 0.0, 0, 2, 0, 10, 0, 0]
    if kernel == "triad":
        return [ptr(s1), ptr(w), ptr(g), n, 3.0]
    raise ValueError(kernel)


def _pointer_maker(ffi):
    types = {np.dtype(np.float32): "float *", np.dtype(np.uint8): "uint8_t *"}
    keep = []

    def ptr(a):
        if a is None:
            return ffi.NULL
        keep.append(a)
        return ffi.cast(types[a.dtype], ffi.from_buffer(a))
    return ptr, keep


def native_module():
    """The -march=native twin of the extension (built on first use)."""
    sources = [Path(p) for p in glob.glob(str(ROOT / "csrc" / "*"))]
    built = glob.glob(str(NATIVE_DIR / "fusedops" / "_fusedops_c*.so"))
    if not built or os.path.getmtime(built[0]) < max(p.stat().st_mtime for p in sources):
        NATIVE_DIR.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, FUSEDOPS_MARCH="native")
        subprocess.run([sys.executable, str(ROOT / "csrc" / "build_ffi.py"), str(NATIVE_DIR)],
                       cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
        built = glob.glob(str(NATIVE_DIR / "fusedops" / "_fusedops_c*.so"))
    spec = importlib.util.spec_from_file_location("fusedops_native._fusedops_c", built[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def builds():
    """{"portable": (ffi, lib), "native": (ffi, lib)}, or the reason they cannot be compared."""
    from fusedops import backends

    reason = backends.backend_unavailable_reason("c")
    if reason:
        return reason
    from fusedops import _c

    if len(_c.simd_paths()) < 2:
        return "the installed extension is not a portable build (FUSEDOPS_MARCH was set)"
    native = native_module()
    return {"portable": (_c.ffi, _c.lib), "native": (native.ffi, native.lib)}


def prepared(kernel, n, ffi, lib):
    """A no-argument call of `kernel` in one build, and the arrays behind its pointers (the
    call holds them too: a cast pointer does not keep its array alive)."""
    ptr, keep = _pointer_maker(ffi)
    args = _args(kernel, n, ptr)
    fn = getattr(lib, f"fo_{KERNELS[kernel][0]}_f32")
    return (lambda arrays=keep: fn(*args)), keep


def check_same_bits(kernel, n, both):
    outs = []
    for ffi, lib in both.values():
        fn, keep = prepared(kernel, n, ffi, lib)
        fn()
        outs.append([a.tobytes() for a in keep])
    assert outs[0] == outs[1], f"{kernel}: the portable and native builds differ"


_BUILDS = None


def _builds_or_skip():
    global _BUILDS
    if _BUILDS is None:
        _BUILDS = builds()
    if isinstance(_BUILDS, str):
        pytest.skip(_BUILDS)
    return _BUILDS


@pytest.mark.parametrize("n", bench_sizes(SIZES) if bench_sizes else SIZES)
@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("build", ["portable", "native"])
def test_build(benchmark, build, kernel, n):
    both = _builds_or_skip()
    benchmark.group = f"simd-{kernel} n={n}"
    if build == "portable":
        check_same_bits(kernel, min(n, 100_003), both)
    fn, _ = prepared(kernel, n, *both[build])
    fn()  # first touch
    run_benchmark(benchmark, fn, nbytes=KERNELS[kernel][1] * n)


def interleaved_table(sizes, repeat=15, clock=time.perf_counter):
    both = builds()
    if isinstance(both, str):
        raise SystemExit(both)
    from fusedops import _c, get_num_threads

    print(f"portable path: {_c.simd_path()}; native: -march=native; {get_num_threads()} threads; "
          f"{repeat} rounds, interleaved; clock {clock.__name__}")
    print(f"{'kernel':10} {'n':>9}  {'portable min/med ms':>20}  {'native min/med ms':>18}  native/portable min, med")
    for n in sizes:
        for kernel in KERNELS:
            check_same_bits(kernel, min(n, 100_003), both)
            fns = {b: prepared(kernel, n, *both[b])[0] for b in both}
            times = {b: [] for b in both}
            for fn in fns.values():
                fn()
            for _ in range(repeat):
                for b, fn in fns.items():
                    t0 = clock()
                    fn()
                    times[b].append(clock() - t0)
            mn = {b: min(t) * 1e3 for b, t in times.items()}
            md = {b: statistics.median(t) * 1e3 for b, t in times.items()}
            print(f"{kernel:10} {n:9d}  {mn['portable']:9.3f} {md['portable']:9.3f}  "
                  f"{mn['native']:8.3f} {md['native']:8.3f}   "
                  f"{mn['native'] / mn['portable']:.3f}, {md['native'] / md['portable']:.3f}")


def main(argv=None):
    import argparse

    import fusedops

    ap = argparse.ArgumentParser(description="portable vs -march=native, interleaved")
    ap.add_argument("sizes", nargs="*", type=lambda s: int(float(s)), default=SIZES)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with the process's CPU time (steadier than wall time on a busy "
                         "machine; with one thread it leaves out the time others hold the core)")
    args = ap.parse_args(argv)
    if args.threads:
        fusedops.set_num_threads(args.threads)
    interleaved_table(args.sizes, args.repeat, time.process_time if args.cpu_time else time.perf_counter)


if __name__ == "__main__":
    main()
