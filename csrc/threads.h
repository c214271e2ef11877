/* When the C kernels run in parallel (internal; not parsed by cffi's cdef).
 *
 * Each family runs a loop over `work` elements serially, on the calling thread and without
 * waking the pool (pool.c), below its threshold here: under it a parallel region costs more
 * than it saves, and a woken pool competes with the user's BLAS for the cores.
 * Measured by benchmarks/test_threads.py (`thresholds`: single calls, serial and parallel
 * interleaved, 4K to 4M elements; the threshold is the smallest size from which parallel is
 * >= 1.1x faster on the fastest calls at every larger size; README "Using fusedops inside your
 * program"). On the shared 2-core VM these were written on (load ~4, 2026-11-29) crossovers
 * were: Adam 2M (SGD none up to 4M), batch norm 2M, dropout 4M, 8-bit Adam 4M. The pool's
 * master runs every share itself when no worker is awake, so where a second core was busy a
 * parallel call mostly cost 0.9-1.0x of serial. A quiet machine, whose other cores are free,
 * should cross over far lower: re-run the benchmark there and set these from its output.
 * fo_set_parallel_mode forces one way for tests and that benchmark. */
#ifndef FO_THREADS_H
#define FO_THREADS_H
#include <stdint.h>

#define FO_PAR_MIN_OPTIM 2097152   /* optimizer steps, NaN count: elements (Adam's crossover) */
#define FO_PAR_MIN_STREAM 2097152  /* copy, triad: elements (memory-bound like the steps) */
#define FO_PAR_MIN_DROPOUT 4194304 /* dropout, Philox: elements */
#define FO_PAR_MIN_BN 2097152      /* batch norm: elements of x (per pass) */
#define FO_PAR_MIN_LOWBIT 4194304  /* low-bit steps, (de)quantize: elements */

/* modes of fo_set_parallel_mode */
#define FO_PAR_BY_SIZE 0
#define FO_PAR_SERIAL 1
#define FO_PAR_ALWAYS 2

/* 1 when a loop over `work` elements may run in parallel (threshold `parallel_min`, mode). */
int fo_parallel_ok(int64_t work, int64_t parallel_min);

#endif
