"""Stateful, torch-like optimizers over flat buffers: SGD, Adagrad, RMSprop, Adam, AdamW.

    flat, (W1, b1) = fusedops.optim.flatten([W1, b1])      # parameters as views of one buffer
    opt = fusedops.optim.Adam([W1, b1], lr=1e-3)
    opt.step([dW1, db1])                                     # or opt.step() with param objects

`params` is a list of arrays (NumPy, or CUDA arrays: Numba, CuPy, PyTorch), a list of objects
carrying `.data` and `.grad`, or a list of group dicts `{"params": [...], "lr": ..., ...}` whose
keys override the constructor's hyperparameters (typically `weight_decay=0.0` for biases).
State buffers live where the parameters live; each group's state is one flat buffer per kind.
When a group's parameters are views laid end to end in one buffer (see `flatten`) and its
gradients likewise, a step is ONE kernel call over the whole span; otherwise one per array.

state_dict() is a flat dict, savable as is with `np.savez(path, **sd)` and loadable with
`opt.load_state_dict(np.load(path))`:
    "format": "fusedops.optim/1", "optimizer": class name, "n_groups": int,
    "group.<g>.n_params": int, "group.<g>.<hyperparameter>": number (betas: float64 array (2,)),
    "state.<k>.step": int, "state.<k>.<buffer>": array shaped like parameter k (host copy),
with k the parameter's index over all groups in order. Loading restores hyperparameters and
state exactly, so a resumed run continues bit for bit.

Low-bit state and low-precision parameters (SGD, RMSprop, Adam, AdamW; fusedops._lowbit_state):
`state_dtype="int8" | "bfloat16"`, bfloat16 / float16 params and grads, `master_weights=True`,
`stochastic_rounding=True` with `seed`, `min_8bit_size` (smaller tensors keep float32 state).
Then each parameter is one kernel call (fusedops.ops.lowbit) and state_dict() also holds
"lowbit.<option>" entries, "state.<k>.master" (float32), and per buffer "state.<k>.<buffer>"
(float32), "state.<k>.<buffer>.bfloat16" (uint16 bits) or "state.<k>.<buffer>.codes" (uint8)
with ".scales" (float32, one per 256 elements). `lowbit_options(sd)` gives the options to
construct an optimizer that can load sd.

Code that drives an optimizer from outside (fusedops.distributed: ZeRO steps a clone over its
shard) uses the methods under "for wrappers": param_arrays, resolve_grads, check_step, clone,
state_names, state_nbytes, check_state_dict; nothing else of the internals.
"""
from __future__ import annotations

import copy

import numpy as np

from . import _lowbit_state, _optim_state
from ._arrays import full, host_copy, is_device_array, zero_fill
from ._dispatch import launch
from ._flat import flatten, span
from .backends import resolve_backend
from .checks import check_array, check_like, check_no_overlap, check_real
from .ops import lowbit as _lowbit_ops
from .ops import optim as _ops

__all__ = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "flatten", "lowbit_options"]


def lowbit_options(state_dict) -> dict:
    """The low-bit constructor options (state_dtype, master_weights, ...) a state_dict was saved
    with, {} for float32 state: `Adam(params, lr=..., **lowbit_options(sd)).load_state_dict(sd)`."""
    return _lowbit_state.options(*_optim_state._entries(state_dict)[::-1])


PLAN_CACHE = 4


def _is_param_object(p) -> bool:
    return not isinstance(p, np.ndarray) and hasattr(p, "data") and hasattr(p, "grad")


