/*
 * hash_one.c -- BLAKE3 of one message of at most one chunk, as fast as one message goes.
 *
 * The many-lane kernels (kernel_*.c) win when a level has many groups to hash side by side;
 * a path walk (single-leaf append, proof verification) has one group per level, each
 * depending on the one below.  For those, the SSE4.1 path here puts the four rows of the
 * compression state in four vectors and runs the four column (then the four diagonal) G
 * functions of a round at once, rotating rows between the two half-rounds: the state rows
 * are (cv0..3) (cv4..7) (IV0..3) (counter lo, counter hi, block length, flags), as in the
 * specification.  Used when a SIMD kernel is selected (they all imply SSE4.1); with
 * ROTORSHM_KERNEL=portable the portable kernel hashes, so that setting stays plain C.
 */
#include "kernel.h"
#include "rotorshm_native.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TARGET __attribute__((target("sse4.1")))

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

/* The four G functions of one half-round, one per lane, message words x then y.  The
 * message word is added first: it does not wait for r1, the end of the previous step. */
#define G4(r0, r1, r2, r3, x, y)                                  \
    do {                                                          \
        r0 = _mm_add_epi32(_mm_add_epi32(r0, x), r1);             \
        r3 = rot16(_mm_xor_si128(r3, r0));                        \
        r2 = _mm_add_epi32(r2, r3);                               \
        r1 = rot12(_mm_xor_si128(r1, r2));                        \
        r0 = _mm_add_epi32(_mm_add_epi32(r0, y), r1);             \
        r3 = rot8(_mm_xor_si128(r3, r0));                         \
        r2 = _mm_add_epi32(r2, r3);                               \
        r1 = rot7(_mm_xor_si128(r1, r2));                         \
    } while (0)

/* cv (two rows) := compression of one block. */
TARGET static void compress_rows(__m128i *c0, __m128i *c1, const uint8_t block[64],
                                 uint32_t block_len, uint32_t flags)
{
    uint32_t m[16];
    memcpy(m, block, 64); /* x86-64 is little-endian: the words as the spec reads them */
    __m128i r0 = *c0, r1 = *c1;
    __m128i r2 = _mm_setr_epi32((int)RS_B3_IV0, (int)RS_B3_IV1, (int)RS_B3_IV2, (int)RS_B3_IV3);
    __m128i r3 = _mm_setr_epi32(0, 0, (int)block_len, (int)flags);
#define ROUND(s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15)      \
    G4(r0, r1, r2, r3, _mm_setr_epi32((int)m[s0], (int)m[s2], (int)m[s4], (int)m[s6]),  \
       _mm_setr_epi32((int)m[s1], (int)m[s3], (int)m[s5], (int)m[s7]));                 \
    r1 = _mm_shuffle_epi32(r1, _MM_SHUFFLE(0, 3, 2, 1));                                \
    r2 = _mm_shuffle_epi32(r2, _MM_SHUFFLE(1, 0, 3, 2));                                \
    r3 = _mm_shuffle_epi32(r3, _MM_SHUFFLE(2, 1, 0, 3));                                \
    G4(r0, r1, r2, r3, _mm_setr_epi32((int)m[s8], (int)m[s10], (int)m[s12], (int)m[s14]), \
       _mm_setr_epi32((int)m[s9], (int)m[s11], (int)m[s13], (int)m[s15]));              \
    r1 = _mm_shuffle_epi32(r1, _MM_SHUFFLE(2, 1, 0, 3));                                \
    r2 = _mm_shuffle_epi32(r2, _MM_SHUFFLE(1, 0, 3, 2));                                \
    r3 = _mm_shuffle_epi32(r3, _MM_SHUFFLE(0, 3, 2, 1));
    RS_B3_ROUNDS(ROUND)
#undef ROUND
    *c0 = _mm_xor_si128(r0, r2);
    *c1 = _mm_xor_si128(r1, r3);
}

/* Two independent compressions interleaved: a path walk that hashes two chains (both
 * roots of a consistency proof) is bound by the latency of one, so two fill the core. */
