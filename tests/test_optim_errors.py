"""Bad input to the optimizer ops and classes: a clear exception naming the argument, and no
array modified (every check runs before any kernel)."""
import numpy as np
import pytest
from conftest import assert_unchanged, snapshot

from fusedops import ops, optim

N = 33


def _adam_args(dtype=np.float32):
    rng = np.random.default_rng(0)
    w, g = rng.standard_normal((2, N)).astype(dtype)
    m, v, vmax = (rng.random(N).astype(dtype) for _ in range(3))
    return w, g, m, v, vmax


def _sgd(w, g, h, **kw):
    return ops.sgd_step(w, g, h, **{"lr": 0.1, "momentum": 0.9, **kw})


def _adagrad(w, g, s, **kw):
    return ops.adagrad_step(w, g, s, **{"lr": 0.1, **kw})


def _rmsprop(w, g, s, h, ga, **kw):
    return ops.rmsprop_step(w, g, s, h, ga, **{"lr": 0.1, "momentum": 0.9, "centered": True, **kw})


def _adam(w, g, m, v, vmax, **kw):
    return ops.adam_step(w, g, m, v, vmax, **{"step": 1, "lr": 0.1, "amsgrad": True, **kw})


OPS = {"sgd": (_sgd, 3), "adagrad": (_adagrad, 3), "rmsprop": (_rmsprop, 5), "adam": (_adam, 5)}


def _arrays(op, dtype=np.float32):
    return list(_adam_args(dtype)[: OPS[op][1]])


def _expect_failure(op, arrays, exc, match, backend, **kw):
    fn = OPS[op][0]
    before = snapshot(*arrays)
    with pytest.raises(exc, match=match):
        fn(*arrays, backend=backend, **kw)
    assert_unchanged(arrays, before)


@pytest.fixture(params=["numpy", "numba", "c"])
def host_backend(request):
    return request.param


@pytest.mark.parametrize("op", list(OPS))
def test_bad_arrays(op, host_backend):
    be = host_backend
    a = _arrays(op)
    _expect_failure(op, [a[0], a[1][:-1], *a[2:]], ValueError, "grad must have the same shape", be)
    _expect_failure(op, [a[0], a[1].astype(np.float64), *a[2:]], TypeError, "grad must have the same dtype", be)
    _expect_failure(op, [a[0], a[1], a[2][:-1], *a[3:]], ValueError, "same shape as param", be)
    _expect_failure(op, [a[0].astype(np.int32), *a[1:]], TypeError, "param must have dtype", be)
    wide = np.zeros(2 * N, np.float32)
    _expect_failure(op, [wide[::2], *a[1:]], ValueError, "param must be C-contiguous", be)
    ro = a[0].copy()
    ro.flags.writeable = False
    _expect_failure(op, [ro, *a[1:]], ValueError, "param is read-only", be)
    ro_state = a[2].copy()
    ro_state.flags.writeable = False
    _expect_failure(op, [a[0], a[1], ro_state, *a[3:]], ValueError, "read-only", be)
    _expect_failure(op, [a[0], a[0], *a[2:]], ValueError, "param and grad share memory", be)
    _expect_failure(op, [a[0], a[1], a[0], *a[3:]], ValueError, "and param share memory|param and .* share memory", be)


@pytest.mark.parametrize("op, kw, match", [
    ("sgd", dict(lr=-0.1), "lr must be >= 0"),
    ("sgd", dict(momentum=-0.5), "momentum must be >= 0"),
    ("sgd", dict(momentum=0.0, nesterov=True), "nesterov=True requires momentum > 0"),
    ("sgd", dict(weight_decay=-1.0), "weight_decay must be >= 0"),
    ("sgd", dict(l1=float("nan")), "l1 must be finite"),
    ("sgd", dict(nesterov=1), "nesterov must be True or False"),
    ("adagrad", dict(eps=-1e-10), "eps must be >= 0"),
    ("rmsprop", dict(alpha=1.5), "alpha must be <= 1"),
    ("rmsprop", dict(momentum=-0.1), "momentum must be >= 0"),
    ("rmsprop", dict(eps=-1.0), "eps must be >= 0"),
    ("adam", dict(beta1=1.0), "beta1 must be < 1"),
    ("adam", dict(beta2=-0.1), "beta2 must be >= 0"),
    ("adam", dict(beta2=1.0), "beta2 must be < 1"),
    ("adam", dict(eps=-1e-8), "eps must be >= 0"),
    ("adam", dict(lr=-1e-3), "lr must be >= 0"),
    ("adam", dict(step=0), "step must be in"),
    ("adam", dict(step=1.0), "step must be an integer"),
    ("adam", dict(lr="0.1"), "lr must be a real number"),
])
def test_bad_hyperparameters(op, kw, match, host_backend):
    exc = TypeError if "must be a real" in match or "integer" in match or "True or" in match else ValueError
    _expect_failure(op, _arrays(op), exc, match, host_backend, **kw)


