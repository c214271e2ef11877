"""torch.optim's SGD, Adagrad, RMSprop, Adam and AdamW with fused fusedops steps.

Each class takes torch.optim's arguments with torch's defaults (same order, same keyword-only
ones), plus fusedops's `l1` (L1 / elastic-net term added to the gradient inside the step),
`eps_inside_sqrt` (the lecture-notes denominator sqrt(s + eps); AdaGrad, RMSprop, Adam) and
`backend` ("numba", "c", "numpy" for CPU tensors, "cuda" for CUDA tensors; default by device).

Options torch has and a fused step honours exactly: `maximize` (the step reads -grad from a
scratch buffer, as torch's own for-loop step does; .grad is never written), `lr_decay` and
`initial_accumulator_value` (AdaGrad), `decoupled_weight_decay` (Adam), tensor `lr` / `betas`
(read as numbers at each step). `foreach` and `fused` choose among torch's implementations of
the same function: accepted and ignored (the step is always one fused pass). Rejected with a
ValueError naming the option: SGD `dampening` != 0 (the kernel's buffer is h = momentum*h + g),
`capturable=True` (bias corrections are computed on the host: not CUDA-graph capturable) and
`differentiable=True` (the step is not recorded by autograd).
"""
from .. import ops
from ..checks import check_real
from ..ops.optim import adagrad_scalars, adam_scalars, rmsprop_scalars, sgd_scalars
from ._optimizer import FusedOptimizer, as_number, number, reject

__all__ = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"]


class SGD(FusedOptimizer):
    """torch.optim.SGD (momentum, Nesterov, weight decay, maximize) plus `l1`.
    State: `momentum_buffer` when momentum != 0 (no `step`, as in torch)."""

    _counts_steps = False
    _extra = ("l1",)

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 *, maximize=False, foreach=None, differentiable=False, fused=None, l1=0.0,
                 backend=None):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach,
                        differentiable=differentiable, fused=fused, l1=l1)
        super().__init__(params, defaults, backend)

    def _hyper(self, group):
        reject(group, "dampening", 0, "the fused momentum buffer is h = momentum*h + g; use "
               "dampening=0 or torch.optim.SGD")
        lr, momentum, nesterov, wd, l1 = sgd_scalars(
            number(group, "lr"), number(group, "momentum"), group["nesterov"],
            number(group, "weight_decay"), group["l1"])
        return dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=wd, l1=l1)

    def _state_keys(self, group):
        return ("momentum_buffer",) if number(group, "momentum") != 0 else ()

    def _launch(self, hyper, step, param, grad, state, backend):
        ops.sgd_step(param, grad, state.get("momentum_buffer"), **hyper, backend=backend)


class Adagrad(FusedOptimizer):
    """torch.optim.Adagrad (lr_decay, initial_accumulator_value, maximize) plus `l1` and
    `eps_inside_sqrt`. State: `step`, `sum` (created for every parameter at construction,
    as torch does)."""

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, foreach=None, *, maximize=False, differentiable=False, fused=None,
                 l1=0.0, eps_inside_sqrt=False, backend=None):
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, fused=fused, l1=l1,
                        eps_inside_sqrt=eps_inside_sqrt)
        super().__init__(params, defaults, backend)
        for group in self.param_groups:
            self._init_state(group, group["params"], ("sum",), None)

    def _hyper(self, group):
        lr_decay = check_real("lr_decay", number(group, "lr_decay"), lo=0.0)
        check_real("initial_accumulator_value", group["initial_accumulator_value"], lo=0.0)
        lr, eps, inside, wd, l1 = adagrad_scalars(
            number(group, "lr"), group["eps"], group["eps_inside_sqrt"],
            number(group, "weight_decay"), group["l1"])
        return dict(lr=lr, eps=eps, eps_inside_sqrt=inside, weight_decay=wd, l1=l1,
                    lr_decay=lr_decay)

    def _state_keys(self, group):
        return ("sum",)

    def _fill(self, group):
        return float(group["initial_accumulator_value"])

    def _launch(self, hyper, step, param, grad, state, backend):
        hyper = dict(hyper)
        lr_decay = hyper.pop("lr_decay")
        hyper["lr"] = hyper["lr"] / (1 + (step - 1) * lr_decay)  # torch's clr, same float ops
        ops.adagrad_step(param, grad, state["sum"], **hyper, backend=backend)


