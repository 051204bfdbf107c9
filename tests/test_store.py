"""Tests of the durable tree (RotorTree): roots through every storage path, policies,
locking, closing, durability tokens, progress reporting, checkpoint cost and errors.

Roots are checked against two oracles: rotorshm.LeanIMT (in-memory, same algorithm)
and tests/reference.py's ref_root, a naive recursive implementation that shares no code
with rotorshm.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from reference import leaf, leaves, ref_root

import rotorshm.checkpoint as ckpt_mod
import rotorshm.store as store_mod
from rotorshm import (
    CapacityExceeded,
    CheckpointPolicy,
    ConfigMismatch,
    FlushPolicy,
    InvalidLeaf,
    LeanIMT,
    RotorError,
    RotorTree,
    RotorTreeConfig,
    StorageFull,
    TieringConfig,
    TreeClosed,
    TreeLocked,
)
from rotorshm.levels import FileLevel

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

# pin_above_level: every level in shared memory, a middle value, and the default (files only)
PINS = {"pin0": 0, "pin2": 2, "files": None}


def config(path: Path, *, pin: int | None = None, **kw: object) -> RotorTreeConfig:
    tiering = TieringConfig() if pin is None else TieringConfig(pin_above_level=pin)
    return RotorTreeConfig(str(path), tiering=tiering, **kw)  # type: ignore[arg-type]


def wal_size(path: Path) -> int:
    try:
        return os.path.getsize(path / "wal.log")
    except FileNotFoundError:
        return 0


def files_state(root: Path) -> dict[str, object]:
    """Size and mtime of every file, and the contents of the small ones (shards are sparse)."""
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            small = st.st_size <= 1 << 20
            out[str(p)] = (st.st_size, st.st_mtime_ns, p.read_bytes() if small else None)
    return out


def lean(items: list[bytes], arity: int, max_depth: int = 20) -> LeanIMT:
    t = LeanIMT(arity=arity, max_depth=max_depth)
    if items:
        t.insert_many(items)
    return t


def check_tree(tree: RotorTree, items: list[bytes], arity: int, *, proofs: int = 6) -> None:
    """Size, depth and root equal both oracles; a few inclusion proofs verify."""
    ref = lean(items, arity)
    assert tree.size == len(items)
    assert tree.root == ref.root == ref_root(items, arity)
    assert tree.depth == ref.depth
    snap = tree.snapshot()
    assert snap.size == len(items)
    assert snap.root == tree.root
    if not items:
        return
    rng = random.Random(len(items))
    picks = {0, len(items) - 1, *(rng.randrange(len(items)) for _ in range(proofs))}
    for i in sorted(picks):
        assert snap.get_leaf(i) == items[i]
        proof = snap.generate_proof(i)
        assert proof.leaf == items[i]
        assert proof.verify()
        assert proof.verify_against(ref.root, len(items))


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


def batches(rng: random.Random, total: int, start: int = 0) -> list[list[bytes]]:
    """Consecutive leaves start..start+total-1 cut into batches of varied sizes (1..300)."""
    out = []
    i = start
    end = start + total
    while i < end:
        n = min(rng.choice([1, 1, 2, 3, 7, 16, 31, 128, 129, 300]), end - i)
        out.append(leaves(n, i))
        i += n
    return out


def ingest(tree: RotorTree, chunks: list[list[bytes]], items: list[bytes], arity: int) -> None:
    """Insert every batch (single leaves through insert()), checking the root after each."""
    ref = lean(items, arity)
    for b in chunks:
        if len(b) == 1:
            root, token = tree.insert(b[0])
            ref.insert(b[0])
        else:
            root, token = tree.insert_many(b)
            ref.insert_many(b)
        items.extend(b)
        assert root == ref.root
        assert token.seq >= 1


# -- roots through every path --------------------------------------------------------------

@pytest.mark.parametrize("pin", list(PINS.values()), ids=list(PINS))
@pytest.mark.parametrize("arity", [2, 3, 4, 16])
def test_roots_match_oracles_through_every_path(tree_dir: Path, arity: int, pin: int | None):
    rng = random.Random(arity * 1000 + (pin or 99))
    cfg = config(tree_dir, pin=pin, arity=arity)
    items: list[bytes] = []

    # 1. fresh inserts (everything only in the WAL)
    with RotorTree.open(cfg) as tree:
        check_tree(tree, items, arity)
        ingest(tree, batches(rng, 700), items, arity)
        check_tree(tree, items, arity)
    assert wal_size(tree_dir) > 0
    assert not (tree_dir / "data" / "checkpoint.meta").exists()

    # 2. reopen: pure WAL replay
    with RotorTree.open(cfg) as tree:
        check_tree(tree, items, arity)
        assert tree.checkpoint_meta.seq == 0
        # 3. checkpoint
        meta = tree.checkpoint()
        assert meta.size == len(items)
        assert meta.root == tree.root
        assert wal_size(tree_dir) == 0
        check_tree(tree, items, arity)
        # 4. more leaves after the checkpoint, left in the WAL
        ingest(tree, batches(rng, 555, len(items)), items, arity)
        check_tree(tree, items, arity)

    # 5. reopen: checkpoint restore + WAL replay
    with RotorTree.open(cfg) as tree:
        assert tree.checkpoint_meta.size == meta.size
        check_tree(tree, items, arity)
        ingest(tree, batches(rng, 300, len(items)), items, arity)
        tree.checkpoint()
        check_tree(tree, items, arity)
    assert wal_size(tree_dir) == 0

    # 6. reopen: checkpoint only
    with RotorTree.open(cfg) as tree:
        check_tree(tree, items, arity, proofs=20)
        # a snapshot stays valid while the tree grows
        snap = tree.snapshot()
        old_root, old_size = snap.root, snap.size
        ingest(tree, batches(rng, 200, len(items)), items, arity)
        assert snap.root == old_root and snap.size == old_size
        assert snap.generate_proof(old_size - 1).verify_against(old_root, old_size)
        check_tree(tree, items, arity)


@pytest.mark.parametrize("pin", list(PINS.values()), ids=list(PINS))
def test_recovery_after_unclean_exit(tree_dir: Path, pin: int | None):
    """A writer that exits without close(): checkpoint + WAL replay give the same root."""
    code = """
        import os, sys
        from reference import leaves
        from rotorshm import RotorTree, RotorTreeConfig, TieringConfig, FlushPolicy
        pin = None if sys.argv[2] == "none" else int(sys.argv[2])
        tiering = TieringConfig() if pin is None else TieringConfig(pin_above_level=pin)
        t = RotorTree.open(RotorTreeConfig(sys.argv[1], tiering=tiering,
                                           flush_policy=FlushPolicy.manual()))
        t.insert_many(leaves(1000))
        t.checkpoint()
        for i in range(1000, 1300, 30):
            t.insert_many(leaves(30, i))
        t.flush()
        print(t.root.hex(), flush=True)
        os._exit(0)   # no close(): the lock dies with the process, segments stay behind
    """
    res = run_python(code, str(tree_dir), "none" if pin is None else str(pin))
    assert res.returncode == 0, res.stderr
    items = leaves(1300)
    assert res.stdout.strip() == ref_root(items, 4).hex()
    with RotorTree.open(config(tree_dir, pin=pin)) as tree:
        assert tree.checkpoint_meta.size == 1000
        check_tree(tree, items, 4)


@pytest.mark.parametrize("pin_a, pin_b", [(0, None), (None, 0), (2, None), (None, 1)])
def test_tiering_can_change_between_opens(tree_dir: Path, pin_a: int | None, pin_b: int | None):
    items = leaves(3000)
    with RotorTree.open(config(tree_dir, pin=pin_a)) as tree:
        tree.insert_many(items[:2000])
        tree.checkpoint()
        tree.insert_many(items[2000:2500])
    with RotorTree.open(config(tree_dir, pin=pin_b)) as tree:
        check_tree(tree, items[:2500], 4)
        tree.insert_many(items[2500:])
        tree.checkpoint()
    with RotorTree.open(config(tree_dir, pin=pin_a)) as tree:
        check_tree(tree, items, 4)


def test_empty_tree_roundtrip(tree_dir: Path):
    with RotorTree.open(config(tree_dir)) as tree:
        assert tree.size == 0 and tree.root is None and tree.depth == 0
        root, token = tree.insert_many([])
        assert root is None
        assert token.wait(5)
        assert tree.checkpoint().size == 0
    with RotorTree.open(config(tree_dir)) as tree:
        assert tree.size == 0 and tree.root is None


# -- checkpoint policies ---------------------------------------------------------------------

def test_every_n_entries_fires(tree_dir: Path):
    cfg = config(tree_dir, checkpoint_policy=CheckpointPolicy.every_n_entries(100))
    items = leaves(1000)
    with RotorTree.open(cfg) as tree:
        for i in range(99):
            tree.insert(items[i])
        assert tree.checkpoint_meta.seq == 0
        grown = wal_size(tree_dir)
        assert grown > 0
        _, token = tree.insert(items[99])
        meta = tree.checkpoint_meta
        assert meta.seq == token.seq and meta.size == 100
        assert wal_size(tree_dir) < grown
        assert wal_size(tree_dir) == 0
        assert token.is_durable  # a checkpoint makes its records durable
        # a batch larger than n triggers right away
        _, token = tree.insert_many(items[100:350])
        assert tree.checkpoint_meta.seq == token.seq and tree.checkpoint_meta.size == 350
        # then the counter restarts from zero
        tree.insert_many(items[350:449])
        assert tree.checkpoint_meta.size == 350
        tree.insert(items[449])
        assert tree.checkpoint_meta.size == 450
        assert wal_size(tree_dir) == 0
        check_tree(tree, items[:450], 4)
    with RotorTree.open(cfg) as tree:
        assert tree.checkpoint_meta.size == 450
        check_tree(tree, items[:450], 4)


def test_memory_threshold_fires(tree_dir: Path):
    threshold = 4096
    cfg = config(tree_dir, checkpoint_policy=CheckpointPolicy.memory_threshold(threshold))
    record = 16 + 32  # one-leaf WAL record: 16-byte header + the leaf
    fires_at = -(-threshold // record)  # first insert that brings the WAL to >= threshold
    items = leaves(fires_at + 400)
    with RotorTree.open(cfg) as tree:
        for i in range(fires_at - 1):
            tree.insert(items[i])
            assert tree.checkpoint_meta.seq == 0
        assert wal_size(tree_dir) == (fires_at - 1) * record
        _, token = tree.insert(items[fires_at - 1])
        assert tree.checkpoint_meta.seq == token.seq
        assert tree.checkpoint_meta.size == fires_at
        assert wal_size(tree_dir) == 0
        # one big batch over the threshold checkpoints at once
        _, token = tree.insert_many(items[fires_at : fires_at + 200])
        assert tree.checkpoint_meta.seq == token.seq
        assert wal_size(tree_dir) == 0
        tree.insert_many(items[fires_at + 200 :])
        check_tree(tree, items, 4)
    with RotorTree.open(cfg) as tree:
        check_tree(tree, items, 4)


@pytest.mark.parametrize("pin", [0, None], ids=["pin0", "files"])
def test_on_close_checkpoints(tree_dir: Path, pin: int | None):
    cfg = config(tree_dir, pin=pin, checkpoint_policy=CheckpointPolicy.on_close())
    items = leaves(777)
    with RotorTree.open(cfg) as tree:
        tree.insert_many(items[:500])
        for x in items[500:]:
            tree.insert(x)
        assert tree.checkpoint_meta.seq == 0
        assert wal_size(tree_dir) > 0
        last_seq = tree.written_seq
    assert wal_size(tree_dir) == 0
    assert (tree_dir / "data" / "checkpoint.meta").exists()
    with RotorTree.open(config(tree_dir, pin=pin)) as tree:  # manual policy on reopen
        meta = tree.checkpoint_meta
        assert meta.seq == last_seq and meta.size == 777
        assert wal_size(tree_dir) == 0
        check_tree(tree, items, 4)


def test_manual_policy_never_checkpoints_by_itself(tree_dir: Path):
    cfg = config(tree_dir)  # CheckpointPolicy.manual() is the default
    items = leaves(5000)
    with RotorTree.open(cfg) as tree:
        for b in range(0, 5000, 250):
            tree.insert_many(items[b : b + 250])
        assert tree.checkpoint_meta.seq == 0
    assert wal_size(tree_dir) == 20 * (16 + 250 * 32)
    assert not (tree_dir / "data" / "checkpoint.meta").exists()
    with RotorTree.open(cfg) as tree:
        assert tree.checkpoint_meta.seq == 0
        check_tree(tree, items, 4)
        meta = tree.checkpoint()
        assert meta.seq == 20 and meta.size == 5000
        assert (tree_dir / "data" / "checkpoint.meta").exists()
        assert wal_size(tree_dir) == 0
        assert tree.checkpoint() == meta  # nothing new: same checkpoint
    with RotorTree.open(cfg) as tree:
        assert tree.checkpoint_meta == meta
        check_tree(tree, items, 4)


# -- configuration mismatch ------------------------------------------------------------------

@pytest.mark.parametrize(
    "field, good, bad", [("arity", 4, 7), ("arity", 16, 2), ("max_depth", 20, 13)]
)
def test_config_mismatch_names_both_values(tree_dir: Path, field: str, good: int, bad: int):
    cfg = config(tree_dir, **{field: good})
    items = leaves(300)
    with RotorTree.open(cfg) as tree:
        tree.insert_many(items)
        tree.checkpoint()
        root = tree.root
    before = files_state(tree_dir)
    with pytest.raises(ConfigMismatch) as ei:
        RotorTree.open(config(tree_dir, **{field: bad}))
    msg = str(ei.value)
    assert field in msg
    assert f"{field} {good}" in msg and str(bad) in msg
    assert isinstance(ei.value, RotorError)
    assert files_state(tree_dir) == before
    # the failed open released the lock and changed nothing
    with RotorTree.open(cfg) as tree:
        assert tree.root == root and tree.size == 300


# -- one writer per directory ------------------------------------------------------------------

@pytest.mark.parametrize("pin", [0, None], ids=["pin0", "files"])
def test_second_writer_same_process_and_thread_is_locked(
    tree_dir: Path, pin: int | None, tree_segments
):
    cfg = config(tree_dir, pin=pin)
    items = leaves(600)
    with RotorTree.open(cfg) as tree:
        tree.insert_many(items[:200])
        segs = tree_segments(tree_dir)
        with pytest.raises(TreeLocked, match="wal.lock"):
            RotorTree.open(cfg)
        with pytest.raises(TreeLocked):
            RotorTree.open(config(tree_dir, pin=0 if pin is None else None))

        errors: list[BaseException] = []

        def other() -> None:
            try:
                RotorTree.open(cfg).close()
            except BaseException as exc:  # noqa: BLE001 - inspected below
                errors.append(exc)

        threads = [threading.Thread(target=other) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(errors) == 4 and all(isinstance(e, TreeLocked) for e in errors)
        # the failed attempts removed nothing of the first writer's
        assert tree_segments(tree_dir) == segs
        # ...which keeps working
        root, token = tree.insert_many(items[200:400])
        assert token.wait(10)
        tree.insert_durable(items[400])
        tree.insert_many(items[401:])
        tree.checkpoint()
        check_tree(tree, items, 4)
    with RotorTree.open(cfg) as tree:
        check_tree(tree, items, 4)


def try_open(path: str) -> str:
    """Runs in a spawned process: try to become the writer of `path`."""
    try:
        RotorTree.open(RotorTreeConfig(path)).close()
    except RotorError as exc:
        return type(exc).__name__
    return "opened"


def test_second_writer_in_another_process_is_locked(tree_dir: Path):
    code = """
        import sys
        from rotorshm import RotorTree, RotorTreeConfig, TreeLocked
        try:
            RotorTree.open(RotorTreeConfig(sys.argv[1])).close()
        except TreeLocked as exc:
            print("LOCKED", exc)
        else:
            print("OPENED")
    """
    cfg = config(tree_dir)
    items = leaves(300)
    with RotorTree.open(cfg) as tree:
        tree.insert_many(items[:100])
        res = run_python(code, str(tree_dir))
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("LOCKED"), res.stdout
        assert "wal.lock" in res.stdout
        # and from a multiprocessing ('spawn') child, while we keep writing
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(2) as pool:
            outcomes = pool.map(try_open, [str(tree_dir)] * 2)
        assert outcomes == ["TreeLocked", "TreeLocked"]
        tree.insert_many(items[100:])
        assert tree.insert_durable(leaf(300)) == ref_root(leaves(301), 4)
        assert tree.size == 301
    # once closed, another process may open it
    res = run_python(code, str(tree_dir))
    assert res.stdout.startswith("OPENED"), res.stdout + res.stderr
    with RotorTree.open(cfg) as tree:
        check_tree(tree, leaves(301), 4)


# -- closing -----------------------------------------------------------------------------------

CLOSED_CALLS = {
    "insert": lambda t: t.insert(leaf(1)),
    "insert_many": lambda t: t.insert_many(leaves(3)),
    "insert_many_empty": lambda t: t.insert_many([]),
    "insert_durable": lambda t: t.insert_durable(leaf(1)),
    "flush": lambda t: t.flush(),
    "checkpoint": lambda t: t.checkpoint(),
    "snapshot": lambda t: t.snapshot(),
    "root": lambda t: t.root,
    "size": lambda t: t.size,
    "depth": lambda t: t.depth,
}


@pytest.mark.parametrize("name", list(CLOSED_CALLS))
@pytest.mark.parametrize("pin", [0, None], ids=["pin0", "files"])
def test_every_method_after_close_raises_tree_closed(tree_dir: Path, name: str, pin: int | None):
    tree = RotorTree.open(config(tree_dir, pin=pin))
    tree.insert_many(leaves(10))
    tree.close()
    assert tree.closed
    with pytest.raises(TreeClosed):
        CLOSED_CALLS[name](tree)
    tree.close()  # still harmless
    with RotorTree.open(config(tree_dir, pin=pin)) as again:
        assert again.size == 10


def test_close_twice_and_context_manager(tree_dir: Path, tree_segments):
    cfg = config(tree_dir, pin=0)
    tree = RotorTree.open(cfg)
    _, token = tree.insert_many(leaves(50))
    assert tree_segments(tree_dir)
    tree.close()
    tree.close()
    assert token.is_durable  # close() flushes
    assert token.wait(0.1)
    assert tree_segments(tree_dir) == []
    with RotorTree.open(cfg) as tree:
        assert tree.size == 50
        tree.close()  # closing inside the with block is fine too
    assert tree.closed
    with RotorTree.open(cfg) as tree:
        assert tree.size == 50


@pytest.mark.parametrize("pin", [0, 1, 2])
def test_no_shm_leftovers_after_close_with_pinned_levels(
    tree_dir: Path, pin: int, tree_segments
):
    cfg = config(tree_dir, pin=pin, checkpoint_policy=CheckpointPolicy.every_n_entries(500))
    with RotorTree.open(cfg) as tree:
        tree.insert_many(leaves(3000))
        segs = tree_segments(tree_dir)
        # one segment per pinned level (all fit in one 256 MiB shard)
        assert len(segs) == tree.depth + 1 - pin
    assert tree_segments(tree_dir) == []
    with RotorTree.open(cfg) as tree:
        assert len(tree_segments(tree_dir)) == tree.depth + 1 - pin
        check_tree(tree, leaves(3000), 4)
    assert tree_segments(tree_dir) == []


# -- durability tokens ---------------------------------------------------------------------------

def test_tokens_under_interval_policy(tree_dir: Path):
    cfg = config(tree_dir, flush_policy=FlushPolicy.interval(0.010))
    with RotorTree.open(cfg) as tree:
        tokens = []
        for i in range(20):
            _, tok = tree.insert(leaf(i))
            tokens.append(tok)
        assert [t.seq for t in tokens] == list(range(1, 21))
        assert tokens[-1].wait(10) is True
        assert all(t.is_durable for t in tokens)
        _, tok = tree.insert_many(leaves(5, 20))
        # nobody waits: the background flusher still makes it durable (generous deadline,
        # this is not a latency test)
        deadline = time.monotonic() + 30
        while not tok.is_durable and time.monotonic() < deadline:
            time.sleep(0.002)
        assert tok.is_durable
        assert tok.wait(0) is True
        assert tree.insert_durable(leaf(25)) == ref_root(leaves(26), 4)
        assert tree.durable_seq == tree.written_seq
        # many threads waiting at once all return True
        results: list[bool] = []
        lock = threading.Lock()

        def writer(k: int) -> None:
            for j in range(10):
                _, t = tree.insert(leaf(1000 + k * 10 + j))
                ok = t.wait(10)
                with lock:
                    results.append(ok and t.is_durable)

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [True] * 40
        assert tree.size == 66


def test_tokens_under_manual_policy(tree_dir: Path):
    cfg = config(tree_dir, flush_policy=FlushPolicy.manual())
    with RotorTree.open(cfg) as tree:
        _, t1 = tree.insert(leaf(0))
        _, t2 = tree.insert_many(leaves(3, 1))
        assert not t1.is_durable and not t2.is_durable
        assert t2.wait(0.05) is False  # nobody flushes
        assert not t2.is_durable
        tree.flush()
        assert t1.is_durable and t2.is_durable
        assert t2.wait(0) is True

        # insert_durable flushes by itself, covering earlier records too
        _, t3 = tree.insert(leaf(4))
        assert not t3.is_durable
        assert tree.insert_durable(leaf(5)) == ref_root(leaves(6), 4)
        assert t3.is_durable

        # a waiter is released by another thread's flush()
        _, t4 = tree.insert(leaf(6))
        got: list[bool] = []
        waiter = threading.Thread(target=lambda: got.append(t4.wait(30)))
        waiter.start()
        while waiter.is_alive() and not got:
            tree.flush()
            waiter.join(0.01)
        waiter.join()
        assert got == [True]

        # a checkpoint makes records durable as well
        _, t5 = tree.insert(leaf(7))
        assert not t5.is_durable
        tree.checkpoint()
        assert t5.is_durable
        _, t6 = tree.insert(leaf(8))
    # close() flushes
    assert t6.is_durable
    with RotorTree.open(cfg) as tree:
        check_tree(tree, leaves(9), 4)


# -- progress ------------------------------------------------------------------------------------

def _check_phase(calls: list[tuple[str, int, int]], phase: str, total: int | None) -> None:
    mine = [(d, t) for p, d, t in calls if p == phase]
    assert mine, f"no {phase!r} progress reported"
    totals = {t for _, t in mine}
    assert len(totals) == 1, totals
    (tot,) = totals
    if total is not None:
        assert tot == total
    done = [d for d, _ in mine]
    assert done == sorted(done)
    assert done[0] > 0 and done[-1] <= tot
    assert done[-1] == tot, f"{phase}: last progress {done[-1]} of {tot} never reaches the total"


def test_progress_reported_during_verify_and_replay(tree_dir: Path):
    n = 200_000
    data = b"".join(leaves(n))
    with RotorTree.open(config(tree_dir, flush_policy=FlushPolicy.manual())) as tree:
        tree.insert_many(data[: 120_000 * 32])
        tree.checkpoint()
        for off in range(120_000, n, 10_000):
            tree.insert_many(data[off * 32 : (off + 10_000) * 32])
    calls: list[tuple[str, int, int]] = []
    cfg = config(tree_dir, progress=lambda *a: calls.append(a))
    with RotorTree.open(cfg) as tree:
        assert tree.size == n
        assert tree.root == lean(leaves(n), 4).root
    phases = [p for p, _, _ in calls]
    assert set(phases) == {"verify", "replay"}
    assert phases.index("replay") > max(i for i, p in enumerate(phases) if p == "verify")
    _check_phase(calls, "verify", None)
    _check_phase(calls, "replay", n - 120_000)

    # without verification, only replay is reported
    calls.clear()
    cfg = config(tree_dir, verify_checkpoint=False, progress=lambda *a: calls.append(a))
    with RotorTree.open(cfg) as tree:
        assert tree.size == n
    assert {p for p, _, _ in calls} == {"replay"}


# -- checkpoint cost -------------------------------------------------------------------------------

@pytest.mark.parametrize("pin", [0, 2, None], ids=["pin0", "pin2", "files"])
def test_checkpoint_cost_is_proportional_to_change(
    tree_dir: Path, pin: int | None, monkeypatch: pytest.MonkeyPatch
):
    n = 60_000
    items = leaves(n + 10)
    cfg = config(tree_dir, pin=pin, flush_policy=FlushPolicy.manual())
    data_dir = tree_dir / "data"

    def crc_sizes() -> dict[str, int]:
        return {str(p.relative_to(data_dir)): p.stat().st_size for p in data_dir.rglob("*.crc")}

    with RotorTree.open(cfg) as tree:
        tree.insert_many(items[:n])
        tree.checkpoint()
        sizes1 = crc_sizes()
        depth = tree.depth

        written: list[tuple[str, int, int, int]] = []
        real_flush = FileLevel.flush_range
        real_pinned = store_mod._write_pinned
        real_crcs = ckpt_mod.write_crcs

        def spy_flush(self, start, end):
            written.append(("file", self.level, start, end))
            return real_flush(self, start, end)

        def spy_pinned(directory, level, start, end):
            written.append(("pinned", level.level, start, end))
            return real_pinned(directory, level, start, end)

        def spy_crcs(directory, level, old_end, new_end):
            written.append(("crc", level.level, old_end, new_end))
            return real_crcs(directory, level, old_end, new_end)

        monkeypatch.setattr(FileLevel, "flush_range", spy_flush)
        monkeypatch.setattr(store_mod, "_write_pinned", spy_pinned)
        monkeypatch.setattr(ckpt_mod, "write_crcs", spy_crcs)

        # sentinel: garbage put into an early, immutable part of a pinned level's shard
        # file would be overwritten by a checkpoint that rewrote whole levels
        sentinel_file = data_dir / "level_0" / "shard_0000.bin"
        original = b""
        if pin == 0:
            with open(sentinel_file, "r+b") as f:
                original = f.read(4096)
                f.seek(0)
                f.write(b"\xa5" * 4096)

        tree.insert_many(items[n:])
        tree.checkpoint()
        monkeypatch.undo()

        if pin == 0:
            with open(sentinel_file, "r+b") as f:
                assert f.read(4096) == b"\xa5" * 4096, "checkpoint rewrote unchanged chunks"
                f.seek(0)
                f.write(original)

        data_writes = [w for w in written if w[0] != "crc"]
        assert {w[1] for w in data_writes} == set(range(depth + 1))
        for kind, level, start, end in written:
            assert end - start <= 11, (kind, level, start, end)
        assert sum(end - start for kind, _, start, end in data_writes) <= 11 + 2 * depth
        # CRC files gain at most one entry per level
        sizes2 = crc_sizes()
        for name, size in sizes2.items():
            assert size - sizes1.get(name, 0) <= 4, (name, sizes1.get(name), size)
    with RotorTree.open(cfg) as tree:
        check_tree(tree, items, 4)


# -- errors leave the durable tree unchanged ----------------------------------------------------

BAD_INPUTS = {
    "short_leaf": lambda t: t.insert(b"x" * 31),
    "long_leaf": lambda t: t.insert(b"x" * 33),
    "str_leaf": lambda t: t.insert("x" * 32),
    "int_leaf": lambda t: t.insert(5),
    "ragged_buffer": lambda t: t.insert_many(b"x" * 33),
    "bad_in_batch": lambda t: t.insert_many([leaf(100), b"short", leaf(101)]),
    "str_batch": lambda t: t.insert_many("abc"),
    "none_in_batch": lambda t: t.insert_many([leaf(100), None]),
    "durable_short": lambda t: t.insert_durable(b"y"),
}


@pytest.mark.parametrize("pin", [0, None], ids=["pin0", "files"])
def test_invalid_leaves_and_capacity_leave_tree_unchanged(tree_dir: Path, pin: int | None):
    # arity 2, max_depth 4: capacity 16 leaves
    cfg = config(tree_dir, pin=pin, arity=2, max_depth=4)
    items = leaves(16)
    with RotorTree.open(cfg) as tree:
        tree.insert_many(items[:5])
        tree.checkpoint()
        tree.insert_many(items[5:10])
        tree.flush()
        root, wal_before, seq = tree.root, wal_size(tree_dir), tree.written_seq
        for name, call in BAD_INPUTS.items():
            with pytest.raises(InvalidLeaf):
                call(tree)
            assert (tree.size, tree.root, wal_size(tree_dir)) == (10, root, wal_before), name
        with pytest.raises(CapacityExceeded):
            tree.insert_many(leaves(7, 10))
        with pytest.raises(CapacityExceeded):
            tree.insert_many(b"".join(leaves(100, 10)))
        assert (tree.size, tree.root, wal_size(tree_dir), tree.written_seq) == (
            10, root, wal_before, seq
        )
        check_tree(tree, items[:10], 2)
    with RotorTree.open(cfg) as tree:
        check_tree(tree, items[:10], 2)
        tree.insert_many(items[10:15])
        tree.insert(items[15])  # exactly full
        with pytest.raises(CapacityExceeded):
            tree.insert(leaf(16))
        with pytest.raises(CapacityExceeded):
            tree.insert_durable(leaf(16))
        check_tree(tree, items, 2)
    with RotorTree.open(cfg) as tree:
        check_tree(tree, items, 2)
        with pytest.raises(CapacityExceeded):
            tree.insert(leaf(16))
        tree.checkpoint()
    with RotorTree.open(cfg) as tree:
        check_tree(tree, items, 2)


def test_storage_full_is_an_oserror_and_rotor_error():
    assert issubclass(StorageFull, OSError) and issubclass(StorageFull, RotorError)
