"""Low-bit optimizer state and low-precision parameters: the NumPy specification.

8-bit blockwise state (DESIGN.md "Low-bit optimizer state"). A state buffer is cut into blocks
of BLOCK = 256 elements; each block stores one float32 scale (the largest finite |x| of the
block, or 0 when that is below FLT_MIN) and one byte per element, the element divided by the
scale and rounded onto an 8-bit floating-point grid whose top value is 1.0. Encoding and
decoding are integer operations on the float32 bit pattern of y = x * (1/scale):
- signed codes (first moments, momentum): bit 7 is the sign, bits 0-6 a magnitude k on the
  E4M3 grid (3 mantissa bits, ~15.6 octaves): 1 <= k <= 125 means the float32 with bits
  (k + 891) << 20, so k = 125 is 1.0 and k = 1 is 1.5 * 2^-16; k = 0 is a zero (of the code's
  sign). Magnitudes below the grid become 0 (a smaller first moment only shortens the step).
  k = 126 is +-Inf; k = 127 is NaN (written as 0x7F whatever the sign: NaN signs differ
  between compilers, which may swap the operands of a sum).
- unsigned codes (second moments): c in 0..253 on the E5M3 grid (~31.5 octaves): c >= 1 means
  the float32 with bits (c + 763) << 20, c = 253 is 1.0, c = 1 is 1.5 * 2^-32; c = 0 is
  exactly zero. A positive value below the grid becomes c = 1, never 0: a second moment
  rounded to zero would turn the step into lr * m / eps. 254 is +Inf, 255 NaN.
Rounding: add half a grid step to the bit pattern and truncate (round to nearest, ties away
from zero). No upper clamp is needed: |y| <= 1 + 2^-23 rounds to the top code. NaN and +-Inf
have codes of their own and stay out of the scale, so they act on their own element only, as
in a float32 step (a gradient whose square overflows leaves v = Inf and freezes its parameter,
as float32 Adam does). NaN payloads and signs are not part of the contract (GPUs canonicalize
them): every NaN equals every other in the tests.

Low-precision parameters: bfloat16 and float16 values travel as uint16 bit patterns. float32
-> bfloat16 / float16 rounds to nearest even (NumPy's and ml_dtypes' casts) or, with stochastic
rounding, adds random bits below the last kept bit and truncates: the result rounds up with
probability equal to the distance from the lower neighbour in ulps, so its mean is exact.
The random word of element i of parameter k at step t is word (i % 4) of Philox4x32-10 with
counter (i // 4, k, t low, t high) and key (seed low, seed high): the dropout contract with
element index k * 2^34 + i and offset t. bfloat16 uses its top 16 bits; float16 its top 13
bits for normal results and more for subnormal ones; below 2^-33 all 32 bits against the top bits
of the value (the round-up probability is the distance in ulps truncated to a multiple of 2^-32).

Every optimizer kernel here computes in float32 with scalars precomputed on the host (in
float64, rounded once to float32), products rounded before any sum (no fused multiply-add:
the GPU backend uses non-contractible multiplies), in the order written below; the Numba, C and
CUDA kernels perform the same operations and produce the same bits.
"""
import numpy as np

from .philox import philox_words

__all__ = ["BLOCK", "quantize_blocks", "dequantize_blocks", "round_params", "adam_lowbit",
           "sgd_lowbit", "rmsprop_lowbit"]

BLOCK = 256
SIGNED_OFFSET, SIGNED_INF, SIGNED_NAN = 891, 126, 127
UNSIGNED_OFFSET, UNSIGNED_INF, UNSIGNED_NAN = 763, 254, 255
HALF_STEP = 1 << 19  # half a grid step (3 mantissa bits) in float32 bit units
QNAN = 0x7FC00000  # ORed into a NaN code's grid bits: the decoded NaN
FLT_MIN = np.float32(np.finfo(np.float32).tiny)
PARAM_F32, PARAM_BF16, PARAM_F16 = 0, 1, 2  # pfmt: how `param` / `grad` arrays hold values
STATE_F32, STATE_BF16, STATE_Q8 = 0, 1, 2  # sfmt: float32, bfloat16 bits, 8-bit codes
_F32 = np.float32


def _bits(x):
    return np.ascontiguousarray(x, dtype=_F32).view(np.uint32).astype(np.int64)


def _from_bits(b):
    return np.asarray(b, dtype=np.int64).astype(np.uint32).view(_F32)


