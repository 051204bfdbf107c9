/*
 * tree_ops.c -- the tree's hot paths that walk one path of levels: the single-leaf
 * right-edge update, inclusion and consistency proofs gathered straight from level
 * storage into the binary proof encoding (DESIGN.md §2), and their verification.
 *
 * Level storage (rs_level): a table of region base pointers, every region 2^shift bytes
 * holding 32-byte nodes; regions never move once handed out.  The Python side
 * (rotorshm._native_paths) publishes a new table with rs_level_publish (release store of
 * the region count after the table pointer), keeps every table it ever published and
 * every region buffer alive for as long as the level can be reached, and sets `closed`
 * before it lets a region go.  Every node index is checked against the published region
 * count before it is turned into an address: nothing here reads outside the tables.
 *
 * A view (rs_view) is one snapshot as C sees it: level lengths, the frontier copy (the
 * last node of each level, which the writer rewrites) and the levels.  Nodes of index
 * < length - 1 are immutable and read from storage; the last one of each level from the
 * frontier copy, as the Python reference does (rotorshm/snapshot.py).  Nodes are immutable
 * only while the writer's epoch lasts: a restarted writer that recovered fewer leaves than
 * the view covers rewrites some of them, so a proof checks the view's epoch guard after
 * gathering and returns RS_E_STALE instead of bytes that may mix two trees.
 *
 * Binary proof encoding (rotorshm/proof.py): a header of 84 bytes
 *   version u8 (1), kind u8 ('I' or 'C'), arity u8, two u64 LE (leaf index and tree size,
 *   or old and new size), two 32-byte hashes (root and leaf, or old and new root),
 *   level count u8
 * then per level two count bytes and 32-byte hashes: (position, k) + k siblings for an
 * inclusion proof, (k_shared, k_new) + shared + new for a consistency proof.
 *
 * Verification never trusts its input: the parser checks every count against the bytes
 * left before reading, and the path walk re-derives every structural field from the sizes.
 */
#include "kernel.h"
#include "rotorshm_native.h"
#include "levels.h"

#define NODE 32
#define MAX_ARITY 255
#define HEAD 84
#define MAX_PROOF_LEVELS 64
#define VERSION 1
#define KIND_INCLUSION 0x49
#define KIND_CONSISTENCY 0x43

/* ---- one path, many levels: the serial walk ----------------------------------------------
 *
 * Proof verification (and the writer's single-leaf update) hashes one node per level, each
 * level's group message holding the node the level below produced:
 *   M = 0x01 || k || sib[0 .. pos) || node || sib[pos .. k-1)      (2 + 32k bytes)
 * so the compressions form one chain, bound by the latency of a compression.  But the
 * blocks of M that end at or before byte 2 + 32*pos, where the node starts, hold only the
 * prefix and older siblings: they do not depend on the chain, and neither does the
 * chaining value after them.  A `pstep` tracks that prefix per level; its blocks are
 * compressed as the second half of the chain's compressions (rs_b3_compress2: the core
 * runs a second, independent compression in the time one serial compression leaves idle),
 * and the chain itself starts each level at the first block that holds the node.
 * The prefix blocks read only siblings before `pos`, which are inside the level's sibling
 * list: nothing outside what the caller (or the proof parser) vouched for is read. */

typedef struct {
    const uint8_t *sib; /* the k - 1 siblings, contiguous */
    unsigned k;         /* members of the group, 1..255 (1: the node is lifted) */
    unsigned pos;       /* the path node's position in it, < k */
    unsigned nb;        /* blocks of M when it is one chunk (k <= 31), else 0 */
    unsigned f;         /* leading blocks of M that end before the node (<= nb - 1) */
    unsigned done;      /* of those, compressed into cv so far */
    uint32_t cv[8];     /* the chaining value after `done` blocks */
} pstep;

static void pstep_init(pstep *s, const uint8_t *sib, unsigned k, unsigned pos)
{
    size_t len = 2 + (size_t)NODE * k;
    s->sib = sib;
    s->k = k;
    s->pos = pos;
    s->nb = k >= 2 && len <= RS_B3_CHUNK_LEN ? (unsigned)rs_b3_blocks(len) : 0;
    s->f = s->nb ? (unsigned)((2 + (size_t)NODE * pos) / RS_B3_BLOCK_LEN) : 0;
    s->done = 0;
    memcpy(s->cv, rs_b3_iv, sizeof s->cv);
}

/* M (see above) into msg, from the first member that reaches block `from` on, then zeros to
 * the end of the last block: msg holds 2 + 32k + 64 bytes.  Every copy has a constant size
 * (inlined moves, no library calls: a chain pays for whatever it waits on). */
static void msg_from(const pstep *s, const uint8_t *node, unsigned from, uint8_t *msg)
{
    unsigned k = s->k, pos = s->pos;
    msg[0] = 1;
    msg[1] = (uint8_t)k;
    /* member j is bytes [2 + 32j, 34 + 32j): the first to reach byte 64*from is 2*from - 1 */
    unsigned j = from ? 2 * from - 1 : 0;
    for (; j < pos; j++)
        memcpy(msg + 2 + (size_t)NODE * j, s->sib + (size_t)NODE * j, NODE);
    memcpy(msg + 2 + (size_t)NODE * pos, node, NODE);
    for (j = pos + 1; j < k; j++)
        memcpy(msg + 2 + (size_t)NODE * j, s->sib + (size_t)NODE * (j - 1), NODE);
    memset(msg + 2 + (size_t)NODE * k, 0, RS_B3_BLOCK_LEN);
}

