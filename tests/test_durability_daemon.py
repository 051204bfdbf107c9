"""Regression tests of issue 13 that need a writer daemon, readers or threads (items 1, 6-9).

Writers are real processes (a `rotorshm serve` subprocess, or a WriterDaemon in a 'spawn'
child when a fault must be injected inside it); every wait is bounded, and a call that
could hang runs in a child whose result has a timeout. Nothing asserts on wall-clock time.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_util import (
    CTX,
    SHM_DIR,
    TIMEOUT,
    Daemon,
    leaf,
    leaf_range,
    reference_roots,
    segments_of,
    spawn,
    start_daemon,
    unique_name,
    unlink_segments,
    wait_until,
)

import rotorshm
from rotorshm import (
    FlushPolicy,
    RotorTree,
    RotorTreeConfig,
    StorePoisoned,
    TieringConfig,
    WriterGone,
)
from rotorshm import shm as shm_mod
from rotorshm.hashing import level_lengths

# -- 1. a poisoned daemon fails every waiter and every later insert -------------------------------


def _serve_in_child(cfg: RotorTreeConfig, name: str, stop: Any) -> bool:
    """Run a WriterDaemon in this child until `stop` is set (or TIMEOUT * 4 passes);
    True if it stopped because its store was poisoned."""
    from rotorshm.writer import WriterDaemon

    daemon = WriterDaemon(cfg, name=name)
    daemon.start()
    threading.Thread(target=lambda: (stop.wait(TIMEOUT * 4), daemon.stop()),
                     daemon=True).start()
    try:
        daemon.serve_forever()
    except StorePoisoned:
        return True
    return False


def _faulty_daemon(directory: str, name: str, stop: Any) -> str:
    """A WriterDaemon whose first flusher fdatasync of wal.log fails (EIO)."""
    from rotorshm import durable_io

    cfg = RotorTreeConfig(directory, arity=4, flush_policy=FlushPolicy.interval(3600))
    # fdatasync #1 of wal.log is recovery's (at open); #2 is the first group commit.
    with durable_io.inject("fdatasync", 2, errno.EIO, path_contains="wal.log"):
        return "poisoned" if _serve_in_child(cfg, name, stop) else "clean"


def _poisoned_client(directory: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with rotorshm.connect(directory) as client:
        seq, size, _ = client.insert(leaf(0))
        out["first"] = (seq, size)
        try:
            out["wait"] = client.wait_durable(seq)  # no timeout: must not hang
        except StorePoisoned as exc:
            out["wait"] = f"StorePoisoned: {exc}"
        try:
            out["insert"] = client.insert(leaf(1))
        except StorePoisoned as exc:
            out["insert"] = f"StorePoisoned: {exc}"
        try:
            out["wait_later"] = client.wait_durable(seq + 1)
        except StorePoisoned:
            out["wait_later"] = "StorePoisoned"
    return out



def daemon_serving(directory: Path, name: str) -> bool:
    """True once the daemon's socket exists and its control block says the writer lives."""
    if not (directory / "writer.sock").exists():
        return False
    try:
        with rotorshm.attach(name) as reader:
            return reader.writer_alive
    except WriterGone:
        return False

def test_poisoned_daemon_fails_waiters_and_inserts_over_the_socket(tmp_path: Path):
    """Item 1: Client.wait_durable without a timeout must not hang after the flusher dies."""
    directory = tmp_path / "tree"
    name = unique_name("pois")
    stop = CTX.Event()
    daemon = spawn(_faulty_daemon, str(directory), name, stop)
    client = None
    try:
        wait_until(lambda: daemon_serving(directory, name),
                   what="the faulty daemon to come up")
        client = spawn(_poisoned_client, str(directory))
        out = client.result(60)
        assert out["first"] == (1, 1)
        assert str(out["wait"]).startswith("StorePoisoned"), out
        assert str(out["insert"]).startswith("StorePoisoned"), out
        assert out["wait_later"] == "StorePoisoned", out
        with rotorshm.attach(name) as reader:  # readers still get the published tree
            assert reader.size == 1 and reader.writer_alive
        stop.set()
        assert daemon.result() == "poisoned"
    finally:
        stop.set()
        if client is not None:
            client.kill()
        daemon.kill()
        unlink_segments(name)
    # Reopening recovers from the WAL (here the page cache still holds the record).
    with RotorTree.open(RotorTreeConfig(str(directory), arity=4)) as tree:
        assert tree.size == 1 and tree.root == leaf(0)


# -- a fault at a call site of the daemon's store ------------------------------------------------


