"""The low-bit path of fusedops.optim: 8-bit / bfloat16 state, bfloat16 / float16 parameters,
float32 master weights and stochastic rounding (kernels: fusedops.ops.lowbit).

Each parameter k gets its own state (8-bit state blocks must not straddle two parameters) and
its own kernel call, whose stochastic-rounding stream is k. An optimizer takes this path when
state_dtype is not "float32", master_weights or stochastic_rounding is set, or a parameter is
bfloat16 / float16; otherwise fusedops.optim runs its float32 / float64 kernels unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._arrays import array_info, copy_into, full, host_copy
from ._optim_state import _fail, _scalar
from .checks import check_bool, check_int
from .ops import lowbit as L

STATE_DTYPES = ("float32", "bfloat16", "int8")
MIN_8BIT_SIZE = 4096  # smaller tensors keep float32 state (as bitsandbytes' min_8bit_size)


@dataclass(frozen=True)
class Config:
    state_dtype: str = "float32"
    master_weights: bool = False
    stochastic_rounding: bool = False
    seed: int = 0
    min_8bit_size: int = MIN_8BIT_SIZE

    def as_dict(self) -> dict:
        return dict(state_dtype=self.state_dtype, master_weights=self.master_weights,
                    stochastic_rounding=self.stochastic_rounding, seed=self.seed,
                    min_8bit_size=self.min_8bit_size)


def config(state_dtype="float32", master_weights=False, stochastic_rounding=False, seed=0,
           min_8bit_size=MIN_8BIT_SIZE) -> Config:
    """Validated low-bit options."""
    if not isinstance(state_dtype, str) or state_dtype not in STATE_DTYPES:
        raise ValueError(f"state_dtype must be one of {STATE_DTYPES}; got {state_dtype!r}")
    return Config(state_dtype, check_bool("master_weights", master_weights),
                  check_bool("stochastic_rounding", stochastic_rounding),
                  check_int("seed", seed, lo=0, hi=2**64 - 1),
                  check_int("min_8bit_size", min_8bit_size, lo=0))


def wanted(cfg: Config, arrays) -> bool:
    """Whether `arrays` (the params) with options `cfg` need the low-bit path."""
    if cfg.state_dtype != "float32" or cfg.master_weights or cfg.stochastic_rounding:
        return True
    return any(array_info(f"params[{k}]", a).dtype.name not in ("float32", "float64")
               for k, a in enumerate(arrays))


class Params:
    """Per parameter: its format, its state (name -> array or BlockQuantized), its master copy
    and its step count. State is created at the first step (see `allocate`)."""

    def __init__(self, cfg: Config, arrays):
        self.cfg = cfg
        self.pfmt, self.shapes, self.device = [], [], []
        for k, a in enumerate(arrays):
            pf = L.param_format(f"params[{k}]", a)
            info = array_info(f"params[{k}]", a)
            if not info.c_contiguous or not info.writable:
                raise ValueError(f"params[{k}] must be C-contiguous and writable")
            if cfg.master_weights and pf == 0:
                raise ValueError(f"master_weights=True keeps float32 copies of bfloat16 / float16 "
                                 f"params; params[{k}] is already float32")
            if cfg.stochastic_rounding and pf == 0:
                raise ValueError(f"stochastic_rounding=True rounds bfloat16 / float16 params; "
                                 f"params[{k}] is float32")
            self.pfmt.append(pf)
            self.shapes.append(tuple(info.shape))
            self.device.append(info.device)
        n = len(arrays)
        self.steps = np.zeros(n, np.int64)
        self.state = [dict() for _ in range(n)]
        self.master = [None] * n

    def allowed_keys(self, slots) -> set:
        """The option entries and per-parameter entries (besides state.k.step) a state_dict of
        this state may hold, for state slots named `slots`."""
        return {f"lowbit.{key}" for key in self.cfg.as_dict()} | {
            f"state.{k}.{e}" for k in range(len(self.shapes)) for e in
            ["master", *(n + x for n in slots for x in ("", ".bfloat16", ".codes", ".scales"))]}

    def size(self, k) -> int:
        return int(np.prod(self.shapes[k], dtype=np.int64))

    def nbytes(self) -> int:
        """Bytes of the state held (8-bit codes and scales, bfloat16 bits, float32) and of the
        float32 master copies."""
        total = sum(4 * self.size(k) for k, m in enumerate(self.master) if m is not None)
        for k, slots in enumerate(self.state):
            for st in slots.values():
                total += st.nbytes if isinstance(st, L.BlockQuantized) else (
                    self.size(k) * array_info("state", st).dtype.itemsize)
        return total

    def format(self, k) -> str:
        """The state format of parameter k: int8 only from min_8bit_size elements on."""
        sd = self.cfg.state_dtype
        return "float32" if sd == "int8" and self.size(k) < self.cfg.min_8bit_size else sd

    def allocate(self, k, slots, param) -> None:
        """Create parameter k's missing state slots [(name, signed)] and, with master_weights,
        its master copy (from the param's current values)."""
        self.allocate_state(k, slots)
        if self.cfg.master_weights and self.master[k] is None:
            self.master[k] = full(self.size(k), np.float32, self.device[k], 0.0).reshape(
                self.shapes[k])
            copy_into(self.master[k], _values(param, self.pfmt[k]))

    def allocate_state(self, k, slots) -> None:
        n, shape, dev = self.size(k), self.shapes[k], self.device[k]
        for name, signed in slots:
            if name in self.state[k]:
                continue
            fmt = self.format(k)
            if fmt == "int8":
                self.state[k][name] = L.BlockQuantized.zeros(shape, signed=signed, device=dev)
            elif fmt == "bfloat16":  # held as uint16 bit patterns (no ml_dtypes needed)
                self.state[k][name] = full(n, np.uint16, dev, 0).reshape(shape)
            else:
                self.state[k][name] = full(n, np.float32, dev, 0.0).reshape(shape)


def _values(param, pfmt) -> np.ndarray:
    """float32 host copy of a param's values (exact: every bf16 / f16 value is a float32)."""
    h = host_copy(param)
    if pfmt == 0:
        return h.astype(np.float32)
    from .reference import lowbit as R

    bits = h.view(np.uint16)
    return (R.bf16_to_f32(bits) if pfmt == 1 else R.f16_to_f32(bits)).reshape(h.shape)


# --------------------------------------------------------------------------- steps

def plan(opt, params, grads):
    """[(param index, kernel arrays)] of a step, validated (ops.lowbit.prepare); state and
    master copies are created here for the parameters that have a gradient."""
    lp, calls, k = opt._lowbit, [], 0
    for gi, group in enumerate(opt.param_groups):
        slots = opt._lowbit_slots(group)
        for _ in group["params"]:
            p, g = params[k], grads[k]
            if g is not None and lp.size(k):
                lp.allocate(k, slots, p)
                on = dict(slots)  # the kernel takes every slot; the unused ones as None
                named = {f"state.{k}.{n}": (lp.state[k][n] if n in on else None, sg)
                         for n, sg in opt._lowbit_kernel_slots}
                be, pf, sf, arrays = L.prepare(p, g, lp.master[k], named,
                                               lp.cfg.stochastic_rounding, opt._backend)
                if pf != lp.pfmt[k] or tuple(array_info("p", p).shape) != lp.shapes[k]:
                    raise ValueError(f"params[{k}] changed dtype or shape since the optimizer "
                                     "was created")
                calls.append((gi, k, arrays, pf, sf))
            k += 1
    return calls


def step(opt, calls) -> None:
    """Run the planned calls, each at its parameter's next step."""
    lp, cfg = opt._lowbit, opt._lowbit.cfg
    scalars = {}
    for gi, k, arrays, pf, sf in calls:
        t = int(lp.steps[k]) + 1
        key = (gi, t)
        if key not in scalars:
            scalars[key] = opt._lowbit_scalars(opt.param_groups[gi], t)
        L.launch_step(opt._backend, opt._lowbit_kernel, arrays,
                      (*scalars[key], pf, sf, cfg.seed, t, k, cfg.stochastic_rounding))
        lp.steps[k] = t


def nonfinite(calls) -> bool:
    """Any NaN/Inf in the planned gradients (one read of each; host copies of GPU arrays)."""
    for _, _, arrays, pf, _ in calls:
        g = host_copy(arrays[-1]).reshape(-1)
        if pf == 0:
            bad = ~np.isfinite(g)
        else:  # bit patterns: an all-ones exponent is Inf or NaN
            e = 0x7F80 if pf == 1 else 0x7C00
            bad = (g & e) == e
        if bad.any():
            return True
    return False


# --------------------------------------------------------------------------- state_dict

def state_dict(opt, groups_part: dict) -> dict:
    """groups_part (format, optimizer, group hyperparameters) plus the low-bit options and, per
    parameter k: step, master copy, and each slot as float32 ("state.k.<name>"), bfloat16 bits
    ("state.k.<name>.bfloat16", uint16) or 8-bit ("state.k.<name>.codes" uint8, ".scales")."""
    lp = opt._lowbit
    sd = dict(groups_part)
    sd.update({f"lowbit.{key}": value for key, value in lp.cfg.as_dict().items()})
    for k in range(len(lp.shapes)):
        sd[f"state.{k}.step"] = int(lp.steps[k])
        if lp.master[k] is not None:
            sd[f"state.{k}.master"] = host_copy(lp.master[k])
        for name, st in lp.state[k].items():
            if isinstance(st, L.BlockQuantized):
                sd[f"state.{k}.{name}.codes"] = host_copy(st.codes)
                sd[f"state.{k}.{name}.scales"] = host_copy(st.scales)
            elif array_info(name, st).dtype == np.uint16:
                sd[f"state.{k}.{name}.bfloat16"] = host_copy(st)
            else:
                sd[f"state.{k}.{name}"] = host_copy(st)
    return sd


_OPTION_KINDS = {"state_dtype": ("str",), "master_weights": ("bool",),
                 "stochastic_rounding": ("bool",), "seed": ("int",), "min_8bit_size": ("int",)}


def options(sd, source="state_dict") -> dict:
    """The low-bit constructor options recorded in a state_dict ({} for a float32 one); a
    ValueError naming the entry for one of the wrong kind."""
    return {key: _scalar(source, sd, f"lowbit.{key}", kinds)
            for key, kinds in _OPTION_KINDS.items() if f"lowbit.{key}" in sd}


def _array(source, sd, key, dtype, shape):
    a = sd[key]
    if not isinstance(a, np.ndarray) or a.dtype != dtype or a.shape != shape:
        got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise _fail(source, key, f"must be a {np.dtype(dtype)} array shaped {shape}; got {got}")
    return a


def _slot_arrays(source, sd, k, name, shape):
    """(kind, arrays) of slot `name` of parameter k in sd, or None; checked against shape."""
    pre = f"state.{k}.{name}"
    found = [x for x in (".codes", ".scales", ".bfloat16", "") if pre + x in sd]
    for x, y in ((".codes", ".scales"), (".scales", ".codes")):
        if x in found and y not in found:
            raise _fail(source, pre + y, "missing (8-bit state has codes and scales)")
    if len(found) > 1 and found != [".codes", ".scales"]:
        raise _fail(source, pre + found[-1], f"a second format of {pre}")
    if found[:1] == [".codes"]:
        n = int(np.prod(shape, dtype=np.int64))
        codes = _array(source, sd, pre + ".codes", np.uint8, shape)
        scales = _array(source, sd, pre + ".scales", np.float32, (-(-n // L.BLOCK),))
        if not (np.isfinite(scales).all() and (scales >= 0).all()):  # largest finite |x|
            raise _fail(source, pre + ".scales", "must be finite and >= 0 (block absmax)")
        return "int8", (codes, scales)
    for suffix, dt, kind in ((".bfloat16", np.uint16, "bfloat16"), ("", np.float32, "float32")):
        if found == [suffix]:
            return kind, (_array(source, sd, pre + suffix, dt, shape),)
    return None


def check_state_dict(opt, sd, source="state_dict") -> list:
    """Check sd's low-bit options, state and master copies against opt, changing nothing (the
    keys, groups and steps: _optim_state.check_groups); returns per parameter (step, slots,
    master) for load_state_dict."""
    lp = opt._lowbit
    got = options(sd, source)
    if got != lp.cfg.as_dict():
        raise _fail(source, "lowbit", f"saved with low-bit options {got or 'none (float32)'}; "
                                      f"this optimizer has {lp.cfg.as_dict()}")
    new, k = [], 0
    for group in opt.param_groups:
        names = [n for n, _ in opt._lowbit_slots(group)]
        for _ in group["params"]:
            shape = lp.shapes[k]
            every = {n: _slot_arrays(source, sd, k, n, shape) for n in opt._slots}  # all checked
            slots = {n: every[n] for n in names if every[n] is not None}  # those the group uses
            for n, (kind, _) in slots.items():
                if kind != lp.format(k):
                    raise _fail(source, f"state.{k}.{n}", f"is {kind} state; this optimizer "
                                f"keeps {lp.format(k)} state for parameter {k}")
            master = sd.get(f"state.{k}.master")
            if master is not None:
                _array(source, sd, f"state.{k}.master", np.float32, shape)
            new.append((int(_scalar(source, sd, f"state.{k}.step", ("int",))), slots, master))
            k += 1
    return new


def load_state_dict(opt, sd, source="state_dict") -> None:
    """Restore steps, state and master copies from sd (checked first, then written)."""
    lp, new = opt._lowbit, check_state_dict(opt, sd, source)
    signs = [dict(opt._lowbit_slots(g)) for g in opt.param_groups for _ in g["params"]]
    for k, (t, slots, master) in enumerate(new):
        lp.steps[k], lp.state[k], lp.master[k] = t, {}, None
        lp.allocate_state(k, [(n, signs[k][n]) for n in slots])  # the format was checked above
        for n, (kind, arrays) in slots.items():
            st = lp.state[k][n]
            for dst, src in zip((st.codes, st.scales) if kind == "int8" else (st,), arrays):
                copy_into(dst, src)
        if master is not None:
            lp.master[k] = full(lp.size(k), np.float32, lp.device[k], 0.0).reshape(lp.shapes[k])
            copy_into(lp.master[k], np.asarray(master, np.float32))
