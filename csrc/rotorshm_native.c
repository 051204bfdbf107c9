/*
 * rotorshm_native.c -- atomics, seqlock and futex helpers on shared words.
 *
 * The words live in memory shared between processes (MAP_SHARED mappings), so
 * they are plain uint64_t / uint32_t objects accessed only through the GCC /
 * Clang __atomic builtins, plus C11 fences from <stdatomic.h>.  The atomics
 * must be lock-free: a lock-based fallback (libatomic's lock table) lives in
 * process-private memory and would not exclude other processes.
 *
 * Memory ordering follows DESIGN.md section 4:
 *   writer: counter := c+1 (relaxed); release fence; relaxed word stores of
 *           the state; counter := c+2 (release store).
 *   reader: s1 := counter (acquire); odd -> retry; relaxed word loads of the
 *           state; acquire fence; s2 := counter (relaxed); retry unless equal.
 */
#if defined(__linux__)
#  ifndef _GNU_SOURCE
#    define _GNU_SOURCE 1 /* syscall() */
#  endif
#elif !defined(_POSIX_C_SOURCE)
#  define _POSIX_C_SOURCE 200809L /* nanosleep() */
#endif

#include "rotorshm_native.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#if defined(__linux__) && !defined(RS_NO_FUTEX)
#  include <linux/futex.h>
#  include <sys/syscall.h>
#  include <unistd.h>
#  if defined(SYS_futex)
#    define RS_HAVE_FUTEX 1
#  endif
#endif
#ifndef RS_HAVE_FUTEX
#  define RS_HAVE_FUTEX 0
#endif

/* Lock-free means address-free: required for words shared between processes. */
_Static_assert(sizeof(long long) == 8 && sizeof(int) == 4, "unexpected integer sizes");
#if ATOMIC_LLONG_LOCK_FREE != 2 || ATOMIC_INT_LOCK_FREE != 2
#  error "64- and 32-bit atomics must be lock-free to work across processes"
#endif

/* Polite spin: tell the core we are busy-waiting (no-op where unknown). */
static inline void rs_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || (defined(__arm__) && __ARM_ARCH >= 7)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* ---- single words ------------------------------------------------------ */

uint64_t rs_load_acquire_u64(const void *p)
{
    return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE);
}

void rs_store_release_u64(void *p, uint64_t v)
{
    __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE);
}

uint64_t rs_fetch_add_u64(void *p, uint64_t v)
{
    return __atomic_fetch_add((uint64_t *)p, v, __ATOMIC_SEQ_CST);
}

uint32_t rs_load_acquire_u32(const void *p)
{
    return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE);
}

void rs_store_release_u32(void *p, uint32_t v)
{
    __atomic_store_n((uint32_t *)p, v, __ATOMIC_RELEASE);
}

uint32_t rs_fetch_add_u32(void *p, uint32_t v)
{
    return __atomic_fetch_add((uint32_t *)p, v, __ATOMIC_SEQ_CST);
}

void rs_fence(void)
{
    atomic_thread_fence(memory_order_seq_cst);
}

/* ---- epoch guard --------------------------------------------------------- */
/* The seqlock pattern once more: the new writer marks the word, fences, then writes nodes;
 * a reader reads nodes, fences, then loads the word.  If a read saw a node the new writer
 * wrote, the load sees the mark. */

int rs_guard_stale(const void *word, uint64_t size)
{
    atomic_thread_fence(memory_order_acquire);
    uint64_t w = __atomic_load_n((const uint64_t *)word, __ATOMIC_RELAXED);
    return w != 0 && size >= w;
}