/* Block b < f of M: the prefix and older siblings only (f >= 1 means pos >= 2). */
static const uint8_t *prefix_block(const pstep *s, unsigned b, uint8_t tmp[RS_B3_BLOCK_LEN])
{
    if (b > 0) /* bytes 64b .. 64b+63 are sibling bytes 64b-2 .. 64b+61: in place */
        return s->sib + (size_t)RS_B3_BLOCK_LEN * b - 2;
    tmp[0] = 1;
    tmp[1] = (uint8_t)s->k;
    memcpy(tmp + 2, s->sib, RS_B3_BLOCK_LEN - 2);
    return tmp;
}

/* One compression to run: cv := compress(cv, blk) with counter 0. */
typedef struct {
    uint32_t *cv;
    const uint8_t *blk;
    uint32_t len, flags;
} job;

/* One or two jobs: two go through the interleaved compression. */
static void run(rs_compress_fn c1, rs_compress2_fn c2, const job *x, const job *y)
{
    if (y)
        c2(x->cv, x->blk, x->len, x->flags, y->cv, y->blk, y->len, y->flags);
    else
        c1(x->cv, x->blk, x->len, 0, x->flags);
}

/* s's next prefix block as a job (tmp holds block 0 while the job waits to run). */
static void prefix_job(pstep *s, uint8_t tmp[RS_B3_BLOCK_LEN], job *j)
{
    j->cv = s->cv;
    j->blk = prefix_block(s, s->done, tmp);
    j->len = RS_B3_BLOCK_LEN;
    j->flags = rs_b3_block_flags(s->done, s->nb);
    s->done++;
}

/* One path being walked: its steps, and a cursor below which no step has prefix work
 * left (monotone: a step's prefix only advances). */
typedef struct {
    pstep *st;
    unsigned pc;
} path;

/* The next prefix block of any level from `from` on of any path, as a job; 0 if none. */
static int later_prefix(path *paths, unsigned np, unsigned n, unsigned from,
                        uint8_t tmp[RS_B3_BLOCK_LEN], job *j)
{
    for (unsigned q = 0; q < np; q++) {
        path *w = &paths[q];
        if (w->pc < from)
            w->pc = from;
        while (w->pc < n && w->st[w->pc].done >= w->st[w->pc].f)
            w->pc++;
        if (w->pc < n) {
            prefix_job(&w->st[w->pc], tmp, j);
            return 1;
        }
    }
    return 0;
}

/* Where one path's current level stands: its message from the node's block on, its
 * chaining value, the next block. */
typedef struct {
    uint8_t msg[RS_B3_CHUNK_LEN + RS_B3_BLOCK_LEN];
    uint32_t cv[8];
    unsigned b;
} tail;

/*
 * The walk: np (1 or 2) paths of n steps each, walked level by level side by side.  Path
 * q's node starts as nodes[q] (32 bytes, read first) and ends as its root (written last);
 * step i hashes its group with the node of step i-1 at position pos.  If trace is given,
 * trace[i] (i >= 1) receives path np-1's node as it enters step i.
 *
 * Every compression of a level waits for the one before it; the jobs that do not (the
 * prefix blocks, of this level or any later one, and the other path's blocks) ride along
 * as the second half of an interleaved pair.
 */
static void walk_paths(path *paths, unsigned np, unsigned n, uint8_t (*nodes)[NODE],
                       uint8_t (*trace)[NODE])
{
    rs_compress_fn c1 = rs_b3_compress_current();
    rs_compress2_fn c2 = rs_b3_compress2_current();
    uint8_t tmp[2][RS_B3_BLOCK_LEN];
    tail tl[2];
    for (unsigned i = 0; i < n; i++) {
        if (trace && i > 0)
            memcpy(trace[i], nodes[np - 1], NODE);
        int live[2] = {0, 0};
        for (unsigned q = 0; q < np; q++) {
            pstep *s = &paths[q].st[i];
            if (s->k == 1)
                continue; /* lifted */
            if (!s->nb) { /* several chunks (k >= 32): hashed whole */
                uint8_t msg[2 + NODE * MAX_ARITY + RS_B3_BLOCK_LEN];
                msg_from(s, nodes[q], 0, msg);
                rs_blake3(msg, 2 + (size_t)NODE * s->k, nodes[q]);
                continue;
            }
            live[q] = 1;
        }
        /* This level's prefixes (each path's blocks in order): two at a time, or one with
         * a later level's alongside. */
        for (;;) {
            job x[2];
            int nj = 0;
            for (unsigned q = 0; q < np && nj < 2; q++) {
                pstep *s = &paths[q].st[i];
                if (live[q] && s->done < s->f)
                    prefix_job(s, tmp[nj], &x[nj]), nj++;
            }
            if (nj == 0)
                break;
            if (nj == 1 && later_prefix(paths, np, n, i + 1, tmp[1], &x[1]))
                nj = 2;
            run(c1, c2, &x[0], nj == 2 ? &x[1] : 0);
        }
        /* Then each path from its node's block on. */
        for (unsigned q = 0; q < np; q++) {
            if (!live[q])
                continue;
            pstep *s = &paths[q].st[i];
            msg_from(s, nodes[q], s->f, tl[q].msg);
            memcpy(tl[q].cv, s->cv, sizeof tl[q].cv);
            tl[q].b = s->f;
        }
        for (;;) {
            job x[2];
            int nj = 0;
            for (unsigned q = 0; q < np; q++) {
                pstep *s = &paths[q].st[i];
                if (!live[q] || tl[q].b >= s->nb)
                    continue;
                size_t len = 2 + (size_t)NODE * s->k, off = (size_t)tl[q].b * RS_B3_BLOCK_LEN;
                x[nj].cv = tl[q].cv;
                x[nj].blk = tl[q].msg + off;
                x[nj].len = (uint32_t)(len - off < RS_B3_BLOCK_LEN ? len - off : RS_B3_BLOCK_LEN);
                x[nj].flags = rs_b3_block_flags(tl[q].b, s->nb);
                tl[q].b++;
                nj++;
            }
            if (nj == 0)
                break;
            if (nj == 1 && later_prefix(paths, np, n, i + 1, tmp[0], &x[1]))
                nj = 2;
            run(c1, c2, &x[0], nj == 2 ? &x[1] : 0);
        }
        for (unsigned q = 0; q < np; q++)
            if (live[q])
                for (int w = 0; w < 8; w++)
                    rs_store32_le(nodes[q] + 4 * w, tl[q].cv[w]);
    }
}

