/* Build facts for `fusedops info`. The thread controls live with the pool (pool.c). */
#include "fusedops.h"

#ifndef FO_CFLAGS
#define FO_CFLAGS "unknown"
#endif

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
