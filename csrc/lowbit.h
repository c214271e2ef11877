/* The low-bit formats as header-only inline functions (reference/lowbit.py is the definition;
 * kernels/common/lowbit.py holds the same for Numba): the 8-bit block codes, float32 <->
 * bfloat16 / float16 with rounding to nearest even or stochastic rounding. Integer operations on
 * float32 bit patterns, selects and masks only, so every loop calling them vectorizes. */
#ifndef FUSEDOPS_LOWBIT_H
#define FUSEDOPS_LOWBIT_H
#include <math.h>
#include <stdint.h>
#include <string.h>

#define LB_BLOCK 256
#define LB_HALF_STEP 0x80000u
#define LB_S_OFFSET 891u /* signed E4M3: magnitude k -> bits (k + 891) << 20 */
#define LB_S_INF 126u
#define LB_S_NAN 127u
#define LB_U_OFFSET 763u /* unsigned E5M3: code c -> bits (c + 763) << 20 */
#define LB_U_INF 254u
#define LB_U_NAN 255u
#define LB_ABS 0x7FFFFFFFu
#define LB_EXP 0x7F800000u
#define LB_MIN_NORMAL 0x00800000u

enum { P_F32 = 0, P_BF16 = 1, P_F16 = 2 };   /* param / grad formats (pfmt) */
enum { S_F32 = 0, S_BF16 = 1, S_Q8 = 2 };    /* state formats (sfmt) */

