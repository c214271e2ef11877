/* Optimizer steps: SGD (momentum, Nesterov), AdaGrad, RMSprop (momentum, centered), Adam
 * (AdamW, AMSGrad), each one in-place OpenMP pass; formulas in reference/optim.py.
 *
 * Vectorization (checked with -fopt-info-vec and objdump): every range loop below is one
 * branch-free pass that gcc vectorizes at the width of the SIMD level it is compiled for
 * (build_ffi.py compiles this file once per level; see simd.h). The square root is IEEE
 * (vsqrtps/vsqrtpd, the same bits as sqrtf/sqrt): the build passes -fno-math-errno, without
 * which gcc guards each sqrt with an errno branch and refuses to vectorize the loop ("control
 * flow in loop"; the optimize attribute does not lift it, gcc 12). An earlier version worked
 * around that with a second pass over an L1 buffer of square roots; the single pass gives the
 * same bits with fewer loads and stores (the Numba kernels' shape, kernels/common/optim.py).
 * Options are specialized, not tested per element: each entry point calls a static inline
 * range function with constant flags, which gcc inlines into one loop per variant.
 *
 * This file is compiled twice through self-inclusion (T = float, then double); the template
 * part is below the #else. Hyperparameters arrive as double and the derived constants are
 * computed once, in double, before the loop. */
#ifndef FO_OPTIM_TEMPLATE
#define FO_OPTIM_TEMPLATE

#include <math.h>
#include <omp.h>
#include "fusedops.h"
#include "threads.h"

#define FO_PAR_MIN FO_PAR_MIN_OPTIM /* threads.h: below it a step runs serially */

/* This thread's share [lo, hi) of n elements, in whole 64-element pieces (cache lines). */
static inline void fo_span(int64_t n, int64_t *lo, int64_t *hi) {
    int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t per = ((n + nt - 1) / nt + 63) & ~(int64_t)63;
    *lo = t * per < n ? t * per : n;
    *hi = *lo + per < n ? *lo + per : n;
}

/* Run BODY(lo, hi) over [0, n): one call inline when small, else one per OpenMP thread. */
#define FO_PARALLEL(n, BODY)                                              \
    do {                                                                  \
        if (!fo_parallel_ok((n), FO_PAR_MIN)) { BODY(0, (n)); break; }     \
        _Pragma("omp parallel") {                                         \
            int64_t lo_, hi_;                                             \
            fo_span((n), &lo_, &hi_);                                     \
            BODY(lo_, hi_);                                               \
        }                                                                 \
    } while (0)

#define T float
#define SUF(name) name##_f32
#define SQRT sqrtf
#include "optim.c"
#undef T
#undef SUF
#undef SQRT

#define T double
#define SUF(name) name##_f64
#define SQRT sqrt
#include "optim.c"
#undef T
#undef SUF
#undef SQRT

#else /* ---------------------------------------------------------------- template, T */

/* l1*sign(w) as two selects (sign(0) = 0). */
static inline T SUF(l1_term)(T w, T l1) {
    T t = w > (T)0 ? l1 : (T)0;
    return w < (T)0 ? -l1 : t;
}

/* momentum: h given; nesterov: w -= lr*(g' + beta*h), else w -= lr*h. Each form is its own
 * specialization, not one blend 0*g' + 1*h: that is NaN for g' = inf (0*inf) where the
 * reference's w -= lr*h is -inf. */
static inline void SUF(sgd_range)(T *restrict w, T *restrict h, const T *restrict g, int64_t lo,
                                  int64_t hi, T lr, T beta, T l2, T l1, const int momentum,
                                  const int nesterov) {
    for (int64_t i = lo; i < hi; i++) {
        T wi = w[i], gi = g[i] + l2 * wi + SUF(l1_term)(wi, l1);
        if (momentum) {
            T hi_ = beta * h[i] + gi;
            h[i] = hi_;
            w[i] = wi - lr * (nesterov ? gi + beta * hi_ : hi_);
        } else {
            w[i] = wi - lr * gi;
        }
    }
}

void SUF(fo_sgd_update)(T *w, T *h, const T *g, int64_t n, double lr, double momentum,
                        int nesterov, double l2, double l1) {
    const T lr_ = (T)lr, beta = (T)momentum, l2_ = (T)l2, l1_ = (T)l1;
#define BODY_N(lo, hi) SUF(sgd_range)(w, h, g, lo, hi, lr_, beta, l2_, l1_, 1, 1)
#define BODY_M(lo, hi) SUF(sgd_range)(w, h, g, lo, hi, lr_, beta, l2_, l1_, 1, 0)
#define BODY_P(lo, hi) SUF(sgd_range)(w, h, g, lo, hi, lr_, beta, l2_, l1_, 0, 0)
    if (h && nesterov) FO_PARALLEL(n, BODY_N);
    else if (h) FO_PARALLEL(n, BODY_M);
    else FO_PARALLEL(n, BODY_P);
#undef BODY_N
#undef BODY_M
#undef BODY_P
}

static inline void SUF(adagrad_range)(T *restrict w, T *restrict s, const T *restrict g,
                                      int64_t lo, int64_t hi, T lr, T eps_in, T eps_out, T l2,
                                      T l1) {
    for (int64_t i = lo; i < hi; i++) {
        T wi = w[i], gi = g[i] + l2 * wi + SUF(l1_term)(wi, l1);
        T si = s[i] + gi * gi;
        s[i] = si;
        w[i] = wi - lr * (gi / (SQRT(si + eps_in) + eps_out));
    }
}

