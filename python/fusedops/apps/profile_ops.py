"""The profiler's constants, its targets (fusedops backends and PyTorch peers) and its op registry:
for each op, the fusedops function it times, the bytes it moves per element (DESIGN.md,
"Bandwidth probe"), how to build its arrays at a size, how to call it, and the PyTorch peer that
does the same work. It imports no other profiler module: profile, profile_report and plots all
build on it.

Bytes count each array once per read or write: SGD 3 arrays (w read and written, g read),
momentum / AdaGrad / RMSprop 5, Adam 7 (+2 AMSGrad), dropout 2 plus a 1/8-byte mask bit,
batchnorm forward in training 3 (x read twice), eval 2, backward 5 (dy and x read twice).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import backends, ops

P_DROP = 0.5
SEED = 1234
PEERS = ("torch", "torch-cuda")            # PyTorch as a peer in the same tables, when installed
HOST = ("numpy", "numba", "c", "torch")    # the CPU targets the GPU crossover is measured against
DEFAULT_SIZES = (10_000, 100_000, 1_000_000, 10_000_000)


# --------------------------------------------------------------------------- targets

def torch_module():
    """torch, or None when PyTorch is not installed (an optional peer)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def backend_unavailable_reason(name: str) -> str | None:
    """Why profiling target `name` (a fusedops backend or a PyTorch peer) cannot run here."""
    if name in backends.BACKENDS:
        return backends.backend_unavailable_reason(name)
    if name not in PEERS:
        raise ValueError(f"unknown backend {name!r}")
    torch = torch_module()
    if torch is None:
        return "PyTorch is not installed (an optional peer: pip install torch)"
    if name == "torch-cuda" and not torch.cuda.is_available():
        return "PyTorch sees no CUDA device"
    return None


def available_backends() -> list[str]:
    """Default targets: every available backend and peer; CUDA only on a real GPU (the
    simulator's timings mean nothing, but it can be named explicitly to test the code path)."""
    out = [b for b in backends.BACKENDS + PEERS if backend_unavailable_reason(b) is None]
    if backends.cuda_simulator() and "cuda" in out:
        out.remove("cuda")
    return out


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class OpSpec:
    function: str                  # name in fusedops.ops
    description: str
    arrays: int                    # float arrays read or written once per element
    call: Callable                 # call(arrays: dict, backend: str, params: dict) -> op's result
    make: Callable                 # make(n, dtype, rng, features) -> (arrays, params)
    torch: Callable | None = None  # torch(torch, tensors: dict, params) -> (fn, impl)
    extra_bytes: float = 0.0       # dtype-independent bytes per element (mask bits)
    kwargs: dict = field(default_factory=dict)

    def bytes_per_element(self, dtype) -> float:
        return self.arrays * np.dtype(dtype).itemsize + self.extra_bytes


# --------------------------------------------------------------------------- builders

def _flat(names, zeros=()):
    def make(n, dtype, rng, features):
        d = {k: rng.standard_normal(n, dtype=dtype) for k in names}
        d.update({k: np.zeros(n, dtype) for k in zeros})
        return d, {"n": n, "shape": (n,)}
    return make