static inline uint32_t f2u(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static inline float u2f(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

/* ---------------------------------------------------------------- 8-bit codes */
static inline uint32_t enc_s(float y) {
    uint32_t b = f2u(y), a = b & LB_ABS, sign = (b >> 24) & 0x80u, r = (a + LB_HALF_STEP) >> 20;
    uint32_t k = (r > LB_S_OFFSET ? r : LB_S_OFFSET) - LB_S_OFFSET;
    uint32_t special = a == LB_EXP ? (LB_S_INF | sign) : LB_S_NAN; /* one NaN code */
    return a >= LB_EXP ? special : (k | sign);
}

/* Decoding with masks, not selects: gcc if-converts neither `c > 0 ? x : 0` nor a select of
 * a NaN constant inside these loops ("control flow in loop"), but vectorizes and / or. The
 * NaN codes decode to the grid value's bits with the quiet-NaN exponent ORed in. */
static inline uint32_t mask(int cond) { return 0u - (uint32_t)cond; }

static inline float dec_s(uint32_t c) {
    uint32_t k = c & 0x7Fu, inf = mask(k == LB_S_INF);
    uint32_t bits = ((k + LB_S_OFFSET) << 20) & mask(k != 0);
    bits = ((bits & ~inf) | (LB_EXP & inf)) | ((c & 0x80u) << 24);
    return u2f(bits | (0x7FC00000u & mask(k == LB_S_NAN)));
}

static inline uint32_t enc_u(float y) {
    uint32_t a = f2u(y) & LB_ABS, r = (a + LB_HALF_STEP) >> 20;
    uint32_t c = (r > LB_U_OFFSET + 1 ? r : LB_U_OFFSET + 1) - LB_U_OFFSET;
    c = a == 0 ? 0u : c;
    uint32_t special = a == LB_EXP ? LB_U_INF : LB_U_NAN;
    return a >= LB_EXP ? special : c;
}

static inline float dec_u(uint32_t c) {
    uint32_t inf = mask(c == LB_U_INF);
    uint32_t bits = ((c + LB_U_OFFSET) << 20) & mask(c != 0);
    bits = (bits & ~inf) | (LB_EXP & inf);
    return u2f(bits | (0x7FC00000u & mask(c == LB_U_NAN)));
}

/* The same codes without the Inf / NaN cases, for blocks known to hold none (almost all):
 * a third of the step's instructions go to those selects otherwise. */
static inline uint32_t enc_s_finite(float y) {
    uint32_t b = f2u(y), r = ((b & LB_ABS) + LB_HALF_STEP) >> 20;
    return ((r > LB_S_OFFSET ? r : LB_S_OFFSET) - LB_S_OFFSET) | ((b >> 24) & 0x80u);
}

static inline float dec_s_finite(uint32_t c) {
    uint32_t k = c & 0x7Fu;
    return u2f((((k + LB_S_OFFSET) << 20) & mask(k != 0)) | ((c & 0x80u) << 24));
}

static inline uint32_t enc_u_finite(float y) {
    uint32_t a = f2u(y) & LB_ABS, r = (a + LB_HALF_STEP) >> 20;
    uint32_t c = (r > LB_U_OFFSET + 1 ? r : LB_U_OFFSET + 1) - LB_U_OFFSET;
    return a == 0 ? 0u : c;
}

static inline float dec_u_finite(uint32_t c) { return u2f(((c + LB_U_OFFSET) << 20) & mask(c != 0)); }

/* Whether a block's codes hold an Inf or NaN. */
static inline int has_special(const void *s, int64_t lo, int64_t len, int sf, int sgn) {
    if (sf != S_Q8 || !s) return 0;
    const uint8_t *q = (const uint8_t *)s + lo;
    uint32_t top = 0;
    for (int64_t j = 0; j < len; j++) {
        uint32_t c = sgn ? q[j] & 0x7Fu : q[j];
        top = c > top ? c : top;
    }
    return top >= (sgn ? LB_S_INF : LB_U_INF);
}

/* max of |x|'s bit patterns (integer order is float order for non-negative floats) */
static inline uint32_t amax(uint32_t acc, float x) {
    uint32_t a = f2u(x) & LB_ABS;
    return a > acc ? a : acc;
}

/* ---------------------------------------------------------------- half formats */
static inline uint32_t bf16_bits(float x, uint32_t r, int sr) {
    uint32_t b = f2u(x), a = b & LB_ABS;
    uint32_t add = sr ? r >> 16 : 0x7FFFu + ((a >> 16) & 1u);
    uint32_t h = ((a + add) >> 16) | ((b >> 16) & 0x8000u);
    return a > LB_EXP ? 0x7FC0u : h;
}

static inline uint32_t f16_bits(float x, uint32_t r, int sr) {
    uint32_t b = f2u(x), a = b & LB_ABS, t = a >= 0x38000000u ? a - 0x38000000u : 0u;
    uint32_t add = sr ? r >> 19 : 0xFFFu + ((t >> 13) & 1u);
    uint32_t normal = (t + add) >> 13;
    normal = normal > 0x7C00u ? 0x7C00u : normal;
    uint32_t e = a >> 23;
    e = e < 113u ? e : 113u; /* the subnormal result is used only for e <= 112 */
    uint32_t m = e > 0 ? ((a & 0x7FFFFFu) | 0x800000u) : a;
    uint32_t s = e > 0 ? 126u - e : 125u, sub;
    if (sr) {
        uint32_t d = s <= 32u ? 0u : s > 63u ? 31u : s - 32u; /* below 2^-33: r meets m's top bits */
        s = s > 32u ? 32u : s;
        sub = (uint32_t)(((uint64_t)(m >> d) + (uint64_t)(s == 32u ? r : r >> (32u - s))) >> s);
    } else {
        s = s > 40u ? 40u : s;
        sub = (uint32_t)(((uint64_t)m + (UINT64_C(1) << (s - 1)) - 1u + (((uint64_t)m >> s) & 1u)) >> s);
    }
    uint32_t h = a >= 0x38800000u ? normal : sub;
    h = a >= 0x47800000u ? 0x7C00u : h;
    h |= (b >> 16) & 0x8000u;
    return a > LB_EXP ? 0x7E00u : h;
}

static inline float f16_value(uint32_t h) {
    uint32_t sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    float normal = u2f(sign | ((e + 112u) << 23) | (mant << 13));
    float special = u2f(sign | LB_EXP | (mant << 13));
    float sub = (float)mant * 0x1p-24f;
    sub = sign ? -sub : sub;
    float v = e == 0 ? sub : normal;
    return e == 0x1Fu ? special : v;
}

#endif
