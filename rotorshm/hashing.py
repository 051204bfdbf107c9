"""Hash rules of the tree (DESIGN.md §1) and the integer geometry of its levels.

Every node hash goes through the C kernel in use (rotorshm.kernel), or through the blake3
package when ``ROTORSHM_KERNEL=python``; both give the same bytes.
"""

from __future__ import annotations

from blake3 import blake3

from . import kernel as _kernel
from .errors import InvalidConfig, InvalidLeaf

NODE_SIZE = 32
LEAF_TAG = b"\x00"
NODE_TAG = 1
MIN_ARITY = 2
MAX_ARITY = 255

_STATE = _kernel._state  # which kernel: read on every call, changed only by kernel._select
_c_hash_group_with = _kernel.c_hash_group_with

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
    if _STATE.python:
        return blake3(GROUP_PREFIX[k] + b"".join(children)).digest()
    return _kernel.c_hash_group(b"".join(children), k)


def hash_group_with(siblings: bytes, pos: int, child: bytes) -> bytes:
    """Parent of the group siblings[:pos] + child + siblings[pos:] (siblings concatenated).

    What a proof step and the single-leaf right-edge update hash; no siblings lifts child.
    """
    k = len(siblings) // NODE_SIZE + 1
    if len(siblings) % NODE_SIZE or k > MAX_ARITY or len(child) != NODE_SIZE:
        raise InvalidLeaf(f"a group is 1..{MAX_ARITY} children of {NODE_SIZE} bytes")
    if not 0 <= pos < k:
        raise InvalidLeaf(f"position {pos} outside a group of {k}")
    if k == 1:
        return bytes(child)
    if _STATE.python:
        off = pos * NODE_SIZE
        return blake3(GROUP_PREFIX[k] + siblings[:off] + child + siblings[off:]).digest()
    return _c_hash_group_with(siblings, pos, child)


def hash_groups(
    nodes: bytes | bytearray | memoryview, count: int, arity: int, threads: int = 1
) -> bytes:
    """Parents of `count` consecutive nodes that start at a group boundary, concatenated.

    This is the hot loop of every insert: one pass over a level's dirty range, one C call
    (full groups many at a time in SIMD lanes, the GIL released). With threads > 1 a large
    range (kernel.PARALLEL_MIN_GROUPS full groups or more) is split across that many
    threads.
    """
    if not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    check_arity(arity)
    check_hash_threads(threads)
    with memoryview(nodes) as view:
        nbytes = view.nbytes
    if nbytes < count * NODE_SIZE:
        raise InvalidLeaf(f"{count} nodes need {count * NODE_SIZE} bytes, got {nbytes}")
    if not _STATE.python:
        return _kernel.c_hash_groups(nodes, count, arity, threads)
    mv = memoryview(nodes).cast("B")
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


MAX_HASH_THREADS = _kernel.MAX_HASH_THREADS


def hash_groups_into(
    nodes: bytes | bytearray | memoryview, count: int, arity: int, out: memoryview,
    threads: int = 1,
) -> None:
    """hash_groups, writing the parents into `out` (a writable, C-contiguous buffer of exactly
    32*ceil(count/arity) bytes that does not overlap `nodes`) instead of returning them.

    What the writer uses to hash a level straight from its storage into the next one's.
    """
    if not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    check_arity(arity)
    check_hash_threads(threads)
    with memoryview(nodes) as src, memoryview(out) as dst:
        if src.nbytes < count * NODE_SIZE or not src.c_contiguous:
            raise InvalidLeaf(f"{count} nodes need {count * NODE_SIZE} contiguous bytes")
        if dst.readonly or not dst.c_contiguous or dst.nbytes != -(-count // arity) * NODE_SIZE:
            raise ValueError("out must be a writable contiguous buffer of one hash per group")
    if not count:
        return
    if _STATE.python:
        memoryview(out).cast("B")[:] = hash_groups(nodes, count, arity)
        return
    _kernel.c_hash_groups_into(nodes, count, arity, threads, out)


def check_hash_threads(threads: int) -> None:
    """Reject a hash thread count outside 1..MAX_HASH_THREADS."""
    if (not isinstance(threads, int) or isinstance(threads, bool)
            or not 1 <= threads <= MAX_HASH_THREADS):
        raise InvalidConfig(
            f"hash_threads must be an integer in 1..{MAX_HASH_THREADS}, got {threads!r}"
        )


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
