/* Batch normalization's private helpers, shared by batchnorm.c (the plain entries) and
 * batchnorm_sync.c (the synchronized ones): the deterministic partial passes, their fixed-order
 * merges, the per-channel finish and coefficients, and the elementwise passes. Everything is
 * static: each .c file gets its own copy, and the bits of a result do not depend on which file
 * computed it.
 *
 * x (N, C, L) is viewed as N rows of J = C*L contiguous values; column j belongs to channel
 * j / L. Each task owns BN_CHUNK rows by up to BN_TILE columns (sizes fixed by the data, never
 * by the thread count) and writes float64 partials to its own row of an (n_chunks, J) buffer;
 * they are merged in a fixed order: per column over the chunks (vectorized across columns),
 * then per channel over l. Forward partials are a chunk's mean and M2, two-pass over the chunk
 * while it is in cache (E[x^2]-E[x]^2 cancels when mean >> std), merged with Chan, Golub &
 * LeVeque's pairwise update (1979). Built with -ffp-contract=off and no -ffast-math: sums keep
 * their order. */
#ifndef FUSEDOPS_BATCHNORM_IMPL_H
#define FUSEDOPS_BATCHNORM_IMPL_H
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define BN_CHUNK 128 /* rows per partial: 128 x BN_TILE fp32 = 256 KiB stays in L2 */
#define BN_TILE 512  /* columns per task */
#define BN_MERGE_TILE 64 /* columns per task when merging partials */

/* Per column, Chan et al.'s merge of its chunk partials in chunk order. All columns share the
 * counts, so the weights are scalars and the column loop vectorizes. */
static inline void bn_merge_chunks(double *restrict cmean, double *restrict cm2,
                                   const double *restrict pmean, const double *restrict pm2,
                                   int64_t n, int64_t nch, int64_t nj) {
    _Pragma("omp parallel for schedule(static)")
    for (int64_t j0 = 0; j0 < nj; j0 += BN_MERGE_TILE) {
        int64_t w = nj - j0 < BN_MERGE_TILE ? nj - j0 : BN_MERGE_TILE;
        double ma[BN_MERGE_TILE] = {0}, m2a[BN_MERGE_TILE] = {0}, na = 0.0;
        for (int64_t k = 0; k < nch; k++) {
            double nb = (double)(n - k * BN_CHUNK < BN_CHUNK ? n - k * BN_CHUNK : BN_CHUNK);
            double f = nb / (na + nb), wt = na * f;
            const double *pk = pmean + k * nj + j0, *qk = pm2 + k * nj + j0;
            _Pragma("omp simd") for (int64_t j = 0; j < w; j++) {
                double d = pk[j] - ma[j];
                ma[j] += d * f;
                m2a[j] += qk[j] + d * d * wt;
            }
            na += nb;
        }
        for (int64_t j = 0; j < w; j++) cmean[j0 + j] = ma[j], cm2[j0 + j] = m2a[j];
    }
}

/* Per column, the chunk partials summed in chunk order. */
static inline void bn_sum_chunks(double *restrict csum, double *restrict cdot,
                                 const double *restrict psum, const double *restrict pdot,
                                 int64_t nch, int64_t nj) {
    _Pragma("omp parallel for schedule(static)")
    for (int64_t j0 = 0; j0 < nj; j0 += BN_MERGE_TILE) {
        int64_t w = nj - j0 < BN_MERGE_TILE ? nj - j0 : BN_MERGE_TILE;
        double a[BN_MERGE_TILE] = {0}, b[BN_MERGE_TILE] = {0};
        for (int64_t k = 0; k < nch; k++) {
            const double *pk = psum + k * nj + j0, *qk = pdot + k * nj + j0;
            _Pragma("omp simd") for (int64_t j = 0; j < w; j++) a[j] += pk[j], b[j] += qk[j];
        }
        for (int64_t j = 0; j < w; j++) csum[j0 + j] = a[j], cdot[j0 + j] = b[j];
    }
}

/* Channel ch's mean *m and M2 *m2: its L columns' (mean, M2), each over n > 0 rows, merged in
 * l order. */
static inline void bn_merge_columns(double *m, double *m2, const double *cmean,
                                    const double *cm2, int64_t ch, int64_t nl, int64_t n) {
    double ma = 0.0, m2a = 0.0, na = 0.0;
    for (int64_t l = 0; l < nl; l++) {
        double f = (double)n / (na + (double)n), wt = na * f;
        double d = cmean[ch * nl + l] - ma;
        ma += d * f;
        m2a += cm2[ch * nl + l] + d * d * wt;
        na += (double)n;
    }
    *m = ma;
    *m2 = m2a;
}

