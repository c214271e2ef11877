"""Losses whose value and gradient are computed together, in a numerically stable form.

`value_and_grad(pred, target)` returns the mean loss as a 0-d array (kept on the device for
CuPy inputs: no synchronization per batch) and d(loss)/d(pred). The gradient of a mean
already includes the 1/n, so a training step is `net.backward(grad)`.
"""
from __future__ import annotations

import sys

import numpy as np

__all__ = ["Loss", "MSELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "LOSSES"]


def _xp(a):
    cupy = sys.modules.get("cupy")
    return cupy if cupy is not None and isinstance(a, cupy.ndarray) else np


class Loss:
    """Base class: `loss(pred, target)` is the mean loss as a float."""

    def value_and_grad(self, pred, target):
        raise NotImplementedError

    def value(self, pred, target):
        """The mean loss as a 0-d array (no gradient)."""
        return self.value_and_grad(pred, target)[0]

    def __call__(self, pred, target) -> float:
        return float(self.value(pred, target))

    def __repr__(self):
        return f"{type(self).__name__}()"


class MSELoss(Loss):
    """mean((pred - target)^2) over all elements; gradient 2 (pred - target) / n."""

    def value_and_grad(self, pred, target):
        d = pred - target
        loss = _xp(pred).mean(d * d)
        d *= pred.dtype.type(2.0 / max(d.size, 1))
        return loss, d


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits z with targets t in [0, 1], mean over all elements.

    loss = max(z, 0) - z t + log1p(exp(-|z|)) never overflows (the log-sum-exp form);
    gradient (sigmoid(z) - t) / n, with sigmoid from the same exp(-|z|).
    """

    def value_and_grad(self, pred, target):
        xp = _xp(pred)
        e = xp.exp(-xp.abs(pred))
        loss = xp.mean(xp.maximum(pred, 0) - pred * target + xp.log1p(e))
        inv = 1 / (1 + e)
        sig = xp.where(pred >= 0, inv, e * inv)
        grad = sig - target
        grad *= pred.dtype.type(1.0 / max(grad.size, 1))
        return loss, grad

    def value(self, pred, target):
        xp = _xp(pred)
        return xp.mean(xp.maximum(pred, 0) - pred * target + xp.log1p(xp.exp(-xp.abs(pred))))


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on logits (N, C) with integer class labels (N,), mean over N.

    log-softmax with the max subtracted (no overflow); gradient (softmax - onehot) / N.
    """

    def value_and_grad(self, pred, target):
        xp = _xp(pred)
        n = pred.shape[0]
        rows = xp.arange(n)
        shifted = pred - pred.max(axis=1, keepdims=True)
        e = xp.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        loss = xp.mean(xp.log(s[:, 0]) - shifted[rows, target])
        e /= s
        e[rows, target] -= 1
        e *= pred.dtype.type(1.0 / max(n, 1))
        return loss, e

    def value(self, pred, target):
        xp = _xp(pred)
        shifted = pred - pred.max(axis=1, keepdims=True)
        lse = xp.log(xp.exp(shifted).sum(axis=1))
        return xp.mean(lse - shifted[xp.arange(pred.shape[0]), target])


LOSSES = {"mse": MSELoss, "bce": BCEWithLogitsLoss, "cross_entropy": CrossEntropyLoss}
