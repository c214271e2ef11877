"""The fit loop: shuffled mini-batches, one fused optimizer step per batch, validation,
early stopping with restoration of the best weights, a tqdm bar, and the History it returns.

The loop talks to a context for what depends on where it runs: `Local` here (one process);
fusedops.distributed supplies the MPI one (each rank trains on its part of every batch; sums
and decisions are reduced so that every rank takes the same path)."""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..checks import check_int, check_real
from .interrupt import deferred_sigint
from .threads import auto_threads, limit_threads

__all__ = ["History", "fit", "make_optimizer", "batches", "Local", "OPTIMIZERS", "DEFAULT_LR"]

OPTIMIZERS = {"sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW"}
DEFAULT_LR = {"sgd": 0.01, "adagrad": 0.01, "rmsprop": 1e-3, "adam": 1e-3, "adamw": 1e-3}


@dataclass
class History:
    """Per-epoch record of one `fit` call.

    `epoch` holds the model's global epoch numbers (1-based; a second `fit` continues them).
    `loss` / `accuracy` are means over the epoch's training batches (in training mode);
    `val_loss` / `val_accuracy` are measured in eval mode after each epoch (empty without
    validation data; accuracies only for classification tasks). `best_epoch` is the epoch
    with the lowest monitored loss (val_loss, else loss); `stopped_epoch` is the epoch at which
    early stopping ended training (None when all epochs ran). `interrupted` is True when a
    KeyboardInterrupt (Ctrl-C) stopped `fit`: it stops after a whole step, re-raises, and this
    record of the completed epochs stays in `model.history` (see nn/interrupt.py).
    """

    epoch: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    accuracy: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    time: list = field(default_factory=list)
    best_epoch: int | None = None
    stopped_epoch: int | None = None
    restored_best: bool = False
    interrupted: bool = False

    def __getitem__(self, key: str) -> list:
        return getattr(self, key)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy",
                                              "time", "best_epoch", "stopped_epoch", "restored_best",
                                              "interrupted")}


def make_optimizer(model, optimizer, lr, l1, l2):
    """An optimizer over the model's flat parameter groups: weights get `l2` (weight_decay)
    and `l1`; biases and batch-norm parameters get neither. A string reuses the model's
    current optimizer (and its state) when it is of the same kind, so fit() can be resumed."""
    if not isinstance(optimizer, str):
        if l1 or l2:
            raise ValueError("l1 / l2 apply only when optimizer is a name; with an optimizer object "
                             "set them in its groups (model.param_groups(weight_decay=..., l1=...))")
        if lr is not None:
            for g in optimizer.param_groups:
                g["lr"] = check_real("lr", lr, lo=0.0, lo_open=True)
        return optimizer, None
    name = optimizer.lower()
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(map(repr, OPTIMIZERS))} or an "
                         f"optimizer object; got {optimizer!r}")
    lr = DEFAULT_LR[name] if lr is None else check_real("lr", lr, lo=0.0, lo_open=True)
    l1, l2 = check_real("l1", l1, lo=0.0), check_real("l2", l2, lo=0.0)
    if model.optimizer is not None and model.optimizer_name == name:
        opt = model.optimizer
        for g in opt.param_groups:
            g["lr"] = lr
            if any(p.decay for p in g["params"]):
                g["weight_decay"], g["l1"] = l2, l1
        return opt, name
    from .. import optim

    cls = getattr(optim, OPTIMIZERS[name])
    return cls(model.param_groups(weight_decay=l2, l1=l1), lr=lr, backend=model.backend), name


