"""flatten_parameters: a module's parameters and gradients as views of one buffer per
(device, dtype), so a fusedops.torch optimizer steps each parameter group with one kernel call
(the multi-tensor idea of torch's fused Adam, with one launch instead of a launch per chunk list).

Gradients: autograd accumulates into an existing `.grad` in place, which keeps the view. After
`zero_grad(set_to_none=True)` (torch's default) `.grad` is None, and the next backward creates a
fresh tensor; a post-accumulate-grad hook installed here copies it into the parameter's place in
the flat gradient buffer and points `.grad` back at the view (one gradient-sized copy; the
fresh tensor is freed). So the one-call step survives an ordinary training loop either way.
"""
from typing import NamedTuple

import torch
from torch.utils.weak import WeakIdKeyDictionary

__all__ = ["flatten_parameters", "FlatBuffer"]

_GRAD_VIEWS = WeakIdKeyDictionary()  # parameter -> its view of the flat gradient buffer
_HOOKED = WeakIdKeyDictionary()  # parameter -> hook handle (one hook per parameter, ever)


class FlatBuffer(NamedTuple):
    """One (device, dtype): the parameters' buffer, the gradients' buffer, and the parameters
    in their order there."""

    params: torch.Tensor
    grads: torch.Tensor
    members: tuple


def _reattach(p):
    """Post-accumulate-grad hook: put a freshly created .grad back into the flat buffer."""
    view = _GRAD_VIEWS.get(p)
    g = p.grad
    if view is None or g is None or g is view or g.requires_grad:  # create_graph: keep graph
        return
    if g.shape != view.shape or g.dtype != view.dtype or g.device != view.device or g.is_sparse:
        return
    with torch.no_grad():
        view.copy_(g)
    p.grad = view


def _ordered(module, param_groups):
    """Trainable parameters: those of param_groups first, group by group, then the rest in
    module order; each once."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    known = {id(p) for p in trainable}
    order, seen = [], set()
    for gi, group in enumerate(param_groups or ()):
        members = group["params"] if isinstance(group, dict) else group
        for p in ([members] if isinstance(members, torch.Tensor) else members):
            if id(p) not in known:
                raise ValueError(f"param_groups[{gi}] holds a tensor that is not a trainable "
                                 f"parameter of the module")
            if id(p) not in seen:
                seen.add(id(p))
                order.append(p)
    return order + [p for p in trainable if id(p) not in seen]


def flatten_parameters(module: torch.nn.Module, param_groups=None) -> list:
    """Move `module`'s trainable parameters into one contiguous buffer per (device, dtype),
    each `Parameter` becoming a view of it (same object, same values; `p.data` rebound), and
    their gradients likewise into a second buffer (existing `.grad` values are copied; a None
    `.grad` stays None until the next backward).

    `param_groups` (e.g. an optimizer's `param_groups`, or lists of parameters) orders the
    buffers group by group, so that each group is one contiguous span: pass the groups you
    give the optimizer when they split the module's parameters (weights with decay, biases
    without). Frozen parameters (requires_grad=False) are left where they are. Non-contiguous
    parameters (e.g. channels_last) become contiguous. Call it before creating the optimizer or
    after: an optimizer moves existing state into its flat buffers at its next step.
    Returns one FlatBuffer per (device, dtype).
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module; got {type(module).__name__}")
    by_kind = {}
    for p in _ordered(module, param_groups):
        by_kind.setdefault((p.device, p.dtype), []).append(p)
    out = []
    for (device, dtype), params in by_kind.items():
        total = sum(p.numel() for p in params)
        flat = torch.empty(total, dtype=dtype, device=device)
        grads = torch.zeros(total, dtype=dtype, device=device)
        off = 0
        with torch.no_grad():
            for p in params:
                n = p.numel()
                view, gview = flat[off:off + n].view(p.shape), grads[off:off + n].view(p.shape)
                view.copy_(p)
                p.data = view
                if p.grad is not None:
                    gview.copy_(p.grad)
                    p.grad = gview
                _GRAD_VIEWS[p] = gview
                if p not in _HOOKED:
                    _HOOKED[p] = p.register_post_accumulate_grad_hook(_reattach)
                off += n
        out.append(FlatBuffer(flat, grads, tuple(params)))
    return out
