/* fusedops C kernels: prototypes only. cffi's cdef parses this file (build_ffi.py strips
 * preprocessor lines), so keep it to plain declarations: no macros, no inline bodies.
 * Argument order everywhere: outputs, then inputs, then sizes, then hyperparameters.
 * Each family owns one block below, headed "---- name (file.c) ----": build_ffi.py reads the
 * file name to know which functions it compiles once per SIMD level (simd.h); f32/f64
 * variants are written out for cdef. */
#ifndef FUSEDOPS_H
#define FUSEDOPS_H
#include <stdint.h>

/* ---- runtime (runtime.c) and threads (pool.c: the kernels' own OpenMP runtime) ---- */
const char *fo_compiler(void);
const char *fo_cflags(void);
/* threads per parallel region, process-wide; n < 1 restores the default (OMP_NUM_THREADS,
 * else the CPUs this process may use) */
void fo_set_num_threads(int n);
int fo_get_num_threads(void);
/* 0: by each family's size threshold (threads.h), 1: always serial, 2: always parallel */
void fo_set_parallel_mode(int mode);
/* worker threads the pool has started in this process (0 in a fresh fork child) */
int fo_pool_workers(void);
/* the team size a region over `work` elements with threshold `parallel_min` runs with */
int fo_probe_team(int64_t work, int64_t parallel_min);

/* ---- SIMD dispatch (simd.c) ---- */
/* Levels 0 .. fo_simd_count()-1, in increasing ISA (simd.h); the best one this CPU supports
 * runs unless fo_simd_set (not thread-safe: call it when no kernel is running) picks another.
 * fo_simd_set returns 0, or -1 for a level not compiled or not supported by this CPU. */
int fo_simd_count(void);
const char *fo_simd_name(int level);
const char *fo_simd_target(int level);
int fo_simd_supported(int level);
int fo_simd_get(void);
int fo_simd_set(int level);

/* ---- stream: bandwidth probe (stream.c) ---- */
void fo_stream_copy_f32(float *dst, const float *src, int64_t n);
void fo_stream_copy_f64(double *dst, const double *src, int64_t n);
/* a = b + s*c */
void fo_stream_triad_f32(float *a, const float *b, const float *c, int64_t n, float s);
void fo_stream_triad_f64(double *a, const double *b, const double *c, int64_t n, double s);

/* ---- optim (optim.c) ---- */
/* One in-place step over n elements; state pointers may be NULL where the variant does not use
 * them (h: momentum buffer, ga: centered average, vmax: AMSGrad). Hyperparameters are double for
 * both dtypes; see reference/optim.py for the formulas. */
void fo_sgd_update_f32(float *w, float *h, const float *g, int64_t n, double lr, double momentum,
                       int nesterov, double l2, double l1);
void fo_sgd_update_f64(double *w, double *h, const double *g, int64_t n, double lr,
                       double momentum, int nesterov, double l2, double l1);
void fo_adagrad_update_f32(float *w, float *s, const float *g, int64_t n, double lr, double eps,
                           int eps_inside_sqrt, double l2, double l1);
void fo_adagrad_update_f64(double *w, double *s, const double *g, int64_t n, double lr,
                           double eps, int eps_inside_sqrt, double l2, double l1);
void fo_rmsprop_update_f32(float *w, float *s, float *h, float *ga, const float *g, int64_t n,
                           double lr, double alpha, double eps, int eps_inside_sqrt,
                           double momentum, double l2, double l1);
void fo_rmsprop_update_f64(double *w, double *s, double *h, double *ga, const double *g,
                           int64_t n, double lr, double alpha, double eps, int eps_inside_sqrt,
                           double momentum, double l2, double l1);
void fo_adam_update_f32(float *w, float *m, float *v, float *vmax, const float *g, int64_t n,
                        double lr, double beta1, double beta2, double eps, int eps_inside_sqrt,
                        double decay, double l2, double l1, double c1, double c2);
void fo_adam_update_f64(double *w, double *m, double *v, double *vmax, const double *g, int64_t n,
                        double lr, double beta1, double beta2, double eps, int eps_inside_sqrt,
                        double decay, double l2, double l1, double c1, double c2);
