/* Dropout with a counter-based mask (DESIGN.md "Dropout"): element i keeps when word i % 4
 * of Philox4x32-10(counter (i/4 lo, i/4 hi, offset lo, offset hi), key (seed lo, seed hi))
 * is >= threshold = round(p * 2^32). One pass: generate, compare, scale, write y and the
 * packed mask bit (i % 8) of byte i / 8.
 *
 * Work is split into chunks of FO_CHUNK elements (a multiple of 8, so no two threads share a
 * mask byte). Each chunk's random words live in a stack buffer in L1, never in memory:
 * the Philox loop over independent counters vectorizes, then plain loops compare, scale
 * and pack. The result does not depend on the number of threads.
 *
 * `start` (the last argument) is the stream index of element 0: element i draws the bit of
 * index start + i, so a slice of a larger array gets the bits it has there. A chunk then
 * starts at word r = start % 4 of block (start + e0) / 4; r = 0 keeps the vectorized
 * whole-block paths, r > 0 generates the chunk's m + r words and skips the first r. */
#include "fusedops.h"
#include "philox.h"
#include <string.h>

#define FO_CHUNK 1024 /* elements per chunk: 256 Philox blocks, 128 mask bytes */
/* Below this many chunks (32768 elements, ~15 us of Philox on one core) a call runs on the
 * calling thread: an OpenMP fork/join costs more than it saves, and far more on a busy machine. */
#define FO_PARALLEL_CHUNKS 32

/* u[0 .. 4*nblk) <- the Philox words of blocks blk0 .. blk0+nblk-1. */
static inline void philox_fill(uint32_t *restrict u, int64_t blk0, int nblk,
                               uint32_t k0, uint32_t k1, uint32_t o0, uint32_t o1) {
#pragma omp simd
    for (int j = 0; j < nblk; j++) {
        uint64_t b = (uint64_t)(blk0 + j);
        fo_philox_words c = {(uint32_t)b, (uint32_t)(b >> 32), o0, o1};
        c = fo_philox4x32_10(c, k0, k1);
        u[4 * j] = c.w0; u[4 * j + 1] = c.w1; u[4 * j + 2] = c.w2; u[4 * j + 3] = c.w3;
    }
}

/* keep[e] in {0, 1} from the words; `all` is 0 when threshold = 2^32 (p = 1 drops all). */
static inline void keep_bits(uint8_t *restrict keep, const uint32_t *restrict u, int m,
                             uint32_t t32, uint8_t all) {
#pragma omp simd
    for (int e = 0; e < m; e++) keep[e] = (uint8_t)((u[e] >= t32) & all);
}

/* mask[0 .. ceil(m/8)) <- keep[0 .. m) packed little-endian; the tail bits stay 0. Eight
 * 0/1 bytes read as one little-endian uint64 are gathered into its top byte by one multiply:
 * byte i moves by 56 - 7i bits to bit 56 + i, and no two partial products overlap. */
static inline void pack_bits(uint8_t *restrict mask, uint8_t *restrict keep, int m) {
    for (int e = m; e < ((m + 7) & ~7); e++) keep[e] = 0;
    for (int k = 0; k < (m + 7) / 8; k++) {
        uint64_t v;
        memcpy(&v, keep + 8 * k, 8);
        mask[k] = (uint8_t)((v * UINT64_C(0x0102040810204080)) >> 56);
    }
}

#if defined(FO_PHILOX_AVX512) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__BMI2__)
/* keep[0 .. 4*j) for blocks blk0 .. blk0+j, 16 blocks (64 elements) per step; returns j, the
 * blocks done (the rest go through the portable path). Word w of lane l is element 4l + w:
 * pdep spreads each word's 8-bit compare mask to bits w, w+4, ... of a 32-bit mask. */
static inline int keep_fill_x16(uint8_t *restrict keep, int64_t blk0, int nblk, uint32_t k0,
                               uint32_t k1, uint32_t o0, uint32_t o1, uint32_t t32,
                               uint32_t all) {
    const __m512i lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i lo = _mm512_set1_epi64(0xFFFFFFFF), t = _mm512_set1_epi64(t32);
    const uint32_t spread[4] = {0x11111111u, 0x22222222u, 0x44444444u, 0x88888888u};
    int j = 0;
    for (; j + 16 <= nblk; j += 16) {
        __m512i b = _mm512_add_epi64(_mm512_set1_epi64(blk0 + j), lane);
        __m512i bb = _mm512_add_epi64(b, _mm512_set1_epi64(8));
        __m512i c[8] = {b, _mm512_srli_epi64(b, 32), _mm512_set1_epi64(o0), _mm512_set1_epi64(o1),
                        bb, _mm512_srli_epi64(bb, 32), _mm512_set1_epi64(o0), _mm512_set1_epi64(o1)};
        fo_philox4x32_10_x16(c, k0, k1);
        for (int g = 0; g < 2; g++) {
            uint32_t bits = 0;
            for (int w = 0; w < 4; w++)
                bits |= _pdep_u32(_mm512_cmpge_epu64_mask(_mm512_and_si512(c[4 * g + w], lo), t),
                                  spread[w]);
            __m256i v = _mm256_and_si256(_mm256_movm_epi8(bits & all), _mm256_set1_epi8(1));
            _mm256_storeu_si256((__m256i *)(keep + 4 * j + 32 * g), v);
        }
    }
    return j;
}
#endif

