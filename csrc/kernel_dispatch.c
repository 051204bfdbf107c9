/*
 * kernel_dispatch.c -- CPU detection and the choice of BLAKE3 kernel, once per process.
 *
 * At first use the widest kernel this CPU (and OS) supports is chosen: AVX-512 (16 lanes),
 * AVX2 (8), SSE4.1 (4), else portable (1).  rs_kernel_set() forces another available one
 * (rotorshm.kernel does, for ROTORSHM_KERNEL and for tests).  On anything but x86-64 only
 * the portable kernel is compiled in.
 *
 * Also here: the one-message hash of any length (multi-chunk messages, arity >= 32, go
 * through the BLAKE3 chunk tree), and single messages: both on the portable compression
 * for the portable kernel, on the SSE4.1 row-wise one for every SIMD kernel.
 */
#include "kernel.h"
#include "rotorshm_native.h"

static const rs_hash_many_fn kernels[RS_KERNEL_COUNT] = {
    rs_hash_many_portable,
#if RS_X86
    rs_hash_many_sse41,
    rs_hash_many_avx2,
    rs_hash_many_avx512,
#else
    0, 0, 0,
#endif
};

static const int lanes[RS_KERNEL_COUNT] = {1, 4, 8, 16};

/* -1 until the first detection; afterwards the id of the kernel in use. */
static int current = -1;

unsigned rs_cpu_features(void)
{
    unsigned f = 0;
#if RS_X86 && (defined(__GNUC__) || defined(__clang__))
    /* libgcc's detection also checks (XGETBV) that the OS saves the YMM / ZMM state. */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.1"))
        f |= RS_CPU_SSE41;
    if (__builtin_cpu_supports("avx2"))
        f |= RS_CPU_AVX2;
    if (__builtin_cpu_supports("avx512f"))
        f |= RS_CPU_AVX512F;
#endif
    return f;
}

int rs_kernel_available(int kernel)
{
    if (kernel < 0 || kernel >= RS_KERNEL_COUNT || kernels[kernel] == 0)
        return 0;
    unsigned f = rs_cpu_features();
    switch (kernel) {
    case RS_KERNEL_PORTABLE:
        return 1;
    case RS_KERNEL_SSE41:
        return (f & RS_CPU_SSE41) != 0;
    case RS_KERNEL_AVX2:
        /* the AVX2 kernel hands its last 1..7 messages to the SSE4.1 one */
        return (f & RS_CPU_AVX2) && (f & RS_CPU_SSE41);
    case RS_KERNEL_AVX512:
        return (f & RS_CPU_AVX512F) && (f & RS_CPU_AVX2) && (f & RS_CPU_SSE41);
    default:
        return 0;
    }
}

int rs_kernel_best(void)
{
    for (int k = RS_KERNEL_COUNT - 1; k > 0; k--)
        if (rs_kernel_available(k))
            return k;
    return RS_KERNEL_PORTABLE;
}

int rs_kernel_get(void)
{
    int k = __atomic_load_n(&current, __ATOMIC_RELAXED);
    if (k < 0) {
        k = rs_kernel_best();
        __atomic_store_n(&current, k, __ATOMIC_RELAXED);
    }
    return k;
}

int rs_kernel_set(int kernel)
{
    if (!rs_kernel_available(kernel))
        return -1;
    __atomic_store_n(&current, kernel, __ATOMIC_RELAXED);
    return 0;
}

int rs_kernel_lanes(int kernel)
{
    return kernel >= 0 && kernel < RS_KERNEL_COUNT ? lanes[kernel] : 0;
}

int rs_hash_many(const uint8_t *prefix, size_t prefix_len, const uint8_t *base, size_t stride,
                 size_t msg_len, size_t count, uint8_t *out)
{
    if (prefix_len > RS_B3_CHUNK_LEN || msg_len > RS_B3_CHUNK_LEN - prefix_len)
        return -1;
    if (count == 0)
        return 0;
    kernels[rs_kernel_get()](prefix, prefix_len, base, stride, msg_len, count, out);
    return 0;
}

