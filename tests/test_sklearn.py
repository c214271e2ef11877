"""fusedops.sklearn against scikit-learn's own MLP: the same function step for step (float64,
no shuffling: same initialization, loss, alpha, solvers, schedules, stopping rule, early
stopping split), and training that continues exactly (warm_start, partial_fit, pickle)."""
import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from nn_helpers import single_threaded  # noqa: E402
from sklearn import neural_network as skn  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from fusedops.sklearn import AutoencoderTransformer, MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

_d = load_digits()
X = _d.data[:230] / 16.0  # 230 rows in batches of 64: a short last batch of 38
Y = _d.target[:230]


@pytest.fixture(autouse=True, scope="module")
def _single_threaded():
    with single_threaded():
        yield


BASE = dict(hidden_layer_sizes=(12, 9), shuffle=False, random_state=3, max_iter=12, batch_size=64)
SOLVERS = {
    "sgd": dict(solver="sgd", momentum=0.0, learning_rate_init=0.05),
    "nesterov": dict(solver="sgd", learning_rate_init=0.05),
    "momentum-invscaling": dict(solver="sgd", nesterovs_momentum=False, learning_rate="invscaling",
                                learning_rate_init=0.3, power_t=0.3),
    "adaptive": dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.05, tol=0.05, n_iter_no_change=1),
    "stops-on-tol": dict(solver="sgd", learning_rate_init=0.05, tol=0.5, n_iter_no_change=2),
    "early-stopping": dict(solver="sgd", learning_rate_init=0.05, early_stopping=True, tol=0.5,
                           n_iter_no_change=2, validation_fraction=0.2),
    "adam": dict(solver="adam", learning_rate_init=0.01, alpha=0.3),
    "adam-logistic": dict(solver="adam", activation="logistic", learning_rate_init=0.01),
    "adam-tanh-identity": dict(solver="adam", activation="identity", hidden_layer_sizes=(7,)),
}
TARGETS = {
    "multiclass": (MLPClassifier, skn.MLPClassifier, {}, Y),
    "binary": (MLPClassifier, skn.MLPClassifier, {}, np.where(Y % 2 == 0, "even", "odd")),
    "multilabel": (MLPClassifier, skn.MLPClassifier, {}, np.c_[Y % 2, Y % 3 == 0, Y > 4].astype(int)),
    "regression-2-outputs": (MLPRegressor, skn.MLPRegressor, {}, np.c_[Y / 9.0, np.sqrt(Y)]),
    "poisson": (MLPRegressor, skn.MLPRegressor, {"loss": "poisson"}, Y / 3.0),
}


def _assert_same_fit(ours, theirs):
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-12)
    assert ours.out_activation_ == theirs.out_activation_ and ours.n_outputs_ == theirs.n_outputs_
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    if theirs.validation_scores_ is None:
        assert ours.validation_scores_ is None and ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-12)
    else:
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=1e-12)
        assert ours.best_loss_ is None
        assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_, rel=1e-12)


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_same_function_as_sklearn(solver, target):
    ours_cls, theirs_cls, extra, y = TARGETS[target]
    params = {**BASE, **SOLVERS[solver], **extra}
    if target == "poisson":  # exp outputs: the larger sgd steps overflow in both libraries
        params["learning_rate_init"] = params.get("learning_rate_init", 0.001) * 0.1
    ours = ours_cls(**params, dtype="float64").fit(X, y)
    theirs = theirs_cls(**params).fit(X, y)
    _assert_same_fit(ours, theirs)
    if solver in ("stops-on-tol", "early-stopping"):
        assert ours.n_iter_ < BASE["max_iter"]  # the stopping rule, not max_iter, ended training
    pred, ref = ours.predict(X[:40]), theirs.predict(X[:40])
    if ours_cls is MLPClassifier:
        assert (pred == ref).mean() >= 0.95  # ties at p = 0.5 may round either way
        np.testing.assert_allclose(ours.predict_proba(X[:40]), theirs.predict_proba(X[:40]), rtol=1e-9, atol=1e-12)
    else:
        np.testing.assert_allclose(pred, ref, rtol=1e-9, atol=1e-12)


