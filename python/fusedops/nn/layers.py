"""Layers with a hand-written backward pass: H = f(XW + b), layer by layer, no autograd.

Every layer has `forward(x)` and `backward(dy)` (which returns dx and WRITES — does not
accumulate — its parameters' gradients), `train()` / `eval()`, `parameters()`, and
`state()` / `load_state()` for what is not a parameter (batch-norm running statistics, the
dropout RNG offset). Arrays are NumPy arrays, or CuPy arrays when the layer is bound to the
cuda backend; dropout and batch norm run the fused kernels of `fusedops.ops`.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..backends import check_bool, check_int, check_real
from .parameter import Parameter, to_host

__all__ = ["Layer", "Linear", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Dropout", "BatchNorm1d",
           "Sequential", "ACTIVATIONS", "make_activation"]

INITS = ("he", "xavier")


class Layer:
    """Base class. `backend` (None: fusedops' default) and `xp` (numpy or cupy) are set by the
    model through `bind`."""

    backend = None
    xp = np

    def __init__(self):
        self.training = True

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def parameters(self) -> list:
        return []

    def train(self, mode: bool = True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def bind(self, backend, xp) -> None:
        """Run on `backend` with arrays of module `xp` (moves any buffers the layer owns)."""
        self.backend, self.xp = backend, xp

    def state(self) -> dict:
        """Non-parameter state as host values (for save)."""
        return {}

    def load_state(self, state: dict) -> None:
        """Inverse of `state`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Linear(Layer):
    """y = x @ W + b with W of shape (in_features, out_features) (the course's H = XW + b).

    init: "he" (normal, std sqrt(2/fan_in); He et al. 2015, for ReLU-like activations) or
    "xavier" (uniform in +-sqrt(6/(fan_in+fan_out)); Glorot & Bengio 2010, for tanh/sigmoid).
    Set `input_grad = False` on a first layer to skip the dx product nobody needs.
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, init: str = "he",
                 seed: int = 0, dtype=np.float32):
        super().__init__()
        self.in_features = check_int("in_features", in_features, lo=1)
        self.out_features = check_int("out_features", out_features, lo=1)
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}; got {init!r}")
        rng = np.random.default_rng(check_int("seed", seed, lo=0))
        shape = (self.in_features, self.out_features)
        if init == "he":
            w = rng.standard_normal(shape) * np.sqrt(2.0 / self.in_features)
        else:
            limit = np.sqrt(6.0 / (self.in_features + self.out_features))
            w = rng.uniform(-limit, limit, shape)
        self.init = init
        self.weight = Parameter(w.astype(dtype), name="weight", decay=True)
        self.bias = Parameter(np.zeros(self.out_features, dtype), name="bias", decay=False) if bias else None
        self.input_grad = True
        self._x = None

    def parameters(self):
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    def forward(self, x):
        if self.training:
            self._x = x
        y = self.xp.matmul(x, self.weight.data)
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, dy):
        x, xp = self._x, self.xp
        if x is None:
            raise RuntimeError("Linear.backward needs a forward pass in training mode first")
        xp.matmul(x.T, dy, out=self.weight.grad)
        if self.bias is not None:
            xp.sum(dy, axis=0, out=self.bias.grad)
        self._x = None
        return xp.matmul(dy, self.weight.data.T) if self.input_grad else None

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias is not None}, init={self.init!r})"


class ReLU(Layer):
    """max(x, 0)."""

    def forward(self, x):
        y = self.xp.maximum(x, 0)
        self._y = y if self.training else None
        return y

    def backward(self, dy):
        return dy * (self._y > 0)


class LeakyReLU(Layer):
    """x for x > 0, else negative_slope * x (Maas et al. 2013)."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = check_real("negative_slope", negative_slope, lo=0.0)

    def forward(self, x):
        self._x = x if self.training else None
        return self.xp.where(x > 0, x, x * x.dtype.type(self.negative_slope))

    def backward(self, dy):
        return self.xp.where(self._x > 0, dy, dy * dy.dtype.type(self.negative_slope))

    def __repr__(self):
        return f"LeakyReLU({self.negative_slope})"


class Sigmoid(Layer):
    """1 / (1 + exp(-x)), computed as (1 + tanh(x/2)) / 2: no overflow for large |x|."""

    def forward(self, x):
        half = x.dtype.type(0.5)
        y = half * (self.xp.tanh(half * x) + 1)
        self._y = y if self.training else None
        return y

    def backward(self, dy):
        y = self._y
        return dy * y * (1 - y)


class Tanh(Layer):
    def forward(self, x):
        y = self.xp.tanh(x)
        self._y = y if self.training else None
        return y

    def backward(self, dy):
        y = self._y
        return dy * (1 - y * y)


ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "tanh": Tanh}


def make_activation(name: str) -> Layer:
    """A fresh activation layer by name (one of ACTIVATIONS)."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}; got {name!r}")
    return ACTIVATIONS[name]()


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


class Sequential(Layer):
    """Layers applied in order; backward runs them in reverse."""

    def __init__(self, *layers: Layer):
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}] must be a fusedops.nn Layer; got {type(layer).__name__}")
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

    def train(self, mode: bool = True):
        super().train(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    def bind(self, backend, xp):
        super().bind(backend, xp)
        for layer in self.layers:
            layer.bind(backend, xp)

    def state(self):
        return {str(i): s for i, layer in enumerate(self.layers) if (s := layer.state())}

    def load_state(self, state):
        for i, layer in enumerate(self.layers):
            if str(i) in state:
                layer.load_state(state[str(i)])

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential(\n  {inner}\n)"