rs_compress_fn rs_b3_compress_current(void)
{
#if RS_X86
    if (rs_kernel_get() != RS_KERNEL_PORTABLE)
        return rs_b3_compress_sse41; /* every SIMD kernel implies SSE4.1 */
#endif
    return rs_b3_compress;
}

rs_compress2_fn rs_b3_compress2_current(void)
{
#if RS_X86
    if (rs_kernel_get() != RS_KERNEL_PORTABLE)
        return rs_b3_compress2_sse41;
#endif
    return rs_b3_compress2;
}

void rs_hash_one(const uint8_t *prefix, size_t prefix_len, const uint8_t *msg, size_t msg_len,
                 uint8_t *out)
{
    rs_b3_hash_one(rs_b3_compress_current(), prefix, prefix_len, msg, msg_len, out);
}

/* Chaining value of chunk `index` (1..1024 bytes, not the root). */
static void chunk_cv(rs_compress_fn compress, const uint8_t *chunk, size_t len, uint64_t index,
                     uint32_t cv[8])
{
    size_t nblocks = rs_b3_blocks(len);
    uint8_t tmp[RS_B3_BLOCK_LEN];
    memcpy(cv, rs_b3_iv, 8 * sizeof(uint32_t));
    for (size_t b = 0; b < nblocks; b++) {
        size_t off = b * RS_B3_BLOCK_LEN;
        size_t blen = len - off < RS_B3_BLOCK_LEN ? len - off : RS_B3_BLOCK_LEN;
        const uint8_t *blk = rs_b3_block(0, 0, chunk, off, blen, tmp);
        uint32_t flags = (b == 0 ? RS_B3_CHUNK_START : 0) | (b + 1 == nblocks ? RS_B3_CHUNK_END : 0);
        compress(cv, blk, (uint32_t)blen, index, flags);
    }
}

/* cv := parent of (left, cv); a parent block is the two children's chaining values. */
static void parent_cv(rs_compress_fn compress, const uint32_t left[8], uint32_t cv[8],
                      uint32_t extra_flags)
{
    uint8_t block[RS_B3_BLOCK_LEN];
    for (int w = 0; w < 8; w++) {
        rs_store32_le(block + 4 * w, left[w]);
        rs_store32_le(block + 32 + 4 * w, cv[w]);
    }
    memcpy(cv, rs_b3_iv, 8 * sizeof(uint32_t));
    compress(cv, block, RS_B3_BLOCK_LEN, 0, RS_B3_PARENT | extra_flags);
}

void rs_blake3(const uint8_t *msg, size_t len, uint8_t *out)
{
    rs_compress_fn compress = rs_b3_compress_current();
    if (len <= RS_B3_CHUNK_LEN) {
        rs_b3_hash_one(compress, 0, 0, msg, len, out);
        return;
    }
    /* The chunk tree: a stack of subtree chaining values, merged as in the specification
     * (after chunk j, merge once for every trailing zero bit of j + 1).  The last chunk is
     * never merged early, so the final parent is the one that carries ROOT. */
    uint32_t stack[64][8];
    size_t depth = 0;
    size_t nchunks = (len + RS_B3_CHUNK_LEN - 1) / RS_B3_CHUNK_LEN;
    uint32_t cv[8];
    for (size_t j = 0;; j++) {
        size_t off = j * RS_B3_CHUNK_LEN;
        size_t clen = len - off < RS_B3_CHUNK_LEN ? len - off : RS_B3_CHUNK_LEN;
        chunk_cv(compress, msg + off, clen, (uint64_t)j, cv);
        if (j + 1 == nchunks)
            break;
        for (uint64_t total = (uint64_t)j + 1; (total & 1) == 0; total >>= 1)
            parent_cv(compress, stack[--depth], cv, 0);
        memcpy(stack[depth++], cv, sizeof cv);
    }
    while (depth > 0) {
        depth--;
        parent_cv(compress, stack[depth], cv, depth == 0 ? RS_B3_ROOT : 0);
    }
    for (int w = 0; w < 8; w++)
        rs_store32_le(out + 4 * w, cv[w]);
}
