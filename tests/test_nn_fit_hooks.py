"""fit's hooks for adapters: l2_per_batch (scikit-learn's alpha), the epoch callback, the identity
activation, and save / load through file objects."""
import io

import numpy as np
import pytest
from nn_helpers import single_threaded

from fusedops.nn import MLP, Autoencoder, load, save


@pytest.fixture(autouse=True, scope="module")
def _single_threaded():
    with single_threaded():
        yield


def _regression_data(n=23, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((n, 1))


def test_l2_per_batch_is_sklearns_alpha():
    """A linear model [3, 1] (MSE) trained by plain SGD, against the update written out in
    float64: for a batch of n rows, W -= lr*(2 X^T(XW + b - y)/n + alpha/n*W) and b -= lr*2 sum(r)/n;
    the epoch loss is sum_b n_b*(mse_b + alpha/(2 n_b)*||W_b||^2) / N. 23 rows in batches of 5
    leave a last batch of 3, whose weight decay differs from the others'."""
    X, y = _regression_data()
    alpha, lr, bs = 0.7, 0.05, 5
    m = MLP([3, 1], task="regression", seed=3, dtype=np.float64)
    W, b = m.net[0].weight.data.copy(), m.net[0].bias.data.copy()
    hist = m.fit(X, y, epochs=2, batch_size=bs, optimizer="sgd", lr=lr, l2_per_batch=alpha, shuffle=False)
    losses = []
    for _ in range(2):
        total = 0.0
        for s in range(0, len(X), bs):
            xb, yb = X[s:s + bs], y[s:s + bs]
            n = len(xb)
            r = xb @ W + b - yb
            total += n * ((r ** 2).mean() + alpha / (2 * n) * (W ** 2).sum())
            gW, gb = 2 * xb.T @ r / n + alpha / n * W, 2 * r.sum(0) / n
            W, b = W - lr * gW, b - lr * gb
        losses.append(total / len(X))
    np.testing.assert_allclose(m.net[0].weight.data, W, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(m.net[0].bias.data, b, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(hist.loss, losses, rtol=1e-13)


def test_l2_per_batch_leaves_biases_and_batchnorm_undecayed():
    X, y = _regression_data(n=40, d=4)
    m = MLP([4, 6, 1], task="regression", batchnorm=True, seed=0, dtype=np.float64)
    m.fit(X, y, epochs=1, batch_size=8, optimizer="sgd", lr=0.01, l2_per_batch=1.0)
    decayed = {id(p) for g in m.optimizer.param_groups if g["weight_decay"] for p in g["params"]}
    assert decayed == {id(p) for p in m.parameters() if p.name == "weight"}
    assert all(g["weight_decay"] == pytest.approx(1.0 / 8) for g in m.optimizer.param_groups if g["weight_decay"])


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(l2=0.1, l2_per_batch=0.1), ValueError, "l2 .* or l2_per_batch"),
    (dict(l2_per_batch=-1.0), ValueError, "l2_per_batch"),
    (dict(optimizer="adamw", l2_per_batch=0.1), ValueError, "decoupled"),
    (dict(callback=3), TypeError, "callback"),
])
def test_bad_hook_arguments(kwargs, exc, match):
    X, y = _regression_data()
    m = MLP([3, 1], task="regression", seed=0)
    before = m.flat.data.copy()
    with pytest.raises(exc, match=match):
        m.fit(X, y, epochs=1, **kwargs)
    np.testing.assert_array_equal(m.flat.data, before)


def test_callback_sees_each_epoch_and_stops_training():
    X, y = _regression_data()
    m = MLP([3, 4, 1], task="regression", seed=0)
    seen = []

    def callback(model, history):
        seen.append((model is m, list(history.epoch), history.loss[-1]))
        return len(seen) == 3

    hist = m.fit(X, y, epochs=10, batch_size=4, callback=callback)
    assert [s[1] for s in seen] == [[1], [1, 2], [1, 2, 3]] and all(s[0] for s in seen)
    assert hist.stopped_epoch == 3 and m.epochs_trained == 3 and len(hist.loss) == 3
    assert [s[2] for s in seen] == hist.loss


def test_identity_activation_is_linear():
    X, _ = _regression_data(d=4)
    m = MLP([4, 5, 2], activation="identity", task="regression", seed=1, dtype=np.float64)
    l1, l2 = m.net[0], m.net[2]
    np.testing.assert_allclose(m.predict(X), (X @ l1.weight.data + l1.bias.data) @ l2.weight.data + l2.bias.data,
                               rtol=1e-13)


@pytest.mark.parametrize("make", [
    lambda: MLP([3, 8, 2], dropout=0.3, seed=2),
    lambda: Autoencoder(3, (8,), 2, noise=("masking", 0.2), output="linear", seed=2),
])
def test_save_load_through_a_file_object_continues_exactly(make):
    X, _ = _regression_data(n=30)
    y = (X[:, 0] > 0).astype(np.int64)
    m = make()
    target = y if isinstance(m, MLP) else None
    m.fit(X, target, epochs=2, batch_size=7)
    buf = io.BytesIO()
    save(m, buf)
    buf.seek(0)
    m2 = load(buf)
    m.fit(X, target, epochs=2, batch_size=7)
    m2.fit(X, target, epochs=2, batch_size=7)
    np.testing.assert_array_equal(m2.flat.data, m.flat.data)
