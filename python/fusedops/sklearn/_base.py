"""What the three estimators share: the fit driver over `fusedops.nn` (one `Model.fit` call per
estimator fit, scikit-learn's stopping rule and learning-rate schedules in its epoch callback,
scikit-learn's `alpha` as fusedops' per-batch L2), warm starts that continue exactly, and
pickling through `fusedops.nn.save`.

scikit-learn semantics kept (sklearn/neural_network/_multilayer_perceptron.py,
_stochastic_optimizers.py): `loss_curve_` holds each epoch's mean batch loss including the
penalty alpha/(2 n_batch)*||W||^2; training stops when that loss (or, with early_stopping, the
validation score) has not improved by `tol` for more than `n_iter_no_change` epochs; with
solver='sgd', 'invscaling' sets lr = learning_rate_init / (t_ + 1)**power_t after each epoch and
'adaptive' divides it by 5 instead of stopping (until it is <= 1e-6).
"""
from __future__ import annotations

import io
import math
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_random_state

from .. import nn, optim
from ..nn.parameter import to_host
from ._params import SOLVERS, check_training_params, optimizer_key


class SklearnAdam(optim.Adam):
    """Adam with scikit-learn's (and TensorFlow's) epsilon, the eps-hat of Kingma & Ba (2015),
    section 2: w -= lr*sqrt(c2)/c1 * m/(sqrt(v) + eps), with c = 1 - beta^t. The fused kernel
    computes lr*(m/c1)/(sqrt(v/c2) + e): the same step with e = eps/sqrt(c2), set per step.
    (With PyTorch's placement, weights whose gradients stay near eps, such as those of
    constant features under alpha > 0, drift apart from scikit-learn's.)"""

    def _with_step(self, scalars, step):
        s = super()._with_step(scalars, step)  # (lr, b1, b2, eps, inside, decay, l2, l1, c1, c2)
        return (*s[:3], s[3] / math.sqrt(s[9]), *s[4:])

    def _lowbit_scalars(self, group, step):
        # the same eps-hat for the low-bit kernel: (..., 1/c2, eps_in, eps_out, ...)
        s = list(super()._lowbit_scalars(group, step))
        s[7] *= math.sqrt(s[5])
        return tuple(s)


def store_params(est, values: dict) -> None:
    """`__init__`: every hyperparameter stored unchanged (validation happens in fit)."""
    for name, value in values.items():
        if name not in ("self", "__class__"):
            setattr(est, name, value)


