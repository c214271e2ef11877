/* The C kernels' own OpenMP runtime: the three entry points gcc's -fopenmp code calls for the
 * constructs csrc uses (`parallel` and `parallel for schedule(static)` with if() clauses and
 * scalar reductions): GOMP_parallel, omp_get_num_threads, omp_get_thread_num. They are hidden
 * symbols of this extension, so the kernels bind to them at link time and never to a libgomp
 * the process may hold (the user's, PyTorch's, Numba's), and the extension links no libgomp.
 *
 * Why not libgomp (measured: benchmarks/test_threads.py, benchmarks/test_composability.py;
 * README "Using fusedops inside your program"):
 * - after each parallel region libgomp's idle workers spin ~300,000 iterations (about 4 ms of a
 *   core here) before sleeping: they take the cores the user's BLAS needs next. Its wait policy
 *   is read once, from OMP_WAIT_POLICY / GOMP_SPINCOUNT, when the process loads libgomp, so a
 *   library cannot make its own regions passive without changing every other OpenMP user in
 *   the process. Here idle workers spin FO_SPIN_NS, then sleep on a condition variable.
 * - a static team waits for its slowest thread: on a busy machine (or next to BLAS threads) a
 *   region waits milliseconds for a descheduled worker to start its share. Here the team's
 *   shares ("slots": thread numbers 0 .. team-1) are claimed by whichever thread comes first;
 *   the calling thread claims too, and runs every slot itself when no worker is awake, so a
 *   region never waits for a thread that has not started. This needs regions without barriers
 *   (each slot may run after another on the same thread): csrc has none, and a construct that
 *   needs one (GOMP_barrier) has no definition here, so the build's import check fails.
 * - after fork() a child's libgomp still believes in the parent's worker threads and waits for
 *   them forever. Here a pthread_atfork child handler forgets the pool; the child's first
 *   region starts fresh workers (children run in parallel too), the parent keeps its own.
 * - omp_set_num_threads sets the calling thread's ICV only; here the team size is one
 *   process-wide value (fo_set_num_threads), the same from every Python thread.
 * - two Python threads entering regions at once: the first gets the pool, the other runs its
 *   region on its own thread (a team of one): both correct, no oversubscribed second pool.
 *
 * A new construct that needs another libgomp entry point (GOMP_barrier, GOMP_loop_*, ...)
 * leaves an undefined symbol: tests/test_threads.py fails on any GOMP_ or omp_ import. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include "fusedops.h"
#include "threads.h"

#define FO_HIDDEN __attribute__((visibility("hidden")))
#define FO_MAX_THREADS 256
#define FO_SPIN_NS 100000 /* idle workers spin this long after a region, then sleep */

#if defined(__x86_64__) || defined(__i386__)
#define FO_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define FO_RELAX() __asm__ __volatile__("yield")
#else
#define FO_RELAX() ((void)0)
#endif

static struct {
    pthread_mutex_t mu;
    pthread_cond_t work, done;  /* workers sleep on `work`, the master on `done` */
    /* the current region: generation << 32 | team << 16 | next unclaimed slot */
    _Atomic uint64_t ticket;
    _Atomic int slots_done;     /* slots of the current region finished */
    atomic_flag busy;           /* a master owns the pool */
    int created;                /* workers that exist (in this process) */
    void (*fn)(void *);
    void *data;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
          0, 0, ATOMIC_FLAG_INIT, 0, NULL, NULL};

static _Atomic int team_size;  /* process-wide threads per region; 0 until first read */
static _Atomic int par_mode;   /* FO_PAR_BY_SIZE, FO_PAR_SERIAL or FO_PAR_ALWAYS */
static __thread int tl_team = 1, tl_id = 0, tl_in_region = 0;

FO_HIDDEN int omp_get_num_threads(void) { return tl_team; }
FO_HIDDEN int omp_get_thread_num(void) { return tl_id; }

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* OMP_NUM_THREADS (its first value) if set, else the CPUs this process may run on. */
static int default_team(void) {
    const char *env = getenv("OMP_NUM_THREADS");
    long n = env ? strtol(env, NULL, 10) : 0;
    if (n < 1) {
#if defined(__linux__)
        cpu_set_t set;
        n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
#else
        n = sysconf(_SC_NPROCESSORS_ONLN);
#endif
    }
    return n < 1 ? 1 : n > FO_MAX_THREADS ? FO_MAX_THREADS : (int)n;
}

void fo_set_num_threads(int n) {  /* n < 1: back to the default */
    atomic_store(&team_size, n < 1 ? 0 : n > FO_MAX_THREADS ? FO_MAX_THREADS : n);
}

int fo_get_num_threads(void) {
    int n = atomic_load(&team_size);
    if (n == 0) {
        int zero = 0;
        atomic_compare_exchange_strong(&team_size, &zero, default_team());
        n = atomic_load(&team_size);
    }
    return n;
}

void fo_set_parallel_mode(int mode) { atomic_store(&par_mode, mode); }

int fo_parallel_ok(int64_t work, int64_t parallel_min) {
    int mode = atomic_load_explicit(&par_mode, memory_order_relaxed);
    return mode == FO_PAR_ALWAYS || (mode == FO_PAR_BY_SIZE && work >= parallel_min);
}

int fo_pool_workers(void) { return pool.created; }

