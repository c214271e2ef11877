/* Synchronized batch norm (reference/batchnorm_sync.py): the pieces of a batch norm whose batch
 * is split across processes, float32 and float64. The passes over this process's rows and the
 * per-channel finish are batchnorm_impl.h's, in the order of batchnorm.c's entries, so with a
 * single part the results have the bits of the plain training entries; the whole batch's
 * per-channel numbers come in as float64 (C,) arrays and a count. Every entry point returns
 * 0, or -1 (nothing written) when its scratch allocation fails. */
#include "fusedops.h"
#include "batchnorm_impl.h"

#define BN_SYNC_ENTRIES(T, SUF)                                                              \
int fo_batchnorm_stats_##SUF(double *mean, double *m2, const T *x, int64_t n, int64_t c,    \
                             int64_t nl) {                                                  \
    int64_t nj = c * nl, nch = (n + BN_CHUNK - 1) / BN_CHUNK;                               \
    if (n == 0) { /* a process with no rows of this batch */                                \
        for (int64_t ch = 0; ch < c; ch++) mean[ch] = 0.0, m2[ch] = 0.0;                    \
        return 0;                                                                           \
    }                                                                                       \
    double *part = malloc(sizeof(double) * (size_t)(2 * (nch + 1) * nj + 1));               \
    if (!part) return -1;                                                                   \
    double *pmean = part, *pm2 = part + nch * nj;                                           \
    double *cmean = part + 2 * nch * nj, *cm2 = cmean + nj;                                 \
    bn_stats_partials_##SUF(pmean, pm2, x, n, nj);                                          \
    bn_merge_chunks(cmean, cm2, pmean, pm2, n, nch, nj);                                    \
    for (int64_t ch = 0; ch < c; ch++)                                                      \
        bn_merge_columns(mean + ch, m2 + ch, cmean, cm2, ch, nl, n);                        \
    free(part);                                                                             \
    return 0;                                                                               \
}                                                                                           \
int fo_batchnorm_forward_stats_##SUF(T *y, T *mean, T *invstd, T *rm, T *rv, const T *x,   \
                                     const T *gamma, const T *beta, const double *smean,    \
                                     const double *sm2, int64_t n, int64_t c, int64_t nl,   \
                                     int64_t count, double eps, double momentum) {          \
    int64_t nj = c * nl;                                                                    \
    T *cf = malloc(sizeof(T) * (size_t)(3 * nj + 1));                                       \
    if (!cf) return -1;                                                                     \
    for (int64_t ch = 0; ch < c; ch++)                                                      \
        bn_finish_##SUF(mean, invstd, rm, rv, cf, gamma, beta, ch, nl, nj, (double)count,   \
                        smean[ch], sm2[ch], eps, momentum);                                 \
    bn_normalize_##SUF(y, x, cf, n, nj);                                                    \
    free(cf);                                                                               \
    return 0;                                                                               \
}                                                                                           \
int fo_batchnorm_grad_sums_##SUF(double *dsum, double *ddot, const T *dy, const T *x,      \
                                 const T *mean, int64_t n, int64_t c, int64_t nl) {         \
    int64_t nj = c * nl, nch = (n + BN_CHUNK - 1) / BN_CHUNK;                               \
    double *part = malloc(sizeof(double) * (size_t)(2 * (nch + 1) * nj + 1));               \
    T *cm = malloc(sizeof(T) * (size_t)(nj + 1));                                           \
    if (!part || !cm) { free(part); free(cm); return -1; }                                  \
    double *psum = part, *pdot = part + nch * nj;                                           \
    double *csum = part + 2 * nch * nj, *cdot = csum + nj;                                  \
    for (int64_t j = 0; j < nj; j++) cm[j] = mean[j / nl];                                  \
    bn_grad_partials_##SUF(psum, pdot, dy, x, cm, n, nj);                                   \
    bn_sum_chunks(csum, cdot, psum, pdot, nch, nj);                                         \
    for (int64_t ch = 0; ch < c; ch++)                                                      \
        bn_sum_columns(dsum + ch, ddot + ch, csum, cdot, ch, nl);                           \
    free(part);                                                                             \
    free(cm);                                                                               \
    return 0;                                                                               \
}                                                                                           \
int fo_batchnorm_backward_sums_##SUF(T *dx, T *dgamma, T *dbeta, const T *dy, const T *x,  \
                                     const T *mean, const T *invstd, const T *gamma,        \
                                     const double *gsum, const double *gdot, int64_t n,     \
                                     int64_t c, int64_t nl, int64_t count) {                \
    int64_t nj = c * nl;                                                                    \
    T *cf = malloc(sizeof(T) * (size_t)(4 * nj + 1));                                       \
    if (!cf) return -1;                                                                     \
    for (int64_t j = 0; j < nj; j++) cf[j] = mean[j / nl];                                  \
    for (int64_t ch = 0; ch < c; ch++)                                                      \
        bn_grad_finish_##SUF(dgamma, dbeta, cf, invstd, gamma, ch, nl, nj, (double)count,   \
                             gsum[ch], gdot[ch], 1);                                        \
    bn_grad_input_##SUF(dx, dy, x, cf, n, nj);                                              \
    free(cf);                                                                               \
    return 0;                                                                               \
}

BN_SYNC_ENTRIES(float, f32)
BN_SYNC_ENTRIES(double, f64)
