"""The NumPy specification of the low-bit formats (fusedops.reference.lowbit): round-trip error
bounds of the 8-bit blockwise codes, their edge cases, the bfloat16 / float16 conversions
against NumPy's and ml_dtypes' casts, and stochastic rounding (unbiased, reproducible)."""
import numpy as np
import pytest

from fusedops.reference import lowbit as R
from fusedops.reference.optim import adam_update

ml_dtypes = pytest.importorskip("ml_dtypes")


def roundtrip(x, signed):
    codes, scales = np.empty(x.size, np.uint8), np.empty(-(-x.size // 256), np.float32)
    R.quantize_blocks(codes, scales, x, signed)
    out = np.empty(x.size, np.float32)
    R.dequantize_blocks(out, codes, scales, signed)
    return out, codes, scales


def wide(n, seed=0, decades=6):
    """Values spread over `decades` orders of magnitude, both signs, random order."""
    rng = np.random.default_rng(seed)
    return (rng.choice([-1, 1], n) * 10.0 ** rng.uniform(-decades, 0, n)).astype(np.float32)


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_roundtrip_error_bound(signed):
    """3 mantissa bits, round to nearest: |error| <= 2^-4 relative inside the grid's range
    (16 octaves below the block max for signed codes, 32 for unsigned)."""
    x = wide(256 * 40)
    x = x if signed else np.abs(x)
    out, _, scales = roundtrip(x, signed)
    s = np.repeat(scales, 256)
    inside = np.abs(x) >= s * 2.0 ** (-15 if signed else -31)
    rel = np.abs(out - x)[inside] / np.abs(x)[inside]
    assert rel.max() <= 2.0 ** -4
    assert rel.mean() < 2.0 ** -5  # ~0.022 for log-uniform data (a 2-bit grid: ~0.043)
    assert np.all(np.sign(out[inside]) == np.sign(x[inside]))


def test_block_max_is_exact_and_scales_are_absmax():
    x = wide(1000, seed=1)
    out, codes, scales = roundtrip(x, True)
    blocks = np.abs(np.pad(x, (0, 24))).reshape(-1, 256)
    np.testing.assert_array_equal(scales, blocks.max(axis=1))
    top = np.abs(x) == np.repeat(scales, 256)[:x.size]
    np.testing.assert_array_equal(out[top], x[top])  # code 125 is 1.0 exactly
    assert set(np.unique(codes[top] & 0x7F)) == {125}


def test_below_the_grid_signed_flushes_unsigned_saturates():
    """A first moment below the grid becomes 0 (a shorter step); a positive second moment
    never becomes 0 (lr * m / eps would explode): it takes the smallest code."""
    x = np.zeros(256, np.float32)
    x[0], x[1], x[2] = 1.0, 1e-11, 0.0  # 1e-11 < 2^-32: below both grids
    x[3] = np.uint32(1).view(np.float32)  # the smallest subnormal (an odd bit pattern)
    s_out, s_codes, _ = roundtrip(x, True)
    u_out, u_codes, _ = roundtrip(x, False)
    assert s_out[1] == 0.0 and u_out[1] == np.float32(1.5 * 2.0 ** -32)
    assert u_codes[1] == 1 and u_codes[2] == 0 and u_out[2] == 0.0 and u_codes[3] == 1


def test_every_nan_payload_encodes_as_nan():
    """NaNs with the smallest and largest payloads (quiet or signalling, either sign) get the
    NaN code, not the Inf code next to them; in bfloat16 / float16 they stay NaN."""
    nans = np.array([0x7F800001, 0xFF800001, 0x7FBFFFFF, 0x7FFFFFFF], np.uint32).view(np.float32)
    inf = np.float32([np.inf])
    np.testing.assert_array_equal(R.encode_unsigned(nans), R.UNSIGNED_NAN)
    np.testing.assert_array_equal(R.encode_signed(nans), R.SIGNED_NAN)
    assert R.encode_unsigned(inf)[0] == R.UNSIGNED_INF and R.encode_signed(inf)[0] == R.SIGNED_INF
    assert np.isnan(R.bf16_to_f32(R.f32_to_bf16(nans))).all()
    assert np.isnan(R.f16_to_f32(R.f32_to_f16(nans))).all()


def test_nonfinite_values_keep_their_codes_and_stay_out_of_the_scale():
    x = np.linspace(-1, 1, 600).astype(np.float32)
    x[[3, 300]], x[400], x[401] = np.nan, np.inf, -np.inf
    for signed in (True, False):
        xs = x if signed else np.abs(x)
        out, codes, scales = roundtrip(xs, signed)
        assert np.isnan(out[[3, 300]]).all()
        assert out[400] == np.inf and out[401] == (-np.inf if signed else np.inf)
        fin = np.isfinite(xs)
        assert np.isfinite(out[fin]).all()
        assert scales[1] == np.abs(xs[256:512][np.isfinite(xs[256:512])]).max()


def test_zero_and_subnormal_blocks_store_scale_zero():
    x = np.zeros(512, np.float32)
    x[256:] = 1e-40  # subnormal: 1/scale would overflow
    out, codes, scales = roundtrip(x, True)
    assert (scales == 0).all() and (codes == 0).all() and (out == 0).all()


def test_ties_round_away_from_zero():
    """A value halfway between grid points 1.0 and 1.125 (times 2^-1) rounds up in magnitude."""
    x = np.zeros(256, np.float32)
    x[0] = 1.0
    x[1], x[2] = 0.5 * 1.0625, -0.5 * 1.0625  # halfway between 0.5 and 0.5625
    out, _, _ = roundtrip(x, True)
    assert out[1] == np.float32(0.5625) and out[2] == np.float32(-0.5625)


def test_bf16_and_f16_round_to_nearest_even_like_numpy():
    rng = np.random.default_rng(2)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    specials = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7F7FFFFF, 0x477FF000,
                         0x477FEFFF, 0x33000000, 0x33000001, 0x387FC000, 0x00000001], np.uint32)
    x = np.concatenate([bits, specials]).view(np.float32)
    for conv, dt in ((R.f32_to_bf16, ml_dtypes.bfloat16), (R.f32_to_f16, np.float16)):
        got = conv(x)
        with np.errstate(invalid="ignore", over="ignore"):
            want = x.astype(dt).view(np.uint16)
        nan = np.isnan(x)
        np.testing.assert_array_equal(got[~nan], want[~nan])
        assert np.isnan(got[nan].view(dt)).all()
    halves = np.arange(2**16, dtype=np.uint16)
    for back, dt in ((R.bf16_to_f32, ml_dtypes.bfloat16), (R.f16_to_f32, np.float16)):
        want = halves.view(dt).astype(np.float32)
        np.testing.assert_array_equal(back(halves), want)