/* Spin up to FO_SPIN_NS for `ready(arg)`, then sleep on `cv` until it holds. */
static void wait_for(int (*ready)(const void *), const void *arg, pthread_cond_t *cv) {
    int64_t until = 0;
    for (unsigned i = 1;; i++) {
        if (ready(arg)) return;
        FO_RELAX();
        if ((i & 255) == 0) {
            int64_t t = now_ns();
            if (until == 0) until = t + FO_SPIN_NS;
            else if (t > until) break;
        }
    }
    pthread_mutex_lock(&pool.mu);
    while (!ready(arg)) pthread_cond_wait(cv, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
}

static int new_region(const void *gen) {
    return (atomic_load_explicit(&pool.ticket, memory_order_acquire) >> 32) != *(const uint64_t *)gen;
}

static int all_done(const void *team) {
    return atomic_load_explicit(&pool.slots_done, memory_order_acquire) == *(const int *)team;
}

/* Claim and run slots of generation `gen` until none is left; the thread that finishes the
 * last slot wakes the master. */
static void run_slots(uint64_t gen) {
    uint64_t t = atomic_load_explicit(&pool.ticket, memory_order_acquire);
    for (;;) {
        int team = (int)(t >> 16 & 0xFFFF), slot = (int)(t & 0xFFFF);
        if (t >> 32 != gen || slot >= team) return;
        if (!atomic_compare_exchange_weak_explicit(&pool.ticket, &t, t + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;  /* t now holds the current value: try again */
        tl_team = team, tl_id = slot, tl_in_region = 1;
        pool.fn(pool.data);
        tl_team = 1, tl_id = 0, tl_in_region = 0;
        if (atomic_fetch_add_explicit(&pool.slots_done, 1, memory_order_acq_rel) + 1 == team) {
            pthread_mutex_lock(&pool.mu);  /* the master checks slots_done under mu */
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.mu);
        }
        t = atomic_load_explicit(&pool.ticket, memory_order_acquire);
    }
}

static void *worker(void *arg) {
    uint64_t gen = (uint64_t)(uintptr_t)arg;  /* the generation before this thread existed */
    for (;;) {
        wait_for(new_region, &gen, &pool.work);
        gen = atomic_load_explicit(&pool.ticket, memory_order_acquire) >> 32;
        run_slots(gen);
    }
    return NULL;
}

/* Start workers until n - 1 exist (detached; they live as long as the process). Returns the
 * team size that can run: fewer when the system refuses a thread. */
static int grow(int n) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    uintptr_t gen = (uintptr_t)(atomic_load(&pool.ticket) >> 32);
    while (pool.created < n - 1) {
        pthread_t t;
        if (pthread_create(&t, &attr, worker, (void *)gen) != 0) break;
        pool.created++;
    }
    pthread_attr_destroy(&attr);
    return pool.created + 1 < n ? pool.created + 1 : n;
}

static void run_alone(void (*fn)(void *), void *data) {
    int team = tl_team, id = tl_id, in = tl_in_region;
    tl_team = 1, tl_id = 0, tl_in_region = 1;
    fn(data);
    tl_team = team, tl_id = id, tl_in_region = in;
}

/* gcc lowers `#pragma omp parallel [if(c)]` to GOMP_parallel(body, data, c ? 0 : 1, flags). */
FO_HIDDEN void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads,
                             unsigned flags) {
    (void)flags;  /* proc_bind: not used */
    int n = fo_get_num_threads();
    if (num_threads != 0 && (int)num_threads < n) n = (int)num_threads;
    if (n <= 1 || tl_in_region || atomic_flag_test_and_set(&pool.busy)) {
        run_alone(fn, data);  /* small, nested, or the pool is another thread's right now */
        return;
    }
    n = grow(n);
    pool.fn = fn, pool.data = data;
    atomic_store(&pool.slots_done, 0);
    pthread_mutex_lock(&pool.mu);
    uint64_t gen = (atomic_load(&pool.ticket) >> 32) + 1;
    atomic_store_explicit(&pool.ticket, gen << 32 | (uint64_t)n << 16, memory_order_release);
    pthread_cond_broadcast(&pool.work);
    pthread_mutex_unlock(&pool.mu);
    run_slots(gen);  /* all of them, when no worker is awake */
    wait_for(all_done, &n, &pool.done);
    atomic_flag_clear(&pool.busy);
}

/* fork(): the child has none of the parent's workers. The prepare handler takes the pool's
 * mutex so no thread of the parent holds it at the fork; the child starts with no workers and
 * fresh condition variables, and creates its own at its first region. */
static void before_fork(void) { pthread_mutex_lock(&pool.mu); }
static void after_fork_parent(void) { pthread_mutex_unlock(&pool.mu); }
static void after_fork_child(void) {
    pool.created = 0;
    atomic_store(&pool.slots_done, 0);
    atomic_flag_clear(&pool.busy);
    pthread_cond_init(&pool.work, NULL);
    pthread_cond_init(&pool.done, NULL);
    pthread_mutex_unlock(&pool.mu);
}

__attribute__((constructor)) static void fo_pool_init(void) {
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

/* The team size a region over `work` elements with threshold `parallel_min` runs with (tests:
 * thresholds, the process-wide count, fork children). */
static void probe_body(void *out) {
    if (omp_get_thread_num() == 0) *(int *)out = omp_get_num_threads();
}

int fo_probe_team(int64_t work, int64_t parallel_min) {
    int team = 0;
#pragma omp parallel if (fo_parallel_ok(work, parallel_min))
    probe_body(&team);
    return team;
}