class BaseNetwork(BaseEstimator):
    """Subclasses define `_validate_input`, `_build`, `_targets`, `_val_score` and
    `_stratify`; attributes set by fit end in `_` (public) or start with `_` (private)."""

    # ------------------------------------------------------------------ fit driver
    def _fit(self, X, y, incremental: bool):
        p = check_training_params(self)
        if incremental and p.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first = not hasattr(self, "_model") or not (p.warm_start or incremental)
        X, Y = self._validate_input(X, y, p, incremental=incremental, reset=first)
        rs = check_random_state(self.random_state)
        if first:
            init = self._draw_init(p, X, Y, rs)
        else:
            self._check_same_network(p, X, Y)
        Xtr, Ytr, val = self._split(X, Y, p, rs) if p.early_stopping else (X, Y, None)
        if first:
            self._seed = int(rs.randint(np.iinfo(np.int32).max))  # shuffling, dropout, noise
            self._model = self._build(p, X, Y, init)
            self._network_config = self._config(p, X, Y)
            self._reset_bookkeeping(p)
        self._set_optimizer(p)
        self._train(Xtr, self._targets(Ytr), val, p, incremental)
        return self

    def _draw_init(self, p, X, Y, rs):
        return None

    def _split(self, X, Y, p, rs):
        """scikit-learn's hold-out set for early stopping (same call, same random state)."""
        parts = train_test_split(*((X,) if Y is None else (X, Y)), random_state=rs,
                                 test_size=p.validation_fraction, stratify=self._stratify(Y))
        X_tr, X_val, Y_tr, Y_val = parts if Y is not None else (*parts, None, None)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        return X_tr, Y_tr, (X_val, Y_val)

    def _reset_bookkeeping(self, p):
        self.n_iter_, self.t_, self.loss_curve_ = 0, 0, []
        self._no_improvement_count = 0
        self._learning_rate = p.lr
        self._optimizer_key = None
        if p.early_stopping:
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
            self._best_state = self._model._snapshot()
        else:
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = None, None, np.inf
            self._best_state = None

    def _set_optimizer(self, p):
        """Keep the optimizer (and its state) while its hyperparameters are unchanged, so a warm
        start or partial_fit continues exactly; else a fresh one at learning_rate_init."""
        key = optimizer_key(p)
        if key == self._optimizer_key and self._model.optimizer is not None:
            return
        self._model.optimizer, self._model.optimizer_name = self._new_optimizer(key), None
        self._optimizer_key, self._learning_rate = key, p.lr

    def _new_optimizer(self, key):
        """A fresh optimizer from optimizer_key(p); L2 comes per batch (fit's l2_per_batch)."""
        model, state_dtype = self._model, key[-1]
        if state_dtype != "float32" and model.dtype != np.float32:
            raise ValueError(f"state_dtype={state_dtype!r} needs a float32 network; this one is "
                             f"{np.dtype(model.dtype).name} (dtype=None keeps float64 input)")
        if key[0] == "adam":
            _, lr, beta_1, beta_2, eps, l1, _ = key
            return SklearnAdam(model.param_groups(l1=l1), lr=lr, betas=(beta_1, beta_2), eps=eps,
                               backend=model.backend, state_dtype=state_dtype)
        _, lr, momentum, nesterov, _, _, l1, _ = key
        if state_dtype != "float32" and momentum == 0:
            state_dtype = "float32"  # plain SGD keeps no state to store in fewer bits
        return optim.SGD(model.param_groups(l1=l1), lr=lr, momentum=momentum,
                         nesterov=nesterov and momentum > 0, backend=model.backend,
                         state_dtype=state_dtype)

    def _train(self, X, T, val, p, incremental):
        n = X.shape[0]
        if p.batch_size == "auto":
            batch = min(200, n)
        else:
            if p.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch = min(p.batch_size, n)
        self.n_iter_, self._stopped = 0, False
        if p.early_stopping and self.validation_scores_ is None:  # switched on for a warm start
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
            self._best_state = self._model._snapshot()
        elif not p.early_stopping and self.best_loss_ is None:  # switched off
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = None, None, np.inf

        def end_of_epoch(model, history):
            return self._end_of_epoch(history.loss[-1], n, val, p)

        try:
            self._model.fit(X, T, epochs=1 if incremental else p.max_iter, batch_size=batch,
                            optimizer=self._model.optimizer, shuffle=p.shuffle, seed=self._seed,
                            l2_per_batch=p.alpha, callback=end_of_epoch)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        if not incremental and not self._stopped and self.n_iter_ == p.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({p.max_iter}) reached and the "
                          "optimization hasn't converged yet.", ConvergenceWarning)
        if p.early_stopping:
            self._model._restore(self._best_state)
        if not np.isfinite(to_host(self._model.flat.data)).all():
            raise ValueError("Solver produced non-finite parameter weights. The input data may contain "
                             "large values and need to be preprocessed.")

    # ------------------------------------------------------------------ stopping rule
    def _end_of_epoch(self, loss, n_train, val, p) -> bool:
        """scikit-learn's bookkeeping after each epoch; True stops training."""
        self.n_iter_ += 1
        self.t_ += n_train
        self.loss_ = loss
        self.loss_curve_.append(loss)
        if p.verbose:
            print("Iteration %d, loss = %.8f" % (self.n_iter_, loss))
        self._update_no_improvement_count(val, p)
        if p.solver == "sgd" and p.learning_rate == "invscaling":
            self._set_learning_rate(p.lr / (self.t_ + 1) ** p.power_t)
        if self._no_improvement_count <= p.n_iter_no_change:
            return False
        if p.early_stopping:
            msg = ("Validation score did not improve more than tol=%f for %d consecutive epochs."
                   % (p.tol, p.n_iter_no_change))
        else:
            msg = ("Training loss did not improve more than tol=%f for %d consecutive epochs."
                   % (p.tol, p.n_iter_no_change))
        if p.solver == "sgd" and p.learning_rate == "adaptive" and self._learning_rate > 1e-6:
            self._set_learning_rate(self._learning_rate / 5.0)
            if p.verbose:
                print(msg + " Setting learning rate to %f" % self._learning_rate)
            self._no_improvement_count = 0
            return False
        if p.verbose:
            print(msg + (" Learning rate too small." if p.learning_rate == "adaptive" and p.solver == "sgd"
                         else "") + " Stopping.")
        self._stopped = True
        return True

    def _update_no_improvement_count(self, val, p):
        if val is None:
            last = self.loss_curve_[-1]
            self._no_improvement_count = self._no_improvement_count + 1 if last > self.best_loss_ - p.tol else 0
            self.best_loss_ = min(self.best_loss_, last)
            return
        score = self._val_score(*val)
        self.validation_scores_.append(score)
        if p.verbose:
            print("Validation score: %f" % score)
        best = self.best_validation_score_
        self._no_improvement_count = self._no_improvement_count + 1 if score < best + p.tol else 0
        if score > best:
            self.best_validation_score_ = score
            self._best_state = self._model._snapshot()

    def _set_learning_rate(self, lr):
        """scikit-learn's SGD keeps velocities v = momentum*v - lr*g (lr inside); fusedops' buffer
        holds h = momentum*h + g and steps lr*h. Rescaling h by old/new lr when lr changes keeps
        lr*h == -v, so the next steps are scikit-learn's."""
        opt, old = self._model.optimizer, self._learning_rate
        if isinstance(opt, optim.SGD) and lr != old and opt.param_groups[0]["momentum"] > 0:
            sd = opt.state_dict()
            for k in [k for k in sd if k.endswith(".momentum_buffer")]:
                sd[k] = sd[k] * sd[k].dtype.type(old / lr)
            opt.load_state_dict(sd)
        opt.lr = lr
        self._learning_rate = lr

    def _stochastic(self):
        """partial_fit exists for the stochastic solvers only (scikit-learn's available_if)."""
        if self.solver not in SOLVERS:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. {self.solver!r} "
                                 "is not stochastic.")
        return True

    # ------------------------------------------------------------------ helpers
    def _check_same_network(self, p, X, Y):
        built = self._network_config
        now = self._config(p, X, Y)
        changed = [k for k in now if now[k] != built[k]]
        if changed:
            raise ValueError(f"warm_start / partial_fit continue the fitted network, but {changed[0]} "
                             f"changed from {built[changed[0]]!r} to {now[changed[0]]!r}; set "
                             "warm_start=False (or fit a new estimator) to start over")

    def _config(self, p, X, Y) -> dict:
        return {"hidden_layer_sizes": p.hidden, "activation": p.activation, "dropout": p.dropout,
                "batchnorm": p.batchnorm, "backend": self.backend}

    def _as_dtype(self, X, p=None):
        """X in the network's dtype: dtype='float32' (default) or 'float64', or the input's
        float dtype with dtype=None; a fitted network keeps its own."""
        if hasattr(self, "_model"):
            return X.astype(self._model.dtype, copy=False)
        dt = p.dtype if p is not None and p.dtype is not None else X.dtype
        return X.astype(dt, copy=False)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        """Parameters are views of one flat buffer, which pickle would split: the network goes
        in fusedops.nn's file format, the optimizer (an adapter class) as its state_dict."""
        state = super().__getstate__()
        model = state.get("_model")
        if model is not None:
            opt, buf = model.optimizer, io.BytesIO()
            model.optimizer = None
            try:
                nn.save(model, buf)
            finally:
                model.optimizer = opt
            state = {**state, "_model": buf.getvalue(),
                     "_optimizer_state": None if opt is None else opt.state_dict()}
        return state

    def __setstate__(self, state):
        state = dict(state)
        blob, opt_state = state.get("_model"), state.pop("_optimizer_state", None)
        if isinstance(blob, bytes):
            state["_model"] = nn.load(io.BytesIO(blob))
        super().__setstate__(state)
        if isinstance(blob, bytes):
            self._attach_loss(self._model)
            if opt_state is not None:
                opt = self._new_optimizer(self._optimizer_key)
                opt.load_state_dict(opt_state)
                self._model.optimizer = opt

    def _attach_loss(self, model):
        """Replace the nn model's loss where scikit-learn's convention differs (not saved by nn)."""
