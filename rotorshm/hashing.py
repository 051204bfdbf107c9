"""Hash rules of the tree (DESIGN.md §1) and the integer geometry of its levels."""

from __future__ import annotations

from blake3 import blake3

from .errors import InvalidConfig, InvalidLeaf

NODE_SIZE = 32
LEAF_TAG = b"\x00"
NODE_TAG = 1
MIN_ARITY = 2
MAX_ARITY = 255

# Prefix of a group of k children, for every k, built once: 0x01 || k.
GROUP_PREFIX = [bytes((NODE_TAG, k)) for k in range(256)]


def hash_leaf(data: bytes | bytearray | memoryview) -> bytes:
    """RFC 6962-style leaf hash blake3(0x00 || data), for callers who want domain separation.

    The engine never applies it itself: leaves are inserted exactly as given.
    """
    return blake3(LEAF_TAG + bytes(data)).digest()


def hash_children(children: list[bytes] | tuple[bytes, ...]) -> bytes:
    """Parent of a group of 1..255 children; a single child is lifted unchanged."""
    k = len(children)
    if not 1 <= k <= MAX_ARITY:
        raise InvalidLeaf(f"a group has 1..{MAX_ARITY} children, got {k}")
    for c in children:
        if len(c) != NODE_SIZE:
            raise InvalidLeaf(f"a node is {NODE_SIZE} bytes, got {len(c)}")
    if k == 1:
        return bytes(children[0])
    return blake3(GROUP_PREFIX[k] + b"".join(children)).digest()


def hash_groups(nodes: bytes | memoryview, count: int, arity: int) -> bytes:
    """Parents of `count` consecutive nodes that start at a group boundary, concatenated.

    This is the hot loop of every insert: one pass over a level's dirty range.
    """
    mv = memoryview(nodes)
    step = NODE_SIZE * arity
    full, rest = divmod(count, arity)
    prefix = GROUP_PREFIX[arity]
    parts = [blake3(prefix + mv[o : o + step]).digest() for o in range(0, full * step, step)]
    if rest == 1:
        off = full * step
        parts.append(bytes(mv[off : off + NODE_SIZE]))
    elif rest:
        off = full * step
        parts.append(blake3(GROUP_PREFIX[rest] + mv[off : off + rest * NODE_SIZE]).digest())
    return b"".join(parts)


def check_arity(arity: int) -> None:
    """Reject an arity outside 2..255."""
    if not isinstance(arity, int) or not MIN_ARITY <= arity <= MAX_ARITY:
        raise InvalidConfig(f"arity must be an integer in {MIN_ARITY}..{MAX_ARITY}, got {arity!r}")


def depth_for(size: int, arity: int) -> int:
    """Hash levels above the leaves: 0 for size <= 1, else the least d with arity**d >= size."""
    check_arity(arity)
    d = 0
    cap = 1
    while cap < size:
        cap *= arity
        d += 1
    return d


def level_lengths(size: int, arity: int) -> tuple[int, ...]:
    """Length of every level 0..depth for a tree of `size` leaves (empty tuple for size 0)."""
    if size <= 0:
        return ()
    out = [size]
    n = size
    while n > 1:
        n = (n + arity - 1) // arity
        out.append(n)
    return tuple(out)
