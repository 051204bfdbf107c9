/*
 * kernel.h -- internal header of the BLAKE3 kernels (not part of the cffi binding).
 *
 * Written from the BLAKE3 specification (the BLAKE3 paper, "BLAKE3: one function,
 * fast everywhere", and draft-aumasson-blake3): the IV, the message permutation,
 * the G mixing function, the seven-round compression function and the domain flags.
 *
 * The kernels hash many equal-length messages of at most one chunk (1,024 bytes).
 * A one-chunk message is hashed by the compression function alone: the chaining value
 * starts at the IV (no key), every block uses counter 0 and block_len = the bytes in
 * that block (the last block zero-padded, an empty message is one empty block), the
 * first block carries CHUNK_START and the last CHUNK_END | ROOT (both on a single block).
 * The 32-byte output is the first eight words of the final chaining value.
 *
 * Message i of a call is   prefix[0 .. prefix_len) || base[i*stride .. i*stride + msg_len)
 * so that a tree level (a 2-byte group prefix, then `arity` children of 32 bytes at a
 * stride of 32*arity) is hashed straight out of the level's buffer without a copy.
 *
 * Every kernel file defines one entry point with the signature of rs_hash_many_fn; they
 * differ only in how many messages they hash side by side (one per SIMD lane).
 */
#ifndef ROTORSHM_KERNEL_H
#define ROTORSHM_KERNEL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The x86-64 SIMD kernels are compiled on x86-64 only; RS_PORTABLE_ONLY leaves them out
 * there too, which builds what any other architecture builds (for testing that build). */
#if defined(__x86_64__) && !defined(RS_PORTABLE_ONLY)
#define RS_X86 1
#else
#define RS_X86 0
#endif

#define RS_B3_OUT_LEN 32
#define RS_B3_BLOCK_LEN 64
#define RS_B3_CHUNK_LEN 1024

/* Domain flags (specification, table "Admissible values for input d"). */
#define RS_B3_CHUNK_START 1u
#define RS_B3_CHUNK_END 2u
#define RS_B3_PARENT 4u
#define RS_B3_ROOT 8u

/* The IV: the first 32 bits of the fractional parts of the square roots of the first
 * eight primes (shared with SHA-256). */
#define RS_B3_IV0 0x6A09E667u
#define RS_B3_IV1 0xBB67AE85u
#define RS_B3_IV2 0x3C6EF372u
#define RS_B3_IV3 0xA54FF53Au
#define RS_B3_IV4 0x510E527Fu
#define RS_B3_IV5 0x9B05688Cu
#define RS_B3_IV6 0x1F83D9ABu
#define RS_B3_IV7 0x5BE0CD19u

extern const uint32_t rs_b3_iv[8];

/* Message word schedule: for each of the seven rounds, which message word feeds each of
 * the 16 G inputs (columns: (0,1) (2,3) (4,5) (6,7); diagonals: (8,9) ... (14,15)).
 * Round 0 is the identity and round r+1 is round r passed through the specification's
 * permutation (2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8).  Spelled out as a
 * macro so that every kernel indexes its message words with constants:
 * RS_B3_ROUNDS(R) expands R(s0, ..., s15) once per round, in order. */
#define RS_B3_ROUNDS(R)                                  \
    R(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) \
    R(2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8) \
    R(3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1) \
    R(10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6) \
    R(12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4) \
    R(9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7) \
    R(11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13)

typedef void (*rs_hash_many_fn)(const uint8_t *prefix, size_t prefix_len, const uint8_t *base,
                                size_t stride, size_t msg_len, size_t count, uint8_t *out);

/* Preconditions of every entry point (checked by the dispatcher and the Python wrapper):
 * prefix_len + msg_len <= RS_B3_CHUNK_LEN; `out` holds 32*count bytes and does not overlap
 * the messages; prefix may be NULL when prefix_len == 0, base may be NULL when
 * count == 0 or msg_len == 0. */
void rs_hash_many_portable(const uint8_t *prefix, size_t prefix_len, const uint8_t *base,
                           size_t stride, size_t msg_len, size_t count, uint8_t *out);
#if RS_X86
void rs_hash_many_sse41(const uint8_t *prefix, size_t prefix_len, const uint8_t *base,
                        size_t stride, size_t msg_len, size_t count, uint8_t *out);
void rs_hash_many_avx2(const uint8_t *prefix, size_t prefix_len, const uint8_t *base,
                       size_t stride, size_t msg_len, size_t count, uint8_t *out);
void rs_hash_many_avx512(const uint8_t *prefix, size_t prefix_len, const uint8_t *base,
                         size_t stride, size_t msg_len, size_t count, uint8_t *out);
#endif

/* One compression: cv := the chaining value out of compressing `block` (block_len bytes of
 * message, zero-padded) under cv with `counter` and `flags`.  The portable one, and on x86-64
 * the SSE4.1 one (state in four row vectors); rs_b3_compress_current() is the one that goes
 * with the kernel in use (single messages, multi-chunk messages). */
typedef void (*rs_compress_fn)(uint32_t cv[8], const uint8_t block[RS_B3_BLOCK_LEN],
                               uint32_t block_len, uint64_t counter, uint32_t flags);

/* Two independent compressions (counter 0) in one call: cva from blka, cvb from blkb.  The
 * SSE4.1 one interleaves them, so that a serial chain (a proof's path) carries a second,
 * independent compression almost for free; the portable one is two rs_b3_compress calls. */
