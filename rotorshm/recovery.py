"""Open-time recovery: load the checkpoint into the levels, verify it, replay the WAL.

Readers of the previous writer may still hold snapshots over the same shard files while
we recover, and a snapshot reads every node below its level's last one from the shared
mapping. So recovery writes **only final values** into shared storage: the checkpoint's
frontier (the last node of each level, possibly a partial group at checkpoint time) and
the last node each replayed batch leaves per level are kept privately (`_HeldEdge`) and
written only once nothing will rewrite them (the next batch starts past them, or replay
is over). Every other node a batch writes is final, and equals what the previous writer
had there: the WAL replays the same leaves in the same order.
"""

from __future__ import annotations

import os

from . import _cpaths
from .checkpoint import CheckpointMeta, level_dir, verify_crcs
from .config import ProgressCallback
from .errors import CorruptionError
from .hashing import NODE_SIZE, hash_groups
from .levels import CHUNK_NODES, SHARD_CHUNKS, Level, shard_name
from .segments import ShmLevel
from .tree import TreeCore
from .wal import ScanResult

_VERIFY_WINDOW = 1 << 16  # parents recomputed per step while verifying
REPLAY_BATCH_BYTES = 8 << 20  # WAL payload bytes applied per replay step
_SHARD_NODES = SHARD_CHUNKS * CHUNK_NODES


def _report(progress: ProgressCallback | None, phase: str, done: int, total: int) -> None:
    if progress is not None:
        progress(phase, done, total)


def load_pinned(data_dir: str, level: ShmLevel, count: int) -> None:
    """Copy a pinned level's first `count` nodes from its shard files into its segments."""
    directory = level_dir(data_dir, level.level)
    pos = 0
    shard = 0
    per_shard = level.region_chunks * 128
    while pos < count:
        n = min(per_shard, count - pos)
        path = os.path.join(directory, shard_name(shard))
        try:
            with open(path, "rb") as f:
                data = f.read(n * NODE_SIZE)
        except FileNotFoundError:
            raise CorruptionError(f"{path}: shard missing for a checkpointed level") from None
        if len(data) != n * NODE_SIZE:
            raise CorruptionError(f"{path}: shard shorter than the checkpoint says")
        level.write(pos, data)
        pos += n
        shard += 1


def restore(core: TreeCore, data_dir: str, meta: CheckpointMeta) -> None:
    """Put the checkpointed tree into `core`'s levels (already created by its factory).

    The frontier (the meta copy rules: the writer may have rewritten those nodes after
    the checkpoint) stays in `core.state` only; `replay` writes it to storage once final.
    """
    core.restore(meta.size, meta.frontier)
    for lvl, length in enumerate(meta.lengths):
        level = core.levels[lvl]
        if isinstance(level, ShmLevel):
            load_pinned(data_dir, level, length - 1)


def verify(core: TreeCore, data_dir: str, meta: CheckpointMeta,
           progress: ProgressCallback | None) -> None:
    """Check chunk CRCs, then recompute every level from the leaves and compare.

    Any mismatch raises CorruptionError naming the shard file and offset. The levels read
    with readahead meanwhile (their mappings are MADV_RANDOM for proofs otherwise: a cold
    scan page by page runs ~8x slower).
    """
    levels = core.levels[: len(meta.lengths)]
    for level in levels:
        level.sequential(True)
    try:
        _verify(core, data_dir, meta, progress)
    finally:
        for level in levels:
            level.sequential(False)