class _Optimizer:
    """Groups, validation, the step plan and state handling; subclasses declare their kernel
    (fusedops.ops.optim.SGD_UPDATE, ...), its state buffers (`_slots`, in kernel argument order)
    and their hyperparameters."""

    _slots: tuple = ()
    _kernel = None
    _lowbit_kernel, _lowbit_kernel_slots = None, ()

    def __init__(self, params, defaults: dict, backend=None, lowbit=None):
        self.defaults = dict(defaults)
        self.param_groups = []
        for g in self._as_groups(params):
            group = {**self.defaults, **{k: v for k, v in g.items() if k != "params"}}
            group["params"] = list(g["params"])
            if not group["params"]:
                raise ValueError("every parameter group needs at least one parameter")
            self.param_groups.append(group)
        arrays = self.param_arrays()
        cfg = _lowbit_state.config() if lowbit is None else lowbit
        self._lowbit = None
        if _lowbit_state.wanted(cfg, arrays):
            self._lowbit = _lowbit_state.Params(cfg, arrays)  # checks the params' formats
        else:
            for k, a in enumerate(arrays):
                check_array(f"params[{k}]", a, writable=True)
        self._backend = resolve_backend(backend, *arrays)
        self._groups, k = [], 0
        for group in self.param_groups:
            if self._lowbit is None:
                self._groups.append(_optim_state.Group(arrays[k:k + len(group["params"])]))
            k += len(group["params"])
        for gi in range(len(self.param_groups)):
            self._group_scalars(gi, 1)  # validate the hyperparameters now
            if self._lowbit is not None:
                self._lowbit_slots(self.param_groups[gi])  # and that the low-bit path has them
        self._plan_key, self._plan, self._plan_refs = None, None, None
        self._plans = {}  # key -> (plan, refs): the last few plans, see _current_plan

    # ------------------------------------------------------------------ subclass hooks
    def _active(self, group) -> tuple:
        """The state buffers this group's options use."""
        return self._slots

    def _scalars(self, group, step) -> tuple:
        """Validated kernel scalars of `group` at `step`."""
        raise NotImplementedError

    def _with_step(self, scalars, step) -> tuple:
        """`scalars` (validated at step 1) for another step: only Adam's depend on it."""
        return scalars

    def _fill_value(self, name) -> float:
        return 0.0

    def _lowbit_slots(self, group) -> tuple:
        """((state name, signed), ...) of the low-bit path for this group's options: a subset
        of `_lowbit_kernel_slots`, the low-bit kernel's state arguments in its order."""
        raise NotImplementedError

    def _lowbit_scalars(self, group, step) -> tuple:
        """The low-bit kernel's scalars (fusedops.ops.lowbit) for `group` at `step`."""
        raise NotImplementedError

    # ------------------------------------------------------------------ public API
    @property
    def lr(self) -> float:
        """The learning rate of the first group; setting it sets every group's."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value):
        value = check_real("lr", value, lo=0.0)
        for group in self.param_groups:
            group["lr"] = value

    def step(self, grads=None, *, skip_if_nonfinite=False) -> bool:
        """One optimizer step. `grads` aligns with all parameters in group order (None entries
        skip their parameter); omitted, each parameter object's `.grad` is used. With
        skip_if_nonfinite=True, a NaN/Inf anywhere in the gradients leaves parameters and state
        untouched and returns False. Returns True when the step was taken."""
        plan = self._current_plan(self.param_arrays(), self.resolve_grads(grads))
        if self._lowbit is not None:
            if skip_if_nonfinite and _lowbit_state.nonfinite(plan):
                return False
            _lowbit_state.step(self, plan)
            return True
        if skip_if_nonfinite and self._nonfinite(plan):
            return False
        for grp, idx, arrays, scalars in plan:
            scalars = self._with_step(scalars, int(grp.steps[idx[0]]) + 1)
            launch(self._backend, self._kernel, arrays, scalars=scalars)
            grp.steps[idx] += 1
        return True

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero the `.grad` of every parameter object (or set it to None)."""
        for p in (p for g in self.param_groups for p in g["params"]):
            if not _is_param_object(p) or p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                zero_fill(p.grad)

    def state_dict(self) -> dict:
        """A flat dict of numbers and host arrays (format in the module docstring)."""
        if self._lowbit is not None:
            return _lowbit_state.state_dict(self, _optim_state.groups_dict(self))
        return _optim_state.state_dict(self)

    def load_state_dict(self, state_dict) -> None:
        """Restore hyperparameters and state from state_dict() (or np.load of its savez file).
        Everything is checked before anything changes."""
        if self._lowbit is not None:
            source, sd = _optim_state._entries(state_dict)
            updates = _optim_state.check_groups(self, sd, source)
            _lowbit_state.load_state_dict(self, sd, source)
            for group, upd in zip(self.param_groups, updates):
                group.update(upd)
        else:
            _optim_state.load_state_dict(self, state_dict)
        self._plan_key = None  # the plans refer to the old buffers
        self._plans.clear()

    # ------------------------------------------------------------------ for wrappers
    def param_arrays(self) -> list:
        """The parameter arrays over all groups in order (a parameter object's `.data`)."""
        return [p.data if _is_param_object(p) else p
                for g in self.param_groups for p in g["params"]]

    def resolve_grads(self, grads=None) -> list:
        """The gradients step(grads) would use, aligned with param_arrays(): `grads` (one entry
        per parameter) or, when None, each parameter object's `.grad`."""
        entries = [p for g in self.param_groups for p in g["params"]]
        if grads is None:
            if not all(_is_param_object(p) for p in entries):
                raise ValueError("grads is required when params are arrays (no .grad to read)")
            return [p.grad for p in entries]
        grads = list(grads)
        if len(grads) != len(entries):
            raise ValueError(f"grads must have one entry per parameter ({len(entries)}); "
                             f"got {len(grads)}")
        return grads

    def check_step(self, grads=None) -> list:
        """Raise what step(grads) would raise on bad gradients or hyperparameters, before
        anything is computed; returns resolve_grads(grads). Changes no parameter, state value
        or step count (the state buffers a step uses may be allocated, as step would)."""
        grads = self.resolve_grads(grads)
        self._current_plan(self.param_arrays(), grads)
        return grads

    def clone(self, params):
        """A new optimizer of this class, options and backend over `params` (as the constructor
        takes them; group dicts override hyperparameters), with fresh state."""
        new = copy.copy(self)  # keeps a subclass's options outside the groups (Adagrad's initial)
        lowbit = None if self._lowbit is None else self._lowbit.cfg
        _Optimizer.__init__(new, params, self.defaults, backend=self._backend, lowbit=lowbit)
        return new

    def low_bit_options(self) -> dict | None:
        """The low-bit options (state_dtype, master_weights, stochastic_rounding, seed,
        min_8bit_size) when this optimizer runs the low-bit path, else None."""
        return None if self._lowbit is None else self._lowbit.cfg.as_dict()

    def state_names(self, group: int | None = None) -> tuple:
        """Names of the state buffers (state_dict's `state.<k>.<name>`) in kernel order: all
        this optimizer can hold, or those a step of param_groups[group] uses."""
        return self._slots if group is None else self._active(self.param_groups[group])

    def state_nbytes(self) -> int:
        """Bytes of state buffers held (they are allocated by the first step), low-bit state
        and master copies included."""
        if self._lowbit is not None:
            return self._lowbit.nbytes()
        return sum(grp.nbytes() for grp in self._groups)

    def check_state_dict(self, state_dict) -> list:
        """Raise what load_state_dict would raise, changing nothing; returns per group the
        hyperparameters loading it would set."""
        source, sd = _optim_state._entries(state_dict)
        if self._lowbit is not None:
            updates = _optim_state.check_groups(self, sd, source)
            _lowbit_state.check_state_dict(self, sd, source)
            return updates
        return _optim_state.check(self, sd, source)

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _as_groups(params):
        params = list(params)
        if params and all(isinstance(p, dict) for p in params):
            for i, g in enumerate(params):
                if "params" not in g:
                    raise ValueError(f"params[{i}] is a group dict without a 'params' key")
            return params
        if any(isinstance(p, dict) for p in params):
            raise TypeError("params must be all arrays/parameter objects or all group dicts")
        return [{"params": params}]

    def _group_scalars(self, gi, step):
        try:
            return self._scalars(self.param_groups[gi], step)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"param_groups[{gi}]: {exc}") from None

    def _current_plan(self, params, grads):
        """The launches of a step. Validating arrays, finding spans and checking overlaps cost
        more than a small model's step, so the plan is rebuilt only when an array object or a
        hyperparameter changed (the arrays are kept referenced, so their ids stay theirs). The
        last PLAN_CACHE plans are kept: a loop that alternates between a few settings (the
        per-batch weight decay of nn.fit's l2_per_batch, whose last batch is shorter) reuses
        them instead of re-validating at every switch (~1 ms each)."""
        hyper = tuple(tuple((k, v) for k, v in g.items() if k != "params") for g in self.param_groups)
        key = (tuple(map(id, params)), tuple(map(id, grads)), hyper)
        if key != self._plan_key:
            if key not in self._plans:
                if self._lowbit is not None:
                    plan = _lowbit_state.plan(self, params, grads)
                else:
                    plan = self._build_plan(params, grads)  # raises before anything changes
                if len(self._plans) >= PLAN_CACHE:
                    del self._plans[next(iter(self._plans))]  # the oldest
                self._plans[key] = (plan, (params, grads))
            self._plan_key, (self._plan, self._plan_refs) = key, self._plans[key]
        return self._plan

    def _build_plan(self, params, grads):
        """[(group, param indices, kernel arrays, scalars at step 1)], all checked."""
        scalars = [self._group_scalars(gi, 1) for gi in range(len(self._groups))]
        k = 0
        for grp in self._groups:
            for j in range(len(grp.sizes)):
                p, g = params[k + j], grads[k + j]
                # same dtype and shape as when the state was built (.data may be rebound)
                check_array(f"params[{k + j}]", p, dtype=grp.dtypes[j], shape=grp.shapes[j],
                            writable=True)
                if g is not None:
                    check_like(f"grads[{k + j}]", g, f"params[{k + j}]", p)
            k += len(grp.sizes)
        plan, k = [], 0
        for gi, grp in enumerate(self._groups):
            n = len(grp.sizes)
            active = self._active(self.param_groups[gi])
            for name in active:
                grp.allocate(name, self._fill_value(name))
            for idx, arrays in self._group_calls(grp, params[k:k + n], grads[k:k + n], active, k):
                plan.append((grp, idx, arrays, scalars[gi]))
            k += n
        return plan

    def _group_calls(self, grp, ps, gs, active, k0):
        """One call over the group's spans when params, grads and state are each one buffer
        and all steps agree; else one call per array (zero-size ones skipped)."""
        live = [j for j, g in enumerate(gs) if g is not None]
        steps = {int(grp.steps[j]) for j in live}
        flats = [grp.buffers[n][0] if n in active else None for n in self._slots]
        pspan = span([p for p, n in zip(ps, grp.sizes) if n])
        gspan = span([gs[j] for j in live if grp.sizes[j]]) if len(live) == len(gs) else None
        if (pspan is not None and gspan is not None and len(steps) == 1
                and all(f is not None for f, n in zip(flats, self._slots) if n in active)):
            check_no_overlap({"params": pspan, **dict(zip(self._slots, flats))}, {"grads": gspan})
            return [(np.arange(len(gs)), (pspan, *flats, gspan))]
        calls = []
        for j in live:
            state = [grp.buffers[n][1][j] if n in active else None for n in self._slots]
            check_no_overlap({f"params[{k0 + j}]": ps[j], **dict(zip(self._slots, state))},
                             {f"grads[{k0 + j}]": gs[j]})
            if grp.sizes[j]:
                calls.append((np.array([j]), (ps[j], *state, gs[j])))
        return calls

    def _nonfinite(self, plan) -> bool:
        """Any NaN/Inf in the plan's gradients: one counting pass, one read-back."""
        grads = [arrays[-1] for _, _, arrays, _ in plan]
        device = self._backend == "cuda" and any(is_device_array(g) for g in grads)
        count = full(1, np.int64, device, 0)
        _ops.count_nonfinite(self._backend, grads, count)
        return int(host_copy(count)[0]) > 0