/* ---- level storage -------------------------------------------------------------------- */

void rs_level_publish(rs_level *lvl, uint8_t **regions, uint64_t nregions)
{
    __atomic_store_n(&lvl->regions, regions, __ATOMIC_RELAXED);
    __atomic_store_n(&lvl->nregions, nregions, __ATOMIC_RELEASE);
}

void rs_level_close(rs_level *lvl)
{
    __atomic_store_n(&lvl->closed, 1u, __ATOMIC_RELEASE);
}

/* ---- single-leaf append ----------------------------------------------------------------
 *
 * The new leaf's path: at every level the node is the last member of its group (position
 * pos = idx % arity, k = pos + 1 members; pos == 0 is lifted).  The group's older members
 * g .. idx-1 are final: a level's only node that is ever rewritten is its last one.  So
 * the leading blocks of the group's message that end before the node (f of them: 0x01,
 * k and older members only) are the same for every append into this group with this k,
 * and so is the chaining value after them; on level l that is arity^l appends in a row
 * (the node from below changes every time, its older siblings do not).
 *
 * The cache (rs_appender.cache[level]) keeps that chaining value, keyed by
 * (level struct, group start g, k, arity): the value is a function of exactly k and the
 * bytes of members g .. g + 2f - 2, which are final once written, in the storage the
 * level struct stands for.  Nothing else can make an entry stale but another tree in the
 * same storage (a recovery, a checkpoint restore, a reopen), which never happens between
 * two consecutive appends: the writer re-syncs the appender then (Appender.sync ->
 * rs_appender_reset), and as a second guard the cache empties itself whenever an append's
 * index is not the one after the previous append (a batch, the Python path or a restore
 * ran in between).  Misses and levels without an entry hash as the proof walk does: their
 * prefix blocks ride along the chain (walk_paths).
 */

void rs_appender_reset(rs_appender *a)
{
    for (unsigned i = 0; i < RS_VIEW_LEVELS; i++)
        a->cache[i].valid = 0;
    a->next = UINT64_MAX;
}

/* Sibling bytes one walk of the append holds: any single level fits (254 older members);
 * deeper paths of large groups are walked in several pieces. */
#define APPEND_SIBS (16 * 1024)

