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

import json
import os
from pathlib import Path

import pytest
from daemon_util import Daemon, leaf_range, start_daemon, unique_name

import rotorshm
from rotorshm import _cpaths, shm, wal

ARITY = 4
DURABLE = 1000  # leaves made durable by the first writer
PUBLISHED = 1600  # leaves it published before it was killed


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


def assert_stale_everywhere(snap: rotorshm.Snapshot) -> None:
    """Every call on `snap` that reads level storage raises StaleSnapshot; copies do not."""
    assert snap.stale
    for i in (0, DURABLE - 1, DURABLE, snap.size - 1):
        with pytest.raises(rotorshm.StaleSnapshot) as info:
            snap.proof_bytes(i)
        with pytest.raises(rotorshm.StaleSnapshot):
            snap.generate_proof(i)
    assert (info.value.size, info.value.recovered_size) == (PUBLISHED, DURABLE)
    assert "reattach()" in str(info.value)
    for call in (lambda: snap.consistency_proof_bytes(1),
                 lambda: snap.generate_consistency_proof(DURABLE, PUBLISHED),
                 lambda: snap.get_leaf(DURABLE), lambda: snap.get_leaf(0),
                 lambda: snap.root_at(DURABLE + 1)):
        with pytest.raises(rotorshm.StaleSnapshot):
            call()
    with _cpaths.python_paths():  # the Python reference refuses alike
        with pytest.raises(rotorshm.StaleSnapshot):
            snap.generate_proof(DURABLE)
        with pytest.raises(rotorshm.StaleSnapshot):
            snap.generate_consistency_proof(1)
    assert snap.size == PUBLISHED and snap.root is not None  # its own copies


@pytest.mark.parametrize("pin", [None, 2, 0], ids=["files", "pinned-above-2", "all-pinned"])
def test_snapshot_covering_lost_leaves_is_stale_after_restart(
    tmp_path: Path, started: list[Daemon], pin: int | None
):
    """The real crash: publish, SIGKILL before fsync, lose the unsynced records, restart.

    Before the fix, the old snapshot's proofs stopped matching its root (all 1,600 with
    every level in shard files, 608 with levels 0-1 in files), or, every level pinned
    (old segments are kept mapped and never rewritten), went on proving leaves the tree
    no longer holds.
    """
    directory = tmp_path / "tree"
    name = unique_name("stale")
    opts = {} if pin is None else {"pin_above_level": pin}
    reader, snap, durable_snap = crash_after_publication(directory, name, started, **opts)
    try:
        assert mismatching_proofs(snap) == [] and not snap.stale
        restart_with_other_leaves(directory, name, started, **opts)
        assert_stale_everywhere(snap)
        # within the durable size: never rewritten, still valid
        assert not durable_snap.stale
        assert mismatching_proofs(durable_snap) == []
        cons = durable_snap.generate_consistency_proof(500)
        assert cons.verify_transition(durable_snap.root_at(500))
        # the way on
        reader.reattach(timeout=30)
        fresh = reader.snapshot()
        assert fresh.size == PUBLISHED + 300 and not fresh.stale
        assert fresh.get_leaf(DURABLE) == other_leaves(DURABLE, DURABLE + 1)
        for i in (0, DURABLE - 1, DURABLE, fresh.size - 1):
            assert fresh.generate_proof(i).verify_against(fresh.root, fresh.size)
    finally:
        reader.close()


def test_plain_kill_recovers_everything_and_old_snapshots_stay_valid(
    tmp_path: Path, started: list[Daemon]
):
    """SIGKILL alone: the WAL records are in the page cache, recovery keeps them all."""
    directory = tmp_path / "tree"
    name = unique_name("kill")
    d1 = start_daemon(directory, name, arity=ARITY, flush_interval_ms=0, checkpoint="manual")
    started.append(d1)
    with rotorshm.connect(str(directory)) as client:
        client.insert_many(leaf_range(0, PUBLISHED))
    reader = rotorshm.attach(name)
    try:
        assert reader.wait_for_size(PUBLISHED, timeout=30)
        snap = reader.snapshot()
        d1.kill()
        d2 = start_daemon(directory, name, arity=ARITY, flush_interval_ms=0,
                          checkpoint="manual")
        started.append(d2)
        with rotorshm.connect(str(directory)) as client:
            client.insert_many(leaf_range(PUBLISHED, PUBLISHED + 500))
        assert not snap.stale  # marked superseded at >= its size: nothing to refuse
        assert mismatching_proofs(snap) == []
    finally:
        reader.close()


