"""Inf and NaN gradients: every backend computes what the NumPy reference computes, for every
optimizer and option. A non-finite gradient must poison exactly the elements the formula says
(the same NaNs, the same signed infinities) and leave the others' values as in a finite step;
a kernel that rewrites the formula (heavy-ball momentum as `0*g + 1*h`, a max that drops NaN,
a reciprocal square root) passes every finite test and fails here."""
import numpy as np
import pytest
from conftest import SIM
from optim_cases import CASES, bound, case_id, gradients, initial, references, run

STEPS = 3
# NumPy warns about the inf - inf and 0 * inf the reference computes from these inputs
pytestmark = [pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")]


def _poisoned(n, dtype):
    """(clean gradients, the same with +inf, -inf and NaN at different elements in different
    steps); the last step is finite everywhere, so state that holds inf or NaN must go on as
    the reference's does."""
    clean = gradients(n, STEPS, dtype)
    gs = clean.copy()
    gs[0, 1::9], gs[0, 2::9], gs[0, 3::9] = np.inf, -np.inf, np.nan
    gs[1, 5::9], gs[1, 6::9] = -np.inf, np.nan
    return clean, gs


@pytest.mark.parametrize("reg", ["none", "elastic"])
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_nonfinite_gradients_match_reference(case, reg, kernel_backend, dtype):
    """After every step (a later step can turn a wrong -inf into the reference's NaN): the
    poisoned elements hold the reference's NaNs and signed infinities, and its values where it
    is finite; every other element has the bits the same backend computes from the clean
    gradients (the update is elementwise: nothing may leak into a neighbour through a SIMD
    block or a shared temporary)."""
    # 1031: past the C kernels' 512-element blocks (their tail loop and SIMD square roots)
    for n in [67] if kernel_backend == "cuda" and SIM else [67, 1031]:
        w = initial(n, dtype)
        clean, grads = _poisoned(n, dtype)
        for steps in range(1, STEPS + 1):
            hit = ~np.isfinite(grads[:steps]).all(axis=0)  # the elements poisoned so far
            got = run(case, reg, kernel_backend, w, grads[:steps])
            base = run(case, reg, kernel_backend, w, clean[:steps])
            ref = run(case, reg, "numpy", w, grads[:steps])
            truth, _, peaks = references(case, reg, w, grads[:steps])
            for name, r in ref.items():
                g, where = got[name], f"{name} after step {steps}, n={n}"
                np.testing.assert_array_equal(g[~hit], base[name][~hit], err_msg=where)
                np.testing.assert_array_equal(np.isnan(g), np.isnan(r), err_msg=where)
                inf = np.isinf(r)
                np.testing.assert_array_equal(g[inf], r[inf], err_msg=where)
                ok = hit & np.isfinite(r)
                err = np.abs(g[ok] - truth[name][ok])
                assert np.all(err <= bound(dtype, truth[name][ok], r[ok], peaks[name][ok])), where
            assert not np.isfinite(ref["param"][hit]).any(), "the poison reaches every hit param"
