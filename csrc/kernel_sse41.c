/*
 * kernel_sse41.c -- BLAKE3 kernel for SSE4.1: four messages side by side.
 *
 * Lane layout: every __m128i holds one 32-bit word of four different messages,
 * lane l (element l, l = 0..3) belonging to message i+l.  The state v[0..15] and the
 * message words m[0..15] are such vectors, so one G step mixes four messages at once.
 * Loading a block transposes it: four 16-byte rows per message (words 4c..4c+3)
 * become, after a 4x4 transpose, m[4c+j] = word 4c+j of messages i..i+3.
 * Storing the output transposes back (cv word j of four lanes -> 32 bytes per message).
 *
 * Compiled with target("sse4.1") on these functions only, so the extension builds with
 * default flags; the dispatcher calls them only when the CPU has SSE4.1.
 *
 * Also here: rs_b3_compress_sse41, one compression of one message with the state in four
 * row vectors (v0..3, v4..7, v8..11, v12..15): the column step is one G on the rows,
 * the diagonal step the same after rotating rows 1..3 by 1..3 lanes.  Used for single
 * messages (a proof step, a single-leaf insert, the last 1..3 messages of a call) on
 * every SIMD kernel.
 */
#include "kernel.h"

#if RS_X86
#include <immintrin.h>

#define TARGET __attribute__((target("sse4.1")))
#define LANES 4

TARGET static inline __m128i add(__m128i a, __m128i b) { return _mm_add_epi32(a, b); }
TARGET static inline __m128i xor_(__m128i a, __m128i b) { return _mm_xor_si128(a, b); }
TARGET static inline __m128i set1(uint32_t w) { return _mm_set1_epi32((int)w); }

/* Rotations by 16 and 8 move whole bytes: one byte shuffle each. */
TARGET static inline __m128i rot16(__m128i x)
{
    return _mm_shuffle_epi8(x, _mm_set_epi8(13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2));
}
TARGET static inline __m128i rot8(__m128i x)
{
    return _mm_shuffle_epi8(x, _mm_set_epi8(12, 15, 14, 13, 8, 11, 10, 9, 4, 7, 6, 5, 0, 3, 2, 1));
}
TARGET static inline __m128i rot12(__m128i x)
{
    return _mm_or_si128(_mm_srli_epi32(x, 12), _mm_slli_epi32(x, 20));
}
TARGET static inline __m128i rot7(__m128i x)
{
    return _mm_or_si128(_mm_srli_epi32(x, 7), _mm_slli_epi32(x, 25));
}

