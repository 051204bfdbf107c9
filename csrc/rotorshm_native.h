/*
 * rotorshm_native.h -- the small C helper behind rotorshm.atomics.
 *
 * Atomic loads/stores on plain words that live in a shared buffer (an mmap of
 * a shard file or of a POSIX shared-memory segment), the seqlock read and
 * write loops with the copy inside them, and futex wait/wake on a shared
 * 32-bit word; and the tree's node hashing on the BLAKE3 kernels of kernel_*.c
 * (one file per instruction set, chosen at run time by kernel_dispatch.c) with the
 * level-at-a-time and one-group functions of tree_hash.c.
 *
 * This header is the single source of truth for the Python binding:
 * build_ffi.py hands the text between the CFFI-CDEF-BEGIN and CFFI-CDEF-END
 * markers to ffibuilder.cdef() verbatim.  Keep that region free of
 * preprocessor conditionals and includes (integer #defines are fine).
 *
 * Preconditions (checked by the Python wrapper, not here):
 *   - every pointer to a shared word is naturally aligned (8 bytes for u64,
 *     4 bytes for u32) and points into a live mapping;
 *   - for the seqlock functions, the shared side (dst of a write, src of a
 *     read) is 8-byte aligned and nbytes is a multiple of 8; the private side
 *     (src of a write, dst of a read) may have any alignment;
 *   - there is a single writer per seqlock counter;
 *   - for the hashing functions: every input pointer covers the bytes the arguments
 *     describe (message i of rs_hash_many is prefix[0..prefix_len) followed by
 *     base[i*stride .. i*stride+msg_len)), `out` covers 32 bytes per output hash and
 *     overlaps no input.  Bad counts, arities and lengths return -1 (nothing written);
 *     pointers cannot be checked here.
 *
 * The hashing functions take no lock and touch no Python object: cffi releases the GIL
 * around them, so several threads can hash disjoint ranges of one level at once.
 */
#ifndef ROTORSHM_NATIVE_H
#define ROTORSHM_NATIVE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CFFI-CDEF-BEGIN */

/* rs_seqlock_read: retries exhausted (counter stayed odd or kept changing). */
#define RS_SEQLOCK_BUSY -1

/* rs_futex_wait_u32 results (negative values are -errno). */
#define RS_FUTEX_WOKEN 0
#define RS_FUTEX_TIMEDOUT 1
#define RS_FUTEX_RECHECK 2

/* Atomic operations on one naturally aligned shared word. */
uint64_t rs_load_acquire_u64(const void *p);
void rs_store_release_u64(void *p, uint64_t v);
uint64_t rs_fetch_add_u64(void *p, uint64_t v);
uint32_t rs_load_acquire_u32(const void *p);
void rs_store_release_u32(void *p, uint32_t v);
uint32_t rs_fetch_add_u32(void *p, uint32_t v);
void rs_fence(void);

/* Epoch guard (DESIGN.md §4): a shared u64 in a writer's control block, 0 while its epoch
 * is current, else 1 + the size a restarted writer recovered.  rs_guard_stale: acquire
 * fence (everything read before stays before), then the word; 1 if a snapshot of `size`
 * leaves reaches past the recovered size.  rs_guard_mark: lower the word to 1 + `size`
 * (never raise it) and fence, before the new writer writes anything. */
int rs_guard_stale(const void *word, uint64_t size);
void rs_guard_mark(void *word, uint64_t size);

/* Single-writer seqlock publication of nbytes from private src into shared dst. */
void rs_seqlock_write(void *counter, void *dst, const void *src, size_t nbytes);

/* Consistent copy of nbytes from shared src into private dst; 0 or RS_SEQLOCK_BUSY. */
int rs_seqlock_read(const void *counter, const void *src, void *dst, size_t nbytes,
                    uint32_t max_retries, uint64_t *seq_out);

/* Cross-process futex on a shared u32 word; timeout_ns < 0 waits forever. */
int rs_futex_wait_u32(void *addr, uint32_t expected, int64_t timeout_ns);
int rs_futex_wake_u32(void *addr, int n);
int rs_has_futex(void);

