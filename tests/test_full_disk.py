"""A full disk: StorageFull at insert time (WAL growth, shard reservation) and at checkpoint
time, the tree still readable afterwards, and nothing acknowledged lost on reopen.

Mechanism 1 (always): RLIMIT_FSIZE in a child process, with SIGXFSZ ignored, so that
growing a file past the limit fails with EFBIG (or a short write). The limit is set after
the child opened the tree: a level's 256 MiB region (a sparse shard file, or a /dev/shm
segment for pinned levels) is sized when it is first created, so a limit below 256 MiB
makes *new* regions fail, which is exactly the shard-reservation case.

Mechanism 2 (when this machine lets us mount): a small tmpfs, so that the filesystem
really runs out of space (ENOSPC). Skipped, with the reason, when mounting is refused.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from reference import leaves, ref_root

from rotorshm import (
    CheckpointPolicy,
    FlushPolicy,
    LeanIMT,
    RotorTree,
    RotorTreeConfig,
    StorageFull,
    TieringConfig,
)

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}

CHILD = r'''
import errno, json, os, resource, signal, sys
from rotorshm import (CheckpointPolicy, FlushPolicy, LeanIMT, RotorTree, RotorTreeConfig,
                      StorageFull, TieringConfig)

a = json.loads(sys.argv[1])

def leaf(i):
    return i.to_bytes(8, "little") + bytes(24)

def emit(**kw):
    print(json.dumps(kw), flush=True)

def policy(spec):
    kind, value = spec
    return getattr(CheckpointPolicy, kind)(*([value] if value is not None else []))

pin = a["pin"]
cfg = RotorTreeConfig(
    a["path"], arity=4,
    flush_policy=FlushPolicy.interval(0.010),
    checkpoint_policy=policy(a.get("ckpt", ["manual", None])),
    tiering=TieringConfig() if pin is None else TieringConfig(pin_above_level=pin),
)
t = RotorTree.open(cfg)
wal = os.path.join(a["path"], "wal.log")
limit = a["limit"]
if a.get("limit_over"):  # relative to an existing file's size
    limit += os.path.getsize(os.path.join(a["path"], a["limit_over"]))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
# the soft limit is what fails writes; keep the hard one raisable if the plan lifts it
hard = resource.RLIM_INFINITY if any(s["op"] == "unlimit" for s in a["steps"]) else limit
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
emit(event="ready", size=t.size, limit=limit)

def state():
    snap = t.snapshot()
    ok = True
    for i in {0, t.size // 2, t.size - 1}:
        ok = ok and snap.generate_proof(i).verify_against(t.root, t.size)
        ok = ok and snap.get_leaf(i) == leaf(i)
    return dict(size=t.size, root=t.root.hex(), proofs_ok=ok, wal=os.path.getsize(wal))

def failure(op, exc, before, wal_before):
    emit(event="full", op=op, type=type(exc).__name__,
         storage_full=isinstance(exc, StorageFull), oserror=isinstance(exc, OSError),
         errno=getattr(exc, "errno", None), msg=str(exc), size_before=before,
         wal_before=wal_before, **state())

for step in a["steps"]:
    op = step["op"]
    if op == "insert":  # insert until StorageFull (or `max` leaves), acknowledging each
        for _ in range(step["max"]):
            before, wal_before = t.size, os.path.getsize(wal)
            n = step.get("batch", 1)
            try:
                if n == 1:
                    _, token = t.insert(leaf(before))
                else:
                    _, token = t.insert_many([leaf(j) for j in range(before, before + n)])
                if not token.wait(30):
                    sys.exit("token.wait timed out")
            except StorageFull as exc:
                failure(op, exc, before, wal_before)
                break
            emit(event="ack", size=t.size)
        else:
            emit(event="no_error", **state())
    elif op == "checkpoint":
        before, wal_before = t.size, os.path.getsize(wal)
        try:
            meta = t.checkpoint()
        except StorageFull as exc:
            failure(op, exc, before, wal_before)
        else:
            emit(event="checkpointed", seq=meta.seq, **state())
    elif op == "unlimit":
        resource.setrlimit(resource.RLIMIT_FSIZE,
                           (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    elif op == "state":
        emit(event="state", **state())
if a.get("close", True):
    t.close()
    emit(event="closed")
else:
    os._exit(0)  # like a crash: no close(), no final flush
'''


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")])
    return env


def tiering(pin: int | None) -> TieringConfig:
    return TieringConfig() if pin is None else TieringConfig(pin_above_level=pin)


def prepare(path: Path, pin: int | None, count: int) -> None:
    """A tree of `count` leaves, checkpointed (so its WAL is empty), created without limits."""
    with RotorTree.open(RotorTreeConfig(str(path), tiering=tiering(pin))) as tree:
        tree.insert_many(leaves(count))
        tree.checkpoint()
    assert (path / "wal.log").stat().st_size == 0


def run_child(tmp_path: Path, **args: object) -> list[dict]:
    script = tmp_path / "full_child.py"
    script.write_text(CHILD)
    res = subprocess.run([sys.executable, str(script), json.dumps(args)], capture_output=True,
                         text=True, env=child_env(), timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def acked(events: list[dict], start: int) -> int:
    return max([e["size"] for e in events if e["event"] == "ack"], default=start)


def check_failure(ev: dict, *, op: str, where: str) -> None:
    """The error is a StorageFull (an OSError), the failed call changed nothing, reads work."""
    assert ev["event"] == "full" and ev["op"] == op, ev
    assert ev["type"] == "StorageFull" and ev["storage_full"] and ev["oserror"], ev
    assert ev["errno"] in FULL_ERRNOS, ev
    assert where in ev["msg"], ev
    assert ev["size"] == ev["size_before"], "a failed insert or checkpoint changed the tree"
    assert ev["root"] == ref_root(leaves(ev["size"]), 4).hex()
    assert ev["proofs_ok"]
    if op == "insert":
        assert ev["wal"] == ev["wal_before"], "a failed insert left bytes in the WAL"


def reopen_and_check(path: Path, pin: int | None, at_least: int, exactly: int | None = None):
    with RotorTree.open(RotorTreeConfig(str(path), tiering=tiering(pin))) as tree:
        size = tree.size
        assert size >= at_least
        if exactly is not None:
            assert size == exactly
        assert tree.root == ref_root(leaves(size), 4)
        assert tree.root == LeanIMT(4).insert_many(leaves(size))
        return size


# -- RLIMIT_FSIZE ----------------------------------------------------------------------------

@pytest.mark.parametrize("pin", [None, 0], ids=["files", "pin0"])
@pytest.mark.parametrize("close", [True, False], ids=["close", "no-close"])
def test_rlimit_wal_growth(tree_dir: Path, tmp_path: Path, pin: int | None, close: bool):
    """The WAL cannot grow past the limit: StorageFull at insert, nothing half-written."""
    prepare(tree_dir, pin, 5000)  # depth 7: no new level before 16384 leaves
    events = run_child(tmp_path, path=str(tree_dir), pin=pin, limit=16 * 1024, close=close,
                       steps=[{"op": "insert", "max": 2000},
                              {"op": "insert", "max": 5, "batch": 10}])
    fulls = [e for e in events if e["event"] == "full"]
    assert len(fulls) == 2, events
    for ev in fulls:
        check_failure(ev, op="insert", where="wal.log")
    n = acked(events, 5000)
    assert n == fulls[0]["size"] == fulls[1]["size"]
    assert 5000 + 300 < n < 5000 + 16 * 1024 // 48 + 1  # it filled the WAL up to the limit
    reopen_and_check(tree_dir, pin, n, exactly=n)


@pytest.mark.parametrize("pin", [None, 0], ids=["files", "pin0"])
def test_rlimit_shard_reservation(tree_dir: Path, tmp_path: Path, pin: int | None):
    """A new level needs a new 256 MiB region: its reservation fails, before the WAL."""
    prepare(tree_dir, pin, 4096 - 30)  # 4**6: leaf 4097 needs a 7th hash level
    events = run_child(tmp_path, path=str(tree_dir), pin=pin, limit=1 << 20,
                       steps=[{"op": "insert", "max": 100},
                              {"op": "insert", "max": 3, "batch": 7},
                              {"op": "state"}])
    fulls = [e for e in events if e["event"] == "full"]
    assert len(fulls) == 2, events
    for ev in fulls:
        check_failure(ev, op="insert", where="reserve")
    assert acked(events, 0) == 4096
    reopen_and_check(tree_dir, pin, 4096, exactly=4096)


def test_rlimit_checkpoint_files_tier(tree_dir: Path, tmp_path: Path):
    """checkpoint.meta cannot be written: StorageFull at checkpoint, the old one still rules.

    The limit (256 bytes) is below checkpoint.meta's size (310 bytes for 6 levels), so the
    checkpoint fails after it already wrote shard data and chunk CRCs.
    """
    prepare(tree_dir, None, 1000)
    events = run_child(tmp_path, path=str(tree_dir), pin=None, limit=256,
                       steps=[{"op": "insert", "max": 3},
                              {"op": "checkpoint"},
                              {"op": "insert", "max": 10},
                              {"op": "checkpoint"}])
    fulls = [e for e in events if e["event"] == "full"]
    assert [e["op"] for e in fulls] == ["checkpoint", "insert", "checkpoint"], events
    check_failure(fulls[0], op="checkpoint", where="checkpoint")
    check_failure(fulls[1], op="insert", where="wal.log")
    check_failure(fulls[2], op="checkpoint", where="checkpoint")
    n = acked(events, 1000)
    assert n >= 1003
    reopen_and_check(tree_dir, None, n, exactly=n)


def test_rlimit_checkpoint_pinned_tier(tree_dir: Path, tmp_path: Path):
    """A pinned level's shard file cannot grow: StorageFull at checkpoint."""
    prepare(tree_dir, 0, 1000)
    events = run_child(tmp_path, path=str(tree_dir), pin=0, limit=100,
                       limit_over="data/level_0/shard_0000.bin",
                       steps=[{"op": "insert", "max": 20},
                              {"op": "checkpoint"},
                              {"op": "insert", "max": 3},  # 1023: no new level yet
                              {"op": "unlimit"},
                              {"op": "checkpoint"}])
    fulls = [e for e in events if e["event"] == "full"]
    assert len(fulls) == 1, events
    check_failure(fulls[0], op="checkpoint", where="level_0")
    done = [e for e in events if e["event"] == "checkpointed"]
    assert len(done) == 1 and done[0]["size"] == 1023 and done[0]["wal"] == 0
    reopen_and_check(tree_dir, 0, 1023, exactly=1023)