def _daemon_with_fault(directory: str, name: str, stop: Any, site: str, nth: int, err: int,
                       pin: int | None, ckpt: str) -> str:
    """A WriterDaemon (in this child) whose Nth call at `site` fails with `err`."""
    from rotorshm import CheckpointPolicy, durable_io

    policy = (CheckpointPolicy.manual() if ckpt == "manual"
              else CheckpointPolicy.every_n_entries(int(ckpt.split(":")[1])))
    tiering = TieringConfig() if pin is None else TieringConfig(pin_above_level=pin)
    cfg = RotorTreeConfig(directory, arity=4, flush_policy=FlushPolicy.interval(3600),
                          checkpoint_policy=policy, tiering=tiering)
    with durable_io.inject(site=site, nth=nth, errno=err) as layer:
        poisoned = _serve_in_child(cfg, name, stop)
    return f"{'poisoned' if poisoned else 'clean'} fired={layer.fired}"


# (site, nth, errno, pin_above_level, checkpoint policy, what the client must see)
DAEMON_FAULTS = {
    "group-commit-EIO": ("fdatasync wal.WriteAheadLog.sync ~/wal.log", 3, errno.EIO, None,
                         "manual", "poisoned"),
    "wal-write-EIO": ("write wal.WriteAheadLog.append_many ~/wal.log", 4, errno.EIO, 2,
                      "manual", "poisoned"),
    "wal-write-ENOSPC": ("write wal.WriteAheadLog.append_many ~/wal.log", 4, errno.ENOSPC,
                         None, "manual", "full"),
    "checkpoint-msync-EIO": ("msync levels._ReservedLevel.flush_range "
                             "~/data/level_N/shard_N.bin", 1, errno.EIO, None, "every:120",
                             "poisoned"),
    "shm-fallocate-ENOSPC": ("fallocate levels._ReservedLevel._allocate shm:LN.SN", 3,
                             errno.ENOSPC, 0, "manual", "full"),
}


