"""Functional optimizer steps: validate everything, then one in-place kernel pass.

Each op updates `param` and its state buffers in place and returns `param`. Array arguments come
first and positionally, every hyperparameter is keyword-only; formulas and defaults follow
PyTorch (DESIGN.md "Optimizer steps", fusedops.reference.optim). `weight_decay` is the L2
coefficient added to the gradient, except for `adam_step(..., decoupled=True)` (AdamW), where it
shrinks the parameter by `1 - lr*weight_decay` first; `l1` adds `l1*sign(w)` to the gradient.

A bad call raises before any kernel runs and changes nothing. The `*_scalars` helpers validate
hyperparameters and return the kernel's scalar arguments; fusedops.optim reuses them, with the
kernel declarations (SGD_UPDATE, ...) and count_nonfinite.
"""
from __future__ import annotations

import numpy as np

from .._dispatch import ADAGRAD_UPDATE, ADAM_UPDATE, NONFINITE_COUNT, RMSPROP_UPDATE, SGD_UPDATE
from .._dispatch import launch
from ..backends import resolve_backend
from ..checks import check_array, check_bool, check_int, check_like, check_no_overlap, check_real

__all__ = ["sgd_step", "adagrad_step", "rmsprop_step", "adam_step"]


def _nonneg(name, value):
    return check_real(name, value, lo=0.0)


def _check_state(param, grad, named_state):
    """param writable float array; grad like param; each state buffer like param and writable;
    no buffer shares memory with another or with grad."""
    check_array("param", param, writable=True)
    check_like("grad", grad, "param", param)
    for name, buf in named_state.items():
        if buf is not None:
            check_like(name, buf, "param", param, writable=True)
    check_no_overlap({"param": param, **named_state}, {"grad": grad})


def _require(name, buf, why):
    if buf is None:
        raise ValueError(f"{name} is required {why}")


def sgd_scalars(lr, momentum, nesterov, weight_decay, l1):
    lr, momentum = _nonneg("lr", lr), _nonneg("momentum", momentum)
    nesterov = check_bool("nesterov", nesterov)
    if nesterov and momentum == 0.0:
        raise ValueError("nesterov=True requires momentum > 0")
    return lr, momentum, nesterov, _nonneg("weight_decay", weight_decay), _nonneg("l1", l1)


def adagrad_scalars(lr, eps, eps_inside_sqrt, weight_decay, l1):
    return (_nonneg("lr", lr), _nonneg("eps", eps), check_bool("eps_inside_sqrt", eps_inside_sqrt),
            _nonneg("weight_decay", weight_decay), _nonneg("l1", l1))


def rmsprop_scalars(lr, alpha, eps, eps_inside_sqrt, momentum, centered, weight_decay, l1):
    check_bool("centered", centered)
    return (_nonneg("lr", lr), check_real("alpha", alpha, lo=0.0, hi=1.0), _nonneg("eps", eps),
            check_bool("eps_inside_sqrt", eps_inside_sqrt), _nonneg("momentum", momentum),
            _nonneg("weight_decay", weight_decay), _nonneg("l1", l1))


def adam_scalars(step, lr, beta1, beta2, eps, eps_inside_sqrt, weight_decay, l1, decoupled, amsgrad):
    """Kernel scalars (lr, beta1, beta2, eps, eps_inside_sqrt, decay, l2, l1, c1, c2), with the
    bias corrections c = 1 - beta^step computed here, once, in float64."""
    step = check_int("step", step, lo=1)
    lr = _nonneg("lr", lr)
    beta1 = check_real("beta1", beta1, lo=0.0, hi=1.0, hi_open=True)
    beta2 = check_real("beta2", beta2, lo=0.0, hi=1.0, hi_open=True)
    eps, wd, l1 = _nonneg("eps", eps), _nonneg("weight_decay", weight_decay), _nonneg("l1", l1)
    eps_inside_sqrt = check_bool("eps_inside_sqrt", eps_inside_sqrt)
    check_bool("amsgrad", amsgrad)
    decay, l2 = (1.0 - lr * wd, 0.0) if check_bool("decoupled", decoupled) else (1.0, wd)
    return lr, beta1, beta2, eps, eps_inside_sqrt, decay, l2, l1, 1.0 - beta1**step, 1.0 - beta2**step