/* BLAKE3 kernels: identifiers, lanes, CPU features (bit set of RS_CPU_*). */
#define RS_KERNEL_PORTABLE 0
#define RS_KERNEL_SSE41 1
#define RS_KERNEL_AVX2 2
#define RS_KERNEL_AVX512 3
#define RS_KERNEL_COUNT 4
#define RS_CPU_SSE41 1
#define RS_CPU_AVX2 2
#define RS_CPU_AVX512F 4
/* Longest message (prefix included) that rs_hash_many takes: one BLAKE3 chunk. */
#define RS_B3_MAX_MANY_LEN 1024

unsigned rs_cpu_features(void);
/* 1 if `kernel` is compiled in and this CPU runs it, else 0. */
int rs_kernel_available(int kernel);
/* The widest available kernel. */
int rs_kernel_best(void);
/* The kernel in use (the widest available until rs_kernel_set). */
int rs_kernel_get(void);
/* Use `kernel` from now on in this process: 0, or -1 if it is not available. */
int rs_kernel_set(int kernel);
int rs_kernel_lanes(int kernel);

/* BLAKE3 (32-byte output) of `count` messages of prefix_len + msg_len <= 1024 bytes each:
 * message i = prefix[0..prefix_len) || base[i*stride .. i*stride + msg_len).
 * Hashes one message per SIMD lane with the kernel in use.  0, or -1 if too long. */
int rs_hash_many(const uint8_t *prefix, size_t prefix_len, const uint8_t *base, size_t stride,
                 size_t msg_len, size_t count, uint8_t *out);

/* BLAKE3 (32-byte output) of one message of any length. */
void rs_blake3(const uint8_t *msg, size_t len, uint8_t *out);

/* Parent of the group of k = 1..255 contiguous 32-byte children (k == 1: lifted). */
int rs_hash_group(const uint8_t *children, unsigned k, uint8_t *out);

/* Parent of the group of k children made of the k-1 contiguous `siblings` with `child`
 * inserted at position pos (0 <= pos < k): siblings[0..pos), child, siblings[pos..k-1).
 * What a proof step and the single-leaf right-edge update hash. */
int rs_hash_group_with(const uint8_t *siblings, unsigned k, unsigned pos, const uint8_t *child,
                       uint8_t *out);

/* Parents of `count` consecutive 32-byte nodes that start at a group boundary, for groups
 * of `arity` (the last group may be partial: r >= 2 children hash with prefix (0x01, r),
 * r == 1 is lifted): ceil(count / arity) hashes into out. */
int rs_hash_groups(const uint8_t *nodes, size_t count, unsigned arity, uint8_t *out);

/* The same for parents first .. last-1 only (out still points at parent 0), so that
 * threads can share one level: disjoint ranges write disjoint parts of out. */
int rs_hash_groups_range(const uint8_t *nodes, size_t count, unsigned arity, size_t first,
                         size_t last, uint8_t *out);

/* rs_hash_groups on `threads` (1..RS_MAX_HASH_THREADS) POSIX threads, each one range of
 * parents; the calling thread hashes the first range and joins the others. */
#define RS_MAX_HASH_THREADS 256
int rs_hash_groups_mt(const uint8_t *nodes, size_t count, unsigned arity, unsigned threads,
                      uint8_t *out);

/* ---- tree_ops.c: single-leaf append, proofs from level storage, verification ---------- */
/* Every function below returns a negative RS_E_* on a refused call, never reads a region
 * outside a level's published table, and writes nothing before its checks pass. */
#define RS_E_ARG -1
#define RS_E_CLOSED -2
#define RS_E_UNMAPPED -3
#define RS_E_RESERVE -4
#define RS_E_MALFORMED -5
/* The view's epoch was superseded below its size (its guard): the gathered nodes may mix
 * two writers' trees, nothing is returned. */
