/* Low-bit optimizer steps: 8-bit blockwise / bfloat16 / float32 state, float32 / bfloat16 /
 * float16 parameters with an optional float32 master copy and stochastic rounding. The
 * specification is reference/lowbit.py; kernels/common/lowbit.py holds the same element bodies
 * for Numba, and every function below performs the same float32 operations in the same order
 * (built with -ffp-contract=off: no fused multiply-add), so all backends give the same bits.
 *
 * Structure (one OpenMP pass over blocks of 256 elements, each block in L1 buffers):
 *   A  load w (master or param) and g, decode the state, update; float32 / bf16 state is
 *      written at once, 8-bit slots keep their new values and the max of their bit patterns;
 *   B  encode each 8-bit slot against its block's new scale;
 *   C  write the master copy and the parameter (round to nearest even, or stochastically with
 *      one Philox block per 4 elements).
 * The formats are template parameters: each entry point switches once to a static inline
 * instance with constant formats, so every loop is branch-free and gcc vectorizes A, B and C
 * (check: -fopt-info-vec; the sqrtf loops need -fno-math-errno, see build_ffi.py). Nothing
 * here depends on -march: the code is portable C11 that
 * gcc vectorizes for whatever target it is given, so runtime dispatch can wrap the entry
 * points (gcc's target_clones("default", "avx2", "arch=x86-64-v4")) without touching them. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>
#include "fusedops.h"
#include "lowbit.h"
#include "philox.h"

#define LB_PAR_MIN 32768 /* below this a parallel region costs more than it saves */

/* ---------------------------------------------------------------- loads and stores */
static inline float load_param(const void *p, int64_t i, int pf) {
    if (pf == P_F32) return ((const float *)p)[i];
    uint32_t h = ((const uint16_t *)p)[i];
    return pf == P_BF16 ? u2f(h << 16) : f16_value(h);
}

static inline void store_param(void *p, float *w32, int64_t i, float x, uint32_t r, int sr,
                               int pf) {
    if (w32) w32[i] = x;
    if (pf == P_F32) ((float *)p)[i] = x;
    else if (pf == P_BF16) ((uint16_t *)p)[i] = (uint16_t)bf16_bits(x, r, sr);
    else ((uint16_t *)p)[i] = (uint16_t)f16_bits(x, r, sr);
}

/* fin: the block holds no Inf / NaN codes (a template constant) */
static inline float load_state(const void *s, float scale, int64_t i, int sf, int sgn, int fin) {
    if (sf == S_F32) return ((const float *)s)[i];
    if (sf == S_BF16) return u2f((uint32_t)((const uint16_t *)s)[i] << 16);
    uint32_t c = ((const uint8_t *)s)[i];
    if (fin) return (sgn ? dec_s_finite(c) : dec_u_finite(c)) * scale;
    return (sgn ? dec_s(c) : dec_u(c)) * scale;
}

/* float32 / bf16 state at once (pass A); 8-bit state waits for pass B */
static inline void store_now(void *s, int64_t i, float x, int sf) {
    if (sf == S_F32) ((float *)s)[i] = x;
    else if (sf == S_BF16) ((uint16_t *)s)[i] = (uint16_t)bf16_bits(x, 0, 0);
}

/* Pass B for one 8-bit slot: scale = the largest finite |x| of the block (0 below FLT_MIN),
 * then the codes of x * (1/scale). acc is the max of the bit patterns; when it reaches EXP a
 * NaN or Inf is in the block (rare) and the finite max is taken again. */
