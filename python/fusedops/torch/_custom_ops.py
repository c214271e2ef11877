"""fusedops dropout and batch normalization as PyTorch custom operators (torch.library), so that
autograd, torch.compile and torch.export see opaque, correctly described ops:

    fusedops::dropout(x, rng, p, inverted, save_mask) -> (y, mask)
    fusedops::dropout_backward(dy, mask, rng, p, inverted, has_mask) -> dx
    fusedops::batch_norm(x, weight?, bias?, running_mean?, running_var?, training, momentum, eps)
        -> (y, mean, invstd, new_running_mean, new_running_var)
    fusedops::batch_norm_backward(dy, x, weight?, mean, invstd, training) -> (dx, dweight, dbias)

`rng` is an int64 (2,) host tensor holding (seed, offset) as 64-bit patterns. All four ops are
functional (no input is written): batch_norm returns the updated running statistics (empty
tensors when it does not update them), like aten's _native_batch_norm_legit_functional, and the
module copies them into its buffers. Each op validates through fusedops.ops and runs its kernels
zero-copy (CPU: NumPy views, CUDA: the tensors on PyTorch's current stream).
"""
from typing import Optional

import torch
from torch import Tensor

from .. import ops
from ._tensors import as_tensor, empty_like, kernel_array, on_stream

_U64 = 1 << 64


def rng_tensor(seed: int, offset: int) -> Tensor:
    """(seed, offset), integers in [0, 2^64), as the int64 bit patterns the ops take."""
    return torch.tensor([v - _U64 if v >= 1 << 63 else v for v in (seed, offset)],
                        dtype=torch.int64)


def _seed_offset(rng: Tensor):
    seed, offset = rng.tolist()
    return seed % _U64, offset % _U64


def _array(t: Optional[Tensor]):
    return None if t is None else kernel_array(t.contiguous())


# --------------------------------------------------------------------------- dropout

@torch.library.custom_op("fusedops::dropout", mutates_args=())
def dropout_op(x: Tensor, rng: Tensor, p: float, inverted: bool,
               save_mask: bool) -> tuple[Tensor, Tensor]:
    seed, offset = _seed_offset(rng)
    x = x.contiguous()
    y = empty_like(x)
    mode = "inverted" if inverted else "classic"
    with on_stream(x):
        _, mask = ops.dropout_forward(kernel_array(x), p, seed=seed, offset=offset, mode=mode,
                                      out=kernel_array(y), return_mask=save_mask)
    if mask is None:
        return y, x.new_empty((0,), dtype=torch.uint8)
    return y, as_tensor(mask, x)


@dropout_op.register_fake
def _(x, rng, p, inverted, save_mask):
    n = (x.numel() + 7) // 8 if save_mask else 0
    return torch.empty_like(x, memory_format=torch.contiguous_format), x.new_empty(
        (n,), dtype=torch.uint8)


@torch.library.custom_op("fusedops::dropout_backward", mutates_args=())
def dropout_backward_op(dy: Tensor, mask: Tensor, rng: Tensor, p: float, inverted: bool,
                        has_mask: bool) -> Tensor:
    dy = dy.contiguous()
    dx = empty_like(dy)
    mode = "inverted" if inverted else "classic"
    with on_stream(dy):
        if has_mask:
            ops.dropout_backward(kernel_array(dy), p=p, mask=kernel_array(mask), mode=mode,
                                 out=kernel_array(dx))
        else:  # regenerate the mask from (seed, offset): nothing was stored
            seed, offset = _seed_offset(rng)
            ops.dropout_backward(kernel_array(dy), p=p, seed=seed, offset=offset, mode=mode,
                                 out=kernel_array(dx))
    return dx


@dropout_backward_op.register_fake
def _(dy, mask, rng, p, inverted, has_mask):
    return torch.empty_like(dy, memory_format=torch.contiguous_format)


def _dropout_setup(ctx, inputs, output):
    _, rng, p, inverted, save_mask = inputs
    ctx.save_for_backward(output[1], rng)
    ctx.p, ctx.inverted, ctx.has_mask = p, inverted, save_mask


