"""save / load: a whole model in one .npz, readable without pickle.

The archive holds `__meta__` (JSON: class, constructor config, layer state such as dropout
offsets, training counters, the optimizer's class, groups and hyperparameters) and plain
arrays: `params` (the flat parameter buffer), and every array found in the layer or
optimizer state (BN running statistics, optimizer moments). A loaded model continues
training exactly as the original would: same weights, same optimizer state and step count,
same RNG offsets, same epoch counter (which seeds the shuffling).

The class is looked up by the name the file stores in fusedops.nn.registry, which holds exactly
the subclasses of Model defined so far: a file cannot make load build anything else. Every other
field is checked against an allow-list too (nn/_model_file.py), sizes against the arrays the
file holds before anything is allocated (fusedops._npz), each failure a ValueError naming the
file and the field.
"""
from __future__ import annotations

import json
import os

import numpy as np

from .._arrays import is_array
from ..backends import backend_unavailable_reason
from .parameter import to_host
from .registry import model_class

__all__ = ["save", "load"]

FORMAT = "fusedops.nn/1"
PERSIST = ("epochs_trained", "noise_step", "latent_mean_", "latent_chol_")


def _encode(obj, arrays):
    """JSON-able structure; arrays go to `arrays` under generated keys."""
    if isinstance(obj, dict):
        return {"__dict__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__tuple__" if isinstance(obj, tuple) else "__list__": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if is_array(obj):
        key = f"a{len(arrays)}"
        arrays[key] = np.array(to_host(obj), copy=True)
        return {"__array__": key}
    raise TypeError(f"cannot save a value of type {type(obj).__name__} in a fusedops model file")


def save(model, path) -> None:
    """Write `model` to `path` (.npz; the suffix is added by NumPy when missing) or to a binary
    file object."""
    arrays = {"params": np.array(to_host(model.flat.data), copy=True)}
    opt = model.optimizer
    opt_meta = None
    if opt is not None:
        index = {id(p): i for i, p in enumerate(model.flat.params)}
        groups = [[index[id(p)] for p in g["params"]] for g in opt.param_groups]
        opt_meta = {"class": type(opt).__name__, "name": model.optimizer_name, "groups": groups,
                    "state": _encode(opt.state_dict(), arrays)}
    meta = {"format": FORMAT, "class": type(model).__name__, "config": model.config, "backend": model.backend,
            "layers": _encode(model.net.state(), arrays), "optimizer": opt_meta,
            "persist": _encode({k: getattr(model, k) for k in PERSIST if hasattr(model, k)}, arrays)}
    np.savez(path, __meta__=np.array(json.dumps(meta)), **arrays)


def load(path, *, backend=None):
    """The model saved at `path` (or read from a binary file object). backend: where to run it
    (default: the saved backend when it is available here, else fusedops' default).

    The file may come from anyone: every field is checked against an allow-list before it is
    used (nn/_model_file.py), sizes are checked against the arrays the file holds before
    anything is allocated, and every failure is a ValueError naming the file and the field
    (a missing file is FileNotFoundError)."""
    from .. import optim
    from .._npz import Archive
    from ._model_file import FileCheck
    from .training import OPTIMIZERS

    if isinstance(path, (str, os.PathLike)) and not os.path.exists(path) and os.path.exists(str(path) + ".npz"):
        path = str(path) + ".npz"
    with Archive(path) as archive:
        check = FileCheck(archive.path, archive)
        meta = check.meta()
        if meta["format"] != FORMAT:
            raise check.fail("format", f"unsupported {str(meta['format'])[:100]!r} (expected {FORMAT!r})")
        try:
            cls = model_class(meta["class"])
        except ValueError as exc:
            raise check.fail("class", str(exc)) from None
        config = check.config(cls, meta["config"])
        saved_backend = check.backend(meta["backend"])
        if backend is None and backend_unavailable_reason(saved_backend) is None:
            backend = saved_backend
        try:
            model = cls(**config, backend=backend)
        except (TypeError, ValueError) as exc:
            raise check.fail("config", str(exc)) from None
        check.used.add("params")
        params = archive.read("params")
        layers = check.decode(meta["layers"], "layers")
        check.like(model.net.state(), layers, "layers")
        persist = check.persist(model, check.decode(meta["persist"], "persist"), PERSIST)
        classes = {name: c for name in optim.__all__ if isinstance(c := getattr(optim, name), type)
                   and issubclass(c, optim._Optimizer)}
        o = check.optimizer(meta["optimizer"], len(model.flat.params), classes, OPTIMIZERS)
        state = None if o is None else check.decode(o[3], "optimizer.state")
    model.flat.data[...] = model.xp.asarray(params.astype(model.dtype))
    model.net.load_state(layers)
    for k, v in persist.items():
        setattr(model, k, v)
    if o is not None:
        opt_cls, name, groups, _ = o
        groups = [{"params": [model.flat.params[i] for i in g]} for g in groups]
        if not isinstance(state, dict):
            raise check.fail("optimizer.state", f"must be a dict; got {type(state).__name__}")
        try:
            opt = opt_cls(groups, lr=1.0, backend=model.backend,  # lr etc. come with the state
                          **optim.lowbit_options(state))
            opt.load_state_dict(state)
        except (TypeError, ValueError) as exc:
            raise check.fail("optimizer.state", str(exc)) from None
        model.optimizer, model.optimizer_name = opt, name
    check.unused()  # last: an error in a field above names that field, not its orphaned arrays
    return model
