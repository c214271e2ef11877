"""fusedops.optim with state_dtype / master_weights / stochastic_rounding: checkpoints that
resume bit for bit, master weights equal to the float32 step, the state's bytes per
parameter, and clear errors (nothing written) for what the low-bit path does not support.
The optimizer logic is the same on every backend (the kernels are compared with the
reference in test_lowbit_kernels.py): these tests run on C, which compiles nothing at test
time, except where a default Numba specialization is shared with the kernel tests."""
import numpy as np
import pytest

from fusedops import backends, optim
from fusedops.ops import lowbit as L
from fusedops.reference import lowbit as R

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = ml_dtypes.bfloat16
BE = "c" if backends.backend_unavailable_reason("c") is None else "numba"


def quadratic_grads(ws, c):
    return [(c[: w.size] * w.astype(np.float32)).astype(w.dtype) for w in ws]


def params(seed=0, dtype=np.float32, sizes=(5000, 300)):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(dtype) for n in sizes]


def state_arrays(opt):
    sd = opt.state_dict()
    return {k: np.asarray(v) for k, v in sd.items() if k.startswith("state.")}


def test_checkpoint_resumes_bit_for_bit(tmp_path):
    c = np.linspace(0.1, 4, 5000).astype(np.float32)
    kw = dict(lr=1e-2, state_dtype="int8", master_weights=True, stochastic_rounding=True,
              seed=9, min_8bit_size=1000, backend=BE)
    ws = params(dtype=BF16)
    opt = optim.AdamW(ws, **kw)
    for _ in range(3):
        opt.step(quadratic_grads(ws, c))
    np.savez(tmp_path / "opt.npz", **opt.state_dict())
    ws2 = [w.copy() for w in ws]
    opt2 = optim.AdamW(ws2, **{**kw, "lr": 0.5})  # hyperparameters come from the checkpoint
    opt2.load_state_dict(np.load(tmp_path / "opt.npz"))
    saved, loaded = state_arrays(opt), state_arrays(opt2)
    assert saved.keys() == loaded.keys() and "state.0.exp_avg.codes" in saved
    for k in saved:
        np.testing.assert_array_equal(saved[k], loaded[k], err_msg=k)
    for _ in range(3):
        opt.step(quadratic_grads(ws, c))
        opt2.step(quadratic_grads(ws2, c))
    for a, b in zip(ws, ws2):
        np.testing.assert_array_equal(a.view(np.uint16), b.view(np.uint16))
    for k, v in state_arrays(opt).items():
        np.testing.assert_array_equal(v, state_arrays(opt2)[k], err_msg=k)


@pytest.mark.parametrize("state_dtype", ["float32", "int8"])
def test_bf16_master_step_is_the_float32_step_rounded(state_dtype):
    """With master weights, bfloat16 params and grads run exactly the float32 step (the low-bit
    kernel on float32 params, same state format) on the master copy, and the params are its
    rounding to nearest even."""
    c = np.linspace(0.1, 4, 5000).astype(np.float32)
    w32 = [R.bf16_to_f32(R.f32_to_bf16(w)) for w in params()]
    wbf = [w.astype(BF16) for w in w32]
    obf = optim.Adam(wbf, lr=1e-2, weight_decay=0.1, state_dtype=state_dtype, min_8bit_size=0,
                     master_weights=True, backend=BE)
    new = (lambda w, s: L.BlockQuantized.zeros(w.size, signed=s)) if state_dtype == "int8" else (
        lambda w, s: np.zeros_like(w))
    st = [(new(w, True), new(w, False)) for w in w32]
    for t in range(1, 5):
        gbf = quadratic_grads(wbf, c)
        obf.step(gbf)
        for w, g, (m, v) in zip(w32, gbf, st):
            L.adam_step(w, g.astype(np.float32), m, v, step=t, lr=1e-2, weight_decay=0.1,
                        backend=BE)
    for k, (a, b) in enumerate(zip(w32, wbf)):
        np.testing.assert_array_equal(obf._lowbit.master[k], a)
        np.testing.assert_array_equal(b.view(np.uint16), R.f32_to_bf16(a))


def test_state_bytes_per_parameter():
    """Adam: two 8-bit codes and two float32 scales per 256 parameters, measured from the
    state arrays: (2 + 8/256) bytes per parameter, against 8 for float32 state."""
    w = np.zeros(1 << 16, np.float32)
    opt = optim.Adam([w], lr=1e-3, state_dtype="int8")
    opt.step([np.ones_like(w)])
    st = opt._lowbit.state[0]
    nbytes = sum(s.nbytes for s in st.values())
    assert all(isinstance(s, L.BlockQuantized) for s in st.values())
    assert nbytes / w.size == 2 + 8 / 256 <= 2.1


def test_small_tensors_keep_float32_state():
    ws = [np.ones(4095, np.float32), np.ones(4096, np.float32)]
    opt = optim.Adam(ws, lr=1e-3, state_dtype="int8")
    opt.step([np.ones_like(w) for w in ws])
    assert opt._lowbit.state[0]["exp_avg"].dtype == np.float32
    assert isinstance(opt._lowbit.state[1]["exp_avg"], L.BlockQuantized)


def test_skip_if_nonfinite_leaves_everything_unchanged():
    ws = params(dtype=BF16)
    opt = optim.Adam(ws, lr=1e-2, state_dtype="bfloat16", master_weights=True, backend=BE)
    opt.step([np.ones_like(w) for w in ws])
    before = [w.copy() for w in ws], state_arrays(opt)
    gs = [np.ones_like(w) for w in ws]
    gs[1][7] = np.inf
    assert opt.step(gs, skip_if_nonfinite=True) is False
    for a, b in zip(ws, before[0]):
        np.testing.assert_array_equal(a.view(np.uint16), b.view(np.uint16))
    for k, v in state_arrays(opt).items():
        np.testing.assert_array_equal(v, before[1][k])