@pytest.mark.parametrize("op, drop, kw, match", [
    ("sgd", 2, {}, "momentum_buf is required when momentum > 0"),
    ("rmsprop", 2, {}, "square_avg is required"),
    ("rmsprop", 3, {}, "momentum_buf is required"),
    ("rmsprop", 4, {}, "grad_avg is required when centered=True"),
    ("adam", 4, {}, "max_exp_avg_sq is required when amsgrad=True"),
    ("adam", 2, {}, "exp_avg is required"),
])
def test_missing_state(op, drop, kw, match):
    arrays = _arrays(op)
    arrays[drop] = None
    _expect_failure(op, arrays, ValueError, match, "c", **kw)


def test_unused_state_is_left_alone():
    w, g, m, v, vmax = _adam_args()
    before = snapshot(vmax)
    ops.adam_step(w, g, m, v, vmax, step=1, lr=0.1, amsgrad=False, backend="c")
    assert_unchanged([vmax], before)
    h = np.ones(N, np.float32)
    ops.sgd_step(w, g, h, lr=0.1, momentum=0.0, backend="numba")
    assert np.all(h == 1)


# ------------------------------------------------------------------ stateful optimizers

def test_optimizer_rejects_bad_construction():
    w = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        optim.Adam([w], lr=-1.0)
    with pytest.raises(ValueError, match=r"param_groups\[1\]: weight_decay must be >= 0"):
        optim.SGD([{"params": [w]}, {"params": [w.copy()], "weight_decay": -1}], lr=0.1)
    with pytest.raises(ValueError, match="betas must be a pair"):
        optim.Adam([w], lr=0.1, betas=(0.9,))
    with pytest.raises(ValueError, match="betas must be a pair"):
        optim.Adam([w], lr=0.1, betas=0.9)
    with pytest.raises(ValueError, match=r"beta2 must be < 1"):
        optim.AdamW([w], lr=0.1, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="nesterov=True requires momentum > 0"):
        optim.SGD([w], lr=0.1, nesterov=True)
    ro = np.zeros(5, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[0\] is read-only"):
        optim.SGD([ro], lr=0.1)
    with pytest.raises(ValueError, match="grads is required"):
        optim.SGD([w], lr=0.1).step()


def test_optimizer_bad_grads_modify_nothing():
    """The second group's bad gradient is caught before the first group is stepped."""
    w1, w2 = np.ones(5, np.float32), np.ones(7, np.float32)
    opt = optim.Adam([{"params": [w1]}, {"params": [w2], "weight_decay": 0.0}], lr=0.1)
    opt.step([np.ones(5, np.float32), np.ones(7, np.float32)])
    state = opt.state_dict()
    before = snapshot(w1, w2)
    for grads, exc, match in [
        ([np.ones(5, np.float32), np.ones(6, np.float32)], ValueError, r"grads\[1\] must have the same shape"),
        ([np.ones(5, np.float32), np.ones(7, np.float64)], TypeError, r"grads\[1\] must have the same dtype"),
        ([np.ones(5, np.float32), w2], ValueError, "share memory"),
        ([np.ones(5, np.float32)], ValueError, "one entry per parameter"),
    ]:
        with pytest.raises(exc, match=match):
            opt.step(grads)
        assert_unchanged([w1, w2], before)
    opt.param_groups[1]["lr"] = -1.0
    with pytest.raises(ValueError, match=r"param_groups\[1\]: lr must be >= 0"):
        opt.step([np.ones(5, np.float32), np.ones(7, np.float32)])
    assert_unchanged([w1, w2], before)
    after = opt.state_dict()
    for key in state:
        if key.startswith("state."):
            np.testing.assert_array_equal(after[key], state[key])
