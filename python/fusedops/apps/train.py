"""`fusedops train`: train an MLP or an autoencoder from the command line on the bundled
digits or on a .npz file, print the epochs and the test result, optionally save the model.

A .npz holds `X` (n, features) and, for an MLP, `y` (integer class labels, or floats for
regression); `X_test` / `y_test` are used as the test set when present, else 20% of the rows
are held out (stratified by class for labels).

Under `mpiexec -n N` (N > 1) training is data-parallel over MPI.COMM_WORLD
(fusedops.distributed): every process loads the same data, each global batch is split across
them, rank 0 prints and saves.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np

__all__ = ["load_data", "train"]


class DataError(ValueError):
    """The data cannot be used as given (a usage error on the command line)."""


def load_data(source: str, model: str, seed: int = 0):
    """(X_train, X_test, y_train, y_test) from "digits" or a .npz path (y None for an
    autoencoder without labels)."""
    if source == "digits":
        from ..data import load_digits

        return load_digits(test_size=0.2, seed=seed)
    path = Path(source)
    if path.suffix != ".npz":
        raise DataError(f"--data must be 'digits' or a .npz file; got {source!r}")
    if not path.is_file():
        raise DataError(f"--data: no such file {source!r}")
    with np.load(path, allow_pickle=False) as f:
        d = {k: f[k] for k in f.files}
    if "X" not in d:
        raise DataError(f"{source} has no array 'X' (it holds {', '.join(d) or 'nothing'})")
    X, y = d["X"], d.get("y")
    if X.ndim != 2 or X.shape[0] < 2 or X.dtype.kind not in "fiu":
        raise DataError(f"X in {source} must be a numeric (n, features) array with n >= 2; got "
                        f"shape {X.shape}, dtype {X.dtype}")
    if model == "mlp" and y is None:
        raise DataError(f"{source} has no array 'y': an MLP needs labels or targets")
    X = X.astype(np.float32, copy=False)
    if y is not None and len(y) != len(X):
        raise DataError(f"y in {source} has {len(y)} rows but X has {len(X)}")
    if "X_test" in d:
        yt = d.get("y_test")
        return X, d["X_test"].astype(np.float32, copy=False), y, yt
    return _split(X, y, seed)


def _split(X, y, seed):
    from ..data import stratified_split

    if y is not None and y.dtype.kind in "iu":
        tr, te = stratified_split(y, 0.2, seed)
    else:
        order = np.random.default_rng(seed).permutation(len(X))
        cut = len(X) - max(1, len(X) // 5)
        tr, te = order[:cut], order[cut:]
    return X[tr], X[te], None if y is None else y[tr], None if y is None else y[te]


def _build(args, X, y):
    from ..nn import MLP, Autoencoder

    hidden = args.hidden or ([256, 128] if args.model == "mlp" else [128])
    if args.model == "autoencoder":
        return Autoencoder(X.shape[1], hidden=hidden, latent_dim=args.latent_dim, noise=args.noise,
                           dropout=args.dropout, batchnorm=args.batchnorm, seed=args.seed,
                           backend=args.backend)
    if y.dtype.kind in "iu":
        task, n_out = "classification", max(2, int(y.max()) + 1)
    else:
        task, n_out = "regression", 1 if y.ndim == 1 else y.shape[1]
    return MLP([X.shape[1], *hidden, n_out], dropout=args.dropout, batchnorm=args.batchnorm,
               task=task, seed=args.seed, backend=args.backend)


MPI_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")


def launched_by_mpi() -> bool:
    """True when an MPI launcher started this process among others (MPICH / Intel MPI set
    PMI_SIZE, Open MPI OMPI_COMM_WORLD_SIZE): mpi4py is imported only then."""
    return any(os.environ.get(v, "1").isdigit() and int(os.environ.get(v, "1")) > 1
               for v in MPI_SIZE_VARS)


def train(args) -> int:
    """Run `fusedops train` for parsed arguments; DataError / ValueError become usage errors
    in cli.py."""
    comm, guard = None, contextlib.nullcontext()
    if launched_by_mpi():
        from ..distributed import abort_on_error, resolve_comm

        comm = resolve_comm()
        guard = abort_on_error(comm)  # a failure on one rank alone ends the job, no hang
    elif getattr(args, "shard_state", False):
        raise DataError("--shard-state shards the optimizer state across MPI processes: launch "
                        "with mpiexec -n N (N > 1)")
    root = comm is None or comm.Get_rank() == 0
    say = print if root else (lambda *a, **k: None)
    Xtr, Xte, ytr, yte = load_data(args.data, args.model, args.seed)
    model = _build(args, Xtr, ytr)
    where = f", {comm.Get_size()} MPI processes" if comm is not None else ""
    say(f"{type(model).__name__} on {model.backend}: {model.n_params} parameters, "
        f"{len(Xtr)} training rows, {len(Xte)} test rows{where}", flush=True)
    val = {"validation_split": args.validation_split} if args.validation_split else {}
    dist = {"comm": comm, "shard_state": getattr(args, "shard_state", False)} if comm else {}
    with guard:
        t0 = time.perf_counter()
        hist = model.fit(Xtr, ytr if args.model == "mlp" else None, epochs=args.epochs,
                         batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                         l1=args.l1, l2=args.l2, early_stopping=args.early_stopping,
                         verbose=0 if args.quiet else 2, **val, **dist)
        secs = time.perf_counter() - t0
        if hist.stopped_epoch:
            say(f"early stopping at epoch {hist.stopped_epoch}; restored epoch {hist.best_epoch}")
        ev = model.evaluate(Xte, yte if args.model == "mlp" else None)
        text = ", ".join(f"{k} {v:.4f}" for k, v in ev.items())
        say(f"trained {len(hist.epoch)} epochs in {secs:.1f} s; test {text}", flush=True)
        if args.save and root:
            model.save(args.save)
            say(f"saved to {args.save}")
    return 0
