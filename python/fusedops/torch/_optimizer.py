"""The machinery behind fusedops.torch's optimizers: a torch.optim.Optimizer whose step is one
fusedops kernel call per bucket of parameters, with state in PyTorch's own format.

Per parameter group, the parameters with a gradient are bucketed by (device, dtype). A bucket is
stepped by ONE kernel call when its parameters lie end to end in one buffer, their gradients
likewise and in the same order, and their step counts agree (what `flatten_parameters` sets up);
its state then lives in one buffer per state key and `self.state[p][key]` are views of it.
Otherwise each parameter is stepped by its own call on its own state tensors. Either way the
state is torch's: the same keys, tensors shaped like the parameter, `step` a host scalar tensor.
"""
import torch

from ..backends import BackendUnavailableError, backend_unavailable_reason, check_backend_name
from ._tensors import check_float, kernel_array, memory_view, on_stream, span

_disable_dynamo = getattr(torch, "_disable_dynamo", lambda fn: fn)  # lazy: no dynamo import


def _scalar_dtype():
    """torch.optim's dtype for `step` (float32 unless the default dtype is float64)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def as_number(name, value):
    """value as a Python float when it is a 1-element tensor (torch accepts those for lr,
    betas and SGD's weight_decay); other values are returned for the fusedops checks."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a number or a 1-element tensor; got shape "
                             f"{tuple(value.shape)}")
        return float(value)
    return value


def number(group, key):
    return as_number(key, group[key])


def reject(group, key, allowed, why):
    """Raise unless group[key] is `allowed` (a fusedops step cannot honour the option)."""
    if group.get(key, allowed) != allowed:
        raise ValueError(f"{key}={group[key]!r} is not supported by fusedops.torch: {why}")


class _Bucket:
    """Flat state of parameters that lie end to end: per state key one buffer, and per
    parameter the view of it that `self.state[p][key]` holds."""

    def __init__(self, params):
        self.params = tuple(params)
        self.total = sum(p.numel() for p in params)
        self.buffers, self.views = {}, {}

    def view(self, key, j, fill):
        if key not in self.buffers:
            p = self.params[0]
            buf = torch.full((self.total,), fill, dtype=p.dtype, device=p.device)
            views, off = [], 0
            for q in self.params:
                views.append(buf[off:off + q.numel()].view(q.shape))
                off += q.numel()
            self.buffers[key], self.views[key] = buf, views
        return self.views[key][j]