TARGET static void compress_rows2(__m128i *a0, __m128i *a1, const uint8_t blka[64],
                                  uint32_t lena, uint32_t flagsa, __m128i *b0, __m128i *b1,
                                  const uint8_t blkb[64], uint32_t lenb, uint32_t flagsb)
{
    uint32_t m[16], n[16];
    memcpy(m, blka, 64);
    memcpy(n, blkb, 64);
    const __m128i iv = _mm_setr_epi32((int)RS_B3_IV0, (int)RS_B3_IV1, (int)RS_B3_IV2,
                                      (int)RS_B3_IV3);
    __m128i r0 = *a0, r1 = *a1, r2 = iv, r3 = _mm_setr_epi32(0, 0, (int)lena, (int)flagsa);
    __m128i q0 = *b0, q1 = *b1, q2 = iv, q3 = _mm_setr_epi32(0, 0, (int)lenb, (int)flagsb);
#define HALF(w, s0, s1, s2, s3, s4, s5, s6, s7)                                              \
    G4(r0, r1, r2, r3, _mm_setr_epi32((int)m[s0], (int)m[s2], (int)m[s4], (int)m[s6]),     \
       _mm_setr_epi32((int)m[s1], (int)m[s3], (int)m[s5], (int)m[s7]));                    \
    G4(q0, q1, q2, q3, _mm_setr_epi32((int)n[s0], (int)n[s2], (int)n[s4], (int)n[s6]),     \
       _mm_setr_epi32((int)n[s1], (int)n[s3], (int)n[s5], (int)n[s7]));
#define ROT(x, a, b, c, d) x = _mm_shuffle_epi32(x, _MM_SHUFFLE(a, b, c, d));
#define ROUND(s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15)       \
    HALF(0, s0, s1, s2, s3, s4, s5, s6, s7)                                              \
    ROT(r1, 0, 3, 2, 1) ROT(r2, 1, 0, 3, 2) ROT(r3, 2, 1, 0, 3)                           \
    ROT(q1, 0, 3, 2, 1) ROT(q2, 1, 0, 3, 2) ROT(q3, 2, 1, 0, 3)                           \
    HALF(1, s8, s9, s10, s11, s12, s13, s14, s15)                                        \
    ROT(r1, 2, 1, 0, 3) ROT(r2, 1, 0, 3, 2) ROT(r3, 0, 3, 2, 1)                           \
    ROT(q1, 2, 1, 0, 3) ROT(q2, 1, 0, 3, 2) ROT(q3, 0, 3, 2, 1)
    RS_B3_ROUNDS(ROUND)
#undef ROUND
#undef ROT
#undef HALF
    *a0 = _mm_xor_si128(r0, r2);
    *a1 = _mm_xor_si128(r1, r3);
    *b0 = _mm_xor_si128(q0, q2);
    *b1 = _mm_xor_si128(q1, q3);
}