/* Channel ch's sums *a, *b: its L columns' sums added in l order. */
static inline void bn_sum_columns(double *a, double *b, const double *csum, const double *cdot,
                                  int64_t ch, int64_t nl) {
    double sa = 0.0, sb = 0.0;
    for (int64_t l = 0; l < nl; l++) sa += csum[ch * nl + l], sb += cdot[ch * nl + l];
    *a = sa;
    *b = sb;
}

/* Per-type helpers: partials of every (chunk, tile) task, the per-channel finish and
 * coefficients, the elementwise passes. cf holds J-long coefficient rows: y = (x - cf[0])*cf[1]
 * + cf[2] forward, dx = dy*cf[1] - cf[2] - (x - cf[0])*cf[3] backward. */
#define BN_HELPERS(T, SUF)                                                                   \
static inline void bn_stats_partials_##SUF(double *restrict pmean, double *restrict pm2,   \
                                           const T *restrict x, int64_t n, int64_t nj) {    \
    int64_t nch = (n + BN_CHUNK - 1) / BN_CHUNK, ntiles = (nj + BN_TILE - 1) / BN_TILE;     \
    _Pragma("omp parallel for schedule(static)")                                            \
    for (int64_t task = 0; task < nch * ntiles; task++) {                                   \
        int64_t k = task / ntiles, j0 = (task % ntiles) * BN_TILE, r0 = k * BN_CHUNK;       \
        int64_t r1 = n < r0 + BN_CHUNK ? n : r0 + BN_CHUNK;                                 \
        int64_t w = nj - j0 < BN_TILE ? nj - j0 : BN_TILE;                                  \
        double s[BN_TILE], q[BN_TILE];                                                      \
        for (int64_t j = 0; j < w; j++) s[j] = 0.0, q[j] = 0.0;                             \
        for (int64_t r = r0; r < r1; r++) {                                                 \
            const T *xr = x + r * nj + j0;                                                  \
            _Pragma("omp simd") for (int64_t j = 0; j < w; j++) s[j] += (double)xr[j];      \
        }                                                                                   \
        for (int64_t j = 0; j < w; j++) s[j] /= (double)(r1 - r0);                          \
        for (int64_t r = r0; r < r1; r++) { /* second pass, from cache */                   \
            const T *xr = x + r * nj + j0;                                                  \
            _Pragma("omp simd") for (int64_t j = 0; j < w; j++) {                           \
                double d = (double)xr[j] - s[j];                                            \
                q[j] += d * d;                                                              \
            }                                                                               \
        }                                                                                   \
        double *pk = pmean + k * nj + j0, *qk = pm2 + k * nj + j0;                          \
        for (int64_t j = 0; j < w; j++) pk[j] = s[j], qk[j] = q[j];                         \
    }                                                                                       \
}                                                                                           \
static inline void bn_grad_partials_##SUF(double *restrict psum, double *restrict pdot,    \
                                          const T *restrict dy, const T *restrict x,        \
                                          const T *restrict cm, int64_t n, int64_t nj) {    \
    int64_t nch = (n + BN_CHUNK - 1) / BN_CHUNK, ntiles = (nj + BN_TILE - 1) / BN_TILE;     \
    _Pragma("omp parallel for schedule(static)")                                            \
    for (int64_t task = 0; task < nch * ntiles; task++) {                                   \
        int64_t k = task / ntiles, j0 = (task % ntiles) * BN_TILE, r0 = k * BN_CHUNK;       \
        int64_t r1 = n < r0 + BN_CHUNK ? n : r0 + BN_CHUNK;                                 \
        int64_t w = nj - j0 < BN_TILE ? nj - j0 : BN_TILE;                                  \
        double s[BN_TILE], p[BN_TILE];                                                      \
        for (int64_t j = 0; j < w; j++) s[j] = 0.0, p[j] = 0.0;                             \
        for (int64_t r = r0; r < r1; r++) {                                                 \
            const T *xr = x + r * nj + j0, *gr = dy + r * nj + j0;                          \
            _Pragma("omp simd") for (int64_t j = 0; j < w; j++) {                           \
                double g = (double)gr[j];                                                   \
                s[j] += g;                                                                  \
                p[j] += g * ((double)xr[j] - (double)cm[j0 + j]);                           \
            }                                                                               \
        }                                                                                   \
        double *pk = psum + k * nj + j0, *qk = pdot + k * nj + j0;                          \
        for (int64_t j = 0; j < w; j++) pk[j] = s[j], qk[j] = p[j];                         \
    }                                                                                       \
}                                                                                           \
/* Channel ch from its whole (cnt values, mean m, M2 m2): mean, invstd, the running          \
 * statistics (unbiased variance) when rm is given, and the forward coefficients. */        \