/* count[0] += number of NaN/Inf entries of g */
void fo_nonfinite_count_f32(int64_t *count, const float *g, int64_t n);
void fo_nonfinite_count_f64(int64_t *count, const double *g, int64_t n);

/* ---- dropout (dropout.c) ---- */
/* out (n,4) <- Philox4x32-10(counter (n,4), key (n,2)); exposed for known-answer tests */
void fo_philox4x32(uint32_t *out, const uint32_t *counter, const uint32_t *key, int64_t n);
/* mask (ceil(n/8),) <- packed keep bits of n elements; keep = philox word >= threshold;
 * element i draws stream index start + i (start + n <= 2^64) */
void fo_dropout_mask(uint8_t *mask, int64_t n, uint64_t seed, uint64_t offset, uint64_t threshold,
                     uint64_t start);
/* y (n,) = x (n,) * keep / divisor; mask (ceil(n/8),) or NULL <- packed keep bits */
void fo_dropout_forward_f32(float *y, uint8_t *mask, const float *x, int64_t n, uint64_t seed,
                            uint64_t offset, uint64_t threshold, float divisor, uint64_t start);
void fo_dropout_forward_f64(double *y, uint8_t *mask, const double *x, int64_t n, uint64_t seed,
                            uint64_t offset, uint64_t threshold, double divisor, uint64_t start);
/* dx (n,) = dy (n,) * keep / divisor, keep unpacked from mask (ceil(n/8),) */
void fo_dropout_backward_f32(float *dx, const float *dy, const uint8_t *mask, int64_t n,
                             float divisor);
void fo_dropout_backward_f64(double *dx, const double *dy, const uint8_t *mask, int64_t n,
                             double divisor);
/* y (n,) = scale * x (n,): eval mode (scale 1 inverted, 1-p classic) */
void fo_dropout_scale_f32(float *y, const float *x, int64_t n, float scale);
void fo_dropout_scale_f64(double *y, const double *x, int64_t n, double scale);

/* ---- batchnorm (batchnorm.c) ---- */
/* x, y, dy, dx: (n, c, nl) C-ordered; statistics per channel over n and nl. gamma, beta,
 * rm, rv may be NULL (affine off / no tracking). Return 0, or -1 when scratch malloc failed. */
int fo_batchnorm_forward_train_f32(float *y, float *mean, float *invstd, float *rm, float *rv,
                                   const float *x, const float *gamma, const float *beta,
                                   int64_t n, int64_t c, int64_t nl, double eps, double momentum);
int fo_batchnorm_forward_train_f64(double *y, double *mean, double *invstd, double *rm,
                                   double *rv, const double *x, const double *gamma,
                                   const double *beta, int64_t n, int64_t c, int64_t nl,
                                   double eps, double momentum);
int fo_batchnorm_forward_eval_f32(float *y, float *mean, float *invstd, const float *x,
                                  const float *rm, const float *rv, const float *gamma,
                                  const float *beta, int64_t n, int64_t c, int64_t nl, double eps);
int fo_batchnorm_forward_eval_f64(double *y, double *mean, double *invstd, const double *x,
                                  const double *rm, const double *rv, const double *gamma,
                                  const double *beta, int64_t n, int64_t c, int64_t nl,
                                  double eps);
int fo_batchnorm_backward_f32(float *dx, float *dgamma, float *dbeta, const float *dy,
                              const float *x, const float *mean, const float *invstd,
                              const float *gamma, int64_t n, int64_t c, int64_t nl, int training);
int fo_batchnorm_backward_f64(double *dx, double *dgamma, double *dbeta, const double *dy,
                              const double *x, const double *mean, const double *invstd,
                              const double *gamma, int64_t n, int64_t c, int64_t nl,
                              int training);

/* ---- lowbit (lowbit.c) ---- */
/* One in-place step on low-bit state; formats in reference/lowbit.py. p, g: float32 (pfmt 0) or
 * bfloat16 / float16 bits (pfmt 1 / 2); w32: float32 master copy or NULL; state slots: float32
 * (sfmt 0), bfloat16 bits (1) or 8-bit codes (2) with per-256-block float32 scales; unused slots
 * NULL. Hyperparameters arrive as double and are rounded once to float32. sr: stochastic
 * rounding of the written params with Philox words of (seed, step, stream). */
