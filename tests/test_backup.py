"""Online backup (`RotorTree.backup`, `rotorshm backup`): a consistent, sparse, durable copy
of a tree while its writer ingests, in this process or in a real `rotorshm serve` daemon.

Every copy is opened with verify_checkpoint=True and compared with the reference root
(tests/reference.py) of exactly the leaves it holds; it must hold at least every leaf
that was durable when the backup began.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from daemon_util import child_env, start_daemon, unique_name
from reference import leaf, leaves, ref_root

import rotorshm
from rotorshm import CheckpointPolicy, FlushPolicy, RotorTree, RotorTreeConfig, TieringConfig
from rotorshm.backup import CHECKPOINT_LOCK_FILE, backup_tree, hold_checkpoints
from rotorshm.errors import InvalidConfig
from rotorshm.offline import disk_usage

ARITY = 4


def cfg(path: Path, pin: int | None = None, **kw: object) -> RotorTreeConfig:
    tiering = TieringConfig() if pin is None else TieringConfig(pin_above_level=pin)
    return RotorTreeConfig(str(path), arity=ARITY, tiering=tiering, **kw)  # type: ignore[arg-type]


def check_copy(path: Path, at_least: int, at_most: int | None = None) -> int:
    """Open the copy with verify_checkpoint=True; its leaves are leaf(0..size-1)."""
    with RotorTree.open(cfg(path, verify_checkpoint=True)) as tree:
        size = tree.size
        assert size >= at_least, (size, at_least)
        if at_most is not None:
            assert size <= at_most
        assert tree.root == ref_root(leaves(size), ARITY)
    return size


def rsm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rotorshm", *args], capture_output=True,
                          text=True, timeout=timeout, env=child_env())


@pytest.mark.parametrize("pin", [None, 1], ids=["files", "pin1"])
def test_backup_of_an_idle_tree_is_sparse_and_verifies(tmp_path: Path, pin: int | None):
    src, out = tmp_path / "src", tmp_path / "out"
    with RotorTree.open(cfg(src, pin)) as tree:
        tree.insert_many(leaves(100))
        tree.checkpoint()
        tree.insert_many(leaves(79, 100))  # 179 leaves: 100 checkpointed, 79 in the WAL
        tree.flush()
    result = backup_tree(str(src), str(out), verify=True)
    assert (result.size, result.checkpoint_size, result.wal_records) == (179, 100, 1)
    assert result.durable_seq is None  # no live writer: every valid record
    assert result.root == ref_root(leaves(179), ARITY).hex()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.backup-")]
    apparent, real = disk_usage(str(out))
    assert (apparent, real) == (result.apparent_bytes, result.real_bytes)
    assert apparent >= 256 << 20  # the shard files keep their apparent size ...
    assert real < 1 << 20  # ... but only the used prefix is written
    assert real <= disk_usage(str(src))[1]
    assert check_copy(out, 179, 179) == 179
    # the copy is a tree of its own: the source is untouched by writes to it
    with RotorTree.open(cfg(out)) as copy:
        copy.insert_many(leaves(5, 179))
    with RotorTree.open(cfg(src, pin, verify_checkpoint=True)) as tree:
        assert tree.size == 179 and tree.root == ref_root(leaves(179), ARITY)


def test_backup_of_an_empty_and_a_wal_only_tree(tmp_path: Path):
    with RotorTree.open(cfg(tmp_path / "empty")):
        pass
    assert backup_tree(str(tmp_path / "empty"), str(tmp_path / "e2")).size == 0
    assert check_copy(tmp_path / "e2", 0, 0) == 0
    with RotorTree.open(cfg(tmp_path / "walonly", flush_policy=FlushPolicy.manual())) as t:
        t.insert_many(leaves(10))
        t.flush()
        t.insert_many(leaves(3, 10))  # never flushed: not durable, so not in the copy
        result = t.backup(tmp_path / "w2")
        assert (result.size, result.durable_seq) == (10, 1)
    assert check_copy(tmp_path / "w2", 10, 10) == 10


def test_checkpoints_wait_for_a_backup_but_ingest_does_not(tmp_path: Path):
    src = tmp_path / "src"
    config = cfg(src, 2, checkpoint_policy=CheckpointPolicy.every_n_entries(50),
                 flush_policy=FlushPolicy.manual())
    with RotorTree.open(config) as tree:
        tree.insert_many(leaves(60))  # checkpoints at once
        assert tree.checkpoint_meta.size == 60
        explicit: list[int] = []
        with hold_checkpoints(str(src)):
            tree.insert_many(leaves(100, 60))  # due, but put off: ingest goes on
            assert tree.checkpoint_meta.size == 60 and tree.size == 160
            waiter = threading.Thread(target=lambda: explicit.append(tree.checkpoint().size))
            waiter.start()
            time.sleep(0.2)
            assert explicit == []  # an explicit checkpoint waits for the backup ...
            tree.insert_many(leaves(10, 160))  # ... without holding up ingest
        waiter.join(10)
        assert explicit and explicit[0] >= 160
        tree.insert_many(leaves(60, 170))  # and the automatic ones resume
        assert tree.checkpoint_meta.size == 230
    assert (src / CHECKPOINT_LOCK_FILE).exists()
    assert check_copy(src, 230, 230) == 230


def test_close_does_not_wait_for_a_backup(tmp_path: Path):
    src = tmp_path / "src"
    config = cfg(src, checkpoint_policy=CheckpointPolicy.on_close())
    tree = RotorTree.open(config)
    tree.insert_many(leaves(20))
    with hold_checkpoints(str(src)):
        tree.close()  # skips its on_close checkpoint: the WAL keeps the leaves
    with RotorTree.open(config) as tree:
        assert tree.checkpoint_meta.size == 0 and tree.size == 20


@pytest.mark.parametrize("pin", [None, 2], ids=["files", "pin2"])
def test_backup_while_another_thread_ingests(tmp_path: Path, pin: int | None):
    src = tmp_path / "src"
    config = cfg(src, pin, checkpoint_policy=CheckpointPolicy.every_n_entries(2_000),
                 flush_policy=FlushPolicy.interval(0.002))
    stop = threading.Event()
    durable_size = [0]
    latencies: list[float] = []
    errors: list[BaseException] = []
    with RotorTree.open(config) as tree:
        tree.insert_many(leaves(20_000))
        tree.flush()

        def ingest() -> None:
            try:
                n = 20_000
                while not stop.is_set():
                    t0 = time.perf_counter()
                    _, token = tree.insert_many(leaves(64, n))
                    latencies.append(time.perf_counter() - t0)
                    n += 64
                    token.wait(10)
                    durable_size[0] = n
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        worker = threading.Thread(target=ingest)
        worker.start()
        try:
            while durable_size[0] < 22_000:
                time.sleep(0.005)
            at_start = durable_size[0]
            before = len(latencies)
            result = tree.backup(tmp_path / "out", progress=False)
            during = latencies[before:]
            after_backup = durable_size[0]
            time.sleep(0.05)
        finally:
            stop.set()
            worker.join(30)
        assert not errors, errors
        assert during, "the writer made no insert while the backup ran"
        size_now = tree.size
    assert at_start <= result.size <= after_backup + 64
    assert check_copy(tmp_path / "out", at_start, size_now) == result.size
    # ingest never waited for the backup (a generous bound on a shared machine)
    assert max(during) < 2.0, max(during)
    assert result.real_bytes <= disk_usage(str(src))[1]


def test_backup_of_a_tree_a_daemon_is_writing(tmp_path: Path):
    """`rotorshm backup NAME OUT` (a process of its own) beside `rotorshm serve` (another),
    while a client inserts and waits for durability."""
    name = unique_name("bk")
    src = tmp_path / "src"
    daemon = start_daemon(src, name, checkpoint="every:3000", pin_above_level=2,
                          flush_interval_ms=2)
    stop = threading.Event()
    durable_size = [0]
    errors: list[BaseException] = []

    def client_loop() -> None:
        try:
            with rotorshm.connect(src) as client:
                n = 0
                while not stop.is_set():
                    seq, size, _ = client.insert_many(b"".join(leaf(i) for i in range(n, n + 50)))
                    n += 50
                    assert size == n
                    assert client.wait_durable(seq, 10)
                    durable_size[0] = n
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    worker = threading.Thread(target=client_loop)
    worker.start()
    try:
        while durable_size[0] < 8_000 and not errors:
            time.sleep(0.01)
        assert not errors, errors
        at_start = durable_size[0]
        res = rsm("backup", name, str(tmp_path / "out"), "--json", "--verify")
        assert res.returncode == 0, res.stderr
        report = json.loads(res.stdout)
        progressed = durable_size[0]
        status = rsm("status", name, "--json")
        assert status.returncode == 0, status.stderr
        disk = json.loads(status.stdout)["disk"]
        assert 0 < disk["real_bytes"] < disk["apparent_bytes"]
    finally:
        stop.set()
        worker.join(30)
        daemon.stop()
    assert not errors, errors
    assert report["durable_seq"] is not None and report["size"] >= at_start
    assert progressed > at_start, "the client made no progress while the backup ran"
    size = check_copy(tmp_path / "out", at_start)
    assert size == report["size"] and report["root"] == ref_root(leaves(size), ARITY).hex()
    # sparse: the copy's real size is the used prefixes, far below the source's
    out_apparent, out_real = report["apparent_bytes"], report["real_bytes"]
    assert out_real <= report["source_real_bytes"]
    assert out_real < out_apparent // 100


def test_cli_backup_errors_and_inspect_sizes(tmp_path: Path):
    src = tmp_path / "src"
    with RotorTree.open(cfg(src)) as tree:
        tree.insert_many(leaves(179))
        tree.checkpoint()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    (tmp_path / "file").write_text("x")
    (tmp_path / "notatree").mkdir()
    cases = [
        ((str(tmp_path / "missing"), str(tmp_path / "o1")), "no such tree directory"),
        (("no-such-tree-name", str(tmp_path / "o1")), "no such directory"),
        ((str(src), str(tmp_path / "full")), "not empty"),
        ((str(src), str(tmp_path / "file")), "not a directory"),
        ((str(src), str(tmp_path / "nodir" / "o")), "does not exist"),
        ((str(src), str(src / "inside")), "inside the tree"),
        ((str(tmp_path / "notatree"), str(tmp_path / "o1")), "not a rotorshm tree"),
    ]
    for args, needle in cases:
        res = rsm("backup", *args)
        assert res.returncode == 2, (args, res.returncode, res.stderr)
        assert needle in res.stderr and res.stderr.count("\n") == 1, (args, res.stderr)
        assert not (tmp_path / "o1").exists()
    assert (tmp_path / "full" / "x").read_text() == "x"
    (tmp_path / "empty").mkdir()  # an empty directory is fine
    res = rsm("backup", str(src), str(tmp_path / "empty"), "-q")
    assert res.returncode == 0, res.stderr
    assert "real" in res.stdout and "apparent" in res.stdout
    res = rsm("inspect", str(tmp_path / "empty"), "--json")
    assert res.returncode == 0, res.stderr
    disk = json.loads(res.stdout)["disk"]
    assert disk["apparent_bytes"] >= 256 << 20 > 1 << 20 > disk["real_bytes"] > 0
    check_copy(tmp_path / "empty", 179, 179)
    res = rsm("inspect", str(src))
    assert res.returncode == 0 and "real" in res.stdout and "apparent" in res.stdout
    with pytest.raises(InvalidConfig, match="not empty"):
        backup_tree(str(src), str(tmp_path / "full"))
