/* When the C kernels run in parallel (internal; not parsed by cffi's cdef).
 *
 * Each family runs a loop over `work` elements serially, on the calling thread and without
 * waking the pool (pool.c), below its threshold here: under it a parallel region costs more
 * than it saves (far more on a busy machine, where a woken worker may not run before the
 * caller has done every share itself). benchmarks/test_threads.py (`thresholds`) measures the
 * crossover, serial against parallel per op and size, side by side (README "Threads"). On the
 * shared 2-core VM these were written on, a second thread paid for none of these ops up to 1M
 * elements (C's serial AVX-512 Philox included), so the values are provisional: the same as
 * the Numba kernels' memory-bound thresholds, and main's former 32768 for dropout.
 * fo_set_parallel_mode forces one way for tests and that benchmark. */
#ifndef FO_THREADS_H
#define FO_THREADS_H
#include <stdint.h>

#define FO_PAR_MIN_OPTIM 65536    /* optimizer steps, NaN count: elements */
#define FO_PAR_MIN_STREAM 65536   /* copy, triad: elements (memory-bound like the steps) */
#define FO_PAR_MIN_DROPOUT 32768  /* dropout, Philox: elements (compute-bound: pays earlier) */
#define FO_PAR_MIN_BN 65536       /* batch norm: elements of x (per pass) */

/* modes of fo_set_parallel_mode */
#define FO_PAR_BY_SIZE 0
#define FO_PAR_SERIAL 1
#define FO_PAR_ALWAYS 2

/* 1 when a loop over `work` elements may run in parallel (threshold `parallel_min`, mode). */
int fo_parallel_ok(int64_t work, int64_t parallel_min);

#endif
