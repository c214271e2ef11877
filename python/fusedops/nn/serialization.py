"""save / load: a whole model in one .npz, readable without pickle.

The archive holds `__meta__` (JSON: class, constructor config, layer state such as dropout
offsets, training counters, the optimizer's class, groups and hyperparameters) and plain
arrays: `params` (the flat parameter buffer), and every array found in the layer or
optimizer state (BN running statistics, optimizer moments). A loaded model continues
training exactly as the original would: same weights, same optimizer state and step count,
same RNG offsets, same epoch counter (which seeds the shuffling).

The class is looked up by the name the file stores in fusedops.nn.registry, which holds exactly
the subclasses of Model defined so far: a file cannot make load build anything else.
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


def _decode(obj, arrays):
    if isinstance(obj, dict):
        if "__array__" in obj:
            return arrays[obj["__array__"]]
        if "__dict__" in obj:
            return {_decode(k, arrays): _decode(v, arrays) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, arrays) for v in obj["__tuple__"])
        return [_decode(v, arrays) for v in obj["__list__"]]
    return obj


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
    (default: the saved backend when it is available here, else fusedops' default)."""
    from .. import optim

    if isinstance(path, (str, os.PathLike)) and not os.path.exists(path) and os.path.exists(str(path) + ".npz"):
        path = str(path) + ".npz"
    with np.load(path, allow_pickle=False) as f:
        if "__meta__" not in f.files:
            raise ValueError(f"{path} is not a fusedops model file (no __meta__ entry)")
        meta = json.loads(str(f["__meta__"]))
        arrays = {k: f[k] for k in f.files if k != "__meta__"}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unsupported format {meta.get('format')!r} (expected {FORMAT!r})")
    if backend is None and backend_unavailable_reason(meta["backend"]) is None:
        backend = meta["backend"]
    model = model_class(meta["class"])(**meta["config"], backend=backend)
    if model.flat.data.size != arrays["params"].size:
        raise ValueError(f"{path}: parameter count {arrays['params'].size} does not match the architecture")
    model.flat.data[...] = model.xp.asarray(arrays["params"].astype(model.dtype))
    model.net.load_state(_decode(meta["layers"], arrays))
    for k, v in _decode(meta["persist"], arrays).items():
        setattr(model, k, v)
    o = meta["optimizer"]
    if o is not None:
        groups = [{"params": [model.flat.params[i] for i in g]} for g in o["groups"]]
        state = _decode(o["state"], arrays)
        opt = getattr(optim, o["class"])(groups, lr=1.0, backend=model.backend,  # lr etc. come
                                         **optim.lowbit_options(state))       # with the state
        opt.load_state_dict(state)
        model.optimizer, model.optimizer_name = opt, o["name"]
    return model
