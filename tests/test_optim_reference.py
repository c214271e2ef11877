"""The reference against hand-worked steps of the formulas in DESIGN.md, and the lecture's
ill-conditioned quadratic: momentum, RMSprop and Adam reach the minimum where plain gradient
descent with the same step size oscillates or crawls."""
import math

import numpy as np
import pytest
from conftest import SIM

from fusedops import ops, optim


def _arr(*xs):
    return np.array(xs, np.float64)


def test_sgd_momentum_and_nesterov_by_hand():
    # w=1, g=0.5, lr=0.1, beta=0.9. Heavy ball: h=0.5, w=0.95; again: h=0.95, w=0.855.
    w, h = _arr(1.0), _arr(0.0)
    ops.sgd_step(w, _arr(0.5), h, lr=0.1, momentum=0.9, backend="numpy")
    assert (w[0], h[0]) == pytest.approx((0.95, 0.5), abs=1e-15)
    ops.sgd_step(w, _arr(0.5), h, lr=0.1, momentum=0.9, backend="numpy")
    assert (w[0], h[0]) == pytest.approx((0.855, 0.95), abs=1e-15)
    # Nesterov: h=0.5, w = 1 - 0.1*(0.5 + 0.9*0.5) = 0.905
    w, h = _arr(1.0), _arr(0.0)
    ops.sgd_step(w, _arr(0.5), h, lr=0.1, momentum=0.9, nesterov=True, backend="numpy")
    assert w[0] == pytest.approx(0.905, abs=1e-15)


def test_regularization_by_hand():
    # g' = g + l2*w + l1*sign(w): w=(2, -2, 0), g=0, l2=0.5, l1=0.25 -> g'=(1.25, -1.25, 0)
    w = _arr(2.0, -2.0, 0.0)
    ops.sgd_step(w, _arr(0.0, 0.0, 0.0), lr=1.0, weight_decay=0.5, l1=0.25, backend="numpy")
    np.testing.assert_allclose(w, [0.75, -0.75, 0.0], atol=1e-15)


def test_adagrad_by_hand():
    # s = 0 + 3^2 = 9; w = 1 - 0.1*3/(3 + eps); lecture form: 1 - 0.1*3/sqrt(9 + eps)
    w, s = _arr(1.0), _arr(0.0)
    ops.adagrad_step(w, _arr(3.0), s, lr=0.1, eps=1e-2, backend="numpy")
    assert (w[0], s[0]) == pytest.approx((1 - 0.3 / 3.01, 9.0), abs=1e-15)
    w, s = _arr(1.0), _arr(0.0)
    ops.adagrad_step(w, _arr(3.0), s, lr=0.1, eps=1e-2, eps_inside_sqrt=True, backend="numpy")
    assert w[0] == pytest.approx(1 - 0.3 / math.sqrt(9.01), abs=1e-15)


def test_rmsprop_by_hand():
    # alpha=0.9, g=2: s = 0.1*4 = 0.4; centered: ga = 0.2, s - ga^2 = 0.36, denom 0.6 + eps
    w, s, ga = _arr(1.0), _arr(0.0), _arr(0.0)
    ops.rmsprop_step(w, _arr(2.0), s, grad_avg=ga, lr=0.1, alpha=0.9, eps=0.0, centered=True,
                     backend="numpy")
    assert (s[0], ga[0], w[0]) == pytest.approx((0.4, 0.2, 1 - 0.1 * 2 / 0.6), abs=1e-15)
    # momentum 0.5, two steps of g=2 with alpha=0.9, eps=0 (not centered):
    # step 1: s=0.4, r=2/sqrt(0.4), h=r, w=1-0.1*h; step 2: s=0.36+0.4=0.76, h=0.5*h + 2/sqrt(0.76)
    w, s, h = _arr(1.0), _arr(0.0), _arr(0.0)
    for _ in range(2):
        ops.rmsprop_step(w, _arr(2.0), s, h, lr=0.1, alpha=0.9, eps=0.0, momentum=0.5,
                         backend="numpy")
    h_expected = 0.5 * 2 / math.sqrt(0.4) + 2 / math.sqrt(0.76)
    w_expected = 1 - 0.1 * (2 / math.sqrt(0.4)) - 0.1 * h_expected
    assert (s[0], h[0], w[0]) == pytest.approx((0.76, h_expected, w_expected), abs=1e-14)