class SGD(_Optimizer):
    """SGD with optional (Nesterov) momentum, L2 (`weight_decay`) and L1 (`l1`) terms."""

    _slots, _kernel = ("momentum_buffer",), _ops.SGD_UPDATE
    _lowbit_kernel = _lowbit_ops.SGD_LOWBIT
    _lowbit_kernel_slots = (("momentum_buffer", True),)

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0, l1=0.0, *,
                 backend=None, state_dtype="float32", master_weights=False,
                 stochastic_rounding=False, seed=0, min_8bit_size=4096):
        lowbit = _lowbit_state.config(state_dtype, master_weights, stochastic_rounding, seed,
                                      min_8bit_size)
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov,
                                      weight_decay=weight_decay, l1=l1), backend, lowbit)

    def _active(self, group):
        return self._slots if group["momentum"] > 0 else ()

    def _scalars(self, group, step):
        return _ops.sgd_scalars(group["lr"], group["momentum"], group["nesterov"],
                                 group["weight_decay"], group["l1"])

    def _lowbit_slots(self, group):
        return (("momentum_buffer", True),) if group["momentum"] > 0 else ()

    def _lowbit_scalars(self, group, step):
        return _lowbit_ops.sgd_scalars(group["lr"], group["momentum"], group["nesterov"],
                                       group["weight_decay"], group["l1"])