def encode_signed(y):
    """Codes (uint8) of y = x / scale (float32, |y| <= 1 up to rounding)."""
    b = _bits(y)
    a, sign = b & 0x7FFFFFFF, (b >> 24) & 0x80
    k = np.maximum((a + HALF_STEP) >> 20, SIGNED_OFFSET) - SIGNED_OFFSET
    special = np.where(a == 0x7F800000, SIGNED_INF | sign, SIGNED_NAN)
    return np.where(a >= 0x7F800000, special, k | sign).astype(np.uint8)


def decode_signed(code):
    """y (float32) of signed codes."""
    c = np.asarray(code, np.int64)
    k = c & 0x7F
    bits = np.where(k > 0, (k + SIGNED_OFFSET) << 20, 0)
    bits = np.where(k == SIGNED_INF, 0x7F800000, bits) | ((c & 0x80) << 24)
    return _from_bits(np.where(k == SIGNED_NAN, bits | QNAN, bits))


def encode_unsigned(y):
    """Codes (uint8) of y = x / scale >= 0."""
    a = _bits(y) & 0x7FFFFFFF
    c = np.maximum((a + HALF_STEP) >> 20, UNSIGNED_OFFSET + 1) - UNSIGNED_OFFSET
    c = np.where(a == 0, 0, c)
    special = np.where(a == 0x7F800000, UNSIGNED_INF, UNSIGNED_NAN)
    return np.where(a >= 0x7F800000, special, c).astype(np.uint8)


def decode_unsigned(code):
    c = np.asarray(code, np.int64)
    bits = np.where(c > 0, (c + UNSIGNED_OFFSET) << 20, 0)
    bits = np.where(c == UNSIGNED_INF, 0x7F800000, bits)
    return _from_bits(np.where(c == UNSIGNED_NAN, bits | QNAN, bits))