@pytest.mark.parametrize("policy", [["every_n_entries", 1], ["memory_threshold", 1]])
def test_rlimit_automatic_checkpoint_does_not_fail_a_completed_insert(
    tree_dir: Path, tmp_path: Path, policy: list
):
    """An insert is atomic: if it raises StorageFull, the tree must not have changed.

    With an automatic checkpoint policy the checkpoint runs inside insert(), after the
    batch is in the WAL and applied. If that checkpoint cannot be written, the insert has
    still happened, so it must not report failure (a caller retrying it would insert the
    leaf twice); the checkpoint is simply not taken yet.
    """
    prepare(tree_dir, None, 1000)
    events = run_child(tmp_path, path=str(tree_dir), pin=None, limit=256, ckpt=policy,
                       steps=[{"op": "insert", "max": 3}, {"op": "checkpoint"}])
    fulls = [e for e in events if e["event"] == "full"]
    for ev in fulls:  # whatever failed must have left the tree as it was
        check_failure(ev, op=ev["op"], where="")
    n = acked(events, 1000)
    assert n == 1003, events
    # the explicit checkpoint does report that it cannot be written
    assert [e["op"] for e in fulls] == ["checkpoint"], events
    reopen_and_check(tree_dir, None, n, exactly=n)


# -- a real full filesystem: a small tmpfs -----------------------------------------------------

