/* Batch normalization (Ioffe & Szegedy, ICML 2015) with OpenMP, float32 and float64.
 *
 * The deterministic scheme (fixed row chunks and column tiles, float64 partials, fixed-order
 * merges; Chan, Golub & LeVeque's pairwise update for the statistics) is batchnorm_impl.h's,
 * shared with the synchronized entries of batchnorm_sync.c. x is read from memory twice in
 * training, dy and x twice in backward. Every entry point returns 0, or -1 (nothing written)
 * when its scratch allocation fails. */
#include "fusedops.h"
#include "batchnorm_impl.h"

#define BN_ENTRIES(T, SUF)                                                                   \
int fo_batchnorm_forward_train_##SUF(T *y, T *mean, T *invstd, T *rm, T *rv, const T *x,   \
                                     const T *gamma, const T *beta, int64_t n, int64_t c,   \
                                     int64_t nl, double eps, double momentum) {             \
    int64_t nj = c * nl, nch = (n + BN_CHUNK - 1) / BN_CHUNK;                               \
    double *part = malloc(sizeof(double) * (size_t)(2 * (nch + 1) * nj + 1));               \
    T *cf = malloc(sizeof(T) * (size_t)(3 * nj + 1));                                       \
    if (!part || !cf) { free(part); free(cf); return -1; }                                  \
    double *pmean = part, *pm2 = part + nch * nj;                                           \
    double *cmean = part + 2 * nch * nj, *cm2 = cmean + nj;                                 \
    bn_stats_partials_##SUF(pmean, pm2, x, n, nj);                                          \
    bn_merge_chunks(cmean, cm2, pmean, pm2, n, nch, nj);                                    \
    _Pragma("omp parallel for schedule(static)")                                            \
    for (int64_t ch = 0; ch < c; ch++) {                                                    \
        double m, m2;                                                                       \
        bn_merge_columns(&m, &m2, cmean, cm2, ch, nl, n);                                   \
        bn_finish_##SUF(mean, invstd, rm, rv, cf, gamma, beta, ch, nl, nj,                  \
                        (double)(n * nl), m, m2, eps, momentum);                            \
    }                                                                                       \
    bn_normalize_##SUF(y, x, cf, n, nj);                                                    \
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
    bn_normalize_##SUF(y, x, cf, n, nj);                                                    \
    free(cf);                                                                               \
    return 0;                                                                               \
}                                                                                           \
int fo_batchnorm_backward_##SUF(T *dx, T *dgamma, T *dbeta, const T *dy, const T *x,       \
                                const T *mean, const T *invstd, const T *gamma, int64_t n,  \
                                int64_t c, int64_t nl, int training) {                      \
    int64_t nj = c * nl, nch = (n + BN_CHUNK - 1) / BN_CHUNK;                               \
    double *part = malloc(sizeof(double) * (size_t)(2 * (nch + 1) * nj + 1));               \
    T *cf = malloc(sizeof(T) * (size_t)(4 * nj + 1));                                       \
    if (!part || !cf) { free(part); free(cf); return -1; }                                  \
    double *psum = part, *pdot = part + nch * nj;                                           \
    double *csum = part + 2 * nch * nj, *cdot = csum + nj;                                  \
    for (int64_t j = 0; j < nj; j++) cf[j] = mean[j / nl];                                  \
    bn_grad_partials_##SUF(psum, pdot, dy, x, cf, n, nj);                                   \
    bn_sum_chunks(csum, cdot, psum, pdot, nch, nj);                                         \
    for (int64_t ch = 0; ch < c; ch++) {                                                    \
        double db, dot;                                                                     \
        bn_sum_columns(&db, &dot, csum, cdot, ch, nl);                                      \
        bn_grad_finish_##SUF(dgamma, dbeta, cf, invstd, gamma, ch, nl, nj,                  \
                             (double)(n * nl), db, dot, training);                          \
    }                                                                                       \
    bn_grad_input_##SUF(dx, dy, x, cf, n, nj);                                              \
    free(part);                                                                             \
    free(cf);                                                                               \
    return 0;                                                                               \
}

BN_ENTRIES(float, f32)
BN_ENTRIES(double, f64)
