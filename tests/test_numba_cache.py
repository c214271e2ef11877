"""Numba's disk cache: a second process loads the cached machine code (a cache hit) and computes
the same bits as the first; an edit to a shared body (kernels/common) is recompiled, never
served stale from the cache; a serial twin never shares a cache entry with its parallel
kernel. Each process runs with a private NUMBA_CACHE_DIR."""
import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

import fusedops.kernels

SCRIPT = textwrap.dedent("""
    import hashlib
    import numpy as np
    from fusedops import ops
    from fusedops.kernels.cpu import stream
    b, c = np.random.default_rng(0).standard_normal((2, 100_003)).astype(np.float32)
    a = np.empty_like(b)
    ops.stream_triad(a, b, c, scalar=0.5, backend="numba")
    k = stream._triad_kernel  # the parallel kernel or its serial twin ran, by size
    hits = sum(sum(kk.stats.cache_hits.values()) for kk in (k, k.fusedops_serial))
    print(hashlib.sha256(a.tobytes()).hexdigest(), hits)
""")


def test_second_process_hits_the_cache_and_agrees(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                           text=True, check=True, timeout=300).stdout.split() for _ in range(2)]
    (digest1, hits1), (digest2, hits2) = runs
    assert digest1 == digest2
    assert int(hits1) == 0 and int(hits2) >= 1
    assert any(name.endswith(".nbi") for _, _, files in os.walk(tmp_path) for name in files)


# Runs SGD (no momentum) through a copy of the kernels package, the parallel kernel and its
# serial twin, and reports each result and whether it was compiled or loaded from the cache.
TWIN_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from kernelcopy.common.optim import sgd_constants
    from kernelcopy.cpu import optim
    from kernelcopy.cpu.jit import serial_twin
    w = np.linspace(-1.0, 1.0, 1001, dtype=np.float32)
    g = np.cos(3.0 * w).astype(np.float32)
    out = {}
    for name, k in (("parallel", optim._sgd_kernel), ("serial", serial_twin(optim._sgd_kernel))):
        x = w.copy()
        k(x, None, g, *sgd_constants(np.float32, 0.5, 0.0, False, 0.0, 0.0))
        out[name] = [x.tolist(), sum(k.stats.cache_hits.values()),
                     sum(k.stats.cache_misses.values())]
    print(json.dumps(out))
""")


def _run_copy(root, cache):
    # no .pyc: an edit within the same second as the last import must still be seen
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONDONTWRITEBYTECODE="1")
    res = subprocess.run([sys.executable, "-c", TWIN_SCRIPT, str(root)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return {k: (np.array(v[0], np.float32), v[1], v[2])
            for k, v in json.loads(res.stdout).items()}


def test_edited_body_is_recompiled_not_loaded_stale(tmp_path):
    """Numba's own cache keys a kernel on its file only: without cpu/jit.py's source digest,
    the third run below would load the first run's machine code (a hit) and subtract."""
    src = Path(fusedops.kernels.__file__).parent
    shutil.copytree(src, tmp_path / "kernelcopy", ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "cache"
    w = np.linspace(-1.0, 1.0, 1001, dtype=np.float32)
    g = np.cos(3.0 * w).astype(np.float32)

    first = _run_copy(tmp_path, cache)
    second = _run_copy(tmp_path, cache)
    for name in ("parallel", "serial"):
        assert first[name][1:] == (0, 1), name  # compiled: the twin did not hit the kernel's entry
        assert second[name][1:] == (1, 0), name  # loaded from the cache
        np.testing.assert_array_equal(second[name][0], first[name][0])
        np.testing.assert_allclose(first[name][0], w - 0.5 * g, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(first["serial"][0], first["parallel"][0])

    body = tmp_path / "kernelcopy" / "common" / "optim.py"
    text = body.read_text()
    assert text.count("w[i] = wi - lr * gi") == 1
    body.write_text(text.replace("w[i] = wi - lr * gi", "w[i] = wi + lr * gi"))
    edited = _run_copy(tmp_path, cache)
    for name in ("parallel", "serial"):
        assert edited[name][1:] == (0, 1), name  # recompiled
        np.testing.assert_allclose(edited[name][0], w + 0.5 * g, rtol=1e-6, atol=1e-6)


def test_cpu_kernels_reach_only_the_digested_sources():
    """The cache digest covers kernels/common and kernels/cpu: a CPU kernel module importing
    anything else of the package could go stale unseen."""
    from fusedops.kernels.cpu.jit import SOURCES

    allowed = {f"fusedops.kernels.{s}" for s in SOURCES}
    cpu = Path(fusedops.kernels.__file__).parent / "cpu"
    for path in cpu.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = (["fusedops.kernels.cpu", "fusedops.kernels"][node.level - 1]
                          + (f".{node.module}" if node.module else ""))
                assert any(target == a or target.startswith(a + ".") for a in allowed), (
                    f"{path.name} imports {target}")
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                assert not any(n.startswith("fusedops") for n in names), f"{path.name}: {names}"
