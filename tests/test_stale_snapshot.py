"""A snapshot held across a writer crash never serves mixed data (issue 10, item 4).

A writer publishes leaves before they are durable. If it dies and the leaves published
after its last fsync are lost with it, the restarted writer recovers a smaller tree and
writes *different* leaves at those positions: in place in the shard files (mapped
MAP_SHARED by every reader) and, above them, different right-edge nodes. A snapshot of
the dead writer's tree larger than what was recovered must then refuse to answer
(StaleSnapshot) instead of mixing old and new nodes into proofs that match no root.

The crash is placed exactly: the daemon runs with `--flush-interval-ms 0` (fsync only when
a client waits for durability), so everything after the last durable wait is published but
not durable when it is SIGKILLed. A SIGKILL alone leaves the written WAL records in the page
cache, where recovery finds them; the tests then cut the WAL back to its durable prefix,
which is what losing the unsynced records (a power cut of the disk, a writeback error)
does to the log.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_util import Daemon, leaf_range, start_daemon, unique_name, unlink_segments

import rotorshm
from rotorshm import wal

ARITY = 4
DURABLE = 1000  # leaves made durable by the first writer
PUBLISHED = 1600  # leaves it published before it was killed


@pytest.fixture
def started() -> Iterator[list[Daemon]]:
    """Daemons a test starts; killed (and their segments removed) at teardown."""
    daemons: list[Daemon] = []
    yield daemons
    for d in daemons:
        d.kill()
    for name in {d.name for d in daemons}:
        unlink_segments(name)


def other_leaves(start: int, stop: int) -> bytes:
    """Leaves the restarted writer ingests: different from leaf_range at every position."""
    return b"".join(i.to_bytes(8, "little") + b"\xee" * 24 for i in range(start, stop))


def cut_wal_to_durable(directory: Path, durable_seq: int) -> None:
    """Drop every WAL record after `durable_seq`: the unsynced records are lost."""
    path = str(directory / "wal.log")
    scan = wal.scan(path)
    keep = [r for r in scan.records if r.seq <= durable_seq]
    end = keep[-1].offset + wal.HEADER.size + len(keep[-1].payload) if keep else 0
    os.truncate(path, end)


def crash_after_publication(directory: Path, name: str, started: list[Daemon],
                            **options: object) -> tuple[rotorshm.Reader, rotorshm.Snapshot,
                                                         rotorshm.Snapshot]:
    """Writer 1 makes DURABLE leaves durable, publishes up to PUBLISHED, and is killed.

    Returns the reader and two snapshots of writer 1: one within the durable size, one
    covering published-but-not-durable leaves.
    """
    d1 = start_daemon(directory, name, arity=ARITY, flush_interval_ms=0,
                      checkpoint="manual", **options)
    started.append(d1)
    reader = rotorshm.attach(name)
    with rotorshm.connect(str(directory)) as client:
        seq, size, _ = client.insert_many(leaf_range(0, DURABLE))
        assert client.wait_durable(seq, timeout=30)
        durable_snap = reader.snapshot()
        assert durable_snap.size == DURABLE
        for start in range(DURABLE, PUBLISHED, 100):
            client.insert_many(leaf_range(start, start + 100))
    assert reader.wait_for_size(PUBLISHED, timeout=30)
    durable_seq = reader.durable_seq
    assert durable_seq == seq  # nothing after the waited batch was synced
    snap = reader.snapshot()
    assert snap.size == PUBLISHED
    d1.kill()  # published PUBLISHED, durable DURABLE
    cut_wal_to_durable(directory, durable_seq)
    return reader, snap, durable_snap


def restart_with_other_leaves(directory: Path, name: str, started: list[Daemon],
                              **options: object) -> Daemon:
    """Writer 2 recovers DURABLE leaves and ingests different ones past them."""
    d2 = start_daemon(directory, name, arity=ARITY, flush_interval_ms=0,
                      checkpoint="manual", **options)
    started.append(d2)
    with rotorshm.attach(name) as r2:
        assert r2.size == DURABLE  # recovered to the durable size
    with rotorshm.connect(str(directory)) as client:
        seq, size, _ = client.insert_many(other_leaves(DURABLE, PUBLISHED + 300))
        assert size == PUBLISHED + 300
    return d2


def mismatching_proofs(snap: rotorshm.Snapshot) -> list[int]:
    """Leaves whose proof from `snap` does not verify against the snapshot's own root."""
    bad = []
    for i in range(snap.size):
        if not snap.generate_proof(i).verify_against(snap.root, snap.size):
            bad.append(i)
    return bad


@pytest.mark.xfail(strict=True, reason="issue 10 item 4: an old snapshot serves mixed data")
@pytest.mark.parametrize("pin", [None, 2, 0], ids=["files", "pinned-above-2", "all-pinned"])
def test_snapshot_covering_lost_leaves_is_stale_after_restart(
    tmp_path: Path, started: list[Daemon], pin: int | None
):
    directory = tmp_path / "tree"
    name = unique_name("stale")
    opts = {} if pin is None else {"pin_above_level": pin}
    reader, snap, durable_snap = crash_after_publication(directory, name, started, **opts)
    try:
        assert mismatching_proofs(snap) == []
        restart_with_other_leaves(directory, name, started, **opts)
        # Before the fix: every proof (files), 608 (levels 0-1 in files) or none (all
        # pinned: the old segments stay, but serve leaves the tree no longer has) fail.
        assert getattr(rotorshm, "StaleSnapshot", None) is not None
        with pytest.raises(rotorshm.StaleSnapshot):
            snap.proof_bytes(0)
        assert mismatching_proofs(durable_snap) == []
    finally:
        reader.close()
