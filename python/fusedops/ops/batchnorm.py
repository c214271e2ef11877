"""Batch normalization ops (Ioffe & Szegedy 2015) with PyTorch BatchNorm1d's conventions.

x is (N, F) (features in columns) or (N, C, L) (statistics per channel over N and L, the
layout of 1-D convolutions). Training normalizes with the batch's mean and biased variance
and updates the running statistics with the unbiased one; eval uses the running statistics.

What `mean` and `invstd` hold (they are what `batchnorm_backward` needs):
- training, or eval without running statistics: the batch mean and 1/sqrt(var + eps);
- eval with running statistics: running_mean and 1/sqrt(running_var + eps).

NaN or Inf in x is not checked for (that would cost a pass over x): like PyTorch, it turns
the mean, invstd, outputs and running statistics of its own channel into NaN and leaves the
other channels untouched.

Synchronized batch norm (a batch split across processes, normalized with the statistics of
the whole batch): each process computes `batchnorm_stats` of its rows, the parts are merged
in a fixed order (`batchnorm_merge_stats`, after one collective that gathers them) and passed
to `batchnorm_forward(..., batch_stats=...)`; in backward `batchnorm_grad_sums` of each part
are summed over the processes and passed to `batchnorm_backward(..., grad_sums=...)`.
fusedops.distributed does the collectives; with a single part the results are bitwise those of
the plain calls.
"""
from __future__ import annotations

import numpy as np

from .._arrays import empty
from .._dispatch import (BATCHNORM_BACKWARD, BATCHNORM_BACKWARD_SUMS, BATCHNORM_FORWARD_EVAL,
                         BATCHNORM_FORWARD_STATS, BATCHNORM_FORWARD_TRAIN, BATCHNORM_GRAD_SUMS,
                         BATCHNORM_STATS, launch)
from ..backends import resolve_backend
from ..checks import check_array, check_bool, check_int, check_like, check_no_overlap, check_real

__all__ = ["batchnorm_forward", "batchnorm_backward", "batchnorm_stats", "batchnorm_merge_stats",
           "batchnorm_grad_sums"]


def _empty(like_device: bool, shape, dtype):
    """A new array on the host, or on the GPU when the inputs live there."""
    return empty(shape, dtype, device=like_device)


def _check_input(name, x):
    info = check_array(name, x)
    if len(info.shape) not in (2, 3):
        raise ValueError(f"{name} must be 2-D (N, F) or 3-D (N, C, L); got shape {info.shape}")
    n, c = info.shape[:2]
    return info, n, c, (info.shape[2] if len(info.shape) == 3 else 1)


def _check_vector(name, a, xname, xinfo, c, *, writable=False):
    """None, or a (C,) array with x's dtype on x's side (host or GPU)."""
    if a is None:
        return
    info = check_array(name, a, dtype=xinfo.dtype, shape=(c,), writable=writable)
    if info.device != xinfo.device:
        raise ValueError(f"{name} and {xname} must both be host arrays or both GPU arrays")


def _c_status(status):
    if status:  # the C kernels return nonzero only when their scratch allocation failed
        raise MemoryError("the C batchnorm kernel could not allocate its scratch buffers")