/* 4x4 transpose of 32-bit words: row r element c -> row c element r. */
TARGET static inline void transpose4(__m128i r[4])
{
    __m128i ab01 = _mm_unpacklo_epi32(r[0], r[1]);
    __m128i ab23 = _mm_unpackhi_epi32(r[0], r[1]);
    __m128i cd01 = _mm_unpacklo_epi32(r[2], r[3]);
    __m128i cd23 = _mm_unpackhi_epi32(r[2], r[3]);
    r[0] = _mm_unpacklo_epi64(ab01, cd01);
    r[1] = _mm_unpackhi_epi64(ab01, cd01);
    r[2] = _mm_unpacklo_epi64(ab23, cd23);
    r[3] = _mm_unpackhi_epi64(ab23, cd23);
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

/* -- one message, state in rows ---------------------------------------------------------- */

/* A serial compression (a proof step, a single-leaf insert) is bound by the latency of its
 * dependency chain, r0 -> r3 -> r2 -> r1 -> r0 through every half G; everything off that
 * chain is free.  Two choices keep the chain short:
 *   - r0 = (r0 + m) + r1, not (r0 + r1) + m: r1 is the value the previous step just
 *     produced, so only one add waits for it;
 *   - the diagonal step rotates rows 0, 2 and 3, never row 1: row 1 (b) is the last value
 *     a half G produces, while rows 0, 3 and 2 are ready earlier, so their lane rotations
 *     run while row 1 is still being computed instead of after it.
 * Lane j of the diagonal step then holds diagonal j-1 (mod 4): (v[j-1], v[4+j], v[8+j+1],
 * v[12+j+2]), indices within their rows mod 4, which is diagonal i = j-1 of the
 * specification, (v[i], v[4+i+1], v[8+i+2], v[12+i+3]).  Its message words are therefore
 * those of G function 4+((j-1) mod 4): lane 0 takes the words of diagonal 3. */
#define GROWS(r0, r1, r2, r3, m)           \
    do {                                  \
        r0 = add(add(r0, m), r1);         \
        r3 = rot16(xor_(r3, r0));         \
        r2 = add(r2, r3);                 \
        r1 = rot12(xor_(r1, r2));         \
    } while (0)
#define GROWS2(r0, r1, r2, r3, m)          \
    do {                                  \
        r0 = add(add(r0, m), r1);         \
        r3 = rot8(xor_(r3, r0));          \
        r2 = add(r2, r3);                 \
        r1 = rot7(xor_(r1, r2));          \
    } while (0)

/* Lane j of row 0 / 2 / 3 takes lane (j-1) / (j+1) / (j+2) mod 4; UNDIAG undoes it. */
#define DIAG(r0, r2, r3)                                     \
    do {                                                     \
        r0 = _mm_shuffle_epi32(r0, _MM_SHUFFLE(2, 1, 0, 3)); \
        r2 = _mm_shuffle_epi32(r2, _MM_SHUFFLE(0, 3, 2, 1)); \
        r3 = _mm_shuffle_epi32(r3, _MM_SHUFFLE(1, 0, 3, 2)); \
    } while (0)
#define UNDIAG(r0, r2, r3)                                   \
    do {                                                     \
        r0 = _mm_shuffle_epi32(r0, _MM_SHUFFLE(0, 3, 2, 1)); \
        r2 = _mm_shuffle_epi32(r2, _MM_SHUFFLE(2, 1, 0, 3)); \
        r3 = _mm_shuffle_epi32(r3, _MM_SHUFFLE(1, 0, 3, 2)); \
    } while (0)

/* The message words of each half G, four lanes at a time: xc / yc the first / second word
 * of the column step, xd / yd those of the diagonal step in the lane order above.  Round 0
 * (the block as it is) gives
 *   xc = (m0, m2, m4, m6)   yc = (m1, m3, m5, m7)
 *   xd = (m14, m8, m10, m12)   yd = (m15, m9, m11, m13).
 * Each later round uses the words of the previous round's message passed through the
 * specification's permutation, m'[i] = m[P[i]] with P = (2, 6, 3, 10, 7, 0, 4, 13, 1, 11,
 * 12, 5, 9, 14, 15, 8); written in terms of the four vectors of the previous round that is
 *   xc' = (m'0, m'2, m'4, m'6)     = (m2, m3, m7, m4)    = (xc1, yc1, yc3, xc2)
 *   yc' = (m'1, m'3, m'5, m'7)     = (m6, m10, m0, m13)  = (xc3, xd2, xc0, yd3)
 *   xd' = (m'14, m'8, m'10, m'12)  = (m15, m1, m12, m9)  = (yd0, yc0, xd3, yd1)
 *   yd' = (m'15, m'9, m'11, m'13)  = (m8, m11, m5, m14)  = (xd1, yd2, yc2, xd0)
 * (xc1 = lane 1 of xc).  A dozen register shuffles and blends per round, instead of
 * sixteen words inserted one by one from memory; none of it is on the state's chain. */
#define SHUFPS(a, b, imm) \
    _mm_castps_si128(_mm_shuffle_ps(_mm_castsi128_ps(a), _mm_castsi128_ps(b), imm))
#define PERMUTE_WORDS(xc, yc, xd, yd)                                                  \
    do {                                                                               \
        __m128i t_ = SHUFPS(xc, yc, _MM_SHUFFLE(3, 1, 2, 1)); /* xc1 xc2 yc1 yc3 */    \
        __m128i xc_ = _mm_shuffle_epi32(t_, _MM_SHUFFLE(1, 3, 2, 0));                  \
        __m128i a_ = _mm_blend_epi16(xd, yd, 0xC0);           /* xd0 xd1 xd2 yd3 */    \
        t_ = SHUFPS(xc, a_, _MM_SHUFFLE(3, 2, 0, 3));         /* xc3 xc0 xd2 yd3 */    \
        __m128i yc_ = _mm_shuffle_epi32(t_, _MM_SHUFFLE(3, 1, 2, 0));                  \
        __m128i u_ = _mm_unpacklo_epi32(yd, yc);              /* yd0 yc0 yd1 yc1 */    \
        __m128i c_ = _mm_blend_epi16(xd, yd, 0x0C);           /* xd0 yd1 xd2 xd3 */    \
        __m128i xd_ = SHUFPS(u_, c_, _MM_SHUFFLE(1, 3, 1, 0));                         \
        c_ = _mm_blend_epi16(xd, yd, 0x30);                   /* xd0 xd1 yd2 xd3 */    \
        c_ = _mm_blend_epi16(c_, _mm_shuffle_epi32(yc, _MM_SHUFFLE(2, 2, 2, 2)), 0xC0); \
        yd = _mm_shuffle_epi32(c_, _MM_SHUFFLE(0, 3, 2, 1));  /* xd1 yd2 yc2 xd0 */    \
        xc = xc_;                                                                      \
        yc = yc_;                                                                      \
        xd = xd_;                                                                      \
    } while (0)

#define ROUND_ROWS(r0, r1, r2, r3, xc, yc, xd, yd) \
    do {                                          \
        GROWS(r0, r1, r2, r3, xc);                \
        GROWS2(r0, r1, r2, r3, yc);               \
        DIAG(r0, r2, r3);                         \
        GROWS(r0, r1, r2, r3, xd);                \
        GROWS2(r0, r1, r2, r3, yd);               \
        UNDIAG(r0, r2, r3);                       \
    } while (0)

TARGET void rs_b3_compress_sse41(uint32_t cv[8], const uint8_t block[RS_B3_BLOCK_LEN],
                                 uint32_t block_len, uint64_t counter, uint32_t flags)
{
    /* x86 is little-endian: the block's bytes are the message words as the spec reads them */
    const __m128i *b = (const __m128i *)(const void *)block;
    __m128i m0 = _mm_loadu_si128(b), m1 = _mm_loadu_si128(b + 1);
    __m128i m2 = _mm_loadu_si128(b + 2), m3 = _mm_loadu_si128(b + 3);
    __m128i xc = SHUFPS(m0, m1, _MM_SHUFFLE(2, 0, 2, 0));
    __m128i yc = SHUFPS(m0, m1, _MM_SHUFFLE(3, 1, 3, 1));
    __m128i xd = _mm_shuffle_epi32(SHUFPS(m2, m3, _MM_SHUFFLE(2, 0, 2, 0)), _MM_SHUFFLE(2, 1, 0, 3));
    __m128i yd = _mm_shuffle_epi32(SHUFPS(m2, m3, _MM_SHUFFLE(3, 1, 3, 1)), _MM_SHUFFLE(2, 1, 0, 3));
    __m128i r0 = _mm_loadu_si128((const __m128i *)(const void *)&cv[0]);
    __m128i r1 = _mm_loadu_si128((const __m128i *)(const void *)&cv[4]);
    __m128i r2 = _mm_set_epi32((int)RS_B3_IV3, (int)RS_B3_IV2, (int)RS_B3_IV1, (int)RS_B3_IV0);
    __m128i r3 = _mm_set_epi32((int)flags, (int)block_len, (int)(uint32_t)(counter >> 32),
                               (int)(uint32_t)counter);
    for (int round = 0;; round++) {
        ROUND_ROWS(r0, r1, r2, r3, xc, yc, xd, yd);
        if (round == 6)
            break;
        PERMUTE_WORDS(xc, yc, xd, yd);
    }
    _mm_storeu_si128((__m128i *)(void *)&cv[0], xor_(r0, r2));
    _mm_storeu_si128((__m128i *)(void *)&cv[4], xor_(r1, r3));
}

/* Hash messages i .. i+3 of the call. */
TARGET static void hash4(const uint8_t *prefix, size_t prefix_len, const uint8_t *base,
                         size_t stride, size_t len, size_t i, uint8_t *out)
{
    size_t nblocks = rs_b3_blocks(len);
    uint8_t tmp[LANES][RS_B3_BLOCK_LEN];
    __m128i cv[8];
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
        __m128i m[16];
        for (int c = 0; c < 4; c++) {
            __m128i r[4];
            for (int l = 0; l < LANES; l++)
                r[l] = _mm_loadu_si128((const __m128i *)(const void *)(p[l] + 16 * c));
            transpose4(r);
            for (int j = 0; j < 4; j++)
                m[4 * c + j] = r[j];
        }
        __m128i v[16] = {cv[0], cv[1], cv[2], cv[3], cv[4], cv[5], cv[6], cv[7],
                         set1(RS_B3_IV0), set1(RS_B3_IV1), set1(RS_B3_IV2), set1(RS_B3_IV3),
                         _mm_setzero_si128(), _mm_setzero_si128(), set1((uint32_t)blen),
                         set1(rs_b3_block_flags(b, nblocks))};
        RS_B3_ROUNDS(ROUND)
        for (int w = 0; w < 8; w++)
            cv[w] = xor_(v[w], v[w + 8]);
    }
    /* cv[w] holds word w of four lanes: transpose to four words of one lane per row. */
    transpose4(&cv[0]);
    transpose4(&cv[4]);
    for (int l = 0; l < LANES; l++) {
        _mm_storeu_si128((__m128i *)(void *)(out + 32 * (size_t)l), cv[l]);
        _mm_storeu_si128((__m128i *)(void *)(out + 32 * (size_t)l + 16), cv[4 + l]);
    }
}

