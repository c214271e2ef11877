"""Bookkeeping behind fusedops.optim: each group's state buffers and step counts (`Group`), and
the flat state_dict format (`state_dict`, `load_state_dict`; described in fusedops.optim)."""
from __future__ import annotations

import numpy as np

from ._arrays import array_info, copy_into, full, host_copy

FORMAT = "fusedops.optim/1"


class Group:
    """One parameter group's state: per kind one flat buffer with per-parameter views laid out
    like the parameters (so a flat parameter group has flat state), and per-parameter steps."""

    def __init__(self, arrays):
        infos = [array_info("param", a) for a in arrays]
        self.shapes = [tuple(i.shape) for i in infos]
        self.sizes = [int(np.prod(s, dtype=np.int64)) for s in self.shapes]
        self.dtypes = [i.dtype for i in infos]
        self.device = infos[0].device
        self.steps = np.zeros(len(arrays), np.int64)
        self.buffers = {}  # name -> (flat buffer or None, [per-parameter views])

    def allocate(self, name, value=0.0):
        """Create state buffer `name` (filled with value) unless it exists."""
        if name in self.buffers:
            return
        if len(set(self.dtypes)) == 1:
            flat = full(sum(self.sizes), self.dtypes[0], self.device, value)
            views, off = [], 0
            for n, shape in zip(self.sizes, self.shapes):
                views.append(flat[off:off + n].reshape(shape))
                off += n
        else:  # mixed dtypes cannot share a buffer
            flat = None
            views = [full(n, dt, self.device, value).reshape(s)
                     for n, s, dt in zip(self.sizes, self.shapes, self.dtypes)]
        self.buffers[name] = (flat, views)

    def nbytes(self) -> int:
        """Bytes of the state buffers allocated so far."""
        per_param = sum(n * np.dtype(dt).itemsize for n, dt in zip(self.sizes, self.dtypes))
        return per_param * len(self.buffers)


def groups_dict(opt) -> dict:
    """The format, optimizer and group entries of a state_dict (no per-parameter state)."""
    sd = {"format": FORMAT, "optimizer": type(opt).__name__, "n_groups": len(opt.param_groups)}
    for gi, group in enumerate(opt.param_groups):
        sd[f"group.{gi}.n_params"] = len(group["params"])
        for key, value in group.items():
            if isinstance(value, (bool, int, float)):
                sd[f"group.{gi}.{key}"] = value
            elif isinstance(value, tuple):
                sd[f"group.{gi}.{key}"] = np.array(value, np.float64)
    return sd


def state_dict(opt) -> dict:
    """Flat dict of numbers, strings and host arrays (copies) for optimizer `opt`."""
    sd = groups_dict(opt)
    k = 0
    for grp in opt._groups:
        for j in range(len(grp.sizes)):
            sd[f"state.{k + j}.step"] = int(grp.steps[j])
            for name, (_, views) in grp.buffers.items():
                sd[f"state.{k + j}.{name}"] = host_copy(views[j])
        k += len(grp.sizes)
    return sd


def _scalar(sd, key):
    if key not in sd:
        raise KeyError(f"state_dict lacks {key!r}")
    return np.asarray(sd[key]).item()


def check_groups(opt, sd) -> list:
    """Check sd's format, optimizer and groups against opt; return the hyperparameter updates
    per group."""
    name = type(opt).__name__
    if _scalar(sd, "format") != FORMAT or _scalar(sd, "optimizer") != name:
        raise ValueError(f"state_dict is not a {FORMAT} state of {name}")
    if _scalar(sd, "n_groups") != len(opt.param_groups):
        raise ValueError(f"state_dict has {_scalar(sd, 'n_groups')} groups; this optimizer has "
                         f"{len(opt.param_groups)}")
    updates, k = [], 0
    for gi, group in enumerate(opt.param_groups):
        if _scalar(sd, f"group.{gi}.n_params") != len(group["params"]):
            raise ValueError(f"state_dict group {gi} has a different number of parameters")
        upd = {}
        for key, value in group.items():
            if f"group.{gi}.{key}" in sd and isinstance(value, (bool, int, float, tuple)):
                raw = np.asarray(sd[f"group.{gi}.{key}"])
                upd[key] = (tuple(float(x) for x in raw) if isinstance(value, tuple)
                            else type(value)(raw.item()))
        updates.append(upd)
        for j in range(len(group["params"])):
            _scalar(sd, f"state.{k + j}.step")
        k += len(group["params"])
    return updates


def check(opt, sd) -> list:
    """Validate sd against opt; return the hyperparameter updates per group."""
    if any(key.startswith("lowbit.") for key in sd):
        raise ValueError("state_dict holds low-bit state (state_dtype / master weights); create "
                         "the optimizer with the same options to load it")
    updates, k = check_groups(opt, sd), 0
    for grp in opt._groups:
        for j, shape in enumerate(grp.shapes):
            _scalar(sd, f"state.{k + j}.step")
            for slot in opt._slots:
                a = sd.get(f"state.{k + j}.{slot}")
                if a is not None and tuple(np.shape(a)) != shape:
                    raise ValueError(f"state.{k + j}.{slot} has shape {np.shape(a)}; "
                                     f"parameter {k + j} has {shape}")
        k += len(grp.sizes)
    return updates


def load_state_dict(opt, state_dict) -> None:
    """Restore opt's hyperparameters, steps and state buffers; checks everything first."""
    sd = {key: state_dict[key] for key in state_dict}  # also reads an NpzFile
    updates = check(opt, sd)
    for group, upd in zip(opt.param_groups, updates):
        group.update(upd)
    k = 0
    for grp in opt._groups:
        grp.buffers = {}
        for j in range(len(grp.sizes)):
            grp.steps[j] = int(_scalar(sd, f"state.{k + j}.step"))
            for slot in opt._slots:
                if f"state.{k + j}.{slot}" in sd:
                    grp.allocate(slot)
                    copy_into(grp.buffers[slot][1][j], np.asarray(sd[f"state.{k + j}.{slot}"]))
        k += len(grp.sizes)
