"""Training MLPs on real data (scikit-learn's digits): accuracy, regularization, early
stopping, History, threads, save/load, backend interchangeability, bad input."""
import numpy as np
import pytest

import fusedops
import fusedops.optim
from conftest import assert_unchanged, snapshot
from nn_helpers import HOST_BACKENDS, dropout_layers, single_threaded

from fusedops.data import load_digits
from fusedops.nn import MLP, Autoencoder, History

pytest.importorskip("sklearn")


@pytest.fixture(autouse=True, scope="module")
def _single_threaded():
    with single_threaded():
        yield


X_TR, X_TE, Y_TR, Y_TE = load_digits(test_size=0.2, seed=0)


def _noisy_subset(n=300, frac=0.2, seed=0):
    """A small training subset with `frac` of its labels replaced at random: memorizing them is
    what an unregularized net does and what regularization resists (Zhang et al. 2017)."""
    y = Y_TR[:n].copy()
    rng = np.random.default_rng(seed)
    flip = rng.random(n) < frac
    y[flip] = rng.integers(0, 10, flip.sum())
    return X_TR[:n], y


# ----------------------------------------------------------------------------- accuracy

@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_digits_accuracy_with_dropout_and_batchnorm(backend):
    m = MLP([64, 256, 256, 10], dropout=0.2, batchnorm=True, seed=0, backend=backend)
    hist = m.fit(X_TR, Y_TR, epochs=25, batch_size=64, lr=2e-3)
    acc = m.score(X_TE, Y_TE)
    assert acc >= 0.97, f"test accuracy {acc:.4f}"
    assert hist.loss[-1] < hist.loss[0] / 5 and len(hist.accuracy) == 25
    assert (m.predict(X_TE) == Y_TE).mean() == pytest.approx(acc)
    proba = m.predict_proba(X_TE)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-6)
    assert np.array_equal(proba.argmax(1), m.predict(X_TE))


def test_binary_and_regression_tasks_learn():
    yb = (Y_TR[:600] % 2).astype(np.int64)
    b = MLP([64, 32, 1], task="binary", seed=1)
    b.fit(X_TR[:600], yb, epochs=30, batch_size=32, lr=3e-3)
    assert b.score(X_TE, Y_TE % 2) > 0.9
    assert b.predict_proba(X_TE[:5]).shape == (5, 2)
    r = MLP([64, 32, 1], task="regression", activation="tanh", seed=1)
    r.fit(X_TR[:600], Y_TR[:600].astype(float), epochs=40, batch_size=32, lr=3e-3)
    assert r.score(X_TE, Y_TE.astype(float)) > 0.7  # R^2 of regressing the digit's value


# ----------------------------------------------------------------------------- regularization

def _gap(**kw):
    X, y = _noisy_subset()
    fit_kw = {k: kw.pop(k) for k in ("l1", "l2") if k in kw}
    m = MLP([64, 256, 256, 10], seed=0, **kw)
    m.fit(X, y, epochs=60, batch_size=32, lr=1e-3, **fit_kw)
    return m.evaluate(X_TE, Y_TE)["loss"] - m.evaluate(X, y)["loss"], m


def test_regularization_shrinks_the_generalization_gap():
    plain, _ = _gap()
    dropout, _ = _gap(dropout=0.5)
    l2, m_l2 = _gap(l2=1e-2)
    l1, m_l1 = _gap(l1=1e-3)
    assert plain > 0.3, plain  # memorized the training labels, noise included
    assert dropout < 0.5 * plain and l2 < 0.5 * plain, (plain, dropout, l2)
    # L1's constant pull (sign(w)) parks weights at zero; L2's pull fades as w shrinks
    near_zero = [np.mean(np.abs(m.net[0].weight.data) < 1e-3) for m in (m_l1, m_l2)]
    assert near_zero[0] > 2 * near_zero[1] and near_zero[0] > 0.4, near_zero


def test_early_stopping_stops_and_restores_the_best_epoch():
    X, y = _noisy_subset()
    m = MLP([64, 256, 256, 10], seed=0)
    hist = m.fit(X, y, epochs=200, batch_size=32, lr=3e-3, validation_data=(X_TE, Y_TE), early_stopping=4)
    assert hist.stopped_epoch is not None and hist.stopped_epoch < 200
    assert hist.stopped_epoch == hist.best_epoch + 5 == len(hist.loss) == m.epochs_trained
    assert hist.val_loss[hist.best_epoch - 1] == min(hist.val_loss) < hist.val_loss[-1]
    assert hist.restored_best
    assert m.evaluate(X_TE, Y_TE)["loss"] == pytest.approx(hist.val_loss[hist.best_epoch - 1], rel=1e-6)


