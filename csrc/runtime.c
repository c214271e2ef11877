/* Thread control and build facts for `fusedops info`. */
#include <omp.h>
#include "fusedops.h"

#ifndef FO_CFLAGS
#define FO_CFLAGS "unknown"
#endif

void fo_set_num_threads(int n) { omp_set_num_threads(n); }

int fo_get_num_threads(void) { return omp_get_max_threads(); }

const char *fo_compiler(void) {
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown";
#endif
}

const char *fo_cflags(void) { return FO_CFLAGS; }
