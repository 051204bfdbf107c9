"""Snapshots: a frozen view of the tree from which every proof is generated.

A snapshot is the level lengths and the frontier (last node of each level) at one
moment, plus references to the level storage. Every node of index < len - 1 is
immutable, so it is read from storage without locks; the last node of each level comes
from the snapshot's own frontier copy, because the writer rewrites it as leaves arrive.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import _cpaths
from .errors import IndexOutOfRange, InvalidArgument
from .hashing import NODE_SIZE, hash_children, level_lengths
from .levels import Level
from .proof import (
    ConsistencyLevel,
    ConsistencyProof,
    InclusionProof,
    ProofLevel,
    consistency_from_encoding,
    inclusion_from_encoding,
)

if TYPE_CHECKING:
    from .shm import EpochGuard


@functools.lru_cache(maxsize=4096)
def _sibling_slices(count: int, pos: int) -> tuple[slice, ...]:
    """Slices cutting a group of `count` nodes into its members other than `pos`."""
    return tuple(
        slice(j * NODE_SIZE, (j + 1) * NODE_SIZE) for j in range(count) if j != pos
    )


@functools.lru_cache(maxsize=256)
def _full_group_slices(arity: int) -> list[tuple[slice, ...]]:
    """Per position, the slices of the other members of a full group of `arity` nodes."""
    return [_sibling_slices(arity, pos) for pos in range(arity)]


_tuple_new = tuple.__new__
_native_over = _cpaths.native_over
_inclusion_bytes = _cpaths.inclusion_bytes
_consistency_bytes = _cpaths.consistency_bytes
_kstate = _cpaths._kstate
_switch = _cpaths._switch


def as_index(value: object, what: str) -> int:
    """`value` as an int if it is an integer (not a bool), else InvalidArgument.

    Accepts anything with __index__ (e.g. numpy integers); refuses bool, float, str and
    None, which Python would otherwise accept or turn into a bare TypeError.
    """
    if type(value) is int:
        return value
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise InvalidArgument(f"{what} must be an integer, got {type(value).__name__} "
                              f"{value!r:.40}")
    return operator.index(value)  # type: ignore[arg-type]


class Snapshot:
    """Consistent read-only view of a tree of `size` leaves; valid however far the tree grows.

    A reader's snapshot also carries its writer epoch's guard: if that writer died before
    some of the snapshot's leaves were durable and a restarted writer recovered fewer
    leaves, every call that reads the level storage raises StaleSnapshot (checked after
    reading, so nothing it gathered is returned) instead of data that may mix two trees.
    `root`, `size` and `frontier` are the snapshot's own copies and never raise; `stale`
    tells whether the rest would.
    """

    __slots__ = ("_levels", "arity", "size", "_lengths", "_frontier", "_view", "_guard")

    def __init__(
        self,
        levels: Sequence[Level],
        arity: int,
        size: int,
        lengths: tuple[int, ...],
        frontier: tuple[bytes, ...],
        guard: EpochGuard | None = None,
    ) -> None:
        self._levels = levels
        self.arity = arity
        self.size = size
        self._lengths = lengths
        self._frontier = frontier
        self._view: _cpaths.View | None = None  # the C view, built at the first C proof
        self._guard = guard

    def _c_view(self) -> _cpaths.View:
        view = self._view
        if view is None:
            view = self._view = _cpaths.make_view(
                self._levels, self.arity, self.size, self._lengths, self._frontier,
                self._guard,
            )
        return view

    @property
    def stale(self) -> bool:
        """True if a restarted writer recovered fewer leaves than this snapshot covers: its
        proofs, consistency proofs, leaves and nodes raise StaleSnapshot (see the class doc).
        Always False for a snapshot of a tree in this process."""
        guard = self._guard
        return guard is not None and guard.stale(self.size)

    def check_stale(self) -> None:
        """Raise StaleSnapshot if `stale`. Code that reads the snapshot's level storage
        directly calls it *after* reading: then what it read is this epoch's tree."""
        guard = self._guard
        if guard is not None:
            guard.check(self.size)

    @property
    def root(self) -> bytes | None:
        """Root at this snapshot, None for an empty tree."""
        return self._frontier[-1] if self._frontier else None

    @property
    def depth(self) -> int:
        """Number of hash levels above the leaves."""
        return max(len(self._lengths) - 1, 0)

    @property
    def frontier(self) -> tuple[bytes, ...]:
        """Last node of every level 0..depth."""
        return self._frontier

    def level_len(self, level: int) -> int:
        """Number of nodes on `level` (0 above the root)."""
        level = as_index(level, "level")
        if level < 0:
            raise IndexOutOfRange(f"level {level} is negative")
        return self._lengths[level] if level < len(self._lengths) else 0

    def get_node(self, level: int, index: int) -> bytes:
        """Node `index` of `level` as of this snapshot."""
        n = self.level_len(level)
        index = as_index(index, "node index")
        if not 0 <= index < n:
            raise IndexOutOfRange(f"node {index} not on level {level} of length {n}")
        if index == n - 1:
            return self._frontier[level]
        node = self._levels[level].node(index)
        if self._guard is not None:
            self.check_stale()
        return node

    def get_leaf(self, index: int) -> bytes:
        """Leaf `index`."""
        return self.get_node(0, index)

    def _edges(self, size: int) -> tuple[bytes, ...]:
        """Right-edge node of every level of the tree as it was at `size` leaves."""
        if size == self.size:
            return self._frontier
        n = self.arity
        lengths = level_lengths(size, n)
        edges = [self.get_node(0, size - 1)]
        for lvl in range(len(lengths) - 1):
            last = lengths[lvl] - 1
            g = last - last % n
            members = [self.get_node(lvl, j) for j in range(g, last)]
            members.append(edges[lvl])
            edges.append(hash_children(members))
        return tuple(edges)

    def _check_size(self, size: object, what: str) -> int:
        size = as_index(size, what)
        if not 1 <= size <= self.size:
            raise IndexOutOfRange(f"{what} {size} outside 1..{self.size}")
        return size

    def root_at(self, size: int) -> bytes:
        """Root of the tree as it was when it had `size` leaves (1 <= size <= self.size)."""
        size = self._check_size(size, "size")
        return self._edges(size)[-1]

    def _inclusion_args(self, index: object, size: object) -> tuple[int, int]:
        """(index, size) checked: integers, 1 <= size <= self.size, 0 <= index < size."""
        if type(index) is not int:
            index = as_index(index, "leaf index")
        size = self.size if size is None else self._check_size(size, "size")
        if not 0 <= index < size:
            raise IndexOutOfRange(f"leaf {index} not in a tree of {size} leaves")
        return index, size

    def proof_bytes(self, index: int, size: int | None = None) -> bytes:
        """Binary encoding of the inclusion proof of leaf `index` (at `size`, default now).

        Byte-identical to ``generate_proof(index, size).to_bytes()``; gathered in one C
        call straight from the level storage: what a server sends.
        """
        view = self._view
        if (view is not None and size is None and type(index) is int
                and 0 <= index < self.size and not (_kstate.python or _switch.python)):
            # The server's hot path, checks inlined: a C view exists only over levels C may
            # read (in place), so this is what the general path below would do.
            return _inclusion_bytes(view, index, self.size)
        index, size = self._inclusion_args(index, size)
        if not _native_over(self._levels):
            return self._proof_py(index, size).to_bytes()  # checks the epoch itself
        return _inclusion_bytes(self._view or self._c_view(), index, size)

    def generate_proof(self, index: int, size: int | None = None) -> InclusionProof:
        """Inclusion proof for leaf `index`, against this snapshot or an earlier `size`.

        Wraps :meth:`proof_bytes`: the per-level tuples are built only when read.
        """
        index, size = self._inclusion_args(index, size)
        if not _native_over(self._levels):
            return self._proof_py(index, size)
        enc = _inclusion_bytes(self._view or self._c_view(), index, size)
        return inclusion_from_encoding(enc, index, size, self.arity)

    def _proof_py(self, index: int, size: int) -> InclusionProof:
        """The Python reference of the inclusion proof (checked arguments)."""
        if size != self.size:
            return self._proof_at(index, size)
        n = self.arity
        lengths = self._lengths
        frontier = self._frontier
        levels = self._levels
        full = _full_group_slices(n)
        idx = index
        out = []
        for lvl in range(len(lengths) - 1):
            pos = idx % n
            g = idx - pos
            last = lengths[lvl] - 1
            if g + n <= last:  # a complete group of immutable nodes
                buf = levels[lvl].read(g, n)
                cuts = full[pos]
            else:  # the right edge: its last member comes from the frontier copy
                buf = levels[lvl].read(g, last - g) + frontier[lvl]
                cuts = _sibling_slices(len(buf) // NODE_SIZE, pos)
            # tuple.__new__ skips ProofLevel's Python-level __new__ on this hot path.
            out.append(_tuple_new(ProofLevel, (pos, tuple(map(buf.__getitem__, cuts)))))
            idx //= n
        leaf = frontier[0] if index == self.size - 1 else levels[0].node(index)
        self.check_stale()
        return InclusionProof(frontier[-1], leaf, index, self.size, n, tuple(out))

    def _proof_at(self, index: int, size: int) -> InclusionProof:
        size = self._check_size(size, "size")
        if not 0 <= index < size:
            raise IndexOutOfRange(f"leaf {index} not in a tree of {size} leaves")
        n = self.arity
        lengths = level_lengths(size, n)
        edges = self._edges(size)
        idx = index
        out = []
        for lvl in range(len(lengths) - 1):
            pos = idx % n
            g = idx - pos
            end = min(g + n, lengths[lvl])
            sibs = tuple(
                edges[lvl] if j == lengths[lvl] - 1 else self.get_node(lvl, j)
                for j in range(g, end)
                if j != idx
            )
            out.append(ProofLevel(pos, sibs))
            idx //= n
        leaf = edges[0] if index == size - 1 else self.get_node(0, index)
        return InclusionProof(edges[-1], leaf, index, size, n, tuple(out))

    def _consistency_args(self, old_size: object, new_size: object) -> tuple[int, int]:
        old_size = as_index(old_size, "old_size")
        new = self._check_size(self.size if new_size is None else new_size, "new_size")
        if not 1 <= old_size <= new:
            raise IndexOutOfRange(f"old_size {old_size} outside 1..{new}")
        return old_size, new

    def consistency_proof_bytes(self, old_size: int, new_size: int | None = None) -> bytes:
        """Binary encoding of the consistency proof from `old_size` to `new_size` (default
        now), byte-identical to ``generate_consistency_proof(...).to_bytes()``; one C call."""
        old, new = self._consistency_args(old_size, new_size)
        if not _native_over(self._levels):
            return self._consistency_py(old, new).to_bytes()
        return _consistency_bytes(self._view or self._c_view(), old, new)

    def generate_consistency_proof(
        self, old_size: int, new_size: int | None = None
    ) -> ConsistencyProof:
        """Proof that the tree at `old_size` is a prefix of the one at `new_size` (default: now).

        Wraps :meth:`consistency_proof_bytes`: the per-level tuples are built only when read.
        """
        old, new = self._consistency_args(old_size, new_size)
        if not _native_over(self._levels):
            return self._consistency_py(old, new)
        enc = _consistency_bytes(self._view or self._c_view(), old, new)
        return consistency_from_encoding(enc, old, new, self.arity)

    def _consistency_py(self, old_size: int, new: int) -> ConsistencyProof:
        """The Python reference of the consistency proof (checked arguments)."""
        n = self.arity
        new_edges = self._edges(new)
        old_root = self._edges(old_size)[-1]
        if old_size == new:
            self.check_stale()
            return ConsistencyProof(old_root, old_root, old_size, new, n, ())
        lengths = level_lengths(new, n)

        def node(lvl: int, j: int) -> bytes:
            return new_edges[lvl] if j == lengths[lvl] - 1 else self.get_node(lvl, j)

        bnd = old_size - 1
        out = []
        for lvl in range(len(lengths) - 1):
            g = bnd - bnd % n
            stop = bnd + 1 if lvl == 0 else bnd
            shared = tuple(node(lvl, j) for j in range(g, stop))
            added = tuple(node(lvl, j) for j in range(bnd + 1, min(g + n, lengths[lvl])))
            out.append(ConsistencyLevel(shared, added))
            bnd //= n
        self.check_stale()
        return ConsistencyProof(old_root, new_edges[-1], old_size, new, n, tuple(out))

    def __repr__(self) -> str:
        root = self.root.hex() if self.root else None
        return f"Snapshot(arity={self.arity}, size={self.size}, root={root})"