@pytest.mark.parametrize("fmt", ["bfloat16", "float16"])
# none is a bf16 / f16; 1.3 * 2^-35: below 2^-33, where float16's word meets the value's top bits
@pytest.mark.parametrize("x0", [1.0 + 2**-12 + 2**-13, 3e-6, -7.77e3, 1.3 * 2**-35])
def test_stochastic_rounding_is_unbiased(fmt, x0):
    """The mean of stochastically rounded copies of x equals x (within 5 standard errors of a
    two-point distribution between x's neighbours), and both neighbours occur."""
    conv, back = {"bfloat16": (R.f32_to_bf16, R.bf16_to_f32),
                  "float16": (R.f32_to_f16, R.f16_to_f32)}[fmt]
    n = 40_000
    x = np.full(n, x0, np.float32)
    got = back(conv(x, R.sr_words(n, seed=5, step=1, stream=0))).astype(np.float64)
    lo, hi = got.min(), got.max()
    assert lo < x0 < hi and set(np.unique(got)) == {lo, hi}
    p = (x0 - lo) / (hi - lo)
    assert abs(got.mean() - x0) <= 5 * (hi - lo) * np.sqrt(p * (1 - p) / n)


def test_stochastic_rounding_is_deterministic_per_seed_step_and_stream():
    words = R.sr_words(1000, seed=1, step=3, stream=2)
    np.testing.assert_array_equal(words, R.sr_words(1000, seed=1, step=3, stream=2))
    for other in (R.sr_words(1000, 2, 3, 2), R.sr_words(1000, 1, 4, 2), R.sr_words(1000, 1, 3, 3)):
        assert np.mean(words == other) < 0.01
    # the dropout contract: element k * 2^34 + i of the Philox stream at offset = step
    from fusedops.reference.dropout import dropout_keep  # noqa: F401  (same Philox module)
    from fusedops.reference.philox import philox_words

    w = philox_words(np.uint64(0), np.uint64(2), np.uint64(3), np.uint64(0), np.uint64(1),
                     np.uint64(0))
    assert [int(v) for v in w] == [int(v) for v in words[:4]]


def test_float32_lowbit_adam_is_the_float32_step():
    """With float32 params and state the low-bit Adam is Adam: within a few float32 ulps of
    fusedops.reference.optim.adam_update (it multiplies by lr/c1 and 1/c2 where that divides)."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal(1000).astype(np.float32)
    w_ref, m_ref, v_ref = w.copy(), np.zeros_like(w), np.zeros_like(w)
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t in range(1, 6):
        g = rng.standard_normal(1000).astype(np.float32)
        c1, c2 = 1 - 0.9**t, 1 - 0.999**t
        adam_update(w_ref, m_ref, v_ref, None, g, 1e-2, 0.9, 0.999, 1e-8, False, 1.0, 0.0, 0.0, c1, c2)
        R.adam_lowbit(w, None, m, None, v, None, g, 1e-2 / c1, 0.9, 0.1, 0.999, 0.001, 1 / c2, 0.0,
                      1e-8, 1.0, 0.0, 0.0, 0, 0, 0, t, 0, False)
    np.testing.assert_array_max_ulp(w, w_ref, maxulp=8)
    np.testing.assert_array_max_ulp(v, v_ref, maxulp=2)
