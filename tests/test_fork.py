"""fork safety: after the parent ran parallel kernels, os.fork children and multiprocessing
fork-pool workers compute the parent's bits on both CPU backends and every Numba threading
layer, with no abort and no hang, and the parent keeps its threads. Each layer runs in its own
subprocess with a timeout (a hang fails the test instead of stalling the suite)."""
import os
import subprocess
import sys
import textwrap

import pytest

from fusedops._threads import tbb_library

TIMEOUT = 240

FORK = textwrap.dedent("""
    import hashlib, multiprocessing, os, sys
    import numpy as np
    import fusedops
    from fusedops import ops
    from fusedops._c import lib
    from fusedops._threads import forced
    from fusedops.kernels.cpu.jit import POLICY
    n = 1 << 18
    rng = np.random.default_rng(0)
    W, G = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)

    def digest(be):
        w, m, v = W.copy(), np.zeros(n, np.float32), np.zeros(n, np.float32)
        for t in (1, 2):
            ops.adam_step(w, G, m, v, step=t, lr=1e-2, backend=be)
        y, mask = ops.dropout_forward(W, 0.25, seed=3, backend=be)
        return hashlib.sha256(b"".join(a.tobytes() for a in (w, m, v, y, mask))).hexdigest()

    def child(be):
        return digest(be), POLICY.serial_only, lib.fo_probe_team(n, 1)

    for be in sys.argv[1:]:
        with forced("parallel"):  # whatever the thresholds; the children inherit it
            want = digest(be)  # the parent's pools are running now
            team = lib.fo_probe_team(n, 1)
            pid = os.fork()
            if pid == 0:
                got, serial, cteam = child(be)
                os._exit(0 if (got, cteam) == (want, team) else 3)
            assert os.waitpid(pid, 0)[1] == 0, "os.fork child differs"
            with multiprocessing.get_context("fork").Pool(2) as pool:
                kids = pool.map(child, [be, be])
            assert [k[0] for k in kids] == [want, want], "pool child differs"
            assert [k[2] for k in kids] == [team, team], "C pool child runs a different team"
            assert digest(be) == want and lib.fo_probe_team(n, 1) == team  # parent keeps its threads
            print(be, fusedops._threads.numba_layer(), kids[0][1], team, lib.fo_pool_workers(),
                  lib.fo_get_num_threads())
""")


def _layers():
    params = [pytest.param("omp", id="omp"), pytest.param("workqueue", id="workqueue")]
    skip = pytest.mark.skipif(tbb_library() is None, reason="the tbb wheel is not installed "
                              "(pip install 'fusedops[tbb]')")
    return [pytest.param("tbb", id="tbb", marks=skip), *params]


@pytest.mark.parametrize("layer", _layers())
def test_fork_children_compute_the_same(layer):
    """After the parent ran parallel kernels: os.fork children and a fork Pool's workers get
    the parent's bits with no abort and no hang; Numba children run serially under GNU OpenMP
    (not fork-safe) and in parallel on tbb / workqueue; C children start a fresh pool (same
    team as the parent); the parent computes the same afterwards. C runs in one layer's run."""
    backends = ["numba", "c"] if layer == "omp" else ["numba"]
    lines = _run_fork(layer, backends)
    rows = [line.split() for line in lines.strip().splitlines()]
    assert rows[0][:3] == ["numba", layer, str(layer == "omp")]
    if layer == "omp":  # the C row: a full team in parent and children, team - 1 workers
        threads = int(rows[1][5])
        assert rows[1][0] == "c" and rows[1][3:5] == [str(threads), str(threads - 1)]


def _run_fork(layer, backends):
    res = subprocess.run([sys.executable, "-c", FORK, *backends], capture_output=True,
                         text=True, timeout=TIMEOUT,
                         env=dict(os.environ, NUMBA_THREADING_LAYER=layer))
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout
