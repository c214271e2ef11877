/* Batch normalization (Ioffe & Szegedy, ICML 2015) with OpenMP, float32 and float64.
 *
 * x (N, C, L) is viewed as N rows of J = C*L contiguous values; column j belongs to channel
 * j / L. Deterministic reductions: each task owns BN_CHUNK rows by up to BN_TILE columns
 * (sizes fixed by the data, never by the thread count) and writes float64 partials to its own
 * row of an (n_chunks, J) buffer; they are merged in a fixed order: per column over the
 * chunks (vectorized across columns), then per channel over l. Forward partials are a chunk's mean and M2, two-pass over the chunk while it is
 * in cache (E[x^2]-E[x]^2 cancels when mean >> std), merged with Chan, Golub & LeVeque's
 * pairwise update (1979). x is read from memory twice in training, dy and x twice in
 * backward. Built with -ffp-contract=off and no -ffast-math: sums keep their order.
 * Every entry point returns 0, or -1 (nothing written) when its scratch allocation fails.
 * Each loop runs in parallel when its own work (elements read) reaches FO_PAR_MIN_BN (threads.h). */
#include <math.h>
#include <stdlib.h>
#include "fusedops.h"
#include "threads.h"

#define BN_CHUNK 128 /* rows per partial: 128 x BN_TILE fp32 = 256 KiB stays in L2 */
#define BN_TILE 512  /* columns per task */
#define BN_MERGE_TILE 64 /* columns per task when merging partials */
#define BN_PAR(work) fo_parallel_ok((work), FO_PAR_MIN_BN)

/* Per column, Chan et al.'s merge of its chunk partials in chunk order. All columns share the
 * counts, so the weights are scalars and the column loop vectorizes. */
static void bn_merge_chunks(double *restrict cmean, double *restrict cm2,
                            const double *restrict pmean, const double *restrict pm2,
                            int64_t n, int64_t nch, int64_t nj) {
    _Pragma("omp parallel for schedule(static) if (BN_PAR(nch * nj))")
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
static void bn_sum_chunks(double *restrict csum, double *restrict cdot,
                          const double *restrict psum, const double *restrict pdot,
                          int64_t nch, int64_t nj) {
    _Pragma("omp parallel for schedule(static) if (BN_PAR(nch * nj))")
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

/* Per-type kernels: partials of one (chunk, tile) task, the elementwise passes. */
#define BN_KERNELS(T, SUF)                                                                   \
static void bn_stats_task_##SUF(double *restrict pmean, double *restrict pm2,              \
                                const T *restrict x, int64_t r0, int64_t r1, int64_t j0,    \
                                int64_t w, int64_t nj) {                                    \
    double s[BN_TILE], q[BN_TILE];                                                          \
    for (int64_t j = 0; j < w; j++) s[j] = 0.0, q[j] = 0.0;                                 \
    for (int64_t r = r0; r < r1; r++) {                                                     \
        const T *xr = x + r * nj + j0;                                                      \
        _Pragma("omp simd") for (int64_t j = 0; j < w; j++) s[j] += (double)xr[j];          \
    }                                                                                       \
    for (int64_t j = 0; j < w; j++) s[j] /= (double)(r1 - r0);                              \
    for (int64_t r = r0; r < r1; r++) { /* second pass, from cache */                       \
        const T *xr = x + r * nj + j0;                                                      \
        _Pragma("omp simd") for (int64_t j = 0; j < w; j++) {                               \
            double d = (double)xr[j] - s[j];                                                \
            q[j] += d * d;                                                                  \
        }                                                                                   \
    }                                                                                       \
    for (int64_t j = 0; j < w; j++) pmean[j] = s[j], pm2[j] = q[j];                         \
}                                                                                           \
static void bn_grad_task_##SUF(double *restrict psum, double *restrict pdot,               \
                               const T *restrict dy, const T *restrict x,                   \
                               const T *restrict cm, int64_t r0, int64_t r1, int64_t j0,    \
                               int64_t w, int64_t nj) {                                     \
    double s[BN_TILE], p[BN_TILE];                                                          \
    for (int64_t j = 0; j < w; j++) s[j] = 0.0, p[j] = 0.0;                                 \
    for (int64_t r = r0; r < r1; r++) {                                                     \
        const T *xr = x + r * nj + j0, *gr = dy + r * nj + j0;                              \
        _Pragma("omp simd") for (int64_t j = 0; j < w; j++) {                               \
            double g = (double)gr[j];                                                       \
            s[j] += g;                                                                      \
            p[j] += g * ((double)xr[j] - (double)cm[j0 + j]);                               \
        }                                                                                   \
    }                                                                                       \
    for (int64_t j = 0; j < w; j++) psum[j] = s[j], pdot[j] = p[j];                         \
}                                                                                           \
static void bn_normalize_##SUF(T *restrict y, const T *restrict x, const T *restrict cm,    \
                               const T *restrict cs, const T *restrict cb, int64_t n,       \
                               int64_t nj) {                                                \
    _Pragma("omp parallel for schedule(static) if (BN_PAR(n * nj))")                         \
    for (int64_t r = 0; r < n; r++) {                                                       \
        const T *xr = x + r * nj; T *yr = y + r * nj;                                       \
        _Pragma("omp simd") for (int64_t j = 0; j < nj; j++)                                \
            yr[j] = (xr[j] - cm[j]) * cs[j] + cb[j];                                        \
    }                                                                                       \
}                                                                                           \
static void bn_grad_input_##SUF(T *restrict dx, const T *restrict dy, const T *restrict x,  \
                                const T *restrict cf, int64_t n, int64_t nj) {              \
    const T *cm = cf, *c1 = cf + nj, *c2 = cf + 2 * nj, *c3 = cf + 3 * nj;                  \
    _Pragma("omp parallel for schedule(static) if (BN_PAR(n * nj))")                         \
    for (int64_t r = 0; r < n; r++) {                                                       \
        const T *xr = x + r * nj, *gr = dy + r * nj; T *dr = dx + r * nj;                   \
        _Pragma("omp simd") for (int64_t j = 0; j < nj; j++)                                \
            dr[j] = gr[j] * c1[j] - c2[j] - (xr[j] - cm[j]) * c3[j];                        \
    }                                                                                       \
}

