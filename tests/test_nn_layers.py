"""nn building blocks: flat parameter buffers, initialization, layers, losses, and
finite-difference gradient checks of every layer, every loss and whole networks (float64)."""
import numpy as np
import pytest
from nn_helpers import HOST_BACKENDS, numeric_grad, set_offsets, single_threaded

from fusedops.nn import (MLP, Autoencoder, BatchNorm1d, BCEWithLogitsLoss, CrossEntropyLoss, Dropout,
                         FlatParameters, LeakyReLU, Linear, MSELoss, Parameter, ReLU, Sequential, Sigmoid,
                         Tanh)


@pytest.fixture(autouse=True, scope="module")
def _single_threaded():
    with single_threaded():
        yield


RNG = np.random.default_rng(1234)


# ----------------------------------------------------------------------------- flat buffers

def test_flat_parameters_are_views_grouped_by_decay():
    a = Parameter(np.arange(6.0).reshape(2, 3), name="w1")
    b = Parameter(np.array([7.0, 8.0]), name="b1", decay=False)
    c = Parameter(np.arange(4.0).reshape(4, 1) + 10, name="w2")
    flat = FlatParameters([a, b, c], np, np.float64)
    # weights first (in the given order), then the no-decay group
    assert [p.name for p in flat.params] == ["w1", "w2", "b1"]
    np.testing.assert_array_equal(flat.data, [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 7, 8])
    assert flat.decay_size == 10
    for p in (a, b, c):
        assert np.shares_memory(p.data, flat.data) and np.shares_memory(p.grad, flat.grad)
        assert p.data.flags.c_contiguous and p.grad.flags.c_contiguous
    c.grad[...] = 5.0
    assert flat.grad[6:10].tolist() == [5.0] * 4 and flat.grad[:6].sum() == 0
    groups = flat.param_groups(weight_decay=0.1, l1=0.01)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0] and [g["l1"] for g in groups] == [0.01, 0.0]
    assert [p.name for p in groups[0]["params"]] == ["w1", "w2"]


def test_model_buffer_layout_each_group_one_slice():
    m = MLP([8, 16, 4], batchnorm=True, dropout=0.1, backend="numpy")
    groups = m.param_groups(weight_decay=1e-3)
    start = 0
    for g in groups:
        for p in g["params"]:
            # consecutive views of the one buffer: the optimizer runs one kernel per group
            off = (p.data.__array_interface__["data"][0] - m.flat.data.__array_interface__["data"][0]) // 4
            assert off == start
            start += p.size
    assert start == m.n_params == 8 * 16 + 16 * 4 + 4 + 2 * 16  # no hidden bias with BN


# ----------------------------------------------------------------------------- init

@pytest.mark.parametrize("init", ["he", "xavier"])
def test_linear_init_statistics(init):
    lin = Linear(400, 300, init=init, seed=7, dtype=np.float64)
    w = lin.weight.data
    want_std = np.sqrt(2 / 400) if init == "he" else np.sqrt(6 / 700) / np.sqrt(3)
    assert abs(w.std() / want_std - 1) < 0.02
    assert abs(w.mean()) < 0.05 * want_std
    if init == "xavier":
        assert np.abs(w).max() <= np.sqrt(6 / 700)
    assert np.all(lin.bias.data == 0)
    np.testing.assert_array_equal(w, Linear(400, 300, init=init, seed=7, dtype=np.float64).weight.data)
    assert not np.array_equal(w, Linear(400, 300, init=init, seed=8, dtype=np.float64).weight.data)


# ----------------------------------------------------------------------------- layers

