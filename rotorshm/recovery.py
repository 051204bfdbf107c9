"""Open-time recovery: load the checkpoint into the levels, verify it, replay the WAL."""

from __future__ import annotations

import os

from .checkpoint import CheckpointMeta, level_dir, verify_crcs
from .config import ProgressCallback
from .errors import CorruptionError
from .hashing import NODE_SIZE, hash_groups
from .levels import CHUNK_NODES, SHARD_CHUNKS, Level, shard_name
from .segments import ShmLevel
from .tree import TreeCore
from .wal import ScanResult

_VERIFY_WINDOW = 1 << 16  # parents recomputed per step while verifying
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
    """Put the checkpointed tree into `core`'s levels (already created by its factory)."""
    core.restore(meta.size, meta.frontier)
    for lvl, (length, node) in enumerate(zip(meta.lengths, meta.frontier, strict=True)):
        level = core.levels[lvl]
        if isinstance(level, ShmLevel):
            load_pinned(data_dir, level, length - 1)
        # The writer may have rewritten the frontier after the checkpoint; the meta copy rules.
        level.write(length - 1, node)


def verify(core: TreeCore, data_dir: str, meta: CheckpointMeta,
           progress: ProgressCallback | None) -> None:
    """Check chunk CRCs, then recompute every level from the leaves and compare.

    Any mismatch raises CorruptionError naming the shard file and offset.
    """
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
            lo, hi = p * n, min(q * n, length)
            if hi == length:
                children = below.read(lo, hi - 1 - lo) + meta.frontier[lvl]
            else:
                children = below.read(lo, hi - lo)
            computed = hash_groups(children, hi - lo, n, core.hash_threads)
            if q == parents:
                stored = above.read(p, q - 1 - p) + meta.frontier[lvl + 1]
            else:
                stored = above.read(p, q - p)
            if computed != stored:
                bad = next(i for i in range(q - p) if computed[i * 32 : i * 32 + 32]
                           != stored[i * 32 : i * 32 + 32]) + p
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
            done += hi - lo
            _report(progress, "verify", done, total)
            p = q
    if meta.frontier and meta.frontier[-1] != meta.root:
        raise CorruptionError(f"{data_dir}: recomputed root differs from the checkpoint's root")


def replay(core: TreeCore, scan: ScanResult, after_seq: int, wal_path: str,
           progress: ProgressCallback | None) -> int:
    """Apply WAL records newer than the checkpoint, in merged batches; return the last seq."""
    records = [r for r in scan.records if r.seq > after_seq]
    if records and records[0].seq != after_seq + 1:
        raise CorruptionError(
            f"{wal_path}: first record after the checkpoint has sequence {records[0].seq}, "
            f"expected {after_seq + 1} (records are missing)"
        )
    total = sum(len(r.payload) for r in records) // NODE_SIZE
    done = 0
    batch: list[bytes] = []
    pending = 0
    for i, rec in enumerate(records):
        batch.append(rec.payload)
        pending += len(rec.payload)
        if pending >= (8 << 20) or i == len(records) - 1:
            data = b"".join(batch)
            core.append(data)
            done += len(data) // NODE_SIZE
            _report(progress, "replay", done, total)
            batch.clear()
            pending = 0
    return records[-1].seq if records else after_seq
