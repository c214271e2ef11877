"""AutoencoderTransformer: a (denoising) autoencoder as a scikit-learn transformer, usable in a
Pipeline where PCA would go (fusedops.nn.Autoencoder underneath)."""
from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.metrics import r2_score
from sklearn.utils import check_array, check_scalar
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import nn
from ._base import BaseNetwork, store_params
from ._params import choice

_FLOATS = (np.float64, np.float32)
_LOSSES = {"squared_error": "mse", "log_loss": "bce"}


class AutoencoderTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseNetwork):
    """Autoencoder input -> hidden_layer_sizes -> n_components (linear codes) -> mirrored hidden
    -> output; `transform` gives the codes, `inverse_transform` the reconstructions.

    Parameters
    ----------
    n_components : int, default=2
        Width of the code layer (the transformed features).
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Encoder hidden layers; the decoder mirrors them.
    activation : {'relu', 'tanh', 'logistic', 'identity'}, default='relu'
    output : {'linear', 'sigmoid'}, default='linear'
        'linear' for unbounded (e.g. standardized) data, 'sigmoid' for data in [0, 1].
    loss : {'squared_error', 'log_loss'}, default='squared_error'
        Mean squared error per element, or binary cross-entropy ('log_loss', needs
        output='sigmoid').
    noise : None, ('gaussian', std) or ('masking', p), default=None
        A denoising autoencoder: each training batch is corrupted afresh, the target stays clean.

    The training parameters (solver ... n_iter_no_change) are those of MLPClassifier and mean
    the same; the validation score of early_stopping is `score`. fusedops' extras: l1, dropout,
    batchnorm, backend, dtype, state_dtype, as in MLPClassifier. Weights start from fusedops.nn's He /
    Glorot initialization, seeded from random_state.

    Attributes: n_features_in_, feature_names_in_, n_iter_, t_, loss_, loss_curve_, best_loss_,
    validation_scores_, best_validation_score_.
    """

    def __init__(self, n_components=2, hidden_layer_sizes=(100,), activation="relu", *, output="linear",
                 loss="squared_error", noise=None, solver="adam", alpha=0.0001, batch_size="auto",
                 learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, l1=0.0, dropout=0.0, batchnorm=False,
                 backend=None, dtype="float32",
                 state_dtype="float32"):
        store_params(self, locals())

    def fit(self, X, y=None):
        """Train the autoencoder to reconstruct X. y is ignored. Returns self."""
        return self._fit(X, None, incremental=False)

    @available_if(BaseNetwork._stochastic)
    def partial_fit(self, X, y=None):
        """One epoch over X. y is ignored."""
        return self._fit(X, None, incremental=True)

    def _validate_input(self, X, y, p, incremental, reset):
        check_scalar(self.n_components, "n_components", Integral, min_val=1)
        choice("output", self.output, ("linear", "sigmoid"))
        choice("loss", self.loss, tuple(_LOSSES))
        if self.loss == "log_loss" and self.output != "sigmoid":
            raise ValueError("loss='log_loss' needs output='sigmoid' (targets in [0, 1])")
        X = validate_data(self, X, dtype=_FLOATS, reset=reset)
        dtype = self._model.dtype if not reset else (p.dtype or X.dtype)
        return X.astype(dtype, copy=False), None

    def _config(self, p, X, Y):
        return {**super()._config(p, X, Y), "n_components": int(self.n_components), "output": self.output,
                "loss": self.loss, "noise": self.noise, "dtype": p.dtype}

    def _build(self, p, X, Y, init):
        return nn.Autoencoder(X.shape[1], p.hidden, int(self.n_components), activation=p.activation,
                              output=self.output, loss=_LOSSES[self.loss], dropout=p.dropout,
                              batchnorm=p.batchnorm, noise=self.noise, seed=self._seed, backend=self.backend,
                              dtype=X.dtype)

    def _targets(self, Y):
        return None  # the autoencoder's target is X

    def _stratify(self, Y):
        return None

    def _val_score(self, X, Y):
        return self._explained_variance(X)

    def _explained_variance(self, X):
        rec = self._model.reconstruct(X)
        if not np.isfinite(rec).all():
            return np.nan
        return float(r2_score(X, rec, multioutput="variance_weighted"))

    def _validated_X(self, X):
        """(X in the network's dtype, the dtype of the outputs: the input's float dtype)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=_FLOATS, reset=False)
        return X.astype(self._model.dtype, copy=False), X.dtype

    def transform(self, X):
        """Codes (n_samples, n_components) of X, in X's float dtype."""
        X, dtype = self._validated_X(X)
        return self._model.encode(X).astype(dtype, copy=False)

    def inverse_transform(self, X):
        """Reconstructions (n_samples, n_features_in_) decoded from codes X (n_samples, n_components)."""
        check_is_fitted(self)
        Z = check_array(X, dtype=_FLOATS)
        return self._model.decode(Z.astype(self._model.dtype, copy=False)).astype(Z.dtype, copy=False)

    def score(self, X, y=None) -> float:
        """Fraction of X's variance the reconstruction explains, 1 - SSE/SST over all features
        (r2_score with multioutput='variance_weighted'; comparable to PCA's
        explained_variance_ratio_.sum())."""
        return self._explained_variance(self._validated_X(X)[0])

    @property
    def _n_features_out(self):
        return self._model.config["latent_dim"]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]  # outputs follow X's dtype
        return tags