int rs_append_one(rs_appender *a, uint64_t index, const uint8_t *leaf)
{
    if (a == 0)
        return RS_E_ARG;
    unsigned nlevels = a->nlevels, arity = a->arity;
    uint8_t *frontier_out = a->frontier;
    uint64_t *lengths_out = a->lengths;
    if (arity < 2 || arity > MAX_ARITY || index == UINT64_MAX || nlevels > RS_VIEW_LEVELS)
        return RS_E_ARG;
    rs_level *const *levels = a->levels;
    uint64_t L[RS_VIEW_LEVELS];
    unsigned nl = lengths_for(index + 1, arity, L);
    if (nl > nlevels)
        return RS_E_RESERVE;
    /* Everything that can fail is checked before the first byte is written. */
    for (unsigned i = 0; i < nl; i++) {
        const rs_level *l = levels[i];
        if (!level_open(l) || !l->writable)
            return RS_E_CLOSED;
        if (l->ready < L[i])
            return RS_E_RESERVE;
        uint64_t nreg = __atomic_load_n(&l->nregions, __ATOMIC_ACQUIRE);
        if (((L[i] - 1) >> (l->shift - 5)) >= nreg)
            return RS_E_RESERVE;
    }
    if (index != a->next)
        rs_appender_reset(a);
    a->next = UINT64_MAX; /* until this append has succeeded */
    int rc = level_write(levels[0], index, 1, leaf);
    if (rc)
        return rc;
    memcpy(frontier_out, leaf, NODE);
    pstep st[RS_VIEW_LEVELS];
    uint64_t grp[RS_VIEW_LEVELS];  /* per level: the start of the node's group */
    uint64_t nidx[RS_VIEW_LEVELS]; /* per level: the path node's index */
    uint8_t sibs[APPEND_SIBS];
    uint8_t node[1][NODE];
    memcpy(node[0], leaf, NODE);
    uint64_t idx = index;
    unsigned first = 0; /* the piece being gathered: levels first .. lvl-1 */
    size_t used = 0;
    for (unsigned lvl = 0; lvl + 1 <= nl; lvl++) {
        unsigned pos = lvl + 1 < nl ? (unsigned)(idx % arity) : 0;
        size_t need = (size_t)NODE * pos;
        if (lvl + 1 == nl || used + need > APPEND_SIBS) {
            /* walk levels first .. lvl-1; trace[i] = frontier of level first + i */
            path w = {&st[first], 0};
            walk_paths(&w, 1, lvl - first, node,
                       (uint8_t(*)[NODE])(void *)(frontier_out + (size_t)first * NODE));
            memcpy(frontier_out + (size_t)lvl * NODE, node[0], NODE);
            for (unsigned i = first; i < lvl; i++) {
                if ((rc = level_write(levels[i + 1], nidx[i + 1], 1,
                                      frontier_out + (size_t)(i + 1) * NODE)) != 0)
                    return rc;
                rs_prefix_cache *c = &a->cache[i];
                if (st[i].f && !a->no_cache) { /* done == f: cv is the prefix's */
                    c->level = levels[i];
                    c->group = grp[i];
                    c->k = st[i].k;
                    c->arity = arity;
                    memcpy(c->cv, st[i].cv, sizeof c->cv);
                    c->valid = 1;
                }
            }
            if (lvl + 1 == nl)
                break;
            first = lvl;
            used = 0;
        }
        uint64_t g = idx - pos;
        grp[lvl] = g;
        nidx[lvl + 1] = idx / arity;
        uint8_t *area = sibs + used;
        pstep_init(&st[lvl], area, pos + 1, pos);
        if (pos) {
            const rs_prefix_cache *c = &a->cache[lvl];
            unsigned from = 0; /* the first older member to read */
            if (st[lvl].f && !a->no_cache && c->valid && c->level == levels[lvl] &&
                c->group == g && c->k == pos + 1 && c->arity == arity) {
                st[lvl].done = st[lvl].f;
                memcpy(st[lvl].cv, c->cv, sizeof c->cv);
                from = 2 * st[lvl].f - 1; /* msg_from reads members from here on */
            }
            if ((rc = level_read(levels[lvl], g + from, pos - from,
                                 area + (size_t)NODE * from)) != 0)
                return rc;
            used += need;
        }
        idx /= arity;
    }
    memcpy(lengths_out, L, nl * sizeof(uint64_t));
    a->next = index + 1;
    return (int)nl;
}

/* ---- reading a snapshot ---------------------------------------------------------------- */

static int view_check(const rs_view *v)
{
    if (v->arity < 2 || v->arity > MAX_ARITY || v->nlevels < 1 || v->nlevels > RS_VIEW_LEVELS)
        return RS_E_ARG;
    for (unsigned i = 0; i < v->nlevels; i++)
        if (!level_open(v->levels[i]))
            return RS_E_CLOSED;
    return 0;
}

/* Nodes lo..hi-1 of level lvl of the tree of a past (or the current) size whose level has
 * `len` nodes and right-edge node `edge`: the last node comes from `edge`, the others
 * (immutable) from storage.  hi <= len <= the view's length of that level. */
static int gather(const rs_view *v, unsigned lvl, uint64_t lo, uint64_t hi, uint64_t len,
                  const uint8_t *edge, uint8_t *dst)
{
    if (lo >= hi)
        return 0;
    uint64_t stored_hi = hi == len ? hi - 1 : hi;
    if (stored_hi > lo) {
        int rc = level_read(v->levels[lvl], lo, stored_hi - lo, dst);
        if (rc)
            return rc;
        dst += (stored_hi - lo) * NODE;
    }
    if (hi == len)
        memcpy(dst, edge, NODE);
    return 0;
}

/* Right-edge node of every level of the tree of `size` leaves (lengths L, nl levels). */
static int edges_at(const rs_view *v, uint64_t size, const uint64_t *L, unsigned nl,
                    uint8_t (*edges)[NODE])
{
    unsigned n = v->arity;
    if (size == v->size) {
        memcpy(edges, v->frontier, (size_t)nl * NODE);
        return 0;
    }
    /* size < v->size: node size-1 of level 0 is not the view's last, so it is stored.  The
     * past right edge is the inclusion path of leaf size-1 in the tree of `size`: on every
     * level the edge is its group's last member, its older members (below the view's last
     * node of that level) are stored, and the path is walked as a proof is verified
     * (walk_paths: the blocks of older members alone ride along the chain), in pieces
     * when large groups' members outgrow the sibling buffer. */
    int rc = level_read(v->levels[0], size - 1, 1, edges[0]);
    if (rc)
        return rc;
    pstep st[RS_VIEW_LEVELS];
    uint8_t sibs[APPEND_SIBS];
    uint8_t node[1][NODE];
    memcpy(node[0], edges[0], NODE);
    unsigned first = 0; /* the piece being gathered: levels first .. lvl-1 */
    size_t used = 0;
    for (unsigned lvl = 0;; lvl++) {
        unsigned pos = lvl + 1 < nl ? (unsigned)((L[lvl] - 1) % n) : 0;
        size_t need = (size_t)NODE * pos;
        if (lvl + 1 == nl || used + need > APPEND_SIBS) {
            path w = {&st[first], 0};
            walk_paths(&w, 1, lvl - first, node, edges + first); /* edges[first + i], i >= 1 */
            memcpy(edges[lvl], node[0], NODE);
            if (lvl + 1 == nl)
                return 0;
            first = lvl;
            used = 0;
        }
        uint8_t *area = sibs + used;
        pstep_init(&st[lvl], area, pos + 1, pos);
        if (pos) {
            if ((rc = level_read(v->levels[lvl], L[lvl] - 1 - pos, pos, area)) != 0)
                return rc;
            used += need;
        }
    }
}

