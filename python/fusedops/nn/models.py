"""Model base class: flat buffers, input checks, the training step, predict / evaluate, save / load."""
from __future__ import annotations

import numpy as np

from ..checks import check_int
from .fused_layers import BatchNorm1d, Dropout
from .layers import Linear, Sequential
from .parameter import FlatParameters, array_module, resolve_nn_backend, to_host
from .registry import register_model
from .training import fit as _fit
from .training import make_optimizer

__all__ = ["Model", "layer_seeds"]

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

    def __init_subclass__(cls, **kwargs):
        """Every model class is registered by name: the allow-list fusedops.nn.load builds from."""
        super().__init_subclass__(**kwargs)
        register_model(cls)

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
        self.history = None  # the History of the last fit, kept when Ctrl-C interrupts it
        self._batch_part = None  # (first row, rows of the whole batch) while training on a part
        self._state_on_root = False  # set after fit(..., shard_state=True) on ranks other than 0

    @staticmethod
    def param_count(config: dict) -> int | None:
        """The number of parameters the constructor allocates for `config` (a saved model's
        config), computed without allocating them; None when a subclass cannot tell (fusedops.nn.load
        then checks each size in the config against the parameters the file holds instead)."""
        return None

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
        return self._layers_of(BatchNorm1d)

    def _layers_of(self, cls):
        def walk(seq):
            for layer in seq:
                if isinstance(layer, Sequential):
                    yield from walk(layer)
                elif isinstance(layer, cls):
                    yield layer
        return list(walk(self.net))

    def _set_batch_part(self, part) -> None:
        """Train on rows [first, first + len) of a batch of `rows` rows (part = (first, rows)),
        or on whole batches (None): dropout masks and input noise follow the row index."""
        self._batch_part = part
        for layer in self._layers_of(Dropout):
            layer.start_row = 0 if part is None else part[0]

    def set_optimizer(self, optimizer="adam", *, lr=None, l1: float = 0.0, l2: float = 0.0):
        """Set (or update, when of the same kind) the optimizer `fit` and `train_step` use;
        the arguments are those of `fit`. Returns it."""
        opt, name = make_optimizer(self, optimizer, lr, l1, l2)
        if opt is not self.optimizer:
            self._state_on_root = False
        self.optimizer, self.optimizer_name = opt, name
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
            verbose: int = 0, threads: int | None = None, l2_per_batch: float = 0.0, callback=None,
            comm=None, shard_state: bool = False):
        """Train with mini-batches; returns a `History`.

        optimizer: "sgd" | "adagrad" | "rmsprop" | "adam" | "adamw" (lr defaults to 0.01 for
        sgd / adagrad, else 1e-3), or a fusedops.optim optimizer over `self.param_groups()`.
        l1 / l2: the optimizer's l1 and weight_decay on the weights only (for "adamw", l2 is
        the decoupled decay). validation_data=(X_val, y_val), or validation_split: the last
        fraction of X. early_stopping=patience: stop after `patience` epochs without a lower
        monitored loss (val_loss, else loss) and restore the best epoch's weights. Batches are
        shuffled with `seed` (default: the model's) and the global epoch number, so fit(2) then
        fit(2) equals fit(4). verbose: 0 / False silent, 1 / True a tqdm bar (if installed), 2 a
        line per epoch. Host arrays in, only batches go to the device.
        l2_per_batch: scikit-learn's `alpha` instead of l2: the penalty l2_per_batch/2*||W||^2 is
        added to each batch's summed loss, i.e. weight decay l2_per_batch/n for a batch of n rows,
        and the reported loss includes it. callback(model, history), called after each epoch
        (after validation), stops training by returning True.
        Ctrl-C stops after the step in progress (weights and optimizer state are those of whole
        steps; a second Ctrl-C stops at once) and re-raises KeyboardInterrupt; the History of
        the completed epochs is in `self.history`, with `interrupted=True`.

        comm: an mpi4py communicator (e.g. MPI.COMM_WORLD under `mpiexec -n N`) for data-
        parallel training (needs fusedops[mpi]): every rank passes the same data; each global
        batch of `batch_size` rows is split across the ranks, and the result equals one
        process's training up to float summation order (dropout masks, noise and batch-norm
        statistics are those of the whole batch). Decisions (validation, early stopping) are
        identical on every rank; only rank 0 prints. shard_state=True shards the optimizer
        state (ZeRO-1); after fit rank 0 holds all of it, so `save` there writes a complete
        checkpoint; n in l2_per_batch is the global batch's rows, and training stops when the
        callback returns True on any rank. See fusedops.distributed.
        """
        return _fit(self, X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, l1=l1,
                    l2=l2, validation_data=validation_data, validation_split=validation_split,
                    early_stopping=early_stopping, shuffle=shuffle, seed=seed, verbose=verbose,
                    threads=threads, l2_per_batch=l2_per_batch, callback=callback, comm=comm,
                    shard_state=shard_state)

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

        if self._state_on_root:
            raise RuntimeError("after fit(..., shard_state=True) this rank holds no optimizer "
                               "state (rank 0 gathered all of it): save the model on rank 0")
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