BN_KERNELS(float, f32)
BN_KERNELS(double, f64)

/* y = (x - cm)*cs + cb per column: cm = mean, cs = gamma*invstd, cb = beta (rounded to T). */
#define BN_COEFFS(T, cf, ch, nl, nj, m, inv, gamma, beta)                                  \
    for (int64_t l = 0; l < (nl); l++) {                                                    \
        (cf)[(ch) * (nl) + l] = (m);                                                        \
        (cf)[(nj) + (ch) * (nl) + l] = (T)((gamma) ? (double)(gamma)[ch] * (inv) : (inv));  \
        (cf)[2 * (nj) + (ch) * (nl) + l] = (beta) ? (beta)[ch] : (T)0;                      \
    }

#define BN_ENTRIES(T, SUF)                                                                   \
int fo_batchnorm_forward_train_##SUF(T *y, T *mean, T *invstd, T *rm, T *rv, const T *x,   \
                                     const T *gamma, const T *beta, int64_t n, int64_t c,   \
                                     int64_t nl, double eps, double momentum) {             \
    int64_t nj = c * nl, nch = (n + BN_CHUNK - 1) / BN_CHUNK;                               \
    int64_t ntiles = (nj + BN_TILE - 1) / BN_TILE;                                          \
    double *part = malloc(sizeof(double) * (size_t)(2 * (nch + 1) * nj + 1));               \
    T *cf = malloc(sizeof(T) * (size_t)(3 * nj + 1));                                       \
    if (!part || !cf) { free(part); free(cf); return -1; }                                  \
    double *pmean = part, *pm2 = part + nch * nj;                                           \
    double *cmean = part + 2 * nch * nj, *cm2 = cmean + nj;                                 \
    _Pragma("omp parallel for schedule(static) if (BN_PAR(n * nj))")                         \
    for (int64_t task = 0; task < nch * ntiles; task++) {                                   \
        int64_t k = task / ntiles, j0 = (task % ntiles) * BN_TILE, r0 = k * BN_CHUNK;       \
        int64_t r1 = n < r0 + BN_CHUNK ? n : r0 + BN_CHUNK;                                 \
        int64_t w = nj - j0 < BN_TILE ? nj - j0 : BN_TILE;                                  \
        bn_stats_task_##SUF(pmean + k * nj + j0, pm2 + k * nj + j0, x, r0, r1, j0, w, nj);  \
    }                                                                                       \
    bn_merge_chunks(cmean, cm2, pmean, pm2, n, nch, nj);                                    \
    _Pragma("omp parallel for schedule(static) if (BN_PAR(nj))")                             \
    for (int64_t ch = 0; ch < c; ch++) {                                                    \
        double m = 0.0, m2 = 0.0, na = 0.0, cnt = (double)(n * nl);                         \
        for (int64_t l = 0; l < nl; l++) { /* merge the channel's columns in l order */     \
            double f = (double)n / (na + (double)n), wt = na * f;                           \
            double d = cmean[ch * nl + l] - m;                                              \
            m += d * f;                                                                     \
            m2 += cm2[ch * nl + l] + d * d * wt;                                            \
            na += (double)n;                                                                \
        }                                                                                   \
        double var = m2 / cnt, inv = 1.0 / sqrt(var + eps);                                 \
        mean[ch] = (T)m;                                                                    \
        invstd[ch] = (T)inv;                                                                \
        if (rm) {                                                                           \
            rm[ch] = (T)((1.0 - momentum) * rm[ch] + momentum * m);                         \
            rv[ch] = (T)((1.0 - momentum) * rv[ch] + momentum * var * (cnt / (cnt - 1.0))); \
        }                                                                                   \
        BN_COEFFS(T, cf, ch, nl, nj, mean[ch], inv, gamma, beta)                            \
    }                                                                                       \
    bn_normalize_##SUF(y, x, cf, cf + nj, cf + 2 * nj, n, nj);                              \
    free(part);                                                                             \
    free(cf);                                                                               \
    return 0;                                                                               \
}                                                                                           \
int fo_batchnorm_forward_eval_##SUF(T *y, T *mean, T *invstd, const T *x, const T *rm,     \
                                    const T *rv, const T *gamma, const T *beta, int64_t n,  \
                                    int64_t c, int64_t nl, double eps) {                    \
    int64_t nj = c * nl;                                                                    \
    T *cf = malloc(sizeof(T) * (size_t)(3 * nj + 1));                                       \
    if (!cf) return -1;                                                                     \
    for (int64_t ch = 0; ch < c; ch++) {                                                    \
        double inv = 1.0 / sqrt((double)rv[ch] + eps);                                      \
        mean[ch] = rm[ch];                                                                  \
        invstd[ch] = (T)inv;                                                                \
        BN_COEFFS(T, cf, ch, nl, nj, mean[ch], inv, gamma, beta)                            \
    }                                                                                       \
    bn_normalize_##SUF(y, x, cf, cf + nj, cf + 2 * nj, n, nj);                              \
    free(cf);                                                                               \
    return 0;                                                                               \
}                                                                                           \
int fo_batchnorm_backward_##SUF(T *dx, T *dgamma, T *dbeta, const T *dy, const T *x,       \
                                const T *mean, const T *invstd, const T *gamma, int64_t n,  \
                                int64_t c, int64_t nl, int training) {                      \
    int64_t nj = c * nl, nch = (n + BN_CHUNK - 1) / BN_CHUNK;                               \
    int64_t ntiles = (nj + BN_TILE - 1) / BN_TILE;                                          \
    double *part = malloc(sizeof(double) * (size_t)(2 * (nch + 1) * nj + 1));               \
    T *cf = malloc(sizeof(T) * (size_t)(4 * nj + 1));                                       \
    if (!part || !cf) { free(part); free(cf); return -1; }                                  \
    double *psum = part, *pdot = part + nch * nj;                                           \
    double *csum = part + 2 * nch * nj, *cdot = csum + nj;                                  \
    for (int64_t j = 0; j < nj; j++) cf[j] = mean[j / nl];                                  \
    _Pragma("omp parallel for schedule(static) if (BN_PAR(n * nj))")                         \
    for (int64_t task = 0; task < nch * ntiles; task++) {                                   \
        int64_t k = task / ntiles, j0 = (task % ntiles) * BN_TILE, r0 = k * BN_CHUNK;       \
        int64_t r1 = n < r0 + BN_CHUNK ? n : r0 + BN_CHUNK;                                 \
        int64_t w = nj - j0 < BN_TILE ? nj - j0 : BN_TILE;                                  \
        bn_grad_task_##SUF(psum + k * nj + j0, pdot + k * nj + j0, dy, x, cf, r0, r1, j0,   \
                           w, nj);                                                          \
    }                                                                                       \
    bn_sum_chunks(csum, cdot, psum, pdot, nch, nj);                                         \
    for (int64_t ch = 0; ch < c; ch++) {                                                    \
        double db = 0.0, dot = 0.0, cnt = (double)(n * nl), inv = (double)invstd[ch];       \
        for (int64_t l = 0; l < nl; l++) db += csum[ch * nl + l], dot += cdot[ch * nl + l]; \
        double dg = dot * inv, k1 = gamma ? (double)gamma[ch] * inv : inv;                  \
        dgamma[ch] = (T)dg;                                                                 \
        dbeta[ch] = (T)db;                                                                  \
        for (int64_t l = 0; l < nl; l++) {                                                  \
            cf[nj + ch * nl + l] = (T)k1;                                                   \
            cf[2 * nj + ch * nl + l] = (T)(training ? k1 * db / cnt : 0.0);                 \
            cf[3 * nj + ch * nl + l] = (T)(training ? k1 * inv * dg / cnt : 0.0);           \
        }                                                                                   \
    }                                                                                       \
    bn_grad_input_##SUF(dx, dy, x, cf, n, nj);                                              \
    free(part);                                                                             \
    free(cf);                                                                               \
    return 0;                                                                               \
}

BN_ENTRIES(float, f32)
BN_ENTRIES(double, f64)
