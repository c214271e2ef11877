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

/* ---- dropout (dropout.c) ---- */

/* ---- batchnorm (batchnorm.c) ---- */

#endif
