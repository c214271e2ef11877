"""Shared cases for the optimizer tests: every optimizer x option, the functional call that runs
one of them for several steps, and the dtype-tied, per-element tolerance rule."""
import inspect

import numpy as np

from fusedops import ops, reference
from fusedops.ops import optim as optim_ops

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
     dict(lr=0.01, beta1=0.8, beta2=0.9, amsgrad=True, decoupled=True, eps=1e-6,
          eps_inside_sqrt=True)),  # beta1 != beta2: swapped bias corrections differ
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


def run(case, reg, backend, w, grads, peaks=None):
    """Run `case` for len(grads) steps from w (copied); return {"param": w, state...}. With a
    dict `peaks`, also fill it with each buffer's per-element peak magnitude over the run."""
    op, names, hyper = case
    hyper = {**REGULARIZATION[reg], **hyper}
    w = w.copy()
    state = {name: np.zeros_like(w) for name in names}
    if peaks is not None:
        peaks.update({"param": np.abs(w).astype(np.float64)},
                     **{name: np.zeros(w.shape) for name in names})
    for t, g in enumerate(grads, start=1):
        extra = {"step": t} if op == "adam" else {}
        out = FUNCS[op](w, g, **state, **hyper, **extra, backend=backend)
        assert out is w
        if peaks is not None:
            for name, a in {"param": w, **state}.items():
                np.maximum(peaks[name], np.abs(a), out=peaks[name])
    return {"param": w, **state}


def _reference_step(op, w, g, state, hyper, step):
    """One step of the NumPy reference kernel called as ops calls it after validation (same
    float64 scalars), so it also runs on np.longdouble arrays, which ops rejects."""
    sig = inspect.signature(FUNCS[op]).parameters
    h = {k: p.default for k, p in sig.items() if p.kind is p.KEYWORD_ONLY and k != "backend"}
    h.update(hyper)
    wd, l1 = h["weight_decay"], h["l1"]
    if op == "sgd":
        sc = optim_ops.sgd_scalars(h["lr"], h["momentum"], h["nesterov"], wd, l1)
        reference.sgd_update(w, state.get("momentum_buf"), g, *sc)
    elif op == "adagrad":
        sc = optim_ops.adagrad_scalars(h["lr"], h["eps"], h["eps_inside_sqrt"], wd, l1)
        reference.adagrad_update(w, state["sum_sq"], g, *sc)
    elif op == "rmsprop":
        sc = optim_ops.rmsprop_scalars(h["lr"], h["alpha"], h["eps"], h["eps_inside_sqrt"],
                                       h["momentum"], h["centered"], wd, l1)
        reference.rmsprop_update(w, state["square_avg"], state.get("momentum_buf"),
                                 state.get("grad_avg"), g, *sc)
    else:
        sc = optim_ops.adam_scalars(step, h["lr"], h["beta1"], h["beta2"], h["eps"],
                                    h["eps_inside_sqrt"], wd, l1, h["decoupled"], h["amsgrad"])
        reference.adam_update(w, state["exp_avg"], state["exp_avg_sq"],
                              state.get("max_exp_avg_sq"), g, *sc)


def run_exact(case, reg, w, grads):
    """run() on the reference in np.longdouble (64-bit significand on x86-64, 113 bits on
    aarch64 Linux): the truth a float64 result is measured against. Where longdouble is
    float64 itself (MSVC, Apple silicon), it is the float64 reference."""
    op, names, hyper = case
    hyper = {**REGULARIZATION[reg], **hyper}
    w = w.astype(np.longdouble)
    state = {name: np.zeros_like(w) for name in names}
    for t, g in enumerate(grads, start=1):
        _reference_step(op, w, g.astype(np.longdouble), state, hyper, t)
    return {"param": w, **state}


def references(case, reg, w, grads):
    """(truth, the NumPy reference in w's dtype, per-element peaks) for bound(): the truth of
    a float32 run is the float64 reference, that of a float64 run the longdouble one."""
    peaks = {}
    if w.dtype == np.float32:
        truth = run(case, reg, "numpy", w.astype(np.float64), grads.astype(np.float64), peaks)
        return truth, run(case, reg, "numpy", w, grads), peaks
    ref = run(case, reg, "numpy", w, grads, peaks)
    return run_exact(case, reg, w, grads), ref, peaks


def bound(dtype, truth, ref_dtype, peak):
    """Per-element allowed error of a `dtype` result against `truth` (references()): 4 times the
    NumPy reference's own error in `dtype` at that element, plus 8 eps of the largest magnitude
    the element reached during the run (`peak`, from references()): an element that
    ends near zero after cancelling larger terms keeps the rounding of those terms, and a fused
    multiply-add rounds differently from NumPy's separate operations. Measured over every case
    at 1031 and 65537 elements, in float32 and float64: the numba and c kernels stay within
    1.71 x (2 x that error + 4 eps x peak), a margin of 2.3 to this bound."""
    err = np.abs(ref_dtype - truth).astype(np.float64)
    return 4.0 * err + 8.0 * np.finfo(dtype).eps * peak