BAD = [
    (lambda w: optim.Adagrad([w], lr=1e-2, state_dtype="int8"), ValueError, "accumulator"),
    (lambda w: optim.Adam([w], lr=1e-2, amsgrad=True, state_dtype="int8"), ValueError, "amsgrad"),
    (lambda w: optim.RMSprop([w], lr=1e-2, centered=True, state_dtype="int8"), ValueError,
     "centered"),
    (lambda w: optim.Adam([w], lr=1e-2, master_weights=True), ValueError, "already float32"),
    (lambda w: optim.SGD([w], lr=1e-2, stochastic_rounding=True), ValueError, "rounds"),
    (lambda w: optim.Adam([w], lr=1e-2, state_dtype="int4"), ValueError, "state_dtype"),
    (lambda w: optim.Adam([w.astype(np.float64)], lr=1e-2, state_dtype="int8"), TypeError,
     "params\\[0\\]"),
    (lambda w: optim.Adagrad([w.astype(BF16)], lr=1e-2), ValueError, "Adagrad"),
]


@pytest.mark.parametrize("make, exc, match", BAD)
def test_unsupported_combinations_raise_clearly(make, exc, match):
    with pytest.raises(exc, match=match):
        make(np.ones(10, np.float32))


def test_load_state_dict_with_other_options_raises_and_changes_nothing():
    ws = params()
    opt = optim.Adam(ws, lr=1e-2, state_dtype="int8", min_8bit_size=0, backend=BE)
    opt.step([np.ones_like(w) for w in ws])
    other = optim.Adam([w.copy() for w in ws], lr=1e-2, state_dtype="bfloat16", backend=BE)
    other.step([np.ones_like(w) for w in ws])
    before = state_arrays(other)
    with pytest.raises(ValueError, match="low-bit options"):
        other.load_state_dict(opt.state_dict())
    plain = optim.Adam([w.copy() for w in ws], lr=1e-2)
    with pytest.raises(ValueError, match="low-bit state"):
        plain.load_state_dict(opt.state_dict())
    for k, v in state_arrays(other).items():
        np.testing.assert_array_equal(v, before[k])


def test_nn_model_with_int8_state_saves_loads_and_continues_exactly(tmp_path):
    from fusedops.nn import MLP, load

    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 20)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    model = MLP([20, 64, 3], seed=0)
    opt = optim.Adam(model.param_groups(), lr=1e-2, state_dtype="int8", min_8bit_size=0)
    model.fit(X, y, epochs=2, batch_size=32, optimizer=opt)
    model.save(tmp_path / "m.npz")
    loaded = load(tmp_path / "m.npz")
    assert loaded.optimizer._lowbit.cfg == opt._lowbit.cfg
    for m in (model, loaded):
        m.fit(X, y, epochs=2, batch_size=32, optimizer=m.optimizer)
    np.testing.assert_array_equal(loaded.flat.data, model.flat.data)


# Every slot combination the low-bit path has: the kernel takes all of its optimizer's state
# arguments, the unused ones as None (SGD without momentum, RMSprop without momentum / not
# centered). Each optimizer must equal the ops.lowbit calls it stands for, step by step.
OP_CASES = [
    ("sgd", "int8", dict(lr=0.05)),
    ("sgd", "bfloat16", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("rmsprop", "int8", dict(lr=1e-2)),
    ("rmsprop", "int8", dict(lr=1e-2, momentum=0.5)),
    ("rmsprop", "bfloat16", dict(lr=1e-2, centered=True)),
    ("adam", "int8", dict(lr=1e-2)),
]
OPTIMIZERS = {"sgd": optim.SGD, "rmsprop": optim.RMSprop, "adam": optim.Adam}


def direct_state(sdt, n, signed):
    if sdt == "int8":
        return L.BlockQuantized.zeros(n, signed=signed)
    return np.zeros(n, BF16)


@pytest.mark.parametrize("name,sdt,hyper", OP_CASES, ids=lambda c: str(c))
def test_optimizer_equals_its_op_calls(name, sdt, hyper):
    n, c = 5000, np.linspace(0.1, 4, 5000).astype(np.float32)
    w = params(sizes=(n,))[0]
    w_opt, w_op = w.copy(), w.copy()
    opt = OPTIMIZERS[name]([w_opt], state_dtype=sdt, backend=BE, **hyper)
    kw = {k: v for k, v in hyper.items()}
    st = {}
    if name == "sgd" and kw.get("momentum", 0) > 0:
        st["momentum_buf"] = direct_state(sdt, n, True)
    if name == "rmsprop":
        st["square_avg"] = direct_state(sdt, n, False)
        if kw.get("momentum", 0) > 0:
            st["momentum_buf"] = direct_state(sdt, n, True)
        if kw.get("centered"):
            st["grad_avg"] = direct_state(sdt, n, True)
    if name == "adam":
        st = {"exp_avg": direct_state(sdt, n, True), "exp_avg_sq": direct_state(sdt, n, False)}
    func = {"sgd": L.sgd_step, "rmsprop": L.rmsprop_step, "adam": L.adam_step}[name]
    for t in range(1, 4):
        opt.step(quadratic_grads([w_opt], c))
        g = quadratic_grads([w_op], c)[0]
        extra = {"step": t} if name == "adam" else {}
        func(w_op, g, **st, backend=BE, **extra, **kw)
        np.testing.assert_array_equal(w_opt, w_op, err_msg=f"step {t}")
    assert opt.state_nbytes() == sum(
        s.codes.nbytes + s.scales.nbytes if isinstance(s, L.BlockQuantized) else s.nbytes
        for s in st.values())