@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs mounted on tmp_path/fs (skipped when mounting is not permitted)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (RLIMIT_FSIZE tests cover full disks)")
    try:
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs",
                              str(mnt)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot run mount: {exc}")
    if res.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        r = subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def fill(fs: Path) -> Path:
    """Fill the filesystem completely with a filler file; return its path."""
    filler = fs / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 16, 4096, 512, 1):
            block = b"\xee" * chunk
            while True:
                try:
                    f.write(block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    return filler


@pytest.mark.parametrize("pin", [None, 0], ids=["files", "pin0"])
def test_tmpfs_wal_growth_then_reservation(small_fs: Path, pin: int | None):
    path = small_fs / "tree"
    cfg = RotorTreeConfig(str(path), arity=16, tiering=tiering(pin),
                          flush_policy=FlushPolicy.interval(0.010))
    with RotorTree.open(cfg) as tree:
        _, token = tree.insert_many(leaves(10_000))
        assert token.wait(10)
        filler = fill(small_fs)
        # the levels have reserved space ahead; the WAL needs a new page every ~85 leaves
        n = tree.size
        with pytest.raises(StorageFull) as ei:
            for i in range(10_000, 20_000):
                _, token = tree.insert(leaves(1, i)[0])
                assert token.wait(10)
                n = tree.size
        exc = ei.value
        assert isinstance(exc, OSError) and exc.errno == errno.ENOSPC
        assert "wal.log" in str(exc)
        assert tree.size == n and tree.root == ref_root(leaves(n), 16)
        assert tree.snapshot().generate_proof(n - 1).verify_against(tree.root, n)
        # a batch that crosses level 0's next 1 MiB reservation step fails before the WAL
        # (pinned levels reserve in /dev/shm instead: then the WAL write fails, undone)
        wal_size = (path / "wal.log").stat().st_size
        with pytest.raises(StorageFull, match="reserve" if pin is None else "wal.log") as ei:
            tree.insert_many(leaves(32_768, n))
        assert ei.value.errno == errno.ENOSPC
        assert (path / "wal.log").stat().st_size == wal_size
        assert tree.size == n and tree.root == ref_root(leaves(n), 16)
    # reopening on the still-full filesystem works and has everything acknowledged
    with RotorTree.open(cfg) as tree:
        assert tree.size == n and tree.root == ref_root(leaves(n), 16)
    filler.unlink()
    with RotorTree.open(cfg) as tree:
        tree.insert_many(leaves(100, n))
        tree.checkpoint()
    with RotorTree.open(cfg) as tree:
        assert tree.root == ref_root(leaves(n + 100), 16)


@pytest.mark.parametrize("pin", [None, 0], ids=["files", "pin0"])
def test_tmpfs_checkpoint(small_fs: Path, pin: int | None):
    path = small_fs / "tree"
    cfg = RotorTreeConfig(str(path), arity=16, tiering=tiering(pin),
                          checkpoint_policy=CheckpointPolicy.manual())
    with RotorTree.open(cfg) as tree:
        tree.insert_many(leaves(20_000))
        tree.checkpoint()
        tree.insert_many(leaves(5_000, 20_000))
        assert tree.insert_durable(leaves(1, 25_000)[0])
        filler = fill(small_fs)
        with pytest.raises(StorageFull) as ei:
            tree.checkpoint()
        assert isinstance(ei.value, OSError) and ei.value.errno == errno.ENOSPC
        assert tree.checkpoint_meta.size == 20_000
        assert tree.size == 25_001 and tree.root == ref_root(leaves(25_001), 16)
    with RotorTree.open(cfg) as tree:  # still full: the old checkpoint + the WAL
        assert tree.checkpoint_meta.size == 20_000
        assert tree.size == 25_001 and tree.root == ref_root(leaves(25_001), 16)
    filler.unlink()
    with RotorTree.open(cfg) as tree:
        assert tree.checkpoint().size == 25_001
    with RotorTree.open(cfg) as tree:
        assert tree.root == ref_root(leaves(25_001), 16)
