"""Hyperparameter checks of the scikit-learn estimators, run at fit time (scikit-learn's rule:
`__init__` and `set_params` store values unchanged and never raise). Every error names the
argument, through sklearn's own `check_scalar` where the value is a number."""
from __future__ import annotations

from numbers import Integral, Real
from types import SimpleNamespace

import numpy as np
from sklearn.utils import check_scalar

# scikit-learn's activation names -> fusedops.nn's
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
SOLVERS = ("adam", "sgd")
SCHEDULES = ("constant", "invscaling", "adaptive")
DTYPES = ("float32", "float64")
STATE_DTYPES = ("float32", "bfloat16", "int8")

LBFGS_MESSAGE = (
    "solver='lbfgs' is not supported by fusedops.sklearn: L-BFGS is a full-batch quasi-Newton "
    "method, not a mini-batch first-order step that fusedops fuses; use solver='adam' or 'sgd' "
    "(or sklearn.neural_network for 'lbfgs')")


def choice(name, value, options):
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value


def boolean(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def hidden_sizes(value, name="hidden_layer_sizes"):
    """A tuple of positive ints from an int or a sequence (scikit-learn accepts both)."""
    sizes = [value] if isinstance(value, Integral) else value
    try:
        sizes = list(sizes)
    except TypeError:
        raise TypeError(f"{name} must be an int or a sequence of ints; got {value!r}") from None
    for i, s in enumerate(sizes):
        check_scalar(s, f"{name}[{i}]", Integral, min_val=1)
    return tuple(int(s) for s in sizes)


def compute_dtype(value):
    """'float32' (the default: fusedops' fast path), 'float64', or None (the input's dtype)."""
    if value is None:
        return None
    try:
        dt = np.dtype(value)
    except TypeError:
        dt = None
    if dt is None or dt.name not in DTYPES:
        raise ValueError(f"dtype must be 'float32', 'float64' or None; got {value!r}")
    return dt


def check_training_params(est) -> SimpleNamespace:
    """The validated hyperparameters shared by the three estimators (the solver, its schedule,
    stopping rule and fusedops' extras). Raises naming the argument."""
    if est.solver == "lbfgs":
        raise ValueError(LBFGS_MESSAGE)
    p = SimpleNamespace()
    p.solver = choice("solver", est.solver, SOLVERS)
    p.activation = ACTIVATIONS[choice("activation", est.activation, tuple(ACTIVATIONS))]
    p.learning_rate = choice("learning_rate", est.learning_rate, SCHEDULES)
    p.hidden = hidden_sizes(est.hidden_layer_sizes)
    p.alpha = float(check_scalar(est.alpha, "alpha", Real, min_val=0.0))
    if isinstance(est.batch_size, str):
        p.batch_size = choice("batch_size", est.batch_size, ("auto",))
    else:
        p.batch_size = int(check_scalar(est.batch_size, "batch_size", Integral, min_val=1))
    p.lr = float(check_scalar(est.learning_rate_init, "learning_rate_init", Real, min_val=0.0,
                              include_boundaries="neither"))
    p.power_t = float(check_scalar(est.power_t, "power_t", Real, min_val=0.0))
    p.max_iter = int(check_scalar(est.max_iter, "max_iter", Integral, min_val=1))
    p.tol = float(check_scalar(est.tol, "tol", Real, min_val=0.0))
    p.momentum = float(check_scalar(est.momentum, "momentum", Real, min_val=0.0, max_val=1.0))
    p.validation_fraction = float(check_scalar(est.validation_fraction, "validation_fraction", Real,
                                               min_val=0.0, max_val=1.0, include_boundaries="left"))
    p.beta_1 = float(check_scalar(est.beta_1, "beta_1", Real, min_val=0.0, max_val=1.0, include_boundaries="left"))
    p.beta_2 = float(check_scalar(est.beta_2, "beta_2", Real, min_val=0.0, max_val=1.0, include_boundaries="left"))
    p.epsilon = float(check_scalar(est.epsilon, "epsilon", Real, min_val=0.0, include_boundaries="neither"))
    if est.n_iter_no_change == np.inf:
        p.n_iter_no_change = np.inf
    else:
        p.n_iter_no_change = int(check_scalar(est.n_iter_no_change, "n_iter_no_change", Integral, min_val=1))
    for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping", "batchnorm"):
        setattr(p, name, boolean(name, getattr(est, name)))
    p.verbose = int(check_scalar(est.verbose, "verbose", Integral, min_val=0))
    p.l1 = float(check_scalar(est.l1, "l1", Real, min_val=0.0))
    p.dropout = float(check_scalar(est.dropout, "dropout", Real, min_val=0.0, max_val=1.0,
                                   include_boundaries="left"))
    if est.backend is not None and not isinstance(est.backend, str):
        raise TypeError(f"backend must be a backend name or None; got {est.backend!r}")
    p.dtype = compute_dtype(est.dtype)
    p.state_dtype = choice("state_dtype", est.state_dtype, STATE_DTYPES)
    if p.state_dtype != "float32" and p.dtype is not None and p.dtype != np.float32:
        raise ValueError(f"state_dtype={p.state_dtype!r} needs dtype='float32' (the low-bit "
                         f"optimizer state updates float32 weights); got dtype={est.dtype!r}")
    return p


def optimizer_key(p) -> tuple:
    """The hyperparameters an optimizer is built from: a warm start keeps the optimizer's state
    (moments, step count, current learning rate) only while they are unchanged."""
    if p.solver == "adam":
        return ("adam", p.lr, p.beta_1, p.beta_2, p.epsilon, p.l1, p.state_dtype)
    return ("sgd", p.lr, p.momentum, p.nesterovs_momentum, p.learning_rate, p.power_t, p.l1,
            p.state_dtype)
