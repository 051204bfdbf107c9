/*
 * kernel_avx512.c -- BLAKE3 kernel for AVX-512: sixteen messages side by side.
 *
 * Lane layout: every __m512i holds one 32-bit word of sixteen different messages,
 * lane l (element l, l = 0..15) belonging to message i+l.  The state v[0..15] and the
 * message words m[0..15] are such vectors; rotations are single vprord instructions.
 * Loading a block: for each group of eight lanes g (lanes 8g..8g+7) and each half h of
 * the block (words 8h..8h+7), eight 32-byte rows are transposed 8x8 into eight __m256i
 * (word 8h+j of those eight lanes); the two lane groups are joined into one __m512i:
 * m[8h+j] = [ lanes 0..7 | lanes 8..15 ].  Storing the output splits each cv word into
 * its two lane groups and transposes each back to 32 bytes per message.
 *
 * Compiled with target("avx512f") on these functions only (AVX512F implies AVX2, used by
 * the 8x8 transposes); the dispatcher calls them only when the CPU and OS support
 * AVX512F.  Fewer than sixteen messages left: AVX2 path.
 */
#include "kernel.h"

#if RS_X86
#include <immintrin.h>

#define TARGET __attribute__((target("avx512f")))
#define LANES 16

TARGET static inline __m512i add(__m512i a, __m512i b) { return _mm512_add_epi32(a, b); }
TARGET static inline __m512i xor_(__m512i a, __m512i b) { return _mm512_xor_si512(a, b); }
TARGET static inline __m512i set1(uint32_t w) { return _mm512_set1_epi32((int)w); }
TARGET static inline __m512i rot16(__m512i x) { return _mm512_ror_epi32(x, 16); }
TARGET static inline __m512i rot12(__m512i x) { return _mm512_ror_epi32(x, 12); }
TARGET static inline __m512i rot8(__m512i x) { return _mm512_ror_epi32(x, 8); }
TARGET static inline __m512i rot7(__m512i x) { return _mm512_ror_epi32(x, 7); }

/* 8x8 transpose of 32-bit words in eight __m256i: row r element c -> row c element r
 * (the same sequence as kernel_avx2.c). */
TARGET static inline void transpose8(__m256i r[8])
{
    __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]);
    __m256i t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]);
    __m256i t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]);
    __m256i t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]);
    __m256i t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    __m256i u0 = _mm256_unpacklo_epi64(t0, t2);
    __m256i u1 = _mm256_unpackhi_epi64(t0, t2);
    __m256i u2 = _mm256_unpacklo_epi64(t1, t3);
    __m256i u3 = _mm256_unpackhi_epi64(t1, t3);
    __m256i u4 = _mm256_unpacklo_epi64(t4, t6);
    __m256i u5 = _mm256_unpackhi_epi64(t4, t6);
    __m256i u6 = _mm256_unpacklo_epi64(t5, t7);
    __m256i u7 = _mm256_unpackhi_epi64(t5, t7);
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
        a = add(add(a, b), x);        \
        d = rot16(xor_(d, a));        \
        c = add(c, d);                \
        b = rot12(xor_(b, c));        \
        a = add(add(a, b), y);        \
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

/* Hash messages i .. i+15 of the call. */
TARGET static void hash16(const uint8_t *prefix, size_t prefix_len, const uint8_t *base,
                          size_t stride, size_t len, size_t i, uint8_t *out)
{
    size_t nblocks = rs_b3_blocks(len);
    uint8_t tmp[LANES][RS_B3_BLOCK_LEN];
    __m512i cv[8];
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
        __m512i m[16];
        for (int h = 0; h < 2; h++) {
            __m256i lo[8], hi[8];
            for (int l = 0; l < 8; l++) {
                lo[l] = _mm256_loadu_si256((const __m256i *)(const void *)(p[l] + 32 * h));
                hi[l] = _mm256_loadu_si256((const __m256i *)(const void *)(p[8 + l] + 32 * h));
            }
            transpose8(lo);
            transpose8(hi);
            for (int j = 0; j < 8; j++)
                m[8 * h + j] = _mm512_inserti64x4(_mm512_castsi256_si512(lo[j]), hi[j], 1);
        }
        __m512i v[16] = {cv[0], cv[1], cv[2], cv[3], cv[4], cv[5], cv[6], cv[7],
                         set1(RS_B3_IV0), set1(RS_B3_IV1), set1(RS_B3_IV2), set1(RS_B3_IV3),
                         _mm512_setzero_si512(), _mm512_setzero_si512(), set1((uint32_t)blen),
                         set1(rs_b3_block_flags(b, nblocks))};
        RS_B3_ROUNDS(ROUND)
        for (int w = 0; w < 8; w++)
            cv[w] = xor_(v[w], v[w + 8]);
    }
    /* cv[w] holds word w of sixteen lanes: split into lanes 0..7 and 8..15 and transpose
     * each to the eight words of one lane per row. */
    __m256i lo[8], hi[8];
    for (int w = 0; w < 8; w++) {
        lo[w] = _mm512_castsi512_si256(cv[w]);
        hi[w] = _mm512_extracti64x4_epi64(cv[w], 1);
    }
    transpose8(lo);
    transpose8(hi);
    for (int l = 0; l < 8; l++) {
        _mm256_storeu_si256((__m256i *)(void *)(out + 32 * (size_t)l), lo[l]);
        _mm256_storeu_si256((__m256i *)(void *)(out + 32 * (size_t)(8 + l)), hi[l]);
    }
}

void rs_hash_many_avx512(const uint8_t *prefix, size_t prefix_len, const uint8_t *base,
                         size_t stride, size_t msg_len, size_t count, uint8_t *out)
{
    size_t len = prefix_len + msg_len;
    size_t i = 0;
    for (; i + LANES <= count; i += LANES)
        hash16(prefix, prefix_len, base, stride, len, i, out + 32 * i);
    if (i < count)
        rs_hash_many_avx2(prefix, prefix_len, base ? base + i * stride : base, stride,
                          msg_len, count - i, out + 32 * i);
}

#endif /* RS_X86 */