void rs_guard_mark(void *word, uint64_t size)
{
    uint64_t *p = (uint64_t *)word;
    uint64_t want = size + 1;
    uint64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
    while ((cur == 0 || cur > want) &&
           !__atomic_compare_exchange_n(p, &cur, want, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
        ;
    atomic_thread_fence(memory_order_seq_cst);
}

/* ---- seqlock ----------------------------------------------------------- */

void rs_seqlock_write(void *counter, void *dst, const void *src, size_t nbytes)
{
    uint64_t *ctr = (uint64_t *)counter;
    uint64_t *d = (uint64_t *)dst;
    const unsigned char *s = (const unsigned char *)src;
    size_t nwords = nbytes / 8;
    uint64_t c = __atomic_load_n(ctr, __ATOMIC_RELAXED); /* single writer */

    __atomic_store_n(ctr, c + 1, __ATOMIC_RELAXED);
    atomic_thread_fence(memory_order_release);
    for (size_t i = 0; i < nwords; i++) {
        uint64_t w;
        memcpy(&w, s + 8 * i, sizeof w); /* private source: any alignment */
        __atomic_store_n(&d[i], w, __ATOMIC_RELAXED);
    }
    __atomic_store_n(ctr, c + 2, __ATOMIC_RELEASE);
}

int rs_seqlock_read(const void *counter, const void *src, void *dst, size_t nbytes,
                    uint32_t max_retries, uint64_t *seq_out)
{
    const uint64_t *ctr = (const uint64_t *)counter;
    const uint64_t *s = (const uint64_t *)src;
    unsigned char *d = (unsigned char *)dst;
    size_t nwords = nbytes / 8;

    for (uint32_t attempt = 0; attempt < max_retries; attempt++) {
        uint64_t s1 = __atomic_load_n(ctr, __ATOMIC_ACQUIRE);
        if (s1 & 1u) { /* writer inside its critical section */
            rs_cpu_relax();
            continue;
        }
        for (size_t i = 0; i < nwords; i++) {
            /* Racing memory: word-sized relaxed atomic loads, never memcpy. */
            uint64_t w = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
            memcpy(d + 8 * i, &w, sizeof w); /* private destination */
        }
        atomic_thread_fence(memory_order_acquire);
        uint64_t s2 = __atomic_load_n(ctr, __ATOMIC_RELAXED);
        if (s1 == s2) {
            if (seq_out != NULL) {
                *seq_out = s1;
            }
            return 0;
        }
        rs_cpu_relax();
    }
    return RS_SEQLOCK_BUSY;
}

/* ---- futex ------------------------------------------------------------- */

int rs_has_futex(void)
{
    return RS_HAVE_FUTEX;
}

#if RS_HAVE_FUTEX

/* Shared (not FUTEX_PRIVATE_FLAG) futexes: the kernel keys them on the
 * backing page, so waiters and wakers in different processes meet. */
int rs_futex_wait_u32(void *addr, uint32_t expected, int64_t timeout_ns)
{
    struct timespec ts;
    struct timespec *tsp = NULL;

    if (timeout_ns >= 0) {
        int64_t sec = timeout_ns / 1000000000;
        if (sec > INT32_MAX) {
            sec = INT32_MAX; /* ~68 years: effectively forever, fits any time_t */
        }
        ts.tv_sec = (time_t)sec;
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        tsp = &ts;
    }
    /* FUTEX_WAIT takes a relative timeout. */
    long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, expected, tsp, NULL, 0);
    if (r == 0) {
        return RS_FUTEX_WOKEN; /* woken (possibly spuriously): caller rechecks */
    }
    int e = errno;
    switch (e) {
    case EAGAIN:
        return RS_FUTEX_WOKEN; /* value already differed from expected */
    case ETIMEDOUT:
        return RS_FUTEX_TIMEDOUT;
    case EINTR:
        return RS_FUTEX_RECHECK; /* signal: let Python run handlers, recheck */
    default:
        return -e;
    }
}

int rs_futex_wake_u32(void *addr, int n)
{
    long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, n, NULL, NULL, 0);
    if (r < 0) {
        return -errno;
    }
    return r > INT_MAX ? INT_MAX : (int)r;
}

#else /* !RS_HAVE_FUTEX: polling fallback */

#define RS_POLL_NS 200000 /* 200 microseconds */

int rs_futex_wait_u32(void *addr, uint32_t expected, int64_t timeout_ns)
{
    if (__atomic_load_n((const uint32_t *)addr, __ATOMIC_ACQUIRE) != expected) {
        return RS_FUTEX_WOKEN;
    }
    if (timeout_ns == 0) {
        return RS_FUTEX_TIMEDOUT;
    }
    struct timespec ts;
    ts.tv_sec = 0;
    ts.tv_nsec = (timeout_ns > 0 && timeout_ns < RS_POLL_NS) ? (long)timeout_ns : RS_POLL_NS;
    if (nanosleep(&ts, NULL) != 0 && errno != EINTR) {
        return -errno;
    }
    return RS_FUTEX_RECHECK; /* the caller rechecks the word and its deadline */
}

int rs_futex_wake_u32(void *addr, int n)
{
    (void)addr;
    (void)n;
    return 0;
}

#endif /* RS_HAVE_FUTEX */
