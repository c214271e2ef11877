"""Ctrl-C during fit (nn/interrupt.py): training stops after the step in progress, with weights,
optimizer state, batch-norm statistics and dropout offsets those of whole steps; the History of
the completed epochs stays in model.history and KeyboardInterrupt is re-raised.

The signal is real (signal.raise_signal) and lands at the worst place: right after the
optimizer's first kernel launch of a step (of two: weights, then biases and BN parameters),
before the second launch and before the step counters move."""
import io
import signal
import threading

import numpy as np
import pytest
from nn_helpers import single_threaded

import fusedops.optim
from fusedops.nn import MLP

N, BATCH = 96, 16  # 6 steps per epoch; shuffle=False: step j of an epoch is rows 16j..16j+15


@pytest.fixture(autouse=True)
def _single_threaded():
    with single_threaded():  # the reference run below must see the same BLAS bits
        yield
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((N, 8)).astype(np.float32), rng.integers(0, 3, N)


def _model():
    return MLP([8, 16, 3], batchnorm=True, dropout=0.2, seed=0, backend="numba")


def _state(model):
    """Everything save() writes: weights, BN statistics, optimizer state, RNG offsets."""
    buf = io.BytesIO()
    model.save(buf)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _interrupt_at(monkeypatch, launch_number, signals=1):
    """Raise SIGINT `signals` times right after the optimizer's launch number `launch_number`
    (1-based, two per step); returns the list the launches are counted in."""
    calls, real = [], fusedops.optim.launch

    def launch(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(1)
        if len(calls) == launch_number:
            for _ in range(signals):
                signal.raise_signal(signal.SIGINT)
    monkeypatch.setattr(fusedops.optim, "launch", launch)
    return calls


def test_ctrl_c_mid_step_stops_after_that_step(monkeypatch):
    X, y = _data()
    model = _model()
    calls = _interrupt_at(monkeypatch, 2 * (6 + 3) + 1)  # epoch 2, step 4 (0-based 3), group 0
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, epochs=3, batch_size=BATCH, shuffle=False)
    assert len(calls) == 2 * (6 + 4)  # the interrupted step's second launch ran; no more
    hist = model.history
    assert hist.interrupted and hist.epoch == [1] and len(hist.loss) == 1
    assert model.epochs_trained == 1
    monkeypatch.undo()
    ref = _model()  # the same whole steps, taken one by one
    ref.fit(X, y, epochs=1, batch_size=BATCH, shuffle=False)
    for j in range(4):
        ref.train_step(X[BATCH * j:BATCH * (j + 1)], y[BATCH * j:BATCH * (j + 1)])
    got, want = _state(model), _state(ref)
    assert got.keys() == want.keys()
    assert [k for k in got if not np.array_equal(got[k], want[k])] == []


def test_second_ctrl_c_stops_at_once(monkeypatch):
    X, y = _data()
    model = _model()
    calls = _interrupt_at(monkeypatch, 3, signals=2)  # step 2, first launch
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, epochs=2, batch_size=BATCH, shuffle=False)
    assert len(calls) == 3 and model.history.interrupted


def test_ctrl_c_at_the_end_of_an_epoch_keeps_its_record(monkeypatch):
    X, y = _data()
    model = _model()

    def callback(m, hist):  # runs after the epoch's bookkeeping; Ctrl-C lands here
        if len(hist.epoch) == 2:
            signal.raise_signal(signal.SIGINT)
        return False
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, epochs=4, batch_size=BATCH, callback=callback)
    assert model.history.epoch == [1, 2] and model.epochs_trained == 2
    assert model.history.interrupted and model.history.as_dict()["interrupted"]


def test_signal_handlers_are_left_alone_where_they_are_not_ours(monkeypatch):
    X, y = _data()
    seen, real = [], fusedops.optim.launch

    def launch(*args, **kwargs):
        seen.append(signal.getsignal(signal.SIGINT))
        real(*args, **kwargs)
    monkeypatch.setattr(fusedops.optim, "launch", launch)
    errors = []
    thread = threading.Thread(target=lambda: _fit_catching(_model(), X, y, errors))
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive() and errors == [] and seen  # no signal.signal off the main thread
    assert all(h is signal.default_int_handler for h in seen)

    def mine(signum, frame):
        pass
    previous = signal.signal(signal.SIGINT, mine)
    try:
        seen.clear()
        _model().fit(X, y, epochs=1, batch_size=BATCH)
        assert signal.getsignal(signal.SIGINT) is mine and set(seen) == {mine}
    finally:
        signal.signal(signal.SIGINT, previous)


def _fit_catching(model, X, y, errors):
    try:
        model.fit(X, y, epochs=1, batch_size=BATCH)
    except Exception as exc:  # reported to the main thread
        errors.append(exc)
