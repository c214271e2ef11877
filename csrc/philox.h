/* Philox4x32-10, the counter-based RNG shared by the C kernels (Salmon, Moraes, Dror, Shaw,
 * "Parallel Random Numbers: As Easy as 1, 2, 3", SC'11; constants and round as in
 * Random123's philox.h). Header-only and branch-free so a loop over independent counters
 * vectorizes: the 32x32 -> 64-bit products become vpmuludq, 8 counters per AVX-512 register. */
#ifndef FUSEDOPS_PHILOX_H
#define FUSEDOPS_PHILOX_H
#include <stdint.h>

#define FO_PHILOX_M0 UINT64_C(0xD2511F53)
#define FO_PHILOX_M1 UINT64_C(0xCD9E8D57)
#define FO_PHILOX_W0 UINT32_C(0x9E3779B9)
#define FO_PHILOX_W1 UINT32_C(0xBB67AE85)
#define FO_PHILOX_ROUNDS 10

/* Four 32-bit words: a counter, or the random words Philox makes from it. Named scalar
 * fields (not an array) so the compiler keeps them in registers and can vectorize callers. */
typedef struct { uint32_t w0, w1, w2, w3; } fo_philox_words;

/* One Philox4x32-10 block: the random words of counter c under key (k0, k1). */
static inline fo_philox_words fo_philox4x32_10(fo_philox_words c, uint32_t k0, uint32_t k1) {
    for (int r = 0; r < FO_PHILOX_ROUNDS; r++) {
        uint64_t p0 = FO_PHILOX_M0 * c.w0, p1 = FO_PHILOX_M1 * c.w2;
        fo_philox_words n = {(uint32_t)(p1 >> 32) ^ c.w1 ^ k0, (uint32_t)p1,
                             (uint32_t)(p0 >> 32) ^ c.w3 ^ k1, (uint32_t)p0};
        c = n;
        k0 += FO_PHILOX_W0; k1 += FO_PHILOX_W1;  /* the bump after the last round is unused */
    }
    return c;
}

#endif