@pytest.mark.parametrize("case", list(DAEMON_FAULTS))
def test_fault_in_the_daemon_fails_clients_clearly_and_a_restart_recovers(
    tmp_path: Path, case: str, started: list[Daemon]
):
    """A fault injected inside the writer daemon: the client's insert or durability wait
    fails with an error naming the call and the file, a poisoned daemon refuses every
    later insert, an attached reader keeps proving from its snapshot (also after the
    daemon is gone), and a restarted daemon holds every acknowledged leaf."""
    site, nth, err, pin, ckpt, expect = DAEMON_FAULTS[case]
    kind = site.split(" ", 1)[0]
    directory = tmp_path / "tree"
    name = unique_name("flt")
    stop = CTX.Event()
    daemon = spawn(_daemon_with_fault, str(directory), name, stop, site, nth, err, pin, ckpt)
    reader = None
    acked = 0
    errors: list[BaseException] = []
    try:
        wait_until(lambda: daemon_serving(directory, name),
                   what="the daemon with a fault to come up")
        reader = rotorshm.attach(name)
        pos = 0
        with rotorshm.connect(directory) as client:
            for _ in range(8):
                try:
                    seq, size, _ = client.insert_many(leaf_range(pos, pos + 40))
                    pos = size
                    assert client.wait_durable(seq, TIMEOUT)
                    acked = size
                except (StorePoisoned, rotorshm.StorageFull) as exc:
                    errors.append(exc)
            assert errors, "the fault never reached the client"
            first = str(errors[0])
            assert kind in first and ("wal.log" in first or "shard_" in first
                                      or ".L" in first), first
            if expect == "poisoned":
                assert all(isinstance(e, StorePoisoned) for e in errors), errors
                assert len(errors) >= 8 - (acked // 40) - 1  # every later call refused
                with pytest.raises(StorePoisoned):
                    client.insert(leaf(10**6))
            else:  # a full disk: that insert failed, the daemon went on
                assert len(errors) == 1 and isinstance(errors[0], rotorshm.StorageFull)
                assert acked == pos == 7 * 40
        snap = reader.snapshot()
        assert snap.size == pos and snap.root == reference_roots([pos], 4)[pos]
        assert reader.writer_alive  # a poisoned daemon stays up for its readers
        stop.set()
        outcome = daemon.result()
        assert outcome == ("poisoned fired=True" if expect == "poisoned" else
                           "clean fired=True"), outcome
        # the daemon is gone: the reader still serves its last snapshot
        last = reader.snapshot()
        assert last.size == snap.size
        for i in range(0, last.size, 7):
            assert last.generate_proof(i).verify_against(snap.root, snap.size)
    finally:
        stop.set()
        daemon.kill()
        if reader is not None:
            reader.close()
        unlink_segments(name)
    d = start_daemon(directory, name, checkpoint="manual", pin_above_level=pin)
    started.append(d)
    with rotorshm.attach(name) as r:
        size = r.size
        assert size >= acked
        assert r.root == reference_roots([size], 4)[size]
    d.stop()


# -- 6. recovery never rewrites nodes an old-epoch snapshot reads ---------------------------------


def test_old_epoch_snapshot_stays_valid_while_a_new_writer_recovers(
    tmp_path: Path, started: list[Daemon], monkeypatch: pytest.MonkeyPatch
):
    """Item 6: a reader holds the dead writer's snapshot during verify and replay."""
    from rotorshm import recovery

    directory = tmp_path / "tree"
    cfg = RotorTreeConfig(str(directory), arity=4, flush_policy=FlushPolicy.manual())
    with RotorTree.open(cfg) as tree:
        tree.insert_many(leaf_range(0, 1001))  # partial groups on every level
        tree.checkpoint()
        for start in range(1001, 1600, 37):  # many records after the checkpoint
            tree.insert_many(leaf_range(start, min(start + 37, 1600)))
    name = unique_name("old")
    d = start_daemon(directory, name, checkpoint="manual")
    started.append(d)
    reader = rotorshm.attach(name)
    try:
        snap = reader.snapshot()
        assert snap.size == 1600
        root = snap.root
        assert root == reference_roots([1600], 4)[1600]
        d.kill()
        failures: list[str] = []

        def check(phase: str, done: int, total: int) -> None:
            for i in range(snap.size):
                if not snap.generate_proof(i).verify_against(root, snap.size):
                    failures.append(f"{phase} {done}/{total}: proof of leaf {i} fails")
                    return

        # several replay steps, so partial parents would be written and rewritten
        monkeypatch.setattr(recovery, "REPLAY_BATCH_BYTES", 40 * 32, raising=False)
        cfg2 = RotorTreeConfig(str(directory), arity=4, flush_policy=FlushPolicy.manual(),
                               progress=check)
        check("before", 0, 0)
        with RotorTree.open(cfg2) as tree:
            assert tree.size == 1600 and tree.root == root
            check("after", 0, 0)
        assert failures == []
    finally:
        reader.close()


# -- 7. opening X never touches the segments of a live X.x ----------------------------------------


def test_opening_a_tree_keeps_the_segments_of_a_tree_whose_name_extends_it(tmp_path: Path):
    """Item 7: the stale-segment match is the exact name.<epoch>.<level> shape."""
    base = unique_name("dot")
    pinned = TieringConfig(pin_above_level=0)
    other = RotorTree.open(RotorTreeConfig(str(tmp_path / "b"), name=base + ".x", tiering=pinned))
    try:
        other.insert_many(leaf_range(0, 100))
        mine = sorted(e for e in os.listdir(SHM_DIR) if e.startswith(f"rotorshm.{base}.x."))
        assert len(mine) == other.depth + 1
        with RotorTree.open(RotorTreeConfig(str(tmp_path / "a"), name=base, tiering=pinned)) as t:
            t.insert_many(leaf_range(0, 10))
        still = sorted(e for e in os.listdir(SHM_DIR) if e.startswith(f"rotorshm.{base}.x."))
        assert still == mine, "opening tree X removed segments of the live tree X.x"
        assert other.snapshot().generate_proof(7).verify_against(other.root, 100)
        other.insert_many(leaf_range(100, 200))
        assert other.root == reference_roots([200], 4)[200]
    finally:
        other.close()
    assert segments_of(base) == [] and segments_of(base + ".x") == []


# -- 8. one Reader (and its snapshots and levels) shared by threads -------------------------------


def _ingest(directory: str, batches: int, stop: Any) -> int:
    pos = 0
    with rotorshm.connect(directory) as client:
        for _ in range(batches):
            if stop.is_set():
                break
            _, size, _ = client.insert_many(leaf_range(pos, pos + 3))
            pos = size
    return pos


def test_reader_shared_by_threads_never_returns_a_torn_snapshot(
    tmp_path: Path, started: list[Daemon]
):
    """Item 8: 3 threads hammer one Reader while a writer ingests: 0 inconsistent states."""
    name = unique_name("thr")
    d = start_daemon(tmp_path / "tree", name, pin_above_level=2)
    started.append(d)
    batches = 3000
    roots = reference_roots(range(0, 3 * batches + 1, 3), 4)
    stop = CTX.Event()
    feeder = spawn(_ingest, str(d.directory), batches, stop)
    reader = rotorshm.attach(name)
    bad: list[str] = []
    counts: list[int] = []
    lock = threading.Lock()
    go = threading.Barrier(4, timeout=TIMEOUT)

    def hammer(k: int) -> None:
        go.wait()
        n = 0
        last = 0
        while n < 60_000:
            snap = reader.snapshot()
            n += 1
            size = snap.size
            ok = size % 3 == 0 and size >= last and snap.root == roots.get(size)
            ok = ok and tuple(snap.level_len(lvl) for lvl in range(snap.depth + 1)) == (
                level_lengths(size, 4) or (0,))
            if ok and size and n % 512 == 0:
                i = (n * 7919 + k) % size
                ok = snap.generate_proof(i).verify_against(snap.root, size)
            if not ok:
                with lock:
                    bad.append(f"thread {k}: size {size} root {snap.root!r}")
            last = size
        with lock:
            counts.append(n)

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(3)]
    try:
        for t in threads:
            t.start()
        go.wait()
        for t in threads:
            t.join(TIMEOUT * 4)
        assert not any(t.is_alive() for t in threads)
    finally:
        stop.set()
        feeder.result()
        reader.close()
    assert sum(counts) == 180_000
    assert bad == [], f"{len(bad)} inconsistent snapshots, e.g. {bad[:3]}"


