"""Synchronized batch normalization for the Numba CPU backend: the pieces of a batch norm
whose batch is split across processes (reference/batchnorm_sync.py is the specification).

The heavy passes reuse batchnorm.py's deterministic kernels (fixed row chunks, float64
partials, fixed-order merges), so with a single part every result has the bits of the plain
training kernels: `batchnorm_stats` is the statistics half of batchnorm_forward_train, and the
whole batch's (mean, M2, count) enter that kernel's per-channel combine as one column of
`count` rows. The per-channel merges are batchnorm.py's (_merge_columns, _sum_columns; the
merge formula is kernels/common/batchnorm.py's); cpu/jit.py keys the disk cache on every
kernels/cpu and kernels/common source, so inlining them from there cannot go stale.
"""
import numpy as np
from numba import prange

from .batchnorm import (CHUNK_ROWS, MERGE_TILE, TILE, _expand_kernel, _flags,
                        _grad_combine_kernel, _grad_input_kernel, _grad_partials_kernel,
                        _merge_chunks_kernel, _merge_columns, _normalize_kernel,
                        _stats_combine_kernel, _stats_partials_kernel, _sum_chunks_kernel,
                        _sum_columns)
from .jit import kernel


@kernel()
def _channel_stats_kernel(mean, m2, cmean, cm2, n, nl):
    """mean, m2 (C,) float64 <- per channel its L columns' (mean, M2) over n > 0 rows, merged
    as in batchnorm._stats_combine_kernel."""
    for c in prange(mean.size):
        _, mean[c], m2[c] = _merge_columns(cmean, cm2, c, nl, n)


@kernel()
def _channel_sums_kernel(dsum, ddot, csum, cdot, nl):
    """dsum, ddot (C,) <- per channel its L columns' sums, in l order."""
    for c in prange(dsum.size):
        dsum[c], ddot[c] = _sum_columns(csum, cdot, c, nl)


def _columns(per_channel, nl, dtype):
    """Per-column copies (C*L,) of per-channel coefficients (C,): column j is channel j // L."""
    if nl == 1:
        return per_channel
    out = np.empty(per_channel.size * nl, dtype)
    _expand_kernel(out, per_channel, nl)
    return out


def batchnorm_stats(mean, m2, x):
    """mean, m2 (C,) float64 <- per-channel mean and M2 of x (N,C,L) (zeros when N*L = 0)."""
    n, c, nl = x.shape
    if n == 0:  # a process with no rows of this batch
        mean[:] = 0.0
        m2[:] = 0.0
        return
    nch = (n + CHUNK_ROWS - 1) // CHUNK_ROWS
    pmean, pm2 = np.empty((nch, c * nl)), np.empty((nch, c * nl))
    _stats_partials_kernel(pmean, pm2, x.reshape(n, c * nl), CHUNK_ROWS, TILE)
    cmean, cm2 = np.empty(c * nl), np.empty(c * nl)
    _merge_chunks_kernel(cmean, cm2, pmean, pm2, n, CHUNK_ROWS, MERGE_TILE)
    _channel_stats_kernel(mean, m2, cmean, cm2, float(n), nl)


def batchnorm_forward_stats(y, mean, invstd, running_mean, running_var, x, gamma, beta,
                            smean, sm2, count, eps, momentum):
    """y (N,C,L), mean, invstd (C,) from the whole batch's smean, sm2 (C,) float64 over
    `count` values per channel; running_mean/var (C,)|None updated in place."""
    n, c, nl = x.shape
    cm, cs, cb = (np.empty(c, x.dtype) for _ in range(3))
    g, b, has_g, has_b = _flags(gamma, beta, x.dtype)
    update = running_mean is not None
    rm = running_mean if update else np.empty(0, x.dtype)
    rv = running_var if update else np.empty(0, x.dtype)
    # one "column" of `count` rows per channel: the combine's merge then returns (smean, sm2)
    _stats_combine_kernel(mean, invstd, rm, rv, cm, cs, cb, smean, sm2, g, b, float(count), 1,
                          float(eps), float(momentum), update, has_g, has_b)
    cm, cs, cb = (_columns(v, nl, x.dtype) for v in (cm, cs, cb))
    _normalize_kernel(y.reshape(n, c * nl), x.reshape(n, c * nl), cm, cs, cb, CHUNK_ROWS)


def batchnorm_grad_sums(dsum, ddot, dy, x, mean):
    """dsum, ddot (C,) float64 <- per channel sum dy and sum dy*(x - mean) of dy, x (N,C,L)."""
    n, c, nl = x.shape
    nch = (n + CHUNK_ROWS - 1) // CHUNK_ROWS
    psum, pdot = np.empty((nch, c * nl)), np.empty((nch, c * nl))
    cm = np.empty(c * nl, x.dtype)
    _expand_kernel(cm, mean, nl)
    _grad_partials_kernel(psum, pdot, dy.reshape(n, c * nl), x.reshape(n, c * nl), cm,
                          CHUNK_ROWS, TILE)
    csum, cdot = np.empty(c * nl), np.empty(c * nl)
    _sum_chunks_kernel(csum, cdot, psum, pdot, MERGE_TILE)
    _channel_sums_kernel(dsum, ddot, csum, cdot, nl)


def batchnorm_backward_sums(dx, dgamma, dbeta, dy, x, mean, invstd, gamma, gsum, gdot, count):
    """dx (N,C,L), dgamma, dbeta (C,) from the whole batch's gsum, gdot (C,) float64 over
    `count` values per channel."""
    n, c, nl = x.shape
    c1, c2, c3 = (np.empty(c, x.dtype) for _ in range(3))
    g, _, has_g, _ = _flags(gamma, None, x.dtype)
    _grad_combine_kernel(dgamma, dbeta, c1, c2, c3, gsum, gdot, invstd, g, 1, float(count),
                         True, has_g)
    cm = np.empty(c * nl, x.dtype)
    _expand_kernel(cm, mean, nl)
    c1, c2, c3 = (_columns(v, nl, x.dtype) for v in (c1, c2, c3))
    _grad_input_kernel(dx.reshape(n, c * nl), dy.reshape(n, c * nl), x.reshape(n, c * nl),
                       cm, c1, c2, c3, CHUNK_ROWS)
