"""Element bodies of the low-bit optimizer kernels (kernels/common/__init__.py), written once as
plain Python and compiled for each target by `build(prims)`: Numba CPU (kernels/cpu/lowbit.py),
Numba CUDA and the CUDA simulator (kernels/cuda/lowbit.py). The NumPy specification is
fusedops.reference.lowbit; every constant and the order of every float32 operation here follow
it. Unlike the other families, build takes more than `jit`: bit casts and non-fusing products
differ between the targets (below).

`prims` supplies what differs between targets:
  jit(fn)        the decorator (njit, cuda.jit(device=True, inline=True), or plain Python)
  f2i(x)         float32 -> its bit pattern as a uint32
  i2f(b)         the low 32 bits of an integer -> float32
  mul(a, b)      a*b rounded to float32, never fused into a following add (on the GPU this is
                 __fmul_rn: NVVM contracts a*b + c into an FMA by default, which would change
                 bits against the CPU backends and the reference)
  sqrt(x)        IEEE float32 square root
  philox(c0, c1, c2, c3, k0, k1)   Philox4x32-10 words (kernels/<target>/philox.py)

Optional arrays are None or an array; every use of an optional array sits in the `else` of an
`if <that array> is None` test, the form Numba prunes at compile time, so each combination of
formats compiles to straight-line code with no per-element format tests.

Integer values are bit patterns below 2^32, narrowed with np.uint32 after every operation (see
the 8-bit codes below).
"""
import numpy as np

BLOCK = 256
HALF_STEP = 0x80000
S_OFFSET, S_INF, S_NAN = 891, 126, 127  # signed E4M3 magnitudes (reference.lowbit)
U_OFFSET, U_INF, U_NAN = 763, 254, 255  # unsigned E5M3 codes
ABS, EXP, MIN_NORMAL, QNAN = 0x7FFFFFFF, 0x7F800000, 0x00800000, 0x7FC00000


def param_slots(p, pfmt):
    """The kernels' (float32, bfloat16 bits, float16 bits) arguments for a parameter or gradient
    of format pfmt: the array in its slot, None in the others."""
    return (p, None, None) if pfmt == 0 else ((None, p, None) if pfmt == 1 else (None, None, p))


def state_slots(s):
    """The kernels' (float32, bfloat16 bits, 8-bit codes) arguments for a state array (None:
    the slot is unused), by its dtype."""
    if s is None:
        return None, None, None
    if s.dtype == np.uint8:
        return None, None, s
    return (None, s, None) if s.dtype == np.uint16 else (s, None, None)


def rounding_words(seed, step, stream, sr):
    """None (round to nearest), or the stochastic-rounding words (key lo, key hi, stream,
    step lo, step hi) as a host uint64 (5,) array."""
    if not sr:
        return None
    lo, seed, step = 0xFFFFFFFF, int(seed), int(step)
    return np.array([seed & lo, seed >> 32, int(stream), step & lo, step >> 32], np.uint64)


