"""fusedops inside the user's process: serial thresholds, a process-wide thread count, Python
threads at the same time, no libgomp in the C extension (fork children: test_fork.py).
Anything that may abort or hang runs in a subprocess with a timeout."""
import os
import subprocess
import sys
import textwrap
import threading

import numba
import numpy as np
import pytest
from numba import prange

import fusedops
from fusedops import ops
from fusedops._threads import forced, thread_setting
from fusedops.ops import lowbit
from fusedops.ops.lowbit import BlockQuantized
from fusedops.kernels.cpu.jit import run

CPU = ["numba", "c"]
BIG = 1 << 18  # large enough for every thread to get a share (parallel runs are forced)
TIMEOUT = 240


def _adam(be, w0, g, steps=2):
    w, m, v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    for t in range(1, steps + 1):
        ops.adam_step(w, g, m, v, step=t, lr=1e-2, weight_decay=0.01, backend=be)
    return w, m, v


def _adam_lowbit(be, w0, g):
    w = w0.copy()
    m, v = (BlockQuantized.zeros(w.size, signed=s) for s in (True, False))
    lowbit.adam_step(w, g, m, v, step=1, lr=1e-2, backend=be)
    return w, m.codes, m.scales, v.codes, v.scales


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)


# --------------------------------------------------------------------------- serial / parallel

@pytest.mark.parametrize("n", [1, 7, 1027, 100_003])
@pytest.mark.parametrize("backend", CPU)
def test_serial_and_parallel_kernels_give_the_same_bits(backend, n):
    """Forced serial and forced parallel (tiny inputs split over the threads too) equal the
    default path bit for bit, for an optimizer, dropout (also with start=), batch norm (also
    its synchronized pieces) and a low-bit step."""
    w0, g = _data(n)
    x = np.random.default_rng(1).standard_normal((n + 1, 3), dtype=np.float32)
    outs = {}
    for mode in ("default", "serial", "parallel"):
        with (forced(mode) if mode != "default" else _nothing()):
            y, mask = ops.dropout_forward(w0, 0.3, seed=5, offset=2, backend=backend)
            ys, masks = ops.dropout_forward(w0, 0.3, seed=5, offset=2, start=7, backend=backend)
            bn = ops.batchnorm_forward(x, None, None, None, None, training=True, backend=backend)
            stats = ops.batchnorm_stats(x, backend=backend)
            sums = ops.batchnorm_grad_sums(x, x, bn[1], backend=backend)
            outs[mode] = [*_adam(backend, w0, g), y, mask, ys, masks, *bn, *stats, *sums,
                          *_adam_lowbit(backend, w0, g)]
    for mode in ("serial", "parallel"):
        for a, b in zip(outs[mode], outs["default"]):
            np.testing.assert_array_equal(a, b)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


SMALL_CALLS = textwrap.dedent("""
    import numpy as np
    from fusedops import ops
    from fusedops._c import lib
    from numba.np.ufunc import parallel
    from fusedops.kernels.cpu import batchnorm, dropout, lowbit, optim
    from fusedops.ops.lowbit import BlockQuantized, adam_step
    assert 16_000 < min(batchnorm.PARALLEL_MIN, dropout.PARALLEL_MIN, optim.PARALLEL_MIN,
                        lowbit.PARALLEL_MIN)
    x = np.random.default_rng(0).standard_normal(16_000).astype(np.float32)
    for be in ("numba", "c"):
        w, m, v = x.copy(), np.zeros_like(x), np.zeros_like(x)
        ops.adam_step(w, x, m, v, step=1, lr=1e-3, backend=be)
        ops.sgd_step(w, x, lr=1e-3, backend=be)
        ops.dropout_forward(x, 0.5, seed=1, start=3, backend=be)
        xb = x.reshape(160, 100)
        _, mean, _ = ops.batchnorm_forward(xb, None, None, None, None, training=True, backend=be)
        ops.batchnorm_stats(xb, backend=be)
        ops.batchnorm_grad_sums(xb, xb, mean, backend=be)
        adam_step(w, x, BlockQuantized.zeros(x.size, signed=True),
                  BlockQuantized.zeros(x.size, signed=False), step=1, lr=1e-3, backend=be)
    print(parallel._is_initialized, lib.fo_pool_workers())
    from fusedops._threads import forced
    with forced("parallel"):
        ops.adam_step(np.zeros(1 << 18, np.float32), np.ones(1 << 18, np.float32),
                      np.zeros(1 << 18, np.float32), np.zeros(1 << 18, np.float32), step=1,
                      lr=1, backend="c")
    print(lib.fo_pool_workers())
""")