/* keep[0 .. m) for stream indices start + e0 .. (e0 a multiple of FO_CHUNK, so of 4). */
static inline void chunk_keep(uint8_t *restrict keep, int64_t e0, int m, uint64_t seed,
                              uint64_t offset, uint64_t threshold, uint64_t start) {
    uint32_t u[FO_CHUNK + 4];
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    uint32_t o0 = (uint32_t)offset, o1 = (uint32_t)(offset >> 32);
    uint32_t t32 = threshold > UINT32_MAX ? UINT32_MAX : (uint32_t)threshold;
    int64_t blk0 = (int64_t)(start >> 2) + e0 / 4; /* start < 2^64: the block fits 62 bits */
    int r = (int)(start & 3), nblk = (m + r + 3) / 4, done = 0;
#if defined(FO_PHILOX_AVX512) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__BMI2__)
    if (r == 0)
        done = keep_fill_x16(keep, blk0, nblk, k0, k1, o0, o1, t32,
                             threshold <= UINT32_MAX ? UINT32_MAX : 0);
#endif
    philox_fill(u, blk0 + done, nblk - done, k0, k1, o0, o1);
    keep_bits(keep + 4 * done, u + r, m - 4 * done, t32, (uint8_t)(threshold <= UINT32_MAX));
}

/* keep[0 .. 8*nb) <- mask[0 .. nb) unpacked: the byte copied into all 8 lanes of a uint64,
 * lane i keeps bit i, and adding 0x7f carries any set bit into the lane's top bit. */
static inline void unpack_bits(uint8_t *restrict keep, const uint8_t *restrict mask, int nb) {
    for (int k = 0; k < nb; k++) {
        uint64_t v = (mask[k] * UINT64_C(0x0101010101010101)) & UINT64_C(0x8040201008040201);
        v = ((v + UINT64_C(0x7f7f7f7f7f7f7f7f)) >> 7) & UINT64_C(0x0101010101010101);
        memcpy(keep + 8 * k, &v, 8);
    }
}

void fo_philox4x32(uint32_t *out, const uint32_t *counter, const uint32_t *key, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= FO_PARALLEL_CHUNKS * FO_CHUNK / 4)
    for (int64_t j = 0; j < n; j++) {
        fo_philox_words c = {counter[4 * j], counter[4 * j + 1], counter[4 * j + 2],
                             counter[4 * j + 3]};
        c = fo_philox4x32_10(c, key[2 * j], key[2 * j + 1]);
        out[4 * j] = c.w0; out[4 * j + 1] = c.w1; out[4 * j + 2] = c.w2; out[4 * j + 3] = c.w3;
    }
}

void fo_dropout_mask(uint8_t *mask, int64_t n, uint64_t seed, uint64_t offset,
                     uint64_t threshold, uint64_t start) {
    int64_t nchunks = (n + FO_CHUNK - 1) / FO_CHUNK;
#pragma omp parallel for schedule(static) if (nchunks >= FO_PARALLEL_CHUNKS)
    for (int64_t c = 0; c < nchunks; c++) {
        int64_t e0 = c * FO_CHUNK;
        int m = (int)(n - e0 < FO_CHUNK ? n - e0 : FO_CHUNK);
        uint8_t keep[FO_CHUNK];
        chunk_keep(keep, e0, m, seed, offset, threshold, start);
        pack_bits(mask + e0 / 8, keep, m);
    }
}

/* y = x * keep / divisor, as NumPy rounds it (-ffp-contract=off; no reciprocal). */
#define FO_DROPOUT(T, SUF)                                                                  \
    void fo_dropout_forward_##SUF(T *restrict y, uint8_t *restrict mask, const T *restrict x, \
                                  int64_t n, uint64_t seed, uint64_t offset,                \
                                  uint64_t threshold, T divisor, uint64_t start) {          \
        int64_t nchunks = (n + FO_CHUNK - 1) / FO_CHUNK;                                    \
        _Pragma("omp parallel for schedule(static) if (nchunks >= FO_PARALLEL_CHUNKS)")    \
        for (int64_t c = 0; c < nchunks; c++) {                                             \
            int64_t e0 = c * FO_CHUNK;                                                      \
            int m = (int)(n - e0 < FO_CHUNK ? n - e0 : FO_CHUNK);                           \
            uint8_t keep[FO_CHUNK];                                                         \
            chunk_keep(keep, e0, m, seed, offset, threshold, start);                        \
            _Pragma("omp simd")                                                             \
            for (int e = 0; e < m; e++) y[e0 + e] = x[e0 + e] * (T)keep[e] / divisor;       \
            if (mask) pack_bits(mask + e0 / 8, keep, m);                                    \
        }                                                                                   \
    }                                                                                       \
    void fo_dropout_backward_##SUF(T *restrict dx, const T *restrict dy,                    \
                                   const uint8_t *restrict mask, int64_t n, T divisor) {    \
        int64_t nchunks = (n + FO_CHUNK - 1) / FO_CHUNK;                                    \
        _Pragma("omp parallel for schedule(static) if (nchunks >= FO_PARALLEL_CHUNKS)")    \
        for (int64_t c = 0; c < nchunks; c++) {                                             \
            int64_t e0 = c * FO_CHUNK;                                                      \
            int m = (int)(n - e0 < FO_CHUNK ? n - e0 : FO_CHUNK);                           \
            uint8_t keep[FO_CHUNK];                                                         \
            unpack_bits(keep, mask + e0 / 8, (m + 7) / 8);                                  \
            _Pragma("omp simd")                                                             \
            for (int e = 0; e < m; e++) dx[e0 + e] = dy[e0 + e] * (T)keep[e] / divisor;    \
        }                                                                                   \
    }                                                                                       \
    void fo_dropout_scale_##SUF(T *restrict y, const T *restrict x, int64_t n, T scale) {   \
        _Pragma("omp parallel for simd schedule(static) if (n >= FO_PARALLEL_CHUNKS * FO_CHUNK)") \
        for (int64_t e = 0; e < n; e++) y[e] = scale * x[e];                                \
    }

FO_DROPOUT(float, f32)
FO_DROPOUT(double, f64)