class Adagrad(_Optimizer):
    """AdaGrad (Duchi et al. 2011) as torch.optim.Adagrad without lr decay."""

    _slots, _kernel = ("sum",), _ops.ADAGRAD_UPDATE

    def __init__(self, params, lr, eps=1e-10, weight_decay=0.0, l1=0.0, eps_inside_sqrt=False,
                 initial_accumulator_value=0.0, *, backend=None, state_dtype="float32"):
        if state_dtype != "float32":
            raise ValueError(
                f"Adagrad has no low-bit state (state_dtype={state_dtype!r}): its accumulator only "
                "grows by g^2, and after a few hundred steps each g^2 is below half a step of an "
                "8-bit or bfloat16 code relative to the sum, so the sum would stop growing and the "
                "step size stop shrinking. Use state_dtype='float32', or Adam / RMSprop.")
        check_real("initial_accumulator_value", initial_accumulator_value, lo=0.0)
        self._initial = float(initial_accumulator_value)
        super().__init__(params, dict(lr=lr, eps=eps, weight_decay=weight_decay, l1=l1,
                                      eps_inside_sqrt=eps_inside_sqrt), backend)

    def _fill_value(self, name):
        return self._initial

    def _lowbit_slots(self, group):
        raise ValueError("Adagrad takes float32 / float64 params only (no bfloat16 / float16 "
                         "params: see state_dtype above for why it has no low-bit path)")

    def _scalars(self, group, step):
        return _ops.adagrad_scalars(group["lr"], group["eps"], group["eps_inside_sqrt"],
                                     group["weight_decay"], group["l1"])