def batches(n, batch_size, order):
    """Index arrays of the mini-batches; a last batch of one row joins the previous one
    (batch norm cannot train on a single row)."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    ends = starts[1:] + [n]
    return [order[s:e] for s, e in zip(starts, ends)]


def _progress(verbose, epochs):
    if verbose != 1:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: fall back to a line per epoch
        return None
    return tqdm(total=epochs, unit="epoch", leave=True)


def _verbosity(verbose) -> int:
    """0, 1 or 2; a bool reads as Keras reads it: False = 0 (silent), True = 1 (progress bar)."""
    if isinstance(verbose, (bool, np.bool_)):
        return int(verbose)
    return check_int("verbose", verbose, lo=0, hi=2)


def _split(model, X, y, validation_data, validation_split):
    if validation_data is not None and validation_split:
        raise ValueError("pass validation_data or validation_split, not both")
    if validation_split:
        frac = check_real("validation_split", validation_split, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        n_val = int(math.ceil(len(X) * frac))
        if n_val >= len(X):
            raise ValueError(f"validation_split={validation_split} leaves no training rows")
        cut = len(X) - n_val
        return X[:cut], y[:cut], (X[cut:], y[cut:])
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (1, 2):
            raise TypeError("validation_data must be (X_val, y_val) (or (X_val,) for an autoencoder)")
        Xv = model._check_X(validation_data[0], "validation_data[0]")
        yv = model._check_y(validation_data[1] if len(validation_data) == 2 else None, Xv, "validation_data[1]")
        return X, y, (Xv, yv)
    return X, y, None


class Local:
    """The training loop's context in one process (the MPI one: fusedops.distributed)."""

    root = True

    def checks(self):
        """Wraps the argument and data checks (the MPI context agrees on them collectively)."""
        return contextlib.nullcontext()

    def threads(self, model, threads):
        return auto_threads(model, threads)

    def training(self, model, X, y, val):
        """Wraps the loop (the MPI context sets up the distributed optimizer there)."""
        return contextlib.nullcontext()

    def step(self, model, X, y, idx, penalty):
        """One step on rows idx: returns ((loss + penalty) * rows, output, targets) for the
        epoch sums (penalty: l2_per_batch's term, 0.0 without)."""
        yb = model.xp.asarray(y[idx])
        loss, out = model._step(model.xp.asarray(X[idx]), yb)
        return (loss + penalty) * len(idx), out, yb

    def totals(self, loss_sum, correct):
        return float(loss_sum), float(correct)

    def any(self, flag: bool) -> bool:
        """A decision every process takes alike (the MPI context: true on any rank)."""
        return flag

    def evaluate(self, model, X, y):
        return model.evaluate(X, y)

    def interrupt_point(self, signalled: bool) -> None:
        """A step boundary: raise KeyboardInterrupt if Ctrl-C arrived during the step (the MPI
        context stops every rank at the same step when any rank was signalled)."""
        if signalled:
            raise KeyboardInterrupt


def fit(model, X, y=None, *, epochs, batch_size=32, optimizer="adam", lr=None, l1=0.0, l2=0.0,
        validation_data=None, validation_split=0.0, early_stopping=None, shuffle=True, seed=None,
        verbose=0, threads=None, l2_per_batch=0.0, callback=None, comm=None,
        shard_state=False) -> History:
    """Train `model` (see Model.fit for the arguments). Returns the History."""
    if comm is None:
        if shard_state is not False:
            raise ValueError("shard_state applies to distributed training: pass comm= too")
        if (model._state_on_root and isinstance(optimizer, str)
                and optimizer.lower() == model.optimizer_name):
            raise RuntimeError("after fit(..., shard_state=True) the optimizer state is on rank 0: "
                               "continue with fit(..., comm=...) on every rank")
        ctx = Local()
    else:  # the adapter (fusedops[mpi]), through the package's lazy door: the core has no
        import fusedops  # import statement of an adapter, and mpi4py loads only when asked for

        ctx = fusedops.distributed.training_context(comm, shard_state)
    with ctx.checks():
        l2_per_batch = _check_hooks(optimizer, l2, l2_per_batch, callback)
        epochs = check_int("epochs", epochs, lo=0)
        batch_size = check_int("batch_size", batch_size, lo=1)
        patience = None if early_stopping is None else check_int("early_stopping", early_stopping, lo=0)
        verbose = _verbosity(verbose) if ctx.root else 0
        seed = model.seed if seed is None else check_int("seed", seed, lo=0)
        X = model._check_X(X, "X")
        y = model._check_y(y, X, "y")
        X, y, val = _split(model, X, y, validation_data, validation_split)
        threads = ctx.threads(model, threads)
        model.set_optimizer(optimizer, lr=lr, l1=l1, l2=l2)
    with limit_threads(threads), deferred_sigint() as ctrl_c, ctx.training(model, X, y, val):
        return _loop(model, ctx, X, y, val, epochs, batch_size, patience, shuffle, seed, verbose,
                     l2_per_batch, callback, ctrl_c)


