"""The C backend's SIMD paths (csrc/simd.h): the load-time choice matches this CPU, every path
compiled here computes the same bits, FUSEDOPS_SIMD forces a path or fails clearly, and the
build script's header parsing and flags."""
import importlib.util
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fusedops import backends, ops

pytestmark = pytest.mark.skipif(backends.backend_unavailable_reason("c") is not None,
                                reason="the C extension is not built")
if backends.backend_unavailable_reason("c") is None:
    from fusedops import _c

ROOT = Path(__file__).resolve().parent.parent
PORTABLE = ["baseline", "avx2", "avx512"]
# The CPU features (as /proc/cpuinfo names them) each x86-64 level needs: psABI's x86-64-v3
# and -v4 (lzcnt is "abm" there).
LEVEL_FLAGS = {
    "avx2": {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"},
    "avx512": {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"},
}


def _cpu_flags():
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def _expected_path(flags):
    """The best portable level this CPU runs, from the kernel's view of its features."""
    if not LEVEL_FLAGS["avx2"] <= flags:
        return "baseline"
    return "avx512" if LEVEL_FLAGS["avx512"] <= flags else "avx2"


def _run(code, env_extra):
    env = {k: v for k, v in os.environ.items() if k != "FUSEDOPS_SIMD"}
    env.update(env_extra)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_load_picks_the_best_path_this_cpu_runs():
    flags = _cpu_flags()
    if _c.simd_paths() != PORTABLE or flags is None or platform.machine() != "x86_64":
        pytest.skip("not a portable x86-64 build on Linux")
    path = _run("from fusedops import _c; print(_c.simd_path())", {})
    assert path == _expected_path(flags)
    for name in PORTABLE[1:]:
        expected = LEVEL_FLAGS["avx2"] <= flags and (name == "avx2" or LEVEL_FLAGS[name] <= flags)
        assert _c.simd_supported(name) == expected, name
    assert _c.simd_supported("baseline")


def _vec(n, dtype, seed):
    x = np.random.default_rng(seed).standard_normal(n).astype(dtype)
    x[::7] = 0  # sign(0), exact zeros
    return x


def _outputs():
    """The bytes every C kernel writes, over sizes with vector tails and both thread paths."""
    out = {}
    optim_cases = [("sgd", 0, {}), ("sgd", 1, dict(momentum=0.9, nesterov=True, l1=1e-3)),
                   ("sgd", 1, dict(momentum=0.9, weight_decay=0.01)),
                   ("adagrad", 1, dict(weight_decay=0.01)), ("adagrad", 1, dict(eps_inside_sqrt=True)),
                   ("rmsprop", 1, {}), ("rmsprop", 3, dict(momentum=0.8, centered=True, l1=1e-3)),
                   ("rmsprop", 3, dict(centered=True, eps_inside_sqrt=True)),
                   ("adam", 2, dict(weight_decay=0.01)), ("adam", 3, dict(amsgrad=True, l1=1e-3)),
                   ("adam", 2, dict(decoupled=True, weight_decay=0.1, eps_inside_sqrt=True))]
    for dt in (np.float32, np.float64):
        for n in (13, 40_009):  # scalar tail only; the parallel path with a tail
            for k, (op, nstate, kw) in enumerate(optim_cases):
                w, state = _vec(n, dt, 1), [np.abs(_vec(n, dt, 2 + j)) for j in range(nstate)]
                for step in (1, 2):
                    extra = {"step": step} if op == "adam" else {}
                    getattr(ops, f"{op}_step")(w, _vec(n, dt, 9 + step), *state, lr=1e-2,
                                               backend="c", **kw, **extra)
                out[f"{op}{k}.{n}.{dt.__name__}"] = [w, *state]
            x = _vec(n, dt, 4)
            y, mask = ops.dropout_forward(x, 0.3, seed=2**40 + 7, offset=5, backend="c")
            dx = ops.dropout_backward(x, p=0.3, mask=mask, backend="c")
            a, b = np.empty_like(x), np.empty_like(x)
            ops.stream_triad(a, x, y, scalar=0.7, backend="c")
            ops.stream_copy(b, x, backend="c")
            out[f"dropout.stream.{n}.{dt.__name__}"] = [y, mask, dx, a, b]
        x = (_vec(257 * 33, dt, 6) + 100.0).reshape(257, 33)
        gamma, beta, rm, rv = _vec(33, dt, 7), _vec(33, dt, 8), np.zeros(33, dt), np.ones(33, dt)
        y, mean, inv = ops.batchnorm_forward(x, gamma, beta, rm, rv, training=True, backend="c")
        grads = ops.batchnorm_backward(_vec(x.size, dt, 9).reshape(x.shape), x, gamma, mean, inv,
                                       backend="c")
        out[f"batchnorm.{dt.__name__}"] = [y, mean, inv, rm, rv, *grads]
    out["mask"] = [ops.dropout_mask(100_003, 0.5, seed=3, offset=2**33, backend="c")]
    return {k: [np.asarray(a).tobytes() for a in v] for k, v in out.items()}


@pytest.fixture
def restore_path():
    previous = _c.simd_path()
    yield
    _c.set_simd_path(previous)


@pytest.fixture(scope="module")
def baseline_bits():
    previous = _c.set_simd_path(_c.simd_paths()[0])
    try:
        return _outputs()
    finally:
        _c.set_simd_path(previous)


@pytest.mark.parametrize("path", PORTABLE[1:])
def test_every_path_gives_the_baseline_bits(path, baseline_bits, restore_path):
    if path not in _c.simd_paths():
        pytest.skip(f"this build has no {path} path (paths: {_c.simd_paths()})")
    if not _c.simd_supported(path):
        pytest.skip(f"this CPU cannot run the {path} path; run this test on one that can")
    _c.set_simd_path(path)
    assert _c.simd_path() == path
    got = _outputs()
    assert got.keys() == baseline_bits.keys()
    bad = [k for k in got if got[k] != baseline_bits[k]]
    assert not bad, f"{path} differs from {_c.simd_paths()[0]} in {bad}"


def test_set_path_checks_its_argument(restore_path):
    with pytest.raises(ValueError, match="name must be one of"):
        _c.set_simd_path("sse9")
    unsupported = [p for p in _c.simd_paths() if not _c.simd_supported(p)]
    if not unsupported:
        pytest.skip("this CPU runs every compiled path")
    before = _c.simd_path()
    with pytest.raises(ValueError, match="cannot run"):
        _c.set_simd_path(unsupported[0])
    assert _c.simd_path() == before


def test_env_var_forces_a_path_or_makes_c_unavailable(monkeypatch, restore_path):
    baseline = _c.simd_paths()[0]
    monkeypatch.setenv("FUSEDOPS_SIMD", baseline)
    assert _c.apply_simd_env() is None and _c.simd_path() == baseline
    monkeypatch.setenv("FUSEDOPS_SIMD", "bogus")
    assert "FUSEDOPS_SIMD must be one of" in _c.apply_simd_env()
    # end to end, in a fresh process: a bad value names the variable where the backend is used
    code = ("import numpy as np; from fusedops import ops\n"
            "try:\n ops.sgd_step(np.ones(3, np.float32), np.ones(3, np.float32), lr=1.0, backend='c')\n"
            "except Exception as e: print(type(e).__name__, e)")
    out = _run(code, {"FUSEDOPS_SIMD": "bogus"})
    assert out.startswith("BackendUnavailableError") and "FUSEDOPS_SIMD" in out


# --------------------------------------------------------------------------- the build script

def _build_ffi():
    spec = importlib.util.spec_from_file_location("build_ffi", ROOT / "csrc" / "build_ffi.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # defines functions only; make_ffi() is what builds
    return mod


def test_every_header_function_has_its_source_and_is_classified():
    bf = _build_ffi()
    protos = bf.prototypes((ROOT / "csrc" / "fusedops.h").read_text())
    simd, once = bf._classify_sources()  # raises on an unclassified csrc/*.c
    assert {f for p in protos for f in p[0]} <= set(simd) | set(once)
    assert {"runtime.c", "simd.c"} <= set(once) and "optim.c" in simd
    names = {p[2]: p for p in protos}
    assert names["fo_adam_update_f32"][0] == ("optim.c",)
    assert names["fo_simd_set"][:3] == (("simd.c",), "int", "fo_simd_set")
    assert bf._dispatched(("optim.c",), simd) and not bf._dispatched(("runtime.c", "pool.c"), simd)
    with pytest.raises(RuntimeError, match="one block names kernels and runtime"):
        bf._dispatched(("optim.c", "runtime.c"), simd)
    assert bf._param_names(names["fo_dropout_mask"][3]) == ["mask", "n", "seed", "offset",
                                                            "threshold", "start"]
    assert names["fo_batchnorm_stats_f32"][0] == ("batchnorm_sync.c",)
    assert bf._dispatched(("batchnorm_sync.c",), simd)  # a kernel: compiled per level
    assert bf._param_names("void") == []


def test_build_flags(monkeypatch):
    bf = _build_ffi()
    monkeypatch.delenv("FUSEDOPS_MARCH", raising=False)
    monkeypatch.delenv("FUSEDOPS_EXTRA_CFLAGS", raising=False)
    monkeypatch.setattr(bf, "_x86_64", lambda: True)
    flags, macros, levels = bf.build_config()
    assert "-march=x86-64-v2" in flags and levels == 3 and ("FO_SIMD_PORTABLE", "1") in macros
    assert {"-ffp-contract=off", "-fno-math-errno", "-fopenmp"} <= set(flags)
    monkeypatch.setattr(bf, "_x86_64", lambda: False)  # aarch64: the compiler's default target
    assert not any(f.startswith("-march") for f in bf.build_config()[0])
    monkeypatch.setenv("FUSEDOPS_MARCH", "native")
    flags, macros, levels = bf.build_config()
    assert "-march=native" in flags and levels == 1 and ("FO_SIMD_SINGLE_NAME", '"native"') in macros
    monkeypatch.setenv("FUSEDOPS_MARCH", "")
    assert not any(f.startswith("-march") for f in bf.build_config()[0])


def test_unclassified_source_fails_the_build(monkeypatch, tmp_path):
    bf = _build_ffi()
    for name in ("optim.c", "runtime.c", "lowbit_new.c"):
        (tmp_path / name).write_text("")
    monkeypatch.setattr(bf, "HERE", str(tmp_path))
    with pytest.raises(RuntimeError, match="lowbit_new.c not classified"):
        bf._classify_sources()
