"""fusedops.torch: fused fusedops kernels in PyTorch training loops (`pip install fusedops[torch]`).

    import fusedops.torch as ft
    ft.flatten_parameters(model)                        # optional: one kernel call per group
    opt = ft.AdamW(model.parameters(), lr=1e-3, l1=1e-6)  # a torch.optim.Optimizer
    ft.Dropout(0.1), ft.BatchNorm1d(256)                # torch.nn.Dropout / BatchNorm1d subclasses

Optimizers (`SGD`, `Adagrad`, `RMSprop`, `Adam`, `AdamW`) take torch.optim's arguments and keep
torch's state format; `Dropout` / `dropout` use the fusedops Philox mask (1 bit per element, the
same on CPU and GPU); `BatchNorm1d` / `batch_norm` are bit-deterministic at any thread count.
CPU tensors run on the Numba (default) or C kernels through NumPy views of their memory, CUDA
tensors on the CUDA kernels on PyTorch's current stream: no copies either way.
"""
try:
    import torch  # noqa: F401
except ModuleNotFoundError as exc:  # also when imported directly, not as fusedops.torch
    raise ModuleNotFoundError("fusedops.torch needs torch, which is not installed: "
                              "pip install 'fusedops[torch]'", name=exc.name) from exc

from .flat import FlatBuffer, flatten_parameters
from .nn import BatchNorm1d, Dropout, batch_norm, dropout
from .optim import SGD, Adagrad, Adam, AdamW, RMSprop

__all__ = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "flatten_parameters", "FlatBuffer",
           "Dropout", "dropout", "BatchNorm1d", "batch_norm"]