def test_activation_values():
    x = np.array([[-1000.0, -3.0, -0.5, 0.0, 0.5, 3.0, 1000.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow anywhere
        np.testing.assert_array_equal(ReLU()(x), np.maximum(x, 0))
        np.testing.assert_allclose(LeakyReLU(0.1)(x), np.where(x > 0, x, 0.1 * x))
        np.testing.assert_allclose(Tanh()(x), np.tanh(x))
        sig = Sigmoid()(x)
    ref = np.array([[0.0, 1 / (1 + np.exp(3.0)), 1 / (1 + np.exp(0.5)), 0.5, 1 / (1 + np.exp(-0.5)),
                     1 / (1 + np.exp(-3.0)), 1.0]])
    np.testing.assert_allclose(sig, ref, rtol=1e-14, atol=1e-300)


def _layer_cases():
    return [
        ("linear", lambda: Linear(5, 4, seed=3, dtype=np.float64)),
        ("linear-xavier-nobias", lambda: Linear(5, 4, init="xavier", bias=False, seed=3, dtype=np.float64)),
        ("relu", ReLU), ("leaky_relu", lambda: LeakyReLU(0.2)), ("sigmoid", Sigmoid), ("tanh", Tanh),
        ("dropout", lambda: Dropout(0.4, seed=11)),
        ("dropout-nomask", lambda: Dropout(0.4, seed=11, keep_mask=False)),
        ("dropout-classic", lambda: Dropout(0.4, seed=11, mode="classic")),
        ("batchnorm", lambda: BatchNorm1d(5, dtype=np.float64)),
    ]


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("name,make", _layer_cases(), ids=[c[0] for c in _layer_cases()])
def test_layer_gradients(name, make, backend):
    """backward(R) equals the finite-difference gradient of sum(forward(x) * R), for the
    input and for every parameter."""
    layer = make()
    layer.bind(backend, np)
    params = layer.parameters()
    if params:
        flat = FlatParameters(params, np, np.float64)
        flat.data[...] = RNG.normal(size=flat.data.size) * 0.7 + (1.0 if name == "batchnorm" else 0.0)
    x = RNG.normal(size=(7, 5)) * 2 + 0.3
    x[np.abs(x) < 1e-3] = 0.1  # keep clear of the ReLU kink
    out = layer(x)
    r = RNG.normal(size=out.shape)

    def f():
        if isinstance(layer, Dropout):
            layer.offset = 0
        return float((layer.forward(x) * r).sum())

    f()
    dx = layer.backward(r)
    np.testing.assert_allclose(dx, numeric_grad(f, x), rtol=1e-6, atol=1e-8)
    for p in params:
        grad = p.grad.copy()
        f(), layer.backward(r)  # backward writes, does not accumulate
        np.testing.assert_array_equal(p.grad, grad)
        np.testing.assert_allclose(grad, numeric_grad(f, p.data), rtol=1e-6, atol=1e-8)


def test_dropout_offset_advances_and_eval_is_identity():
    d = Dropout(0.5, seed=3)
    x = np.ones((50, 40))
    y1, y2 = d(x), d(x)
    assert d.offset == 2 and not np.array_equal(y1 == 0, y2 == 0)  # a fresh mask every step
    assert set(np.unique(y1)) == {0.0, 2.0}
    d.offset = 0
    np.testing.assert_array_equal(d(x), y1)  # reproducible from (seed, offset)
    d.eval()
    assert d(x) is x and d.offset == 1
    c = Dropout(0.25, seed=3, mode="classic").eval()
    np.testing.assert_allclose(c(x), 0.75 * x)


def test_batchnorm_running_statistics_and_eval():
    bn = BatchNorm1d(3, momentum=0.1, dtype=np.float64)
    x = RNG.normal(size=(20, 3)) * [1.0, 2.0, 3.0] + [5.0, -1.0, 0.0]
    y = bn(x)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(0), 1, rtol=1e-4)
    np.testing.assert_allclose(bn.running_mean, 0.1 * x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * x.var(0, ddof=1), rtol=1e-12)
    bn.eval()
    np.testing.assert_allclose(bn(x), (x - bn.running_mean) / np.sqrt(bn.running_var + 1e-5), rtol=1e-12)
    with pytest.raises(RuntimeError, match="training mode"):
        bn.backward(np.ones_like(x))


def test_sequential_chains_forward_and_backward():
    a, b = Linear(3, 4, seed=1, dtype=np.float64), Tanh()
    seq = Sequential(a, b)
    x = RNG.normal(size=(5, 3))
    np.testing.assert_allclose(seq(x), np.tanh(x @ a.weight.data + a.bias.data))
    r = RNG.normal(size=(5, 4))
    dx = seq.backward(r)
    h = np.tanh(x @ a.weight.data)
    np.testing.assert_allclose(dx, (r * (1 - h * h)) @ a.weight.data.T)
    assert seq.parameters() == [a.weight, a.bias] and len(seq) == 2 and seq[1] is b


# ----------------------------------------------------------------------------- losses

def test_loss_values_against_definitions():
    z = RNG.normal(size=(6, 4)) * 3
    labels = np.array([0, 3, 1, 2, 3, 0])
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert CrossEntropyLoss()(z, labels) == pytest.approx(-np.log(p[np.arange(6), labels]).mean(), rel=1e-12)
    t = RNG.uniform(size=(6, 4))
    s = 1 / (1 + np.exp(-z))
    assert BCEWithLogitsLoss()(z, t) == pytest.approx(-(t * np.log(s) + (1 - t) * np.log(1 - s)).mean(), rel=1e-12)
    assert MSELoss()(z, t) == pytest.approx(((z - t) ** 2).mean(), rel=1e-12)


@pytest.mark.parametrize("loss,target", [
    (CrossEntropyLoss(), np.array([0, 3, 1, 2, 3])),
    (BCEWithLogitsLoss(), RNG.uniform(size=(5, 4))),
    (MSELoss(), RNG.normal(size=(5, 4))),
], ids=["cross_entropy", "bce", "mse"])
def test_loss_gradients(loss, target):
    z = RNG.normal(size=(5, 4)) * 2
    _, g = loss.value_and_grad(z.copy(), target)
    np.testing.assert_allclose(g, numeric_grad(lambda: float(loss.value(z, target)), z), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_stable_for_huge_logits(dtype):
    z = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 500.0]], dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        ce, g = CrossEntropyLoss().value_and_grad(z, np.array([0, 2]))
        bce, gb = BCEWithLogitsLoss().value_and_grad(z, np.array([[1, 0, 1], [1, 1, 0]], dtype))
    assert float(ce) == pytest.approx(500 / 2, rel=1e-6)  # row 2: lse = 1000, pick 500
    np.testing.assert_allclose(g, np.array([[0, 0, 0], [0, 0.5, -0.5]]), atol=1e-6)
    # BCE: the wrong-sign logits each cost |z|: 1000 (row 2, col 0) + 500 (row 2, col 2); col 2 row 1: log 2
    assert float(bce) == pytest.approx((1000 + 500 + np.log(2)) / 6, rel=1e-5)
    assert np.isfinite(gb).all() and np.abs(gb).max() <= 1 / 6 + 1e-7


# ----------------------------------------------------------------------------- whole networks

NETWORK_CASES = [  # task, activation, keep_mask
    ("classification", "relu", True),
    ("binary", "tanh", False),
    ("multilabel", "sigmoid", True),
    ("regression", "leaky_relu", True),
]


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("task,activation,keep_mask", NETWORK_CASES, ids=[c[0] for c in NETWORK_CASES])
def test_network_gradient(task, activation, keep_mask, backend):
    """Every parameter gradient of an MLP with batch norm and dropout (pinned seed and offset)
    in the stack matches finite differences of its loss, for each loss."""
    n_out = {"classification": 3, "binary": 1, "multilabel": 3, "regression": 2}[task]
    m = MLP([5, 7, 6, n_out], activation=activation, dropout=0.3, batchnorm=True, task=task, seed=5,
            backend=backend, dtype=np.float64, keep_mask=keep_mask)
    X = RNG.normal(size=(9, 5))
    y = {"classification": RNG.integers(0, 3, 9), "binary": RNG.integers(0, 2, 9),
         "multilabel": RNG.integers(0, 2, (9, 3)), "regression": RNG.normal(size=(9, 2))}[task]
    y = m._check_y(y, X)
    _check_network(m, X, y)


@pytest.mark.parametrize("loss,output", [("mse", "sigmoid"), ("bce", "sigmoid"), ("mse", "linear")])
def test_autoencoder_gradient(loss, output):
    ae = Autoencoder(6, (5,), 3, loss=loss, output=output, batchnorm=True, dropout=0.2, activation="tanh",
                     seed=2, backend="numpy", dtype=np.float64)
    X = RNG.uniform(size=(8, 6))
    _check_network(ae, X, X)


def _check_network(m, X, y):
    m.net.train()

    def f():
        set_offsets(m.net, 0)
        return float(m.loss_fn.value(m.net.forward(X), y))

    set_offsets(m.net, 0)
    _, g = m.loss_fn.value_and_grad(m.net.forward(X), y)
    m.net.backward(g)
    analytic = m.flat.grad.copy()
    assert np.abs(analytic).max() > 0
    np.testing.assert_allclose(analytic, numeric_grad(f, m.flat.data), rtol=1e-5, atol=1e-8)


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("make,exc,match", [
    (lambda: MLP([4, 3], activation="relux"), ValueError, "activation"),
    (lambda: MLP([4, 8, 3], task="ranking"), ValueError, "task"),
    (lambda: MLP([4]), ValueError, "sizes"),
    (lambda: MLP([4, 0, 3]), ValueError, r"sizes\[1\]"),
    (lambda: MLP([4, 1], task="classification"), ValueError, "classes"),
    (lambda: MLP([4, 2], dtype=np.int32), TypeError, "dtype"),
    (lambda: MLP([4, 8, 2], dropout=1.0), ValueError, "p must be"),
    (lambda: Linear(3, 2, init="glorot"), ValueError, "init"),
    (lambda: Dropout(0.5, mode="scaled"), ValueError, "mode"),
    (lambda: Sequential(Linear(2, 2), "relu"), TypeError, r"layers\[1\]"),
    (lambda: Autoencoder(8, (4,), 2, noise=("poisson", 0.1)), ValueError, "noise"),
    (lambda: Autoencoder(8, (4,), 2, output="linear", loss="bce"), ValueError, "loss"),
])
def test_bad_construction(make, exc, match):
    with pytest.raises(exc, match=match):
        make()