def batchnorm_forward(x, gamma, beta, running_mean, running_var, *, training: bool,
                      momentum: float = 0.1, eps: float = 1e-5, out=None, backend=None,
                      batch_stats=None):
    """Batch-normalize x (N, F) or (N, C, L): y = gamma*(x - mean)*invstd + beta.

    gamma, beta: (C,) or None (affine off). running_mean, running_var: (C,) or both None
    (no tracking: eval then uses the batch statistics, as PyTorch does); in training they are
    updated in place, rm = (1-momentum)*rm + momentum*mean, rv likewise with the unbiased
    variance. momentum in [0, 1], eps > 0 (a constant channel then normalizes to beta).
    out: optional preallocated y. Returns (y, mean, invstd), mean and invstd (C,) in x's
    dtype (see the module docstring for eval). Raises before writing anything on bad input.
    batch_stats=(mean, m2, count), training only: normalize with these statistics of a whole
    batch that x is a part of (float64 (C,) mean and sum of squared deviations over `count`
    values per channel, as batchnorm_merge_stats returns them; x may then have no rows), and
    update the running statistics with them (unbiased variance m2/(count-1)).
    """
    be = resolve_backend(backend, x, gamma, beta, running_mean, running_var, out)
    xi, n, c, nl = _check_input("x", x)
    _check_vector("gamma", gamma, "x", xi, c)
    _check_vector("beta", beta, "x", xi, c)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must be given together (or both None)")
    _check_vector("running_mean", running_mean, "x", xi, c, writable=True)
    _check_vector("running_var", running_var, "x", xi, c, writable=True)
    training = check_bool("training", training)
    momentum = check_real("momentum", momentum, lo=0.0, hi=1.0)
    eps = check_real("eps", eps, lo=0.0, lo_open=True)
    if batch_stats is not None:
        stats = _check_batch_stats(batch_stats, training, xi, c, n * nl)
    elif (training or running_mean is None) and n * nl < 2:
        raise ValueError(f"batch statistics need more than one value per channel (N*L >= 2); "
                         f"got x of shape {xi.shape}")
    if out is None:
        out = _empty(xi.device, xi.shape, xi.dtype)
    else:
        check_like("out", out, "x", x, writable=True)
    check_no_overlap({"out": out, "running_mean": running_mean, "running_var": running_var},
                     {"x": x, "gamma": gamma, "beta": beta})
    mean, invstd = _empty(xi.device, (c,), xi.dtype), _empty(xi.device, (c,), xi.dtype)
    x3, y3 = x.reshape(n, c, nl), out.reshape(n, c, nl)
    if batch_stats is not None:
        status = launch(be, BATCHNORM_FORWARD_STATS,
                        (y3, mean, invstd, running_mean, running_var, x3, gamma, beta, *stats[:2]),
                        sizes=(n, c, nl), scalars=(stats[2], eps, momentum), dtype=xi.dtype)
    elif training or running_mean is None:
        rm, rv = (running_mean, running_var) if training else (None, None)
        status = launch(be, BATCHNORM_FORWARD_TRAIN, (y3, mean, invstd, rm, rv, x3, gamma, beta),
                        sizes=(n, c, nl), scalars=(eps, momentum))
    else:
        status = launch(be, BATCHNORM_FORWARD_EVAL,
                        (y3, mean, invstd, x3, running_mean, running_var, gamma, beta),
                        sizes=(n, c, nl), scalars=(eps,))
    _c_status(status)
    return out, mean, invstd


def batchnorm_backward(dy, x, gamma, mean, invstd, *, training: bool = True, out=None,
                       backend=None, grad_sums=None):
    """Gradients of batch normalization: returns (dx, dgamma, dbeta).

    dy, x: (N, F) or (N, C, L); gamma: (C,) or None; mean, invstd: what batchnorm_forward
    returned. training=True (the default) differentiates through the batch statistics,
    dx = gamma*invstd/M*(M*dy - dbeta - xhat*dgamma) with M = N*L; training=False treats
    mean and invstd as constants (eval mode), dx = gamma*invstd*dy. dgamma = sum dy*xhat and
    dbeta = sum dy are (C,) arrays in x's dtype, returned even when gamma is None.
    out: optional preallocated dx (reusing it skips the page faults of a fresh array).
    grad_sums=(sum_dy, sum_dy_xmu, count), training only: x is a part of a batch normalized
    with batch_stats; these are the whole batch's float64 (C,) sums of dy and dy*(x - mean)
    (batchnorm_grad_sums of every part, summed) over `count` values per channel. dx is then
    this part's rows of the whole batch's gradient, and dgamma, dbeta the whole batch's.
    """
    be = resolve_backend(backend, dy, x, gamma, mean, invstd, out)
    xi, n, c, nl = _check_input("x", x)
    check_like("dy", dy, "x", x)
    _check_vector("gamma", gamma, "x", xi, c)
    for name, a in (("mean", mean), ("invstd", invstd)):
        if a is None:
            raise TypeError(f"{name} must be the array batchnorm_forward returned; got None")
        _check_vector(name, a, "x", xi, c)
    training = check_bool("training", training)
    if grad_sums is not None:
        sums = _check_grad_sums(grad_sums, training, xi, c, n * nl)
    if out is None:
        dx = _empty(xi.device, xi.shape, xi.dtype)
    else:
        dx = out
        check_like("out", out, "x", x, writable=True)
        check_no_overlap({"out": out}, {"dy": dy, "x": x, "gamma": gamma, "mean": mean,
                                        "invstd": invstd})
    dgamma, dbeta = _empty(xi.device, (c,), xi.dtype), _empty(xi.device, (c,), xi.dtype)
    if grad_sums is not None:
        status = launch(be, BATCHNORM_BACKWARD_SUMS,
                        (dx.reshape(n, c, nl), dgamma, dbeta, dy.reshape(n, c, nl),
                         x.reshape(n, c, nl), mean, invstd, gamma, *sums[:2]),
                        sizes=(n, c, nl), scalars=(sums[2],), dtype=xi.dtype)
        _c_status(status)
        return dx, dgamma, dbeta
    status = launch(be, BATCHNORM_BACKWARD,
                    (dx.reshape(n, c, nl), dgamma, dbeta, dy.reshape(n, c, nl),
                     x.reshape(n, c, nl), mean, invstd, gamma),
                    sizes=(n, c, nl), scalars=(int(training),))
    _c_status(status)
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------- synchronized BN

