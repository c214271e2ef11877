"""MLPClassifier and MLPRegressor: scikit-learn's multilayer perceptrons trained by fusedops' fused
optimizer steps (fusedops.nn.MLP underneath; parameters in one flat buffer)."""
from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import column_or_1d
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import nn
from ..nn.layers import Linear
from ..nn.parameter import to_host
from ._base import BaseNetwork, store_params
from ._losses import HalfPoissonDeviance, half_squared_error, multilabel_log_loss
from ._params import choice

_FLOATS = (np.float64, np.float32)


def _linears(model):
    return [layer for layer in model.net if isinstance(layer, Linear)]


class _BaseMLP(BaseNetwork):
    """The multilayer perceptron part of both estimators: scikit-learn's initialization,
    `coefs_` / `intercepts_`, and the fitted-network description."""

    def _draw_init(self, p, X, Y, rs):
        """scikit-learn's initialization (Glorot & Bengio 2010, uniform; bound sqrt(2/(fan_in +
        fan_out)) for 'logistic', sqrt(6/...) otherwise), drawn in sklearn's order, coefs then
        intercepts layer by layer, so a random_state gives sklearn's initial network."""
        units = [X.shape[1], *p.hidden, Y.shape[1]]
        factor = 2.0 if p.activation == "sigmoid" else 6.0
        init = []
        for fan_in, fan_out in zip(units[:-1], units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            init.append((rs.uniform(-bound, bound, (fan_in, fan_out)), rs.uniform(-bound, bound, fan_out)))
        return init

    def _build(self, p, X, Y, init):
        units = [X.shape[1], *p.hidden, Y.shape[1]]
        model = nn.MLP(units, activation=p.activation, dropout=p.dropout, batchnorm=p.batchnorm,
                       task=self._task(Y), seed=self._seed, backend=self.backend, dtype=X.dtype)
        for layer, (W, b) in zip(_linears(model), init):
            layer.weight.data[...] = model.xp.asarray(W.astype(model.dtype))
            if layer.bias is not None:  # hidden layers have none with batchnorm (BN's beta)
                layer.bias.data[...] = model.xp.asarray(b.astype(model.dtype))
        self.n_layers_, self.n_outputs_ = len(units), Y.shape[1]
        self.out_activation_ = self._out_activation(Y)
        self._attach_loss(model)
        return model

    def _config(self, p, X, Y):
        return {**super()._config(p, X, Y), "n_outputs": Y.shape[1], "dtype": p.dtype}

    def _cast(self, X, p, reset):
        if not reset:
            return X.astype(self._model.dtype, copy=False)
        return X.astype(p.dtype or X.dtype, copy=False)

    def _validated_X(self, X):
        """(X in the network's dtype, the dtype of the outputs: the input's float dtype)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=_FLOATS, reset=False)
        return X.astype(self._model.dtype, copy=False), X.dtype

    @property
    def coefs_(self) -> list:
        """Weight matrices, layer i of shape (units[i], units[i+1]): views of the flat parameter
        buffer (host copies for backend='cuda')."""
        check_is_fitted(self)
        return [self._view(layer.weight.data) for layer in _linears(self._model)]

    @property
    def intercepts_(self) -> list:
        """Bias vectors (views like coefs_); None for the hidden layers of a batchnorm network,
        where batch norm's beta takes the bias's place."""
        check_is_fitted(self)
        return [None if layer.bias is None else self._view(layer.bias.data) for layer in _linears(self._model)]

    def _view(self, a):
        return a if isinstance(a, np.ndarray) else to_host(a)



class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer perceptron classifier with scikit-learn's `MLPClassifier` interface, trained with
    fusedops' fused optimizer steps.

    Parameters are scikit-learn's, with its names and defaults (see
    `sklearn.neural_network.MLPClassifier`): solver 'adam' or 'sgd' ('lbfgs' raises), alpha the
    L2 penalty alpha/2*||W||^2 of each batch's summed loss, learning_rate schedules for 'sgd',
    tol / n_iter_no_change / early_stopping as in scikit-learn. `max_fun` is accepted for
    compatibility and unused (it belongs to 'lbfgs'). fusedops adds:

    l1 : float, default=0.0
        L1 coefficient added inside the fused step, l1*sign(W) on each step's mean-loss gradient
        (weights only; not divided by the batch size like alpha).
    dropout : float, default=0.0
        Dropout probability after each hidden activation (fused counter-based kernel).
    batchnorm : bool, default=False
        Batch normalization after each hidden linear layer (its beta replaces the bias).
    backend : str or None, default=None
        'numba', 'c', 'numpy' or 'cuda' (needs CuPy); None: fusedops' default.
    dtype : {'float32', 'float64'} or None, default='float32'
        The network's dtype: X is cast to it. None keeps float32 / float64 input as is (others
        become float64), as scikit-learn's MLP does.
    state_dtype : {'float32', 'bfloat16', 'int8'}, default='float32'
        The optimizer state's storage (Adam's moments, SGD's momentum buffer): 'int8' keeps it in
        blockwise 8-bit codes (about 2 B per parameter instead of 8 for Adam), 'bfloat16' in
        16 bits; see README "Fewer bytes per parameter". Tensors under 4096 elements (biases,
        small layers) keep float32 state. Needs dtype='float32'.

    Fitted attributes are scikit-learn's: classes_, n_features_in_, feature_names_in_, n_iter_,
    t_, loss_, loss_curve_, best_loss_, validation_scores_, best_validation_score_, coefs_,
    intercepts_, n_layers_, n_outputs_, out_activation_.
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, l1=0.0,
                 dropout=0.0, batchnorm=False, backend=None, dtype="float32",
                 state_dtype="float32"):
        store_params(self, locals())

    def fit(self, X, y):
        """Fit the network to X (n_samples, n_features) and labels y (or a label indicator
        matrix for multilabel). Returns self."""
        return self._fit(X, y, incremental=False)

    @available_if(BaseNetwork._stochastic)
    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y); `classes` (all labels) is required on the first call."""
        if not hasattr(self, "classes_"):
            if classes is None and not type_of_target(y).startswith("multilabel"):
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if classes is None else classes)
            self.classes_ = self._label_binarizer.classes_
        elif classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise ValueError(f"`classes={classes!r}` is not the same as on last call to partial_fit, "
                             f"was: {self.classes_!r}")
        return self._fit(X, y, incremental=True)

    def _validate_input(self, X, y, p, incremental, reset):
        X, y = validate_data(self, X, y, multi_output=True, dtype=_FLOATS, reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (not p.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if p.warm_start and not incremental and set(classes) != set(self.classes_):
                raise ValueError("warm_start can only be used where `y` has the same classes as in the "
                                 f"previous call to fit. Previously got {self.classes_}, `y` has {classes}")
            if len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        return self._cast(X, p, reset), self._label_binarizer.transform(y).astype(bool)

    def _task(self, Y):
        kind = self._label_binarizer.y_type_
        return "classification" if kind == "multiclass" else "multilabel" if kind.startswith("multilabel") else "binary"

    def _out_activation(self, Y):
        return "softmax" if self._task(Y) == "classification" else "logistic"

    def _attach_loss(self, model):
        if model.task == "multilabel":
            model.loss_fn = multilabel_log_loss(model.config["sizes"][-1])

    def _targets(self, Y):
        task = self._model.task
        if task == "classification":
            return Y.argmax(axis=1)
        return Y[:, 0].astype(np.int64) if task == "binary" else Y.astype(self._model.dtype)

    def _stratify(self, Y):
        return Y if Y.shape[1] == 1 else None  # scikit-learn stratifies single-output targets only

    def _val_score(self, X, Y):
        return accuracy_score(self._label_binarizer.inverse_transform(Y), self._predict(X))

    def _predict(self, X):
        proba = self._model.predict_proba(X)
        return self._label_binarizer.inverse_transform(proba[:, 1] if self._model.task == "binary" else proba)

    def predict(self, X):
        """Class labels (a label indicator matrix for multilabel targets)."""
        return self._predict(self._validated_X(X)[0])

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes) in the order of classes_."""
        X, dtype = self._validated_X(X)
        return self._model.predict_proba(X).astype(dtype, copy=False)  # computed in float64

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer perceptron regressor with scikit-learn's `MLPRegressor` interface (loss
    'squared_error' or 'poisson'), trained with fusedops' fused optimizer steps. Parameters and
    fitted attributes as MLPClassifier's (without classes_), see there; multi-output y works."""

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001,
                 power_t=0.5, max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
                 warm_start=False, momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 max_fun=15000, l1=0.0, dropout=0.0, batchnorm=False, backend=None, dtype="float32",
                 state_dtype="float32"):
        store_params(self, locals())

    def fit(self, X, y):
        """Fit the network to X (n_samples, n_features) and y (n_samples,) or (n_samples, n_targets)."""
        return self._fit(X, y, incremental=False)

    @available_if(BaseNetwork._stochastic)
    def partial_fit(self, X, y):
        """One epoch over (X, y)."""
        return self._fit(X, y, incremental=True)

    def _validate_input(self, X, y, p, incremental, reset):
        choice("loss", self.loss, ("squared_error", "poisson"))
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=_FLOATS, reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("loss='poisson' requires y >= 0")
        return self._cast(X, p, reset), y.reshape(len(y), -1)

    def _config(self, p, X, Y):
        return {**super()._config(p, X, Y), "loss": self.loss}

    def _task(self, Y):
        return "regression"

    def _out_activation(self, Y):
        return "exp" if self.loss == "poisson" else "identity"

    def _attach_loss(self, model):
        k = model.config["sizes"][-1]
        model.loss_fn = HalfPoissonDeviance(model.xp) if self.out_activation_ == "exp" else half_squared_error(k)

    def _targets(self, Y):
        return Y.astype(self._model.dtype)

    def _stratify(self, Y):
        return None

    def _val_score(self, X, Y):
        pred = self._predict(X)
        return np.nan if not np.isfinite(pred).all() else r2_score(Y[:, 0] if Y.shape[1] == 1 else Y, pred)

    def _predict(self, X):
        z = self._model.decision_function(X)
        if self.out_activation_ == "exp":
            z = np.exp(z)
        return z[:, 0] if z.shape[1] == 1 else z

    def predict(self, X):
        """Predicted values, (n_samples,) or (n_samples, n_targets), in X's float dtype."""
        X, dtype = self._validated_X(X)
        return self._predict(X).astype(dtype, copy=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
