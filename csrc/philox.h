/* Philox4x32-10, the counter-based RNG shared by the C kernels (Salmon, Moraes, Dror, Shaw,
 * "Parallel Random Numbers: As Easy as 1, 2, 3", SC'11; constants and round as in
 * Random123's philox.h). Header-only and branch-free so a loop over independent counters
 * vectorizes, 8 counters per AVX-512 register. */
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

/* One Philox4x32-10 block: the random words of counter c under key (k0, k1). The state is
 * carried in uint64 lanes holding 32-bit values, so a vectorized loop over counters needs no
 * 32 <-> 64-bit shuffles around the products: with gcc 12 on AVX-512, 1.8x faster than uint32
 * state with widening products (Philox is compute-bound: ~1.7-2 ns per block per core here). */
static inline fo_philox_words fo_philox4x32_10(fo_philox_words c, uint32_t key0, uint32_t key1) {
    const uint64_t lo = UINT64_C(0xFFFFFFFF);
    uint64_t c0 = c.w0, c1 = c.w1, c2 = c.w2, c3 = c.w3, k0 = key0, k1 = key1;
    for (int r = 0; r < FO_PHILOX_ROUNDS; r++) {
        uint64_t p0 = FO_PHILOX_M0 * c0, p1 = FO_PHILOX_M1 * c2;
        c0 = (p1 >> 32) ^ c1 ^ k0;
        c1 = p1 & lo;
        c2 = (p0 >> 32) ^ c3 ^ k1;
        c3 = p0 & lo;
        k0 = (k0 + FO_PHILOX_W0) & lo;  /* the bump after the last round is unused */
        k1 = (k1 + FO_PHILOX_W1) & lo;
    }
    fo_philox_words out = {(uint32_t)c0, (uint32_t)c1, (uint32_t)c2, (uint32_t)c3};
    return out;
}

#if defined(__AVX512F__)
#include <immintrin.h>
#define FO_PHILOX_AVX512 1

/* Philox4x32-10 of 16 counters at once: two groups of 8, words c[0..3] and c[4..7], one
 * counter per 64-bit lane (the low 32 bits of each lane hold the word). vpmuludq reads only the low 32 bits of its operands, and no step
 * moves high bits down, so the high halves may hold garbage: no masking inside the rounds.
 * gcc auto-vectorizes the scalar version with vpmullq (a full 64-bit multiply); this form,
 * with two independent groups of 8 for ILP, makes the mask kernel 1.2x faster (gcc 12). */
static inline void fo_philox4x32_10_x16(__m512i c[8], uint32_t k0, uint32_t k1) {
    const __m512i m0 = _mm512_set1_epi64(FO_PHILOX_M0), m1 = _mm512_set1_epi64(FO_PHILOX_M1);
    for (int r = 0; r < FO_PHILOX_ROUNDS; r++) {
        __m512i kk0 = _mm512_set1_epi64(k0), kk1 = _mm512_set1_epi64(k1);
        for (int g = 0; g < 8; g += 4) {  /* two independent groups: twice the ILP */
            __m512i p0 = _mm512_mul_epu32(c[g], m0), p1 = _mm512_mul_epu32(c[g + 2], m1);
            /* ternary-logic immediate 0x96: a ^ b ^ c */
            c[g] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p1, 32), c[g + 1], kk0, 0x96);
            c[g + 2] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p0, 32), c[g + 3], kk1, 0x96);
            c[g + 1] = p1;
            c[g + 3] = p0;
        }
        k0 += FO_PHILOX_W0; k1 += FO_PHILOX_W1;
    }
}
#endif

#endif
