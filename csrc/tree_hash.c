/*
 * tree_hash.c -- the tree's node hashes (DESIGN.md §1) on top of the BLAKE3 kernels.
 *
 * A group of k >= 2 children of 32 bytes hashes to blake3(0x01 || k || child_0 .. child_k-1);
 * a group of one child is lifted unchanged.  For k <= 31 the message fits one chunk and
 * goes through the selected kernel (full groups of a level many lanes at a time); larger
 * groups go through the portable multi-chunk hash.
 */
#include "kernel.h"
#include "rotorshm_native.h"

#define NODE 32
#define MAX_ARITY 255
#define NODE_TAG 1

/* Hash one group of k >= 2 contiguous children. */
static void group(const uint8_t *children, unsigned k, uint8_t *out)
{
    uint8_t prefix[2] = {NODE_TAG, (uint8_t)k};
    size_t body = (size_t)NODE * k;
    if (2 + body <= RS_B3_CHUNK_LEN) {
        rs_hash_one(prefix, 2, children, body, out);
        return;
    }
    uint8_t msg[2 + NODE * MAX_ARITY];
    memcpy(msg, prefix, 2);
    memcpy(msg + 2, children, body);
    rs_blake3(msg, 2 + body, out);
}

int rs_hash_group(const uint8_t *children, unsigned k, uint8_t *out)
{
    if (k < 1 || k > MAX_ARITY)
        return -1;
    if (k == 1)
        memmove(out, children, NODE);
    else
        group(children, k, out);
    return 0;
}

int rs_hash_group_with(const uint8_t *siblings, unsigned k, unsigned pos, const uint8_t *child,
                       uint8_t *out)
{
    if (k < 1 || k > MAX_ARITY || pos >= k)
        return -1;
    if (k == 1) {
        memmove(out, child, NODE);
        return 0;
    }
    uint8_t msg[2 + NODE * MAX_ARITY];
    size_t before = (size_t)NODE * pos;
    size_t after = (size_t)NODE * (k - 1 - pos);
    msg[0] = NODE_TAG;
    msg[1] = (uint8_t)k;
    memcpy(msg + 2, siblings, before);
    memcpy(msg + 2 + before, child, NODE);
    memcpy(msg + 2 + before + NODE, siblings + before, after);
    size_t len = 2 + (size_t)NODE * k;
    if (len <= RS_B3_CHUNK_LEN)
        rs_hash_one(0, 0, msg, len, out);
    else
        rs_blake3(msg, len, out);
    return 0;
}

int rs_hash_groups_range(const uint8_t *nodes, size_t count, unsigned arity, size_t first,
                         size_t last, uint8_t *out)
{
    if (arity < 2 || arity > MAX_ARITY)
        return -1;
    size_t parents = count / arity + (count % arity != 0);
    if (first > last || last > parents)
        return -1;
    size_t step = (size_t)NODE * arity;
    size_t full = count / arity;
    size_t full_last = last < full ? last : full;
    if (first < full_last) {
        const uint8_t *src = nodes + first * step;
        uint8_t *dst = out + first * NODE;
        size_t n = full_last - first;
        if (2 + step <= RS_B3_CHUNK_LEN) {
            uint8_t prefix[2] = {NODE_TAG, (uint8_t)arity};
            rs_hash_many(prefix, 2, src, step, step, n, dst);
        } else {
            for (size_t g = 0; g < n; g++)
                group(src + g * step, arity, dst + g * NODE);
        }
    }
    if (last > full && first <= full) {
        /* the last, partial group of rest = 1 .. arity-1 children */
        unsigned rest = (unsigned)(count - full * arity);
        rs_hash_group(nodes + full * step, rest, out + full * NODE);
    }
    return 0;
}

int rs_hash_groups(const uint8_t *nodes, size_t count, unsigned arity, uint8_t *out)
{
    if (arity < 2 || arity > MAX_ARITY)
        return -1;
    return rs_hash_groups_range(nodes, count, arity, 0, count / arity + (count % arity != 0), out);
}
