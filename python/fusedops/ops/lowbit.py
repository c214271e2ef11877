"""Optimizer steps on low-bit state and low-precision parameters: validate, then one pass.

    from fusedops.ops import lowbit
    m = lowbit.BlockQuantized.zeros(w.shape, signed=True)     # 8-bit first moment
    v = lowbit.BlockQuantized.zeros(w.shape, signed=False)    # 8-bit second moment
    lowbit.adam_step(w, g, m, v, step=1, lr=1e-3)            # w, g: float32, bfloat16, float16

Each state argument is a float32 array, a bfloat16 array (ml_dtypes, or its bit pattern as
uint16: what GPU arrays hold) or a `BlockQuantized`
(8-bit codes shaped like the parameter, one float32 scale per 256 elements); all state of one
call has one format. `param` and `grad` share a dtype: float32, bfloat16 or float16; with a
low-precision param, `master` (float32, like param) is the value the update starts from and
writes, and param receives it rounded (to nearest even, or stochastically with
`stochastic_rounding=True`: Philox words of (seed, step, stream), fusedops.reference.lowbit).
Every backend computes the same bits as the NumPy reference; the update formulas and the
hyperparameters are those of fusedops.ops.adam_step / sgd_step / rmsprop_step. A bad call
raises before anything is written.
"""
from __future__ import annotations

import numpy as np

from .._arrays import array_info
from .._dispatch import (ADAM_LOWBIT, DEQUANTIZE_BLOCKS, QUANTIZE_BLOCKS, RMSPROP_LOWBIT,
                         SGD_LOWBIT, launch)
from ..backends import resolve_backend
from ..checks import check_bool, check_int, check_no_overlap
from . import optim as _optim

__all__ = ["BlockQuantized", "adam_step", "sgd_step", "rmsprop_step", "quantize", "dequantize",
           "BLOCK", "param_format", "state_format", "adam_scalars", "sgd_scalars",
           "rmsprop_scalars", "prepare", "launch_step", "ADAM_LOWBIT", "SGD_LOWBIT",
           "RMSPROP_LOWBIT"]

BLOCK = 256
PARAM_FORMATS = {"float32": 0, "bfloat16": 1, "float16": 2}
STATE_FORMATS = {"float32": 0, "bfloat16": 1, "int8": 2}