def _blocks(x):
    """x (n,) float32 -> (n_blocks, BLOCK) view of a zero-padded copy."""
    nb = -(-x.size // BLOCK)
    pad = np.zeros(nb * BLOCK, _F32)
    pad[:x.size] = x
    return pad.reshape(nb, BLOCK)


def block_scales(x):
    """Per block of x (float32): the largest finite |x|, or 0 when that is below FLT_MIN."""
    a = np.abs(_blocks(x))
    s = np.where(np.isfinite(a), a, _F32(0)).max(axis=1, initial=_F32(0)).astype(_F32)
    return np.where(s >= FLT_MIN, s, _F32(0)).astype(_F32)


def _encode(x, signed):
    """(codes, scales) of x (n,) float32."""
    scales = block_scales(x)
    inv = np.where(scales > 0, _F32(1) / np.where(scales > 0, scales, _F32(1)), _F32(0)).astype(_F32)
    y = (x * np.repeat(inv, BLOCK)[:x.size]).astype(_F32)
    return (encode_signed(y) if signed else encode_unsigned(y)), scales


def _decode(codes, scales, signed):
    y = decode_signed(codes) if signed else decode_unsigned(codes)
    return (y * np.repeat(scales, BLOCK)[:codes.size]).astype(_F32)


def quantize_blocks(codes, scales, x, signed):
    """codes (n,) uint8, scales (ceil(n/256),) float32 <- blockwise 8-bit codes of x (n,)."""
    c, s = _encode(np.asarray(x, _F32).reshape(-1), bool(signed))
    codes.reshape(-1)[...] = c
    scales[...] = s


def dequantize_blocks(out, codes, scales, signed):
    """out (n,) float32 <- the values of codes (n,) uint8 with scales (ceil(n/256),)."""
    out.reshape(-1)[...] = _decode(codes.reshape(-1), scales, bool(signed))


# --------------------------------------------------------------------------- half formats

def f32_to_bf16(x, r=None):
    """bfloat16 bits (uint16) of float32 x: nearest even, or stochastic with random words r.
    NaN becomes the canonical 0x7FC0 (float16: 0x7E00)."""
    b = _bits(x)
    a = b & 0x7FFFFFFF
    add = (0x7FFF + ((a >> 16) & 1)) if r is None else (np.asarray(r, np.int64) >> 16)
    h = ((a + add) >> 16) | ((b >> 16) & 0x8000)
    return np.where(a > 0x7F800000, 0x7FC0, h).astype(np.uint16)


def bf16_to_f32(h):
    return _from_bits(np.asarray(h, np.int64) << 16)


def f32_to_f16(x, r=None):
    """float16 bits of float32 x: nearest even (NumPy's cast), or stochastic with words r."""
    b = _bits(x)
    a, sign = b & 0x7FFFFFFF, (b >> 16) & 0x8000
    t = a - 0x38000000  # exponent rebased from 127 to 15
    rr = None if r is None else np.asarray(r, np.int64)
    normal = (t + (0xFFF + ((t >> 13) & 1) if rr is None else rr >> 19)) >> 13
    e = a >> 23  # subnormal float16 result: |x| = m * 2^(e - 150), in units of 2^-24: m >> s
    m = np.where(e > 0, (a & 0x7FFFFF) | 0x800000, a)
    s = np.where(e > 0, 126 - e, 125)
    if rr is None:
        sc = np.minimum(s, 40)
        sub = (m + (1 << (sc - 1)) - 1 + ((m >> sc) & 1)) >> sc
    else:
        # below 2^-33 (s > 32) the 32-bit word meets m's top bits: P(up) = floor(m / 2^(s-32))
        # / 2^32, not m / 2^32 (which rounded 1e-12 up 150x too often)
        sc = np.minimum(s, 32)
        sub = ((m >> (np.minimum(s, 63) - sc)) + (rr >> (32 - sc))) >> sc
    h = np.where(a >= 0x38800000, np.minimum(normal, 0x7C00), sub)
    h = np.where(a >= 0x47800000, 0x7C00, h)
    return np.where(a > 0x7F800000, 0x7E00, h | sign).astype(np.uint16)


def f16_to_f32(h):
    h = np.asarray(h, np.int64)
    sign, e, mant = (h & 0x8000) << 16, (h >> 10) & 0x1F, h & 0x3FF
    normal = _from_bits(sign | ((e + 112) << 23) | (mant << 13))
    special = _from_bits(sign | 0x7F800000 | (mant << 13))
    sub = (mant.astype(_F32) * _F32(2.0 ** -24)).astype(_F32)
    sub = np.where(sign != 0, -sub, sub)
    return np.where(e == 0x1F, special, np.where(e == 0, sub, normal)).astype(_F32)


def sr_words(n, seed, step, stream):
    """The rounding words (uint32-valued int64) of elements 0..n-1 of parameter `stream`."""
    blocks = np.arange(-(-n // 4), dtype=np.uint64)
    lo = np.uint64(0xFFFFFFFF)
    seed, step = np.uint64(seed), np.uint64(step)
    words = philox_words(blocks, np.uint64(stream), step & lo, step >> np.uint64(32),
                         seed & lo, seed >> np.uint64(32))
    return np.stack(words, axis=-1).reshape(-1)[:n].astype(np.int64)


def load_params(p, pfmt):
    """float32 values of a param / grad array held as float32 or uint16 bits."""
    p = p.reshape(-1)
    if pfmt == PARAM_F32:
        return p.astype(_F32)
    return bf16_to_f32(p) if pfmt == PARAM_BF16 else f16_to_f32(p)


def round_params(out, w, pfmt, seed, step, stream, sr):
    """out (uint16 bits, or float32) <- w (float32) rounded to format pfmt."""
    out = out.reshape(-1)
    if pfmt == PARAM_F32:
        out[...] = w
        return
    r = sr_words(w.size, seed, step, stream) if sr else None
    out[...] = f32_to_bf16(w, r) if pfmt == PARAM_BF16 else f32_to_f16(w, r)


# --------------------------------------------------------------------------- state slots

def _load_state(buf, scales, signed):
    """float32 values of a state buffer: float32, bfloat16 bits (uint16) or codes (uint8)."""
    if buf is None:
        return None
    buf = buf.reshape(-1)
    if buf.dtype == np.uint8:
        return _decode(buf, scales, signed)
    return bf16_to_f32(buf) if buf.dtype == np.uint16 else buf.astype(_F32)


def _store_state(buf, scales, x, signed):
    if buf is None:
        return
    buf = buf.reshape(-1)
    if buf.dtype == np.uint8:
        codes, s = _encode(x, signed)
        buf[...], scales[...] = codes, s
    else:
        buf[...] = f32_to_bf16(x) if buf.dtype == np.uint16 else x


def _load(p, w32, g, pfmt):
    w = load_params(p, pfmt) if w32 is None else w32.reshape(-1).astype(_F32)
    return w, load_params(g, pfmt)


def _store(p, w32, w, pfmt, seed, step, stream, sr):
    if w32 is not None:
        w32.reshape(-1)[...] = w
    round_params(p, w, pfmt, seed, step, stream, sr)


def _regularized(w, g, l2, l1):
    """g + l2*w + l1*sign(w), sign as a select (0 for 0 and NaN); g itself when l2 = l1 = 0
    (the terms are skipped, not added as zeros: -0 and non-finite w stay out of g')."""
    if l2 == 0 and l1 == 0:
        return g
    l1term = np.where(w > 0, l1, np.where(w < 0, -l1, _F32(0))).astype(_F32)
    return (g + l2 * w) + l1term


def _f32(*xs):
    return [_F32(x) for x in xs]


# --------------------------------------------------------------------------- optimizers

def adam_lowbit(p, w32, m, ms, v, vs, g, step_size, b1, omb1, b2, omb2, inv_c2, eps_in, eps_out,
                decay, l2, l1, pfmt, sfmt, seed, step, stream, sr):
    """Adam / AdamW in float32 on low-bit state: m = b1*m + (1-b1)*g'; v = b2*v + (1-b2)*g'^2;
    w = w*decay - step_size * (m / (sqrt(v*inv_c2 + eps_in) + eps_out)), step_size = lr/c1,
    inv_c2 = 1/c2. p: param (float32, or bf16/f16 bits per pfmt); w32: float32 master or None;
    m / v: float32, bfloat16 bits or codes with scales ms / vs (sfmt 0 / 1 / 2: what the dtypes
    say; the C kernels take it explicitly); g: grad like p. seed, step, stream, sr: the
    stochastic rounding of p (module docstring)."""
    step_size, b1, omb1, b2, omb2, inv_c2, eps_in, eps_out, decay, l2, l1 = _f32(
        step_size, b1, omb1, b2, omb2, inv_c2, eps_in, eps_out, decay, l2, l1)
    w, gv = _load(p, w32, g, pfmt)
    gr = _regularized(w, gv, l2, l1)
    mv = b1 * _load_state(m, ms, True) + omb1 * gr
    vv = b2 * _load_state(v, vs, False) + omb2 * (gr * gr)
    w = w * decay - step_size * (mv / (np.sqrt(vv * inv_c2 + eps_in) + eps_out))
    _store_state(m, ms, mv, True)
    _store_state(v, vs, vv, False)
    _store(p, w32, w, pfmt, seed, step, stream, sr)


def sgd_lowbit(p, w32, h, hs, g, lr, beta, cg, ch, l2, l1, pfmt, sfmt, seed, step, stream, sr):
    """SGD on low-bit state: without a buffer h, w -= lr*g'; with it, h = beta*h + g' and
    w -= lr*(cg*g' + ch*h) (cg, ch = 0, 1 for momentum; 1, beta for Nesterov)."""
    lr, beta, cg, ch, l2, l1 = _f32(lr, beta, cg, ch, l2, l1)
    w, gv = _load(p, w32, g, pfmt)
    gr = _regularized(w, gv, l2, l1)
    if h is None:
        w = w - lr * gr
    else:
        hv = beta * _load_state(h, hs, True) + gr
        w = w - lr * (cg * gr + ch * hv)
        _store_state(h, hs, hv, True)
    _store(p, w32, w, pfmt, seed, step, stream, sr)


def rmsprop_lowbit(p, w32, s, ss, h, hs, ga, gas, g, lr, alpha, oma, eps_in, eps_out, beta, l2,
                   l1, pfmt, sfmt, seed, step, stream, sr):
    """RMSprop on low-bit state: s = alpha*s + (1-alpha)*g'^2; centered (ga given): ga =
    alpha*ga + (1-alpha)*g' and the denominator uses s - ga^2; ratio = g'/(sqrt(. + eps_in) +
    eps_out); with h: h = beta*h + ratio, w -= lr*h; else w -= lr*ratio."""
    lr, alpha, oma, eps_in, eps_out, beta, l2, l1 = _f32(lr, alpha, oma, eps_in, eps_out, beta,
                                                         l2, l1)
    w, gv = _load(p, w32, g, pfmt)
    gr = _regularized(w, gv, l2, l1)
    sv = alpha * _load_state(s, ss, False) + oma * (gr * gr)
    avg = sv
    if ga is not None:
        gav = alpha * _load_state(ga, gas, True) + oma * gr
        avg = sv - gav * gav
        _store_state(ga, gas, gav, True)
    ratio = gr / (np.sqrt(avg + eps_in) + eps_out)
    if h is None:
        w = w - lr * ratio
    else:
        hv = beta * _load_state(h, hs, True) + ratio
        w = w - lr * hv
        _store_state(h, hs, hv, True)
    _store_state(s, ss, sv, False)
    _store(p, w32, w, pfmt, seed, step, stream, sr)
