"""fusedops.optim: flat buffers and one kernel call per group, parameter groups, parameter
objects, learning-rate changes, state_dict round trips that resume bit for bit, the non-finite
guard, and device-resident state."""
import numpy as np
import pytest
from conftest import SIM

import fusedops.optim as optim_module
from fusedops import _arrays, backends, ops, optim

CLASSES = {
    "sgd": lambda p, be: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3, backend=be),
    "adagrad": lambda p, be: optim.Adagrad(p, lr=0.05, l1=1e-3, initial_accumulator_value=0.1, backend=be),
    "rmsprop": lambda p, be: optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True, backend=be),
    "adam": lambda p, be: optim.Adam(p, lr=0.01, amsgrad=True, weight_decay=1e-2, backend=be),
    "adamw": lambda p, be: optim.AdamW(p, lr=0.01, eps_inside_sqrt=True, backend=be),
}
SHAPES = [(13, 7), (7,), (5, 3), (3,)]


class Param:
    """A parameter object as the nn layers make them: .data and .grad."""

    def __init__(self, data, grad):
        self.data, self.grad = data, grad


def _model(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def _grads(step, dtype=np.float32):
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def _groups(views):
    return [{"params": views[:2]}, {"params": views[2:], "weight_decay": 0.0, "lr": 0.02}]


@pytest.fixture
def launches(monkeypatch):
    calls = []
    real = optim_module.launch

    def counting(backend, kernel, arrays, **kw):
        calls.append((kernel.name, arrays[0].size))
        return real(backend, kernel, arrays, **kw)

    monkeypatch.setattr(optim_module, "launch", counting)
    return calls


def test_flatten_copies_into_consecutive_views():
    arrays = _model()
    flat, views = optim.flatten(arrays)
    assert flat.shape == (sum(a.size for a in arrays),) and flat.dtype == np.float32
    np.testing.assert_array_equal(flat, np.concatenate([a.ravel() for a in arrays]))
    for a, v in zip(arrays, views):
        assert v.shape == a.shape and np.shares_memory(v, flat)
    views[1][0] = 123.0
    assert 123.0 in flat
    with pytest.raises(TypeError, match="different dtypes"):
        optim.flatten([np.zeros(2, np.float32), np.zeros(2)])
    assert optim.flatten([np.zeros(2, np.float32), np.zeros(2)], dtype=np.float64)[0].dtype == np.float64


@pytest.mark.parametrize("name", list(CLASSES))
def test_one_kernel_call_per_flat_group(name, launches):
    _, params = optim.flatten(_model())
    _, grads = optim.flatten(_grads(1))
    opt = CLASSES[name](_groups(params), "c")
    assert opt.step(grads)
    assert [size for _, size in launches] == [13 * 7 + 7, 5 * 3 + 3]
    launches.clear()
    opt.step([g.copy() for g in grads])  # grads no longer in one buffer: one call per array
    assert [size for _, size in launches] == [13 * 7, 7, 15, 3]


@pytest.mark.parametrize("name", list(CLASSES))
def test_flat_and_separate_arrays_agree(name, kernel_backend):
    """A flat group steps the same function as separate arrays with their own state."""
    _, flat_params = optim.flatten(_model())
    loose = _model()
    a, b = CLASSES[name](_groups(flat_params), kernel_backend), CLASSES[name](_groups(loose), kernel_backend)
    for t in range(1, 4):
        gs = _grads(t)
        _, flat_grads = optim.flatten(gs)
        a.step(flat_grads)
        b.step(gs)
    for x, y in zip(flat_params, loose):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_matches_the_functional_op_with_group_hyperparameters():
    params = _model(np.float64)
    opt = optim.Adam(_groups(params), lr=0.01, weight_decay=0.1, l1=1e-3, backend="numba")
    ref = _model(np.float64)
    state = [(np.zeros_like(w), np.zeros_like(w)) for w in ref]
    for t in range(1, 6):
        gs = _grads(t, np.float64)
        opt.step(gs)
        for k, (w, g, (m, v)) in enumerate(zip(ref, gs, state)):
            hyper = dict(lr=0.01, weight_decay=0.1) if k < 2 else dict(lr=0.02, weight_decay=0.0)
            ops.adam_step(w, g, m, v, step=t, l1=1e-3, backend="numpy", **hyper)
    for x, y in zip(params, ref):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)


