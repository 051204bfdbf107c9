/*
 * kernel_portable.c -- the portable BLAKE3 kernel: one message at a time, plain C.
 *
 * The reference every SIMD kernel is tested against, and the path used on any
 * architecture other than x86-64.  Also the compression function that the multi-chunk
 * hash (messages over 1,024 bytes) is built from.
 */
#include "kernel.h"

const uint32_t rs_b3_iv[8] = {RS_B3_IV0, RS_B3_IV1, RS_B3_IV2, RS_B3_IV3,
                              RS_B3_IV4, RS_B3_IV5, RS_B3_IV6, RS_B3_IV7};

static inline uint32_t rotr32(uint32_t w, unsigned c)
{
    return (w >> c) | (w << (32 - c));
}

/* The mixing function G on state words a, b, c, d with message words x, y.  The message
 * word is added before v[b], the value the previous line just produced: a serial
 * compression then waits for one add there, not two. */
#define G(v, a, b, c, d, x, y)                      \
    do {                                            \
        v[a] = v[a] + (x) + v[b];                   \
        v[d] = rotr32(v[d] ^ v[a], 16);             \
        v[c] = v[c] + v[d];                         \
        v[b] = rotr32(v[b] ^ v[c], 12);             \
        v[a] = v[a] + (y) + v[b];                   \
        v[d] = rotr32(v[d] ^ v[a], 8);              \
        v[c] = v[c] + v[d];                         \
        v[b] = rotr32(v[b] ^ v[c], 7);              \
    } while (0)

void rs_b3_compress(uint32_t cv[8], const uint8_t block[RS_B3_BLOCK_LEN], uint32_t block_len,
                    uint64_t counter, uint32_t flags)
{
    uint32_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = rs_load32_le(block + 4 * i);
    /* State: chaining value, the first four IV words, counter (low, high), length, flags. */
    uint32_t v[16] = {cv[0], cv[1], cv[2], cv[3], cv[4], cv[5], cv[6], cv[7],
                      RS_B3_IV0, RS_B3_IV1, RS_B3_IV2, RS_B3_IV3,
                      (uint32_t)counter, (uint32_t)(counter >> 32), block_len, flags};
#define ROUND(s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15) \
    G(v, 0, 4, 8, 12, m[s0], m[s1]);   /* columns */                              \
    G(v, 1, 5, 9, 13, m[s2], m[s3]);                                              \
    G(v, 2, 6, 10, 14, m[s4], m[s5]);                                             \
    G(v, 3, 7, 11, 15, m[s6], m[s7]);                                             \
    G(v, 0, 5, 10, 15, m[s8], m[s9]);  /* diagonals */                            \
    G(v, 1, 6, 11, 12, m[s10], m[s11]);                                           \
    G(v, 2, 7, 8, 13, m[s12], m[s13]);                                            \
    G(v, 3, 4, 9, 14, m[s14], m[s15]);
    RS_B3_ROUNDS(ROUND)
#undef ROUND
    /* The chaining value out is the first half of the state xored with the second. */
    for (int i = 0; i < 8; i++)
        cv[i] = v[i] ^ v[i + 8];
}

void rs_b3_compress2(uint32_t cva[8], const uint8_t blka[RS_B3_BLOCK_LEN], uint32_t lena,
                     uint32_t flagsa, uint32_t cvb[8], const uint8_t blkb[RS_B3_BLOCK_LEN],
                     uint32_t lenb, uint32_t flagsb)
{
    rs_b3_compress(cva, blka, lena, 0, flagsa);
    rs_b3_compress(cvb, blkb, lenb, 0, flagsb);
}

void rs_hash_many_portable(const uint8_t *prefix, size_t prefix_len, const uint8_t *base,
                           size_t stride, size_t msg_len, size_t count, uint8_t *out)
{
    for (size_t i = 0; i < count; i++)
        rs_b3_hash_one(rs_b3_compress, prefix, prefix_len, base ? base + i * stride : base,
                       msg_len, out + 32 * i);
}