def test_history_and_validation_split():
    m = MLP([64, 16, 10], seed=0)
    hist = m.fit(X_TR, Y_TR, epochs=3, batch_size=128, validation_split=0.25)
    assert isinstance(hist, History) and hist.epoch == [1, 2, 3]
    assert len(hist.val_loss) == len(hist.val_accuracy) == len(hist.time) == 3 and hist.stopped_epoch is None
    assert hist.best_epoch == 1 + int(np.argmin(hist.val_loss))
    # the validation rows are the last quarter, in eval mode after the epoch
    assert hist.val_loss[-1] == pytest.approx(m.evaluate(X_TR[-360:], Y_TR[-360:])["loss"], rel=1e-6)
    assert hist["loss"] is hist.loss and set(hist.as_dict()) >= {"loss", "val_accuracy", "best_epoch"}


def test_progress_bar_and_its_absence(monkeypatch, capsys):
    m = MLP([64, 8, 10], seed=0)
    m.fit(X_TR[:200], Y_TR[:200], epochs=2, batch_size=50, verbose=1)
    assert "loss" in capsys.readouterr().err  # the tqdm bar, with metrics
    monkeypatch.setitem(__import__("sys").modules, "tqdm.auto", None)  # tqdm not installed
    m.fit(X_TR[:200], Y_TR[:200], epochs=2, batch_size=50, verbose=1)
    out = capsys.readouterr().out
    assert out.count("epoch") == 2 and "acc" in out


def test_verbose_takes_booleans(capsys):
    """verbose=True is 1 (the bar), verbose=False is 0 (silent), as in Keras."""
    m = MLP([64, 8, 10], seed=0)
    m.fit(X_TR[:200], Y_TR[:200], epochs=2, batch_size=50, verbose=True)
    assert "loss" in capsys.readouterr().err
    m.fit(X_TR[:200], Y_TR[:200], epochs=2, batch_size=50, verbose=np.bool_(False))
    assert capsys.readouterr() == ("", "")


# ----------------------------------------------------------------------------- persistence

def _state(m):
    return m.flat.data.copy(), [d.offset for d in dropout_layers(m.net)], [
        (bn.running_mean.copy(), bn.running_var.copy()) for bn in m._bn_layers()]


def test_save_load_continues_exactly(tmp_path):
    X, y = X_TR[:400], Y_TR[:400]
    m = MLP([64, 32, 32, 10], dropout=0.2, batchnorm=True, seed=3)
    m.fit(X, y, epochs=2, batch_size=32, l2=1e-3)
    m.save(tmp_path / "m.npz")
    m2 = MLP.load(tmp_path / "m.npz")
    assert m2.config == m.config and m2.epochs_trained == 2
    np.testing.assert_array_equal(m2.predict_proba(X_TE), m.predict_proba(X_TE))
    h1 = m.fit(X, y, epochs=2, batch_size=32, l2=1e-3)
    h2 = m2.fit(X, y, epochs=2, batch_size=32, l2=1e-3)
    assert h1.loss == h2.loss
    for a, b in zip(_state(m), _state(m2)):
        np.testing.assert_equal(a, b)
    # and two fits of 2 epochs are one fit of 4
    m4 = MLP([64, 32, 32, 10], dropout=0.2, batchnorm=True, seed=3)
    h4 = m4.fit(X, y, epochs=4, batch_size=32, l2=1e-3)
    assert h4.loss[2:] == h1.loss
    np.testing.assert_array_equal(m4.flat.data, m.flat.data)


# ----------------------------------------------------------------------------- backends