class RMSprop(FusedOptimizer):
    """torch.optim.RMSprop (momentum, centered, maximize) plus `l1` and `eps_inside_sqrt`.
    State: `step`, `square_avg`, `momentum_buffer` (momentum > 0), `grad_avg` (centered)."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, capturable=False, foreach=None, maximize=False,
                 differentiable=False, *, l1=0.0, eps_inside_sqrt=False, backend=None):
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, l1=l1,
                        eps_inside_sqrt=eps_inside_sqrt)
        super().__init__(params, defaults, backend)

    def _hyper(self, group):
        reject(group, "capturable", False, "the step runs on the host's step count")
        lr, alpha, eps, inside, momentum, wd, l1 = rmsprop_scalars(
            number(group, "lr"), group["alpha"], group["eps"], group["eps_inside_sqrt"],
            group["momentum"], group["centered"], number(group, "weight_decay"), group["l1"])
        return dict(lr=lr, alpha=alpha, eps=eps, eps_inside_sqrt=inside, momentum=momentum,
                    centered=bool(group["centered"]), weight_decay=wd, l1=l1)

    def _state_keys(self, group):
        return (("square_avg",) + (("momentum_buffer",) if group["momentum"] > 0 else ())
                + (("grad_avg",) if group["centered"] else ()))

    def _launch(self, hyper, step, param, grad, state, backend):
        ops.rmsprop_step(param, grad, state["square_avg"], state.get("momentum_buffer"),
                         state.get("grad_avg"), **hyper, backend=backend)


class Adam(FusedOptimizer):
    """torch.optim.Adam (amsgrad, maximize, decoupled_weight_decay) plus `l1` and
    `eps_inside_sqrt`. State: `step`, `exp_avg`, `exp_avg_sq`, `max_exp_avg_sq` (amsgrad)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False, fused=None, decoupled_weight_decay=False, l1=0.0,
                 eps_inside_sqrt=False, backend=None):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize, foreach=foreach,
                        capturable=capturable, differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay, l1=l1,
                        eps_inside_sqrt=eps_inside_sqrt)
        super().__init__(params, defaults, backend)

    def _hyper(self, group):
        reject(group, "capturable", False, "bias corrections are computed on the host")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2); got {betas!r}")
        b1, b2 = as_number("betas[0]", betas[0]), as_number("betas[1]", betas[1])
        decoupled = group["decoupled_weight_decay"]
        amsgrad = group["amsgrad"]
        lr, b1, b2, eps, inside = adam_scalars(
            1, number(group, "lr"), b1, b2, group["eps"], group["eps_inside_sqrt"],
            number(group, "weight_decay"), group["l1"], decoupled, amsgrad)[:5]
        return dict(lr=lr, beta1=b1, beta2=b2, eps=eps, eps_inside_sqrt=inside,
                    weight_decay=float(number(group, "weight_decay")), l1=float(group["l1"]),
                    decoupled=bool(decoupled), amsgrad=bool(amsgrad))

    def _state_keys(self, group):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())

    def _launch(self, hyper, step, param, grad, state, backend):
        ops.adam_step(param, grad, state["exp_avg"], state["exp_avg_sq"],
                      state.get("max_exp_avg_sq"), step=step, **hyper, backend=backend)


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (default 1e-2), plus `l1` and
    `eps_inside_sqrt`. Loading any checkpoint keeps decoupled_weight_decay=True, as torch's."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, foreach=None, capturable=False,
                 differentiable=False, fused=None, l1=0.0, eps_inside_sqrt=False, backend=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable, differentiable=differentiable,
                         fused=fused, decoupled_weight_decay=True, l1=l1,
                         eps_inside_sqrt=eps_inside_sqrt, backend=backend)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