#define RS_E_STALE -6
/* Why an encoded proof is malformed (rs_parse_proof; rs_verify_proof_bytes returns -why). */
#define RS_WHY_SHORT 1
#define RS_WHY_VERSION 2
#define RS_WHY_KIND 3
#define RS_WHY_ARITY 4
#define RS_WHY_LEVELS 5
#define RS_WHY_LEVEL_TRUNCATED 6
#define RS_WHY_COUNTS 7
#define RS_WHY_HASHES_TRUNCATED 8
#define RS_WHY_TRAILING 9
/* Levels of a tree of up to 2^64 - 1 leaves (arity 2: depth 64). */
#define RS_VIEW_LEVELS 65

/* One level's storage: regions[0 .. nregions) each 2^shift bytes of 32-byte nodes.
 * `ready`: nodes with reserved storage (the writer's); `closed`: set before regions go. */
typedef struct rs_level {
    uint8_t **regions;
    uint64_t nregions;
    uint64_t ready;
    uint32_t shift;
    uint32_t closed;
    uint32_t writable;
    uint32_t reserved_;
} rs_level;

/* One snapshot: level lengths, the frontier copy (last node of every level), the levels,
 * and the epoch guard word of the writer that published it (NULL: none), checked after
 * every proof is gathered (rs_guard_stale). */
typedef struct rs_view {
    uint32_t arity;
    uint32_t nlevels;
    uint64_t size;
    uint64_t lengths[65];
    uint8_t frontier[2080];
    rs_level *levels[65];
    const uint64_t *guard;
} rs_view;

/* Publish a new region table (a superset of the previous one, which must stay valid). */
void rs_level_publish(rs_level *lvl, uint8_t **regions, uint64_t nregions);
void rs_level_close(rs_level *lvl);

/* The writer's single-leaf append state (rotorshm._cpaths.Appender owns one): the levels,
 * and per level the chaining value after the leading blocks of the right-edge group's
 * message that hold only its prefix and older members (tree_ops.c explains the key).
 * Private to the one writer; rs_appender_reset empties the cache. */
typedef struct rs_prefix_cache {
    const rs_level *level;
    uint64_t group;
    uint32_t k;
    uint32_t arity;
    uint32_t valid;
    uint32_t cv[8];
} rs_prefix_cache;

typedef struct rs_appender {
    rs_level *levels[65];
    uint64_t next;
    uint32_t no_cache;
    uint32_t nlevels;         /* levels[0 .. nlevels) are the tree's (Appender.sync) */
    uint32_t arity;
    rs_prefix_cache cache[65];
    uint8_t frontier[2080];   /* out: the last node of every level, 32 bytes each */
    uint64_t lengths[65];     /* out: every level's length */
} rs_appender;

void rs_appender_reset(rs_appender *a);

/* Write leaf `index` and rehash its path (one node per level) over a->levels[0..nlevels)
 * of an a->arity tree: the level count of the new tree, its lengths and frontier (32 bytes
 * per level) in a->lengths and a->frontier; RS_E_RESERVE when a level lacks storage
 * (nothing written then).  a->no_cache = 1 makes it hash every block (tests and
 * benchmarks compare both).  Three arguments: a Python call converts each one. */
int rs_append_one(rs_appender *a, uint64_t index, const uint8_t *leaf);

/* Append `count` >= 1 leaves (data: 32*count bytes) at index `old`: write them into level 0
 * and rehash every level's dirty range, levels 1..k on `threads` threads for a large batch
 * (tree_append.c).  The level count of the new tree, its lengths and frontier in the
 * outputs, as rs_append_one; RS_E_RESERVE when a level lacks storage (nothing written). */
int rs_append_many(rs_level *const *levels, unsigned nlevels, unsigned arity, uint64_t old,
                   const uint8_t *data, uint64_t count, unsigned threads,
                   uint8_t *frontier_out, uint64_t *lengths_out);

/* Recovery's check of a checkpoint (tree_append.c): recompute parents [plo, phi) of level
 * `above` from level `below` (clen nodes) and compare them with the stored ones: 0 if all
 * equal, 1 with *bad = the first that differs, or RS_E_*. */
int rs_check_parents(const rs_level *below, const rs_level *above, unsigned arity,
                     uint64_t plo, uint64_t phi, uint64_t clen, uint64_t *bad);
