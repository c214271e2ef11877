"""Synchronized batch normalization: the pieces of a batch norm whose batch is split across
processes, the specification for every backend (float64 inside, rounded once at the end).

Each process computes the per-channel statistics of its own rows (`batchnorm_stats`: count
M_p, mean, M2 = sum of squared deviations); the caller merges the parts in a fixed order
(Chan, Golub & LeVeque 1979; `fusedops.ops.batchnorm_merge_stats`) into the whole batch's
(mean, M2, M) and normalizes with them (`batchnorm_forward_stats`). Backward likewise:
per-channel sums of dy and dy*(x - mean) over the process's rows (`batchnorm_grad_sums`),
summed over the processes, then dx from the whole batch's sums (`batchnorm_backward_sums`).
With a single part every formula is that of reference/batchnorm.py.
"""
import numpy as np

from .batchnorm import _affine

__all__ = ["batchnorm_stats", "batchnorm_forward_stats", "batchnorm_grad_sums",
           "batchnorm_backward_sums"]


def batchnorm_stats(mean, m2, x):
    """mean, m2 (C,) float64 <- per channel the mean and the sum of squared deviations of the
    N*L values of x (N,C,L); both 0 when N*L = 0."""
    x64 = x.astype(np.float64)
    if x.shape[0] * x.shape[2] == 0:
        mean[...], m2[...] = 0.0, 0.0
        return
    mu = x64.mean(axis=(0, 2))
    mean[...] = mu
    m2[...] = ((x64 - mu[None, :, None]) ** 2).sum(axis=(0, 2))  # two-pass


def batchnorm_forward_stats(y, mean, invstd, running_mean, running_var, x, gamma, beta,
                            smean, sm2, count, eps, momentum):
    """y (N,C,L) normalized with the whole batch's statistics smean, sm2 (C,) float64 over
    `count` values per channel: var = sm2/count; mean <- smean, invstd <- 1/sqrt(var + eps);
    running_mean/var (C,)|None updated with the unbiased var * count/(count-1)."""
    var = sm2 / count
    inv = 1.0 / np.sqrt(var + eps)
    g, b = _affine(gamma, beta, x.shape[1])
    y[...] = (x.astype(np.float64) - smean[None, :, None]) * inv[None, :, None] * g + b
    mean[...] = smean
    invstd[...] = inv
    if running_mean is not None:
        running_mean[...] = (1.0 - momentum) * running_mean + momentum * smean
        running_var[...] = (1.0 - momentum) * running_var + momentum * var * (count / (count - 1))


def batchnorm_grad_sums(dsum, ddot, dy, x, mean):
    """dsum, ddot (C,) float64 <- per channel sum dy and sum dy*(x - mean) over N and L."""
    dy64 = dy.astype(np.float64)
    dsum[...] = dy64.sum(axis=(0, 2))
    ddot[...] = (dy64 * (x.astype(np.float64) - mean.astype(np.float64)[None, :, None])).sum(axis=(0, 2))


def batchnorm_backward_sums(dx, dgamma, dbeta, dy, x, mean, invstd, gamma, gsum, gdot, count):
    """dx (N,C,L) of the whole batch's loss through its statistics, from the whole batch's
    sums gsum = sum dy, gdot = sum dy*(x - mean) (C,) float64 over `count` values per channel:
    dx = gamma*invstd/M*(M*dy - dbeta - xhat*dgamma) with dbeta = gsum, dgamma = gdot*invstd
    (also written: the whole batch's parameter gradients)."""
    inv = invstd.astype(np.float64)
    dg, db = gdot * inv, gsum
    xhat = (x.astype(np.float64) - mean.astype(np.float64)[None, :, None]) * inv[None, :, None]
    g, _ = _affine(gamma, None, x.shape[1])
    dx[...] = g * inv[None, :, None] / count * (count * dy.astype(np.float64) - db[None, :, None]
                                                 - xhat * dg[None, :, None])
    dgamma[...] = dg
    dbeta[...] = db