void rs_hash_many_sse41(const uint8_t *prefix, size_t prefix_len, const uint8_t *base,
                        size_t stride, size_t msg_len, size_t count, uint8_t *out)
{
    size_t len = prefix_len + msg_len;
    size_t i = 0;
    for (; i + LANES <= count; i += LANES)
        hash4(prefix, prefix_len, base, stride, len, i, out + 32 * i);
    for (; i < count; i++)
        rs_b3_hash_one(rs_b3_compress_sse41, prefix, prefix_len,
                       base ? base + i * stride : base, msg_len, out + 32 * i);
}

/* -- two single messages at once -----------------------------------------------------------
 *
 * A chain of serial compressions (a proof's path, both roots of a consistency proof) is
 * bound by the latency of one compression and leaves most of the core idle: a second,
 * independent compression in the same instruction stream runs in that idle time.  Each
 * keeps its state in four row vectors, exactly as rs_b3_compress_sse41 does. */

#define LOAD_WORDS(block, xc, yc, xd, yd)                                                   \
    do {                                                                                  \
        const __m128i *p_ = (const __m128i *)(const void *)(block);                       \
        __m128i m0_ = _mm_loadu_si128(p_), m1_ = _mm_loadu_si128(p_ + 1);                 \
        __m128i m2_ = _mm_loadu_si128(p_ + 2), m3_ = _mm_loadu_si128(p_ + 3);             \
        xc = SHUFPS(m0_, m1_, _MM_SHUFFLE(2, 0, 2, 0));                                   \
        yc = SHUFPS(m0_, m1_, _MM_SHUFFLE(3, 1, 3, 1));                                   \
        xd = _mm_shuffle_epi32(SHUFPS(m2_, m3_, _MM_SHUFFLE(2, 0, 2, 0)),                 \
                               _MM_SHUFFLE(2, 1, 0, 3));                                  \
        yd = _mm_shuffle_epi32(SHUFPS(m2_, m3_, _MM_SHUFFLE(3, 1, 3, 1)),                 \
                               _MM_SHUFFLE(2, 1, 0, 3));                                  \
    } while (0)