def build(prims):
    """Compile the bodies with `prims`; returns a dict name -> compiled function."""
    jit, f2i, i2f, mul, sqrt, philox = (prims.jit, prims.f2i, prims.i2f, prims.mul, prims.sqrt,
                                        prims.philox)
    u32 = np.uint32
    zero, one = np.float32(0.0), np.float32(1.0)
    two_m24 = np.float32(2.0 ** -24)

    # ---------------------------------------------------------------- 8-bit codes
    # Integer values stay below 2^32 and every result is narrowed with u32() at once: Numba
    # widens integer arithmetic to 64 bits, and LLVM vectorizes 8 lanes of 32-bit operations
    # only when each 64-bit result is visibly truncated back (measured: 4x faster encoding).
    @jit
    def enc_s(y):
        """Signed E4M3 code of y (|y| <= 1 up to rounding): magnitude | sign bit."""
        b = f2i(y)
        a = u32(b & ABS)
        sign = u32((b >> 24) & 0x80)
        r = u32((a + HALF_STEP) >> 20)
        k = u32(u32(r if r > S_OFFSET else S_OFFSET) - S_OFFSET)  # max, then sub: 0..125
        special = u32(S_INF | sign) if a == EXP else u32(S_NAN)  # one NaN code: signs vary
        return special if a >= EXP else u32(k | sign)

    @jit
    def dec_s(c):
        """The grid value of code c (reference.lowbit); NaN codes give the grid bits with the
        quiet-NaN exponent ORed in, the same bits in every backend."""
        k = u32(c & 0x7F)
        bits = u32(u32(k + S_OFFSET) << 20) if k > 0 else u32(0)
        bits = u32(EXP) if k == S_INF else bits
        bits = u32(bits | u32(u32(c & 0x80) << 24))
        return i2f(u32(bits | QNAN) if k == S_NAN else bits)

    @jit
    def enc_u(y):
        """Unsigned E5M3 code of y >= 0: positive values never become 0."""
        a = u32(f2i(y) & ABS)
        r = u32((a + HALF_STEP) >> 20)
        c = u32(u32(r if r > U_OFFSET + 1 else U_OFFSET + 1) - U_OFFSET)  # 1..253
        c = u32(0) if a == 0 else c
        special = u32(U_INF) if a == EXP else u32(U_NAN)
        return special if a >= EXP else c

    @jit
    def dec_u(c):
        bits = u32(u32(c + U_OFFSET) << 20) if c > 0 else u32(0)
        bits = u32(EXP) if c == U_INF else bits
        return i2f(u32(bits | QNAN) if c == U_NAN else bits)

    # The same codes without the Inf / NaN cases, for blocks known to hold none: a third of
    # the CPU step's instructions go to those selects otherwise (kernels/cpu/lowbit.py).
    @jit
    def enc_s_finite(y):
        b = f2i(y)
        r = u32((u32(b & ABS) + HALF_STEP) >> 20)
        k = u32(u32(r if r > S_OFFSET else S_OFFSET) - S_OFFSET)
        return u32(k | u32((b >> 24) & 0x80))

    @jit
    def dec_s_finite(c):
        k = u32(c & 0x7F)
        bits = u32(u32(k + S_OFFSET) << 20) if k > 0 else u32(0)
        return i2f(u32(bits | u32(u32(c & 0x80) << 24)))

    @jit
    def enc_u_finite(y):
        a = u32(f2i(y) & ABS)
        r = u32((a + HALF_STEP) >> 20)
        c = u32(u32(r if r > U_OFFSET + 1 else U_OFFSET + 1) - U_OFFSET)
        return u32(0) if a == 0 else c

    @jit
    def dec_u_finite(c):
        return i2f(u32(u32(c + U_OFFSET) << 20) if c > 0 else u32(0))

    @jit
    def special_code(c, signed):
        """Whether 8-bit code c is Inf or NaN."""
        return u32(c & 0x7F) >= S_INF if signed else c >= U_INF

    @jit
    def amax(acc, x):
        """max(acc, bits of |x|): for non-negative floats integer order is float order, and an
        unsigned max reduction vectorizes (a float one needs fastmath's no-NaN flag). NaN and
        Inf bits are >= EXP: a block whose max reaches EXP takes amax_finite instead."""
        a = u32(f2i(x) & ABS)
        return a if a > acc else acc

    @jit
    def amax_finite(acc, x):
        """max(acc, bits of |x|) over finite x: NaN and Inf are left out of a block's scale."""
        a = u32(f2i(x) & ABS)
        a = a if a < EXP else u32(0)
        return a if a > acc else acc

    @jit
    def inverse(acc):
        """(scale, 1/scale) of a block whose largest finite |x| has bits acc; (0, 0) when that
        is below FLT_MIN (1/scale would overflow for subnormal scales)."""
        s = i2f(acc) if acc >= MIN_NORMAL else zero
        inv = one / (s if s > zero else one)
        return s, (inv if s > zero else zero)

    # ---------------------------------------------------------------- half formats
    @jit
    def bf16_bits(x, r, sr):
        """bfloat16 bits of x: nearest even, or with sr the top 16 bits of r added."""
        b = f2i(x)
        a = u32(b & ABS)  # rounding the magnitude: no carry out of 32 bits (NaN aside)
        add = u32(r >> 16) if sr else u32(0x7FFF + u32((a >> 16) & 1))
        h = u32(u32(u32(a + add) >> 16) | u32((b >> 16) & 0x8000))
        return u32(0x7FC0) if a > EXP else h

    @jit
    def f16_bits(x, r, sr):
        """float16 bits of x: nearest even, or stochastic with the random word r."""
        b = f2i(x)
        a = u32(b & ABS)
        t = u32(a - 0x38000000) if a >= 0x38000000 else u32(0)  # exponent rebased to 15
        add = u32(r >> 19) if sr else u32(0xFFF + u32((t >> 13) & 1))
        normal = u32(u32(t + add) >> 13)
        normal = u32(0x7C00) if normal > 0x7C00 else normal
        e = u32(a >> 23)
        e = e if e < 113 else u32(113)  # the subnormal result is used only for e <= 112
        m = u32(u32(a & 0x7FFFFF) | 0x800000) if e > 0 else a
        s = u32(126 - e) if e > 0 else u32(125)
        if sr:  # below 2^-33 (s > 32) r meets m's top bits (fusedops.reference.lowbit)
            d = u32(0) if s <= 32 else (u32(31) if s > 63 else u32(s - 32))
            s = u32(32) if s > 32 else s
            sub = u32((np.uint64(u32(m >> d)) + np.uint64(r >> (32 - s))) >> s)
        else:
            s = u32(40) if s > 40 else s
            sub = u32((np.uint64(m) + (np.uint64(1) << np.uint64(s - 1)) - np.uint64(1)
                       + ((np.uint64(m) >> s) & np.uint64(1))) >> s)
        h = normal if a >= 0x38800000 else sub
        h = u32(0x7C00) if a >= 0x47800000 else h
        h = u32(h | u32((b >> 16) & 0x8000))
        return u32(0x7E00) if a > EXP else h

    @jit
    def bf16_value(h):
        return i2f(u32(u32(h) << 16))

    @jit
    def f16_value(h):
        sign, e, mant = u32(u32(h & 0x8000) << 16), u32((h >> 10) & 0x1F), u32(h & 0x3FF)
        normal = i2f(u32(u32(sign | u32(u32(e + 112) << 23)) | u32(mant << 13)))
        special = i2f(u32(u32(sign | EXP) | u32(mant << 13)))
        sub = mul(np.float32(mant), two_m24)
        sub = -sub if sign != 0 else sub
        v = sub if e == 0 else normal
        return special if e == 0x1F else v

    # ---------------------------------------------------------------- loads and stores
    @jit
    def load_param(pf, pb, ph, w32, i):
        """float32 value of element i: master copy, else the param (float32 / bf16 / f16)."""
        w = zero
        if w32 is None:
            if pf is None:
                if pb is None:
                    if ph is None:
                        w = zero
                    else:
                        w = f16_value(u32(ph[i]))
                else:
                    w = bf16_value(u32(pb[i]))
            else:
                w = pf[i]
        else:
            w = w32[i]
        return w

    @jit
    def load_grad(gf, gb, gh, i):
        return load_param(gf, gb, gh, None, i)

    @jit
    def load_state(sf, sb, sq, scale, signed, i):
        """float32 value of state element i: float32, bfloat16 bits or an 8-bit code * scale."""
        x = zero
        if sq is None:
            if sb is None:
                if sf is None:
                    x = zero
                else:
                    x = sf[i]
            else:
                x = bf16_value(u32(sb[i]))
        else:
            c = u32(sq[i])
            x = mul(dec_s(c) if signed else dec_u(c), scale)
        return x

    @jit
    def load_state_finite(sf, sb, sq, scale, signed, i):
        """load_state for a block whose 8-bit codes hold no Inf / NaN (the same values)."""
        x = zero
        if sq is None:
            x = load_state(sf, sb, sq, scale, signed, i)
        else:
            c = u32(sq[i])
            x = mul(dec_s_finite(c) if signed else dec_u_finite(c), scale)
        return x

    @jit
    def store_state(sf, sb, sq, x, inv, signed, i):
        """Write state element i from its float32 value (inv: 1/scale of its block)."""
        if sq is None:
            if sb is None:
                if sf is None:
                    pass
                else:
                    sf[i] = x
            else:
                sb[i] = np.uint16(bf16_bits(x, u32(0), False))
        else:
            y = mul(x, inv)
            sq[i] = np.uint8(enc_s(y) if signed else enc_u(y))

    @jit
    def store_param(pf, pb, ph, w32, x, r, sr, i):
        """Write element i of the master copy and of the param (rounded, maybe stochastically)."""
        if w32 is None:
            pass
        else:
            w32[i] = x
        if pf is None:
            if pb is None:
                if ph is None:
                    pass
                else:
                    ph[i] = np.uint16(f16_bits(x, r, sr))
            else:
                pb[i] = np.uint16(bf16_bits(x, r, sr))
        else:
            pf[i] = x

    @jit
    def rounding_word(q, k0, k1, stream, o0, o1, e):
        """Word e of Philox block q of the stochastic-rounding stream (reference.lowbit)."""
        w0, w1, w2, w3 = philox(np.uint64(q), np.uint64(stream), o0, o1, k0, k1)
        w = w0 if e == 0 else (w1 if e == 1 else (w2 if e == 2 else w3))
        return u32(w)

    # ---------------------------------------------------------------- optimizer updates
    @jit
    def regularized(w, g, reg):
        """g + l2*w + l1*sign(w) with reg = (l2, l1), or g when reg is None (both 0: the
        reference skips the terms too, and the kernels compile them away)."""
        if reg is None:
            return g
        else:
            l2, l1 = reg
            t = l1 if w > zero else zero
            t = -l1 if w < zero else t
            return (g + mul(l2, w)) + t

    @jit
    def adam(w, g, m, v, step_size, b1, omb1, b2, omb2, inv_c2, eps_in, eps_out, decay, reg):
        gr = regularized(w, g, reg)
        m = mul(b1, m) + mul(omb1, gr)
        v = mul(b2, v) + mul(omb2, mul(gr, gr))
        d = sqrt(mul(v, inv_c2) + eps_in) + eps_out
        return mul(w, decay) - mul(step_size, m / d), m, v

    @jit
    def sgd(w, g, h, lr, beta, cg, ch, reg, has_h):
        gr = regularized(w, g, reg)
        if has_h:
            h = mul(beta, h) + gr
            return w - mul(lr, mul(cg, gr) + mul(ch, h)), h
        return w - mul(lr, gr), h

    @jit
    def rmsprop(w, g, s, h, ga, lr, alpha, oma, eps_in, eps_out, beta, reg, has_h, has_ga):
        gr = regularized(w, g, reg)
        s = mul(alpha, s) + mul(oma, mul(gr, gr))
        avg = s
        if has_ga:
            ga = mul(alpha, ga) + mul(oma, gr)
            avg = s - mul(ga, ga)
        ratio = gr / (sqrt(avg + eps_in) + eps_out)
        if has_h:
            h = mul(beta, h) + ratio
            return w - mul(lr, h), s, h, ga
        return w - mul(lr, ratio), s, h, ga

    @jit
    def scale_of(scales, blk):
        """Block blk's scale; 0 for state without scales (float32 / bfloat16: scales is None)."""
        s = np.float32(0.0)
        if scales is None:
            pass
        else:
            s = scales[blk]
        return s

    return {k: v for k, v in locals().items() if callable(v) and k not in (
        "jit", "f2i", "i2f", "mul", "sqrt", "philox")}
