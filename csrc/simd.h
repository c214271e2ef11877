/* SIMD levels: the kernel sources are compiled once per level and simd.c picks one at load.
 *
 * build_ffi.py writes one small wrapper per (kernel source, level): it applies the level's
 * target pragma, renames every kernel entry point fo_x to fo_x__l<level>, and includes the
 * source; the extension's fo_x forwards to the copy of the level simd.c chose (one indirect
 * call per kernel call). The pragma also defines the ISA macros (__AVX2__, __AVX512F__, ...),
 * so code selected with #if (philox.h's AVX-512 rounds) follows the level, and OpenMP's
 * outlined loop bodies inherit the target of the function they come from (gcc 12; checked
 * with objdump: ymm in the avx2 copy, zmm in the avx512 copy).
 *
 * Portable build (FUSEDOPS_MARCH unset, gcc on x86-64): the module is compiled for x86-64-v2
 * and the kernels three times:
 *   level 0 "baseline"  x86-64-v2 (SSE4.2, POPCNT), any x86-64 CPU of the last 15 years
 *   level 1 "avx2"      x86-64-v3 (AVX2, FMA, BMI2), Haswell / Zen and later
 *   level 2 "avx512"    x86-64-v4 (AVX-512 F/BW/CD/DQ/VL), Skylake-X / Zen 4 and later
 * -ffp-contract=off holds in every copy, so FMA-capable levels round exactly as the baseline
 * does: every level computes the same bits (tests/test_simd.py).
 * Any other build (FUSEDOPS_MARCH=native or another value, other architectures such as
 * aarch64, compilers other than gcc) has one level, compiled with the module's flags. */
#ifndef FUSEDOPS_SIMD_H
#define FUSEDOPS_SIMD_H

#if defined(FO_SIMD_PORTABLE) && defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FO_SIMD_NLEVELS 3
#define FO_SIMD_NAMES {"baseline", "avx2", "avx512"}
#define FO_SIMD_TARGETS {"arch=x86-64-v2", "arch=x86-64-v3", "arch=x86-64-v4"}
/* The pragma that starts level L's wrapper (level 0 uses the command line's -march). */
#define FO_SIMD_PRAGMA_1 _Pragma("GCC target(\"arch=x86-64-v3\")")
#define FO_SIMD_PRAGMA_2 _Pragma("GCC target(\"arch=x86-64-v4\")")
#else
#define FO_SIMD_NLEVELS 1
#ifndef FO_SIMD_SINGLE_NAME
#define FO_SIMD_SINGLE_NAME "baseline"
#endif
#define FO_SIMD_NAMES {FO_SIMD_SINGLE_NAME}
#define FO_SIMD_TARGETS {"the module's flags"}
#endif

/* The per-level copies of entry point f, and the forwarders' table of them. */
#if FO_SIMD_NLEVELS == 3
#define FO_SIMD_DECLS(f) f##__l0, f##__l1, f##__l2
#else
#define FO_SIMD_DECLS(f) f##__l0
#endif
#define FO_SIMD_IMPL(f) FO_SIMD_DECLS(f)

/* The level the forwarders call (simd.c); an index below FO_SIMD_NLEVELS. */
extern int fo_simd_level;

#endif