static int check_past(const rs_view *v, uint64_t size, const uint64_t *L, unsigned nl)
{
    if (size < 1 || size > v->size || nl > v->nlevels)
        return RS_E_ARG;
    for (unsigned i = 0; i < nl; i++)
        if (L[i] > v->lengths[i])
            return RS_E_ARG;
    return 0;
}

static void put_head(uint8_t *out, uint8_t kind, unsigned arity, uint64_t a, uint64_t b,
                     const uint8_t *h1, const uint8_t *h2, unsigned nlev)
{
    out[0] = VERSION;
    out[1] = kind;
    out[2] = (uint8_t)arity;
    rs_store64_le(out + 3, a);
    rs_store64_le(out + 11, b);
    memcpy(out + 19, h1, NODE);
    memcpy(out + 51, h2, NODE);
    out[83] = (uint8_t)nlev;
}

size_t rs_proof_capacity(unsigned arity, unsigned nlevels)
{
    return HEAD + (size_t)nlevels * (2 + (size_t)NODE * arity);
}

/* Ask for every level's sibling group before copying any.  Once a tree outgrows the CPU
 * caches each group sits in a different page, a DRAM miss and often a TLB miss of its
 * own; the copies below would wait for them one level after another, while prefetches
 * of all of them overlap (the addresses depend only on the index).  A prefetch never
 * faults: a group not in the table, or not resident, is left to level_read. */
static void prefetch_path(const rs_view *v, uint64_t idx, const uint64_t *L, unsigned nl)
{
    unsigned n = v->arity;
    for (unsigned lvl = 0; lvl + 1 < nl; lvl++) {
        const rs_level *l = v->levels[lvl];
        uint64_t g = idx - idx % n;
        uint64_t end = L[lvl] - g < n ? L[lvl] : g + n;
        uint64_t nreg = __atomic_load_n(&l->nregions, __ATOMIC_ACQUIRE);
        uint8_t **tab = __atomic_load_n(&l->regions, __ATOMIC_RELAXED);
        unsigned nshift = l->shift - 5;
        uint64_t mask = ((uint64_t)1 << nshift) - 1;
        uint64_t r = g >> nshift;
        if (r < nreg && tab != 0 && tab[r] != 0 && end > g) {
            uint64_t nodes = end - g;
            if (nodes > mask + 1 - (g & mask))
                nodes = mask + 1 - (g & mask); /* the rest is in the next region */
            const uint8_t *a = tab[r] + (g & mask) * NODE;
            size_t bytes = (size_t)nodes * NODE;
            for (size_t o = 0; o < bytes; o += 64)
                __builtin_prefetch(a + o, 0, 3);
            __builtin_prefetch(a + bytes - 1, 0, 3);
        }
        idx /= n;
    }
}

int64_t rs_inclusion_proof(const rs_view *v, uint64_t index, uint64_t size, uint8_t *out,
                           size_t cap)
{
    int rc = view_check(v);
    if (rc)
        return rc;
    unsigned n = v->arity;
    if (index >= size)
        return RS_E_ARG;
    uint64_t L[RS_VIEW_LEVELS];
    unsigned nl = lengths_for(size, n, L);
    if ((rc = check_past(v, size, L, nl)) != 0)
        return rc;
    if (cap < rs_proof_capacity(n, nl - 1))
        return RS_E_ARG;
    prefetch_path(v, index, L, nl);
    uint8_t edges[RS_VIEW_LEVELS][NODE];
    if ((rc = edges_at(v, size, L, nl, edges)) != 0)
        return rc;
    uint8_t leaf[NODE];
    if ((rc = gather(v, 0, index, index + 1, L[0], edges[0], leaf)) != 0)
        return rc;
    put_head(out, KIND_INCLUSION, n, index, size, edges[nl - 1], leaf, nl - 1);
    uint8_t *p = out + HEAD;
    uint64_t idx = index;
    for (unsigned lvl = 0; lvl + 1 < nl; lvl++) {
        unsigned pos = (unsigned)(idx % n);
        uint64_t g = idx - pos;
        uint64_t end = L[lvl] - g < n ? L[lvl] : g + n;
        p[0] = (uint8_t)pos;
        p[1] = (uint8_t)(end - g - 1);
        p += 2;
        if ((rc = gather(v, lvl, g, idx, L[lvl], edges[lvl], p)) != 0)
            return rc;
        p += (idx - g) * NODE;
        if ((rc = gather(v, lvl, idx + 1, end, L[lvl], edges[lvl], p)) != 0)
            return rc;
        p += (end - idx - 1) * NODE;
        idx /= n;
    }
    if (v->guard && rs_guard_stale(v->guard, v->size))
        return RS_E_STALE;
    return (int64_t)(p - out);
}

