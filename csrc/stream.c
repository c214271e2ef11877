/* Bandwidth probe: STREAM's copy and triad (McCalpin, "Memory Bandwidth and Machine
 * Balance", 1995). Built with -ffp-contract=off so triad rounds s*c and the add separately,
 * exactly as NumPy does. Below FO_PAR_MIN_STREAM elements (threads.h) a call runs serially. */
#include "fusedops.h"
#include "threads.h"

#define FO_STREAM(T, SUF)                                                        \
    void fo_stream_copy_##SUF(T *restrict dst, const T *restrict src, int64_t n) {      \
        _Pragma("omp parallel for simd schedule(static) if (fo_parallel_ok(n, FO_PAR_MIN_STREAM))") \
        for (int64_t i = 0; i < n; i++) dst[i] = src[i];                         \
    }                                                                            \
    void fo_stream_triad_##SUF(T *restrict a, const T *restrict b, const T *restrict c, \
                        int64_t n, T s) {                                        \
        _Pragma("omp parallel for simd schedule(static) if (fo_parallel_ok(n, FO_PAR_MIN_STREAM))") \
        for (int64_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];                  \
    }

FO_STREAM(float, f32)
FO_STREAM(double, f64)
