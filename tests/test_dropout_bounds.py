"""The Numba CPU dropout kernels stay inside their buffers at chunk tails: run them compiled
with bounds checking (NUMBA_BOUNDSCHECK=1, a fresh cache) in a subprocess, on sizes whose last
chunk ends inside a Philox block and inside a mask byte. Numba does not check bounds by
default, so an overrun of the per-chunk buffer would otherwise pass silently."""
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import numpy as np
    from fusedops import ops
    # chunk = 1024 elements; parallel kernels from 32768 elements
    # start % 4 != 0 takes the shifted path: m + start % 4 words per chunk
    for n, start in [(n, s) for n in [1, 5, 13, 1021, 1023, 2045, 32768 + 1021, 32768 + 1023]
                     for s in (0, 3)]:
        x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
        kw = dict(seed=n, offset=1, start=start)
        y, m = ops.dropout_forward(x, 0.3, backend="numba", **kw)
        y0, m0 = ops.dropout_forward(x, 0.3, backend="numpy", **kw)
        assert np.array_equal(m, m0) and np.array_equal(y, y0), n
        assert np.array_equal(ops.dropout_mask(n, 0.3, backend="numba", **kw), m0), n
        dx = ops.dropout_backward(x, p=0.3, mask=m, backend="numba")
        assert np.array_equal(dx, y0), n
        dx = ops.dropout_backward(x, p=0.3, backend="numba", **kw)
        assert np.array_equal(dx, y0), n
    print("ok")
""")


@pytest.mark.slow
def test_numba_kernels_in_bounds(tmp_path):
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")