def _dropout_grad(ctx, dy, _dmask):
    mask, rng = ctx.saved_tensors
    return (dropout_backward_op(dy, mask, rng, ctx.p, ctx.inverted, ctx.has_mask),
            None, None, None, None)


def _dropout_backward_setup(ctx, inputs, output):
    _, mask, rng, p, inverted, has_mask = inputs
    ctx.save_for_backward(mask, rng)
    ctx.args = (p, inverted, has_mask)


def _dropout_backward_grad(ctx, ddx):
    # the backward is linear in dy with the same mask and scale: it is its own derivative
    mask, rng = ctx.saved_tensors
    return dropout_backward_op(ddx, mask, rng, *ctx.args), None, None, None, None, None


dropout_op.register_autograd(_dropout_grad, setup_context=_dropout_setup)
dropout_backward_op.register_autograd(_dropout_backward_grad,
                                      setup_context=_dropout_backward_setup)


# --------------------------------------------------------------------------- batch norm

@torch.library.custom_op("fusedops::batch_norm", mutates_args=())
def batch_norm_op(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                  running_mean: Optional[Tensor], running_var: Optional[Tensor], training: bool,
                  momentum: float, eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    x = x.contiguous()
    y = empty_like(x)
    update = training and running_mean is not None
    rm = running_mean.clone() if update else running_mean  # functional: new statistics
    rv = running_var.clone() if update else running_var
    with on_stream(x):
        _, mean, invstd = ops.batchnorm_forward(
            kernel_array(x), _array(weight), _array(bias), _array(rm), _array(rv),
            training=training, momentum=momentum, eps=eps, out=kernel_array(y))
    if not update:  # two distinct empty outputs: a custom op's outputs may not alias
        rm, rv = x.new_empty((0,)), x.new_empty((0,))
    return y, as_tensor(mean, x), as_tensor(invstd, x), rm, rv


@batch_norm_op.register_fake
def _(x, weight, bias, running_mean, running_var, training, momentum, eps):
    c = x.shape[1]
    update = training and running_mean is not None
    stats = [torch.empty_like(s) if update else x.new_empty((0,))
             for s in (running_mean, running_var)]
    return (torch.empty_like(x, memory_format=torch.contiguous_format), x.new_empty((c,)),
            x.new_empty((c,)), *stats)


@torch.library.custom_op("fusedops::batch_norm_backward", mutates_args=())
def batch_norm_backward_op(dy: Tensor, x: Tensor, weight: Optional[Tensor], mean: Tensor,
                           invstd: Tensor, training: bool) -> tuple[Tensor, Tensor, Tensor]:
    x, dy = x.contiguous(), dy.contiguous()
    dx = empty_like(x)
    with on_stream(x):
        _, dweight, dbias = ops.batchnorm_backward(
            kernel_array(dy), kernel_array(x), _array(weight), _array(mean), _array(invstd),
            training=training, out=kernel_array(dx))
    return dx, as_tensor(dweight, x), as_tensor(dbias, x)


@batch_norm_backward_op.register_fake
def _(dy, x, weight, mean, invstd, training):
    c = x.shape[1]
    return (torch.empty_like(x, memory_format=torch.contiguous_format), x.new_empty((c,)),
            x.new_empty((c,)))


def _bn_setup(ctx, inputs, output):
    x, weight, bias, running_mean, _, training, _, _ = inputs
    _, mean, invstd, _, _ = output
    ctx.save_for_backward(x, weight, mean, invstd)
    ctx.batch_stats = training or running_mean is None  # what the forward normalized with
    ctx.has_bias = bias is not None
    ctx.mark_non_differentiable(*output[1:])


def _bn_grad(ctx, dy, *_unused):
    x, weight, mean, invstd = ctx.saved_tensors
    dx, dweight, dbias = batch_norm_backward_op(dy, x, weight, mean, invstd, ctx.batch_stats)
    return (dx, dweight if weight is not None else None, dbias if ctx.has_bias else None,
            None, None, None, None, None)


batch_norm_op.register_autograd(_bn_grad, setup_context=_bn_setup)