static inline void encode_block(uint8_t *q, float *scales, int64_t blk, const float *buf,
                                int64_t lo, int64_t len, uint32_t acc, int sgn) {
    uint8_t *qo = q + lo;
    if (acc < LB_EXP) { /* every value finite: codes without the Inf / NaN cases */
        float s = acc >= LB_MIN_NORMAL ? u2f(acc) : 0.0f;
        float inv = s > 0.0f ? 1.0f / s : 0.0f;
        scales[blk] = s;
        if (sgn)
            for (int64_t j = 0; j < len; j++) qo[j] = (uint8_t)enc_s_finite(buf[j] * inv);
        else
            for (int64_t j = 0; j < len; j++) qo[j] = (uint8_t)enc_u_finite(buf[j] * inv);
        return;
    }
    {
        acc = 0;
        for (int64_t j = 0; j < len; j++) {
            uint32_t a = f2u(buf[j]) & LB_ABS;
            a = a < LB_EXP ? a : 0u;
            acc = a > acc ? a : acc;
        }
    }
    float s = acc >= LB_MIN_NORMAL ? u2f(acc) : 0.0f;
    float inv = s > 0.0f ? 1.0f / s : 0.0f;
    scales[blk] = s;
    if (sgn)
        for (int64_t j = 0; j < len; j++) qo[j] = (uint8_t)enc_s(buf[j] * inv);
    else
        for (int64_t j = 0; j < len; j++) qo[j] = (uint8_t)enc_u(buf[j] * inv);
}

/* Pass C: master copy and parameter from buf; with sr, element lo + j takes word j % 4 of
 * Philox block (lo + j) / 4 of counter (., stream, step lo, step hi) under key seed. */
static inline void write_params(void *p, float *w32, const float *buf, int64_t lo, int64_t len,
                                const uint32_t *rng, int pf) {
    if (!rng) {
        for (int64_t j = 0; j < len; j++) store_param(p, w32, lo + j, buf[j], 0, 0, pf);
        return;
    }
    for (int64_t q = 0; 4 * q < len; q++) {
        uint64_t blk = (uint64_t)(lo >> 2) + (uint64_t)q;
        fo_philox_words c = {(uint32_t)blk, rng[2], rng[3], rng[4]};
        fo_philox_words w = fo_philox4x32_10(c, rng[0], rng[1]);
        uint32_t words[4] = {w.w0, w.w1, w.w2, w.w3};
        for (int64_t e = 0; e < 4 && 4 * q + e < len; e++)
            store_param(p, w32, lo + 4 * q + e, buf[4 * q + e], words[e], 1, pf);
    }
}

#define LB_CHUNKS(n) (((n) + LB_BLOCK - 1) / LB_BLOCK)

/* Everything a kernel needs, gathered once per call. */
typedef struct {
    void *p;          /* param (n,): float32, or bfloat16 / float16 bits */
    float *w32;       /* float32 master copy (n,) or NULL */
    void *s[3];       /* state slots: float32, bfloat16 bits or 8-bit codes; NULL if unused */
    float *sc[3];     /* per-block scales of 8-bit slots */
    const void *g;    /* grad, like p */
    int64_t n;
    float k[8];       /* the optimizer's float32 constants, in kernel order */
    int sgn[3];       /* whether slot k holds signed codes */
    float l2, l1;     /* regularization; has_reg = 0 when both are 0 (terms skipped) */
    int has_reg;
    const uint32_t *rng; /* (key lo, key hi, stream, step lo, step hi), or NULL: nearest */
} lb_args;

/* has_reg is a template constant: gcc (with the default -ftrapping-math) will not if-convert
 * a runtime `has_reg ? g + l2*w + t : g`, and the branch stops the loop from vectorizing. */
static inline float regularized(float w, float g, int has_reg, float l2, float l1) {
    if (!has_reg) return g;
    float t = w > 0.0f ? l1 : 0.0f;
    t = w < 0.0f ? -l1 : t;
    return (g + l2 * w) + t;
}

/* The block's range and the call's fields as locals: gcc then knows that no store in the
 * loops (some through uint8_t *, which may alias anything) changes them, so the loops
 * vectorize without reloading and the has_reg test is hoisted out of them. */
#define LB_BLOCK_BEGIN                                                                  \
    int64_t lo = blk * LB_BLOCK, len = a->n - lo < LB_BLOCK ? a->n - lo : LB_BLOCK;    \
    void *const p = a->p;                                                             \
    float *const w32 = a->w32;                                                        \
    const void *const g = a->g;                                                       \
    void *const s0 = a->s[0], *const s1 = a->s[1], *const s2 = a->s[2];               \
    const float l2 = a->l2, l1 = a->l1;                                               \
    float bw[LB_BLOCK];                                                               \
    (void)s1, (void)s2;
