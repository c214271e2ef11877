"""Layers with a hand-written backward pass: H = f(XW + b), layer by layer, no autograd.

Every layer has `forward(x)` and `backward(dy)` (which returns dx and WRITES — does not
accumulate — its parameters' gradients), `train()` / `eval()`, `parameters()`, and
`state()` / `load_state()` for what is not a parameter (batch-norm running statistics, the
dropout RNG offset). Arrays are NumPy arrays, or CuPy arrays when the layer is bound to the
cuda backend. Activations are in activations.py; dropout and batch norm, which run the fused
kernels of `fusedops.ops`, in fused_layers.py.
"""
from __future__ import annotations

import numpy as np

from ..checks import check_int
from .parameter import Parameter

__all__ = ["Layer", "Linear", "Sequential"]

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
