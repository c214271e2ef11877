"""Optimizer steps for the CUDA backend: one grid-stride launch per step.

Same contract as fusedops.reference.optim, with the element updates of kernels/common/optim.py
(the ones the CPU backend compiles) inlined into the loops. Each thread walks i, i + stride, ...
so a warp reads and writes consecutive elements (coalesced); the grid is sized by grid_for to
fill the device once, which matters on the GPU where each extra launch costs about as much as a
small step. The launchers derive the loop constants once on the host and cast them to the
arrays' dtype (a Python float in a float32 kernel would promote the arithmetic to float64).
Optional buffers are None or an array: Numba compiles one specialization per combination and
prunes the `is None` branches, so the loop bodies carry no per-element option tests. No
fastmath: the IEEE division and square root cost nothing next to the memory traffic of a step.
"""

import math

from numba import cuda

from ..common import optim as common
from .launch import block_for, current_stream, grid_for

_b = common.build(cuda.jit(device=True, inline="always"))
_sgd_at, _adagrad_at, _rmsprop_at = _b.sgd_at, _b.adagrad_at, _b.rmsprop_at
_adam_moments, _amsgrad_max, _adam_param = _b.adam_moments, _b.amsgrad_max, _b.adam_param


@cuda.jit
def _sgd_kernel(w, h, g, lr, beta, nesterov, l2, l1, zero):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, w.size, stride):
        _sgd_at(i, w, h, g, lr, beta, nesterov, l2, l1, zero)


@cuda.jit
def _adagrad_kernel(w, s, g, lr, eps_in, eps_out, l2, l1, zero):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, w.size, stride):
        _adagrad_at(i, w, s, g, lr, eps_in, eps_out, l2, l1, zero)


@cuda.jit
def _rmsprop_kernel(w, s, h, ga, g, lr, alpha, oma, eps_in, eps_out, beta, l2, l1, zero):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, w.size, stride):
        _rmsprop_at(i, w, s, h, ga, g, lr, alpha, oma, eps_in, eps_out, beta, l2, l1, zero)


@cuda.jit
def _adam_kernel(w, m, v, vmax, g, step_size, b1, omb1, b2, omb2, inv_c2, eps_in, eps_out,
                 decay, l2, l1, zero):
    # Two elements a grid apart per iteration, every load issued before any store: the compiler
    # keeps loads below stores that may alias them, so this doubles the bytes each thread has
    # in flight (PyTorch's multi_tensor_apply does the same with ILP 4). Past the end, the
    # partner index k repeats i: same loads, no store.
    start, stride, n = cuda.grid(1), cuda.gridsize(1), w.size
    for i in range(start, n, 2 * stride):
        j = i + stride
        k = j if j < n else i
        w0, g0, m0, v0 = w[i], g[i], m[i], v[i]
        w1, g1, m1, v1 = w[k], g[k], m[k], v[k]
        if vmax is not None:
            x0, x1 = vmax[i], vmax[k]
        m0, v0 = _adam_moments(w0, g0, m0, v0, b1, omb1, b2, omb2, l2, l1, zero)
        m1, v1 = _adam_moments(w1, g1, m1, v1, b1, omb1, b2, omb2, l2, l1, zero)
        m[i], v[i] = m0, v0
        if vmax is not None:
            v0 = _amsgrad_max(x0, v0)
            vmax[i] = v0
        w[i] = _adam_param(w0, m0, v0, step_size, inv_c2, eps_in, eps_out, decay)
        if j < n:
            m[j], v[j] = m1, v1
            if vmax is not None:
                v1 = _amsgrad_max(x1, v1)
                vmax[j] = v1
            w[j] = _adam_param(w1, m1, v1, step_size, inv_c2, eps_in, eps_out, decay)


@cuda.jit
def _nonfinite_kernel(count, g):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    bad = 0
    for i in range(start, g.size, stride):
        if not math.isfinite(g[i]):
            bad += 1
    if bad:  # rare: one atomic per thread that saw a NaN/Inf, none otherwise
        cuda.atomic.add(count, 0, bad)


def _grid(n, threads_per_block):
    tpb = block_for(n, threads_per_block)
    return grid_for(n, tpb), tpb, current_stream()


def sgd_update(w, h, g, lr, momentum, nesterov, l2, l1, *, threads_per_block):
    """w (n,), h (n,) or None, g (n,) device arrays: one SGD step."""
    if w.size:
        _sgd_kernel[_grid(w.size, threads_per_block)](
            w, h, g, *common.sgd_constants(w.dtype.type, lr, momentum, nesterov, l2, l1))


def adagrad_update(w, s, g, lr, eps, eps_inside_sqrt, l2, l1, *, threads_per_block):
    """w, s, g (n,) device arrays: one AdaGrad step."""
    if w.size:
        _adagrad_kernel[_grid(w.size, threads_per_block)](
            w, s, g, *common.adagrad_constants(w.dtype.type, lr, eps, eps_inside_sqrt, l2, l1))


def rmsprop_update(w, s, h, ga, g, lr, alpha, eps, eps_inside_sqrt, momentum, l2, l1, *,
                   threads_per_block):
    """w, s (n,); h, ga (n,) or None; g (n,) device arrays: one RMSprop step."""
    if w.size:
        _rmsprop_kernel[_grid(w.size, threads_per_block)](w, s, h, ga, g, *common.rmsprop_constants(
            w.dtype.type, lr, alpha, eps, eps_inside_sqrt, momentum, l2, l1))


def adam_update(w, m, v, vmax, g, lr, beta1, beta2, eps, eps_inside_sqrt, decay, l2, l1, c1, c2,
                *, threads_per_block):
    """w, m, v (n,); vmax (n,) or None; g (n,) device arrays: one Adam/AdamW/AMSGrad step."""
    if w.size:
        _adam_kernel[_grid(w.size, threads_per_block)](w, m, v, vmax, g, *common.adam_constants(
            w.dtype.type, lr, beta1, beta2, eps, eps_inside_sqrt, decay, l2, l1, c1, c2))


def nonfinite_count(count, g, *, threads_per_block):
    """count (1,) int64 device array += the number of NaN/Inf entries of g (n,)."""
    if g.size:
        _nonfinite_kernel[_grid(g.size, threads_per_block)](count, g)