int64_t rs_consistency_proof(const rs_view *v, uint64_t old_size, uint64_t new_size,
                             uint8_t *out, size_t cap)
{
    int rc = view_check(v);
    if (rc)
        return rc;
    unsigned n = v->arity;
    if (old_size < 1 || old_size > new_size)
        return RS_E_ARG;
    uint64_t L[RS_VIEW_LEVELS], LO[RS_VIEW_LEVELS];
    unsigned nl = lengths_for(new_size, n, L);
    unsigned nlo = lengths_for(old_size, n, LO);
    if ((rc = check_past(v, new_size, L, nl)) != 0)
        return rc;
    if (cap < rs_proof_capacity(n, nl - 1))
        return RS_E_ARG;
    uint8_t new_edges[RS_VIEW_LEVELS][NODE];
    uint8_t old_edges[RS_VIEW_LEVELS][NODE];
    if ((rc = edges_at(v, new_size, L, nl, new_edges)) != 0)
        return rc;
    if (old_size == new_size) {
        put_head(out, KIND_CONSISTENCY, n, old_size, new_size, new_edges[nl - 1],
                 new_edges[nl - 1], 0);
        if (v->guard && rs_guard_stale(v->guard, v->size))
            return RS_E_STALE;
        return HEAD;
    }
    if ((rc = edges_at(v, old_size, LO, nlo, old_edges)) != 0)
        return rc;
    put_head(out, KIND_CONSISTENCY, n, old_size, new_size, old_edges[nlo - 1],
             new_edges[nl - 1], nl - 1);
    uint8_t *p = out + HEAD;
    uint64_t bnd = old_size - 1;
    for (unsigned lvl = 0; lvl + 1 < nl; lvl++) {
        uint64_t g = bnd - bnd % n;
        uint64_t stop = lvl == 0 ? bnd + 1 : bnd;
        uint64_t end = L[lvl] - g < n ? L[lvl] : g + n;
        p[0] = (uint8_t)(stop - g);
        p[1] = (uint8_t)(end - bnd - 1);
        p += 2;
        if ((rc = gather(v, lvl, g, stop, L[lvl], new_edges[lvl], p)) != 0)
            return rc;
        p += (stop - g) * NODE;
        if ((rc = gather(v, lvl, bnd + 1, end, L[lvl], new_edges[lvl], p)) != 0)
            return rc;
        p += (end - bnd - 1) * NODE;
        bnd /= n;
    }
    if (v->guard && rs_guard_stale(v->guard, v->size))
        return RS_E_STALE;
    return (int64_t)(p - out);
}

/* ---- parsing and verification ------------------------------------------------------------ */

/* Check that body[0..len) is exactly `nlev` levels of the given kind for `arity`: every
 * count within the format's limits and every hash list inside the bytes.  Returns 0 or
 * RS_E_MALFORMED with *why set (for the error message). */
static int parse_levels(const uint8_t *body, size_t len, unsigned nlev, unsigned arity,
                        int consistency, int *why)
{
    size_t off = 0;
    for (unsigned i = 0; i < nlev; i++) {
        if (len - off < 2) {
            *why = RS_WHY_LEVEL_TRUNCATED;
            return RS_E_MALFORMED;
        }
        unsigned a = body[off], b = body[off + 1];
        off += 2;
        if (consistency ? (a > arity || b >= arity) : (a >= arity || b >= arity)) {
            *why = RS_WHY_COUNTS;
            return RS_E_MALFORMED;
        }
        size_t hashes = consistency ? (size_t)a + b : b;
        if ((len - off) / NODE < hashes) {
            *why = RS_WHY_HASHES_TRUNCATED;
            return RS_E_MALFORMED;
        }
        off += hashes * NODE;
    }
    if (off != len) {
        *why = RS_WHY_TRAILING;
        return RS_E_MALFORMED;
    }
    return 0;
}

int rs_parse_proof(const uint8_t *blob, size_t len, unsigned kind)
{
    int why = 0;
    if (len < HEAD)
        return RS_WHY_SHORT;
    if (blob[0] != VERSION)
        return RS_WHY_VERSION;
    if (blob[1] != kind || (kind != KIND_INCLUSION && kind != KIND_CONSISTENCY))
        return RS_WHY_KIND;
    if (blob[2] < 2)
        return RS_WHY_ARITY;
    if (blob[83] > MAX_PROOF_LEVELS)
        return RS_WHY_LEVELS;
    if (parse_levels(blob + HEAD, len - HEAD, blob[83], blob[2], kind == KIND_CONSISTENCY, &why))
        return why;
    return 0;
}

/* Root recomputed from the levels of an inclusion proof (body: nlev well-formed levels of
 * `len` bytes): 1 with out set, or 0 if a structural field disagrees with the sizes. */
static int inclusion_root(unsigned n, uint64_t idx, uint64_t size, const uint8_t *leaf,
                          const uint8_t *body, size_t len, unsigned nlev, uint8_t *out)
{
    if (n < 2 || n > MAX_ARITY || idx >= size || nlev > MAX_PROOF_LEVELS)
        return 0;
    /* Every structural field is checked, for all levels, before anything is hashed. */
    pstep st[MAX_PROOF_LEVELS];
    uint64_t length = size;
    size_t off = 0;
    for (unsigned i = 0; i < nlev; i++) {
        if (len - off < 2)
            return 0;
        unsigned pos = body[off], k = body[off + 1];
        off += 2;
        if ((len - off) / NODE < k)
            return 0;
        if (pos != idx % n || length <= 1)
            return 0;
        uint64_t g = idx - pos;
        uint64_t members = length - g < n ? length - g : n;
        if (k != members - 1 || pos > k)
            return 0;
        pstep_init(&st[i], body + off, k + 1, pos);
        off += (size_t)k * NODE;
        idx /= n;
        length = ceil_div(length, n);
    }
    if (length != 1)
        return 0;
    uint8_t node[1][NODE];
    memcpy(node[0], leaf, NODE);
    path w = {st, 0};
    walk_paths(&w, 1, nlev, node, 0);
    memcpy(out, node[0], NODE);
    return 1;
}

