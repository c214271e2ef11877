/* fusedops C kernels: prototypes only. cffi's cdef parses this file (build_ffi.py strips
 * preprocessor lines), so keep it to plain declarations: no macros, no inline bodies.
 * Argument order everywhere: outputs, then inputs, then sizes, then hyperparameters.
 * Each family owns one block below; f32/f64 variants are written out for cdef. */
#ifndef FUSEDOPS_H
#define FUSEDOPS_H
#include <stdint.h>

/* ---- runtime (runtime.c) ---- */
void fo_set_num_threads(int n);
int fo_get_num_threads(void);
const char *fo_compiler(void);
const char *fo_cflags(void);

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

/* ---- batchnorm (batchnorm.c) ---- */

#endif
