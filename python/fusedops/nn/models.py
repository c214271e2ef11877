"""Model base class (flat buffers, input checks, predict / evaluate, save / load) and MLP."""
from __future__ import annotations

import numpy as np

from ..backends import check_int
from .layers import BatchNorm1d, Dropout, Linear, Sequential, make_activation
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .parameter import FlatParameters, array_module, resolve_nn_backend, to_host
from .training import fit as _fit
from .training import make_optimizer

__all__ = ["Model", "MLP", "TASKS"]

TASKS = ("classification", "binary", "multilabel", "regression")
EVAL_BATCH = 4096


def _dtype(dtype):
    d = np.dtype(dtype)
    if d not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64; got {d}")
    return d


def layer_seeds(seed: int, n: int) -> list[int]:
    """n independent 64-bit seeds derived from one (NumPy SeedSequence)."""
    ss = np.random.SeedSequence(check_int("seed", seed, lo=0))
    return [int(s.generate_state(1, np.uint64)[0]) for s in ss.spawn(n)]


class Model:
    """Shared machinery. Subclasses build `self.net` and `self.loss_fn` then call `_setup`."""

    has_accuracy = False
    _labels_per_row = 1

    def _setup(self, config: dict, backend, dtype, seed):
        self.config = config
        self.dtype = dtype
        self.seed = seed
        self.backend = resolve_nn_backend(backend)
        self.xp = array_module(self.backend)
        self.net.bind(self.backend, self.xp)
        self.flat = FlatParameters(self.net.parameters(), self.xp, dtype)
        first = self.net.layers[0]
        while isinstance(first, Sequential):
            first = first.layers[0]
        if isinstance(first, Linear):
            first.input_grad = False  # nobody needs d(loss)/d(input): skip that product
        self.optimizer, self.optimizer_name = None, None
        self.epochs_trained = 0

    # ------------------------------------------------------------------ parameters
    def parameters(self) -> list:
        """All parameters, in flat-buffer order (weights first, then biases / BN)."""
        return list(self.flat.params)

    def param_groups(self, *, weight_decay: float = 0.0, l1: float = 0.0) -> list[dict]:
        """Optimizer groups: weights (with weight_decay, l1), then biases and BN parameters
        (without). Each group is one contiguous slice of the flat buffer: one kernel per step."""
        return self.flat.param_groups(weight_decay=weight_decay, l1=l1)

    @property
    def n_params(self) -> int:
        return int(self.flat.data.size)

    def train(self):
        self.net.train()
        return self

    def eval(self):
        self.net.eval()
        return self

    # ------------------------------------------------------------------ checks
    def _check_X(self, X, name="X", n_features=None):
        n_features = self.n_features if n_features is None else n_features
        X = to_host(X)
        X = np.asarray(X)
        if X.dtype.kind not in "fiub":
            raise TypeError(f"{name} must be numeric; got dtype {X.dtype}")
        if X.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape {X.shape}")
        if X.shape[1] != n_features:
            raise ValueError(f"{name} has {X.shape[1]} features but the model expects {n_features}")
        if len(X) == 0:
            raise ValueError(f"{name} has no rows")
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if not np.isfinite(X).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        return X

    def _check_y(self, y, X, name="y"):
        raise NotImplementedError

    # ------------------------------------------------------------------ training hooks
    def _train_input(self, xb):
        return xb

    def _correct(self, out, yb):
        raise NotImplementedError

    def _after_fit(self, X):
        pass

    def _snapshot(self):
        bn = [(layer.running_mean.copy(), layer.running_var.copy()) for layer in self._bn_layers()]
        return self.flat.data.copy(), bn

    def _restore(self, snap):
        data, bn = snap
        self.flat.data[...] = data
        for layer, (m, v) in zip(self._bn_layers(), bn):
            layer.running_mean[...] = m
            layer.running_var[...] = v

    def _bn_layers(self):
        def walk(seq):
            for layer in seq:
                if isinstance(layer, Sequential):
                    yield from walk(layer)
                elif isinstance(layer, BatchNorm1d):
                    yield layer
        return list(walk(self.net))

    def set_optimizer(self, optimizer="adam", *, lr=None, l1: float = 0.0, l2: float = 0.0):
        """Set (or update, when of the same kind) the optimizer `fit` and `train_step` use;
        the arguments are those of `fit`. Returns it."""
        self.optimizer, self.optimizer_name = make_optimizer(self, optimizer, lr, l1, l2)
        return self.optimizer

    def _step(self, xb, yb):
        """One training step on device batches: forward, fused loss gradient, backward, one
        fused optimizer kernel per parameter group. Returns (loss as a 0-d array, output)."""
        out = self.net.forward(self._train_input(xb))
        loss, grad = self.loss_fn.value_and_grad(out, yb)
        self.net.backward(grad)
        self.optimizer.step()
        return loss, out

    def train_step(self, x, y=None):
        """One training step on a batch (host or device arrays; y in the form `fit` takes,
        y=None for an autoencoder). Returns the batch loss as a 0-d array (on the device for
        cuda: `float(loss)` synchronizes). Call `set_optimizer` first."""
        if self.optimizer is None:
            raise RuntimeError("train_step needs an optimizer: call set_optimizer(...) (or fit) first")
        X = self._check_X(x, "x")
        y = self._check_y(y, X, "y")
        self.net.train()
        return self._step(self.xp.asarray(X), self.xp.asarray(y))[0]

    def fit(self, X, y=None, *, epochs: int, batch_size: int = 32, optimizer="adam", lr=None,
            l1: float = 0.0, l2: float = 0.0, validation_data=None, validation_split: float = 0.0,
            early_stopping: int | None = None, shuffle: bool = True, seed: int | None = None,
            verbose: int = 0, threads: int | None = None):
        """Train with mini-batches; returns a `History`.

        optimizer: "sgd" | "adagrad" | "rmsprop" | "adam" | "adamw" (lr defaults to 0.01 for
        sgd / adagrad, else 1e-3), or a fusedops.optim optimizer over `self.param_groups()`.
        l1 / l2: the optimizer's l1 and weight_decay on the weights only (for "adamw", l2 is
        the decoupled decay). validation_data=(X_val, y_val), or validation_split: the last
        fraction of X. early_stopping=patience: stop after `patience` epochs without a lower
        monitored loss (val_loss, else loss) and restore the best epoch's weights. Batches are
        shuffled with `seed` (default: the model's) and the global epoch number, so fit(2) then
        fit(2) equals fit(4). verbose: 0 silent, 1 a tqdm bar (if installed), 2 a line per epoch.
        Host arrays in, only batches go to the device.
        """
        return _fit(self, X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, l1=l1,
                    l2=l2, validation_data=validation_data, validation_split=validation_split,
                    early_stopping=early_stopping, shuffle=shuffle, seed=seed, verbose=verbose,
                    threads=threads)

    # ------------------------------------------------------------------ inference
    def _forward_eval(self, X, fn=None):
        """Eval-mode forward of host X in chunks; returns a host array."""
        fn = self.net.forward if fn is None else fn
        was = self.net.training
        self.net.eval()
        try:
            outs = [to_host(fn(self.xp.asarray(X[i:i + EVAL_BATCH]))) for i in range(0, len(X), EVAL_BATCH)]
        finally:
            self.net.train(was)
        return np.concatenate(outs) if outs else np.zeros((0,), self.dtype)

    def evaluate(self, X, y=None) -> dict:
        """Mean loss (and accuracy for classification tasks) on (X, y), in eval mode."""
        X = self._check_X(X, "X")
        y = self._check_y(y, X, "y")
        out = self._forward_eval(X)
        loss = float(self.loss_fn.value(out.astype(np.float64), y))
        res = {"loss": loss}
        if self.has_accuracy:
            res["accuracy"] = float(self._correct(out, y)) / (len(X) * self._labels_per_row)
        return res

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Architecture, weights, BN statistics, optimizer state and RNG offsets in one .npz."""
        from .serialization import save

        save(self, path)

    @classmethod
    def load(cls, path, *, backend=None):
        """A model saved by `save`, on `backend` (default: the saved one if it runs here)."""
        from .serialization import load

        model = load(path, backend=backend)
        if not isinstance(model, cls):
            raise TypeError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def __repr__(self):
        return f"{type(self).__name__}({self.config}, backend={self.backend!r})\n{self.net!r}"


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