/* BLAKE3 of two one-chunk messages (prefix_len + len <= 1024 each) at once. */
TARGET static void hash_two_sse41(const uint8_t *pa, size_t pa_len, const uint8_t *ma,
                                  size_t ma_len, uint8_t *outa, const uint8_t *pb,
                                  size_t pb_len, const uint8_t *mb, size_t mb_len,
                                  uint8_t *outb)
{
    size_t la = pa_len + ma_len, lb = pb_len + mb_len;
    size_t na = rs_b3_blocks(la), nb = rs_b3_blocks(lb);
    uint8_t ta[RS_B3_BLOCK_LEN], tb[RS_B3_BLOCK_LEN];
    const __m128i iv0 = _mm_setr_epi32((int)RS_B3_IV0, (int)RS_B3_IV1, (int)RS_B3_IV2,
                                       (int)RS_B3_IV3);
    const __m128i iv1 = _mm_setr_epi32((int)RS_B3_IV4, (int)RS_B3_IV5, (int)RS_B3_IV6,
                                       (int)RS_B3_IV7);
    __m128i a0 = iv0, a1 = iv1, b0 = iv0, b1 = iv1;
    size_t both = na < nb ? na : nb;
    for (size_t b = 0; b < both; b++) {
        size_t off = b * RS_B3_BLOCK_LEN;
        size_t bla = la - off < RS_B3_BLOCK_LEN ? la - off : RS_B3_BLOCK_LEN;
        size_t blb = lb - off < RS_B3_BLOCK_LEN ? lb - off : RS_B3_BLOCK_LEN;
        const uint8_t *ka = rs_b3_block(pa, pa_len, ma, off, bla, ta);
        const uint8_t *kb = rs_b3_block(pb, pb_len, mb, off, blb, tb);
        compress_rows2(&a0, &a1, ka, (uint32_t)bla, rs_b3_block_flags(b, na), &b0, &b1, kb,
                       (uint32_t)blb, rs_b3_block_flags(b, nb));
    }
    for (size_t b = both; b < na; b++) {
        size_t off = b * RS_B3_BLOCK_LEN;
        size_t bl = la - off < RS_B3_BLOCK_LEN ? la - off : RS_B3_BLOCK_LEN;
        compress_rows(&a0, &a1, rs_b3_block(pa, pa_len, ma, off, bl, ta), (uint32_t)bl,
                      rs_b3_block_flags(b, na));
    }
    for (size_t b = both; b < nb; b++) {
        size_t off = b * RS_B3_BLOCK_LEN;
        size_t bl = lb - off < RS_B3_BLOCK_LEN ? lb - off : RS_B3_BLOCK_LEN;
        compress_rows(&b0, &b1, rs_b3_block(pb, pb_len, mb, off, bl, tb), (uint32_t)bl,
                      rs_b3_block_flags(b, nb));
    }
    _mm_storeu_si128((__m128i *)outa, a0);
    _mm_storeu_si128((__m128i *)(outa + 16), a1);
    _mm_storeu_si128((__m128i *)outb, b0);
    _mm_storeu_si128((__m128i *)(outb + 16), b1);
}

TARGET static void hash_one_sse41(const uint8_t *prefix, size_t prefix_len, const uint8_t *msg,
                                  size_t msg_len, uint8_t *out)
{
    size_t len = prefix_len + msg_len;
    size_t nblocks = rs_b3_blocks(len);
    uint8_t tmp[RS_B3_BLOCK_LEN];
    __m128i c0 = _mm_setr_epi32((int)RS_B3_IV0, (int)RS_B3_IV1, (int)RS_B3_IV2, (int)RS_B3_IV3);
    __m128i c1 = _mm_setr_epi32((int)RS_B3_IV4, (int)RS_B3_IV5, (int)RS_B3_IV6, (int)RS_B3_IV7);
    for (size_t b = 0; b < nblocks; b++) {
        size_t off = b * RS_B3_BLOCK_LEN;
        size_t blen = len - off < RS_B3_BLOCK_LEN ? len - off : RS_B3_BLOCK_LEN;
        const uint8_t *blk = rs_b3_block(prefix, prefix_len, msg, off, blen, tmp);
        compress_rows(&c0, &c1, blk, (uint32_t)blen, rs_b3_block_flags(b, nblocks));
    }
    _mm_storeu_si128((__m128i *)out, c0);
    _mm_storeu_si128((__m128i *)(out + 16), c1);
}
#endif

void rs_hash_one(const uint8_t *prefix, size_t prefix_len, const uint8_t *msg, size_t msg_len,
                 uint8_t *out)
{
#if defined(__x86_64__)
    if (rs_kernel_get() != RS_KERNEL_PORTABLE) { /* every SIMD kernel implies SSE4.1 */
        hash_one_sse41(prefix, prefix_len, msg, msg_len, out);
        return;
    }
#endif
    rs_hash_many_portable(prefix, prefix_len, msg, 0, msg_len, 1, out);
}

void rs_hash_two(const uint8_t *pa, size_t pa_len, const uint8_t *ma, size_t ma_len,
                 uint8_t *outa, const uint8_t *pb, size_t pb_len, const uint8_t *mb,
                 size_t mb_len, uint8_t *outb)
{
#if defined(__x86_64__)
    if (rs_kernel_get() != RS_KERNEL_PORTABLE) {
        hash_two_sse41(pa, pa_len, ma, ma_len, outa, pb, pb_len, mb, mb_len, outb);
        return;
    }
#endif
    rs_hash_many_portable(pa, pa_len, ma, 0, ma_len, 1, outa);
    rs_hash_many_portable(pb, pb_len, mb, 0, mb_len, 1, outb);
}
