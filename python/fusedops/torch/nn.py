"""Dropout and BatchNorm1d for PyTorch models on fusedops kernels (autograd, torch.compile).

`Dropout` subclasses torch.nn.Dropout and `BatchNorm1d` subclasses torch.nn.BatchNorm1d, so code
that looks for those classes (weight-decay filters, export passes, SyncBatchNorm conversion)
keeps working, and BatchNorm1d has torch's parameters, buffers and state_dict keys.
"""
import torch

from ..checks import check_bool, check_int, check_real
from ._custom_ops import batch_norm_op, dropout_op, rng_tensor
from ._tensors import check_float

__all__ = ["dropout", "Dropout", "batch_norm", "BatchNorm1d"]

MODES = ("inverted", "classic")
_U64_MAX = (1 << 64) - 1


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"mode must be 'inverted' or 'classic'; got {mode!r}")
    return mode


def _eval_dropout(x, p, mode):
    """Inverted dropout is the identity in eval (x itself, as torch returns); classic dropout
    scales by the keep probability, the expectation of its training output."""
    return x if mode == "inverted" else x * (1.0 - p)


def _dropout(x, rng, p, mode, save_mask):
    check_float("x", x)
    y, _ = dropout_op(x, rng, p, mode == "inverted", save_mask)
    return y


def dropout(x, p=0.5, training=True, *, seed, offset=0, mode="inverted", save_mask=True):
    """Dropout of x with drop probability p and the fusedops Philox mask of (seed, offset):
    element i (C order) is kept exactly when it is kept in
    `fusedops.ops.dropout_mask(x.shape, p, seed=seed, offset=offset)`, on CPU and CUDA alike.
    Training: inverted mode y = x*keep/(1-p), classic y = x*keep; eval: see `Dropout`.
    Backward uses the 1-bit packed mask saved by forward, or with save_mask=False regenerates
    it from (seed, offset) and stores nothing. seed, offset: integers in [0, 2^64)."""
    p = check_real("p", p, lo=0.0, hi=1.0)
    _check_mode(mode)
    if not check_bool("training", training):
        return _eval_dropout(x, p, mode)
    rng = rng_tensor(check_int("seed", seed, lo=0, hi=_U64_MAX),
                     check_int("offset", offset, lo=0, hi=_U64_MAX))
    return _dropout(x, rng, p, mode, check_bool("save_mask", save_mask))


class Dropout(torch.nn.Dropout):
    """torch.nn.Dropout with the fusedops mask: 1 bit per element saved for backward (or none
    with save_mask=False), the same mask on CPU and GPU for the same (seed, offset).

    The module owns a seed (seed=None draws one from torch's global generator, so
    torch.manual_seed makes it reproducible) and an offset that advances by one at every
    training call; both are int64 buffers in state_dict (`seed`, `offset`), always on the
    host (they are kernel launch arguments), so a resumed run continues the same mask
    sequence. A state_dict without them (e.g. from a model with torch.nn.Dropout) loads and
    keeps this module's values. inplace=True is not supported (the output is a new tensor).
    """

    def __init__(self, p=0.5, mode="inverted", seed=None, *, inplace=False, save_mask=True):
        super().__init__(check_real("p", p, lo=0.0, hi=1.0), inplace=False)
        if inplace:
            raise ValueError("inplace=True is not supported by fusedops.torch.Dropout")
        self.mode = _check_mode(mode)
        self.save_mask = check_bool("save_mask", save_mask)
        if seed is None:
            seed = int(torch.randint(0, 1 << 62, (), dtype=torch.int64))
        seed = check_int("seed", seed, lo=0, hi=_U64_MAX)
        self.register_buffer("seed", rng_tensor(seed, 0)[:1].reshape(()).clone())
        self.register_buffer("offset", torch.zeros((), dtype=torch.int64))

    def forward(self, x):
        if not self.training:
            return _eval_dropout(x, self.p, self.mode)
        rng = torch.stack((self.seed, self.offset))  # a copy: the op may save it for backward
        self.offset.add_(1)
        return _dropout(x, rng, self.p, self.mode, self.save_mask)

    def _apply(self, fn, recurse=True):
        rng = {k: self._buffers[k] for k in ("seed", "offset")}
        super()._apply(fn, recurse)
        self._buffers.update(rng)  # .to(device) / .cuda() leave the counter on the host
        return self

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        n = len(missing_keys)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        own = {prefix + "seed", prefix + "offset"}
        missing_keys[n:] = [k for k in missing_keys[n:] if k not in own]

    def extra_repr(self):
        return f"p={self.p}, mode={self.mode!r}, save_mask={self.save_mask}"


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """torch.nn.functional.batch_norm on fusedops kernels, for (N, C) and (N, C, L) float32 /
    float64 input: batch statistics in training (running statistics, if given, updated in
    place with the unbiased variance), running statistics in eval. Bit-deterministic at any
    thread count; float64 accumulation."""
    check_float("input", input)
    if input.dim() not in (2, 3):
        raise ValueError(f"input must be 2-D (N, C) or 3-D (N, C, L); got {input.dim()}-D")
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if t is not None and (t.dtype != input.dtype or t.device != input.device):
            raise TypeError(f"{name} must have input's dtype and device ({input.dtype}, "
                            f"{input.device}); got ({t.dtype}, {t.device})")
    y, _, _, new_mean, new_var = batch_norm_op(input, weight, bias, running_mean, running_var,
                                               bool(training), float(momentum), float(eps))
    if training and running_mean is not None:
        with torch.no_grad():
            running_mean.copy_(new_mean)
            running_var.copy_(new_var)
    return y


class BatchNorm1d(torch.nn.BatchNorm1d):
    """torch.nn.BatchNorm1d (same arguments, parameters, buffers and state_dict keys, so it
    loads a torch.nn.BatchNorm1d checkpoint) on fusedops kernels. momentum=None is torch's
    cumulative average (factor 1/num_batches_tracked)."""

    def forward(self, input):
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        use_running = not self.training or self.track_running_stats
        return batch_norm(input, self.running_mean if use_running else None,
                          self.running_var if use_running else None, self.weight, self.bias,
                          batch_stats, factor, self.eps)
