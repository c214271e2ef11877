/* When the C kernels run in parallel (internal; not parsed by cffi's cdef).
 *
 * Each family runs a loop over `work` elements serially, on the calling thread and without
 * waking the pool (pool.c), below its threshold here: under it a parallel region costs more
 * than it saves, and a woken pool competes with the user's BLAS for the cores.
 * Measured by benchmarks/test_threads.py (`thresholds`: single calls, serial and parallel
 * interleaved, 4K to 4M elements; the threshold is the smallest size from which parallel is
 * >= 1.1x faster on the fastest calls at every larger size; README "Using fusedops inside your
 * program"). On the 2-core EPYC VM when quiet (load ~1, 2026-11-29 14:49, two sweeps of 8
 * rounds) crossovers were: Adam 64K / 4M (the sweeps disagree; 1.84x at 1M in the first),
 * SGD 1M, batch norm 64K in both, dropout 4K in both (1.15x; 1.5x from 64K), 8-bit Adam none /
 * 4M (1.46-1.73x from 64K to 256K in the first). Loaded by other builds (load ~4) the same
 * VM crossed over at 2M-4M: the pool's master runs every share itself when no worker is
 * awake, so there a parallel call mostly costs 0.9-1.0x of serial.
 * fo_set_parallel_mode forces one way for tests and that benchmark. */
#ifndef FO_THREADS_H
#define FO_THREADS_H
#include <stdint.h>

#define FO_PAR_MIN_OPTIM 262144    /* optimizer steps, NaN count: elements (as Numba's) */
#define FO_PAR_MIN_STREAM 1048576  /* copy, triad: elements (memory-bound like SGD) */
#define FO_PAR_MIN_DROPOUT 16384   /* dropout, Philox: elements */
#define FO_PAR_MIN_BN 65536        /* batch norm: elements of x (per pass) */
#define FO_PAR_MIN_LOWBIT 262144   /* low-bit steps, (de)quantize: elements */

/* modes of fo_set_parallel_mode */
#define FO_PAR_BY_SIZE 0
#define FO_PAR_SERIAL 1
#define FO_PAR_ALWAYS 2

/* 1 when a loop over `work` elements may run in parallel (threshold `parallel_min`, mode). */
int fo_parallel_ok(int64_t work, int64_t parallel_min);

#endif
