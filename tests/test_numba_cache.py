"""`cache=True` on parallel Numba kernels is safe here: a second process loads the cached
machine code (a cache hit) and computes the same bits as the first, which compiled it."""
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import hashlib
    import numpy as np
    from fusedops import ops
    from fusedops.kernels.cpu import stream
    b, c = np.random.default_rng(0).standard_normal((2, 100_003)).astype(np.float32)
    a = np.empty_like(b)
    ops.stream_triad(a, b, c, scalar=0.5, backend="numba")
    hits = sum(stream._triad_kernel.stats.cache_hits.values())
    print(hashlib.sha256(a.tobytes()).hexdigest(), hits)
""")


def test_second_process_hits_the_cache_and_agrees(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                           text=True, check=True).stdout.split() for _ in range(2)]
    (digest1, hits1), (digest2, hits2) = runs
    assert digest1 == digest2
    assert int(hits1) == 0 and int(hits2) >= 1
    assert any(name.endswith(".nbi") for _, _, files in os.walk(tmp_path) for name in files)