static inline void bn_finish_##SUF(T *mean, T *invstd, T *rm, T *rv, T *cf, const T *gamma, \
                                   const T *beta, int64_t ch, int64_t nl, int64_t nj,       \
                                   double cnt, double m, double m2, double eps,             \
                                   double momentum) {                                       \
    double var = m2 / cnt, inv = 1.0 / sqrt(var + eps);                                     \
    mean[ch] = (T)m;                                                                        \
    invstd[ch] = (T)inv;                                                                    \
    if (rm) {                                                                               \
        rm[ch] = (T)((1.0 - momentum) * rm[ch] + momentum * m);                             \
        rv[ch] = (T)((1.0 - momentum) * rv[ch] + momentum * var * (cnt / (cnt - 1.0)));     \
    }                                                                                       \
    BN_COEFFS(T, cf, ch, nl, nj, mean[ch], inv, gamma, beta)                                \
}                                                                                           \
/* Channel ch's dgamma, dbeta and backward coefficients from its sums of dy (db) and        \
 * dy*(x - mean) (dot) over cnt values; k2 = k3 = 0 in eval. */                             \
static inline void bn_grad_finish_##SUF(T *dgamma, T *dbeta, T *cf, const T *invstd,       \
                                        const T *gamma, int64_t ch, int64_t nl, int64_t nj, \
                                        double cnt, double db, double dot, int training) {  \
    double inv = (double)invstd[ch], dg = dot * inv;                                        \
    double k1 = gamma ? (double)gamma[ch] * inv : inv;                                      \
    dgamma[ch] = (T)dg;                                                                     \
    dbeta[ch] = (T)db;                                                                      \
    for (int64_t l = 0; l < nl; l++) {                                                      \
        cf[nj + ch * nl + l] = (T)k1;                                                       \
        cf[2 * nj + ch * nl + l] = (T)(training ? k1 * db / cnt : 0.0);                     \
        cf[3 * nj + ch * nl + l] = (T)(training ? k1 * inv * dg / cnt : 0.0);               \
    }                                                                                       \
}                                                                                           \
static inline void bn_normalize_##SUF(T *restrict y, const T *restrict x,                  \
                                      const T *restrict cf, int64_t n, int64_t nj) {        \
    const T *cm = cf, *cs = cf + nj, *cb = cf + 2 * nj;                                     \
    _Pragma("omp parallel for schedule(static)")                                            \
    for (int64_t r = 0; r < n; r++) {                                                       \
        const T *xr = x + r * nj; T *yr = y + r * nj;                                       \
        _Pragma("omp simd") for (int64_t j = 0; j < nj; j++)                                \
            yr[j] = (xr[j] - cm[j]) * cs[j] + cb[j];                                        \
    }                                                                                       \
}                                                                                           \
static inline void bn_grad_input_##SUF(T *restrict dx, const T *restrict dy,               \
                                       const T *restrict x, const T *restrict cf,           \
                                       int64_t n, int64_t nj) {                             \
    const T *cm = cf, *c1 = cf + nj, *c2 = cf + 2 * nj, *c3 = cf + 3 * nj;                  \
    _Pragma("omp parallel for schedule(static)")                                            \
    for (int64_t r = 0; r < n; r++) {                                                       \
        const T *xr = x + r * nj, *gr = dy + r * nj; T *dr = dx + r * nj;                   \
        _Pragma("omp simd") for (int64_t j = 0; j < nj; j++)                                \
            dr[j] = gr[j] * c1[j] - c2[j] - (xr[j] - cm[j]) * c3[j];                        \
    }                                                                                       \
}

/* y = (x - cm)*cs + cb per column: cm = mean, cs = gamma*invstd, cb = beta (rounded to T). */
#define BN_COEFFS(T, cf, ch, nl, nj, m, inv, gamma, beta)                                  \
    for (int64_t l = 0; l < (nl); l++) {                                                    \
        (cf)[(ch) * (nl) + l] = (m);                                                        \
        (cf)[(nj) + (ch) * (nl) + l] = (T)((gamma) ? (double)(gamma)[ch] * (inv) : (inv));  \
        (cf)[2 * (nj) + (ch) * (nl) + l] = (beta) ? (beta)[ch] : (T)0;                      \
    }

BN_HELPERS(float, f32)
BN_HELPERS(double, f64)

#endif
