"""Batch normalization (Ioffe & Szegedy, ICML 2015), the specification for every backend.

Arrays are (N, C, L): statistics per channel c over the N*L values x[:, c, :]; an (N, F)
input is passed as (N, F, 1). Everything is computed in float64 and rounded once at the end.
Conventions follow PyTorch's BatchNorm1d: biased variance normalizes, the unbiased one
(times M/(M-1), M = N*L) enters the running estimate.
"""
import numpy as np

__all__ = ["batchnorm_forward_train", "batchnorm_forward_eval", "batchnorm_backward"]


def _affine(gamma, beta, c):
    g = np.ones(c) if gamma is None else gamma.astype(np.float64)
    b = np.zeros(c) if beta is None else beta.astype(np.float64)
    return g[None, :, None], b[None, :, None]


def batchnorm_forward_train(y, mean, invstd, running_mean, running_var, x, gamma, beta,
                            eps, momentum):
    """y (N,C,L), mean (C,), invstd (C,) <- x (N,C,L), gamma (C,)|None, beta (C,)|None;
    running_mean/var (C,)|None updated in place with `momentum`."""
    x64 = x.astype(np.float64)
    m = x.shape[0] * x.shape[2]
    mu = x64.mean(axis=(0, 2))
    var = ((x64 - mu[None, :, None]) ** 2).mean(axis=(0, 2))  # two-pass: no E[x^2]-E[x]^2
    inv = 1.0 / np.sqrt(var + eps)
    g, b = _affine(gamma, beta, x.shape[1])
    y[...] = (x64 - mu[None, :, None]) * inv[None, :, None] * g + b
    mean[...] = mu
    invstd[...] = inv
    if running_mean is not None:
        running_mean[...] = (1.0 - momentum) * running_mean + momentum * mu
        running_var[...] = (1.0 - momentum) * running_var + momentum * var * (m / (m - 1))


def batchnorm_forward_eval(y, mean, invstd, x, running_mean, running_var, gamma, beta, eps):
    """y (N,C,L) normalized with the running statistics; mean <- running_mean,
    invstd <- 1/sqrt(running_var + eps) (what backward needs)."""
    mu = running_mean.astype(np.float64)
    inv = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
    g, b = _affine(gamma, beta, x.shape[1])
    y[...] = (x.astype(np.float64) - mu[None, :, None]) * inv[None, :, None] * g + b
    mean[...] = mu
    invstd[...] = inv


def batchnorm_backward(dx, dgamma, dbeta, dy, x, mean, invstd, gamma, training):
    """dx (N,C,L), dgamma (C,), dbeta (C,) <- dy, x (N,C,L), mean, invstd (C,), gamma (C,)|None.
    training=True: the batch statistics depend on x,
    dx = gamma*invstd/M*(M*dy - dbeta - xhat*dgamma); False: they are constants,
    dx = gamma*invstd*dy."""
    dy64 = dy.astype(np.float64)
    m = x.shape[0] * x.shape[2]
    inv = invstd.astype(np.float64)[None, :, None]
    xhat = (x.astype(np.float64) - mean.astype(np.float64)[None, :, None]) * inv
    db = dy64.sum(axis=(0, 2))
    dg = (dy64 * xhat).sum(axis=(0, 2))
    g, _ = _affine(gamma, None, x.shape[1])
    if training:
        dx[...] = g * inv / m * (m * dy64 - db[None, :, None] - xhat * dg[None, :, None])
    else:
        dx[...] = g * inv * dy64
    dgamma[...] = dg
    dbeta[...] = db
