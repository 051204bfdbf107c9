"""A tiny, deliberately naive reference LeanIMT, written from DESIGN.md §1 alone.

It shares no code with rotorshm (only the `blake3` library) and favours being obviously
right over being fast: levels are plain lists, every level is rebuilt from scratch.
Tests use it as the oracle for arities and sizes the Rust vectors do not cover; the
vector tests also check it against the vectors, so the oracle itself is validated.
"""

from __future__ import annotations

from blake3 import blake3


def leaf(i: int) -> bytes:
    """The vectors' leaf rule: i as a little-endian u64, then 24 zero bytes."""
    return i.to_bytes(8, "little") + bytes(24)


def leaves(count: int, start: int = 0) -> list[bytes]:
    """Leaves start .. start+count-1 by the vectors' rule."""
    return [leaf(i) for i in range(start, start + count)]


def ref_parent(children: list[bytes]) -> bytes:
    """A group of one child is lifted; k >= 2 children hash to blake3(0x01 || k || children)."""
    assert 1 <= len(children) <= 255
    assert all(len(c) == 32 for c in children)
    if len(children) == 1:
        return children[0]
    return blake3(bytes([0x01, len(children)]) + b"".join(children)).digest()


def ref_next_level(nodes: list[bytes], arity: int) -> list[bytes]:
    """Level l+1 from level l: node i covers children i*N .. min(i*N+N, len)-1."""
    return [ref_parent(nodes[i : i + arity]) for i in range(0, len(nodes), arity)]


def ref_levels(items: list[bytes], arity: int) -> list[list[bytes]]:
    """Every level, leaves first, up to the single root node ([] for no leaves)."""
    assert 2 <= arity <= 255
    if not items:
        return []
    out = [list(items)]
    while len(out[-1]) > 1:
        out.append(ref_next_level(out[-1], arity))
    return out


def ref_root(items: list[bytes], arity: int) -> bytes | None:
    """Root by straightforward recursion; None for an empty tree, the leaf for one leaf."""
    assert 2 <= arity <= 255
    if not items:
        return None
    if len(items) == 1:
        return items[0]
    return ref_root(ref_next_level(list(items), arity), arity)


def ref_depth(size: int, arity: int) -> int:
    """0 for size <= 1, else the least d with arity**d >= size (integers only)."""
    d = 0
    while arity**d < size:
        d += 1
    return d


def ref_path_shape(index: int, size: int, arity: int) -> list[tuple[int, int]]:
    """(position, sibling count) of every level of a valid inclusion path, leaves first."""
    shape = []
    length = size
    idx = index
    while length > 1:
        pos = idx % arity
        group_start = idx - pos
        shape.append((pos, min(group_start + arity, length) - group_start - 1))
        idx //= arity
        length = -(-length // arity)
    return shape


def ref_inclusion(items: list[bytes], index: int, arity: int) -> list[tuple[int, list[bytes]]]:
    """(position, siblings) of every level of the inclusion path of leaf `index`."""
    out = []
    idx = index
    for level in ref_levels(items, arity)[:-1]:
        pos = idx % arity
        group = level[idx - pos : idx - pos + arity]
        out.append((pos, group[:pos] + group[pos + 1 :]))
        idx //= arity
    return out


def ref_consistency_shape(old: int, new: int, arity: int) -> list[tuple[int, int]]:
    """(len(shared), len(new)) of every level of a consistency proof from `old` to `new`."""
    if old == new:
        return []
    shape = []
    length = new
    bnd = old - 1
    first = True
    while length > 1:
        pos = bnd % arity
        group_start = bnd - pos
        shape.append((pos + 1 if first else pos, min(group_start + arity, length) - bnd - 1))
        first = False
        bnd //= arity
        length = -(-length // arity)
    return shape


def ref_consistency(
    items: list[bytes], old: int, arity: int
) -> list[tuple[list[bytes], list[bytes]]]:
    """(shared, new) of every level, read off the levels of the tree of all `items`.

    At each level the boundary is the old tree's last node; `shared` is its group's members
    left of it (at level 0 including the boundary leaf), `new` the members right of it.
    """
    if old == len(items):
        return []
    out = []
    bnd = old - 1
    for depth, level in enumerate(ref_levels(items, arity)[:-1]):
        group_start = bnd - bnd % arity
        shared = level[group_start : bnd + 1] if depth == 0 else level[group_start:bnd]
        out.append((shared, level[bnd + 1 : group_start + arity]))
        bnd //= arity
    return out
