"""fusedops.optim's methods for wrappers (what fusedops.distributed drives an optimizer with):
param_arrays, resolve_grads, check_step, clone, state_names, state_nbytes, check_state_dict."""
import numpy as np
import pytest

from fusedops import optim


class Param:
    def __init__(self, data, grad):
        self.data, self.grad = data, grad


def _arrays(dtype=np.float32):
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s).astype(dtype) for s in ((5, 3), (3,))]


def test_param_arrays_and_resolve_grads_read_parameter_objects():
    ws, gs = _arrays(), _arrays(np.float32)
    opt = optim.SGD([Param(w, g) for w, g in zip(ws, gs)], lr=0.1)
    assert all(a is w for a, w in zip(opt.param_arrays(), ws))
    assert all(a is g for a, g in zip(opt.resolve_grads(), gs))
    with pytest.raises(ValueError, match="one entry per parameter"):
        opt.resolve_grads(gs[:1])
    with pytest.raises(ValueError, match="grads is required"):
        optim.SGD(ws, lr=0.1).resolve_grads()


def test_check_step_raises_as_step_would_and_changes_nothing():
    ws = _arrays()
    opt = optim.Adam(ws, lr=0.1)
    before = [w.copy() for w in ws]
    bad = [np.zeros((5, 4), np.float32), np.zeros(3, np.float32)]
    with pytest.raises(ValueError, match=r"grads\[0\]"):
        opt.check_step(bad)
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        opt.check_step(_arrays())
    opt.param_groups[0]["lr"] = 0.1
    grads = _arrays()
    assert opt.check_step(grads) == grads
    for w, b in zip(ws, before):
        np.testing.assert_array_equal(w, b)
    assert all(int(v) == 0 for k, v in opt.state_dict().items() if k.endswith(".step"))


def test_clone_keeps_class_options_and_backend_with_fresh_state():
    ws = _arrays(np.float64)
    opt = optim.Adagrad(ws, lr=0.05, l1=1e-3, initial_accumulator_value=0.25, backend="numpy")
    opt.step(_arrays(np.float64))
    part = [np.ones(4)]
    twin = opt.clone([{"params": part, "lr": 0.5}])
    assert type(twin) is optim.Adagrad and twin is not opt
    assert twin.param_groups[0]["lr"] == 0.5 and twin.param_groups[0]["l1"] == 1e-3
    assert twin._backend == "numpy" and twin.state_nbytes() == 0
    # the same step as a fresh Adagrad with these options: the initial accumulator came along
    ref_w = np.ones(4)
    ref = optim.Adagrad([ref_w], lr=0.5, l1=1e-3, initial_accumulator_value=0.25, backend="numpy")
    g = np.full(4, 0.3)
    twin.step([g])
    ref.step([g])
    np.testing.assert_array_equal(part[0], ref_w)
    assert opt.param_groups[0]["lr"] == 0.05 and opt.param_arrays()[0] is ws[0]


def test_state_names_follow_the_options():
    ws = _arrays()
    assert optim.Adam(ws, lr=0.1).state_names() == ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    groups = [{"params": ws[:1], "amsgrad": True}, {"params": ws[1:]}]
    adam = optim.Adam(groups, lr=0.1)
    assert adam.state_names(0) == ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    assert adam.state_names(1) == ("exp_avg", "exp_avg_sq")
    assert optim.SGD(ws, lr=0.1).state_names(0) == ()
    assert optim.SGD(ws, lr=0.1, momentum=0.9).state_names(0) == ("momentum_buffer",)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_nbytes_counts_the_buffers_a_step_allocates(dtype):
    ws = _arrays(dtype)
    opt = optim.Adam([{"params": ws[:1], "amsgrad": True}, {"params": ws[1:]}], lr=0.1)
    assert opt.state_nbytes() == 0
    opt.step(_arrays(dtype))
    item = np.dtype(dtype).itemsize
    assert opt.state_nbytes() == (3 * ws[0].size + 2 * ws[1].size) * item
    assert opt.state_nbytes() == sum(v.nbytes for k, v in opt.state_dict().items()
                                     if k.startswith("state.") and not k.endswith(".step"))


def test_check_state_dict_validates_without_loading():
    ws = _arrays()
    opt = optim.Adam(ws, lr=0.1)
    opt.step(_arrays())
    sd = opt.state_dict()
    sd["group.0.lr"] = 0.25
    other = optim.Adam(_arrays(), lr=0.1)
    assert other.check_state_dict(sd) == [{**{k: v for k, v in other.param_groups[0].items()
                                              if k != "params"}, "lr": 0.25}]
    assert other.param_groups[0]["lr"] == 0.1 and other.state_nbytes() == 0
    sd["state.1.exp_avg"] = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"state_dict: state\.1\.exp_avg: has shape"):
        other.check_state_dict(sd)
    with pytest.raises(ValueError, match="optimizer: a state of .Adam., not of SGD"):
        optim.SGD(_arrays(), lr=0.1).check_state_dict(opt.state_dict())