#define LB_LOAD_W(i) (master ? w32[i] : load_param(p, i, pf))
#define LB_GRAD(w, i) regularized(w, load_param(g, i, pf), has_reg, l2, l1)

/* One block of Adam: k = (step_size, b1, omb1, b2, omb2, inv_c2, eps_in, eps_out). */
static inline __attribute__((always_inline)) void adam_block(const lb_args *a, float decay,
                                                             int64_t blk, int pf, int sf,
                                                             int master, int has_reg, int fin) {
    LB_BLOCK_BEGIN
    float bm[LB_BLOCK], bv[LB_BLOCK];
    const float step_size = a->k[0], b1 = a->k[1], omb1 = a->k[2], b2 = a->k[3],
                omb2 = a->k[4], inv_c2 = a->k[5], eps_in = a->k[6], eps_out = a->k[7];
    float sm = sf == S_Q8 ? a->sc[0][blk] : 0.0f, sv = sf == S_Q8 ? a->sc[1][blk] : 0.0f;
    uint32_t am = 0, av = 0;
    for (int64_t j = 0; j < len; j++) {
        int64_t i = lo + j;
        float w = LB_LOAD_W(i), gr = LB_GRAD(w, i);
        float m = b1 * load_state(s0, sm, i, sf, 1, fin) + omb1 * gr;
        float v = b2 * load_state(s1, sv, i, sf, 0, fin) + omb2 * (gr * gr);
        float d = sqrtf(v * inv_c2 + eps_in) + eps_out;
        bw[j] = w * decay - step_size * (m / d);
        store_now(s0, i, m, sf);
        store_now(s1, i, v, sf);
        bm[j] = m;
        bv[j] = v;
        am = amax(am, m);
        av = amax(av, v);
    }
    if (sf == S_Q8) {
        encode_block((uint8_t *)s0, a->sc[0], blk, bm, lo, len, am, 1);
        encode_block((uint8_t *)s1, a->sc[1], blk, bv, lo, len, av, 0);
    }
    write_params(p, master ? w32 : NULL, bw, lo, len, a->rng, pf);
}

/* SGD: k = (lr, beta, cg, ch); slot 0 the momentum buffer (NULL without momentum). */
static inline __attribute__((always_inline)) void sgd_block(const lb_args *a, int64_t blk, int pf,
                                                            int sf, int master, int has_reg,
                                                            int fin, int has_h) {
    LB_BLOCK_BEGIN
    float bh[LB_BLOCK];
    const float lr = a->k[0], beta = a->k[1], cg = a->k[2], ch = a->k[3];
    float sh = has_h && sf == S_Q8 ? a->sc[0][blk] : 0.0f;
    uint32_t ah = 0;
    for (int64_t j = 0; j < len; j++) {
        int64_t i = lo + j;
        float w = LB_LOAD_W(i), gr = LB_GRAD(w, i);
        if (has_h) {
            float h = beta * load_state(s0, sh, i, sf, 1, fin) + gr;
            bw[j] = w - lr * (cg * gr + ch * h);
            store_now(s0, i, h, sf);
            bh[j] = h;
            ah = amax(ah, h);
        } else {
            bw[j] = w - lr * gr;
        }
    }
    if (has_h && sf == S_Q8) encode_block((uint8_t *)s0, a->sc[0], blk, bh, lo, len, ah, 1);
    write_params(p, master ? w32 : NULL, bw, lo, len, a->rng, pf);
}

/* RMSprop: k = (lr, alpha, oma, eps_in, eps_out, beta); slots: square_avg, momentum buffer,
 * centered average (the last two NULL when unused). */