@pytest.fixture(scope="module")
def trained():
    """{(backend, dtype): (losses, float64 copy of the parameters)} after the same 3 epochs."""
    runs = {}
    for be, dt in [("numpy", np.float64), ("numpy", np.float32)] + [
            (b, d) for b in HOST_BACKENDS if b != "numpy" for d in (np.float32, np.float64)]:
        m = MLP([64, 48, 32, 10], dropout=0.3, batchnorm=True, seed=7, backend=be, dtype=dt)
        h = m.fit(X_TR[:500], Y_TR[:500], epochs=3, batch_size=50, optimizer="adam")
        runs[(be, dt)] = np.array(h.loss), m.flat.data.astype(np.float64)
    return runs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backends_train_to_the_same_losses(trained, dtype):
    """Every backend within 4x the float32 NumPy run's own error (its distance to the float64
    NumPy run; measured 1.4e-6 in the parameters, 5e-8 in the losses, where the kernels' is
    1.1e-6) plus 4 eps. float64 has no wider run to measure against: its allowance is that
    float32 error scaled by eps64 / eps32 (a float64 kernel's error is 1 ulp here)."""
    truth_loss, truth = trained[("numpy", np.float64)]
    loss32, p32 = trained[("numpy", np.float32)]
    scale = np.finfo(dtype).eps / np.finfo(np.float32).eps
    tol_p = 4 * scale * np.max(np.abs(p32 - truth)) + 4 * np.finfo(dtype).eps * np.abs(truth)
    tol_l = 4 * scale * np.max(np.abs(loss32 - truth_loss)) + 4 * np.finfo(dtype).eps * truth_loss
    for (be, dt), (loss, params) in trained.items():
        if dt is dtype and be != "numpy":
            assert np.all(np.abs(loss - truth_loss) <= tol_l), (be, loss - truth_loss)
            err = np.abs(params - truth)
            assert np.all(err <= tol_p), (be, err.max(), tol_p.max())


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(X=X_TR[:50, :60]), ValueError, "60 features but the model expects 64"),
    (dict(y=np.full(50, 10)), ValueError, r"labels must be in \[0, 9\]"),
    (dict(y=np.full(50, -1)), ValueError, "labels must be in"),
    (dict(y=np.full(50, 0.5)), ValueError, "integer class labels"),
    (dict(y=Y_TR[:40]), ValueError, "40 rows but X has 50"),
    (dict(X=np.where(np.arange(64) == 3, np.nan, X_TR[:50])), ValueError, "X contains NaN"),
    (dict(X=X_TR[:50, 0]), ValueError, "2-D"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=2.5), TypeError, "batch_size"),
    (dict(epochs=-1), ValueError, "epochs"),
    (dict(lr=0.0), ValueError, "lr"),
    (dict(optimizer="lbfgs"), ValueError, "optimizer"),
    (dict(validation_split=1.0), ValueError, "validation_split"),
    (dict(validation_split=0.2, validation_data=(X_TE, Y_TE)), ValueError, "not both"),
    (dict(validation_data=(X_TE[:, :8], Y_TE)), ValueError, r"validation_data\[0\] has 8 features"),
    (dict(early_stopping=-2), ValueError, "early_stopping"),
    (dict(threads=0), ValueError, "threads"),
    (dict(verbose=3), ValueError, "verbose"),
    (dict(verbose="yes"), TypeError, "verbose"),
    (dict(verbose=1.0), TypeError, "verbose"),
])
def test_bad_fit_input_raises_and_changes_nothing(kwargs, exc, match):
    m = MLP([64, 16, 10], dropout=0.2, batchnorm=True, seed=0)
    args = dict(X=X_TR[:50], y=Y_TR[:50], epochs=1, batch_size=10)
    args.update(kwargs)
    arrays = [m.flat.data, args["X"], args["y"]] + [bn.running_mean for bn in m._bn_layers()]
    copies = snapshot(*arrays)
    with pytest.raises(exc, match=match):
        m.fit(args.pop("X"), args.pop("y"), **args)
    assert_unchanged(arrays, copies)
    assert m.epochs_trained == 0 and m.optimizer is None
    assert all(d.offset == 0 for d in dropout_layers(m.net))


def test_bad_predict_input():
    m = MLP([64, 16, 10], seed=0)
    with pytest.raises(ValueError, match="12 features"):
        m.predict(np.zeros((3, 12)))
    with pytest.raises(TypeError, match="numeric"):
        m.predict(np.array([["a"] * 64]))
    with pytest.raises(RuntimeError, match="fit"):
        Autoencoder(64, (8,), 2).sample(3)
    with pytest.raises(ValueError, match="l1 / l2"):
        m.fit(X_TR[:20], Y_TR[:20], epochs=1, optimizer=object(), l2=0.1)