class RMSprop(_Optimizer):
    """RMSprop as torch.optim.RMSprop: optional momentum and centered variants."""

    _slots, _kernel = ("square_avg", "momentum_buffer", "grad_avg"), _ops.RMSPROP_UPDATE
    _lowbit_kernel = _lowbit_ops.RMSPROP_LOWBIT
    _lowbit_kernel_slots = (("square_avg", False), ("momentum_buffer", True), ("grad_avg", True))

    def __init__(self, params, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, l1=0.0, eps_inside_sqrt=False, *, backend=None,
                 state_dtype="float32", master_weights=False, stochastic_rounding=False, seed=0,
                 min_8bit_size=4096):
        lowbit = _lowbit_state.config(state_dtype, master_weights, stochastic_rounding, seed,
                                      min_8bit_size)
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, l1=l1,
                                      eps_inside_sqrt=eps_inside_sqrt), backend, lowbit)

    def _active(self, group):
        return tuple(n for n, on in zip(self._slots, (True, group["momentum"] > 0,
                                                       bool(group["centered"]))) if on)

    def _scalars(self, group, step):
        return _ops.rmsprop_scalars(group["lr"], group["alpha"], group["eps"],
                                     group["eps_inside_sqrt"], group["momentum"], group["centered"],
                                     group["weight_decay"], group["l1"])

    def _lowbit_slots(self, group):
        if group["centered"] and self._lowbit.cfg.state_dtype == "int8":
            raise ValueError("centered=True is not supported with state_dtype='int8': s - ga^2 of "
                             "two 8-bit estimates (a few % error each) goes negative where the "
                             "variance is small, and the step is NaN; use 'bfloat16' state")
        return tuple((n, n != "square_avg") for n, on in zip(
            self._slots, (True, group["momentum"] > 0, bool(group["centered"]))) if on)

    def _lowbit_scalars(self, group, step):
        return _lowbit_ops.rmsprop_scalars(group["lr"], group["alpha"], group["eps"],
                                           group["eps_inside_sqrt"], group["momentum"],
                                           group["centered"], group["weight_decay"], group["l1"])


