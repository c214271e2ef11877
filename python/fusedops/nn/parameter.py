"""Parameters as views into one flat buffer, and the array module (NumPy or CuPy) of a backend.

A model allocates ONE flat parameter buffer and ONE flat gradient buffer and points every
`Parameter.data` / `.grad` at a slice of them (the llm.c layout: `gpt2_update` runs AdamW over
one flat array). The buffers are laid out group-wise — parameters with weight decay first,
then those without (biases, batch-norm gamma/beta) — so each optimizer parameter group is one
contiguous slice and its step is a single fused kernel call.
"""
from __future__ import annotations

import numpy as np

from .._arrays import host_array as to_host  # a NumPy copy (or the array itself) of any array
from ..backends import BackendUnavailableError, default_backend, resolve_backend

__all__ = ["Parameter", "FlatParameters", "array_module", "to_host", "resolve_nn_backend"]


class Parameter:
    """A trainable array `data` and its gradient `grad` (same shape and dtype).

    `decay` says whether weight decay / L1 apply (True for weight matrices, False for biases
    and batch-norm parameters). Layers read `.data` / `.grad` on every call, so a model can
    re-point them into its flat buffers after construction.
    """

    __slots__ = ("data", "grad", "name", "decay")

    def __init__(self, data, *, name: str = "", decay: bool = True):
        self.data = data
        self.grad = data * 0
        self.name = name
        self.decay = bool(decay)

    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.data.shape, dtype=np.int64))

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={self.shape}, decay={self.decay})"


class FlatParameters:
    """Owns the flat `data` and `grad` buffers of a list of parameters.

    After construction every parameter's `.data` / `.grad` is a C-contiguous view of
    `self.data` / `self.grad`, with the values it had before. `groups` lists, in buffer order,
    the decayed parameters, then the others; `decay_size` is where the second group starts.
    """

    def __init__(self, params, xp, dtype):
        params = list(params)
        ordered = [p for p in params if p.decay] + [p for p in params if not p.decay]
        total = sum(p.size for p in ordered)
        self.params = ordered
        self.data = xp.zeros(total, dtype=dtype)
        self.grad = xp.zeros(total, dtype=dtype)
        self.decay_size = sum(p.size for p in ordered if p.decay)
        start = 0
        for p in ordered:
            stop = start + p.size
            self.data[start:stop] = xp.asarray(p.data, dtype=dtype).reshape(-1)
            p.data = self.data[start:stop].reshape(p.shape)
            p.grad = self.grad[start:stop].reshape(p.shape)
            start = stop

    @property
    def decayed(self) -> list:
        return [p for p in self.params if p.decay]

    @property
    def undecayed(self) -> list:
        return [p for p in self.params if not p.decay]

    def param_groups(self, *, weight_decay: float = 0.0, l1: float = 0.0) -> list[dict]:
        """Optimizer parameter groups: weights with `weight_decay` and `l1`, then the rest
        with neither. Empty groups are left out."""
        groups = []
        if self.decayed:
            groups.append({"params": self.decayed, "weight_decay": float(weight_decay), "l1": float(l1)})
        if self.undecayed:
            groups.append({"params": self.undecayed, "weight_decay": 0.0, "l1": 0.0})
        return groups


def resolve_nn_backend(backend) -> str:
    """The backend a model runs on: `backend`, else FUSEDOPS_BACKEND, else numba. `cuda` also
    needs CuPy (the matrix products run through cuBLAS via CuPy)."""
    name = default_backend() if backend is None else backend
    name = resolve_backend(name)  # checks the name and that it can run here
    if name == "cuda":
        array_module(name)
    return name


def array_module(backend: str):
    """numpy for the host backends, cupy for cuda (a clear error when CuPy is missing)."""
    if backend != "cuda":
        return np
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailableError(
            "backend 'cuda' in fusedops.nn keeps parameters and activations on the GPU as CuPy "
            f"arrays and needs CuPy ({exc}); install it, e.g. `pip install cupy-cuda12x`") from None
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver / no device
        raise BackendUnavailableError(f"backend 'cuda': CuPy finds no usable GPU ({exc})") from None
    return cupy

