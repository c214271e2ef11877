"""The optimizer's plan cache: alternating hyperparameters reuse plans and still step with the
current values; load_state_dict drops plans that point at replaced buffers."""
import numpy as np

from fusedops import ops, optim


def _data(n=37, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n), rng.standard_normal((6, n))


def test_alternating_weight_decay_steps_with_the_current_value():
    w0, grads = _data()
    w, g = w0.copy(), np.empty_like(w0)  # the same gradient buffer every step, as in nn
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    ref, ref_h = w0.copy(), np.zeros_like(w0)
    for i, grad in enumerate(grads):
        wd = (0.5, 0.01, 0.2)[i % 3]  # three settings: each cached after its first use
        opt.param_groups[0]["weight_decay"] = wd
        g[...] = grad
        opt.step([g])
        ops.sgd_step(ref, grad, ref_h, lr=0.1, momentum=0.9, weight_decay=wd, backend="numpy")
    assert len(opt._plans) == 3
    np.testing.assert_allclose(w, ref, rtol=1e-14, atol=1e-15)


def test_load_state_dict_drops_cached_plans():
    w0, grads = _data(seed=1)
    w, g = w0.copy(), grads[0].copy()
    opt = optim.Adam([w], lr=0.01)
    for wd in (0.1, 0.2, 0.1):
        opt.param_groups[0]["weight_decay"] = wd
        opt.step([g])
    sd = opt.state_dict()
    opt.load_state_dict(sd)  # new state buffers: a cached plan would update the old ones
    g[...] = grads[1]
    opt.step([g])
    twin_w = w0.copy()
    twin = optim.Adam([twin_w], lr=0.01)
    for wd in (0.1, 0.2, 0.1):
        twin.param_groups[0]["weight_decay"] = wd
        twin.step([grads[0]])
    twin.step([grads[1]])
    np.testing.assert_array_equal(w, twin_w)
    after = opt.state_dict()
    np.testing.assert_array_equal(after["state.0.exp_avg"], twin.state_dict()["state.0.exp_avg"])
