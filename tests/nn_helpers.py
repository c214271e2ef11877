"""Helpers shared by the nn tests: finite differences and RNG-offset control."""
import contextlib

import numpy as np

import fusedops
from fusedops import backends
from fusedops.nn import Dropout, Sequential

HOST_BACKENDS = [b for b in ("numpy", "numba", "c") if backends.backend_unavailable_reason(b) is None]


def numeric_grad(f, a, h=1e-6):
    """Central differences of the scalar f() with respect to every entry of `a` (modified in
    place and restored; f must read `a`)."""
    flat = a.reshape(-1)
    assert np.shares_memory(flat, a)
    g = np.zeros(flat.size)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = f()
        flat[i] = old - h
        fm = f()
        flat[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g.reshape(a.shape)


def dropout_layers(layer):
    if isinstance(layer, Sequential):
        return [d for sub in layer for d in dropout_layers(sub)]
    return [layer] if isinstance(layer, Dropout) else []


def set_offsets(net, offset):
    """Pin every dropout layer's offset, so repeated forwards draw the same mask."""
    for d in dropout_layers(net):
        d.offset = offset


@contextlib.contextmanager
def single_threaded():
    """One BLAS thread and one fusedops CPU thread. The small GEMMs and kernels of these tests
    gain nothing from more, and on a busy shared machine spinning worker threads (OpenBLAS's,
    Numba's) slow them down many times over and make the test time erratic."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(1, user_api="blas")
    before = fusedops.get_num_threads()
    fusedops.set_num_threads(1)
    try:
        with limits:
            yield
    finally:
        fusedops.set_num_threads(before)