def _check_hooks(optimizer, l2, l2_per_batch, callback):
    l2_per_batch = check_real("l2_per_batch", l2_per_batch, lo=0.0)
    if l2_per_batch and l2:
        raise ValueError("pass l2 (a fixed weight decay) or l2_per_batch, not both")
    name = optimizer.lower() if isinstance(optimizer, str) else type(optimizer).__name__.lower()
    if l2_per_batch and name == "adamw":
        raise ValueError("l2_per_batch is a coupled L2 penalty; AdamW's weight decay is decoupled")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable (model, history) -> bool; got {type(callback).__name__}")
    return l2_per_batch


def _batch_l2(model, groups, l2, n):
    """scikit-learn's `alpha`: the penalty l2/2*||W||^2 joins each batch's *summed* loss, so the
    gradient of the mean loss gains (l2/n)*W, the fused step's weight decay for this batch, and
    the batch loss gains l2/(2n)*||W||^2 (W before the step; the decayed weights lead the flat
    buffer). Returns that term, on the device for cuda. n is the whole batch's rows (under MPI
    too: every rank holds the same W and steps on the whole batch's gradient)."""
    for g in groups:
        g["weight_decay"] = l2 / n  # a short last batch switches between two cached plans
    w = model.flat.data[:model.flat.decay_size]
    return (w @ w) * (0.5 * l2 / n)


def _loop(model, ctx, X, y, val, epochs, batch_size, patience, shuffle, seed, verbose,
          l2_per_batch, callback, ctrl_c):
    net, n = model.net, len(X)
    hist, best, best_state, bar = History(), math.inf, None, _progress(verbose, epochs)
    model.history = hist  # where Keras keeps it: after a Ctrl-C the record so far is at hand
    decayed = [g for g in model.optimizer.param_groups
               if l2_per_batch and any(getattr(p, "decay", True) for p in g["params"])]
    try:
        for _ in range(epochs):
            t0 = time.perf_counter()
            epoch = model.epochs_trained + 1
            order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
            net.train()
            loss_sum, correct = 0.0, 0.0
            for idx in batches(n, batch_size, order):
                penalty = _batch_l2(model, decayed, l2_per_batch, len(idx)) if l2_per_batch else 0.0
                loss, out, yb = ctx.step(model, X, y, idx, penalty)
                ctx.interrupt_point(ctrl_c.take())  # a step boundary: the only place Ctrl-C stops
                loss_sum = loss_sum + loss  # stays on the device until the epoch ends
                if model.has_accuracy:
                    correct = correct + model._correct(out, yb)
            model.epochs_trained = epoch
            hist.epoch.append(epoch)
            loss_sum, correct = ctx.totals(loss_sum, correct)
            hist.loss.append(loss_sum / n)
            if model.has_accuracy:
                hist.accuracy.append(correct / (n * model._labels_per_row))
            if val is not None:
                ev = ctx.evaluate(model, *val)
                hist.val_loss.append(ev["loss"])
                if model.has_accuracy:
                    hist.val_accuracy.append(ev["accuracy"])
            hist.time.append(time.perf_counter() - t0)
            _report(hist, bar, verbose)
            stop = ctx.any(callback is not None and bool(callback(model, hist)))
            monitored = (hist.val_loss or hist.loss)[-1]
            if monitored < best:
                best, hist.best_epoch = monitored, epoch
                if patience is not None:
                    best_state = model._snapshot()
            elif patience is not None and epoch - hist.best_epoch > patience:
                stop = True
            if stop:
                hist.stopped_epoch = epoch
                break
            ctx.interrupt_point(ctrl_c.take())
    except KeyboardInterrupt:  # from ctrl_c, or a second Ctrl-C, or the callback
        hist.interrupted = True
        raise
    finally:
        if bar is not None:
            bar.close()
    if best_state is not None and hist.best_epoch != model.epochs_trained:
        model._restore(best_state)
        hist.restored_best = True
    model._after_fit(X)
    return hist


def _report(hist, bar, verbose):
    items = {"loss": hist.loss[-1]}
    if hist.accuracy:
        items["acc"] = hist.accuracy[-1]
    if hist.val_loss:
        items["val_loss"] = hist.val_loss[-1]
    if hist.val_accuracy:
        items["val_acc"] = hist.val_accuracy[-1]
    if bar is not None:
        bar.set_postfix({k: f"{v:.4f}" for k, v in items.items()}, refresh=False)
        bar.update(1)
    elif verbose:
        text = "  ".join(f"{k} {v:.4f}" for k, v in items.items())
        print(f"epoch {hist.epoch[-1]:4d}  {text}  ({hist.time[-1]:.2f} s)", flush=True)