void SUF(fo_adagrad_update)(T *w, T *s, const T *g, int64_t n, double lr, double eps,
                            int eps_inside_sqrt, double l2, double l1) {
    const T lr_ = (T)lr, l2_ = (T)l2, l1_ = (T)l1;
    const T eps_in = eps_inside_sqrt ? (T)eps : (T)0, eps_out = eps_inside_sqrt ? (T)0 : (T)eps;
#define BODY(lo, hi) SUF(adagrad_range)(w, s, g, lo, hi, lr_, eps_in, eps_out, l2_, l1_)
    FO_PARALLEL(n, BODY);
#undef BODY
}

/* centered: ga given; momentum: h given. */
static inline void SUF(rmsprop_range)(T *restrict w, T *restrict s, T *restrict h,
                                      T *restrict ga, const T *restrict g, int64_t lo, int64_t hi,
                                      T lr, T alpha, T oma, T eps_in, T eps_out, T beta, T l2,
                                      T l1, const int momentum, const int centered) {
    for (int64_t i = lo; i < hi; i++) {
        T wi = w[i], gi = g[i] + l2 * wi + SUF(l1_term)(wi, l1);
        T si = alpha * s[i] + oma * (gi * gi);
        s[i] = si;
        if (centered) {
            T gai = alpha * ga[i] + oma * gi;
            ga[i] = gai;
            si = si - gai * gai;
        }
        T ratio = gi / (SQRT(si + eps_in) + eps_out);
        if (momentum) {
            T hi_ = beta * h[i] + ratio;
            h[i] = hi_;
            w[i] = wi - lr * hi_;
        } else {
            w[i] = wi - lr * ratio;
        }
    }
}

void SUF(fo_rmsprop_update)(T *w, T *s, T *h, T *ga, const T *g, int64_t n, double lr,
                            double alpha, double eps, int eps_inside_sqrt, double momentum,
                            double l2, double l1) {
    const T lr_ = (T)lr, a = (T)alpha, oma = (T)(1.0 - alpha), beta = (T)momentum;
    const T l2_ = (T)l2, l1_ = (T)l1;
    const T eps_in = eps_inside_sqrt ? (T)eps : (T)0, eps_out = eps_inside_sqrt ? (T)0 : (T)eps;
#define BODY(lo, hi, M, C) SUF(rmsprop_range)(w, s, h, ga, g, lo, hi, lr_, a, oma, eps_in, \
                                              eps_out, beta, l2_, l1_, M, C)
#define B00(lo, hi) BODY(lo, hi, 0, 0)
#define B01(lo, hi) BODY(lo, hi, 0, 1)
#define B10(lo, hi) BODY(lo, hi, 1, 0)
#define B11(lo, hi) BODY(lo, hi, 1, 1)
    if (h && ga) FO_PARALLEL(n, B11);
    else if (h) FO_PARALLEL(n, B10);
    else if (ga) FO_PARALLEL(n, B01);
    else FO_PARALLEL(n, B00);
#undef BODY
#undef B00
#undef B01
#undef B10
#undef B11
}

/* amsgrad: vmax given. */
static inline void SUF(adam_range)(T *restrict w, T *restrict m, T *restrict v, T *restrict vmax,
                                   const T *restrict g, int64_t lo, int64_t hi, T step_size,
                                   T b1, T omb1, T b2, T omb2, T inv_c2, T eps_in, T eps_out,
                                   T decay, T l2, T l1, const int amsgrad) {
    for (int64_t i = lo; i < hi; i++) {
        T wi = w[i], gi = g[i] + l2 * wi + SUF(l1_term)(wi, l1);
        T mi = b1 * m[i] + omb1 * gi;
        T vi = b2 * v[i] + omb2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        if (amsgrad) { /* a select that keeps a NaN in v */
            vi = vmax[i] > vi ? vmax[i] : vi;
            vmax[i] = vi;
        }
        w[i] = wi * decay - step_size * (mi / (SQRT(vi * inv_c2 + eps_in) + eps_out));
    }
}

void SUF(fo_adam_update)(T *w, T *m, T *v, T *vmax, const T *g, int64_t n, double lr,
                         double beta1, double beta2, double eps, int eps_inside_sqrt,
                         double decay, double l2, double l1, double c1, double c2) {
    const T step_size = (T)(lr / c1), inv_c2 = (T)(1.0 / c2);
    const T b1 = (T)beta1, omb1 = (T)(1.0 - beta1), b2 = (T)beta2, omb2 = (T)(1.0 - beta2);
    const T eps_in = eps_inside_sqrt ? (T)eps : (T)0, eps_out = eps_inside_sqrt ? (T)0 : (T)eps;
    const T decay_ = (T)decay, l2_ = (T)l2, l1_ = (T)l1;
#define BODY(lo, hi, A) SUF(adam_range)(w, m, v, vmax, g, lo, hi, step_size, b1, omb1, b2, omb2, \
                                        inv_c2, eps_in, eps_out, decay_, l2_, l1_, A)
#define B0(lo, hi) BODY(lo, hi, 0)
#define B1(lo, hi) BODY(lo, hi, 1)
    if (vmax) FO_PARALLEL(n, B1); else FO_PARALLEL(n, B0);
#undef BODY
#undef B0
#undef B1
}

void SUF(fo_nonfinite_count)(int64_t *count, const T *g, int64_t n) {
    int64_t bad = 0;
#pragma omp parallel for simd reduction(+ : bad) schedule(static) if (fo_parallel_ok(n, FO_PAR_MIN))
    for (int64_t i = 0; i < n; i++) bad += isfinite(g[i]) ? 0 : 1;
    count[0] += bad;
}

#endif