def _verify(core: TreeCore, data_dir: str, meta: CheckpointMeta,
            progress: ProgressCallback | None) -> None:
    n = core.arity
    total = sum(meta.lengths[:-1])  # every node below the root is hashed into its parent once
    done = 0
    for lvl, length in enumerate(meta.lengths):
        verify_crcs(level_dir(data_dir, lvl), core.levels[lvl], length - 1)
    for lvl in range(len(meta.lengths) - 1):
        below: Level = core.levels[lvl]
        above: Level = core.levels[lvl + 1]
        length = meta.lengths[lvl]
        parents = meta.lengths[lvl + 1]
        p = 0
        while p < parents:
            q = min(parents, p + _VERIFY_WINDOW)
            # The level's last child is the frontier copy (the writer may have rewritten
            # its stored node since), so the last parent is checked apart, against the
            # frontier copy of its own level.
            bad = _check_stored(below, above, n, p, q - 1 if q == parents else q,
                                core.hash_threads)
            if bad < 0 and q == parents:
                lo = (q - 1) * n
                children = below.read(lo, length - 1 - lo) + meta.frontier[lvl]
                if hash_groups(children, length - lo, n) != meta.frontier[lvl + 1]:
                    bad = q - 1
            if bad >= 0:
                # either the parent or one of its children is damaged: name both files
                first_child, last_child = bad * n, min(bad * n + n, length) - 1
                children_files = sorted({
                    os.path.join(level_dir(data_dir, lvl), shard_name(i // _SHARD_NODES))
                    for i in (first_child, last_child)
                })
                raise CorruptionError(
                    f"{os.path.join(level_dir(data_dir, lvl + 1), shard_name(bad // _SHARD_NODES))}"
                    f": node {bad} of level {lvl + 1} does not match the hash of its children "
                    f"(nodes {first_child}..{last_child} in {' and '.join(children_files)})"
                )
            done += min(q * n, length) - p * n
            _report(progress, "verify", done, total)
            p = q
    if meta.frontier and meta.frontier[-1] != meta.root:
        raise CorruptionError(f"{data_dir}: recomputed root differs from the checkpoint's root")


def _check_stored(below: Level, above: Level, n: int, plo: int, phi: int, threads: int) -> int:
    """The first of parents plo..phi-1 (whose children are all stored) that differs from
    the hash of its children, or -1: in C from the regions in place where it can, else
    through copies and hash_groups."""
    if plo >= phi:
        return -1
    bad = _cpaths.check_parents(below, above, n, plo, phi, phi * n)
    if bad is not None:
        return bad
    computed = hash_groups(below.read(plo * n, (phi - plo) * n), (phi - plo) * n, n, threads)
    stored = above.read(plo, phi - plo)
    if computed == stored:
        return -1
    return plo + next(i for i in range(phi - plo)
                      if computed[i * 32 : i * 32 + 32] != stored[i * 32 : i * 32 + 32])


class _HeldEdge(Level):
    """A level seen through replay: its last written node is held back until it is final.

    TreeCore writes each level in one run per batch ending at the level's last node; that
    node is the only one a later batch may rewrite. It is held here (and served to reads)
    and written to the real level once a write starts past it, or at `release()`.
    """

    __slots__ = ("inner", "_held")

    def __init__(self, inner: Level, held: tuple[int, bytes] | None) -> None:
        super().__init__(inner.level, inner.region_chunks)
        self.inner = inner
        self._held = held

    def _open_region(self, index: int, create: bool) -> memoryview:  # pragma: no cover
        raise AssertionError("a held level never maps regions itself")

    def reserve(self, nodes: int) -> None:
        self.inner.reserve(nodes)

    def read(self, start: int, count: int) -> bytes:
        held = self._held
        if held is None or not start <= held[0] < start + count:
            return self.inner.read(start, count)
        # The held node is served from here; the inner level may never have had it written
        # (an offline overlay refuses to read such a node), so read only around it.
        i, end = held[0], start + count
        head = self.inner.read(start, i - start) if i > start else b""
        tail = self.inner.read(i + 1, end - i - 1) if end > i + 1 else b""
        return head + held[1] + tail

    def node(self, index: int) -> bytes:
        held = self._held
        if held is not None and held[0] == index:
            return held[1]
        return self.inner.node(index)

    def write(self, start: int, data: bytes | memoryview) -> None:
        held = self._held
        if held is not None and held[0] < start:
            self.inner.write(held[0], held[1])  # nothing rewrites it any more: final
        if len(data) > NODE_SIZE:
            self.inner.write(start, memoryview(data)[:-NODE_SIZE])
        self._held = (start + len(data) // NODE_SIZE - 1, bytes(data[-NODE_SIZE:]))

    def release(self) -> Level:
        """Write the held node (final now) and return the real level."""
        if self._held is not None:
            self.inner.write(*self._held)
            self._held = None
        return self.inner


def replay(core: TreeCore, scan: ScanResult, after_seq: int, wal_path: str,
           progress: ProgressCallback | None) -> int:
    """Apply WAL records newer than the checkpoint, in merged batches; return the last seq.

    Expects `core` as `restore` left it (or empty): its frontier is not in storage yet.
    Storage only ever receives final values (see the module doc).
    """
    records = [r for r in scan.records if r.seq > after_seq]
    if records and records[0].seq != after_seq + 1:
        raise CorruptionError(
            f"{wal_path}: first record after the checkpoint has sequence {records[0].seq}, "
            f"expected {after_seq + 1} (records are missing)"
        )
    total = sum(len(r.payload) for r in records) // NODE_SIZE
    core.check_room(total)
    _, lengths, frontier = core.state
    # Every level the replay needs exists before the levels are wrapped.
    core.reserve(core.size + total)
    real = list(core.levels)
    core.levels[:] = [
        _HeldEdge(lvl, (lengths[i] - 1, frontier[i]) if i < len(lengths) else None)
        for i, lvl in enumerate(real)
    ]
    try:
        done = 0
        batch: list[bytes] = []
        pending = 0
        for i, rec in enumerate(records):
            batch.append(rec.payload)
            pending += len(rec.payload)
            if pending >= REPLAY_BATCH_BYTES or i == len(records) - 1:
                data = b"".join(batch)
                core.append(data)
                done += len(data) // NODE_SIZE
                _report(progress, "replay", done, total)
                batch.clear()
                pending = 0
        for held in core.levels:
            assert isinstance(held, _HeldEdge)
            held.release()
    finally:
        core.levels[:] = real
    return records[-1].seq if records else after_seq
