"""Checks of a model file's fields before fusedops.nn.load builds anything from them.

A model file may come from anyone. Each field of `__meta__` is checked against an allow-list:
the keys the format has, the model classes of the registry, the constructor's own keyword
arguments for `config`, the structure a freshly built model's layers report for `layers`,
`PERSIST` for the counters, fusedops.optim's classes for the optimizer. Sizes the config
claims are checked against the parameters the file holds before a model is allocated.
Every failure is a ValueError "<file>: <field>: <what is wrong>".
"""
from __future__ import annotations

import inspect
import json

import numpy as np

from ..backends import BACKENDS

META_KEYS = ("format", "class", "config", "backend", "layers", "optimizer", "persist")
OPTIMIZER_KEYS = ("class", "name", "groups", "state")
MAX_DEPTH = 32  # nesting of the encoded layer / optimizer state (fusedops writes 4 at most)


class FileCheck:
    """The file being loaded and its archive: `fail` builds the errors, `decode` the values."""

    def __init__(self, path, archive):
        self.path, self.archive = path, archive
        self.used = {"__meta__"}

    def fail(self, field, message) -> ValueError:
        return ValueError(f"{self.path}: {field}: {message}")

    def meta(self) -> dict:
        m = self.archive.members.get("__meta__")
        if m is None:
            raise self.fail("__meta__", "missing: not a fusedops model file")
        if m.dtype.kind != "U":
            raise self.fail("__meta__", f"must be text; got {m.dtype}")
        try:
            meta = json.loads(str(self.archive.read("__meta__")[()]))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, int too long, too deep
            raise self.fail("__meta__", f"not valid JSON ({str(exc)[:200]})") from None
        if not isinstance(meta, dict):
            raise self.fail("__meta__", f"must be a JSON object; got {type(meta).__name__}")
        for key in META_KEYS:
            if key not in meta:
                raise self.fail(key, "missing")
        for key in meta:
            if key not in META_KEYS:
                raise self.fail(str(key)[:100], "not a field of a fusedops model file")
        return meta

    def decode(self, obj, field, depth=0):
        """The value `save` encoded: {"__dict__": [[k, v], ...]}, {"__list__"|"__tuple__": [...]},
        {"__array__": member name}, or a JSON scalar; anything else is an error."""
        if depth > MAX_DEPTH:
            raise self.fail(field, "nested too deeply")
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if not isinstance(obj, dict) or len(obj) != 1:
            raise self.fail(field, f"not an encoded value: {str(obj)[:100]}")
        (tag, body), = obj.items()
        if tag == "__array__":
            if not isinstance(body, str) or body not in self.archive.members or body == "__meta__":
                raise self.fail(field, f"refers to no array of the file: {str(body)[:100]}")
            self.used.add(body)
            return self.archive.read(body)
        if tag in ("__list__", "__tuple__") and isinstance(body, list):
            items = [self.decode(v, f"{field}[{i}]", depth + 1) for i, v in enumerate(body)]
            return tuple(items) if tag == "__tuple__" else items
        if tag == "__dict__" and isinstance(body, list):
            out = {}
            for item in body:
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                    raise self.fail(field, f"not a [key, value] pair: {str(item)[:100]}")
                out[item[0]] = self.decode(item[1], f"{field}.{item[0]}", depth + 1)
            return out
        raise self.fail(field, f"not an encoded value: {str(obj)[:100]}")

    # ------------------------------------------------------------------ fields
    def config(self, cls, config) -> dict:
        """config: a dict of the constructor's keyword arguments, whose parameter count equals
        the size of the file's `params` (checked before anything is allocated)."""
        if not isinstance(config, dict):
            raise self.fail("config", f"must be an object; got {type(config).__name__}")
        params = inspect.signature(cls.__init__).parameters
        allowed = {k for k, p in params.items() if k not in ("self", "backend")
                   and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        for key in config:
            if key not in allowed:
                raise self.fail(f"config.{str(key)[:100]}", f"not an argument of {cls.__name__}")
        m = self.archive.members.get("params")
        if m is None:
            raise self.fail("params", "missing")
        if m.dtype.kind != "f" or len(m.shape) != 1:
            raise self.fail("params", f"must be a 1-D float array; got {m.dtype} {m.shape}")
        try:
            count = cls.param_count(config)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise self.fail("config", f"does not describe a {cls.__name__} ({exc!r})") from None
        if count is None:  # a subclass that cannot tell: no size may exceed the file's
            sizes = [v for v in _numbers(config) if isinstance(v, int)]
            if any(v > max(m.shape[0], 1 << 16) for v in sizes):
                raise self.fail("config", f"sizes {sizes} exceed the file's {m.shape[0]} parameters")
        elif count != m.shape[0]:
            raise self.fail("params", f"{m.shape[0]} parameters; the config describes {count}")
        return config

    def backend(self, name):
        if name not in BACKENDS:
            raise self.fail("backend", f"must be one of {BACKENDS}; got {str(name)[:100]!r}")
        return name

    def like(self, want, got, field):
        """`got` has the structure of `want` (what a freshly built model reports): the same keys,
        arrays of the same shape and a float dtype, integers for integers (>= 0, < 2^64)."""
        if isinstance(want, dict):
            if not isinstance(got, dict) or set(got) != set(want):
                raise self.fail(field, f"must have the entries {sorted(want)}; got "
                                       f"{sorted(got) if isinstance(got, dict) else type(got).__name__}")
            for k in want:
                self.like(want[k], got[k], f"{field}.{k}")
        elif isinstance(want, np.ndarray):
            if not isinstance(got, np.ndarray) or got.dtype.kind != "f" or got.shape != want.shape:
                raise self.fail(field, f"must be a float array of shape {want.shape}; got "
                                       f"{_describe(got)}")
        elif isinstance(want, int) and not isinstance(want, bool):
            if isinstance(got, bool) or not isinstance(got, int) or not 0 <= got < 2**64:
                raise self.fail(field, f"must be an integer in [0, 2^64); got {str(got)[:100]}")
        elif type(got) is not type(want):
            raise self.fail(field, f"must be a {type(want).__name__}; got {type(got).__name__}")

    def persist(self, model, persist, allowed) -> dict:
        """The counters and fitted statistics `save` keeps: names from `allowed` that the model
        has, integers >= 0 or float arrays shaped like the latent space (or None)."""
        if not isinstance(persist, dict):
            raise self.fail("persist", f"must be a dict; got {type(persist).__name__}")
        latent = model.config.get("latent_dim")
        shapes = {"latent_mean_": (latent,), "latent_chol_": (latent, latent)}
        for key, value in persist.items():
            field = f"persist.{str(key)[:100]}"
            if key not in allowed or not hasattr(model, key):
                raise self.fail(field, "not a field a model file restores")
            if key in shapes:
                if value is not None and not (isinstance(value, np.ndarray)
                                              and value.dtype.kind == "f"
                                              and value.shape == shapes[key]):
                    raise self.fail(field, f"must be None or a float array of shape "
                                           f"{shapes[key]}; got {_describe(value)}")
            elif isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
                raise self.fail(field, f"must be an integer >= 0; got {str(value)[:100]}")
        return persist

    def optimizer(self, o, n_params, classes, names) -> tuple:
        """(class, name, groups as lists of parameter indices, encoded state) of the optimizer
        entry, or None."""
        if o is None:
            return None
        if not isinstance(o, dict) or set(o) != set(OPTIMIZER_KEYS):
            raise self.fail("optimizer", f"must be null or an object with {OPTIMIZER_KEYS}")
        if not isinstance(o["class"], str) or o["class"] not in classes:
            raise self.fail("optimizer.class", f"must be one of {sorted(classes)}; got "
                                               f"{str(o['class'])[:100]!r}")
        if o["name"] is not None and o["name"] not in names:
            raise self.fail("optimizer.name", f"must be null or one of {sorted(names)}")
        groups, seen = o["groups"], set()
        if not isinstance(groups, list) or not groups:
            raise self.fail("optimizer.groups", "must be a non-empty list of index lists")
        for gi, g in enumerate(groups):
            if not isinstance(g, list) or not g:
                raise self.fail(f"optimizer.groups[{gi}]", "must be a non-empty list")
            for i in g:
                if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_params or i in seen:
                    raise self.fail(f"optimizer.groups[{gi}]", f"{str(i)[:100]} is not a new "
                                                                f"parameter index < {n_params}")
                seen.add(i)
        return classes[o["class"]], o["name"], groups, o["state"]

    def unused(self):
        extra = sorted(set(self.archive.members) - self.used)
        if extra:
            raise self.fail(extra[0][:100], "an array no field of the file refers to")


def _describe(v) -> str:
    if isinstance(v, np.ndarray):
        return f"{v.dtype} array of shape {v.shape}"
    return type(v).__name__


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj
