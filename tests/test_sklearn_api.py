"""fusedops.sklearn inside scikit-learn's tools (Pipeline, GridSearchCV, cross_val_score, clone),
its inputs and outputs (dtypes, sparse, views), fusedops' extras, and clear errors."""
import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")

from nn_helpers import HOST_BACKENDS, single_threaded  # noqa: E402
from scipy import sparse  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.pipeline import Pipeline, make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from fusedops.sklearn import AutoencoderTransformer, MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

_d = load_digits()
X_TR, X_TE, Y_TR, Y_TE = train_test_split(_d.data, _d.target, test_size=0.25, random_state=0, stratify=_d.target)


@pytest.fixture(autouse=True, scope="module")
def _single_threaded():
    with single_threaded():
        yield


def test_grid_search_over_a_pipeline():
    pipe = Pipeline([("scale", StandardScaler()), ("mlp", MLPClassifier(max_iter=30, learning_rate_init=0.01,
                                                                            random_state=0))])
    grid = {"mlp__hidden_layer_sizes": [(16,), (64,)], "mlp__alpha": [1e-4, 1.0]}
    search = GridSearchCV(pipe, grid, cv=3).fit(X_TR[:600], Y_TR[:600])
    assert search.cv_results_["mean_test_score"].shape == (4,)
    assert search.best_params_["mlp__hidden_layer_sizes"] == (64,)  # 16 units learn less in 30 epochs
    assert search.score(X_TE, Y_TE) > 0.9
    assert search.best_estimator_[-1].n_features_in_ == 64


def test_cross_val_score():
    scores = cross_val_score(make_pipeline(StandardScaler(), MLPClassifier(max_iter=30, random_state=0)),
                             X_TR, Y_TR, cv=4)
    assert scores.shape == (4,) and scores.min() > 0.9
    r2 = cross_val_score(MLPRegressor(max_iter=30, random_state=0), X_TR / 16, Y_TR / 9.0, cv=3)
    assert r2.min() > 0.6


def test_clone_is_unfitted_with_the_same_params():
    est = MLPClassifier(hidden_layer_sizes=[8], alpha=0.5, dropout=0.1, max_iter=2, random_state=0).fit(X_TR, Y_TR)
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    assert not hasattr(twin, "coefs_") and not hasattr(twin, "_model")


def test_autoencoder_replaces_pca_in_a_pipeline():
    """Codes of 16 units feed a linear classifier as PCA's 16 components do; the autoencoder's
    score is the explained variance, comparable to PCA's."""
    ae = AutoencoderTransformer(16, hidden_layer_sizes=(64,), max_iter=60, random_state=0)
    pipe = make_pipeline(StandardScaler(), ae, LogisticRegression(max_iter=300)).fit(X_TR, Y_TR)
    assert pipe.score(X_TE, Y_TE) > 0.85
    Z = pipe[:-1].transform(X_TE)
    assert Z.shape == (len(X_TE), 16) and Z.dtype == np.float64
    scaled = pipe[0].transform(X_TE)
    rec = ae.inverse_transform(Z)
    assert rec.shape == scaled.shape
    pca = PCA(16).fit(pipe[0].transform(X_TR))
    assert ae.score(scaled) > 0.5 * pca.explained_variance_ratio_.sum()
    assert list(ae.get_feature_names_out()[:2]) == ["autoencodertransformer0", "autoencodertransformer1"]


def test_float_dtypes():
    X, y = X_TR[:200] / 16, Y_TR[:200]
    est = MLPRegressor(max_iter=2, random_state=0).fit(X, y)
    assert est.coefs_[0].dtype == np.float32  # default: fusedops' float32 network
    assert est.predict(X).dtype == np.float64 and est.predict(X.astype(np.float32)).dtype == np.float32
    est64 = MLPRegressor(max_iter=2, random_state=0, dtype=None).fit(X, y)
    assert est64.coefs_[0].dtype == np.float64  # dtype=None keeps float64 input
    assert MLPRegressor(max_iter=2, dtype=None).fit(X.astype(np.float32), y).coefs_[0].dtype == np.float32
    proba = MLPClassifier(max_iter=2, random_state=0).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)


def test_sparse_input_is_rejected_and_inputs_are_not_modified():
    X, y = X_TR[:100].copy(), Y_TR[:100].copy()
    with pytest.raises(TypeError, match="dense data is required"):
        MLPClassifier(max_iter=2).fit(sparse.csr_matrix(X), y)
    est = MLPClassifier(max_iter=2, random_state=0).fit(X, y)
    np.testing.assert_array_equal(X, X_TR[:100])
    np.testing.assert_array_equal(y, Y_TR[:100])
    with pytest.raises(TypeError, match="dense data is required"):
        est.predict(sparse.csr_matrix(X))


def test_coefs_are_views_of_the_network():
    est = MLPRegressor(hidden_layer_sizes=(5,), max_iter=2, random_state=0).fit(X_TR / 16, Y_TR / 9.0)
    assert [c.shape for c in est.coefs_] == [(64, 5), (5, 1)] and [b.shape for b in est.intercepts_] == [(5,), (1,)]
    est.coefs_[1][...] = 0.0
    est.intercepts_[1][...] = 0.25
    np.testing.assert_array_equal(est.predict(X_TE[:7] / 16), np.full(7, 0.25))
    bn = MLPClassifier(hidden_layer_sizes=(6, 6), batchnorm=True, max_iter=1, random_state=0).fit(X_TR, Y_TR)
    assert bn.intercepts_[0] is None and bn.intercepts_[1] is None and bn.intercepts_[2].shape == (10,)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_extras_dropout_batchnorm_train_on_every_host_backend(backend):
    est = MLPClassifier(hidden_layer_sizes=(128,), dropout=0.1, batchnorm=True, l1=1e-5, max_iter=15,
                        random_state=0, backend=backend)
    est.fit(X_TR / 16, Y_TR)
    assert est.score(X_TE / 16, Y_TE) > 0.95


def test_l1_zeroes_more_weights_than_alpha_alone():
    kw = dict(hidden_layer_sizes=(32,), max_iter=20, random_state=0, solver="sgd", learning_rate_init=0.05)
    plain = MLPClassifier(**kw).fit(X_TR / 16, Y_TR)
    lasso = MLPClassifier(**kw, l1=1e-3).fit(X_TR / 16, Y_TR)
    small = [float(np.mean(np.abs(e.coefs_[0]) < 1e-3)) for e in (plain, lasso)]
    assert small[1] > small[0] + 0.1


@pytest.mark.parametrize("params, match", [
    (dict(solver="lbfgs"), "solver='lbfgs' is not supported"),
    (dict(solver="newton"), "solver must be one of"),
    (dict(activation="softmax"), "activation must be one of"),
    (dict(learning_rate="cosine"), "learning_rate must be one of"),
    (dict(alpha=-1.0), "alpha == -1.0, must be >= 0.0"),
    (dict(hidden_layer_sizes=(4, 0)), "hidden_layer_sizes\\[1\\] == 0, must be >= 1"),
    (dict(batch_size=0), "batch_size == 0, must be >= 1"),
    (dict(batch_size="max"), "batch_size must be one of"),
    (dict(beta_2=1.0), "beta_2 == 1.0, must be < 1.0"),
    (dict(dropout=1.0), "dropout == 1.0, must be < 1.0"),
    (dict(dtype="int8"), "dtype must be 'float32', 'float64' or None"),
    (dict(backend="tpu"), "backend must be one of"),
    (dict(state_dtype="int4"), "state_dtype must be one of"),
    (dict(state_dtype="int8", dtype="float64"), "state_dtype='int8' needs dtype='float32'"),
])
def test_bad_hyperparameters_raise_at_fit_naming_the_argument(params, match):
    est = MLPClassifier(**params)  # __init__ never raises (scikit-learn's rule)
    with pytest.raises(ValueError, match=match):
        est.fit(X_TR[:50], Y_TR[:50])
    assert not hasattr(est, "_model")


def test_lbfgs_has_no_partial_fit():
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    assert hasattr(MLPClassifier(), "partial_fit")


