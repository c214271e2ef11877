"""Bookkeeping behind fusedops.optim: each group's state buffers and step counts (`Group`), and
the flat state_dict format (`state_dict`, `load_state_dict`; described in fusedops.optim)."""
from __future__ import annotations

from collections.abc import Mapping

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


MAX_STEP = 1 << 62  # a step count the int64 counters can go on from


def _fail(source, key, message) -> ValueError:
    return ValueError(f"{source}: {key}: {message}")


def _entries(state_dict):
    """(source name, {key: value}) of a dict or of an NpzFile from np.load (its members' headers
    checked before any data is read: see fusedops._npz)."""
    if isinstance(state_dict, np.lib.npyio.NpzFile):
        from ._npz import Archive

        archive = Archive.of(state_dict)
        return archive.path, {name: archive.read(name) for name in archive.members}
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a dict or an np.load result; got "
                        f"{type(state_dict).__name__}")
    return "state_dict", dict(state_dict)


def _scalar(source, sd, key, kinds):
    """sd[key] as a Python scalar: a number, bool or string (also as a 0-d array) of one of
    `kinds` ("int", "float", "bool", "str")."""
    if key not in sd:
        raise _fail(source, key, "missing")
    v = sd[key]
    if isinstance(v, np.ndarray):
        if v.ndim != 0:
            raise _fail(source, key, f"must be a scalar; got an array of shape {v.shape}")
        v = v.item()
    elif isinstance(v, np.generic):
        v = v.item()
    kind = ("bool" if isinstance(v, bool) else "int" if isinstance(v, int) else
            "float" if isinstance(v, float) else "str" if isinstance(v, str) else None)
    if kind not in kinds:
        raise _fail(source, key, f"must be {' or '.join(kinds)}; got {type(v).__name__}")
    return v


def _allowed_keys(opt) -> set:
    keys = {"format", "optimizer", "n_groups"}
    if opt._lowbit is not None:  # the low-bit options and each parameter's low-bit entries
        keys.update(opt._lowbit.allowed_keys(opt._slots))
    k = 0
    for gi, group in enumerate(opt.param_groups):
        keys.add(f"group.{gi}.n_params")
        keys.update(f"group.{gi}.{key}" for key, v in group.items()
                    if isinstance(v, (bool, int, float, tuple)))
        for j in range(k, k + len(group["params"])):
            keys.add(f"state.{j}.step")
            if opt._lowbit is None:
                keys.update(f"state.{j}.{slot}" for slot in opt._slots)
        k += len(group["params"])
    return keys


def _hyper(source, sd, key, current):
    """The new value of hyperparameter `key` (same kind as its current value)."""
    if isinstance(current, tuple):
        raw = sd[key]
        a = np.asarray(raw)
        if a.dtype.kind not in "fiu" or a.shape != (len(current),):
            raise _fail(source, key, f"must be {len(current)} numbers; got {a.dtype} {a.shape}")
        return tuple(float(x) for x in a)
    if isinstance(current, bool):
        return _scalar(source, sd, key, ("bool",))
    v = _scalar(source, sd, key, ("int", "float"))
    return type(current)(v) if isinstance(current, float) or float(v).is_integer() else v