class FusedOptimizer(torch.optim.Optimizer):
    """Base class. Subclasses define `_hyper(group)` (validated keyword arguments of their
    fusedops.ops step, raising ValueError/TypeError naming the option), `_state_keys(group)`
    and `_launch(hyper, step, param, grad, state, backend)`."""

    _counts_steps = True  # state["step"] exists (all but SGD)
    _extra = ("l1", "eps_inside_sqrt")  # fusedops options a torch checkpoint does not carry

    def __init__(self, params, defaults, backend=None):
        if backend is not None:
            check_backend_name(backend)
            reason = backend_unavailable_reason(backend)
            if reason is not None:
                raise BackendUnavailableError(f"backend {backend!r} is not available: {reason}")
        self.backend = backend
        self._buckets = {}
        super().__init__(params, defaults)

    # ------------------------------------------------------------------ subclass hooks
    def _hyper(self, group) -> dict:
        raise NotImplementedError

    def _state_keys(self, group) -> tuple:
        raise NotImplementedError

    def _fill(self, group) -> float:
        """The initial value of new state buffers."""
        return 0.0

    def _launch(self, hyper, step, param, grad, state, backend):
        raise NotImplementedError

    # ------------------------------------------------------------------ torch.optim API
    def add_param_group(self, param_group) -> None:
        super().add_param_group(param_group)
        gi = len(self.param_groups) - 1
        try:
            for j, p in enumerate(self.param_groups[gi]["params"]):
                check_float(f"param_groups[{gi}]['params'][{j}]", p)
            self._checked_hyper(gi, self.param_groups[gi])
        except (TypeError, ValueError):
            self.param_groups.pop()
            raise

    def __getstate__(self):
        return {**super().__getstate__(), "backend": self.backend}

    def __setstate__(self, state) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("backend", None)
        self._buckets = {}  # the groups or the state tensors were replaced: rebuild on demand
        for group in self.param_groups:
            for key in self._extra:
                group.setdefault(key, self.defaults[key])

    @_disable_dynamo
    def load_state_dict(self, state_dict) -> None:
        """torch.optim's loader (torch checkpoints load as they are), then: hyperparameters
        checked first (nothing changes on a bad one); fusedops options a checkpoint lacks keep
        this optimizer's values; every state tensor is copied (the loader may share the
        caller's) and `step` kept on the host; `capturable` is reset to False."""
        saved = state_dict["param_groups"]
        for gi, (group, new) in enumerate(zip(self.param_groups, saved)):
            merged = {**group, **{k: v for k, v in new.items() if k != "params"}}
            merged["capturable"] = False
            self._checked_hyper(gi, merged, what="state_dict param_groups")
        old = [{k: g[k] for k in self._extra} for g in self.param_groups]
        super().load_state_dict(state_dict)
        for group, new, extras in zip(self.param_groups, saved, old):
            for key, value in extras.items():
                if key not in new:
                    group[key] = value
            if "capturable" in group:
                group["capturable"] = False
        for st in self.state.values():
            for key, value in list(st.items()):
                if value is None:  # old SGD checkpoints: no momentum buffer yet
                    del st[key]
                elif key == "step":
                    st[key] = torch.tensor(float(value), dtype=_scalar_dtype())
                elif isinstance(value, torch.Tensor):
                    st[key] = value.clone(memory_format=torch.preserve_format)

    @_disable_dynamo
    @torch.no_grad()
    def step(self, closure=None):
        """One step over every parameter with a gradient (closure: re-evaluates the model,
        run with grad enabled; its loss is returned). Everything is checked before any
        parameter or state changes."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        plans = [self._plan(gi, group) for gi, group in enumerate(self.param_groups)]
        for hyper, maximize, keys, calls in plans:
            for params, bucket in calls:
                self._run(hyper, maximize, keys, params, bucket)
        return loss

    # ------------------------------------------------------------------ internals
    def _checked_hyper(self, gi, group, what="param_groups"):
        reject(group, "differentiable", False, "the fused step is not differentiable")
        try:
            return self._hyper(group)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{what}[{gi}]: {exc}") from None

    def _plan(self, gi, group):
        """(kernel hyperparameters, maximize, state keys, [(params, flat bucket | None)]),
        all checked; state created where it is missing."""
        hyper = self._checked_hyper(gi, group)
        buckets = {}
        for j, p in enumerate(group["params"]):
            g = p.grad
            if g is None:
                continue
            name = f"param_groups[{gi}]['params'][{j}]"
            if g.is_sparse or g.layout != torch.strided:
                raise RuntimeError(f"{name}: sparse gradients are not supported by "
                                   f"fusedops.torch.{type(self).__name__}")
            check_float(name, p)
            if g.dtype != p.dtype or g.shape != p.shape or g.device != p.device:
                raise ValueError(f"{name}.grad must match the parameter's dtype, shape and "
                                 f"device ({p.dtype}, {tuple(p.shape)}, {p.device}); got "
                                 f"({g.dtype}, {tuple(g.shape)}, {g.device})")
            buckets.setdefault((p.device, p.dtype), []).append(p)
        keys = self._state_keys(group)
        calls = []
        for params in buckets.values():
            bucket = self._flat_bucket(group, params, keys)
            calls.extend([(bucket.params, bucket)] if bucket else [((p,), None) for p in params])
        for params, bucket in calls:
            self._init_state(group, params, keys, bucket)
        return hyper, bool(group.get("maximize", False)), keys, calls

    def _flat_bucket(self, group, params, keys):
        """The bucket stepping `params` with one call, or None when they do not lie end to
        end (with their gradients) or their step counts differ."""
        n_same = sum(1 for p in group["params"] if p.device == params[0].device
                     and p.dtype == params[0].dtype)
        if len(params) < 2 or len(params) != n_same:
            return None
        params = sorted(params, key=lambda p: p.data_ptr())
        if span(params) is None or span([p.grad for p in params]) is None:
            return None
        if self._counts_steps:
            steps = {float(self.state[p]["step"]) if "step" in self.state[p] else 0.0
                     for p in params}
            if len(steps) != 1:
                return None
        key = tuple(map(id, params))
        bucket = self._buckets.get(key)
        if bucket is None or bucket.total != sum(p.numel() for p in params):  # p.data resized
            bucket = self._buckets[key] = _Bucket(params)
        return bucket

    def _init_state(self, group, params, keys, bucket):
        """Lazy state, as torch.optim creates it; in a bucket, views of its buffers (existing
        state, e.g. just loaded or from before flatten_parameters, is copied into them)."""
        fill = self._fill(group)
        for j, p in enumerate(params):
            st = self.state[p]
            if self._counts_steps and "step" not in st:
                st["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
            for key in keys:
                old = st.get(key)
                if bucket is None:
                    if old is None:
                        st[key] = torch.full_like(p, fill, memory_format=torch.preserve_format)
                    continue
                view = bucket.view(key, j, fill)
                if old is view:
                    continue
                if old is None:
                    view.fill_(fill)  # the buffer may hold a forgotten parameter's state
                else:
                    view.copy_(old)
                st[key] = view

    def _run(self, hyper, maximize, keys, params, bucket):
        """Bump the step counts of `params`, then one kernel call over them."""
        st = [self.state[p] for p in params]
        step = None
        if self._counts_steps:
            steps = [s["step"] for s in st]
            torch._foreach_add_(steps, 1.0)
            step = int(steps[0])
        if bucket is not None:
            tensors = [span(params), span([p.grad for p in params])]
            tensors += [bucket.buffers[k] for k in keys]
        else:
            p = params[0]
            tensors = [p, p.grad] + [st[0][k] for k in keys]
        self._call(hyper, maximize, step, keys, tensors)

    def _call(self, hyper, maximize, step, keys, tensors):
        """Launch on 1-D memory-order views; layouts that differ are stepped on contiguous
        copies and copied back."""
        views = [memory_view(t) for t in tensors]
        same = all(v is not None and t.stride() == tensors[0].stride()
                   for t, v in zip(tensors, views))
        work = views if same else [t.contiguous().view(-1) for t in tensors]
        grad = torch.neg(work[1]) if maximize else work[1]  # torch's -grad, never in place
        arrays = [kernel_array(t) for t in work]
        with on_stream(work[0]):
            self._launch(hyper, step, arrays[0], kernel_array(grad),
                         dict(zip(keys, arrays[2:])), self.backend)
        if not same:
            for t, w in zip(tensors[:1] + tensors[2:], work[:1] + work[2:]):
                t.copy_(w.view(t.shape))