def test_other_errors():
    X, y = X_TR[:80], Y_TR[:80]
    with pytest.raises(ValueError, match="classes must be passed on the first call to partial_fit"):
        MLPClassifier().partial_fit(X, y)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        MLPRegressor(early_stopping=True).partial_fit(X, y)
    with pytest.raises(ValueError, match="loss='poisson' requires y >= 0"):
        MLPRegressor(loss="poisson").fit(X, y - 5.0)
    with pytest.raises(ValueError, match="loss='log_loss' needs output='sigmoid'"):
        AutoencoderTransformer(loss="log_loss").fit(X)
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=1, warm_start=True, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="hidden_layer_sizes changed from \\(8,\\) to \\(9,\\)"):
        est.set_params(hidden_layer_sizes=(9,)).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but MLPClassifier is expecting 64"):
        est.predict(X[:, :3])


def test_warm_start_may_switch_early_stopping():
    X, y = X_TR[:300] / 16, Y_TR[:300]
    est = MLPClassifier(max_iter=2, early_stopping=True, warm_start=True, random_state=0).fit(X, y)
    assert est.best_loss_ is None and len(est.validation_scores_) == 2
    est.set_params(early_stopping=False).fit(X, y)
    assert est.validation_scores_ is None and est.best_loss_ == min(est.loss_curve_[2:])
    est.set_params(early_stopping=True).fit(X, y)
    assert len(est.validation_scores_) == 2 and len(est.loss_curve_) == 6
    assert not hasattr(AutoencoderTransformer(solver="lbfgs"), "partial_fit")


@pytest.mark.parametrize("solver, state_dtype", [("adam", "int8"), ("sgd", "bfloat16")])
def test_low_bit_optimizer_state(solver, state_dtype):
    """state_dtype reaches the optimizer: 8-bit state for the first layer's 16384 weights (the
    tensors under min_8bit_size=4096 stay float32), 16-bit state for all 19210 parameters; the
    network learns as well."""
    kw = dict(hidden_layer_sizes=(256,), solver=solver, learning_rate_init=0.01 if solver == "adam"
              else 0.1, max_iter=15, random_state=0)
    full = MLPClassifier(**kw).fit(X_TR / 16, Y_TR)
    low = MLPClassifier(**kw, state_dtype=state_dtype).fit(X_TR / 16, Y_TR)
    n_low = 64 * 256 if state_dtype == "int8" else 64 * 256 + 256 + 256 * 10 + 10
    saved = full._model.optimizer.state_nbytes() - low._model.optimizer.state_nbytes()
    per_value = {"int8": 4 - (1 + 4 / 256), "bfloat16": 2}[state_dtype]  # bytes saved per value
    slots = 2 if solver == "adam" else 1
    assert saved == slots * n_low * per_value
    assert low.score(X_TE / 16, Y_TE) > full.score(X_TE / 16, Y_TE) - 0.02
    twin = pickle.loads(pickle.dumps(low))  # the 8-/16-bit state travels and continues exactly
    for est in (low, twin):
        est.set_params(warm_start=True, max_iter=1).fit(X_TR / 16, Y_TR)
    for a, b in zip(low.coefs_, twin.coefs_):
        np.testing.assert_array_equal(a, b)


def test_low_bit_adam_keeps_sklearns_epsilon():
    """scikit-learn's eps-hat (eps / sqrt(1 - beta2^t)) holds on the low-bit path too: with
    epsilon=1 the first step differs from PyTorch's placement by a factor of about 30."""
    from fusedops import optim
    from fusedops.sklearn._base import SklearnAdam

    g = np.linspace(-1, 1, 8192).astype(np.float32)
    steps = {}
    for name, cls, sdt in [("f32", SklearnAdam, "float32"), ("bf16", SklearnAdam, "bfloat16"),
                           ("torch", optim.Adam, "float32")]:
        w = np.zeros_like(g)
        cls([w], lr=1.0, eps=1.0, state_dtype=sdt).step([g])
        steps[name] = w
    np.testing.assert_allclose(steps["bf16"], steps["f32"], rtol=1e-2, atol=0)
    assert np.abs(steps["torch"]).max() > 10 * np.abs(steps["f32"]).max()