def test_adam_first_step_moves_by_lr_times_sign():
    # step 1: m/c1 = g and v/c2 = g^2 exactly, so w -= lr*g/(|g| + eps) = lr*sign(g) (eps=0)
    w = _arr(1.0, 1.0, 1.0)
    m, v = np.zeros(3), np.zeros(3)
    with np.errstate(invalid="ignore"):
        ops.adam_step(w, _arr(3.0, -0.01, 0.0), m, v, step=1, lr=0.1, eps=0.0, backend="numpy")
    np.testing.assert_allclose(w[:2], [0.9, 1.1], atol=1e-15)
    assert np.isnan(w[2])  # 0/0 with eps=0, as in PyTorch
    np.testing.assert_allclose(m, [0.3, -0.001, 0.0], atol=1e-15)


def test_adam_amsgrad_adamw_by_hand():
    # two steps, b1=0.5, b2=0.5, g=4 then g=0, lr=0.1, eps=0, AdamW wd=1, AMSGrad.
    # step 1: w = 1*(1-0.1) = 0.9; m=2, v=8, vmax=8; m/c1=4, v/c2=16 -> w = 0.9 - 0.1 = 0.8
    # step 2: w = 0.8*0.9 = 0.72; m=1, v=4, vmax=8; c1=c2=0.75 -> 0.72 - 0.1*(4/3)/sqrt(32/3)
    w, m, v, vmax = _arr(1.0), _arr(0.0), _arr(0.0), _arr(0.0)
    kw = dict(lr=0.1, beta1=0.5, beta2=0.5, eps=0.0, weight_decay=1.0, decoupled=True,
              amsgrad=True, backend="numpy")
    ops.adam_step(w, _arr(4.0), m, v, vmax, step=1, **kw)
    assert w[0] == pytest.approx(0.8, abs=1e-15)
    ops.adam_step(w, _arr(0.0), m, v, vmax, step=2, **kw)
    assert (m[0], v[0], vmax[0]) == (1.0, 4.0, 8.0)
    assert w[0] == pytest.approx(0.72 - 0.1 * (4 / 3) / math.sqrt(32 / 3), abs=1e-15)


# ------------------------------------------------------------------- the ill-conditioned bowl

def _grad(w):
    return np.array([0.2 * w[0], 4.0 * w[1]])  # L(w) = 0.1*w1^2 + 2*w2^2


def _descend(make, backend, steps):
    w = np.array([1.0, 1.0])
    opt = make([w], backend)
    trace = []
    for _ in range(steps):
        opt.step([_grad(w)])
        trace.append(w.copy())
    return np.array(trace)


def test_step_size_at_the_stability_edge(backend):
    """lr = 0.5 = 2/lambda_max: gradient descent flips w2 forever; heavy-ball momentum converges."""
    steps = 150 if SIM else 300
    gd = _descend(lambda p, b: optim.SGD(p, lr=0.5, backend=b), backend, steps)
    assert np.all(np.abs(gd[-10:, 1]) == 1.0) and gd[-1, 1] == -gd[-2, 1]
    mom = _descend(lambda p, b: optim.SGD(p, lr=0.5, momentum=0.8, backend=b), backend, steps)
    assert np.max(np.abs(mom[-1])) < 1e-3


def test_small_step_where_gradient_descent_crawls(backend):
    """lr = 0.01: after 400 steps gradient descent has covered under half the way along the flat
    axis (0.998^400 = 0.45); momentum, RMSprop and Adam are at the minimum."""
    steps = 400
    gd = _descend(lambda p, b: optim.SGD(p, lr=0.01, backend=b), backend, steps)
    assert gd[-1, 0] > 0.4
    for name, make in {
        "momentum": lambda p, b: optim.SGD(p, lr=0.01, momentum=0.9, backend=b),
        "rmsprop": lambda p, b: optim.RMSprop(p, lr=0.01, backend=b),
        "adam": lambda p, b: optim.Adam(p, lr=0.01, backend=b),
    }.items():
        tail = _descend(make, backend, steps)[-20:]
        assert np.max(np.abs(tail)) < 1e-3, name