def test_small_calls_wake_no_thread_pool():
    """16,000-element steps (also low-bit), dropout and batch norm (also the synchronized
    pieces; all under every threshold) start neither
    Numba's threads nor the C pool's; one large C step starts the pool's workers."""
    out = _python(SMALL_CALLS).split()
    assert out[:2] == ["False", "0"]
    assert int(out[2]) == min(os.cpu_count(), fusedops.get_num_threads()) - 1


def _python(script, env=None):
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=TIMEOUT, env=dict(os.environ, **(env or {})))
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


# --------------------------------------------------------------------------- thread count

def _mask_body(out):
    for i in prange(out.size):
        out[i] = numba.get_num_threads()


# a parallel kernel for run() that writes the Numba thread mask it runs with (not cached: it
# reads a dynamic global)
_mask_probe = numba.njit(parallel=True)(_mask_body)
_mask_probe.fusedops_parallel_min, _mask_probe.fusedops_serial = 1, numba.njit(_mask_body)


def _from_thread(fn):
    box = []
    t = threading.Thread(target=lambda: box.append(fn()))
    t.start()
    t.join(TIMEOUT)
    return box[0]


def _numba_mask():
    out = np.zeros(1, np.int64)
    run(_mask_probe, 1, out)
    return int(out[0])


def test_set_num_threads_holds_in_every_python_thread():
    from fusedops._c import lib

    before = thread_setting()
    try:
        fusedops.set_num_threads(1)
        assert _from_thread(fusedops.get_num_threads) == 1
        assert _from_thread(_numba_mask) == 1
        assert _from_thread(lambda: lib.fo_probe_team(BIG, 1)) == 1
        full = min(2, os.cpu_count())
        fusedops.set_num_threads(full)
        assert _from_thread(_numba_mask) == full
        assert _from_thread(lambda: lib.fo_probe_team(BIG, 1)) == full
        assert lib.fo_probe_team(BIG - 1, BIG) == 1  # under the threshold: serial
    finally:
        fusedops.set_num_threads(before)


# --------------------------------------------------------------------------- Python threads

@pytest.mark.parametrize("n", [20_000, BIG])
@pytest.mark.parametrize("backend", CPU)
def test_four_python_threads_equal_serial(backend, n):
    """4 threads at once equal one after another: serial twins (20K) and parallel kernels
    (BIG, forced: 4 threads then share or contend for one pool)."""
    inputs = [_data(n, seed) for seed in range(4)]
    serial = [_adam(backend, w, g, steps=3) for w, g in inputs]
    results = [None] * 4

    def work(i):
        results[i] = _adam(backend, *inputs[i], steps=3)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    with (forced("parallel") if n == BIG else _nothing()):
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
    for got, want in zip(results, serial):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", ["serial", "parallel"])
@pytest.mark.parametrize("backend", CPU)
def test_kernels_release_the_gil(backend, mode):
    """With a 100 s switch interval the GIL changes hands only where a thread releases it: the
    main thread runs before the worker's 30 kernel calls are over only if the kernels (Numba
    nogil; cffi) release it. Called at the kernel layer: no NumPy call in between releases it.
    (A kernel that held the GIL would let the main thread in only after the last call.)"""
    from fusedops import _dispatch
    from fusedops.kernels.cpu import optim

    w, g = _data(1 << 21)
    m, v = np.zeros_like(w), np.zeros_like(w)
    args = (w, m, v, None, g)
    scalars = (1e-3, 0.9, 0.999, 1e-8, 0, 1.0, 0.0, 0.0, 0.1, 0.001)
    started, done, seen = threading.Event(), threading.Event(), []

    def work(calls=30):
        started.set()
        for _ in range(calls):
            if backend == "numba":
                optim.adam_update(*args, *scalars)
            else:
                _dispatch.launch("c", _dispatch.ADAM_UPDATE, args, scalars=scalars)
        done.set()

    interval = sys.getswitchinterval()
    with forced(mode):
        work(1)  # compiled beforehand
        started.clear()
        done.clear()
        sys.setswitchinterval(100.0)
        try:
            t = threading.Thread(target=work)
            t.start()
            started.wait()
            seen.append(done.is_set())
            t.join(TIMEOUT)
        finally:
            sys.setswitchinterval(interval)
    assert seen == [False]


def test_c_extension_links_no_openmp_runtime():
    """pool.c serves every OpenMP entry point the kernels use; an undefined GOMP_ / omp_ symbol
    would bind to whatever libgomp the process holds (or fail to load)."""
    import shutil

    from fusedops import _fusedops_c

    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("binutils' nm is not installed")
    out = subprocess.run([nm, "-D", "--undefined-only", _fusedops_c.__file__],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    imported = [line.split()[-1] for line in out.splitlines()]
    assert imported and not [s for s in imported if s.startswith(("GOMP_", "omp_", "kmp_"))]
