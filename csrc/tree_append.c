/*
 * tree_append.c -- a whole batch of leaves appended in one call: the leaves written into
 * level 0, then every level's dirty range hashed straight from the level below into the
 * level above (DESIGN.md §1), on one thread or several.
 *
 * The dirty range of level l+1 starts at the parent of the group that holds the batch's
 * first node of level l (the group's older members are immutable) and runs to the level's
 * new end.  Full groups that lie in one region of the children's level, and whose parents
 * lie in one region of the parents' level, go to the kernel in use many per SIMD pass; a
 * group split by a region boundary (arities that do not divide a region's 2^k nodes) and
 * the last, partial group are copied out and hashed alone.
 *
 * Threads (threads > 1, large batches): the batch [old, end) is cut at leaf indices that
 * are multiples of arity^k, so that on every level l <= k the parents each thread writes,
 * and the children it reads, are its own: thread t covers leaves [P_t, P_t+1), i.e. parents
 * [P_t / a^l, P_t+1 / a^l) of level l, whose children are exactly the nodes it wrote on
 * level l-1 (thread 0 also reads the older, immutable members of its first group).  No
 * thread waits for another until all are joined; the calling thread then hashes levels
 * above k (at most a few thousand nodes) alone.
 */
#define _DEFAULT_SOURCE /* madvise under -std=c11 */
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernel.h"
#include "levels.h"
#include "rotorshm_native.h"

#define NODE RS_NODE
#define MAX_ARITY 255
#define NODE_TAG 1
/* A level is hashed on several threads once its batch has this many parents on level 1. */
#define PARALLEL_MIN_GROUPS 4096

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* Fault in, writable, the pages of nodes [lo, hi) of level l before they are written: one
 * madvise per region instead of a page fault per 4 KiB page (on a MAP_SHARED shard file
 * each fault also allocates a page-cache page and calls into the file system).  Only a
 * hint: an old kernel's EINVAL, or any failure, leaves the pages to fault as before.
 * Runs with the GIL released, so the WAL's fdatasync proceeds meanwhile. */
static void populate(const rs_level *l, uint64_t lo, uint64_t hi)
{
    static long page;
    if (page == 0)
        page = sysconf(_SC_PAGESIZE);
    while (lo < hi) {
        uint64_t run;
        uint8_t *at = level_at(l, lo, &run);
        if (!at)
            return;
        if (run > hi - lo)
            run = hi - lo;
        uintptr_t a = (uintptr_t)at & ~(uintptr_t)(page - 1);
        uintptr_t b = (uintptr_t)(at + run * NODE);
        (void)madvise((void *)a, b - a, MADV_POPULATE_WRITE);
        lo += run;
    }
}

/* Parents [plo, phi) from the children of level lc (clen nodes long), written to level lp,
 * or (lp NULL) to out[0 .. 32*(phi-plo)). */
static int hash_parents(const rs_level *lc, const rs_level *lp, uint8_t *out, unsigned a,
                        uint64_t plo, uint64_t phi, uint64_t clen)
{
    uint8_t prefix[2] = {NODE_TAG, (uint8_t)a};
    size_t step = (size_t)NODE * a;
    int one_chunk = 2 + step <= RS_B3_CHUNK_LEN;
    uint64_t full_end = clen / a < phi ? clen / a : phi;
    uint8_t tmp[NODE * MAX_ARITY];
    uint64_t p = plo;
    while (p < full_end) {
        uint64_t src_run = 0, dst_run = UINT64_MAX;
        const uint8_t *src = level_at(lc, p * a, &src_run);
        uint8_t *dst = lp ? level_at(lp, p, &dst_run) : out + (p - plo) * NODE;
        if (!src || !dst)
            return RS_E_UNMAPPED;
        uint64_t n = src_run / a;
        if (n > dst_run)
            n = dst_run;
        if (n > full_end - p)
            n = full_end - p;
        if (n == 0) { /* this group straddles two regions of the children's level */
            int rc = level_read(lc, p * a, a, tmp);
            if (rc)
                return rc;
            rs_hash_group(tmp, a, dst);
            p++;
            continue;
        }
        if (one_chunk) {
            rs_hash_many(prefix, 2, src, step, step, (size_t)n, dst);
        } else {
            for (uint64_t g = 0; g < n; g++)
                rs_hash_group(src + g * step, a, dst + g * NODE);
        }
        p += n;
    }
    if (p < phi) { /* the level's last group, of clen - p*a = 1 .. a-1 children */
        unsigned rest = (unsigned)(clen - p * a);
        uint8_t node[NODE];
        int rc = level_read(lc, p * a, rest, tmp);
        if (rc)
            return rc;
        rs_hash_group(tmp, rest, node);
        if (!lp) {
            memcpy(out + (p - plo) * NODE, node, NODE);
            return 0;
        }
        return level_write(lp, p, 1, node);
    }
    return 0;
}

