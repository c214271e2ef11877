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
"""
from __future__ import annotations

from .._arrays import empty
from .._dispatch import BATCHNORM_BACKWARD, BATCHNORM_FORWARD_EVAL, BATCHNORM_FORWARD_TRAIN
from .._dispatch import launch
from ..backends import resolve_backend
from ..checks import check_array, check_bool, check_like, check_no_overlap, check_real

__all__ = ["batchnorm_forward", "batchnorm_backward"]


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
                      momentum: float = 0.1, eps: float = 1e-5, out=None, backend=None):
    """Batch-normalize x (N, F) or (N, C, L): y = gamma*(x - mean)*invstd + beta.

    gamma, beta: (C,) or None (affine off). running_mean, running_var: (C,) or both None
    (no tracking: eval then uses the batch statistics, as PyTorch does); in training they are
    updated in place, rm = (1-momentum)*rm + momentum*mean, rv likewise with the unbiased
    variance. momentum in [0, 1], eps > 0 (a constant channel then normalizes to beta).
    out: optional preallocated y. Returns (y, mean, invstd), mean and invstd (C,) in x's
    dtype (see the module docstring for eval). Raises before writing anything on bad input.
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
    batch_stats = training or running_mean is None
    if batch_stats and n * nl < 2:
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
    if batch_stats:
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
                       backend=None):
    """Gradients of batch normalization: returns (dx, dgamma, dbeta).

    dy, x: (N, F) or (N, C, L); gamma: (C,) or None; mean, invstd: what batchnorm_forward
    returned. training=True (the default) differentiates through the batch statistics,
    dx = gamma*invstd/M*(M*dy - dbeta - xhat*dgamma) with M = N*L; training=False treats
    mean and invstd as constants (eval mode), dx = gamma*invstd*dy. dgamma = sum dy*xhat and
    dbeta = sum dy are (C,) arrays in x's dtype, returned even when gamma is None.
    out: optional preallocated dx (reusing it skips the page faults of a fresh array).
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
    if out is None:
        dx = _empty(xi.device, xi.shape, xi.dtype)
    else:
        dx = out
        check_like("out", out, "x", x, writable=True)
        check_no_overlap({"out": out}, {"dy": dy, "x": x, "gamma": gamma, "mean": mean,
                                        "invstd": invstd})
    dgamma, dbeta = _empty(xi.device, (c,), xi.dtype), _empty(xi.device, (c,), xi.dtype)
    status = launch(be, BATCHNORM_BACKWARD,
                    (dx.reshape(n, c, nl), dgamma, dbeta, dy.reshape(n, c, nl),
                     x.reshape(n, c, nl), mean, invstd, gamma),
                    sizes=(n, c, nl), scalars=(int(training),))
    _c_status(status)
    return dx, dgamma, dbeta
