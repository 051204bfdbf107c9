"""Regression tests of issue 13: durability and concurrency defects (one or more per item).

Faults are injected through the one door for durable I/O (rotorshm.durable_io): its
FaultLayer fails the Nth call of a chosen kind (fsync, fdatasync, msync, dirsync, ...)
with a chosen errno, exactly where the real syscall would have failed. Syscall-order
checks use `strace` when it is installed (skipped otherwise). Nothing here asserts on
wall-clock time; waits are bounded failure guards.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from reference import leaves, ref_root

from rotorshm import (
    CheckpointPolicy,
    FlushPolicy,
    RotorTree,
    RotorTreeConfig,
    StorePoisoned,
    TieringConfig,
    durable_io,
)
from rotorshm import wal as wal_mod

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
SYNC_KINDS = ["fsync", "fdatasync", "msync", "dirsync"]


def config(path: Path, *, pin: int | None = None, **kw: object) -> RotorTreeConfig:
    tiering = TieringConfig() if pin is None else TieringConfig(pin_above_level=pin)
    return RotorTreeConfig(str(path), arity=4, tiering=tiering, **kw)  # type: ignore[arg-type]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")])
    return env


def run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=child_env(), timeout=timeout, check=False)


def reopen_size(path: Path, pin: int | None = None) -> int:
    """Reopen without faults; the tree must be exactly a prefix of the leaf stream."""
    with RotorTree.open(config(path, pin=pin, flush_policy=FlushPolicy.manual())) as tree:
        size = tree.size
        assert tree.root == ref_root(leaves(size), 4)
        return size


# -- 1. a failed sync is permanent -------------------------------------------------------------


def test_failed_wal_fdatasync_poisons_flush_insert_and_tokens(tree_dir: Path):
    """Item 1: flush() after a failed fdatasync must not "succeed" and claim durability."""
    with RotorTree.open(config(tree_dir, flush_policy=FlushPolicy.manual())) as tree:
        tree.insert_many(leaves(10))
        tree.flush()
        durable = tree.durable_seq
        _, token = tree.insert_many(leaves(5, 10))
        with (durable_io.inject("fdatasync", 1, errno.EIO, path_contains="wal.log") as fault,
              pytest.raises(StorePoisoned)):
            tree.flush()
        assert fault.fired
        # The retry is what Linux would let "succeed" although the pages never reached disk.
        with pytest.raises(StorePoisoned):
            tree.flush()
        assert tree.durable_seq == durable and not token.is_durable
        with pytest.raises(StorePoisoned):
            token.wait()  # no timeout: must not hang either
        with pytest.raises(StorePoisoned):
            tree.insert(leaves(1, 15)[0])
        with pytest.raises(StorePoisoned):
            tree.checkpoint()
        assert tree.size == 15 and tree.durable_seq == durable
        assert tree.poisoned is not None
        with pytest.raises(StorePoisoned):
            tree.close()
    assert tree.closed
    # Reopening recovers from the WAL (the page cache still has the records here).
    assert reopen_size(tree_dir) == 15


def test_interval_flusher_failure_fails_waiters_and_later_writes(tree_dir: Path):
    """Item 1: with the interval policy the flusher must not die silently."""
    cfg = config(tree_dir, flush_policy=FlushPolicy.interval(0.005))
    with RotorTree.open(cfg) as tree:
        with durable_io.inject("fdatasync", 1, errno.EIO, path_contains="wal.log") as fault:
            _, token = tree.insert_many(leaves(4))
            with pytest.raises(StorePoisoned):
                token.wait()
        assert fault.fired and tree.durable_seq == 0
        with pytest.raises(StorePoisoned):
            tree.insert(leaves(1, 4)[0])
        with pytest.raises(StorePoisoned):
            tree.flush()  # a later flush() must not advance durable_seq either
        assert tree.durable_seq == 0 and tree.size == 4
        with pytest.raises(StorePoisoned):
            tree.close()
    assert reopen_size(tree_dir) == 4


@pytest.mark.parametrize("kind", ["msync", "fdatasync"])
def test_failed_automatic_checkpoint_does_not_fail_a_landed_insert(tree_dir: Path, kind: str):
    """Item 1: EIO inside an automatic checkpoint, after the insert landed.

    The insert returns (it is in the tree: a retry would insert it twice); its token,
    every later write and the next checkpoint report StorePoisoned, so the checkpoint
    never "succeeds" over shard pages whose writeback failed.
    """
    cfg = config(tree_dir, flush_policy=FlushPolicy.manual(),
                 checkpoint_policy=CheckpointPolicy.every_n_entries(8))
    with RotorTree.open(cfg) as tree:
        tree.insert_many(leaves(100))
        with durable_io.inject(kind, 1, errno.EIO, path_contains="level_") as fault:
            _, token = tree.insert_many(leaves(8, 100))  # triggers the checkpoint
        assert fault.fired
        assert tree.size == 108
        with pytest.raises(StorePoisoned):
            token.wait(30)
        with pytest.raises(StorePoisoned):
            tree.insert_many(leaves(8, 108))
        assert tree.size == 108
        with pytest.raises(StorePoisoned):
            tree.checkpoint()
        assert tree.checkpoint_meta.size != 108
        with pytest.raises(StorePoisoned):
            tree.close()
    assert reopen_size(tree_dir) == 108


def test_failed_fsync_in_wal_reset_keeps_the_tree_openable(tree_dir: Path):
    """Item 1: EIO on the fsync of wal.reset(): no append after a zero hole, reopen works."""
    cfg = config(tree_dir, flush_policy=FlushPolicy.manual())
    with RotorTree.open(cfg) as tree:
        tree.insert_many(leaves(50))
        with (durable_io.inject("fsync", 1, errno.EIO, path_contains="wal.log") as fault,
              pytest.raises(StorePoisoned)):
            tree.checkpoint()
        assert fault.fired
        with pytest.raises(StorePoisoned):
            tree.insert_many(leaves(3, 50))
        assert tree.size == 50
        with pytest.raises(StorePoisoned):
            tree.close()
    assert reopen_size(tree_dir) == 50
    with RotorTree.open(cfg) as tree:  # and it keeps working after the reopen
        tree.insert_many(leaves(3, 50))
    assert reopen_size(tree_dir) == 53


# -- the fault sweep: every call site of a workload x {EIO, ENOSPC} is test_fault_sweep.py ----


# -- 4. batches over the record payload limit ----------------------------------------------------


def test_batch_over_the_record_limit_is_split_and_recovered_whole(
    tree_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    """Item 4 (scaled down: 5 leaves per record instead of 1 GiB)."""
    monkeypatch.setattr(wal_mod, "MAX_PAYLOAD", 5 * 32)
    cfg = config(tree_dir, flush_policy=FlushPolicy.manual())
    with RotorTree.open(cfg) as tree:
        tree.insert_many(leaves(3))
        _, token = tree.insert_many(leaves(23, 3))  # 5 records
        tree.flush()
        assert token.is_durable and tree.size == 26
    records = wal_mod.scan(str(tree_dir / "wal.log")).records
    assert [len(r.payload) // 32 for r in records] == [3, 5, 5, 5, 5, 3]
    assert reopen_size(tree_dir) == 26

    # A split batch torn anywhere (its last record missing) is dropped as a whole.
    with RotorTree.open(cfg) as tree:
        tree.insert_many(leaves(12, 26))  # 3 more records: 5 + 5 + 2 leaves
    wal_path = tree_dir / "wal.log"
    data = wal_path.read_bytes()
    records = wal_mod.scan(str(wal_path)).records
    cuts = [records[-3].offset + 7, records[-2].offset, records[-1].offset + 20]
    for cut in cuts:
        wal_path.write_bytes(data[:cut])
        assert reopen_size(tree_dir) == 26, cut
    # ... and the log keeps working after that cut.
    with RotorTree.open(cfg) as tree:
        tree.insert_many(leaves(12, 26))
    assert reopen_size(tree_dir) == 38


# -- 5. the control block's durable sequence is monotonic ----------------------------------------


def test_durable_sequence_never_goes_backwards(tree_dir: Path):
    """Item 5: a flusher preempted between durable_seq and its publication (injected delay)."""
    from daemon_util import unique_name, wait_until

    from rotorshm.shm import ControlBlock

    name = unique_name("mono")
    cfg = config(tree_dir, flush_policy=FlushPolicy.interval(3600))  # only on request
    tree = RotorTree.open(cfg)
    ctl = ControlBlock.create(name, arity=4, max_depth=20, epoch=tree.epoch,
                              directory=str(tree_dir), segment_prefix=tree.segment_prefix,
                              pin_above_level=1 << 30)
    try:
        entered = threading.Event()
        second = threading.Event()
        published: list[int] = []
        lock = threading.Lock()

        def hook(seq: int) -> None:
            if not entered.is_set():  # the flusher's publication, held back
                entered.set()
                second.wait(2.0)  # bounded: the fixed code never lets the second one in
            else:
                second.set()
            with lock:
                published.append(seq)
            ctl.set_durable(seq)

        tree.add_durable_hook(hook)
        tree.insert(leaves(1)[0])  # seq 1
        tree.request_sync()  # the flusher makes seq 1 durable, then stalls in the hook
        assert entered.wait(30)
        tree.insert(leaves(1, 1)[0])  # seq 2
        tree.checkpoint()  # durable through 2
        wait_until(lambda: len(published) == 2, what="both durable publications")
        assert published == sorted(published), published
        assert ctl.durable_seq == 2
        assert ctl.wait_durable(2, 5.0)
    finally:
        tree.close()
        ctl.unlink()
        ctl.close()


# -- 2 and 3. recovery and creation fsync what they must (syscall traces) -----------------------

STRACE = shutil.which("strace")

CRASH_WRITER = r'''
import json, os, sys
from rotorshm import FlushPolicy, RotorTree, RotorTreeConfig
a = json.loads(sys.argv[1])
t = RotorTree.open(RotorTreeConfig(a["path"], arity=4, flush_policy=FlushPolicy.manual()))
for i in range(a["batches"]):
    t.insert_many(b"".join((a["start"] + i * 10 + j).to_bytes(8, "little") + bytes(24)
                           for j in range(10)))
if a.get("flush"):
    t.flush()
print(t.size, t.durable_seq, flush=True)
os._exit(0)  # like kill -9: no close, no flush
'''

OPENER = r'''
import json, os, sys
from rotorshm import FlushPolicy, RotorTree, RotorTreeConfig
a = json.loads(sys.argv[1])
os.write(1, b"OPEN-BEGIN\n")
t = RotorTree.open(RotorTreeConfig(a["path"], arity=4, flush_policy=FlushPolicy.manual()))
os.write(1, ("OPEN-END %d %d\n" % (t.size, t.durable_seq)).encode())
if a.get("insert_durable"):
    t.insert_durable(bytes(32))
    os.write(1, b"ACKED\n")
os._exit(0)
'''


def strace_run(tmp_path: Path, script: str, args: dict) -> tuple[list[str], str]:
    """Run `script` under strace; return the trace lines (in order) and the stdout."""
    if STRACE is None:
        pytest.skip("strace is not installed")
    out = tmp_path / "strace.out"
    res = subprocess.run(
        [STRACE, "-f", "-y", "-qq", "-o", str(out),
         "-e", "trace=openat,mkdir,fsync,fdatasync,write,rename", sys.executable, "-c",
         script, json.dumps(args)],
        capture_output=True, text=True, env=child_env(), timeout=180, check=False)
    if res.returncode != 0 and "ptrace" in res.stderr:
        pytest.skip(f"strace cannot trace here: {res.stderr.strip()[:200]}")
    assert res.returncode == 0, res.stdout + res.stderr
    return out.read_text().splitlines(), res.stdout


def index_of(lines: list[str], pred: Callable[[str], bool], start: int = 0) -> int:
    for i in range(start, len(lines)):
        if pred(lines[i]):
            return i
    return -1


def synced(line: str, path: str) -> bool:
    """A successful fsync/fdatasync of `path` (strace -y shows fd paths)."""
    return ((line.split("(", 1)[0].split()[-1] in ("fsync", "fdatasync"))
            and f"<{path}>)" in line and line.rstrip().endswith("= 0"))


def test_recovery_syncs_wal_and_data_dir_before_claiming_durable(tree_dir: Path, tmp_path: Path):
    """Item 2: records a killed writer left in the page cache are fdatasynced by recovery,
    and data/ is fsynced, before open() returns a durable_seq covering them."""
    res = run_python(CRASH_WRITER, json.dumps({"path": str(tree_dir), "batches": 5, "start": 0}))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["50", "0"]  # nothing was ever fsynced by the writer
    lines, stdout = strace_run(tmp_path, OPENER, {"path": str(tree_dir)})
    assert "OPEN-END 50 5" in stdout  # all five records reported durable...
    begin = index_of(lines, lambda s: "OPEN-BEGIN" in s)
    end = index_of(lines, lambda s: "OPEN-END" in s, begin)
    assert 0 <= begin < end
    during = lines[begin:end]
    wal = os.path.realpath(tree_dir / "wal.log")
    data = os.path.realpath(tree_dir / "data")
    # ...so open() must have synced the WAL and data/ before saying so
    assert any(synced(s, wal) for s in during), "recovery never synced wal.log"
    assert any(synced(s, data) for s in during), "recovery never fsynced data/"


def test_new_tree_and_wal_entries_are_fsynced_into_their_directories(tmp_path: Path):
    """Item 3: create -> dirsync before anything is acknowledged durable."""
    parent = tmp_path / "parent"
    parent.mkdir()
    path = parent / "tree"
    lines, stdout = strace_run(tmp_path, OPENER, {"path": str(path), "insert_durable": True})
    assert "ACKED" in stdout
    tree = os.path.realpath(path)
    mk = index_of(lines, lambda s: f'mkdir("{tree}"' in s and "= 0" in s)
    assert mk >= 0, "the tree directory was not created by mkdir"
    assert index_of(lines, lambda s: synced(s, os.path.realpath(parent)), mk) > mk, \
        "the new tree directory was never fsynced into its parent"
    created = index_of(lines, lambda s: "wal.log" in s and "O_CREAT" in s and "openat" in s)
    assert created >= 0
    acked = index_of(lines, lambda s: "ACKED" in s)
    dirsync = index_of(lines, lambda s: synced(s, tree), created)
    assert created < dirsync < acked, "wal.log's directory entry was not fsynced after creating it"