def _matrix(n, features):
    f = max(1, min(features, n // 2))
    return max(2, n // f), f  # N >= 2: batch norm in training needs two rows


def _bn_make(with_grad):
    def make(n, dtype, rng, features):
        rows, f = _matrix(n, features)
        # a large mean, as in real activations: the stable-variance path is what gets timed
        d = {"x": (rng.standard_normal((rows, f), dtype=dtype) + dtype.type(3)),
             "gamma": np.ones(f, dtype), "beta": np.zeros(f, dtype),
             "running_mean": np.zeros(f, dtype), "running_var": np.ones(f, dtype)}
        if with_grad:
            host = _host_backend()
            _, mean, invstd = ops.batchnorm_forward(d["x"], d["gamma"], d["beta"], None, None,
                                                    training=True, backend=host)
            d.update(dy=rng.standard_normal((rows, f), dtype=dtype), mean=np.asarray(mean),
                     invstd=np.asarray(invstd))
        return d, {"n": rows * f, "shape": (rows, f)}
    return make


def _dropout_make(with_mask):
    def make(n, dtype, rng, features):
        d = {"x": rng.standard_normal(n, dtype=dtype), "y": np.zeros(n, dtype)}
        if with_mask:
            _, mask = ops.dropout_forward(d["x"], P_DROP, seed=SEED, backend=_host_backend())
            d = {"dy": d["x"], "dx": d["y"], "mask": mask}
        return d, {"n": n, "shape": (n,)}
    return make


def _host_backend():
    return "numba" if backends.backend_unavailable_reason("numba") is None else "numpy"


# --------------------------------------------------------------------------- fusedops calls

# Each call returns what its op returns (the profiler ignores it; tests/test_profile.py checks
# the outputs an op allocates itself, such as batch norm's y, mean and invstd).

def _stream_copy(a, be, p):
    return ops.stream_copy(a["b"], a["a"], backend=be)


def _stream_triad(a, be, p):
    return ops.stream_triad(a["a"], a["b"], a["c"], scalar=3.0, backend=be)


def _sgd(a, be, p):
    return ops.sgd_step(a["param"], a["grad"], a.get("buf"), lr=1e-3, momentum=p["momentum"], backend=be)


def _adagrad(a, be, p):
    return ops.adagrad_step(a["param"], a["grad"], a["sum_sq"], lr=1e-3, backend=be)


def _rmsprop(a, be, p):
    return ops.rmsprop_step(a["param"], a["grad"], a["square_avg"], lr=1e-3, backend=be)


def _adam(a, be, p):
    return ops.adam_step(a["param"], a["grad"], a["exp_avg"], a["exp_avg_sq"], a.get("max_exp_avg_sq"),
                  step=10, lr=1e-3, weight_decay=p["wd"], decoupled=p["decoupled"],
                  amsgrad="max_exp_avg_sq" in a, backend=be)


def _dropout_fwd(a, be, p):
    return ops.dropout_forward(a["x"], P_DROP, seed=SEED, offset=0, out=a["y"], backend=be)


def _dropout_bwd(a, be, p):
    return ops.dropout_backward(a["dy"], p=P_DROP, mask=a["mask"], out=a["dx"], backend=be)


def _bn_fwd(training):
    def call(a, be, p):
        return ops.batchnorm_forward(a["x"], a["gamma"], a["beta"], a["running_mean"], a["running_var"],
                              training=training, backend=be)
    return call


def _bn_bwd(a, be, p):
    return ops.batchnorm_backward(a["dy"], a["x"], a["gamma"], a["mean"], a["invstd"], backend=be)


# --------------------------------------------------------------------------- PyTorch peers

def _t_stream(kind):
    def build(torch, t, p):
        if kind == "copy":
            return (lambda: t["b"].copy_(t["a"])), "Tensor.copy_"
        return (lambda: torch.add(t["b"], t["c"], alpha=3.0, out=t["a"])), "torch.add(out=)"
    return build


def _t_optim(cls_name, **kw):
    def build(torch, t, p):
        param = torch.nn.Parameter(t["param"])
        param.grad = t["grad"]
        cls = getattr(torch.optim, cls_name)
        for impl in ({"fused": True}, {"foreach": False}):  # the fused kernel where torch has one
            try:
                opt = cls([param], lr=1e-3, **kw, **impl)
                opt.step()
            except (RuntimeError, TypeError, ValueError):
                continue
            key, val = next(iter(impl.items()))
            return opt.step, f"torch.optim.{cls_name}({key}={val})"
        raise RuntimeError(f"torch.optim.{cls_name} runs neither fused nor for-loop here")
    return build


def _t_dropout(torch, t, p):
    fn = torch.nn.functional.dropout
    return (lambda: fn(t["x"], P_DROP, training=True)), "torch.nn.functional.dropout"


def _t_dropout_bwd(torch, t, p):
    # torch keeps a bool mask (1 byte per element, 8x the packed bit mask)
    mask = torch.rand(t["dy"].shape, device=t["dy"].device) >= P_DROP
    bwd = torch.ops.aten.native_dropout_backward
    return (lambda: bwd(t["dy"], mask, 1.0 / (1.0 - P_DROP))), "aten.native_dropout_backward"


def _t_bn(training):
    def build(torch, t, p):
        fn = torch.nn.functional.batch_norm
        return (lambda: fn(t["x"], t["running_mean"], t["running_var"], t["gamma"], t["beta"],
                           training=training)), "torch.nn.functional.batch_norm"
    return build


def _t_bn_bwd(torch, t, p):
    bwd = torch.ops.aten.native_batch_norm_backward
    return (lambda: bwd(t["dy"], t["x"], t["gamma"], None, None, t["mean"], t["invstd"], True,
                        1e-5, [True, True, True])), "aten.native_batch_norm_backward"


OPS: dict[str, OpSpec] = {
    "copy": OpSpec("stream_copy", "probe: b = a", 2, _stream_copy, _flat(("a", "b")), _t_stream("copy")),
    "triad": OpSpec("stream_triad", "probe: a = b + s*c", 3, _stream_triad, _flat(("a", "b", "c")),
                    _t_stream("triad")),
    "sgd": OpSpec("sgd_step", "SGD step", 3, _sgd, _flat(("param", "grad")), _t_optim("SGD"),
                  kwargs={"momentum": 0.0}),
    "momentum": OpSpec("sgd_step", "SGD with momentum 0.9", 5, _sgd,
                       _flat(("param", "grad"), ("buf",)), _t_optim("SGD", momentum=0.9),
                       kwargs={"momentum": 0.9}),
    "adagrad": OpSpec("adagrad_step", "AdaGrad step", 5, _adagrad,
                      _flat(("param", "grad"), ("sum_sq",)), _t_optim("Adagrad")),
    "rmsprop": OpSpec("rmsprop_step", "RMSprop step", 5, _rmsprop,
                      _flat(("param", "grad"), ("square_avg",)), _t_optim("RMSprop")),
    "adam": OpSpec("adam_step", "Adam step", 7, _adam,
                   _flat(("param", "grad"), ("exp_avg", "exp_avg_sq")), _t_optim("Adam"),
                   kwargs={"wd": 0.0, "decoupled": False}),
    "adamw": OpSpec("adam_step", "AdamW step (decoupled decay 0.01)", 7, _adam,
                    _flat(("param", "grad"), ("exp_avg", "exp_avg_sq")),
                    _t_optim("AdamW", weight_decay=0.01), kwargs={"wd": 0.01, "decoupled": True}),
    "amsgrad": OpSpec("adam_step", "Adam with AMSGrad", 9, _adam,
                      _flat(("param", "grad"), ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")),
                      _t_optim("Adam", amsgrad=True), kwargs={"wd": 0.0, "decoupled": False}),
    "dropout": OpSpec("dropout_forward", "dropout forward, p=0.5, packed mask", 2, _dropout_fwd,
                      _dropout_make(False), _t_dropout, extra_bytes=1 / 8),
    "dropout_backward": OpSpec("dropout_backward", "dropout backward from the packed mask", 2,
                               _dropout_bwd, _dropout_make(True), _t_dropout_bwd, extra_bytes=1 / 8),
    "batchnorm": OpSpec("batchnorm_forward", "batchnorm forward, training (N, F)", 3,
                        _bn_fwd(True), _bn_make(False), _t_bn(True)),
    "batchnorm_eval": OpSpec("batchnorm_forward", "batchnorm forward, eval (N, F)", 2,
                             _bn_fwd(False), _bn_make(False), _t_bn(False)),
    "batchnorm_backward": OpSpec("batchnorm_backward", "batchnorm backward (N, F)", 5, _bn_bwd,
                                 _bn_make(True), _t_bn_bwd),
}


def available_ops() -> list[str]:
    """The registry's ops whose fusedops function exists in this build."""
    return [name for name, spec in OPS.items() if hasattr(ops, spec.function)]


def host_arrays(spec: OpSpec, n: int, dtype, features: int):
    """Seeded host arrays and params ({"n", "shape", + the spec's kwargs}) for one size."""
    rng = np.random.default_rng(SEED)
    arrays, params = spec.make(int(n), np.dtype(dtype), rng, int(features))
    params.update(spec.kwargs)
    return arrays, params


def torch_peer(spec: OpSpec, torch, device: str, arrays: dict, params: dict):
    """(fn, impl) running the PyTorch equivalent of `spec` on `device`."""
    if spec.torch is None:
        raise RuntimeError(f"no PyTorch peer for {spec.function}")
    tensors = {k: torch.from_numpy(v).to(device) for k, v in arrays.items() if v.dtype.kind == "f"}
    with torch.no_grad():
        fn, impl = spec.torch(torch, tensors, params)

    def run():
        with torch.no_grad():
            fn()
    return run, impl