/* CRC32C (as rs_crc32c) of each 4 KiB chunk first .. first+count-1 of level l. */
int rs_level_chunk_crcs(const rs_level *l, uint64_t first, uint64_t count, uint32_t *out);

/* Bytes an encoded proof with `nlevels` levels of this arity can take at most. */
size_t rs_proof_capacity(unsigned arity, unsigned nlevels);
/* Encoded inclusion proof of leaf `index` in the view's tree as of `size` leaves; its
 * length, or RS_E_*.  `cap` >= rs_proof_capacity(arity, depth(size)). */
int64_t rs_inclusion_proof(const rs_view *v, uint64_t index, uint64_t size, uint8_t *out,
                           size_t cap);
/* Encoded consistency proof from old_size to new_size (<= the view's size). */
int64_t rs_consistency_proof(const rs_view *v, uint64_t old_size, uint64_t new_size,
                             uint8_t *out, size_t cap);

/* 0 if blob is a well-formed encoding of `kind` ('I' or 'C'), else an RS_WHY_*. */
int rs_parse_proof(const uint8_t *blob, size_t len, unsigned kind);
/* Verification of a proof given as fields plus `enc`, a buffer of `len` bytes whose levels
 * (nlev of them) start at byte 84, as in an encoding (bytes 0..83 are not read): 1 valid,
 * 0 invalid, RS_E_MALFORMED if enc[84..len) is not nlev well-formed levels. */
int rs_verify_inclusion(unsigned arity, uint64_t index, uint64_t size, const uint8_t *root,
                        const uint8_t *leaf, const uint8_t *enc, size_t len, unsigned nlev);
/* The root its path recomputes: 1 (out set), 0 structure invalid, or RS_E_MALFORMED. */
int rs_inclusion_root(unsigned arity, uint64_t index, uint64_t size, const uint8_t *leaf,
                      const uint8_t *enc, size_t len, unsigned nlev, uint8_t *out);
/* A whole encoded inclusion proof against a trusted (root, size): 1, 0, or -RS_WHY_*. */
int rs_verify_proof_bytes(const uint8_t *blob, size_t len, const uint8_t *root, uint64_t size);
int rs_verify_consistency(unsigned arity, uint64_t old_size, uint64_t new_size,
                          const uint8_t *old_root, const uint8_t *new_root, const uint8_t *enc,
                          size_t len, unsigned nlev);
/* Both roots a consistency proof (old < new) recomputes: 1, 0, or RS_E_MALFORMED. */
int rs_consistency_roots(unsigned arity, uint64_t old_size, uint64_t new_size,
                         const uint8_t *enc, size_t len, unsigned nlev, uint8_t *old_root,
                         uint8_t *new_root);
/* Levels of the inclusion proof (against new_size) that a verified consistency proof turns
 * a verified inclusion proof of leaf `index` (against old_size) into, both given as
 * encodings (levels from byte 84); written to out, their byte length returned. */
int64_t rs_update_inclusion(unsigned arity, uint64_t old_size, uint64_t new_size,
                            const uint8_t *cenc, size_t clen, unsigned cnlev, uint64_t index,
                            const uint8_t *ienc, size_t ilen, unsigned inlev, uint8_t *out,
                            size_t cap);

/* WAL search behind a damaged record (wal_scan.c): the first offset start >= from at
 * which a valid record is framed (payload length, CONTINUED bit masked, <= max_payload and
 * inside buf; CRC32C right) whose sequence lies in one of the inclusive ranges lo[i]..hi[i]
 * (at most 8 ranges), or -1. */
int64_t rs_wal_find_record(const uint8_t *buf, size_t len, size_t from, const uint64_t *lo,
                           const uint64_t *hi, size_t nranges, uint64_t max_payload);
/* CRC32C (Castagnoli) of n bytes, as the crc32c package computes it. */
uint32_t rs_crc32c(const uint8_t *p, size_t n);

/* CFFI-CDEF-END */

#ifdef __cplusplus
}
#endif

#endif /* ROTORSHM_NATIVE_H */
