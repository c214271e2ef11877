"""Shared cases for the optimizer tests: every optimizer x option, the functional call that runs
one of them for several steps, and the dtype-tied tolerance rule."""
import numpy as np

from fusedops import ops

# (op, state buffer names in signature order, hyperparameters)
CASES = [
    ("sgd", (), dict(lr=0.05)),
    ("sgd", ("momentum_buf",), dict(lr=0.05, momentum=0.9)),
    ("sgd", ("momentum_buf",), dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("adagrad", ("sum_sq",), dict(lr=0.05)),
    ("adagrad", ("sum_sq",), dict(lr=0.05, eps=1e-6, eps_inside_sqrt=True)),
    ("rmsprop", ("square_avg",), dict(lr=0.01)),
    ("rmsprop", ("square_avg", "momentum_buf"), dict(lr=0.01, momentum=0.9)),
    ("rmsprop", ("square_avg", "grad_avg"), dict(lr=0.01, centered=True)),
    ("rmsprop", ("square_avg", "momentum_buf", "grad_avg"),
     dict(lr=0.01, alpha=0.9, momentum=0.5, centered=True, eps=1e-6, eps_inside_sqrt=True)),
    ("adam", ("exp_avg", "exp_avg_sq"), dict(lr=0.01)),
    ("adam", ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"), dict(lr=0.01, amsgrad=True)),
    ("adam", ("exp_avg", "exp_avg_sq"), dict(lr=0.01, beta1=0.5, decoupled=True)),
    ("adam", ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
     dict(lr=0.01, beta2=0.9, amsgrad=True, decoupled=True, eps=1e-6, eps_inside_sqrt=True)),
]
REGULARIZATION = {"none": {}, "l2": dict(weight_decay=0.05), "elastic": dict(weight_decay=0.05, l1=0.01)}
FUNCS = {"sgd": ops.sgd_step, "adagrad": ops.adagrad_step, "rmsprop": ops.rmsprop_step,
         "adam": ops.adam_step}


def case_id(case):
    op, _, hyper = case
    flags = [k for k, v in hyper.items() if v is True] + (["mom"] if hyper.get("momentum") else [])
    return "-".join([op, *flags]) or op


def initial(n, dtype, seed=0):
    """Parameters with a nonzero mean and exact zeros (sign(0) = 0 in the L1 term)."""
    rng = np.random.default_rng(seed)
    w = (1.0 + 2.0 * rng.standard_normal(n)).astype(dtype)
    w[::7] = 0
    return w


def gradients(n, steps, dtype, seed=1):
    rng = np.random.default_rng(seed)
    gs = rng.standard_normal((steps, n)).astype(dtype)
    gs[:, 3::11] = 0
    return gs


def run(case, reg, backend, w, grads):
    """Run `case` for len(grads) steps from w (copied); return {"param": w, state...}."""
    op, names, hyper = case
    hyper = {**REGULARIZATION[reg], **hyper}
    w = w.copy()
    state = {name: np.zeros_like(w) for name in names}
    for t, g in enumerate(grads, start=1):
        extra = {"step": t} if op == "adam" else {}
        out = FUNCS[op](w, g, **state, **hyper, **extra, backend=backend)
        assert out is w
    return {"param": w, **state}


def bound(dtype, ref64, ref_dtype):
    """Allowed max error of a `dtype` result against the float64 reference: a few times the
    float32/64 NumPy reference's own error, plus a floor of a few ulps of the largest value."""
    err = float(np.max(np.abs(ref_dtype.astype(np.float64) - ref64), initial=0.0))
    scale = float(np.max(np.abs(ref64), initial=0.0))
    return 4.0 * err + 32.0 * np.finfo(dtype).eps * scale
