"""scikit-learn's MLP losses where they differ from fusedops.nn's (value and gradient are what
sklearn/neural_network/_base.py computes and what its backprop steps on: the output delta is
`prediction - y`, divided by the batch's row count).

- multilabel: the binary log-loss summed over outputs (nn's BCEWithLogitsLoss is a mean over
  outputs too): value and gradient times the number of outputs.
- squared_error: sklearn reports 0.5 * mean over rows and outputs, and steps on the gradient
  (pred - y) / n_rows; for k outputs that gradient is k times the reported loss's gradient
  (sklearn's convention, kept for parity). nn's MSELoss is mean((pred - y)^2).
- poisson: half the Poisson deviance with a log link: pred = exp(z),
  value sum_outputs mean_rows(y log(y/mu) - y + mu), gradient (mu - y) / n_rows.
"""
from __future__ import annotations

import numpy as np

from ..nn import BCEWithLogitsLoss, Loss, MSELoss


class ScaledLoss(Loss):
    """`base` with its value and its gradient each multiplied by a constant."""

    def __init__(self, base: Loss, value_scale: float, grad_scale: float):
        self.base, self.value_scale, self.grad_scale = base, float(value_scale), float(grad_scale)

    def value_and_grad(self, pred, target):
        value, grad = self.base.value_and_grad(pred, target)
        grad *= pred.dtype.type(self.grad_scale)
        return value * pred.dtype.type(self.value_scale), grad

    def value(self, pred, target):
        return self.base.value(pred, target) * pred.dtype.type(self.value_scale)

    def __repr__(self):
        return f"ScaledLoss({self.base!r}, value_scale={self.value_scale}, grad_scale={self.grad_scale})"


def multilabel_log_loss(n_outputs: int) -> Loss:
    return ScaledLoss(BCEWithLogitsLoss(), n_outputs, n_outputs)


def half_squared_error(n_outputs: int) -> Loss:
    # MSELoss: mean(d^2) over n*k elements, gradient 2d/(n*k); sklearn: 0.5*mean, gradient d/n
    return ScaledLoss(MSELoss(), 0.5, 0.5 * n_outputs)


class HalfPoissonDeviance(Loss):
    """scikit-learn's 'poisson' loss on log-link outputs z (pred = exp(z)); y >= 0."""

    def __init__(self, xp=np):
        self.xp = xp

    def _value(self, z, mu, y):
        xp = self.xp
        ylogy = xp.where(y > 0, y * xp.log(xp.where(y > 0, y, 1)), 0)  # xlogy(y, y): 0 at y == 0
        return xp.sum(ylogy - y * z - y + mu) / z.shape[0]

    def value_and_grad(self, pred, target):
        mu = self.xp.exp(pred)
        value = self._value(pred, mu, target)
        grad = mu - target
        grad *= pred.dtype.type(1.0 / max(pred.shape[0], 1))
        return value, grad

    def value(self, pred, target):
        return self._value(pred, self.xp.exp(pred), target)