def test_parameter_objects_step_and_zero_grad(launches):
    _, data = optim.flatten(_model())
    gflat, grads = optim.flatten(_grads(1))
    params = [Param(d, g) for d, g in zip(data, grads)]
    before = [d.copy() for d in data]
    opt = optim.SGD(params, lr=0.1, backend="numba")
    assert opt.step()
    assert len(launches) == 1
    for d, d0, g in zip(data, before, grads):
        np.testing.assert_allclose(d, d0 - np.float32(0.1) * g, rtol=1e-6)
    opt.zero_grad()
    assert not gflat.any() and all(p.grad is g for p, g in zip(params, grads))
    params[1].grad = None  # a parameter without a gradient is skipped, like torch
    snap = data[1].copy()
    opt.zero_grad()
    opt.step()
    np.testing.assert_array_equal(data[1], snap)
    opt.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in params)


def test_learning_rate_changes_take_effect():
    w = np.ones(4)
    opt = optim.SGD([{"params": [w]}], lr=0.1, backend="c")
    g = np.full(4, 2.0)
    opt.step([g])
    opt.lr = 0.01
    opt.step([g])
    opt.param_groups[0]["lr"] = 0.5
    opt.step([g])
    assert opt.lr == 0.5
    np.testing.assert_allclose(w, 1 - 2 * (0.1 + 0.01 + 0.5), atol=1e-15)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        opt.lr = -0.1