/* Two compressions with counter 0 (one-chunk messages, parent nodes): cva from blka
 * (lena bytes, flagsa) and cvb from blkb, as two calls of rs_b3_compress_sse41 would. */
TARGET void rs_b3_compress2_sse41(uint32_t cva[8], const uint8_t blka[RS_B3_BLOCK_LEN],
                                  uint32_t lena, uint32_t flagsa, uint32_t cvb[8],
                                  const uint8_t blkb[RS_B3_BLOCK_LEN], uint32_t lenb,
                                  uint32_t flagsb)
{
    __m128i xc, yc, xd, yd, xc2, yc2, xd2, yd2;
    LOAD_WORDS(blka, xc, yc, xd, yd);
    LOAD_WORDS(blkb, xc2, yc2, xd2, yd2);
    const __m128i iv = _mm_setr_epi32((int)RS_B3_IV0, (int)RS_B3_IV1, (int)RS_B3_IV2,
                                      (int)RS_B3_IV3);
    __m128i r0 = _mm_loadu_si128((const __m128i *)(const void *)&cva[0]);
    __m128i r1 = _mm_loadu_si128((const __m128i *)(const void *)&cva[4]);
    __m128i r2 = iv, r3 = _mm_setr_epi32(0, 0, (int)lena, (int)flagsa);
    __m128i q0 = _mm_loadu_si128((const __m128i *)(const void *)&cvb[0]);
    __m128i q1 = _mm_loadu_si128((const __m128i *)(const void *)&cvb[4]);
    __m128i q2 = iv, q3 = _mm_setr_epi32(0, 0, (int)lenb, (int)flagsb);
    for (int round = 0;; round++) {
        ROUND_ROWS(r0, r1, r2, r3, xc, yc, xd, yd);
        ROUND_ROWS(q0, q1, q2, q3, xc2, yc2, xd2, yd2);
        if (round == 6)
            break;
        PERMUTE_WORDS(xc, yc, xd, yd);
        PERMUTE_WORDS(xc2, yc2, xd2, yd2);
    }
    _mm_storeu_si128((__m128i *)(void *)&cva[0], xor_(r0, r2));
    _mm_storeu_si128((__m128i *)(void *)&cva[4], xor_(r1, r3));
    _mm_storeu_si128((__m128i *)(void *)&cvb[0], xor_(q0, q2));
    _mm_storeu_si128((__m128i *)(void *)&cvb[4], xor_(q1, q3));
}

#endif /* RS_X86 */