static inline __attribute__((always_inline)) void rmsprop_block(const lb_args *a, int64_t blk,
                                                                int pf, int sf, int master,
                                                                int has_reg, int fin,
                                                                int has_h, int has_a) {
    LB_BLOCK_BEGIN
    float bs[LB_BLOCK], bh[LB_BLOCK], ba[LB_BLOCK];
    const float lr = a->k[0], alpha = a->k[1], oma = a->k[2], eps_in = a->k[3],
                eps_out = a->k[4], beta = a->k[5];
    int q8 = sf == S_Q8;
    float ss = q8 ? a->sc[0][blk] : 0.0f, sh = q8 && has_h ? a->sc[1][blk] : 0.0f;
    float sa = q8 && has_a ? a->sc[2][blk] : 0.0f;
    uint32_t ms = 0, mh = 0, ma = 0;
    for (int64_t j = 0; j < len; j++) {
        int64_t i = lo + j;
        float w = LB_LOAD_W(i), gr = LB_GRAD(w, i);
        float s = alpha * load_state(s0, ss, i, sf, 0, fin) + oma * (gr * gr), avg = s;
        if (has_a) {
            float ga = alpha * load_state(s2, sa, i, sf, 1, fin) + oma * gr;
            avg = s - ga * ga;
            store_now(s2, i, ga, sf);
            ba[j] = ga;
            ma = amax(ma, ga);
        }
        float ratio = gr / (sqrtf(avg + eps_in) + eps_out);
        if (has_h) {
            float h = beta * load_state(s1, sh, i, sf, 1, fin) + ratio;
            bw[j] = w - lr * h;
            store_now(s1, i, h, sf);
            bh[j] = h;
            mh = amax(mh, h);
        } else {
            bw[j] = w - lr * ratio;
        }
        store_now(s0, i, s, sf);
        bs[j] = s;
        ms = amax(ms, s);
    }
    if (q8) {
        encode_block((uint8_t *)s0, a->sc[0], blk, bs, lo, len, ms, 0);
        if (has_h) encode_block((uint8_t *)s1, a->sc[1], blk, bh, lo, len, mh, 1);
        if (has_a) encode_block((uint8_t *)s2, a->sc[2], blk, ba, lo, len, ma, 1);
    }
    write_params(p, master ? w32 : NULL, bw, lo, len, a->rng, pf);
}

/* Run BLOCK_CALL for every block with constant formats PF, SF, MASTER, regularization on or
 * off, and the finite decoding for blocks without Inf / NaN codes: one parallel loop over
 * blocks (static schedule) above LB_PAR_MIN elements, a serial one below. */
#define LB_FORMATS(PF, SF, MASTER, BLOCK_CALL)                                          \
    do {                                                                               \
        int64_t nb_ = LB_CHUNKS(a->n);                                                 \
        _Pragma("omp parallel for schedule(static) if(a->n >= LB_PAR_MIN)")            \
        for (int64_t blk = 0; blk < nb_; blk++) {                                      \
            int64_t lo_ = blk * LB_BLOCK;                                              \
            int64_t len_ = a->n - lo_ < LB_BLOCK ? a->n - lo_ : LB_BLOCK;              \
            int fin_ = !(has_special(a->s[0], lo_, len_, SF, a->sgn[0]) ||             \
                         has_special(a->s[1], lo_, len_, SF, a->sgn[1]) ||             \
                         has_special(a->s[2], lo_, len_, SF, a->sgn[2]));              \
            if (a->has_reg && fin_) BLOCK_CALL(PF, SF, MASTER, 1, 1);                  \
            else if (a->has_reg) BLOCK_CALL(PF, SF, MASTER, 1, 0);                     \
            else if (fin_) BLOCK_CALL(PF, SF, MASTER, 0, 1);                           \
            else BLOCK_CALL(PF, SF, MASTER, 0, 0);                                     \
        }                                                                              \
    } while (0)