def test_float32_default_tracks_float64():
    ours = MLPClassifier(**BASE, solver="adam").fit(X, Y)
    theirs = skn.MLPClassifier(**BASE, solver="adam").fit(X, Y)
    assert ours.coefs_[0].dtype == np.float32
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=2e-4)


# ----------------------------------------------------------------------------- continuation

CONTINUE = dict(hidden_layer_sizes=(16,), random_state=0, batch_size=50, tol=0.0, n_iter_no_change=100)
ESTIMATORS = {
    "classifier-adam-dropout-bn": lambda **kw: MLPClassifier(**CONTINUE, dropout=0.2, batchnorm=True, **kw),
    "regressor-sgd-invscaling": lambda **kw: MLPRegressor(**CONTINUE, solver="sgd", learning_rate="invscaling",
                                                          learning_rate_init=0.05, **kw),
    "autoencoder-masking": lambda **kw: AutoencoderTransformer(4, **CONTINUE, noise=("masking", 0.2), **kw),
}


def _target(name):
    return Y if name.startswith("classifier") else Y / 9.0 if name.startswith("regressor") else None


def _flat(est):
    return est._model.flat.data.copy()


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_warm_start_continues_exactly(name):
    """fit(max_iter=3) then a warm fit(max_iter=4) is fit(max_iter=7), bit for bit: shuffling,
    dropout masks, noise, Adam's moments and step, the learning-rate schedule all continue."""
    y = _target(name)
    whole = ESTIMATORS[name](max_iter=7).fit(X, y)
    split = ESTIMATORS[name](max_iter=3, warm_start=True).fit(X, y)
    split.set_params(max_iter=4).fit(X, y)
    np.testing.assert_array_equal(_flat(split), _flat(whole))
    assert split.loss_curve_ == whole.loss_curve_ and split.t_ == whole.t_ and split.n_iter_ == 4


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_partial_fit_continues_exactly(name):
    y = _target(name)
    whole = ESTIMATORS[name](max_iter=4).fit(X, y)
    inc = ESTIMATORS[name]()
    for _ in range(4):
        if name.startswith("classifier"):
            inc.partial_fit(X, y, classes=np.arange(10))
        else:
            inc.partial_fit(X, y)
    np.testing.assert_array_equal(_flat(inc), _flat(whole))
    assert inc.loss_curve_ == whole.loss_curve_ and inc.n_iter_ == 1


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_pickle_round_trip_predicts_and_continues_exactly(name):
    y = _target(name)
    est = ESTIMATORS[name](max_iter=3, warm_start=True).fit(X, y)
    copy = pickle.loads(pickle.dumps(est))
    out = "transform" if name.startswith("autoencoder") else "predict"
    np.testing.assert_array_equal(getattr(copy, out)(X), getattr(est, out)(X))
    assert type(copy._model.optimizer) is type(est._model.optimizer)
    est.set_params(max_iter=2).fit(X, y)
    copy.set_params(max_iter=2).fit(X, y)
    np.testing.assert_array_equal(_flat(copy), _flat(est))


def test_convergence_warning_only_when_max_iter_ends_training():
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\)"):
        MLPClassifier(max_iter=3, random_state=0).fit(X, Y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = MLPClassifier(max_iter=50, tol=10.0, n_iter_no_change=2, random_state=0).fit(X, Y)
    assert est.n_iter_ == 4  # epoch 1 improves on inf; 2, 3, 4 not by tol=10: 3 > n_iter_no_change


def test_verbose_prints_sklearns_lines(capsys):
    MLPClassifier(max_iter=2, verbose=True, early_stopping=True, random_state=0).fit(X, Y)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Iteration 1, loss = ") and lines[1].startswith("Validation score: ")
    assert lines[2].startswith("Iteration 2, loss = ") and len(lines) == 4
