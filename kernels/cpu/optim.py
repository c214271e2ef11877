"""Optimizer steps for the Numba CPU backend: one parallel, vectorized pass per step.

Same contract as fusedops.reference.optim (outputs, grad, hyperparameters). The element updates
are kernels/common/optim.py's, inlined into each prange loop; the launchers derive the loop
constants (1 - beta, lr/c1, 1/c2, where eps goes) once, in float64,
and cast them to the arrays' dtype so no float64 promotion reaches a float32 loop.

Why the options:
- error_model="numpy": Python's error model checks every division for zero, a branch that keeps
  LLVM from vectorizing the loop.
- no fastmath: with "contract" / "reassoc" LLVM may fuse or reorder differently when the same
  kernel is compiled in-process and when it is loaded from Numba's cache, and a resumed run
  would not continue bit for bit (cpu/jit.py). The loops vectorize without it (vdivps,
  vsqrtps; checked with inspect_asm), a memory-bound step is as fast (serial Adam, 8M fp32:
  9.0 ms with the old flags, 9.2 ms without) and one in cache ~12% slower (16K: 8.9 vs
  10.1 us), next to a call's ~10 us of validation.
- run() picks the serial twin below PARALLEL_MIN elements (cpu/jit.py).
- Optional buffers (momentum, centered average, AMSGrad's max) are None or an array: Numba
  compiles one specialization per combination and prunes the `is None` branches, so each
  inner loop is branch-free. Boolean options become arithmetic (eps_in/eps_out) or a select
  on a loop constant (Nesterov), which LLVM hoists out of the loop (loop unswitching).
"""
import math

from numba import njit, prange

from ..common import optim as common
from .jit import kernel, run

# From this many elements a step runs in parallel; below, its serial twin wakes no thread pool.
# Measured by benchmarks/test_threads.py thresholds (the smallest size from which parallel is
# >= 1.1x faster at every larger size; README "Using fusedops inside your program"). On the
# 2-core EPYC VM when quiet (load ~1, 2026-11-29 14:49, TBB layer, two sweeps of 8 rounds):
# Adam crossed over at 64K and 256K (1.28x at 256K, 1.47x at 1M); SGD, memory-bound, only at
# 1M (0.9-0.95x at 64K-256K). One value per family: 256K, where Adam gains ~1.3x and SGD loses
# ~5%. (On the same VM loaded by other builds, load ~4, no size up to 4M paid.)
PARALLEL_MIN = 1 << 18
_JIT = dict(error_model="numpy", parallel_min=PARALLEL_MIN)

_b = common.build(njit(inline="always"))
_sgd_at, _adagrad_at, _rmsprop_at, _adam_at = _b.sgd_at, _b.adagrad_at, _b.rmsprop_at, _b.adam_at


@kernel(**_JIT)
def _sgd_kernel(w, h, g, lr, beta, nesterov, l2, l1, zero):
    for i in prange(w.size):
        _sgd_at(i, w, h, g, lr, beta, nesterov, l2, l1, zero)


@kernel(**_JIT)
def _adagrad_kernel(w, s, g, lr, eps_in, eps_out, l2, l1, zero):
    for i in prange(w.size):
        _adagrad_at(i, w, s, g, lr, eps_in, eps_out, l2, l1, zero)


@kernel(**_JIT)
def _rmsprop_kernel(w, s, h, ga, g, lr, alpha, oma, eps_in, eps_out, beta, l2, l1, zero):
    for i in prange(w.size):
        _rmsprop_at(i, w, s, h, ga, g, lr, alpha, oma, eps_in, eps_out, beta, l2, l1, zero)


@kernel(**_JIT)
def _adam_kernel(w, m, v, vmax, g, step_size, b1, omb1, b2, omb2, inv_c2, eps_in, eps_out,
                 decay, l2, l1, zero):
    for i in prange(w.size):
        _adam_at(i, w, m, v, vmax, g, step_size, b1, omb1, b2, omb2, inv_c2, eps_in, eps_out,
                 decay, l2, l1, zero)


@kernel(parallel_min=PARALLEL_MIN)
def _nonfinite_kernel(g):
    bad = 0
    for i in prange(g.size):
        bad += 0 if math.isfinite(g[i]) else 1
    return bad


def sgd_update(w, h, g, lr, momentum, nesterov, l2, l1):
    """w (n,), h (n,) or None, g (n,): one SGD step (see reference.sgd_update)."""
    run(_sgd_kernel, w.size, w, h, g, *common.sgd_constants(
        w.dtype.type, lr, momentum, nesterov, l2, l1))


def adagrad_update(w, s, g, lr, eps, eps_inside_sqrt, l2, l1):
    """w (n,), s (n,), g (n,): one AdaGrad step."""
    run(_adagrad_kernel, w.size, w, s, g, *common.adagrad_constants(
        w.dtype.type, lr, eps, eps_inside_sqrt, l2, l1))


def rmsprop_update(w, s, h, ga, g, lr, alpha, eps, eps_inside_sqrt, momentum, l2, l1):
    """w, s (n,); h, ga (n,) or None; g (n,): one RMSprop step."""
    run(_rmsprop_kernel, w.size, w, s, h, ga, g, *common.rmsprop_constants(
        w.dtype.type, lr, alpha, eps, eps_inside_sqrt, momentum, l2, l1))


def adam_update(w, m, v, vmax, g, lr, beta1, beta2, eps, eps_inside_sqrt, decay, l2, l1, c1, c2):
    """w, m, v (n,); vmax (n,) or None; g (n,): one Adam / AdamW / AMSGrad step."""
    run(_adam_kernel, w.size, w, m, v, vmax, g, *common.adam_constants(
        w.dtype.type, lr, beta1, beta2, eps, eps_inside_sqrt, decay, l2, l1, c1, c2))


def nonfinite_count(count, g):
    """count (1,) int64 += the number of NaN/Inf entries of g (n,)."""
    count[0] += run(_nonfinite_kernel, g.size, g)