/* Dispatch the runtime formats to constant ones (each case is one inlined instance). */
#define LB_DISPATCH(pfmt, sfmt, master, BLOCK_CALL)                                     \
    do {                                                                               \
        int key_ = ((pfmt) * 3 + (sfmt)) * 2 + ((master) ? 1 : 0);                     \
        switch (key_) {                                                                \
        case 0: LB_FORMATS(P_F32, S_F32, 0, BLOCK_CALL); break;                        \
        case 2: LB_FORMATS(P_F32, S_BF16, 0, BLOCK_CALL); break;                       \
        case 4: LB_FORMATS(P_F32, S_Q8, 0, BLOCK_CALL); break;                         \
        case 6: LB_FORMATS(P_BF16, S_F32, 0, BLOCK_CALL); break;                       \
        case 7: LB_FORMATS(P_BF16, S_F32, 1, BLOCK_CALL); break;                       \
        case 8: LB_FORMATS(P_BF16, S_BF16, 0, BLOCK_CALL); break;                      \
        case 9: LB_FORMATS(P_BF16, S_BF16, 1, BLOCK_CALL); break;                      \
        case 10: LB_FORMATS(P_BF16, S_Q8, 0, BLOCK_CALL); break;                       \
        case 11: LB_FORMATS(P_BF16, S_Q8, 1, BLOCK_CALL); break;                       \
        case 12: LB_FORMATS(P_F16, S_F32, 0, BLOCK_CALL); break;                       \
        case 13: LB_FORMATS(P_F16, S_F32, 1, BLOCK_CALL); break;                       \
        case 14: LB_FORMATS(P_F16, S_BF16, 0, BLOCK_CALL); break;                      \
        case 15: LB_FORMATS(P_F16, S_BF16, 1, BLOCK_CALL); break;                      \
        case 16: LB_FORMATS(P_F16, S_Q8, 0, BLOCK_CALL); break;                        \
        case 17: LB_FORMATS(P_F16, S_Q8, 1, BLOCK_CALL); break;                        \
        default: break; /* float32 params with a master copy: rejected in Python */    \
        }                                                                              \
    } while (0)

static void lb_init(lb_args *a, void *p, float *w32, const void *g, int64_t n, double l2,
                    double l1, uint64_t seed, uint64_t step, uint64_t stream, int sr,
                    uint32_t rng[5]) {
    memset(a, 0, sizeof *a);
    a->p = p, a->w32 = w32, a->g = g, a->n = n;
    a->l2 = (float)l2, a->l1 = (float)l1, a->has_reg = !(l2 == 0.0 && l1 == 0.0);
    rng[0] = (uint32_t)seed, rng[1] = (uint32_t)(seed >> 32), rng[2] = (uint32_t)stream;
    rng[3] = (uint32_t)step, rng[4] = (uint32_t)(step >> 32);
    a->rng = sr ? rng : NULL;
}

void fo_adam_lowbit_f32(void *p, float *w32, void *m, float *ms, void *v, float *vs,
                        const void *g, int64_t n, double step_size, double b1, double omb1,
                        double b2, double omb2, double inv_c2, double eps_in, double eps_out,
                        double decay, double l2, double l1, int pfmt, int sfmt, uint64_t seed,
                        uint64_t step, uint64_t stream, int sr) {
    lb_args args, *a = &args;
    uint32_t rng[5];
    lb_init(a, p, w32, g, n, l2, l1, seed, step, stream, sr, rng);
    a->s[0] = m, a->s[1] = v, a->sc[0] = ms, a->sc[1] = vs, a->sgn[0] = 1;
    const double k[8] = {step_size, b1, omb1, b2, omb2, inv_c2, eps_in, eps_out};
    for (int t = 0; t < 8; t++) a->k[t] = (float)k[t];
    const float dec = (float)decay;
#define ADAM_CALL(PF, SF, MASTER, REG, FIN) adam_block(a, dec, blk, PF, SF, MASTER, REG, FIN)
    LB_DISPATCH(pfmt, sfmt, w32 != NULL, ADAM_CALL);
#undef ADAM_CALL
}

