/*
 * kernel_avx2.c -- BLAKE3 kernel for AVX2: eight messages side by side.
 *
 * Lane layout: every __m256i holds one 32-bit word of eight different messages,
 * lane l (element l, l = 0..7) belonging to message i+l.  The state v[0..15] and the
 * message words m[0..15] are such vectors.  Loading a block transposes it: two 32-byte
 * rows per message (words 0..7 and 8..15) become, after an 8x8 transpose of each half,
 * m[8h+j] = word 8h+j of messages i..i+7.  Storing the output transposes back.
 *
 * Compiled with target("avx2") on these functions only; the dispatcher calls them only
 * when the CPU (and OS) support AVX2.  Fewer than eight messages left: SSE4.1 path.
 */
#include "kernel.h"

#if RS_X86
#include <immintrin.h>

#define TARGET __attribute__((target("avx2")))
#define LANES 8

TARGET static inline __m256i add(__m256i a, __m256i b) { return _mm256_add_epi32(a, b); }
TARGET static inline __m256i xor_(__m256i a, __m256i b) { return _mm256_xor_si256(a, b); }
TARGET static inline __m256i set1(uint32_t w) { return _mm256_set1_epi32((int)w); }

/* Rotations by 16 and 8 move whole bytes: one byte shuffle each (per 128-bit half). */
TARGET static inline __m256i rot16(__m256i x)
{
    return _mm256_shuffle_epi8(
        x, _mm256_set_epi8(13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2,
                           13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2));
}
TARGET static inline __m256i rot8(__m256i x)
{
    return _mm256_shuffle_epi8(
        x, _mm256_set_epi8(12, 15, 14, 13, 8, 11, 10, 9, 4, 7, 6, 5, 0, 3, 2, 1,
                           12, 15, 14, 13, 8, 11, 10, 9, 4, 7, 6, 5, 0, 3, 2, 1));
}
TARGET static inline __m256i rot12(__m256i x)
{
    return _mm256_or_si256(_mm256_srli_epi32(x, 12), _mm256_slli_epi32(x, 20));
}
TARGET static inline __m256i rot7(__m256i x)
{
    return _mm256_or_si256(_mm256_srli_epi32(x, 7), _mm256_slli_epi32(x, 25));
}

/* 8x8 transpose of 32-bit words: row r element c -> row c element r. */
TARGET static inline void transpose8(__m256i r[8])
{
    /* Within each 128-bit half: interleave pairs of rows, then pairs of pairs. */
    __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]);
    __m256i t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]);
    __m256i t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]);
    __m256i t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]);
    __m256i t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    /* u0: column 0 of rows 0..3 | column 4 of rows 0..3; u4 the same for rows 4..7, ... */
    __m256i u0 = _mm256_unpacklo_epi64(t0, t2);
    __m256i u1 = _mm256_unpackhi_epi64(t0, t2);
    __m256i u2 = _mm256_unpacklo_epi64(t1, t3);
    __m256i u3 = _mm256_unpackhi_epi64(t1, t3);
    __m256i u4 = _mm256_unpacklo_epi64(t4, t6);
    __m256i u5 = _mm256_unpackhi_epi64(t4, t6);
    __m256i u6 = _mm256_unpacklo_epi64(t5, t7);
    __m256i u7 = _mm256_unpackhi_epi64(t5, t7);
    /* Across halves: low halves give columns 0..3, high halves columns 4..7. */
    r[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
    r[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
    r[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
    r[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
    r[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
    r[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
    r[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
    r[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

#define G(a, b, c, d, x, y)           \
    do {                              \
        a = add(add(a, x), b);        \
        d = rot16(xor_(d, a));        \
        c = add(c, d);                \
        b = rot12(xor_(b, c));        \
        a = add(add(a, y), b);        \
        d = rot8(xor_(d, a));         \
        c = add(c, d);                \
        b = rot7(xor_(b, c));         \
    } while (0)

#define ROUND(s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15) \
    G(v[0], v[4], v[8], v[12], m[s0], m[s1]);                                     \
    G(v[1], v[5], v[9], v[13], m[s2], m[s3]);                                     \
    G(v[2], v[6], v[10], v[14], m[s4], m[s5]);                                    \
    G(v[3], v[7], v[11], v[15], m[s6], m[s7]);                                    \
    G(v[0], v[5], v[10], v[15], m[s8], m[s9]);                                    \
    G(v[1], v[6], v[11], v[12], m[s10], m[s11]);                                  \
    G(v[2], v[7], v[8], v[13], m[s12], m[s13]);                                   \
    G(v[3], v[4], v[9], v[14], m[s14], m[s15]);

/* Hash messages i .. i+7 of the call. */
TARGET static void hash8(const uint8_t *prefix, size_t prefix_len, const uint8_t *base,
                         size_t stride, size_t len, size_t i, uint8_t *out)
{
    size_t nblocks = rs_b3_blocks(len);
    uint8_t tmp[LANES][RS_B3_BLOCK_LEN];
    __m256i cv[8];
    for (int w = 0; w < 8; w++)
        cv[w] = set1(rs_b3_iv[w]);
    for (size_t b = 0; b < nblocks; b++) {
        size_t off = b * RS_B3_BLOCK_LEN;
        size_t blen = len - off < RS_B3_BLOCK_LEN ? len - off : RS_B3_BLOCK_LEN;
        const uint8_t *p[LANES];
        for (int l = 0; l < LANES; l++) {
            const uint8_t *msg = base ? base + (i + (size_t)l) * stride : base;
            p[l] = rs_b3_block(prefix, prefix_len, msg, off, blen, tmp[l]);
        }
        __m256i m[16];
        for (int h = 0; h < 2; h++) {
            __m256i r[8];
            for (int l = 0; l < LANES; l++)
                r[l] = _mm256_loadu_si256((const __m256i *)(const void *)(p[l] + 32 * h));
            transpose8(r);
            for (int j = 0; j < 8; j++)
                m[8 * h + j] = r[j];
        }
        __m256i v[16] = {cv[0], cv[1], cv[2], cv[3], cv[4], cv[5], cv[6], cv[7],
                         set1(RS_B3_IV0), set1(RS_B3_IV1), set1(RS_B3_IV2), set1(RS_B3_IV3),
                         _mm256_setzero_si256(), _mm256_setzero_si256(), set1((uint32_t)blen),
                         set1(rs_b3_block_flags(b, nblocks))};
        RS_B3_ROUNDS(ROUND)
        for (int w = 0; w < 8; w++)
            cv[w] = xor_(v[w], v[w + 8]);
    }
    /* cv[w] holds word w of eight lanes: transpose to the eight words of one lane per row. */
    transpose8(cv);
    for (int l = 0; l < LANES; l++)
        _mm256_storeu_si256((__m256i *)(void *)(out + 32 * (size_t)l), cv[l]);
}

void rs_hash_many_avx2(const uint8_t *prefix, size_t prefix_len, const uint8_t *base,
                       size_t stride, size_t msg_len, size_t count, uint8_t *out)
{
    size_t len = prefix_len + msg_len;
    size_t i = 0;
    for (; i + LANES <= count; i += LANES)
        hash8(prefix, prefix_len, base, stride, len, i, out + 32 * i);
    if (i < count)
        rs_hash_many_sse41(prefix, prefix_len, base ? base + i * stride : base, stride,
                           msg_len, count - i, out + 32 * i);
}

#endif /* RS_X86 */