int rs_inclusion_root(unsigned arity, uint64_t index, uint64_t size, const uint8_t *leaf,
                      const uint8_t *enc, size_t len, unsigned nlev, uint8_t *out)
{
    int why = 0;
    if (len < HEAD)
        return RS_E_MALFORMED;
    const uint8_t *body = enc + HEAD;
    len -= HEAD;
    if (arity < 2 || arity > MAX_ARITY || nlev > MAX_PROOF_LEVELS)
        return 0;
    if (parse_levels(body, len, nlev, arity, 0, &why))
        return RS_E_MALFORMED;
    return inclusion_root(arity, index, size, leaf, body, len, nlev, out);
}

int rs_verify_inclusion(unsigned arity, uint64_t index, uint64_t size, const uint8_t *root,
                        const uint8_t *leaf, const uint8_t *enc, size_t len, unsigned nlev)
{
    uint8_t got[NODE];
    int rc = rs_inclusion_root(arity, index, size, leaf, enc, len, nlev, got);
    if (rc != 1)
        return rc;
    return memcmp(got, root, NODE) == 0;
}

int rs_verify_proof_bytes(const uint8_t *blob, size_t len, const uint8_t *root, uint64_t size)
{
    int why = rs_parse_proof(blob, len, KIND_INCLUSION);
    if (why)
        return -why;
    if (rs_load64_le(blob + 11) != size || memcmp(blob + 19, root, NODE) != 0)
        return 0;
    return rs_verify_inclusion(blob[2], rs_load64_le(blob + 3), size, blob + 19, blob + 51, blob,
                               len, blob[83]);
}

/* Walk of a consistency proof from old to new (old < new): both roots and the new tree's
 * boundary-path node of every level (edges[0..nlev)), or 0 if the structure disagrees.
 * Every level's counts are checked before anything is hashed; then both root paths are
 * walked side by side (walk_paths):
 *   level 0: old group = shared[0 .. ns), new group = shared ++ added, both contiguous in
 *            the proof: a "path" whose node is the group's last member;
 *   level >= 1: old group = shared ++ old edge, new group = shared ++ new edge ++ added,
 *            the edge at position ns (shared and added are contiguous in the proof). */
static int consistency_walk(unsigned n, uint64_t old, uint64_t new_, const uint8_t *body,
                            size_t len, unsigned nlev, uint8_t *old_root, uint8_t *new_root,
                            uint8_t (*edges)[NODE])
{
    uint64_t L[RS_VIEW_LEVELS];
    unsigned nl = lengths_for(new_, n, L);
    if (nlev != nl - 1 || nlev > MAX_PROOF_LEVELS || nlev == 0)
        return 0;
    pstep st[2][MAX_PROOF_LEVELS];
    uint8_t nodes[2][NODE];
    uint64_t bnd = old - 1;
    size_t off = 0;
    for (unsigned lvl = 0; lvl < nlev; lvl++) {
        if (len - off < 2)
            return 0;
        unsigned ns = body[off], nn = body[off + 1];
        off += 2;
        if ((len - off) / NODE < (size_t)ns + nn)
            return 0;
        const uint8_t *shared = body + off;
        uint64_t pos = bnd % n;
        uint64_t g = bnd - pos;
        uint64_t want_shared = lvl == 0 ? pos + 1 : pos;
        uint64_t members = L[lvl] - g < n ? L[lvl] - g : n;
        if (ns != want_shared || nn != members - pos - 1)
            return 0;
        if (lvl == 0) { /* ns >= 1 here (want_shared = pos + 1) */
            pstep_init(&st[0][0], shared, ns, ns - 1);
            pstep_init(&st[1][0], shared, ns + nn, ns + nn - 1);
            memcpy(nodes[0], shared + (size_t)(ns - 1) * NODE, NODE);
            memcpy(nodes[1], shared + (size_t)(ns + nn - 1) * NODE, NODE);
            if (edges)
                memcpy(edges[0], nodes[0], NODE);
        } else {
            pstep_init(&st[0][lvl], shared, ns + 1, ns);
            pstep_init(&st[1][lvl], shared, ns + nn + 1, ns);
        }
        off += ((size_t)ns + nn) * NODE;
        bnd /= n;
    }
    path w[2] = {{st[0], 0}, {st[1], 0}};
    walk_paths(w, 2, nlev, nodes, edges);
    memcpy(old_root, nodes[0], NODE);
    memcpy(new_root, nodes[1], NODE);
    return 1;
}