/* Leaves [lo, hi) (data holds leaf `old` first) written, then levels 1..top hashed over
 * them: on level l, parents floor(lo / a^l) .. ceil(hi / a^l) - 1.  L: the new lengths. */
struct span {
    rs_level *const *levels;
    unsigned arity;
    uint64_t old;
    const uint8_t *data;
    uint64_t lo, hi;
    unsigned first, top; /* levels first..top are hashed (first >= 1) */
    const uint64_t *L;
    int rc;
};

static int run_span(const struct span *s)
{
    unsigned a = s->arity;
    if (s->first == 1) {
        populate(s->levels[0], s->lo, s->hi);
        int rc = level_write(s->levels[0], s->lo, s->hi - s->lo,
                             s->data + (s->lo - s->old) * NODE);
        if (rc)
            return rc;
    }
    uint64_t lo = s->lo, hi = s->hi; /* the span's nodes on level l-1 */
    for (unsigned l = 1; l <= s->top; l++) {
        uint64_t plo = lo / a, phi = ceil_div(hi, a);
        if (l >= s->first) {
            populate(s->levels[l], plo, phi);
            int rc = hash_parents(s->levels[l - 1], s->levels[l], 0, a, plo, phi, s->L[l - 1]);
            if (rc)
                return rc;
        }
        lo = plo;
        hi = phi;
    }
    return 0;
}

static void *span_worker(void *arg)
{
    struct span *s = arg;
    s->rc = run_span(s);
    return 0;
}