class BlockQuantized:
    """8-bit blockwise state: `codes` (uint8, the parameter's shape; signed E4M3 or unsigned E5M3
    codes, fusedops.reference.lowbit) and `scales` (float32, one per 256 elements). Host or
    device arrays."""

    __slots__ = ("codes", "scales", "signed")

    def __init__(self, codes, scales, signed: bool):
        self.codes, self.scales, self.signed = codes, scales, bool(signed)

    @classmethod
    def zeros(cls, shape, *, signed: bool, device: bool = False) -> "BlockQuantized":
        """All-zero state for a parameter of `shape` (on the GPU with device=True)."""
        from .._arrays import full

        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        n = int(np.prod(shape, dtype=np.int64))
        codes = full(n, np.uint8, device, 0).reshape(shape)
        return cls(codes, full(-(-n // BLOCK), np.float32, device, 0.0), signed)

    @property
    def shape(self) -> tuple:
        return tuple(array_info("codes", self.codes).shape)

    @property
    def nbytes(self) -> int:
        """Bytes of codes and scales."""
        return sum(int(np.prod(array_info(k, a).shape, dtype=np.int64)) * itemsize
                   for k, a, itemsize in (("codes", self.codes, 1), ("scales", self.scales, 4)))

    def __repr__(self) -> str:
        return f"BlockQuantized(shape={self.shape}, signed={self.signed})"


def _dtype_name(info) -> str:
    d = info.dtype
    if d.kind == "V" and d.name == "bfloat16" and d.itemsize == 2:  # ml_dtypes, not imported
        return "bfloat16"
    return d.name


def param_format(name, a) -> int:
    """pfmt of a param / grad array (0 float32, 1 bfloat16, 2 float16); raises for others."""
    fmt = PARAM_FORMATS.get(_dtype_name(array_info(name, a)))
    if fmt is None:
        raise TypeError(f"{name} must have dtype float32, bfloat16 (ml_dtypes) or float16; got "
                        f"{array_info(name, a).dtype}")
    return fmt


def state_format(name, s, ref_info, *, signed) -> int:
    """sfmt of a state argument (0 float32, 1 bfloat16, 2 BlockQuantized), checked against the
    param (shape, memory side) and the slot's kind (signed first moments, unsigned second)."""
    if isinstance(s, BlockQuantized):
        ci, si = array_info(f"{name}.codes", s.codes), array_info(f"{name}.scales", s.scales)
        n = int(np.prod(ref_info.shape, dtype=np.int64))
        if ci.dtype != np.uint8 or si.dtype != np.float32:
            raise TypeError(f"{name} must hold uint8 codes and float32 scales")
        if ci.shape != ref_info.shape or si.shape != (-(-n // BLOCK),):
            raise ValueError(f"{name} must have codes shaped {ref_info.shape} and "
                             f"{-(-n // BLOCK)} scales; got {ci.shape} and {si.shape}")
        if s.signed != signed:
            kind = "signed (a first moment)" if signed else "unsigned (a second moment)"
            raise ValueError(f"{name} must be {kind}; create it with signed={signed}")
        infos = (ci, si)
        fmt = 2
    else:
        info = array_info(name, s)
        fmt = {"float32": 0, "bfloat16": 1, "uint16": 1}.get(_dtype_name(info))
        if fmt is None:
            raise TypeError(f"{name} must be a float32 or bfloat16 array (or uint16 bfloat16 "
                            f"bits) or a BlockQuantized; got dtype {info.dtype}")
        if info.shape != ref_info.shape:
            raise ValueError(f"{name} must have the parameter's shape {ref_info.shape}; got "
                             f"{info.shape}")
        infos = (info,)
    for i in infos:
        if not i.c_contiguous or not i.writable:
            raise ValueError(f"{name} must be C-contiguous and writable")
        if i.device != ref_info.device:
            raise ValueError(f"{name} and param must both be host arrays or both GPU arrays")
    return fmt


def _bits(a, fmt):
    """The kernel's view of a param / grad / bf16 state array: uint16 bits for 16-bit formats."""
    if a is None or fmt == 0:
        return a
    if isinstance(a, np.ndarray):
        return a.view(np.uint16)
    from .._arrays import as_numba_device

    return as_numba_device(a).view(np.uint16)


def prepare(param, grad, master, slots, sr, backend):
    """Validate a step; return (backend, pfmt, sfmt, kernel arrays: param, master, per slot
    (values, scales), grad). slots: {name: (state or None, signed)}."""
    pfmt = param_format("param", param)
    pinfo = array_info("param", param)
    if not pinfo.c_contiguous or not pinfo.writable:
        raise ValueError("param must be C-contiguous and writable")
    ginfo = array_info("grad", grad)
    if ginfo.dtype != pinfo.dtype or ginfo.shape != pinfo.shape or not ginfo.c_contiguous:
        raise ValueError(f"grad must be a C-contiguous array like param ({pinfo.dtype}, "
                         f"{pinfo.shape}); got {ginfo.dtype}, {ginfo.shape}")
    if ginfo.device != pinfo.device:
        raise ValueError("grad and param must both be host arrays or both GPU arrays")
    if master is not None:
        if pfmt == 0:
            raise ValueError("master is for bfloat16 / float16 params; a float32 param is its "
                             "own master copy")
        minfo = array_info("master", master)
        if (minfo.dtype != np.float32 or minfo.shape != pinfo.shape or not minfo.c_contiguous
                or not minfo.writable or minfo.device != pinfo.device):
            raise ValueError(f"master must be a writable C-contiguous float32 array shaped "
                             f"{pinfo.shape}, on the param's side")
    if check_bool("stochastic_rounding", sr) and pfmt == 0:
        raise ValueError("stochastic_rounding applies to bfloat16 / float16 params (float32 "
                         "params are written exactly)")
    fmts = {name: state_format(name, st, pinfo, signed=sg)
            for name, (st, sg) in slots.items() if st is not None}
    if len(set(fmts.values())) > 1:
        raise ValueError(f"all state of one step must have one format; got {fmts}")
    sfmt = next(iter(fmts.values()), 0)
    outs = {"param": param, "master": master}
    for name, (st, _) in slots.items():
        if isinstance(st, BlockQuantized):
            outs.update({f"{name}.codes": st.codes, f"{name}.scales": st.scales})
        else:
            outs[name] = st
    check_no_overlap(outs, {"grad": grad})
    be = resolve_backend(backend, *[a for a in outs.values() if a is not None], grad)
    arrays = [_bits(param, pfmt), master]
    for st, _ in slots.values():
        if isinstance(st, BlockQuantized):
            arrays += [st.codes, st.scales]
        else:
            arrays += [_bits(st, sfmt), None]
    return be, pfmt, sfmt, arrays + [_bits(grad, pfmt)]


def _rounding(seed, step, stream):
    return (check_int("seed", seed, lo=0, hi=2**64 - 1), check_int("step", step, lo=1, hi=2**64 - 1),
            check_int("stream", stream, lo=0, hi=2**32 - 1))


def launch_step(be, kernel, arrays, scalars):
    """Run a prepared step (`prepare`'s arrays) of ADAM_LOWBIT, SGD_LOWBIT or RMSPROP_LOWBIT."""
    launch(be, kernel, arrays, scalars=scalars, dtype=np.dtype(np.float32))


def adam_scalars(step, lr, beta1, beta2, eps, eps_inside_sqrt, weight_decay, l1, decoupled):
    """Validated kernel scalars of adam_lowbit (without the rounding tail): (lr/c1, b1, 1-b1,
    b2, 1-b2, 1/c2, eps_in, eps_out, decay, l2, l1), computed in float64."""
    lr, b1, b2, eps, inside, decay, l2, l1, c1, c2 = _optim.adam_scalars(
        step, lr, beta1, beta2, eps, eps_inside_sqrt, weight_decay, l1, decoupled, False)
    eps_in, eps_out = (eps, 0.0) if inside else (0.0, eps)
    return lr / c1, b1, 1.0 - b1, b2, 1.0 - b2, 1.0 / c2, eps_in, eps_out, decay, l2, l1


def sgd_scalars(lr, momentum, nesterov, weight_decay, l1):
    """Validated kernel scalars of sgd_lowbit: (lr, beta, cg, ch, l2, l1)."""
    lr, beta, nesterov, l2, l1 = _optim.sgd_scalars(lr, momentum, nesterov, weight_decay, l1)
    cg, ch = (1.0, beta) if nesterov else (0.0, 1.0)
    return lr, beta, cg, ch, l2, l1


def rmsprop_scalars(lr, alpha, eps, eps_inside_sqrt, momentum, centered, weight_decay, l1):
    """Validated kernel scalars of rmsprop_lowbit: (lr, alpha, 1-alpha, eps_in, eps_out, beta,
    l2, l1)."""
    lr, alpha, eps, inside, beta, l2, l1 = _optim.rmsprop_scalars(
        lr, alpha, eps, eps_inside_sqrt, momentum, centered, weight_decay, l1)
    eps_in, eps_out = (eps, 0.0) if inside else (0.0, eps)
    return lr, alpha, 1.0 - alpha, eps_in, eps_out, beta, l2, l1


def adam_step(param, grad, exp_avg, exp_avg_sq, *, master=None, step, lr, beta1=0.9,
              beta2=0.999, eps=1e-8, weight_decay=0.0, l1=0.0, decoupled=False,
              eps_inside_sqrt=False, seed=0, stream=0, stochastic_rounding=False, backend=None):
    """One Adam / AdamW step (fusedops.ops.adam_step's formula and hyperparameters, computed in
    float32: w = w*decay - (lr/c1) * m / (sqrt(v/c2) + eps)) on low-bit state: exp_avg signed,
    exp_avg_sq unsigned. Returns param."""
    scalars = adam_scalars(step, lr, beta1, beta2, eps, eps_inside_sqrt, weight_decay, l1,
                           decoupled)
    seed, step, stream = _rounding(seed, step, stream)
    if exp_avg is None or exp_avg_sq is None:
        raise ValueError("exp_avg and exp_avg_sq are required (Adam's moment estimates)")
    be, pfmt, sfmt, arrays = prepare(param, grad, master, {
        "exp_avg": (exp_avg, True), "exp_avg_sq": (exp_avg_sq, False)}, stochastic_rounding,
        backend)
    launch_step(be, ADAM_LOWBIT, arrays, (*scalars, pfmt, sfmt, seed, step, stream,
                                        bool(stochastic_rounding)))
    return param


def sgd_step(param, grad, momentum_buf=None, *, master=None, lr, momentum=0.0, nesterov=False,
             weight_decay=0.0, l1=0.0, seed=0, step=1, stream=0, stochastic_rounding=False,
             backend=None):
    """One SGD step (fusedops.ops.sgd_step's formula) on low-bit state: momentum_buf (signed)
    is required when momentum > 0 and ignored otherwise. `step` only seeds the rounding.
    Returns param."""
    scalars = sgd_scalars(lr, momentum, nesterov, weight_decay, l1)
    seed, step, stream = _rounding(seed, step, stream)
    beta = scalars[1]
    h = momentum_buf if beta > 0.0 else None
    if beta > 0.0 and h is None:
        raise ValueError("momentum_buf is required when momentum > 0")
    be, pfmt, sfmt, arrays = prepare(param, grad, master, {"momentum_buf": (h, True)},
                                      stochastic_rounding, backend)
    launch_step(be, SGD_LOWBIT, arrays, (*scalars, pfmt, sfmt, seed, step, stream,
                                       bool(stochastic_rounding)))
    return param


def rmsprop_step(param, grad, square_avg, momentum_buf=None, grad_avg=None, *, master=None, lr,
                 alpha=0.99, eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0, l1=0.0,
                 eps_inside_sqrt=False, seed=0, step=1, stream=0, stochastic_rounding=False,
                 backend=None):
    """One RMSprop step (fusedops.ops.rmsprop_step's formula) on low-bit state: square_avg
    unsigned; momentum_buf and grad_avg signed, required with momentum > 0 / centered=True.
    8-bit state cannot be centered: s - ga^2 of two independently rounded 8-bit estimates
    (errors of a few %) goes negative where the variance is small, and the step is NaN.
    Returns param."""
    scalars = rmsprop_scalars(lr, alpha, eps, eps_inside_sqrt, momentum, centered, weight_decay,
                              l1)
    seed, step, stream = _rounding(seed, step, stream)
    beta = scalars[5]
    if square_avg is None:
        raise ValueError("square_avg is required (the running average of squared gradients)")
    h = momentum_buf if beta > 0.0 else None
    ga = grad_avg if centered else None
    if beta > 0.0 and h is None:
        raise ValueError("momentum_buf is required when momentum > 0")
    if centered and ga is None:
        raise ValueError("grad_avg is required when centered=True")
    if centered and isinstance(square_avg, BlockQuantized):
        raise ValueError("centered=True needs float32 or bfloat16 state: with 8-bit state the "
                         "centered variance s - ga^2 can come out negative (NaN steps)")
    be, pfmt, sfmt, arrays = prepare(param, grad, master, {
        "square_avg": (square_avg, False), "momentum_buf": (h, True), "grad_avg": (ga, True)},
        stochastic_rounding, backend)
    launch_step(be, RMSPROP_LOWBIT, arrays, (*scalars, pfmt, sfmt, seed, step, stream,
                                           bool(stochastic_rounding)))
    return param


def quantize(x, *, signed: bool, out: BlockQuantized | None = None, backend=None) -> BlockQuantized:
    """The 8-bit blockwise state of float32 x (host or device array)."""
    info = array_info("x", x)
    if info.dtype != np.float32 or not info.c_contiguous:
        raise TypeError(f"x must be a C-contiguous float32 array; got {info.dtype}")
    out = BlockQuantized.zeros(info.shape, signed=signed, device=info.device) if out is None else out
    state_format("out", out, info, signed=bool(signed))
    check_no_overlap({"out.codes": out.codes, "out.scales": out.scales}, {"x": x})
    be = resolve_backend(backend, x, out.codes)
    launch(be, QUANTIZE_BLOCKS, (out.codes, out.scales, x), scalars=(bool(signed),),
           dtype=np.dtype(np.float32))
    return out


def dequantize(q: BlockQuantized, *, out=None, backend=None):
    """float32 values of q (shaped like q.codes; device arrays give a device array)."""
    from .._arrays import full

    if not isinstance(q, BlockQuantized):
        raise TypeError(f"q must be a BlockQuantized; got {type(q).__name__}")
    info = array_info("q.codes", q.codes)
    if out is None:
        out = full(int(np.prod(info.shape, dtype=np.int64)), np.float32, info.device).reshape(info.shape)
    state_format("q", q, array_info("out", out), signed=q.signed)
    be = resolve_backend(backend, out, q.codes)
    launch(be, DEQUANTIZE_BLOCKS, (out, q.codes, q.scales), scalars=(q.signed,),
           dtype=np.dtype(np.float32))
    return out