class Adam(_Optimizer):
    """Adam (Kingma & Ba 2015) with coupled L2 `weight_decay`, `l1`, AMSGrad and the
    lecture-notes eps placement as options."""

    _slots, _kernel = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"), _ops.ADAM_UPDATE
    _lowbit_kernel = _lowbit_ops.ADAM_LOWBIT
    _lowbit_kernel_slots = (("exp_avg", True), ("exp_avg_sq", False))
    _decoupled = False

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, l1=0.0,
                 amsgrad=False, eps_inside_sqrt=False, *, backend=None, state_dtype="float32",
                 master_weights=False, stochastic_rounding=False, seed=0, min_8bit_size=4096):
        betas = tuple(betas) if isinstance(betas, (list, tuple)) else betas  # checked in _scalars
        lowbit = _lowbit_state.config(state_dtype, master_weights, stochastic_rounding, seed,
                                      min_8bit_size)
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      l1=l1, amsgrad=amsgrad, eps_inside_sqrt=eps_inside_sqrt),
                         backend, lowbit)

    def _active(self, group):
        return self._slots if group["amsgrad"] else self._slots[:2]

    def _with_step(self, scalars, step):
        beta1, beta2 = scalars[1], scalars[2]  # bias corrections 1 - beta^step, in float64
        return (*scalars[:8], 1.0 - beta1**step, 1.0 - beta2**step)

    def _scalars(self, group, step):
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2); got {betas!r}")
        return _ops.adam_scalars(step, group["lr"], betas[0], betas[1], group["eps"],
                                  group["eps_inside_sqrt"], group["weight_decay"], group["l1"],
                                  self._decoupled, group["amsgrad"])

    def _lowbit_slots(self, group):
        if group["amsgrad"]:
            raise ValueError("amsgrad=True is not supported with low-bit state or bfloat16 / "
                             "float16 params (its running max would be re-rounded every step)")
        return (("exp_avg", True), ("exp_avg_sq", False))

    def _lowbit_scalars(self, group, step):
        b1, b2 = group["betas"]
        return _lowbit_ops.adam_scalars(step, group["lr"], b1, b2, group["eps"],
                                        group["eps_inside_sqrt"], group["weight_decay"],
                                        group["l1"], self._decoupled)


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter 2019): weight decay decoupled from the gradient,
    w *= 1 - lr*weight_decay before the Adam step (default 1e-2 as in torch)."""

    _decoupled = True

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, l1=0.0,
                 amsgrad=False, eps_inside_sqrt=False, *, backend=None, state_dtype="float32",
                 master_weights=False, stochastic_rounding=False, seed=0, min_8bit_size=4096):
        super().__init__(params, lr, betas, eps, weight_decay, l1, amsgrad, eps_inside_sqrt,
                         backend=backend, state_dtype=state_dtype, master_weights=master_weights,
                         stochastic_rounding=stochastic_rounding, seed=seed,
                         min_8bit_size=min_8bit_size)
