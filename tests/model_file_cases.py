"""The case table of tests/test_model_files.py: how a saved model file is damaged or made
hostile, and the field the error must name. A case edits the decoded `__meta__` (a dict) and
the arrays of the archive in place; `meta` may become a string (raw __meta__ text) or an
array (a __meta__ that is not text)."""
import json

import numpy as np

META_KEYS = ("format", "class", "config", "backend", "layers", "optimizer", "persist")
RETYPED = [None, 1, 2.5, "x", True, [], {}, [1, 2], {"a": 1}]


def original(path):
    """(meta, arrays) of a file fusedops wrote."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    return json.loads(str(arrays.pop("__meta__"))), arrays


def apply(edit, meta, arrays):
    out = edit(meta, arrays)  # a str or an array replaces the meta; other results are ignored
    return (out if isinstance(out, (str, np.ndarray)) else meta), arrays


def _entries(enc):
    return {k: v for k, v in enc["__dict__"]}


def _put(enc, key, value):
    d = _entries(enc)
    d[key] = value
    enc["__dict__"] = [[k, v] for k, v in d.items()]


def _drop(enc, key):
    enc["__dict__"] = [[k, v] for k, v in enc["__dict__"] if k != key]


def _layer(meta, i):
    return _entries(meta["layers"])[str(i)]


def new_array(arrays, a):
    name = f"x{len(arrays)}"
    arrays[name] = a
    return {"__array__": name}


def _set(path, value):
    """An edit that sets meta[path[0]][path[1]]... = value."""
    def edit(meta, arrays):
        d = meta
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value(arrays) if callable(value) else value
    return edit


def _nested(depth):
    v = 0
    for _ in range(depth):
        v = {"__list__": [v]}
    return v


# MLP [6, 8, 3] with batchnorm and dropout: layer 1 is BatchNorm1d, layer 3 Dropout
HOSTILE = [
    # (case id, model, field the error names, edit)
    ("class os.system", "mlp", "class", _set(["class"], "os.system")),
    ("class __builtins__", "mlp", "class", _set(["class"], "__builtins__")),
    ("class Model (the base)", "mlp", "class", _set(["class"], "Model")),
    ("class as a list", "mlp", "class", _set(["class"], ["MLP"])),
    ("format of another version", "mlp", "format", _set(["format"], "fusedops.nn/2")),
    ("unknown top-level field", "mlp", "extra", _set(["extra"], 1)),
    ("config key __class__", "mlp", "config.__class__", _set(["config", "__class__"], "x")),
    ("config key backend", "mlp", "config.backend", _set(["config", "backend"], "cuda")),
    ("config key self", "mlp", "config.self", _set(["config", "self"], 1)),
    ("config a huge hidden layer", "mlp", "params", _set(["config", "sizes"], [6, 10**9, 3])),
    ("config 10^6 layers", "mlp", "params", _set(["config", "sizes"], [6] * 10**6)),
    ("config sizes as floats", "mlp", "config", _set(["config", "sizes"], [6.0, 8, 3])),
    ("config sizes as strings", "mlp", "config", _set(["config", "sizes"], ["6", "8", "3"])),
    ("config dtype object", "mlp", "config", _set(["config", "dtype"], "O")),
    ("config activation code", "mlp", "config", _set(["config", "activation"], "__import__('os')")),
    ("config hidden of the ae removed", "ae", "config", lambda m, a: m["config"].pop("input_dim")),
    ("backend os", "mlp", "backend", _set(["backend"], "os")),
    ("params one short", "mlp", "params", lambda m, a: a.update(params=a["params"][:-1])),
    ("params as int64", "mlp", "params", lambda m, a: a.update(params=a["params"].astype(np.int64))),
    ("params 2-D", "mlp", "params", lambda m, a: a.update(params=a["params"].reshape(1, -1))),
    ("params removed", "mlp", "params", lambda m, a: [a.pop("params")]),
    ("an unreferenced member", "mlp", "zzz", lambda m, a: a.update(zzz=np.zeros(3))),
    ("meta not JSON", "mlp", "__meta__", lambda m, a: "{'class': 'MLP'"),
    ("meta a JSON list", "mlp", "__meta__", lambda m, a: "[1, 2]"),
    ("meta nested 10^5 deep", "mlp", "__meta__", lambda m, a: "[" * 100000 + "]" * 100000),
    ("meta an int with 10^5 digits", "mlp", "__meta__", lambda m, a: "1" * 100000),
    ("meta not text", "mlp", "__meta__", lambda m, a: np.arange(3)),
    ("layers a raw list", "mlp", "layers", _set(["layers"], [1, 2])),
    ("layers nested 100 deep", "mlp", "layers", _set(["layers"], _nested(100))),
    ("layers a layer missing", "mlp", "layers", lambda m, a: _drop(m["layers"], "3")),
    ("layers an extra layer", "mlp", "layers", lambda m, a: _put(m["layers"], "9", {"__dict__": []})),
    ("dropout offset -1", "mlp", "layers.3.offset", lambda m, a: _put(_layer(m, 3), "offset", -1)),
    ("dropout offset 2^64", "mlp", "layers.3.offset", lambda m, a: _put(_layer(m, 3), "offset", 2**64)),
    ("dropout offset text", "mlp", "layers.3.offset", lambda m, a: _put(_layer(m, 3), "offset", "1")),
    ("dropout offset bool", "mlp", "layers.3.offset", lambda m, a: _put(_layer(m, 3), "offset", True)),
    ("dropout offset removed", "mlp", "layers.3", lambda m, a: _drop(_layer(m, 3), "offset")),
    ("dropout extra entry", "mlp", "layers.3", lambda m, a: _put(_layer(m, 3), "p", 0.0)),
    ("bn mean wrong shape", "mlp", "layers.1.running_mean",
     lambda m, a: _put(_layer(m, 1), "running_mean", new_array(a, np.zeros(5, np.float32)))),
    ("bn var as int", "mlp", "layers.1.running_var",
     lambda m, a: _put(_layer(m, 1), "running_var", new_array(a, np.ones(8, np.int64)))),
    ("bn mean a number", "mlp", "layers.1.running_mean", lambda m, a: _put(_layer(m, 1), "running_mean", 0.0)),
    ("array ref to nothing", "mlp", "layers.1.running_mean",
     lambda m, a: _put(_layer(m, 1), "running_mean", {"__array__": "nope"})),
    ("array ref to __meta__", "mlp", "layers.1.running_mean",
     lambda m, a: _put(_layer(m, 1), "running_mean", {"__array__": "__meta__"})),
    ("array ref not a string", "mlp", "layers.1.running_mean",
     lambda m, a: _put(_layer(m, 1), "running_mean", {"__array__": ["a0"]})),
    ("encoded dict with a non-string key", "mlp", "layers",
     _set(["layers"], {"__dict__": [[{"__tuple__": []}, 1]]})),
    ("persist sets backend", "mlp", "persist.backend", lambda m, a: _put(m["persist"], "backend", "c")),
    ("persist sets _step", "mlp", "persist._step", lambda m, a: _put(m["persist"], "_step", 0)),
    ("persist sets __class__", "mlp", "persist.__class__", lambda m, a: _put(m["persist"], "__class__", 0)),
    ("persist sets net", "mlp", "persist.net", lambda m, a: _put(m["persist"], "net", None)),
    ("persist noise_step on an MLP", "mlp", "persist.noise_step",
     lambda m, a: _put(m["persist"], "noise_step", 1)),
    ("persist epochs negative", "mlp", "persist.epochs_trained",
     lambda m, a: _put(m["persist"], "epochs_trained", -1)),
    ("persist epochs float", "mlp", "persist.epochs_trained",
     lambda m, a: _put(m["persist"], "epochs_trained", 1.5)),
    ("persist latent mean wrong shape", "ae", "persist.latent_mean_",
     lambda m, a: _put(m["persist"], "latent_mean_", new_array(a, np.zeros(3)))),
    ("persist latent chol text", "ae", "persist.latent_chol_",
     lambda m, a: _put(m["persist"], "latent_chol_", "eye")),
    ("persist a list", "mlp", "persist", _set(["persist"], {"__list__": []})),
    ("optimizer class __import__", "mlp", "optimizer.class", _set(["optimizer", "class"], "__import__")),
    ("optimizer class _Optimizer", "mlp", "optimizer.class", _set(["optimizer", "class"], "_Optimizer")),
    ("optimizer class flatten", "mlp", "optimizer.class", _set(["optimizer", "class"], "flatten")),
    ("optimizer class a number", "mlp", "optimizer.class", _set(["optimizer", "class"], 3)),
    ("optimizer name hostile", "mlp", "optimizer.name", _set(["optimizer", "name"], "os.system")),
    ("optimizer extra key", "mlp", "optimizer", _set(["optimizer", "module"], "os")),
    ("optimizer key removed", "mlp", "optimizer", lambda m, a: m["optimizer"].pop("groups")),
    ("optimizer groups empty", "mlp", "optimizer.groups", _set(["optimizer", "groups"], [])),
    ("optimizer group empty", "mlp", "optimizer.groups[0]", _set(["optimizer", "groups"], [[]])),
    ("optimizer index twice", "mlp", "optimizer.groups[1]", _set(["optimizer", "groups"], [[0, 1], [1]])),
    ("optimizer index too large", "mlp", "optimizer.groups[0]", _set(["optimizer", "groups"], [[0, 99]])),
    ("optimizer index negative", "mlp", "optimizer.groups[0]", _set(["optimizer", "groups"], [[-1]])),
    ("optimizer index a bool", "mlp", "optimizer.groups[0]", _set(["optimizer", "groups"], [[True]])),
    ("optimizer index 2^70", "mlp", "optimizer.groups[0]", _set(["optimizer", "groups"], [[2**70]])),
    ("optimizer state a list", "mlp", "optimizer.state", _set(["optimizer", "state"], {"__list__": []})),
]

W0 = (6, 8)  # parameter 0: the first weight matrix
STATE_CASES = [
    # (case id, entry of the optimizer's state_dict, new value or KeyError to remove it,
    #  the entry the error names)
    ("format removed", "format", KeyError, "format"),
    ("format retyped", "format", 1, "format"),
    ("optimizer of another class", "optimizer", "SGD", "optimizer"),
    ("n_groups wrong", "n_groups", 5, "n_groups"),
    ("n_groups text", "n_groups", "2", "n_groups"),
    ("n_params wrong", "group.0.n_params", 7, "group.0.n_params"),
    ("lr negative", "group.0.lr", -1.0, "group.0"),
    ("lr NaN", "group.0.lr", float("nan"), "group.0"),
    ("lr text", "group.0.lr", "0.1", "group.0.lr"),
    ("amsgrad an int", "group.0.amsgrad", 1, "group.0.amsgrad"),
    ("betas of three", "group.0.betas", np.array([0.9, 0.99, 0.5]), "group.0.betas"),
    ("beta2 above 1", "group.0.betas", np.array([0.9, 1.5]), "group.0"),
    ("step removed", "state.0.step", KeyError, "state.0.step"),
    ("step negative", "state.0.step", -1, "state.0.step"),
    ("step 2^70", "state.0.step", 2**70, "state.0.step"),
    ("step a float", "state.0.step", 1.5, "state.0.step"),
    ("moment removed", "state.0.exp_avg", KeyError, "state.0.exp_avg"),
    ("amsgrad max removed", "state.2.max_exp_avg_sq", KeyError, "state.2.max_exp_avg_sq"),
    ("moment wrong shape", "state.0.exp_avg", np.zeros(3, np.float32), "state.0.exp_avg"),
    ("moment as int", "state.0.exp_avg", np.zeros(W0, np.int64), "state.0.exp_avg"),
    ("moment as text", "state.0.exp_avg", "zeros", "state.0.exp_avg"),
    ("hostile key __class__", "state.0.__class__", 1, "state.0.__class__"),
    ("hostile key group params", "group.0.params", 1, "group.0.params"),
    ("a parameter that does not exist", "state.99.step", 1, "state.99.step"),
]
