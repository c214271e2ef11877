/* Which compiled copy of the kernels runs (see simd.h). Compiled once, with the module's
 * flags. The best level this CPU supports is chosen when the extension is loaded;
 * fo_simd_set switches (FUSEDOPS_SIMD, and tests that run every level on one machine). */
#include "fusedops.h"
#include "simd.h"

int fo_simd_level = 0;

static const char *const fo_simd_names[FO_SIMD_NLEVELS] = FO_SIMD_NAMES;
static const char *const fo_simd_targets[FO_SIMD_NLEVELS] = FO_SIMD_TARGETS;

/* 1 when this CPU (and its OS: libgcc checks XGETBV for the AVX / AVX-512 register state)
 * runs level's instructions. */
static int fo_simd_cpu_has(int level) {
#if FO_SIMD_NLEVELS > 1
    __builtin_cpu_init();
#if __GNUC__ >= 12 /* the ISA levels by name, exactly what the wrappers' pragmas enable */
    if (level == 2) return __builtin_cpu_supports("x86-64-v4") != 0;
    if (level == 1) return __builtin_cpu_supports("x86-64-v3") != 0;
#else
    if (level == 2)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl") && fo_simd_cpu_has(1);
    if (level == 1)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
#endif
#endif
    return level == 0;
}

__attribute__((constructor)) static void fo_simd_init(void) {
    for (int level = FO_SIMD_NLEVELS - 1; level >= 0; level--)
        if (fo_simd_cpu_has(level)) {
            fo_simd_level = level;
            return;
        }
}

int fo_simd_count(void) { return FO_SIMD_NLEVELS; }

const char *fo_simd_name(int level) {
    return level >= 0 && level < FO_SIMD_NLEVELS ? fo_simd_names[level] : "";
}

const char *fo_simd_target(int level) {
    return level >= 0 && level < FO_SIMD_NLEVELS ? fo_simd_targets[level] : "";
}

int fo_simd_supported(int level) {
    return level >= 0 && level < FO_SIMD_NLEVELS && fo_simd_cpu_has(level);
}

int fo_simd_get(void) { return fo_simd_level; }

int fo_simd_set(int level) {
    if (!fo_simd_supported(level)) return -1;
    fo_simd_level = level;
    return 0;
}
