/*
 * rotorshm_native.h -- the small C helper behind rotorshm.atomics.
 *
 * Atomic loads/stores on plain words that live in a shared buffer (an mmap of
 * a shard file or of a POSIX shared-memory segment), the seqlock read and
 * write loops with the copy inside them, and futex wait/wake on a shared
 * 32-bit word.  Everything else in rotorshm is Python.
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
 *   - there is a single writer per seqlock counter.
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

/* Single-writer seqlock publication of nbytes from private src into shared dst. */
void rs_seqlock_write(void *counter, void *dst, const void *src, size_t nbytes);

/* Consistent copy of nbytes from shared src into private dst; 0 or RS_SEQLOCK_BUSY. */
int rs_seqlock_read(const void *counter, const void *src, void *dst, size_t nbytes,
                    uint32_t max_retries, uint64_t *seq_out);

/* Cross-process futex on a shared u32 word; timeout_ns < 0 waits forever. */
int rs_futex_wait_u32(void *addr, uint32_t expected, int64_t timeout_ns);
int rs_futex_wake_u32(void *addr, int n);
int rs_has_futex(void);

/* CFFI-CDEF-END */

#ifdef __cplusplus
}
#endif

#endif /* ROTORSHM_NATIVE_H */