def check_groups(opt, sd, source="state_dict") -> list:
    """Check sd's format, optimizer, keys (an allow-list), groups, hyperparameters (types; ranges
    through the optimizer's own checks) and step counts against opt; return the hyperparameter
    updates per group. Shared by the float and the low-bit paths."""
    name = type(opt).__name__
    if _scalar(source, sd, "format", ("str",)) != FORMAT:
        raise _fail(source, "format", f"must be {FORMAT!r}; got {str(sd['format'])[:100]!r}")
    if _scalar(source, sd, "optimizer", ("str",)) != name:
        raise _fail(source, "optimizer", f"a state of {str(sd['optimizer'])[:100]!r}, not of {name}")
    if opt._lowbit is None and any(str(key).startswith("lowbit.") for key in sd):
        raise _fail(source, "lowbit", "holds low-bit state (state_dtype / master weights); "
                                      "create the optimizer with the same options to load it")
    unknown = sorted(set(sd) - _allowed_keys(opt), key=str)
    if unknown:
        raise _fail(source, unknown[0], f"not an entry of a {name} state_dict")
    if _scalar(source, sd, "n_groups", ("int",)) != len(opt.param_groups):
        raise _fail(source, "n_groups", f"{sd['n_groups']} groups; this optimizer has "
                                        f"{len(opt.param_groups)}")
    updates, k = [], 0
    for gi, group in enumerate(opt.param_groups):
        n = len(group["params"])
        if _scalar(source, sd, f"group.{gi}.n_params", ("int",)) != n:
            raise _fail(source, f"group.{gi}.n_params", f"this group has {n}")
        upd = {key: _hyper(source, sd, f"group.{gi}.{key}", value) for key, value in group.items()
               if f"group.{gi}.{key}" in sd and isinstance(value, (bool, int, float, tuple))}
        try:
            opt._scalars({**group, **upd}, 1)  # the optimizer's own range checks
            if opt._lowbit is not None:
                opt._lowbit_slots({**group, **upd})  # and the options the low-bit path takes
        except (TypeError, ValueError) as exc:
            raise _fail(source, f"group.{gi}", str(exc)) from None
        updates.append(upd)
        for j in range(k, k + n):
            step = _scalar(source, sd, f"state.{j}.step", ("int",))
            if not 0 <= step <= MAX_STEP:
                raise _fail(source, f"state.{j}.step", f"must be in [0, {MAX_STEP}]; got {step}")
        k += n
    return updates


def check(opt, sd, source="state_dict") -> list:
    """Validate every entry of a float32 / float64 state_dict sd against opt; return the
    hyperparameter updates per group."""
    updates, k = check_groups(opt, sd, source), 0
    # A state without any buffer is a released one (fusedops.distributed's ZeRO keeps only the
    # steps in the wrapped optimizer): the moments restart from zero, as in a fresh optimizer.
    held = any(f"state.{j}.{s}" in sd for j in range(len(opt.param_arrays())) for s in opt._slots)
    for group, grp, upd in zip(opt.param_groups, opt._groups, updates):
        idx = range(k, k + len(grp.sizes))
        # a group's buffers exist for all its parameters or none; in a state that holds buffers,
        # those its options use must exist once it has stepped (else the moments would restart
        # from zero unnoticed: a file missing one entry)
        need = {s for s in opt._slots for j in idx if f"state.{j}.{s}" in sd}
        if held and any(sd[f"state.{j}.step"] for j in idx):
            need |= set(opt._active({**group, **upd}))
        for j, shape in zip(idx, grp.shapes):
            for slot in (s for s in opt._slots if s in need):
                if f"state.{j}.{slot}" not in sd:
                    raise _fail(source, f"state.{j}.{slot}", "missing")
                a = sd[f"state.{j}.{slot}"]
                if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
                    raise _fail(source, f"state.{j}.{slot}", "must be a float array")
                if a.shape != shape:
                    raise _fail(source, f"state.{j}.{slot}", f"has shape {a.shape}; parameter "
                                                             f"{j} has {shape}")
        k += len(grp.sizes)
    return updates


def load_state_dict(opt, state_dict) -> None:
    """Restore opt's hyperparameters, steps and state buffers; every entry is checked against
    an allow-list (ValueError naming the source and the entry) before anything changes."""
    source, sd = _entries(state_dict)
    updates = check(opt, sd, source)
    for group, upd in zip(opt.param_groups, updates):
        group.update(upd)
    k = 0
    for grp in opt._groups:
        grp.buffers = {}
        for j in range(len(grp.sizes)):
            grp.steps[j] = int(np.asarray(sd[f"state.{k + j}.step"]).item())
            for slot in opt._slots:
                if f"state.{k + j}.{slot}" in sd:
                    grp.allocate(slot)
                    copy_into(grp.buffers[slot][1][j], np.asarray(sd[f"state.{k + j}.{slot}"]))
        k += len(grp.sizes)