def sgd_step(param, grad, momentum_buf=None, *, lr, momentum=0.0, nesterov=False,
             weight_decay=0.0, l1=0.0, backend=None):
    """One SGD step: w -= lr*g'; with momentum > 0, h = momentum*h + g' and w -= lr*h
    (Nesterov: w -= lr*(g' + momentum*h)). `momentum_buf` (like param) is required when
    momentum > 0 and left untouched otherwise. Returns param."""
    be = resolve_backend(backend, param, grad, momentum_buf)
    scalars = sgd_scalars(lr, momentum, nesterov, weight_decay, l1)
    h = None
    if scalars[1] > 0.0:
        _require("momentum_buf", momentum_buf, "when momentum > 0")
        h = momentum_buf
    _check_state(param, grad, {"momentum_buf": h})
    launch(be, SGD_UPDATE, (param, h, grad), scalars=scalars)
    return param


def adagrad_step(param, grad, sum_sq, *, lr, eps=1e-10, weight_decay=0.0, l1=0.0,
                 eps_inside_sqrt=False, backend=None):
    """One AdaGrad step: s += g'^2; w -= lr*g'/(sqrt(s) + eps) (or sqrt(s + eps) with
    eps_inside_sqrt). Returns param."""
    be = resolve_backend(backend, param, grad, sum_sq)
    scalars = adagrad_scalars(lr, eps, eps_inside_sqrt, weight_decay, l1)
    _require("sum_sq", sum_sq, "(the running sum of squared gradients)")
    _check_state(param, grad, {"sum_sq": sum_sq})
    launch(be, ADAGRAD_UPDATE, (param, sum_sq, grad), scalars=scalars)
    return param


def rmsprop_step(param, grad, square_avg, momentum_buf=None, grad_avg=None, *, lr, alpha=0.99,
                 eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0, l1=0.0,
                 eps_inside_sqrt=False, backend=None):
    """One RMSprop step (torch.optim.RMSprop): s = alpha*s + (1-alpha)*g'^2, denominator
    sqrt(s) + eps, or sqrt(s - ga^2) + eps when centered (grad_avg required); with momentum > 0
    (momentum_buf required) h = momentum*h + g'/denom, w -= lr*h. Returns param."""
    be = resolve_backend(backend, param, grad, square_avg, momentum_buf, grad_avg)
    scalars = rmsprop_scalars(lr, alpha, eps, eps_inside_sqrt, momentum, centered, weight_decay, l1)
    h = momentum_buf if scalars[4] > 0.0 else None
    ga = grad_avg if centered else None
    _require("square_avg", square_avg, "(the running average of squared gradients)")
    if scalars[4] > 0.0:
        _require("momentum_buf", h, "when momentum > 0")
    if centered:
        _require("grad_avg", ga, "when centered=True")
    _check_state(param, grad, {"square_avg": square_avg, "momentum_buf": h, "grad_avg": ga})
    launch(be, RMSPROP_UPDATE, (param, square_avg, h, ga, grad), scalars=scalars)
    return param


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq=None, *, step, lr, beta1=0.9,
              beta2=0.999, eps=1e-8, weight_decay=0.0, l1=0.0, decoupled=False, amsgrad=False,
              eps_inside_sqrt=False, backend=None):
    """One Adam step (step counts from 1): m = b1*m + (1-b1)*g'; v = b2*v + (1-b2)*g'^2;
    w -= lr*(m/c1)/(sqrt(v/c2) + eps). decoupled=True is AdamW; amsgrad=True uses and updates
    max_exp_avg_sq (required then). Returns param."""
    be = resolve_backend(backend, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq)
    scalars = adam_scalars(step, lr, beta1, beta2, eps, eps_inside_sqrt, weight_decay, l1,
                            decoupled, amsgrad)
    vmax = max_exp_avg_sq if amsgrad else None
    for name, buf in (("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)):
        _require(name, buf, "(Adam's moment estimates)")
    if amsgrad:
        _require("max_exp_avg_sq", vmax, "when amsgrad=True")
    _check_state(param, grad, {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq,
                               "max_exp_avg_sq": vmax})
    launch(be, ADAM_UPDATE, (param, exp_avg, exp_avg_sq, vmax, grad), scalars=scalars)
    return param


def count_nonfinite(be, grads, count) -> None:
    """count[0] += NaN/Inf entries over the (checked) gradient arrays `grads`; `count` is an int64
    array of shape (1,) on the host, or on the device for the cuda backend (one read-back)."""
    for g in grads:
        launch(be, NONFINITE_COUNT, (count, g), sizes=(g.size,), dtype=np.dtype(g.dtype))
