"""Training quality of the low-bit path against float32 Adam: the digits MLP (accuracy within 1
point), the autoencoder (test MSE within 10%), and an ill-conditioned quadratic
(the same minimum; pure bfloat16 gets there only with stochastic rounding)."""
import numpy as np
import pytest

from fusedops import optim
from fusedops.nn import limit_threads

ml_dtypes = pytest.importorskip("ml_dtypes")
pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits():
    from fusedops.data import load_digits

    return load_digits(test_size=0.2, seed=0)


def test_digits_mlp_int8_state_within_one_point(digits):
    from fusedops.nn import MLP

    Xtr, Xte, ytr, yte = digits
    acc = {}
    for sd in ("float32", "int8"):
        model = MLP([64, 256, 256, 10], seed=0)
        opt = optim.Adam(model.param_groups(), lr=2e-3, state_dtype=sd)
        model.fit(Xtr, ytr, epochs=25, batch_size=64, optimizer=opt)
        acc[sd] = model.score(Xte, yte)
    assert acc["float32"] > 0.97
    assert abs(acc["int8"] - acc["float32"]) <= 0.01, acc


def test_autoencoder_int8_state_mse_within_ten_percent(digits):
    from fusedops.nn import Autoencoder

    Xtr, Xte, _, _ = digits
    mse = {}
    for sd in ("float32", "int8"):
        ae = Autoencoder(64, hidden=(128,), latent_dim=16, seed=0)
        opt = optim.Adam(ae.param_groups(), lr=3e-3, state_dtype=sd)
        ae.fit(Xtr, epochs=30, batch_size=32, optimizer=opt)
        mse[sd] = ae.evaluate(Xte)["mse"]
    assert mse["float32"] < 0.01
    assert mse["int8"] <= 1.1 * mse["float32"], mse


def test_quadratic_reaches_the_float32_minimum():
    """sum c_i w_i^2 / 2 with curvatures over four decades interleaved in every 256-element
    block (linear 8-bit second moments diverge here), 1000 Adam steps from N(0, 1): 8-bit
    state, bfloat16 params with master weights, and pure bfloat16 (bfloat16 state) with
    stochastic rounding end within 4x of float32's loss (which jitters near 1e-7 between runs
    of a few steps); pure bfloat16 rounded to nearest stalls above 100x."""
    rng = np.random.default_rng(0)
    n = 1 << 14
    c = (10 ** rng.uniform(-3, 1, n)).astype(np.float32)
    w0 = rng.standard_normal(n).astype(np.float32)

    def final_loss(dtype=np.float32, **kw):
        w = w0.astype(dtype)
        opt = optim.Adam([w], lr=1e-2, **kw)
        with limit_threads(1):  # 16384 elements: a busy machine makes thread pools wait
            for _ in range(1000):
                opt.step([(c * w.astype(np.float32)).astype(dtype)])
        return float(0.5 * np.sum(c * w.astype(np.float64) ** 2) / n)

    bf16 = ml_dtypes.bfloat16
    f32 = final_loss()
    assert f32 < 1e-5
    assert final_loss(state_dtype="int8") < 4 * f32
    assert final_loss(bf16, master_weights=True, state_dtype="int8") < 4 * f32
    assert final_loss(bf16, state_dtype="bfloat16", stochastic_rounding=True, seed=1) < 4 * f32
    assert final_loss(bf16, state_dtype="bfloat16") > 100 * f32
