"""Activation layers: elementwise NumPy / CuPy work, each caching what its backward needs."""
from __future__ import annotations

from ..checks import check_real
from .layers import Layer

__all__ = ["Identity", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "ACTIVATIONS", "make_activation"]


class Identity(Layer):
    """f(x) = x: a linear hidden layer (a linear bottleneck; scikit-learn's "identity")."""

    def forward(self, x):
        return x

    def backward(self, dy):
        return dy


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


ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "tanh": Tanh,
               "identity": Identity}


def make_activation(name: str) -> Layer:
    """A fresh activation layer by name (one of ACTIVATIONS)."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}; got {name!r}")
    return ACTIVATIONS[name]()
