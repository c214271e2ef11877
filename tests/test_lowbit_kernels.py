"""Every low-bit kernel backend (numba, c, cuda) equals the NumPy reference bit for bit: the
parameters, master copies, codes, scales and float32 / bfloat16 state after several steps, over
sizes with block tails, with zeros, huge and tiny values, and NaN / Inf gradients (which must
poison only their own elements, as in a float32 step). NaNs compare as NaN, not by payload."""
import numpy as np
import pytest
from conftest import SIM

from fusedops.ops import lowbit as L

ml_dtypes = pytest.importorskip("ml_dtypes")

PDTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}
# (op, param dtype, state dtype, master, stochastic rounding, hyperparameters): every format,
# each optimizer, regularization on and off, with few Numba specializations (each compiles)
CASES = [
    ("adam", "float32", "int8", False, False, dict(lr=1e-2, weight_decay=0.01, decoupled=True)),
    ("adam", "bfloat16", "int8", True, False, dict(lr=1e-2, beta2=0.99)),
    ("adam", "bfloat16", "bfloat16", False, True, dict(lr=1e-2, eps=1e-6, eps_inside_sqrt=True)),
    ("adam", "float16", "float32", True, True, dict(lr=1e-2, beta1=0.5, weight_decay=0.01,
                                                   l1=1e-3)),
    ("sgd", "float32", "int8", False, False, dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("sgd", "float16", "float32", False, True, dict(lr=0.05, weight_decay=0.1)),
    ("rmsprop", "float32", "int8", False, False, dict(lr=1e-2, momentum=0.5, weight_decay=0.01)),
    ("rmsprop", "bfloat16", "bfloat16", True, False, dict(lr=1e-2, centered=True, alpha=0.9)),
]
SLOTS = {"adam": (("exp_avg", True), ("exp_avg_sq", False)), "sgd": (("momentum_buf", True),),
         "rmsprop": (("square_avg", False), ("momentum_buf", True), ("grad_avg", True))}
FUNCS = {"adam": L.adam_step, "sgd": L.sgd_step, "rmsprop": L.rmsprop_step}
SIZES = [1, 255, 257, 700]
STEPS = 3


def case_id(c):
    return f"{c[0]}-{c[1]}-{c[2]}" + ("-master" if c[3] else "") + ("-sr" if c[4] else "")


def inputs(n, steps, seed=0):
    """Parameters with zeros and magnitudes over 12 decades; gradients with zeros, huge and
    tiny entries, and NaN / +-Inf at three positions on step 2."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 2, n)).astype(np.float32)
    w[::9] = 0
    gs = (rng.standard_normal((steps, n)) * 10.0 ** rng.uniform(-6, 3, (steps, n))).astype(np.float32)
    gs[:, 5::13] = 0
    gs[0, 7::50], gs[0, 8::50] = 1e30, 1e-30
    if steps > 1 and n > 3:
        gs[1, [0, n // 2, n - 1]] = [np.nan, np.inf, -np.inf]
    return w, gs


def state(fmt, n, signed):
    if fmt == "int8":
        return L.BlockQuantized.zeros(n, signed=signed)
    return np.zeros(n, np.float32 if fmt == "float32" else ml_dtypes.bfloat16)


def run(case, backend, w0, gs):
    op, pdt, sdt, master, sr, hyper = case
    dt = PDTYPES[pdt]
    p = w0.astype(dt)
    m = w0.copy() if master else None
    slots = {name: state(sdt, w0.size, signed) for name, signed in SLOTS[op]}
    for t, g in enumerate(gs, start=1):
        out = FUNCS[op](p, g.astype(dt), **slots, **hyper, master=m, step=t, seed=11, stream=3,
                        stochastic_rounding=sr, backend=backend)
        assert out is p
    arrays = {"param": p.view(np.uint16) if dt != np.float32 else p, "master": m}
    for name, s in slots.items():
        if isinstance(s, L.BlockQuantized):
            arrays[name + ".codes"], arrays[name + ".scales"] = s.codes, s.scales
        else:
            arrays[name] = s.view(np.uint16) if s.dtype != np.float32 else s
    return arrays


def assert_same(got, want, what):
    if want is None:
        assert got is None
        return
    if want.dtype == np.float32:
        nan = np.isnan(want)
        np.testing.assert_array_equal(np.isnan(got), nan, err_msg=what)
        np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32),
                                      err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def sizes(backend):
    # the simulator runs 256 Python threads per CUDA block: 2 blocks with a tail, 2 steps
    return [300] if backend == "cuda" and SIM else SIZES


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_backend_equals_reference(case, kernel_backend):
    for n in sizes(kernel_backend):
        w0, gs = inputs(n, 2 if kernel_backend == "cuda" and SIM else STEPS)
        got = run(case, kernel_backend, w0, gs)
        want = run(case, "numpy", w0, gs)
        for key in want:
            assert_same(got[key], want[key], f"{key}, n={n}")


def test_nonfinite_gradients_act_on_their_own_elements_as_in_float32():
    """As in a float32 step: a NaN / +-Inf gradient makes its parameter NaN and its first
    moment NaN / +-Inf; a gradient whose square overflows (1e30) leaves v = Inf, which freezes
    its parameter (m / Inf = 0); every other element of the 256-element blocks is unaffected."""
    w0, gs = inputs(700, 2)
    got = run(CASES[0], "numpy", w0, gs)
    f32 = run(("adam", "float32", "float32", False, False, CASES[0][5]), "numpy", w0, gs)
    assert set(np.flatnonzero(np.isnan(got["param"]))) == {0, 350, 699}
    np.testing.assert_array_equal(np.isnan(got["param"]), np.isnan(f32["param"]))
    m = L.dequantize(L.BlockQuantized(got["exp_avg.codes"], got["exp_avg.scales"], True))
    assert np.isnan(m[0]) and m[350] == np.inf and m[699] == -np.inf
    v = L.dequantize(L.BlockQuantized(got["exp_avg_sq.codes"], got["exp_avg_sq.scales"], False))
    frozen = np.arange(7, 700, 50)  # g = 1e30 at step 1
    assert np.all(v[frozen] == np.inf) and np.all(f32["exp_avg_sq"][frozen] == np.inf)
    np.testing.assert_array_equal(got["param"][frozen], f32["param"][frozen])


@pytest.mark.parametrize("signed", [True, False])
def test_quantize_kernels_equal_reference(kernel_backend, signed):
    from test_lowbit_reference import wide

    n = 600 if kernel_backend == "cuda" and SIM else 2000
    x = wide(n, seed=4)
    x = x if signed else np.abs(x)
    x[[1, 300]] = np.nan
    want = L.quantize(x, signed=signed, backend="numpy")
    got = L.quantize(x, signed=signed, backend=kernel_backend)
    np.testing.assert_array_equal(got.codes, want.codes)
    np.testing.assert_array_equal(got.scales, want.scales)
    assert_same(L.dequantize(got, backend=kernel_backend), L.dequantize(want, backend="numpy"),
                "dequantize")


@pytest.mark.cuda
def test_cuda_grid_strides_over_blocks(monkeypatch):
    """A grid of 2 CUDA blocks for 3 state blocks: one block loops (syncthreads included)."""
    from fusedops import backends

    if backends.backend_unavailable_reason("cuda"):
        pytest.skip("cuda unavailable")
    from fusedops.kernels.cuda import lowbit as K

    monkeypatch.setattr(K, "grid_for", lambda n, tpb: 2)
    w0, gs = inputs(600, 1)
    got, want = run(CASES[1], "cuda", w0, gs), run(CASES[1], "numpy", w0, gs)
    for key in want:
        assert_same(got[key], want[key], key)


def test_tiny_masters_round_stochastically_as_the_reference(kernel_backend):
    """float16 stochastic rounding of master values from 2^-24 down to 2^-70 (below 2^-33 the
    random word meets the value's top bits): zero gradients, so each step rounds the master
    copies again with new words; every backend gives the reference's bits."""
    n = 300 if kernel_backend == "cuda" and SIM else 2000
    w0 = (2.0 ** -np.linspace(24, 70, n) * np.linspace(1, 1.9, n)).astype(np.float32)
    case = ("adam", "float16", "float32", True, True, dict(lr=1e-2, beta1=0.5))
    gs = np.zeros((2, n), np.float32)
    got, want = run(case, kernel_backend, w0, gs), run(case, "numpy", w0, gs)
    assert np.count_nonzero(want["param"]) > 0  # some round up to 2^-24
    for name in want:
        assert_same(got[name], want[name], f"{name} ({kernel_backend})")