@pytest.mark.parametrize("name", list(CLASSES))
def test_state_dict_resumes_bit_for_bit(name, kernel_backend, tmp_path):
    steps = 6 if SIM else 10
    _, straight = optim.flatten(_model())
    opt = CLASSES[name](_groups(straight), kernel_backend)
    for t in range(1, steps + 1):
        opt.step(_grads(t))
    _, resumed = optim.flatten(_model())
    first = CLASSES[name](_groups(resumed), kernel_backend)
    for t in range(1, steps // 2 + 1):
        first.step(_grads(t))
    np.savez(tmp_path / "opt.npz", **first.state_dict())
    first.lr = 123.0  # the saved hyperparameters come back with the state
    second = CLASSES[name](_groups(resumed), kernel_backend)
    second.load_state_dict(np.load(tmp_path / "opt.npz"))
    for t in range(steps // 2 + 1, steps + 1):
        second.step(_grads(t))
    for x, y in zip(straight, resumed):
        np.testing.assert_array_equal(x, y)
    a, b = opt.state_dict(), second.state_dict()
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("name", list(CLASSES))
def test_state_dict_moves_between_cpu_backends(name, tmp_path):
    """A state saved by one CPU backend loads into another unchanged and training goes on from
    it: numpy -> numba -> c -> numpy, three steps each, a savez file between legs, ends where
    twelve steps on the reference end (float64: the backends differ by an ulp or so a step; a
    leg that dropped the state, its step counts or a hyperparameter would be off by orders
    of magnitude more)."""
    legs = ["numpy"] + [b for b in ("numba", "c") if backends.backend_unavailable_reason(b) is None]
    legs.append("numpy")
    _, straight = optim.flatten(_model(np.float64))
    ref = CLASSES[name](_groups(straight), "numpy")
    for t in range(1, 3 * len(legs) + 1):
        ref.step(_grads(t, np.float64))
    _, views = optim.flatten(_model(np.float64))
    saved, t = None, 0
    for be in legs:
        opt = CLASSES[name](_groups(views), be)
        if saved is not None:
            opt.load_state_dict(np.load(saved))
            loaded = opt.state_dict()
            for key, value in np.load(saved).items():  # exactly what was saved, on any backend
                np.testing.assert_array_equal(loaded[key], value, err_msg=f"{be} {key}")
        for _ in range(3):
            t += 1
            opt.step(_grads(t, np.float64))
        saved = tmp_path / f"after_{t}.npz"
        np.savez(saved, **opt.state_dict())
    for x, y in zip(straight, views):
        np.testing.assert_allclose(y, x, rtol=1e-12, atol=1e-14)
    final, want = opt.state_dict(), ref.state_dict()
    assert sorted(final) == sorted(want)
    for key in want:
        if np.asarray(want[key]).dtype.kind == "f":
            np.testing.assert_allclose(final[key], want[key], rtol=1e-12, atol=1e-14, err_msg=key)
        else:  # format, class, counts, step numbers
            np.testing.assert_array_equal(final[key], want[key], err_msg=key)


def test_load_state_dict_checks_before_changing_anything():
    w = np.ones(5, np.float32)
    opt = optim.Adam([w], lr=0.1)
    opt.step([np.ones(5, np.float32)])
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="optimizer: a state of 'Adam', not of SGD"):
        optim.SGD([w], lr=0.1).load_state_dict(sd)
    other = optim.Adam([np.ones(6, np.float32)], lr=0.2)
    with pytest.raises(ValueError, match=r"state.0.exp_avg: has shape \(5,\); parameter 0 has \(6,\)"):
        other.load_state_dict(sd)
    assert other.lr == 0.2 and other.state_dict()["state.0.step"] == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_skip_if_nonfinite_leaves_everything_untouched(bad, kernel_backend):
    _, params = optim.flatten(_model())
    opt = CLASSES["adam"](_groups(params), kernel_backend)
    assert opt.step(_grads(1), skip_if_nonfinite=True)
    before, state = [p.copy() for p in params], opt.state_dict()
    grads = _grads(2)
    grads[3][1] = bad
    assert opt.step(grads, skip_if_nonfinite=True) is False
    for p, p0 in zip(params, before):
        np.testing.assert_array_equal(p, p0)
    after = opt.state_dict()
    for key in state:
        np.testing.assert_array_equal(after[key], state[key])
    assert opt.step(_grads(2), skip_if_nonfinite=True)
    assert opt.state_dict()["state.0.step"] == 2


@pytest.mark.cuda
@pytest.mark.parametrize("name", list(CLASSES))
def test_device_arrays_keep_state_on_the_device(name, launches):
    if backends.backend_unavailable_reason("cuda"):
        pytest.skip("cuda unavailable")
    from numba import cuda

    host = _model()
    _, dev_params = optim.flatten([cuda.to_device(a) for a in host])
    _, host_params = optim.flatten(host)
    dev_opt, host_opt = CLASSES[name](_groups(dev_params), None), CLASSES[name](_groups(host_params), "numpy")
    for t in range(1, 4):
        host_opt.step(_grads(t))
    launches.clear()
    for t in range(1, 4):
        _, dev_grads = optim.flatten([cuda.to_device(g) for g in _grads(t)])
        assert dev_opt.step(dev_grads, skip_if_nonfinite=True)
    assert len([c for c in launches if c[0] != "nonfinite_count"]) == 3 * 2
    grp = dev_opt._groups[0]
    assert all(_arrays.is_device_array(flat) for flat, _ in grp.buffers.values())
    for d, h in zip(dev_params, host_params):
        np.testing.assert_allclose(d.copy_to_host(), h, rtol=2e-5, atol=1e-6)
    sd = dev_opt.state_dict()
    assert all(isinstance(v, np.ndarray) for k, v in sd.items() if k.startswith("state.") and not k.endswith("step"))


def test_span_detection():
    from fusedops._flat import span

    flat, views = optim.flatten(_model())
    s = span(views)
    assert s is not None and s.size == flat.size and np.shares_memory(s, flat)
    assert span(views[1:3]).size == views[1].size + views[2].size
    assert span([views[0], views[2]]) is None                      # a gap
    assert span([views[1], views[0]]) is None                      # out of order
    assert span([a.copy() for a in views]) is None                 # separate allocations
    assert span([flat[:10], flat[10:20].view(np.int32)]) is None   # dtype change
    wide = np.zeros(20, np.float32)
    assert span([wide[::2]]) is None                               # not contiguous


def test_mixed_dtypes_and_empty_parameters(launches):
    params = [np.ones(3, np.float32), np.zeros(0, np.float32), np.ones(4, np.float64)]
    opt = optim.Adam(params, lr=0.1, backend="numba")
    assert opt.step([np.ones(3, np.float32), np.zeros(0, np.float32), -np.ones(4)])
    assert [n for _, n in launches] == [3, 4]  # the empty one needs no call
    np.testing.assert_allclose(params[0], 0.9, rtol=1e-6)
    np.testing.assert_allclose(params[2], 1.1, rtol=1e-12, atol=2e-9)  # eps: 0.1*1/(1 + 1e-8)
    _, views = optim.flatten([np.ones(3), np.zeros((0, 2)), np.ones(2)])
    launches.clear()
    optim.SGD(views, lr=0.5, backend="c").step([np.ones(3), np.zeros((0, 2)), np.ones(2)])
    assert [n for _, n in launches] == [3, 2]  # grads are separate arrays: one call each


@pytest.mark.cuda
def test_device_parameter_objects_and_zero_grad():
    if backends.backend_unavailable_reason("cuda"):
        pytest.skip("cuda unavailable")
    from numba import cuda

    _, data = optim.flatten([cuda.to_device(a) for a in _model()])
    gflat, grads = optim.flatten([cuda.to_device(g) for g in _grads(1)])
    params = [Param(d, g) for d, g in zip(data, grads)]
    opt = optim.SGD(params, lr=0.1)
    before = [d.copy_to_host() for d in data]
    assert opt.step()
    for d, d0, g in zip(data, before, _grads(1)):
        np.testing.assert_allclose(d.copy_to_host(), d0 - np.float32(0.1) * g, rtol=1e-6)
    opt.zero_grad()
    assert not gflat.copy_to_host().any()
