"""scikit-learn's own estimator checks for the three estimators, default construction."""
import pytest

pytest.importorskip("sklearn")

from nn_helpers import single_threaded  # noqa: E402
from sklearn.utils.estimator_checks import check_methods_subset_invariance, parametrize_with_checks  # noqa: E402

from fusedops.sklearn import AutoencoderTransformer, MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

FLOAT32_SUBSETS = (
    "the network computes in float32 (dtype='float32', the default): one row goes through BLAS "
    "gemv and a batch through gemm, which add the products in different orders, so the codes "
    "differ by a float32 ulp or two (~2.4e-7) against the check's atol of 1e-7; with "
    "dtype='float64' the check passes (test_subset_invariance_in_float64)")


def expected_failures(estimator):
    if isinstance(estimator, AutoencoderTransformer):
        return {"check_methods_subset_invariance": FLOAT32_SUBSETS}
    return {}


@pytest.fixture(autouse=True, scope="module")
def _single_threaded():
    with single_threaded():
        yield


@parametrize_with_checks([MLPClassifier(), MLPRegressor(), AutoencoderTransformer()],
                         expected_failed_checks=expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_subset_invariance_in_float64():
    """The reason given for the one expected failure: in float64 the check passes."""
    check_methods_subset_invariance("AutoencoderTransformer", AutoencoderTransformer(dtype="float64"))