def test_second_restart_never_revives_a_stale_snapshot(tmp_path: Path, started: list[Daemon]):
    """Writer 1 and writer 2 both die with unsynced leaves; writer 3 recovers more than
    writer 1 had durable: writer 1's stale snapshot stays stale, writer 2's within its
    durable size stays valid, and writer 2's beyond it goes stale."""
    directory = tmp_path / "tree"
    name = unique_name("twice")
    reader1, snap1, _ = crash_after_publication(directory, name, started)
    try:
        d2 = start_daemon(directory, name, arity=ARITY, flush_interval_ms=0,
                          checkpoint="manual")
        started.append(d2)
        reader2 = rotorshm.attach(name)
        try:
            assert reader2.epoch != reader1.epoch
            with rotorshm.connect(str(directory)) as client:
                seq, size, _ = client.insert_many(other_leaves(DURABLE, 2000))
                assert client.wait_durable(seq, timeout=30)
                kept = reader2.snapshot()
                client.insert_many(other_leaves(2000, 2500))
            assert reader2.wait_for_size(2500, timeout=30)
            lost = reader2.snapshot()
            durable_seq = reader2.durable_seq
            d2.kill()
            cut_wal_to_durable(directory, durable_seq)
            d3 = start_daemon(directory, name, arity=ARITY, flush_interval_ms=0,
                              checkpoint="manual")
            started.append(d3)
            with rotorshm.connect(str(directory)) as client:
                client.insert_many(leaf_range(2000, 2600))
            assert snap1.stale  # writer 1's mark (1000) is never raised to 2000
            with pytest.raises(rotorshm.StaleSnapshot):
                snap1.proof_bytes(0)
            assert lost.stale
            with pytest.raises(rotorshm.StaleSnapshot):
                lost.proof_bytes(2100)
            assert kept.size == 2000 and not kept.stale
            assert mismatching_proofs(kept) == []
        finally:
            reader2.close()
    finally:
        reader1.close()


def test_cli_and_http_answer_a_stale_snapshot_clearly(tmp_path: Path, started: list[Daemon]):
    """While the restarted writer recovers, the name still shows the superseded block."""
    import asyncio
    import subprocess
    import sys

    from daemon_util import child_env

    from rotorshm.http.app import ProofApp

    directory = tmp_path / "tree"
    name = unique_name("front")
    reader, snap, _ = crash_after_publication(directory, name, started)
    try:
        app = ProofApp(name)
        app.tree.open()  # attaches the dead writer's block; its last snapshot is served
        try:
            status, headers, body = asyncio.run(_get(app, "/v1/proof/5"))
            assert status == 200
            # what a restarted writer does before it writes anything
            assert shm.supersede(str(directory), DURABLE) == [name]
            for path in ("/v1/proof/5", "/v1/root", "/v1/leaf/1200",
                         "/v1/consistency?from=10"):
                status, headers, body = asyncio.run(_get(app, path))
                assert status == 503, (path, body)
                assert headers.get(b"retry-after") == b"1"
                assert "superseded" in json.loads(body)["error"]
        finally:
            app.tree.close()
        run = subprocess.run([sys.executable, "-m", "rotorshm", "proof", name, "1200"],
                             capture_output=True, text=True, env=child_env(), timeout=60,
                             check=False)
        assert run.returncode == 1, run
        assert run.stdout == ""
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and "stale snapshot" in lines[0], run.stderr
    finally:
        reader.close()


async def _get(app: object, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    """One GET through the ASGI app, in process."""
    route, _, query = path.partition("?")
    scope = {"type": "http", "method": "GET", "path": route, "headers": [],
             "query_string": query.encode()}
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await app(scope, receive, send)  # type: ignore[operator]
    start, body = sent[0], sent[1]
    return (int(start["status"]), dict(start["headers"]),  # type: ignore[call-overload, arg-type]
            bytes(body["body"]))  # type: ignore[call-overload, arg-type]
