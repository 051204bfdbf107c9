"""The one implementation of the LeanIMT algorithm, over any level storage, and LeanIMT itself."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from . import _cpaths
from ._native import lib
from .config import check_max_depth
from .errors import CapacityExceeded, InvalidLeaf, TreeClosed
from .hashing import (
    NODE_SIZE,
    check_arity,
    check_hash_threads,
    hash_group_with,
    hash_groups,
    hash_groups_into,
    level_lengths,
)
from .levels import Level, MemoryLevel
from .snapshot import Snapshot

BytesLike = bytes | bytearray | memoryview
_State = tuple[int, tuple[int, ...], tuple[bytes, ...]]
_Packed = tuple[int, int, bytes]
Leaves = BytesLike | Iterable[BytesLike]

MAX_SIZE = 2**64 - 1
_ONLY_LEAF_LEN = {NODE_SIZE}
_kstate = _cpaths._kstate
_switch = _cpaths._switch
_native_over = _cpaths.native_over
_append_one = lib.rs_append_one
_append_many = lib.rs_append_many
_E_RESERVE = _cpaths.E_RESERVE
_FRONTIER = _cpaths.FRONTIER


def leaf_bytes(leaf: BytesLike) -> bytes:
    """One leaf as bytes, or InvalidLeaf if it is not a 32-byte bytes-like."""
    if not isinstance(leaf, (bytes, bytearray, memoryview)):
        raise InvalidLeaf(f"a leaf is a 32-byte bytes-like object, got {type(leaf).__name__}")
    data = bytes(leaf)
    if len(data) != NODE_SIZE:
        raise InvalidLeaf(f"a leaf is exactly {NODE_SIZE} bytes, got {len(data)}")
    return data


def batch_bytes(leaves: Leaves) -> bytes:
    """A batch as one bytes object of 32-byte leaves.

    Accepts one bytes-like whose length is a multiple of 32, or an iterable of 32-byte
    bytes-likes; anything else raises InvalidLeaf before the tree is touched.
    """
    if isinstance(leaves, (bytes, bytearray, memoryview)):
        data = bytes(leaves)
        if len(data) % NODE_SIZE:
            raise InvalidLeaf(
                f"a batch given as one buffer must be a multiple of {NODE_SIZE} bytes, "
                f"got {len(data)}"
            )
        return data
    if isinstance(leaves, str):
        raise InvalidLeaf("leaves are bytes, not str")
    try:
        items = leaves if isinstance(leaves, (list, tuple)) else list(leaves)
        data = b"".join(items)
        # len() is the byte length for bytes and bytearray; other buffers take the slow path.
        if set(map(len, items)) - _ONLY_LEAF_LEN:
            for i, leaf in enumerate(items):
                nbytes = memoryview(leaf).nbytes
                if nbytes != NODE_SIZE:
                    raise InvalidLeaf(f"leaf {i} is {nbytes} bytes, not {NODE_SIZE}")
    except TypeError as exc:
        raise InvalidLeaf(f"every leaf must be a bytes-like object: {exc}") from None
    if len(data) != NODE_SIZE * len(items):  # pragma: no cover - implied by the checks above
        raise InvalidLeaf("a batch's leaves must each be 32 bytes")
    return data


class TreeCore:
    """Levels plus the append algorithm: what LeanIMT, RotorTree and the daemon share.

    After every batch it keeps the level lengths and the frontier (the last node of each
    level) so that a snapshot is a copy of two short tuples.
    """

    __slots__ = ("arity", "max_depth", "capacity", "levels", "_st", "hash_threads", "_new_level",
                 "_appender")

    def __init__(
        self, arity: int, max_depth: int, new_level: Callable[[int], Level], hash_threads: int = 1
    ) -> None:
        check_arity(arity)
        check_max_depth(max_depth)  # one rule (1..64) for LeanIMT, RotorTree and the daemon
        check_hash_threads(hash_threads)
        # Threads that hash one level's range of a large batch (hashing.hash_groups).
        self.hash_threads = hash_threads
        self.arity = arity
        self.max_depth = max_depth
        self.capacity = min(arity**max_depth, MAX_SIZE)
        self._new_level = new_level
        self.levels: list[Level] = []
        # (size, level lengths, frontier), replaced as one object so that a snapshot taken
        # from another thread never mixes the size of one batch with the frontier of another.
        # A single-leaf append stores it packed instead, (size, level count, the frontier as
        # one bytes object): building ~10 bytes objects per insert would cost a third of the
        # append; `state` unpacks it (and derives the lengths from the size) when asked.
        self._st: _State | _Packed = (0, (), ())
        # The levels as the C single-leaf append sees them (rotorshm._cpaths).
        self._appender = _cpaths.Appender(arity)

    @property
    def state(self) -> _State:
        """(size, level lengths, frontier) of the current tree, one consistent triple."""
        st = self._st
        if type(st[1]) is not int:
            return st  # type: ignore[return-value]
        # Not stored back: a writer may have moved on since `st` was read, and storing
        # would put the older state over the newer one.
        size, nl, front = st
        return (size, level_lengths(size, self.arity), _FRONTIER[nl].unpack(front))

    @property
    def size(self) -> int:
        """Number of leaves."""
        return self._st[0]

    @property
    def lengths(self) -> tuple[int, ...]:
        """Length of every level 0..depth."""
        return self.state[1]

    @property
    def frontier(self) -> tuple[bytes, ...]:
        """Last node of every level 0..depth."""
        return self.state[2]

    @property
    def root(self) -> bytes | None:
        """Root of the current tree, None when empty."""
        st = self._st
        if type(st[1]) is int:
            return st[2][-NODE_SIZE:]
        frontier = st[2]
        return frontier[-1] if frontier else None  # type: ignore[return-value]

    @property
    def depth(self) -> int:
        """Number of hash levels above the leaves."""
        return max(len(self.lengths) - 1, 0)

    def check_room(self, count: int) -> None:
        """Raise CapacityExceeded if `count` more leaves would not fit."""
        if self.size + count > self.capacity:
            raise CapacityExceeded(
                f"{count} leaves do not fit: size {self.size}, capacity {self.capacity} "
                f"(arity {self.arity}, max_depth {self.max_depth})"
            )

    def reserve(self, new_size: int) -> tuple[int, ...]:
        """Reserve storage on every level for a tree of `new_size` leaves; return its lengths.

        Everything that can fail (allocation, a full disk) fails here, before any node of
        the current tree is overwritten.
        """
        lengths = level_lengths(new_size, self.arity)
        while len(self.levels) < len(lengths):
            self.levels.append(self._new_level(len(self.levels)))
        for lvl, n in zip(self.levels, lengths, strict=False):
            lvl.reserve(n)
        self._appender.sync(self.levels)
        return lengths

    def append(self, data: bytes) -> None:
        """Append a validated batch (a multiple of 32 bytes), hashing each level in one pass."""
        count = len(data) // NODE_SIZE
        if count == 1 and _native_over(self.levels):
            self.append_one(data)
            return
        if count == 0:
            return
        self.check_room(count)
        old = self.size
        lengths = self.reserve(old + count)
        self.apply(old, data, lengths)

    def append_one(self, leaf: bytes) -> bytes:
        """Append one validated 32-byte leaf: one C call writes it and rehashes its path.
        Returns the new root."""
        size = self._st[0]
        if size >= self.capacity:
            self.check_room(1)
        a = self._appender
        nl = _append_one(a.c, size, leaf)
        if nl < 0:
            if nl != _E_RESERVE:
                raise TreeClosed(f"the tree's storage is closed (code {nl})")
            lengths = self.reserve(size + 1)  # a new region or level: once per 128 leaves
            if not _native_over(self.levels):  # the first level just created is not in place
                self._apply_one(size, leaf, lengths)
                return self.state[2][-1]
            nl = _append_one(a.c, size, leaf)
            if nl < 0:  # pragma: no cover - reserve() made the room
                raise TreeClosed(f"the tree's storage refused the leaf (code {nl})")
        front: bytes = a.frontier_buf[: NODE_SIZE * nl]
        self._st = (size + 1, nl, front)
        return front[-NODE_SIZE:]

    def apply(self, old: int, data: bytes, lengths: tuple[int, ...]) -> None:
        """Write leaves at `old` and rehash the right edge; storage is already reserved."""
        n = self.arity
        levels = self.levels
        if len(data) == NODE_SIZE:
            self._apply_one(old, data, lengths)
            return
        if _native_over(levels):
            # One C call writes the leaves and hashes every level (GIL released).
            a = self._appender
            nl = _append_many(a.c.levels, a.count, n, old, data, len(data) // NODE_SIZE,
                              self.hash_threads, a.frontier, a.lengths)
            if nl != len(lengths):
                raise TreeClosed(f"the tree's storage refused the batch at leaf {old} (code {nl})")
            self._st = (old + len(data) // NODE_SIZE, lengths,
                          _FRONTIER[nl].unpack_from(a.frontier_buf))
            return
        levels[0].write(old, data)
        frontier = [data[-NODE_SIZE:]]
        lo = old
        threads = self.hash_threads
        for lvl in range(len(lengths) - 1):
            # The dirty range of this level starts at the group of its first new node (the
            # group's older members are immutable, or the old frontier) and is in storage.
            g0 = lo - lo % n
            count = lengths[lvl] - g0
            lo = g0 // n
            parents = lengths[lvl + 1] - lo
            src = levels[lvl].view(g0, count)
            dst = levels[lvl + 1].view(lo, parents) if src is not None else None
            if src is not None and dst is not None:
                # From one level's storage straight into the next one's: no copies.
                hash_groups_into(src, count, n, dst, threads)
                frontier.append(dst[-NODE_SIZE:].tobytes())
            else:  # the range spans two regions (or the level is not in place)
                out = hash_groups(levels[lvl].read(g0, count), count, n, threads)
                levels[lvl + 1].write(lo, out)
                frontier.append(out[-NODE_SIZE:])
        self._st = (old + len(data) // NODE_SIZE, lengths, tuple(frontier))

    def _apply_one(self, index: int, leaf: bytes, lengths: tuple[int, ...]) -> None:
        """The same rehash for a single new leaf: one dirty node per level, always the last
        of its group, so its parent hashes the group's older members and itself."""
        if _native_over(self.levels):
            a = self._appender
            nl = _append_one(a.c, index, leaf)
            if nl != len(lengths):
                raise TreeClosed(f"the tree's storage refused leaf {index} (code {nl})")
            self._st = (index + 1, lengths, _FRONTIER[nl].unpack_from(a.frontier_buf))
            return
        n = self.arity
        levels = self.levels
        levels[0].write(index, leaf)
        node = leaf
        frontier = [leaf]
        idx = index
        for lvl in range(len(lengths) - 1):
            pos = idx % n
            if pos:  # pos == 0: a group of one, lifted unchanged
                node = hash_group_with(levels[lvl].read(idx - pos, pos), pos, node)
            idx //= n
            levels[lvl + 1].write(idx, node)
            frontier.append(node)
        self._st = (index + 1, lengths, tuple(frontier))

    def restore(self, size: int, frontier: tuple[bytes, ...]) -> None:
        """Adopt a state whose nodes are already in storage (after loading a checkpoint)."""
        self._st = (size, self.reserve(size) if size else (), frontier)
        self._appender.sync(self.levels, reset=True)  # another tree: no cached prefix stays

    def snapshot(self) -> Snapshot:
        """A consistent view of the current tree: O(depth), never copies a level."""
        size, lengths, frontier = self.state
        return Snapshot(self.levels, self.arity, size, lengths, frontier)

    def close(self) -> None:
        """Release every level's storage views."""
        for lvl in self.levels:
            lvl.close()


