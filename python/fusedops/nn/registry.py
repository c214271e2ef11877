"""The model classes that fusedops.nn.load may build, by the name a model file stores.

Every subclass of `Model` registers itself here when it is defined (`Model.__init_subclass__`),
so the registry is the allow-list of classes a file can name: loading never imports or
instantiates anything else. This module imports nothing, which lets serialization look classes
up without importing the model modules (they import serialization for save / load).
"""
from __future__ import annotations

__all__ = ["register_model", "model_class", "model_classes"]

_MODELS: dict[str, type] = {}


def _builtin(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "fusedops"


def register_model(cls: type) -> None:
    """Register `cls` under its name. A later class of the same name replaces an earlier one
    (a notebook cell run twice, a reloaded module), except fusedops's own models: a file that
    says "MLP" means fusedops.nn.MLP."""
    old = _MODELS.get(cls.__name__)
    if old is not None and _builtin(old) and not _builtin(cls):
        raise TypeError(f"{cls.__module__}.{cls.__qualname__}: {cls.__name__!r} is the name of "
                        f"{old.__module__}.{old.__qualname__} in model files; give the subclass "
                        "another name")
    _MODELS[cls.__name__] = cls


def model_class(name) -> type:
    """The registered model class called `name`; ValueError naming the known ones otherwise."""
    try:
        return _MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model class {name!r} (known: {', '.join(sorted(_MODELS))}); "
                         "a subclass must be defined (imported) before a file naming it is "
                         "loaded") from None


def model_classes() -> dict:
    """{name: class} of every registered model."""
    return dict(_MODELS)