void fo_sgd_lowbit_f32(void *p, float *w32, void *h, float *hs, const void *g, int64_t n,
                       double lr, double beta, double cg, double ch, double l2, double l1,
                       int pfmt, int sfmt, uint64_t seed, uint64_t step, uint64_t stream,
                       int sr) {
    lb_args args, *a = &args;
    uint32_t rng[5];
    lb_init(a, p, w32, g, n, l2, l1, seed, step, stream, sr, rng);
    a->s[0] = h, a->sc[0] = hs, a->sgn[0] = 1;
    a->k[0] = (float)lr, a->k[1] = (float)beta, a->k[2] = (float)cg, a->k[3] = (float)ch;
    if (h) {
#define SGD_CALL(PF, SF, MASTER, REG, FIN) sgd_block(a, blk, PF, SF, MASTER, REG, FIN, 1)
        LB_DISPATCH(pfmt, sfmt, w32 != NULL, SGD_CALL);
#undef SGD_CALL
    } else {
#define SGD_CALL(PF, SF, MASTER, REG, FIN) sgd_block(a, blk, PF, SF, MASTER, REG, FIN, 0)
        LB_DISPATCH(pfmt, S_F32, w32 != NULL, SGD_CALL);
#undef SGD_CALL
    }
}

void fo_rmsprop_lowbit_f32(void *p, float *w32, void *s, float *ss, void *h, float *hs, void *ga,
                           float *gas, const void *g, int64_t n, double lr, double alpha,
                           double oma, double eps_in, double eps_out, double beta, double l2,
                           double l1, int pfmt, int sfmt, uint64_t seed, uint64_t step,
                           uint64_t stream, int sr) {
    lb_args args, *a = &args;
    uint32_t rng[5];
    lb_init(a, p, w32, g, n, l2, l1, seed, step, stream, sr, rng);
    a->s[0] = s, a->s[1] = h, a->s[2] = ga, a->sc[0] = ss, a->sc[1] = hs, a->sc[2] = gas;
    a->sgn[1] = a->sgn[2] = 1;
    const double k[6] = {lr, alpha, oma, eps_in, eps_out, beta};
    for (int t = 0; t < 6; t++) a->k[t] = (float)k[t];
    int variant = (h != NULL) * 2 + (ga != NULL);
    switch (variant) {
#define RMS_CALL(PF, SF, MASTER, REG, FIN) rmsprop_block(a, blk, PF, SF, MASTER, REG, FIN, 0, 0)
    case 0: LB_DISPATCH(pfmt, sfmt, w32 != NULL, RMS_CALL); break;
#undef RMS_CALL
#define RMS_CALL(PF, SF, MASTER, REG, FIN) rmsprop_block(a, blk, PF, SF, MASTER, REG, FIN, 0, 1)
    case 1: LB_DISPATCH(pfmt, sfmt, w32 != NULL, RMS_CALL); break;
#undef RMS_CALL
#define RMS_CALL(PF, SF, MASTER, REG, FIN) rmsprop_block(a, blk, PF, SF, MASTER, REG, FIN, 1, 0)
    case 2: LB_DISPATCH(pfmt, sfmt, w32 != NULL, RMS_CALL); break;
#undef RMS_CALL
#define RMS_CALL(PF, SF, MASTER, REG, FIN) rmsprop_block(a, blk, PF, SF, MASTER, REG, FIN, 1, 1)
    default: LB_DISPATCH(pfmt, sfmt, w32 != NULL, RMS_CALL); break;
#undef RMS_CALL
    }
}

void fo_quantize_blocks_f32(uint8_t *codes, float *scales, const float *x, int64_t n,
                            int sgn) {
    int64_t nb = LB_CHUNKS(n);
#pragma omp parallel for schedule(static) if (n >= LB_PAR_MIN)
    for (int64_t blk = 0; blk < nb; blk++) {
        int64_t lo = blk * LB_BLOCK, len = n - lo < LB_BLOCK ? n - lo : LB_BLOCK;
        uint32_t acc = 0;
        for (int64_t j = 0; j < len; j++) acc = amax(acc, x[lo + j]);
        encode_block(codes, scales, blk, x + lo, lo, len, acc, sgn);
    }
}

void fo_dequantize_blocks_f32(float *out, const uint8_t *codes, const float *scales, int64_t n,
                              int sgn) {
#pragma omp parallel for schedule(static) if (n >= LB_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        out[i] = load_state(codes, scales[i / LB_BLOCK], i, S_Q8, sgn, 0);
}
