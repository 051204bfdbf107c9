/*
 * levels.h -- a tree's level lengths, and reading and writing a level's nodes through its
 * region table (rs_level).
 *
 * Internal to the C helper (tree_ops.c, tree_append.c).  A level's regions are 2^shift
 * bytes of 32-byte nodes each; the Python side publishes a grown table with
 * rs_level_publish (the table pointer, then a release store of the region count) and sets
 * `closed` before any region goes.  Every node index is checked against the published
 * region count before it becomes an address: nothing here reads or writes outside a table.
 */
#ifndef ROTORSHM_LEVELS_H
#define ROTORSHM_LEVELS_H

#include <stdint.h>
#include <string.h>

#include "rotorshm_native.h"

#define RS_NODE 32

static inline uint64_t ceil_div(uint64_t a, uint64_t n)
{
    return a / n + (a % n != 0);
}

/* Lengths of levels 0..depth of a tree of `size` >= 1 leaves; returns the level count. */
static inline unsigned lengths_for(uint64_t size, unsigned n, uint64_t *out)
{
    unsigned nl = 0;
    out[nl++] = size;
    while (size > 1 && nl < RS_VIEW_LEVELS) {
        size = ceil_div(size, n);
        out[nl++] = size;
    }
    return nl;
}

static inline int level_open(const rs_level *l)
{
    return l != 0 && __atomic_load_n(&l->closed, __ATOMIC_ACQUIRE) == 0 && l->shift >= 5 &&
           l->shift < 63;
}

/* Address of node `index`, and in *run the nodes from it to its region's end; NULL if its
 * region is not (yet) in the table. */
static inline uint8_t *level_at(const rs_level *l, uint64_t index, uint64_t *run)
{
    uint64_t nreg = __atomic_load_n(&l->nregions, __ATOMIC_ACQUIRE);
    uint8_t **tab = __atomic_load_n(&l->regions, __ATOMIC_RELAXED);
    unsigned nshift = l->shift - 5; /* log2 of nodes per region */
    uint64_t mask = ((uint64_t)1 << nshift) - 1;
    uint64_t r = index >> nshift;
    if (r >= nreg || tab == 0 || tab[r] == 0)
        return 0;
    *run = mask + 1 - (index & mask);
    return tab[r] + (index & mask) * RS_NODE;
}

/* Copy nodes start .. start+count-1 of level l to dst; RS_E_UNMAPPED if any lies in a
 * region not (yet) in the table. */
static inline int level_read(const rs_level *l, uint64_t start, uint64_t count, uint8_t *dst)
{
    while (count) {
        uint64_t n;
        const uint8_t *src = level_at(l, start, &n);
        if (!src)
            return RS_E_UNMAPPED;
        if (n > count)
            n = count;
        memcpy(dst, src, (size_t)(n * RS_NODE));
        dst += n * RS_NODE;
        start += n;
        count -= n;
    }
    return 0;
}

/* Copy `count` nodes from src to nodes start .. start+count-1 of level l. */
static inline int level_write(const rs_level *l, uint64_t start, uint64_t count,
                              const uint8_t *src)
{
    while (count) {
        uint64_t n;
        uint8_t *dst = level_at(l, start, &n);
        if (!dst)
            return RS_E_UNMAPPED;
        if (n > count)
            n = count;
        memcpy(dst, src, (size_t)(n * RS_NODE));
        src += n * RS_NODE;
        start += n;
        count -= n;
    }
    return 0;
}

#endif /* ROTORSHM_LEVELS_H */