class LeanIMT:
    """An in-memory, append-only N-ary Lean Incremental Merkle Tree."""

    __slots__ = ("_core",)

    def __init__(self, arity: int = 4, max_depth: int = 20, hash_threads: int = 1) -> None:
        """An empty tree; `hash_threads` > 1 hashes large batches (from 4,096 groups of
        leaves) on that many threads, each its own part of the lower levels, in C with the
        GIL released."""
        self._core = TreeCore(arity, max_depth, MemoryLevel, hash_threads)

    @property
    def arity(self) -> int:
        """Children per group (N)."""
        return self._core.arity

    @property
    def max_depth(self) -> int:
        """Deepest tree allowed; capacity is arity**max_depth leaves."""
        return self._core.max_depth

    @property
    def hash_threads(self) -> int:
        """Threads that hash the levels of a large batch."""
        return self._core.hash_threads

    @property
    def size(self) -> int:
        """Number of leaves."""
        return self._core.size

    @property
    def depth(self) -> int:
        """Number of hash levels above the leaves."""
        return self._core.depth

    @property
    def root(self) -> bytes | None:
        """Current root, None for an empty tree."""
        return self._core.root

    def insert(self, leaf: BytesLike) -> bytes:
        """Append one 32-byte leaf; return the new root."""
        core = self._core
        if type(leaf) is not bytes or len(leaf) != NODE_SIZE:
            leaf = leaf_bytes(leaf)
        if not (_kstate.python or _switch.python):
            return core.append_one(leaf)
        core.append(leaf)
        return core.state[2][-1]

    def insert_many(self, leaves: Leaves) -> bytes | None:
        """Append a batch atomically (all leaves or none); return the new root."""
        self._core.append(batch_bytes(leaves))
        return self._core.root

    def snapshot(self) -> Snapshot:
        """A read-only view that stays unchanged while the tree grows."""
        return self._core.snapshot()

    def __len__(self) -> int:
        return self._core.size

    def __repr__(self) -> str:
        root = self.root.hex() if self.root else None
        return f"LeanIMT(arity={self.arity}, size={self.size}, root={root})"