def _check_part(name, a, xinfo, c):
    """A float64 (C,) array of per-channel numbers of the whole batch (host, or x's GPU)."""
    info = check_array(name, a, dtype=np.float64, shape=(c,))
    if info.device and not xinfo.device:
        raise ValueError(f"{name} is a GPU array but x is a host array")
    return a


def _check_whole(name, value, training, xinfo, c, local, labels):
    """(array, array, count) of the whole batch that x (with `local` values per channel) is in."""
    if not training:
        raise ValueError(f"{name} applies in training only (eval uses the running statistics)")
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise TypeError(f"{name} must be a tuple ({', '.join(labels)}, count)")
    a, b, count = value
    count = check_int(f"{name} count", count, lo=2)
    if count < local:
        raise ValueError(f"{name} count ({count}) is smaller than the {local} values per "
                         f"channel of x alone")
    return (_check_part(f"{name} {labels[0]}", a, xinfo, c),
            _check_part(f"{name} {labels[1]}", b, xinfo, c), count)


def _check_batch_stats(batch_stats, training, xinfo, c, local):
    return _check_whole("batch_stats", batch_stats, training, xinfo, c, local, ("mean", "m2"))


def _check_grad_sums(grad_sums, training, xinfo, c, local):
    return _check_whole("grad_sums", grad_sums, training, xinfo, c, local,
                        ("sum_dy", "sum_dy_xmu"))


def batchnorm_stats(x, *, backend=None):
    """Per-channel statistics of x (N, F) or (N, C, L), a part of a batch: returns (mean, m2),
    float64 (C,) arrays (on the GPU for GPU input): the mean and the sum of squared deviations
    of the part's N*L values per channel (both 0 when N = 0). The count is N*L."""
    be = resolve_backend(backend, x)
    xi, n, c, nl = _check_input("x", x)
    mean, m2 = _empty(xi.device, (c,), np.float64), _empty(xi.device, (c,), np.float64)
    status = launch(be, BATCHNORM_STATS, (mean, m2, x.reshape(n, c, nl)), sizes=(n, c, nl),
                    dtype=xi.dtype)
    _c_status(status)
    return mean, m2


def batchnorm_merge_stats(counts, means, m2s):
    """The whole batch's (mean, m2, count) from its parts' statistics: counts (P,) integers,
    means and m2s (P, C) (rows as batchnorm_stats returns them), merged in row order with Chan,
    Golub & LeVeque's pairwise update in float64 (1979; stable where E[x^2] - E[x]^2 cancels).
    The order is fixed, so every process that merges the same parts gets the same bits; a
    single part comes back unchanged. Host arrays."""
    counts = np.asarray(counts)
    means, m2s = np.asarray(means, np.float64), np.asarray(m2s, np.float64)
    if counts.ndim != 1 or counts.dtype.kind not in "iu" or (counts.size and counts.min() < 0):
        raise ValueError(f"counts must be a 1-D array of non-negative integers; got {counts!r}")
    if means.ndim != 2 or means.shape[0] != counts.size or m2s.shape != means.shape:
        raise ValueError(f"means and m2s must both be (P, C) with P = len(counts) = {counts.size}; "
                         f"got {means.shape} and {m2s.shape}")
    ma, m2a, na = np.zeros(means.shape[1]), np.zeros(means.shape[1]), 0
    for nb, mb, qb in zip(counts.tolist(), means, m2s):
        if nb == 0:
            continue
        f = nb / (na + nb)
        w = na * f
        d = mb - ma
        ma = ma + d * f
        m2a = m2a + qb + d * d * w
        na += nb
    return ma, m2a, int(na)


def batchnorm_grad_sums(dy, x, mean, *, backend=None):
    """Per-channel sums over a part of a batch for the synchronized backward: returns
    (sum_dy, sum_dy_xmu), float64 (C,), the sums of dy and dy*(x - mean) over the part's N*L
    values per channel; `mean` is what batchnorm_forward returned."""
    be = resolve_backend(backend, dy, x, mean)
    xi, n, c, nl = _check_input("x", x)
    check_like("dy", dy, "x", x)
    if mean is None:
        raise TypeError("mean must be the array batchnorm_forward returned; got None")
    _check_vector("mean", mean, "x", xi, c)
    dsum, ddot = _empty(xi.device, (c,), np.float64), _empty(xi.device, (c,), np.float64)
    status = launch(be, BATCHNORM_GRAD_SUMS,
                    (dsum, ddot, dy.reshape(n, c, nl), x.reshape(n, c, nl), mean),
                    sizes=(n, c, nl), dtype=xi.dtype)
    _c_status(status)
    return dsum, ddot
