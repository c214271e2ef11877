"""Helpers shared by the nn tests: finite differences and RNG-offset control."""
import contextlib

import numpy as np

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


def one_blas_thread():
    """A context limiting BLAS to one thread. The small GEMMs of these tests gain nothing from
    more, and on a busy shared machine OpenBLAS's spinning threads slow them many times over."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")