void fo_adam_lowbit_f32(void *p, float *w32, void *m, float *ms, void *v, float *vs,
                        const void *g, int64_t n, double step_size, double b1, double omb1,
                        double b2, double omb2, double inv_c2, double eps_in, double eps_out,
                        double decay, double l2, double l1, int pfmt, int sfmt, uint64_t seed,
                        uint64_t step, uint64_t stream, int sr);
void fo_sgd_lowbit_f32(void *p, float *w32, void *h, float *hs, const void *g, int64_t n,
                       double lr, double beta, double cg, double ch, double l2, double l1,
                       int pfmt, int sfmt, uint64_t seed, uint64_t step, uint64_t stream,
                       int sr);
void fo_rmsprop_lowbit_f32(void *p, float *w32, void *s, float *ss, void *h, float *hs, void *ga,
                           float *gas, const void *g, int64_t n, double lr, double alpha,
                           double oma, double eps_in, double eps_out, double beta, double l2,
                           double l1, int pfmt, int sfmt, uint64_t seed, uint64_t step,
                           uint64_t stream, int sr);
/* codes (n,), scales (ceil(n/256),) <- 8-bit blockwise codes of x (n,); sgn: signed map */
void fo_quantize_blocks_f32(uint8_t *codes, float *scales, const float *x, int64_t n, int sgn);
/* out (n,) <- values of codes (n,) with scales */
void fo_dequantize_blocks_f32(float *out, const uint8_t *codes, const float *scales, int64_t n,
                              int sgn);

/* ---- synchronized batch norm (batchnorm_sync.c; reference/batchnorm_sync.py) ---- */
/* mean, m2 (c,) float64 <- per channel mean and sum of squared deviations of x (n, c, nl) */
int fo_batchnorm_stats_f32(double *mean, double *m2, const float *x, int64_t n, int64_t c,
                           int64_t nl);
int fo_batchnorm_stats_f64(double *mean, double *m2, const double *x, int64_t n, int64_t c,
                           int64_t nl);
/* forward training with the whole batch's smean, sm2 (c,) over count values per channel */
int fo_batchnorm_forward_stats_f32(float *y, float *mean, float *invstd, float *rm, float *rv,
                                   const float *x, const float *gamma, const float *beta,
                                   const double *smean, const double *sm2, int64_t n, int64_t c,
                                   int64_t nl, int64_t count, double eps, double momentum);
int fo_batchnorm_forward_stats_f64(double *y, double *mean, double *invstd, double *rm,
                                   double *rv, const double *x, const double *gamma,
                                   const double *beta, const double *smean, const double *sm2,
                                   int64_t n, int64_t c, int64_t nl, int64_t count, double eps,
                                   double momentum);
/* dsum, ddot (c,) float64 <- per channel sum dy and sum dy*(x - mean) */
int fo_batchnorm_grad_sums_f32(double *dsum, double *ddot, const float *dy, const float *x,
                               const float *mean, int64_t n, int64_t c, int64_t nl);
int fo_batchnorm_grad_sums_f64(double *dsum, double *ddot, const double *dy, const double *x,
                               const double *mean, int64_t n, int64_t c, int64_t nl);
/* backward from the whole batch's gsum, gdot (c,) over count values per channel */
int fo_batchnorm_backward_sums_f32(float *dx, float *dgamma, float *dbeta, const float *dy,
                                   const float *x, const float *mean, const float *invstd,
                                   const float *gamma, const double *gsum, const double *gdot,
                                   int64_t n, int64_t c, int64_t nl, int64_t count);
int fo_batchnorm_backward_sums_f64(double *dx, double *dgamma, double *dbeta, const double *dy,
                                   const double *x, const double *mean, const double *invstd,
                                   const double *gamma, const double *gsum, const double *gdot,
                                   int64_t n, int64_t c, int64_t nl, int64_t count);

#endif
