"""Optimizer steps: the NumPy specification every backend is tested against.

Formulas from DESIGN.md ("Optimizer steps"), which follow PyTorch's torch.optim (defaults, eps
placement; Kingma & Ba 2015 for Adam, Loshchilov & Hutter 2019 for AdamW, Reddi et al. 2018 for
AMSGrad, Duchi et al. 2011 for AdaGrad, Hinton's lecture 6e for RMSprop). Each function updates the
parameter and its state in place for one step and returns nothing.

Argument order is the kernel contract: outputs (param, then state buffers, None where a variant
does not use one), the input gradient, then hyperparameters. Regularization enters as
``g' = g + l2*w + l1*sign(w)`` with the parameter from before the step. ``eps_inside_sqrt`` selects
the lecture-notes denominator ``sqrt(s + eps)`` instead of PyTorch's ``sqrt(s) + eps``.
"""
import numpy as np

__all__ = ["sgd_update", "adagrad_update", "rmsprop_update", "adam_update", "nonfinite_count"]


def _regularized(w, g, l2, l1):
    """g + l2*w + l1*sign(w), in the arrays' dtype."""
    return g + l2 * w + l1 * np.sign(w)


def _denominator(s, eps, eps_inside_sqrt):
    return np.sqrt(s + eps) if eps_inside_sqrt else np.sqrt(s) + eps


def sgd_update(w, h, g, lr, momentum, nesterov, l2, l1):
    """SGD; with a momentum buffer h: h = momentum*h + g'; w -= lr*h (Nesterov: lr*(g' + momentum*h))."""
    gr = _regularized(w, g, l2, l1)
    if h is None:
        w -= lr * gr
        return
    h *= momentum
    h += gr
    w -= lr * (gr + momentum * h if nesterov else h)


def adagrad_update(w, s, g, lr, eps, eps_inside_sqrt, l2, l1):
    """AdaGrad: s += g'^2; w -= lr * g' / (sqrt(s) + eps)."""
    gr = _regularized(w, g, l2, l1)
    s += gr * gr
    w -= lr * (gr / _denominator(s, eps, eps_inside_sqrt))


def rmsprop_update(w, s, h, ga, g, lr, alpha, eps, eps_inside_sqrt, momentum, l2, l1):
    """RMSprop as in torch.optim.RMSprop: s = alpha*s + (1-alpha)*g'^2; centered (ga given):
    ga = alpha*ga + (1-alpha)*g' and the denominator uses s - ga^2; with a momentum buffer h:
    h = momentum*h + g'/denom, w -= lr*h; else w -= lr*g'/denom."""
    gr = _regularized(w, g, l2, l1)
    s *= alpha
    s += (1 - alpha) * (gr * gr)
    avg = s
    if ga is not None:
        ga *= alpha
        ga += (1 - alpha) * gr
        avg = s - ga * ga
    ratio = gr / _denominator(avg, eps, eps_inside_sqrt)
    if h is None:
        w -= lr * ratio
        return
    h *= momentum
    h += ratio
    w -= lr * h


def adam_update(w, m, v, vmax, g, lr, beta1, beta2, eps, eps_inside_sqrt, decay, l2, l1, c1, c2):
    """Adam: m = b1*m + (1-b1)*g'; v = b2*v + (1-b2)*g'^2; w -= lr*(m/c1)/(sqrt(v/c2) + eps).

    AMSGrad (vmax given) uses vmax = max(vmax, v) in place of v. AdamW passes decay = 1 - lr*wd
    (w *= decay first) and l2 = 0; plain Adam passes decay = 1 and l2 = wd. c1 = 1 - b1^t and
    c2 = 1 - b2^t are the bias corrections of step t, computed by the caller.
    """
    gr = _regularized(w, g, l2, l1)
    w *= decay
    m *= beta1
    m += (1 - beta1) * gr
    v *= beta2
    v += (1 - beta2) * (gr * gr)
    vhat = v
    if vmax is not None:
        np.maximum(vmax, v, out=vmax)
        vhat = vmax
    w -= lr * (m / c1) / _denominator(vhat / c2, eps, eps_inside_sqrt)


def nonfinite_count(count, g):
    """count[0] += the number of NaN or infinite entries of g (count: int64, shape (1,))."""
    count[0] += np.count_nonzero(~np.isfinite(g))
