"""fusedops: fused training kernels (optimizer steps, dropout, batch normalization) written once
per backend (NumPy reference, Numba CPU, C through cffi, Numba CUDA), and a thin MLP /
autoencoder API that trains on them.

    import fusedops
    fusedops.available_backends()      # ['numpy', 'numba', 'c', ...]
    fusedops.set_num_threads(2)        # both CPU backends
    fusedops.ops.adam_step(...)        # fusedops.optim, .nn, .data likewise
    fusedops.info()                    # versions, machine, measured bandwidth

`import fusedops` imports nothing else, not even NumPy: every name below is loaded on first
use (PEP 562), so the package costs nothing until it is used and the subpackages are still
reachable as attributes. The optional adapters (fusedops.torch, .sklearn, .distributed) need
their extra; without it they raise ImportError with the pip command.
"""
from __future__ import annotations

import importlib

# core subpackages and modules, imported on first attribute access
_SUBMODULES = ("apps", "backends", "checks", "data", "nn", "ops", "optim", "reference")
# name -> module defining it
_ATTRIBUTES = {
    "BACKENDS": "backends", "BackendUnavailableError": "backends",
    "available_backends": "backends", "get_num_threads": "backends",
    "set_num_threads": "backends", "info": "apps.sysinfo",
}
# optional adapters: name -> (the module it needs, the extra that installs it)
_ADAPTERS = {"torch": ("torch", "torch"), "sklearn": ("sklearn", "sklearn"),
             "distributed": ("mpi4py", "mpi")}

__all__ = ["BACKENDS", "BackendUnavailableError", "available_backends", "get_num_threads",
           "set_num_threads", "info", "ops", "__version__"]


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("fusedops")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0.0.0+unknown"


def _adapter(name: str):
    needs, extra = _ADAPTERS[name]
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{name}":
            raise ModuleNotFoundError(f"fusedops.{name} is not part of this installation "
                                      f"(fusedops {__getattr__('__version__')})",
                                      name=exc.name) from None
        if exc.name is None or exc.name.split(".")[0] != needs:
            raise
        raise ModuleNotFoundError(f"fusedops.{name} needs {needs}, which is not installed: "
                                  f"pip install 'fusedops[{extra}]'", name=exc.name) from exc


def __getattr__(name: str):
    if name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _ATTRIBUTES:
        value = getattr(importlib.import_module(f"{__name__}.{_ATTRIBUTES[name]}"), name)
    elif name in _ADAPTERS:
        value = _adapter(name)
    elif name == "__version__":
        value = _version()
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    import importlib.util

    # an adapter is listed where getattr would succeed: its module and its extra are installed
    adapters = [a for a, (needs, _) in _ADAPTERS.items()
                if importlib.util.find_spec(needs) is not None
                and importlib.util.find_spec(f"{__name__}.{a}") is not None]
    return sorted({*globals(), *_SUBMODULES, *_ATTRIBUTES, *adapters, "__version__"})