def test_two_in_flight_state_reads_never_share_an_output_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Item 8: the seqlock copy goes into a buffer of each call's own (injected delay)."""
    name = unique_name("buf")
    ctl = shm_mod.ControlBlock.create(name, arity=4, max_depth=20, epoch=3,
                                      directory=str(tmp_path), segment_prefix="/p.",
                                      pin_above_level=0)
    reader_ctl = shm_mod.ControlBlock.attach(name)
    try:
        ctl.publish(1, 1, (1,), (leaf(0),))
        real = shm_mod.lib
        both = threading.Barrier(2, timeout=2.0)
        outs: list[int] = []

        class SlowLib:
            def __getattr__(self, attr: str) -> Any:
                return getattr(real, attr)

            def rs_seqlock_read(self, *args: Any) -> int:
                r = int(real.rs_seqlock_read(*args))
                outs.append(int(shm_mod.ffi.cast("uintptr_t", args[2])))
                with contextlib.suppress(threading.BrokenBarrierError):
                    both.wait()  # both copies made before either is converted
                return r

        monkeypatch.setattr(shm_mod, "lib", SlowLib())
        results: list[Any] = []
        threads = [threading.Thread(target=lambda: results.append(reader_ctl.read_state()))
                   for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert len(outs) == 2 and outs[0] != outs[1], "two reads copied into one buffer"
        assert all(r is not None and r.size == 1 for r in results)
    finally:
        reader_ctl.close()
        ctl.unlink()
        ctl.close()


def test_level_region_growth_is_locked():
    """Item 8: two threads mapping the same new region must not both append it."""
    from rotorshm.levels import CHUNK_BYTES, Level

    opened: list[int] = []
    both = threading.Barrier(2, timeout=1.0)

    class Slow(Level):
        def __init__(self) -> None:
            super().__init__(0, 1)

        def _open_region(self, index: int, create: bool) -> memoryview:
            opened.append(index)
            with contextlib.suppress(threading.BrokenBarrierError):
                both.wait()  # two threads inside at once, if nothing serialises them
            return memoryview(bytearray(index.to_bytes(1, "little") * CHUNK_BYTES))

    level = Slow()
    threads = [threading.Thread(target=level.node, args=(0,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert opened == [0]
    assert level.capacity == 128  # exactly one region, not region 0 mapped twice


def test_reattach_waits_for_reads_in_flight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            started: list[Daemon]):
    """Item 8: reattach() must not unmap the control block under another thread's read."""
    name = unique_name("rea")
    d = start_daemon(tmp_path / "tree", name)
    started.append(d)
    reader = rotorshm.attach(name)
    old = reader._ctl
    assert old is not None
    real = shm_mod.lib
    inside = threading.Event()
    release = threading.Event()

    class HeldLib:
        def __getattr__(self, attr: str) -> Any:
            return getattr(real, attr)

        def rs_seqlock_read(self, *args: Any) -> int:
            r = int(real.rs_seqlock_read(*args))
            if threading.current_thread().name == "held-reader":
                inside.set()
                release.wait(TIMEOUT)
            return r

    monkeypatch.setattr(shm_mod, "lib", HeldLib())
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(reader.snapshot()), name="held-reader")
    t.start()
    try:
        assert inside.wait(TIMEOUT)
        r = threading.Thread(target=reader.reattach)
        r.start()
        r.join(0.5)  # it must still be waiting for the read in flight (bounded check)
        still_mapped = not old._closed
        release.set()
        r.join(TIMEOUT)
        t.join(TIMEOUT)
        assert still_mapped, "reattach() unmapped the control block under a read in flight"
        assert old._closed and not r.is_alive()
        assert got and got[0].size == 0
        assert reader.snapshot().size == 0 and reader._ctl is not old
    finally:
        release.set()
        reader.close()


# -- 9. minor items -------------------------------------------------------------------------------


def test_client_wait_durable_checks_the_writer_epoch(tmp_path: Path, started: list[Daemon]):
    """Item 9: a client must not take a new writer's durable sequence for its own record."""
    directory = tmp_path / "tree"
    name = unique_name("epo")
    d1 = start_daemon(directory, name, flush_interval_ms=3_600_000, checkpoint="manual")
    started.append(d1)
    client = rotorshm.connect(directory)
    try:
        seq, _, _ = client.insert(leaf(1000))  # never fsynced
        d1.kill()
        os.truncate(directory / "wal.log", 0)  # a power cut dropped the unsynced record
        d2 = start_daemon(directory, name, checkpoint="manual")
        started.append(d2)
        with rotorshm.connect(directory) as other:
            seq2, _, _ = other.insert(leaf(0))  # the new writer reuses sequence 1
            assert other.wait_durable(seq2, TIMEOUT)
        assert seq2 == seq
        with pytest.raises(WriterGone):
            client.wait_durable(seq, 5.0)  # the old answer would be True: a lost leaf
    finally:
        client.close()


def test_attach_loads_the_magic_with_acquire_ordering(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path):
    """Item 9: the magic (stored last, with release) is read with an acquire load."""
    name = unique_name("acq")
    ctl = shm_mod.ControlBlock.create(name, arity=4, max_depth=20, epoch=5,
                                      directory=str(tmp_path), segment_prefix="/p.",
                                      pin_above_level=0)
    loads: list[tuple[int, int]] = []
    real = shm_mod.SharedWords

    class Spy(real):  # type: ignore[misc, valid-type]
        def load_u64(self, off: int) -> int:
            value = super().load_u64(off)
            loads.append((off, value))
            return int(value)

    monkeypatch.setattr(shm_mod, "SharedWords", Spy)
    try:
        block = shm_mod.ControlBlock.attach(name)
        block.close()
        assert loads and loads[0] == (0, int.from_bytes(shm_mod.MAGIC, "little")), loads
    finally:
        ctl.unlink()
        ctl.close()


def test_half_created_control_block_is_not_clobbered(tmp_path: Path):
    """Item 9: a block still being created belongs to a starting writer, not to a dead one."""
    import posix_ipc

    name = unique_name("half")
    seg = shm_mod.control_name(name)
    half = posix_ipc.SharedMemory(seg, posix_ipc.O_CREX, mode=0o600, size=0)
    half.close_fd()
    try:
        assert shm_mod.ControlBlock.live_owner(name) is not None
        with pytest.raises(rotorshm.TreeLocked):
            shm_mod.ControlBlock.create(name, arity=4, max_depth=20, epoch=7,
                                        directory=str(tmp_path), segment_prefix="/p.",
                                        pin_above_level=0)
        assert os.path.exists(os.path.join(SHM_DIR, seg[1:]))
        # Abandoned long ago (its creator died half-way): then it is stale.
        old = time.time() - 3600
        os.utime(os.path.join(SHM_DIR, seg[1:]), (old, old))
        assert shm_mod.ControlBlock.live_owner(name) is None
        block = shm_mod.ControlBlock.create(name, arity=4, max_depth=20, epoch=7,
                                            directory=str(tmp_path), segment_prefix="/p.",
                                            pin_above_level=0)
        block.unlink()
        block.close()
    finally:
        unlink_segments(name)


def test_failed_fallocate_of_a_control_block_leaves_nothing(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    """Item 9: /dev/shm full while creating the control block: no half-made segment left."""
    name = unique_name("fal")

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    try:
        with pytest.raises(OSError):
            shm_mod.ControlBlock.create(name, arity=4, max_depth=20, epoch=9,
                                        directory=str(tmp_path), segment_prefix="/p.",
                                        pin_above_level=0)
        monkeypatch.undo()
        assert segments_of(name) == [], "the half-made control block was left in /dev/shm"
    finally:
        unlink_segments(name)

