"""fusedops: fused training kernels (optimizer steps, dropout, batch normalization) written once
per backend (NumPy reference, Numba CPU, C through cffi, Numba CUDA), and a thin MLP /
autoencoder API that trains on them.

    import fusedops
    fusedops.available_backends()      # ['numpy', 'numba', 'c', ...]
    fusedops.set_num_threads(2)        # both CPU backends
    fusedops.info()                    # versions, machine, measured bandwidth
"""
from importlib import metadata as _metadata

from . import ops
from .backends import (BACKENDS, BackendUnavailableError, available_backends, get_num_threads,
                       set_num_threads)
from .apps.sysinfo import info

try:
    __version__ = _metadata.version("fusedops")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["BACKENDS", "BackendUnavailableError", "available_backends", "get_num_threads",
           "set_num_threads", "info", "ops", "__version__"]
