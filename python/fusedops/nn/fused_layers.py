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
        self._saved = None

    def forward(self, x):
        if not self.training:
            self._saved = None
            if self.mode == "inverted" or self.p == 0.0:
                return x
            y, _ = ops.dropout_forward(x, self.p, seed=self.seed, offset=self.offset, mode=self.mode,
                                       training=False, out=self.xp.empty_like(x), return_mask=False,
                                       backend=self.backend)
            return self.xp.asarray(y)
        y, mask = ops.dropout_forward(x, self.p, seed=self.seed, offset=self.offset, mode=self.mode,
                                      training=True, out=self.xp.empty_like(x),
                                      return_mask=self.keep_mask, backend=self.backend)
        self._saved = (mask, self.offset)
        self.offset += 1
        return self.xp.asarray(y)  # the op returns `out`; asarray keeps it a CuPy array either way

    def backward(self, dy):
        if self._saved is None:
            raise RuntimeError("Dropout.backward needs a forward pass in training mode first")
        mask, offset = self._saved
        return self.xp.asarray(ops.dropout_backward(dy, p=self.p, mask=mask, seed=None if mask is not None else self.seed,
                                    offset=offset, mode=self.mode, out=self.xp.empty_like(dy),
                                    backend=self.backend))

    def state(self):
        return {"offset": self.offset}

    def load_state(self, state):
        self.offset = int(state["offset"])

    def __repr__(self):
        return f"Dropout(p={self.p}, mode={self.mode!r}, seed={self.seed}, keep_mask={self.keep_mask})"


class BatchNorm1d(Layer):
    """Batch normalization over the batch dimension of (N, F) inputs (Ioffe & Szegedy 2015),
    with the fused kernels; running statistics with `momentum` (PyTorch's convention)."""

    def __init__(self, num_features: int, *, momentum: float = 0.1, eps: float = 1e-5, dtype=np.float32):
        super().__init__()
        self.num_features = check_int("num_features", num_features, lo=1)
        self.momentum = check_real("momentum", momentum, lo=0.0, hi=1.0)
        self.eps = check_real("eps", eps, lo=0.0, lo_open=True)
        self.gamma = Parameter(np.ones(self.num_features, dtype), name="gamma", decay=False)
        self.beta = Parameter(np.zeros(self.num_features, dtype), name="beta", decay=False)
        self.running_mean = np.zeros(self.num_features, dtype)
        self.running_var = np.ones(self.num_features, dtype)
        self._saved = None

    def parameters(self):
        return [self.gamma, self.beta]

    def bind(self, backend, xp):
        super().bind(backend, xp)
        self.running_mean = xp.asarray(to_host(self.running_mean))
        self.running_var = xp.asarray(to_host(self.running_var))

    def forward(self, x):
        y, mean, invstd = ops.batchnorm_forward(
            x, self.gamma.data, self.beta.data, self.running_mean, self.running_var,
            training=self.training, momentum=self.momentum, eps=self.eps,
            out=self.xp.empty_like(x), backend=self.backend)
        self._saved = (x, mean, invstd) if self.training else None
        return self.xp.asarray(y)

    def backward(self, dy):
        if self._saved is None:
            raise RuntimeError("BatchNorm1d.backward needs a forward pass in training mode first")
        x, mean, invstd = self._saved
        dx, dgamma, dbeta = ops.batchnorm_backward(dy, x, self.gamma.data, mean, invstd, backend=self.backend)
        xp = self.xp
        self.gamma.grad[...] = xp.asarray(dgamma)
        self.beta.grad[...] = xp.asarray(dbeta)
        self._saved = None
        return xp.asarray(dx)

    def state(self):
        return {"running_mean": to_host(self.running_mean).copy(), "running_var": to_host(self.running_var).copy()}

    def load_state(self, state):
        self.running_mean[...] = self.xp.asarray(state["running_mean"])
        self.running_var[...] = self.xp.asarray(state["running_var"])

    def __repr__(self):
        return f"BatchNorm1d({self.num_features}, momentum={self.momentum}, eps={self.eps})"