typedef void (*rs_compress2_fn)(uint32_t cva[8], const uint8_t blka[RS_B3_BLOCK_LEN],
                                uint32_t lena, uint32_t flagsa, uint32_t cvb[8],
                                const uint8_t blkb[RS_B3_BLOCK_LEN], uint32_t lenb,
                                uint32_t flagsb);
void rs_b3_compress2(uint32_t cva[8], const uint8_t blka[RS_B3_BLOCK_LEN], uint32_t lena,
                     uint32_t flagsa, uint32_t cvb[8], const uint8_t blkb[RS_B3_BLOCK_LEN],
                     uint32_t lenb, uint32_t flagsb);

/* One compression of the portable path (used by the multi-chunk hash too). */
void rs_b3_compress(uint32_t cv[8], const uint8_t block[RS_B3_BLOCK_LEN], uint32_t block_len,
                    uint64_t counter, uint32_t flags);
#if RS_X86
void rs_b3_compress_sse41(uint32_t cv[8], const uint8_t block[RS_B3_BLOCK_LEN],
                          uint32_t block_len, uint64_t counter, uint32_t flags);
void rs_b3_compress2_sse41(uint32_t cva[8], const uint8_t blka[RS_B3_BLOCK_LEN],
                           uint32_t lena, uint32_t flagsa, uint32_t cvb[8],
                           const uint8_t blkb[RS_B3_BLOCK_LEN], uint32_t lenb,
                           uint32_t flagsb);
#endif
rs_compress_fn rs_b3_compress_current(void);
rs_compress2_fn rs_b3_compress2_current(void);

/* One message of at most one chunk (prefix || msg) with the kernel in use. */
void rs_hash_one(const uint8_t *prefix, size_t prefix_len, const uint8_t *msg, size_t msg_len,
                 uint8_t *out);

/* Blocks of a message of `len` bytes (an empty message is one empty block). */
static inline size_t rs_b3_blocks(size_t len)
{
    return len == 0 ? 1 : (len + RS_B3_BLOCK_LEN - 1) / RS_B3_BLOCK_LEN;
}

/*
 * The 64 bytes of the block that starts at message offset `off` and holds `blen` bytes
 * (1..64, or 0 for the empty message) of message `msg` (msg_len bytes after the prefix).
 * A block that lies wholly inside msg is returned in place; any other (it touches the
 * prefix, or it is the short last block) is assembled in `tmp`, zero-padded to 64 bytes.
 * Never reads outside prefix[0..prefix_len) and msg[0..msg_len).
 */
static inline const uint8_t *rs_b3_block(const uint8_t *prefix, size_t prefix_len,
                                         const uint8_t *msg, size_t off, size_t blen,
                                         uint8_t tmp[RS_B3_BLOCK_LEN])
{
    if (off >= prefix_len && blen == RS_B3_BLOCK_LEN)
        return msg + (off - prefix_len);
    memset(tmp + blen, 0, RS_B3_BLOCK_LEN - blen); /* [0, blen) is copied below */
    size_t end = off + blen;
    size_t pos = off;
    if (pos < prefix_len) {
        size_t stop = end < prefix_len ? end : prefix_len;
        memcpy(tmp, prefix + pos, stop - pos);
        pos = stop;
    }
    if (pos < end)
        memcpy(tmp + (pos - off), msg + (pos - prefix_len), end - pos);
    return tmp;
}

static inline uint32_t rs_load32_le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static inline void rs_store32_le(uint8_t *p, uint32_t w)
{
    p[0] = (uint8_t)w;
    p[1] = (uint8_t)(w >> 8);
    p[2] = (uint8_t)(w >> 16);
    p[3] = (uint8_t)(w >> 24);
}

/* Little-endian u64 loads and stores (the proof encoding, the WAL header), any alignment. */
static inline uint64_t rs_load64_le(const uint8_t *p)
{
    return (uint64_t)rs_load32_le(p) | ((uint64_t)rs_load32_le(p + 4) << 32);
}

static inline void rs_store64_le(uint8_t *p, uint64_t v)
{
    rs_store32_le(p, (uint32_t)v);
    rs_store32_le(p + 4, (uint32_t)(v >> 32));
}

/* Flags of block b out of nblocks of a one-chunk root message. */
static inline uint32_t rs_b3_block_flags(size_t b, size_t nblocks)
{
    uint32_t f = 0;
    if (b == 0)
        f |= RS_B3_CHUNK_START;
    if (b + 1 == nblocks)
        f |= RS_B3_CHUNK_END | RS_B3_ROOT;
    return f;
}

/* One message of at most one chunk, prefix || msg, hashed block by block with `compress`. */
static inline void rs_b3_hash_one(rs_compress_fn compress, const uint8_t *prefix,
                                  size_t prefix_len, const uint8_t *msg, size_t msg_len,
                                  uint8_t *out)
{
    size_t len = prefix_len + msg_len;
    size_t nblocks = rs_b3_blocks(len);
    uint8_t tmp[RS_B3_BLOCK_LEN];
    uint32_t cv[8];
    memcpy(cv, rs_b3_iv, sizeof cv);
    for (size_t b = 0; b < nblocks; b++) {
        size_t off = b * RS_B3_BLOCK_LEN;
        size_t blen = len - off < RS_B3_BLOCK_LEN ? len - off : RS_B3_BLOCK_LEN;
        const uint8_t *blk = rs_b3_block(prefix, prefix_len, msg, off, blen, tmp);
        compress(cv, blk, (uint32_t)blen, 0, rs_b3_block_flags(b, nblocks));
    }
    for (int w = 0; w < 8; w++)
        rs_store32_le(out + 4 * w, cv[w]);
}

#endif /* ROTORSHM_KERNEL_H */
