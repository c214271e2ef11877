"""Dropout and batch normalization layers over the fused kernels of `fusedops.ops`."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..checks import check_bool, check_int, check_real
from .layers import Layer
from .parameter import Parameter, to_host

__all__ = ["Dropout", "BatchNorm1d"]


class Dropout(Layer):
    """Dropout with the fused counter-based kernel (Philox4x32-10; Srivastava et al. 2014).

    The layer owns `seed` and an `offset` that advances by one every training forward, so
    each step draws a fresh mask and a run is reproducible from (seed, offset). With
    `keep_mask=False` no mask is stored: backward regenerates it from (seed, offset).
    mode "inverted" scales by 1/(1-p) in training; "classic" scales by (1-p) in eval.
    `start_row`: the index of x's first row in the whole batch when x is a part of it (set by
    distributed training), so each part draws the mask bits its rows have in the whole batch.
    """

    def __init__(self, p: float = 0.5, *, mode: str = "inverted", seed: int = 0, keep_mask: bool = True):
        super().__init__()
        self.p = check_real("p", p, lo=0.0, hi=1.0, hi_open=True)
        if mode not in ("inverted", "classic"):
            raise ValueError(f"mode must be 'inverted' or 'classic'; got {mode!r}")
        self.mode = mode
        self.seed = check_int("seed", seed, lo=0, hi=2**64 - 1)
        self.offset = 0
        self.keep_mask = check_bool("keep_mask", keep_mask)
        self.start_row = 0
        self._saved = None

    def _start(self, x) -> int:
        """The mask-stream index of x's first element: start_row rows of x's width before it."""
        return self.start_row * (x.size // x.shape[0]) if x.ndim and x.shape[0] else 0

    def forward(self, x):
        if not self.training:
            self._saved = None
            if self.mode == "inverted" or self.p == 0.0:
                return x
            y, _ = ops.dropout_forward(x, self.p, seed=self.seed, offset=self.offset, mode=self.mode,
                                       training=False, out=self.xp.empty_like(x), return_mask=False,
                                       backend=self.backend)
            return self.xp.asarray(y)
        start = self._start(x)
        y, mask = ops.dropout_forward(x, self.p, seed=self.seed, offset=self.offset, mode=self.mode,
                                      training=True, out=self.xp.empty_like(x),
                                      return_mask=self.keep_mask, backend=self.backend, start=start)
        self._saved = (mask, self.offset, start)
        self.offset += 1
        return self.xp.asarray(y)  # the op returns `out`; asarray keeps it a CuPy array either way

    def backward(self, dy):
        if self._saved is None:
            raise RuntimeError("Dropout.backward needs a forward pass in training mode first")
        mask, offset, start = self._saved
        return self.xp.asarray(ops.dropout_backward(dy, p=self.p, mask=mask, seed=None if mask is not None else self.seed,
                                    offset=offset, mode=self.mode, out=self.xp.empty_like(dy),
                                    backend=self.backend, start=start))

    def state(self):
        return {"offset": self.offset}

    def load_state(self, state):
        self.offset = int(state["offset"])

    def __repr__(self):
        return f"Dropout(p={self.p}, mode={self.mode!r}, seed={self.seed}, keep_mask={self.keep_mask})"


class BatchNorm1d(Layer):
    """Batch normalization over the batch dimension of (N, F) inputs (Ioffe & Szegedy 2015),
    with the fused kernels; running statistics with `momentum` (PyTorch's convention).

    `sync`: None, or (set by distributed training while x is a part of a batch split across
    processes) an object whose `stats(count, mean, m2)` returns the whole batch's (mean, m2,
    count) from this part's statistics, and `sums(sum_dy, sum_dy_xmu)` the whole batch's sums:
    training then normalizes with the whole batch's statistics (a synchronized batch norm) and
    the parameter gradients hold this part's share of the whole batch's.
    """

    def __init__(self, num_features: int, *, momentum: float = 0.1, eps: float = 1e-5, dtype=np.float32):
        super().__init__()
        self.num_features = check_int("num_features", num_features, lo=1)
        self.momentum = check_real("momentum", momentum, lo=0.0, hi=1.0)
        self.eps = check_real("eps", eps, lo=0.0, lo_open=True)
        self.gamma = Parameter(np.ones(self.num_features, dtype), name="gamma", decay=False)
        self.beta = Parameter(np.zeros(self.num_features, dtype), name="beta", decay=False)
        self.running_mean = np.zeros(self.num_features, dtype)
        self.running_var = np.ones(self.num_features, dtype)
        self.sync = None
        self._saved = None

    def parameters(self):
        return [self.gamma, self.beta]

    def bind(self, backend, xp):
        super().bind(backend, xp)
        self.running_mean = xp.asarray(to_host(self.running_mean))
        self.running_var = xp.asarray(to_host(self.running_var))

    def forward(self, x):
        whole = None
        if self.training and self.sync is not None:
            mean, m2 = ops.batchnorm_stats(x, backend=self.backend)
            whole = self.sync.stats(x.size // self.num_features, to_host(mean), to_host(m2))
        y, mean, invstd = ops.batchnorm_forward(
            x, self.gamma.data, self.beta.data, self.running_mean, self.running_var,
            training=self.training, momentum=self.momentum, eps=self.eps,
            out=self.xp.empty_like(x), backend=self.backend, batch_stats=whole)
        self._saved = (x, mean, invstd, whole) if self.training else None
        return self.xp.asarray(y)

    def backward(self, dy):
        if self._saved is None:
            raise RuntimeError("BatchNorm1d.backward needs a forward pass in training mode first")
        x, mean, invstd, whole = self._saved
        if whole is not None:
            return self._backward_synced(dy, x, mean, invstd, whole[2])
        dx, dgamma, dbeta = ops.batchnorm_backward(dy, x, self.gamma.data, mean, invstd, backend=self.backend)
        xp = self.xp
        self.gamma.grad[...] = xp.asarray(dgamma)
        self.beta.grad[...] = xp.asarray(dbeta)
        self._saved = None
        return xp.asarray(dx)

    def _backward_synced(self, dy, x, mean, invstd, count):
        """dx from the whole batch's sums; gamma/beta gradients: this part's share of them
        (sum dy*(x - mean)*invstd and sum dy over its rows; the optimizer adds the shares)."""
        dsum, ddot = (to_host(a) for a in ops.batchnorm_grad_sums(dy, x, mean, backend=self.backend))
        gsum, gdot = self.sync.sums(dsum, ddot)
        dx, _, _ = ops.batchnorm_backward(dy, x, self.gamma.data, mean, invstd, backend=self.backend,
                                          grad_sums=(gsum, gdot, count))
        dtype = self.gamma.grad.dtype
        self.gamma.grad[...] = self.xp.asarray((ddot * to_host(invstd).astype(np.float64)).astype(dtype))
        self.beta.grad[...] = self.xp.asarray(dsum.astype(dtype))
        self._saved = None
        return self.xp.asarray(dx)

    def state(self):
        return {"running_mean": to_host(self.running_mean).copy(), "running_var": to_host(self.running_var).copy()}

    def load_state(self, state):
        self.running_mean[...] = self.xp.asarray(state["running_mean"])
        self.running_var[...] = self.xp.asarray(state["running_var"])

    def __repr__(self):
        return f"BatchNorm1d({self.num_features}, momentum={self.momentum}, eps={self.eps})"
