"""scikit-learn estimators trained by fusedops' fused kernels (`pip install fusedops[sklearn]`).

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from fusedops.sklearn import MLPClassifier, MLPRegressor, AutoencoderTransformer

    clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(256, 256), random_state=0))
    clf.fit(X_train, y_train).score(X_test, y_test)

The estimators take scikit-learn's MLP arguments with its names and defaults, pass
scikit-learn's estimator checks, and work in Pipeline, GridSearchCV, cross_val_score, clone and
pickle. Dense input only: sparse X raises a TypeError (call `X.toarray()` first). X is cast to
float32 by default (`dtype=None` keeps float64). See README "scikit-learn" for the differences.
"""
try:
    import sklearn
except ImportError as exc:  # an optional extra
    raise ImportError(f"fusedops.sklearn needs scikit-learn ({exc}): pip install 'fusedops[sklearn]'") from None
if tuple(int(p) for p in sklearn.__version__.split(".")[:2] if p.isdigit()) < (1, 6):
    raise ImportError(f"fusedops.sklearn needs scikit-learn >= 1.6 (validate_data, estimator tags); "
                      f"found {sklearn.__version__}: pip install -U 'fusedops[sklearn]'")

from ._autoencoder import AutoencoderTransformer
from ._mlp import MLPClassifier, MLPRegressor

__all__ = ["AutoencoderTransformer", "MLPClassifier", "MLPRegressor"]