int rs_verify_consistency(unsigned arity, uint64_t old_size, uint64_t new_size,
                          const uint8_t *old_root, const uint8_t *new_root, const uint8_t *enc,
                          size_t len, unsigned nlev)
{
    int why = 0;
    if (len < HEAD)
        return RS_E_MALFORMED;
    const uint8_t *body = enc + HEAD;
    len -= HEAD;
    if (arity < 2 || arity > MAX_ARITY || nlev > MAX_PROOF_LEVELS)
        return 0;
    if (parse_levels(body, len, nlev, arity, 1, &why))
        return RS_E_MALFORMED;
    if (old_size < 1 || old_size > new_size)
        return 0;
    if (old_size == new_size)
        return nlev == 0 && memcmp(old_root, new_root, NODE) == 0;
    uint8_t o[NODE], w[NODE];
    if (!consistency_walk(arity, old_size, new_size, body, len, nlev, o, w, 0))
        return 0;
    return memcmp(o, old_root, NODE) == 0 && memcmp(w, new_root, NODE) == 0;
}

int rs_consistency_roots(unsigned arity, uint64_t old_size, uint64_t new_size,
                         const uint8_t *enc, size_t len, unsigned nlev, uint8_t *old_root,
                         uint8_t *new_root)
{
    int why = 0;
    if (len < HEAD)
        return RS_E_MALFORMED;
    const uint8_t *body = enc + HEAD;
    len -= HEAD;
    if (arity < 2 || arity > MAX_ARITY || nlev > MAX_PROOF_LEVELS)
        return 0;
    if (parse_levels(body, len, nlev, arity, 1, &why))
        return RS_E_MALFORMED;
    if (old_size < 1 || old_size >= new_size)
        return 0;
    return consistency_walk(arity, old_size, new_size, body, len, nlev, old_root, new_root, 0);
}

/* Offsets of the nlev levels of a well-formed body. */
static void level_offsets(const uint8_t *body, unsigned nlev, int consistency, size_t *offs)
{
    size_t off = 0;
    for (unsigned i = 0; i < nlev; i++) {
        offs[i] = off;
        size_t hashes = consistency ? (size_t)body[off] + body[off + 1] : body[off + 1];
        off += 2 + hashes * NODE;
    }
}

int64_t rs_update_inclusion(unsigned arity, uint64_t old_size, uint64_t new_size,
                            const uint8_t *cenc, size_t clen, unsigned cnlev, uint64_t index,
                            const uint8_t *ienc, size_t ilen, unsigned inlev, uint8_t *out,
                            size_t cap)
{
    int why = 0;
    if (clen < HEAD || ilen < HEAD)
        return RS_E_MALFORMED;
    const uint8_t *cbody = cenc + HEAD, *ibody = ienc + HEAD;
    clen -= HEAD;
    ilen -= HEAD;
    if (arity < 2 || arity > MAX_ARITY || cnlev > MAX_PROOF_LEVELS ||
        inlev > MAX_PROOF_LEVELS || old_size < 1 || old_size >= new_size || index >= old_size)
        return RS_E_ARG;
    if (parse_levels(cbody, clen, cnlev, arity, 1, &why) ||
        parse_levels(ibody, ilen, inlev, arity, 0, &why))
        return RS_E_MALFORMED;
    if (cap < rs_proof_capacity(arity, cnlev) - HEAD)
        return RS_E_ARG;
    uint8_t edges[RS_VIEW_LEVELS][NODE];
    uint8_t o[NODE], w[NODE];
    if (!consistency_walk(arity, old_size, new_size, cbody, clen, cnlev, o, w, edges))
        return RS_E_ARG;
    size_t coff[MAX_PROOF_LEVELS], ioff[MAX_PROOF_LEVELS];
    level_offsets(cbody, cnlev, 1, coff);
    level_offsets(ibody, inlev, 0, ioff);
    uint8_t *p = out;
    uint64_t idx = index, bnd = old_size - 1;
    for (unsigned lvl = 0; lvl < cnlev; lvl++) {
        unsigned pos = (unsigned)(idx % arity);
        const uint8_t *c = cbody + coff[lvl];
        unsigned ns = c[0], nn = c[1];
        const uint8_t *shared = c + 2, *added = c + 2 + (size_t)ns * NODE;
        uint8_t *head = p;
        p += 2;
        size_t k;
        if (idx - pos != bnd - bnd % arity) { /* another group: old siblings unchanged */
            if (lvl >= inlev)
                return RS_E_ARG;
            const uint8_t *il = ibody + ioff[lvl];
            k = il[1];
            memcpy(p, il + 2, k * NODE);
        } else if (idx == bnd) { /* the boundary path itself */
            size_t keep = lvl == 0 ? (size_t)ns - 1 : ns;
            memcpy(p, shared, keep * NODE);
            memcpy(p + keep * NODE, added, (size_t)nn * NODE);
            k = keep + nn;
        } else { /* the boundary's group: its old last member is replaced by the new one */
            if (lvl >= inlev)
                return RS_E_ARG;
            const uint8_t *il = ibody + ioff[lvl];
            size_t ik = il[1];
            if (ik < 1)
                return RS_E_ARG;
            memcpy(p, il + 2, (ik - 1) * NODE);
            memcpy(p + (ik - 1) * NODE, edges[lvl], NODE);
            memcpy(p + ik * NODE, added, (size_t)nn * NODE);
            k = ik + nn;
        }
        if (k >= arity)
            return RS_E_ARG;
        head[0] = (uint8_t)pos;
        head[1] = (uint8_t)k;
        p += k * NODE;
        idx /= arity;
        bnd /= arity;
    }
    return (int64_t)(p - out);
}
