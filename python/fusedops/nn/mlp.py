"""MLP: the multilayer perceptron for classification, binary, multilabel and regression tasks."""
from __future__ import annotations

import numpy as np

from ..checks import check_int
from .activations import make_activation
from .fused_layers import BatchNorm1d, Dropout
from .layers import Linear, Sequential
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .models import Model, _dtype, layer_seeds
from .parameter import to_host

__all__ = ["MLP", "TASKS"]

TASKS = ("classification", "binary", "multilabel", "regression")


class MLP(Model):
    """A multilayer perceptron: Linear -> [BatchNorm1d] -> activation -> [Dropout] per hidden
    layer, then a Linear output.

    sizes: (n_inputs, hidden..., n_outputs). task: "classification" (softmax cross-entropy,
    integer labels), "binary" (one logit, BCE, labels 0/1), "multilabel" (BCE, 0/1 targets per
    output) or "regression" (MSE). init: "he" or "xavier" (default: he for relu / leaky_relu,
    xavier for tanh / sigmoid). With batchnorm the hidden Linear layers have no bias (BN's beta
    replaces it).
    """

    def __init__(self, sizes, activation: str = "relu", dropout: float = 0.0, batchnorm: bool = False,
                 task: str = "classification", seed: int = 0, backend=None, dtype=np.float32,
                 init: str | None = None, dropout_mode: str = "inverted", keep_mask: bool = True):
        sizes = [check_int(f"sizes[{i}]", s, lo=1) for i, s in enumerate(sizes)]
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least the input and output sizes; got {sizes}")
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}; got {task!r}")
        if task == "classification" and sizes[-1] < 2:
            raise ValueError("task='classification' needs sizes[-1] >= 2 classes (use task='binary')")
        if task == "binary" and sizes[-1] != 1:
            raise ValueError(f"task='binary' needs sizes[-1] == 1 output; got {sizes[-1]}")
        dtype = _dtype(dtype)
        make_activation(activation)  # validates the name
        init = init or ("xavier" if activation in ("tanh", "sigmoid") else "he")
        seeds = layer_seeds(seed, 2 * len(sizes))
        layers = []
        for i in range(len(sizes) - 2):
            layers.append(Linear(sizes[i], sizes[i + 1], bias=not batchnorm, init=init, seed=seeds[2 * i], dtype=dtype))
            if batchnorm:
                layers.append(BatchNorm1d(sizes[i + 1], dtype=dtype))
            layers.append(make_activation(activation))
            if dropout:
                layers.append(Dropout(dropout, mode=dropout_mode, seed=seeds[2 * i + 1], keep_mask=keep_mask))
        layers.append(Linear(sizes[-2], sizes[-1], init=init, seed=seeds[-1], dtype=dtype))
        self.net = Sequential(*layers)
        self.n_features = sizes[0]
        self.task = task
        self.loss_fn = {"classification": CrossEntropyLoss, "binary": BCEWithLogitsLoss,
                        "multilabel": BCEWithLogitsLoss, "regression": MSELoss}[task]()
        self.has_accuracy = task != "regression"
        self._labels_per_row = sizes[-1] if task == "multilabel" else 1
        config = dict(sizes=sizes, activation=activation, dropout=float(dropout), batchnorm=bool(batchnorm),
                      task=task, seed=int(seed), dtype=dtype.name, init=init, dropout_mode=dropout_mode,
                      keep_mask=bool(keep_mask))
        self._setup(config, backend, dtype, int(seed))

    @staticmethod
    def param_count(config: dict) -> int:
        """The parameters MLP(**config) allocates, computed from `config` alone (fusedops.nn.load
        checks a file's config against the parameters it holds before building anything)."""
        sizes, bn = config["sizes"], bool(config.get("batchnorm", False))
        hidden = sum(a * b + (2 * b if bn else b) for a, b in zip(sizes[:-2], sizes[1:-1]))
        return hidden + sizes[-2] * sizes[-1] + sizes[-1]

    def _check_y(self, y, X, name="y"):
        if y is None:
            raise ValueError(f"{name} is required for an MLP")
        y = np.asarray(to_host(y))
        if len(y) != len(X):
            raise ValueError(f"{name} has {len(y)} rows but X has {len(X)}")
        n_out = self.config["sizes"][-1]
        if self.task in ("classification", "binary"):
            y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
            if y.ndim != 1:
                raise ValueError(f"{name} must hold one label per row; got shape {y.shape}")
            if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
                raise ValueError(f"{name} must hold integer class labels; got dtype {y.dtype}")
            hi = n_out if self.task == "classification" else 2
            if y.size and (y.min() < 0 or y.max() >= hi):
                raise ValueError(f"{name} labels must be in [0, {hi - 1}]; got values in [{y.min()}, {y.max()}]")
            if self.task == "classification":
                return y.astype(np.int64)
            return y.astype(self.dtype).reshape(-1, 1)
        y = y.reshape(-1, 1) if y.ndim == 1 else y
        if y.ndim != 2 or y.shape[1] != n_out:
            raise ValueError(f"{name} must have shape (n, {n_out}); got {y.shape}")
        y = np.ascontiguousarray(y, dtype=self.dtype)
        if not np.isfinite(y).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        if self.task == "multilabel" and (y.min() < 0 or y.max() > 1):
            raise ValueError(f"{name} targets must be in [0, 1] for task='multilabel'")
        return y

    def _correct(self, out, yb):
        xp = np if isinstance(out, np.ndarray) else self.xp
        if self.task == "classification":
            return xp.sum(xp.argmax(out, axis=1) == yb)
        return xp.sum((out > 0) == (yb > 0.5))

    def decision_function(self, X) -> np.ndarray:
        """The network's raw outputs (logits) in eval mode."""
        return self._forward_eval(self._check_X(X, "X"))

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities: softmax (classification), [1-p, p] (binary), sigmoid (multilabel)."""
        if self.task == "regression":
            raise AttributeError("predict_proba is not defined for task='regression'")
        z = self.decision_function(X).astype(np.float64)
        if self.task == "classification":
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        p = 0.5 * (1 + np.tanh(0.5 * z))
        return np.hstack([1 - p, p]) if self.task == "binary" else p

    def predict(self, X) -> np.ndarray:
        """Labels (classification, binary), 0/1 matrices (multilabel) or values (regression)."""
        z = self.decision_function(X)
        if self.task == "classification":
            return z.argmax(axis=1)
        if self.task == "regression":
            return z[:, 0] if z.shape[1] == 1 else z
        out = (z > 0).astype(np.int64)
        return out[:, 0] if self.task == "binary" else out

    def score(self, X, y) -> float:
        """Accuracy for the classification tasks, R^2 for regression (scikit-learn's convention)."""
        if self.task != "regression":
            return self.evaluate(X, y)["accuracy"]
        y = self._check_y(y, self._check_X(X, "X"), "y")
        pred = self.decision_function(X).astype(np.float64)
        ss_res = ((y - pred) ** 2).sum()
        ss_tot = ((y - y.mean(axis=0)) ** 2).sum()
        return float(1 - ss_res / ss_tot) if ss_tot > 0 else 0.0