int rs_append_many(rs_level *const *levels, unsigned nlevels, unsigned arity, uint64_t old,
                   const uint8_t *data, uint64_t count, unsigned threads,
                   uint8_t *frontier_out, uint64_t *lengths_out)
{
    if (arity < 2 || arity > MAX_ARITY || count == 0 || old > UINT64_MAX - count ||
        threads < 1 || threads > RS_MAX_HASH_THREADS)
        return RS_E_ARG;
    uint64_t end = old + count;
    uint64_t L[RS_VIEW_LEVELS];
    unsigned nl = lengths_for(end, arity, L);
    if (nl > nlevels)
        return RS_E_RESERVE;
    /* Everything that can fail is checked before the first byte is written. */
    for (unsigned i = 0; i < nl; i++) {
        const rs_level *l = levels[i];
        uint64_t run;
        if (!level_open(l) || !l->writable)
            return RS_E_CLOSED;
        if (l->ready < L[i] || !level_at(l, L[i] - 1, &run))
            return RS_E_RESERVE;
    }
    struct span whole = {levels, arity, old, data, old, end, 1, nl - 1, L, 0};
    /* k: the levels hashed in parallel, the largest with arity^k * threads * 4 <= count
     * (cut points at multiples of arity^k then leave every thread within 1/8 of its share). */
    unsigned k = 0;
    uint64_t unit = 1;
    if (threads > 1 && count / arity >= PARALLEL_MIN_GROUPS) {
        while (k + 1 < nl && unit <= count / ((uint64_t)threads * 4 * arity)) {
            unit *= arity;
            k++;
        }
    }
    if (k == 0) {
        int rc = run_span(&whole);
        if (rc)
            return rc;
    } else {
        struct span parts[RS_MAX_HASH_THREADS];
        pthread_t tids[RS_MAX_HASH_THREADS];
        int started[RS_MAX_HASH_THREADS];
        uint64_t cut = old;
        for (unsigned t = 0; t < threads; t++) {
            uint64_t next = end;
            if (t + 1 < threads) {
                uint64_t ideal = old + (uint64_t)((double)count * (t + 1) / threads);
                next = (ideal + unit / 2) / unit * unit;
                if (next < cut)
                    next = cut;
                if (next > end)
                    next = end;
            }
            parts[t] = (struct span){levels, arity, old, data, cut, next, 1, k, L, 0};
            cut = next;
            started[t] = 0;
        }
        /* Thread t > 0 takes part t; the calling thread part 0 (and any part whose thread
         * could not be started).  An empty part does nothing. */
        for (unsigned t = 1; t < threads; t++)
            if (parts[t].lo < parts[t].hi)
                started[t] = pthread_create(&tids[t], 0, span_worker, &parts[t]) == 0;
        int rc = parts[0].lo < parts[0].hi ? run_span(&parts[0]) : 0;
        for (unsigned t = 1; t < threads; t++) {
            if (started[t])
                pthread_join(tids[t], 0);
            else if (parts[t].lo < parts[t].hi)
                span_worker(&parts[t]);
            if (!rc)
                rc = parts[t].rc;
        }
        if (rc)
            return rc;
        whole.first = k + 1;
        if (whole.first <= whole.top) {
            rc = run_span(&whole);
            if (rc)
                return rc;
        }
    }
    for (unsigned i = 0; i < nl; i++) {
        int rc = level_read(levels[i], L[i] - 1, 1, frontier_out + (size_t)i * NODE);
        if (rc)
            return rc;
    }
    memcpy(lengths_out, L, nl * sizeof(uint64_t));
    return (int)nl;
}

/* ---- recovery's checks over the same level walk ------------------------------------------ */

int rs_check_parents(const rs_level *below, const rs_level *above, unsigned arity,
                     uint64_t plo, uint64_t phi, uint64_t clen, uint64_t *bad)
{
    if (arity < 2 || arity > MAX_ARITY || plo > phi || phi > ceil_div(clen, arity))
        return RS_E_ARG;
    if (!level_open(below) || !level_open(above))
        return RS_E_CLOSED;
    enum { STEP = 128 };
    uint8_t got[NODE * STEP], want[NODE * STEP];
    for (uint64_t p = plo; p < phi;) {
        uint64_t n = phi - p < STEP ? phi - p : STEP;
        int rc = hash_parents(below, 0, got, arity, p, p + n, clen);
        if (!rc)
            rc = level_read(above, p, n, want);
        if (rc)
            return rc;
        if (memcmp(got, want, (size_t)(n * NODE)) != 0) {
            uint64_t i = 0;
            while (memcmp(got + i * NODE, want + i * NODE, NODE) == 0)
                i++;
            *bad = p + i;
            return 1;
        }
        p += n;
    }
    return 0;
}

int rs_level_chunk_crcs(const rs_level *l, uint64_t first, uint64_t count, uint32_t *out)
{
    enum { CHUNK = 128 }; /* nodes: 4 KiB */
    if (!level_open(l))
        return RS_E_CLOSED;
    uint8_t tmp[NODE * CHUNK];
    for (uint64_t c = 0; c < count; c++) {
        uint64_t run;
        const uint8_t *p = level_at(l, (first + c) * CHUNK, &run);
        if (!p)
            return RS_E_UNMAPPED;
        if (run < CHUNK) { /* regions hold whole chunks: never, but never read past one */
            int rc = level_read(l, (first + c) * CHUNK, CHUNK, tmp);
            if (rc)
                return rc;
            p = tmp;
        }
        out[c] = rs_crc32c(p, sizeof tmp);
    }
    return 0;
}