def test_train_step_and_set_optimizer():
    m = MLP([64, 32, 10], batchnorm=True, seed=0)
    with pytest.raises(RuntimeError, match="set_optimizer"):
        m.train_step(X_TR[:64], Y_TR[:64])
    opt = m.set_optimizer("sgd", lr=0.5, l2=1e-4)
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]
    losses = [float(m.train_step(X_TR[:64], Y_TR[:64])) for _ in range(20)]
    assert losses[-1] < 0.5 * losses[0]
    assert m.set_optimizer("sgd", lr=0.1) is opt and opt.param_groups[0]["lr"] == 0.1  # same kind: reused
    assert m.set_optimizer("adam") is not opt


def test_fit_thread_counts():
    import numba

    m = MLP([64, 8, 10], seed=0)
    seen = []
    step = m._step
    m._step = lambda xb, yb: (seen.append(fusedops.get_num_threads()), step(xb, yb))[1]
    before = fusedops.get_num_threads()
    m.fit(X_TR[:64], Y_TR[:64], epochs=1, batch_size=32)  # small model: one thread
    n = min(2, numba.config.NUMBA_NUM_THREADS)
    m.fit(X_TR[:64], Y_TR[:64], epochs=1, batch_size=32, threads=n)
    assert seen == [1, 1, n, n] and fusedops.get_num_threads() == before


@pytest.mark.parametrize("backend", [b for b in HOST_BACKENDS if b != "numpy"])
def test_multithreaded_training_gives_the_single_threaded_bits(backend, monkeypatch):
    """fit with 2 fusedops threads equals fit with 1, bit for bit: the optimizer kernels are
    elementwise and the batch-norm reductions combine fixed chunks in a fixed order (DESIGN.md).
    The model is past the kernels' parallel thresholds (51k parameters > the C optimizer's 32768;
    BN over 256 x 256). BLAS stays at one thread here: OpenBLAS's own GEMM results change with
    its thread count, which is not fusedops's to promise."""
    import contextlib

    import numba

    from fusedops.nn import training

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba was started with one thread")

    @contextlib.contextmanager
    def kernels_only(n):
        before = fusedops.get_num_threads()
        fusedops.set_num_threads(n)
        try:
            yield
        finally:
            fusedops.set_num_threads(before)

    monkeypatch.setattr(training, "limit_threads", kernels_only)
    runs = []
    for threads in (1, 2):
        m = MLP([64, 256, 128, 10], dropout=0.2, batchnorm=True, seed=5, backend=backend)
        seen = []
        step = m._step
        m._step = lambda xb, yb: (seen.append(fusedops.get_num_threads()), step(xb, yb))[1]
        h = m.fit(X_TR[:512], Y_TR[:512], epochs=2, batch_size=256, threads=threads)
        assert set(seen) == {threads}
        runs.append((h.loss, m.flat.data.copy(), [(bn.running_mean.copy(), bn.running_var.copy())
                                                   for bn in m._bn_layers()]))
    assert m.n_params > 32768
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    np.testing.assert_equal(runs[0][2], runs[1][2])


@pytest.mark.parametrize("make_opt", [
    lambda m: fusedops.optim.SGD(m.param_groups(weight_decay=1e-3), lr=0.05, momentum=0.9),
    lambda m: fusedops.optim.RMSprop(m.param_groups(), lr=1e-3),
    lambda m: fusedops.optim.AdamW(m.param_groups(weight_decay=1e-2), lr=1e-3),
], ids=["sgd-momentum", "rmsprop", "adamw"])
def test_save_load_with_an_optimizer_object(tmp_path, make_opt):
    X, y = X_TR[:200], Y_TR[:200]
    m = MLP([64, 16, 10], batchnorm=True, dropout=0.1, seed=4)
    opt = make_opt(m)
    m.fit(X, y, epochs=1, batch_size=50, optimizer=opt)
    m.save(tmp_path / "m.npz")
    m2 = MLP.load(tmp_path / "m.npz")
    assert type(m2.optimizer) is type(opt)
    m.fit(X, y, epochs=1, batch_size=50, optimizer=opt)
    m2.fit(X, y, epochs=1, batch_size=50, optimizer=m2.optimizer)
    np.testing.assert_array_equal(m.flat.data, m2.flat.data)
