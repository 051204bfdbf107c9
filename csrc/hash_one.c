/*
 * hash_one.c -- BLAKE3 of two one-chunk messages at once, for path walks with two chains.
 *
 * A consistency proof recomputes two roots, one node per level each, every hash waiting for
 * the one below it: a single chain is bound by the latency of one compression. Two chains
 * interleaved fill the core. The state of each compression sits in four row vectors,
 * (cv0..3) (cv4..7) (IV0..3) (counter lo, counter hi, block length, flags) as in the
 * specification, and a round runs the four column (then the four diagonal) G functions at
 * once, rotating rows between the two half-rounds, exactly as rs_b3_compress_sse41 does
 * for one message (kernel_sse41.c). Single messages use that one (rs_hash_one); with
 * ROTORSHM_KERNEL=portable both chains go through the portable path.
 */
#include "kernel.h"
#include "rotorshm_native.h"

#if RS_X86
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
    /* The longer message's remaining blocks, one compression at a time. */
    uint32_t cva[8], cvb[8];
    _mm_storeu_si128((__m128i *)cva, a0);
    _mm_storeu_si128((__m128i *)(cva + 4), a1);
    _mm_storeu_si128((__m128i *)cvb, b0);
    _mm_storeu_si128((__m128i *)(cvb + 4), b1);
    for (size_t b = both; b < na; b++) {
        size_t off = b * RS_B3_BLOCK_LEN;
        size_t bl = la - off < RS_B3_BLOCK_LEN ? la - off : RS_B3_BLOCK_LEN;
        rs_b3_compress_sse41(cva, rs_b3_block(pa, pa_len, ma, off, bl, ta), (uint32_t)bl, 0,
                             rs_b3_block_flags(b, na));
    }
    for (size_t b = both; b < nb; b++) {
        size_t off = b * RS_B3_BLOCK_LEN;
        size_t bl = lb - off < RS_B3_BLOCK_LEN ? lb - off : RS_B3_BLOCK_LEN;
        rs_b3_compress_sse41(cvb, rs_b3_block(pb, pb_len, mb, off, bl, tb), (uint32_t)bl, 0,
                             rs_b3_block_flags(b, nb));
    }
    for (int w = 0; w < 8; w++) {
        rs_store32_le(outa + 4 * w, cva[w]);
        rs_store32_le(outb + 4 * w, cvb[w]);
    }
}
#endif

void rs_hash_two(const uint8_t *pa, size_t pa_len, const uint8_t *ma, size_t ma_len,
                 uint8_t *outa, const uint8_t *pb, size_t pb_len, const uint8_t *mb,
                 size_t mb_len, uint8_t *outb)
{
#if RS_X86
    if (rs_kernel_get() != RS_KERNEL_PORTABLE) {
        hash_two_sse41(pa, pa_len, ma, ma_len, outa, pb, pb_len, mb, mb_len, outb);
        return;
    }
#endif
    rs_hash_many_portable(pa, pa_len, ma, 0, ma_len, 1, outa);
    rs_hash_many_portable(pb, pb_len, mb, 0, mb_len, 1, outb);
}
