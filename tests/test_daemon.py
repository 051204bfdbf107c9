"""Multi-process tests of the shared-memory engine (DESIGN.md §4, §5).

Every writer here is a real `python -m rotorshm serve` subprocess (tests/daemon_util.py);
clients and readers run in other processes ('spawn' children, a forked child for the
other-user checks, and the pytest process itself). Roots are always checked against an
independent LeanIMT built from the deterministic leaf stream leaf(i).

Timeouts are failure guards only (generous); nothing asserts on wall-clock speed.
"""

from __future__ import annotations

import json
import os
import random
import select
import shutil
import signal
import stat
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
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
    run_serve,
    segments_of,
    spawn,
    start_daemon,
    unique_name,
    unlink_segments,
    wait_until,
)

import rotorshm
from rotorshm import (
    AccessDenied,
    CapacityExceeded,
    InvalidLeaf,
    RotorTree,
    RotorTreeConfig,
    WriterGone,
    WriterUnavailable,
    verify_proof_bytes,
)
from rotorshm.protocol import OP_ERROR, OP_INSERT, error_from, recv_frame, send_frame

# -- fixtures ---------------------------------------------------------------------------------


class Daemons:
    """Starts daemons for one test; at teardown stops stragglers and checks for leaks."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.started: list[Daemon] = []

    def start(self, directory: Path | str | None = None, name: str | None = None,
              **options: Any) -> Daemon:
        directory = Path(directory) if directory is not None else self.base / "tree"
        name = name or unique_name()
        daemon = start_daemon(directory, name, **options)
        self.started.append(daemon)
        return daemon

    def close(self) -> list[str]:
        problems = []
        for d in self.started:
            if d.running():
                d.proc.send_signal(signal.SIGTERM)
                try:
                    d.proc.wait(TIMEOUT)
                except Exception:  # noqa: BLE001 - teardown: make sure it is gone
                    d.kill()
        # The last daemon of each name decides whether leftovers are expected:
        # a SIGKILLed writer cannot unlink its segments; a cleanly stopped one must have.
        last: dict[str, Daemon] = {}
        for d in self.started:
            last[d.name] = d
        for name, d in last.items():
            removed = unlink_segments(name)
            if removed and not d.killed:
                problems.append(f"{name}: {removed} left behind by a cleanly stopped daemon")
        return problems


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    """Factory of daemon subprocesses, all stopped (and checked for leaks) at teardown."""
    ds = Daemons(tmp_path)
    yield ds
    problems = ds.close()
    if problems:
        pytest.fail("shared-memory leak: " + "; ".join(problems))


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory any user may traverse (tmp_path's parents are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="rotorshm-perm-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def level_lengths(size: int, arity: int) -> tuple[int, ...]:
    """Level lengths of a tree of `size` leaves: the ceil-division chain down to 1 (DESIGN §1)."""
    if size == 0:
        return ()
    out = [size]
    while out[-1] > 1:
        out.append(-(-out[-1] // arity))
    return tuple(out)


def check_root(root: bytes | None, size: int, arity: int) -> None:
    """root must be the reference root of leaf(0..size-1)."""
    assert root == reference_roots([size], arity)[size], f"wrong root at size {size}"


def verify_snapshot(snap: rotorshm.Snapshot, rng: random.Random, proofs: int = 3) -> None:
    """Inclusion proofs for random leaves (and the last one) verify against snap itself."""
    assert snap.size > 0
    for i in [snap.size - 1] + [rng.randrange(snap.size) for _ in range(proofs)]:
        p = snap.generate_proof(i)
        assert p.verify_against(snap.root, snap.size), (snap, i)
        assert p.leaf == leaf(i)


# -- child processes (module level: 'spawn' children import them from here) ------------------


def _stream_client(directory: str, seed: int, max_leaves: int, stop: Any,
                   started: Any) -> dict[str, Any]:
    """Ingest leaf(0), leaf(1), ... in batches of 1..2000 until `stop` or max_leaves."""
    rng = random.Random(seed)
    acks = []
    pos = 0
    with rotorshm.connect(directory) as client:
        while pos < max_leaves and not stop.is_set():
            n = min(rng.randint(1, 2000), max_leaves - pos)
            seq, size, root = client.insert_many(leaf_range(pos, pos + n))
            pos += n
            assert size == pos, (size, pos)
            acks.append((seq, size, root))
            started.set()
            time.sleep(0.001)  # spread the stream over the readers' run
    return {"size": pos, "acks": acks}


def _load_reader(name: str, seed: int, progress: Any, stop: Any) -> dict[str, Any]:
    """Snapshots + proofs until `stop`; `progress.value` counts snapshots taken so far."""
    rng = random.Random(seed)
    seen: dict[int, bytes] = {}
    failures: list[str] = []
    snapshots = proofs = 0
    last = 0
    with rotorshm.attach(name) as reader:
        assert reader.wait_for_size(1, TIMEOUT), "no leaf ever appeared"
        while not stop.is_set():
            snap = reader.snapshot()
            snapshots += 1
            if snapshots % 64 == 0:
                progress.value = snapshots
            size, root = snap.size, snap.root
            if size < last:
                failures.append(f"size went back from {last} to {size}")
            last = size
            if snap.depth != len(level_lengths(size, snap.arity)) - 1:
                failures.append(f"depth {snap.depth} at size {size}")
            if seen.setdefault(size, root) != root:
                failures.append(f"two roots at size {size}")
            for _ in range(2):
                i = rng.randrange(size)
                p = snap.generate_proof(i)
                proofs += 1
                if not (p.verify_against(root, size) and p.leaf == leaf(i)):
                    failures.append(f"proof of leaf {i} at size {size} does not verify")
            if snapshots % 16 == 0:
                # A historical root and proof, and a consistency proof, from the same snapshot.
                old = rng.randint(1, size)
                old_root = snap.root_at(old)
                if seen.setdefault(old, old_root) != old_root:
                    failures.append(f"root_at({old}) differs from a root seen at that size")
                i = rng.randrange(old)
                if not snap.generate_proof(i, old).verify_against(old_root, old):
                    failures.append(f"historical proof of leaf {i} at size {old} fails")
                cp = snap.generate_consistency_proof(old)
                if not cp.verify_against(old_root, root):
                    failures.append(f"consistency proof {old} -> {size} fails")
                proofs += 2
    return {"seen": seen, "snapshots": snapshots, "proofs": proofs, "failures": failures}


def _torture_reader(name: str, min_reads: int, done: Any, attached: Any = None) -> dict[str, Any]:
    """Hammer ControlBlock.read_state() and Reader.snapshot(); check each copy is consistent."""
    seen: dict[int, bytes] = {}
    failures: list[str] = []
    reads = busy = snaps = 0
    last_size = last_seq = -1
    rng = random.Random(os.getpid())
    with rotorshm.attach(name) as reader:
        ctl = reader._ctl
        assert ctl is not None
        arity = ctl.arity
        if attached is not None:
            attached.set()
        while reads < min_reads or not done.is_set():
            reads += 1
            st = ctl.read_state()
            if st is None:  # writer descheduled inside a publication: allowed, just retry
                busy += 1
                continue
            if st.size < last_size or st.seq < last_seq:
                failures.append(f"went back: size {last_size}->{st.size} seq {last_seq}->{st.seq}")
            last_size, last_seq = st.size, st.seq
            if len(st.lengths) != len(st.frontier):
                failures.append(f"{len(st.lengths)} lengths, {len(st.frontier)} frontier nodes")
            if st.lengths != level_lengths(st.size, arity):
                failures.append(f"lengths {st.lengths} for size {st.size}")
            if st.size and seen.setdefault(st.size, st.frontier[-1]) != st.frontier[-1]:
                failures.append(f"two roots at size {st.size}")
            if reads % 8 == 0:
                snap = reader.snapshot()
                snaps += 1
                if snap.size:
                    if snap.root != snap.frontier[-1] or snap.root != snap.get_node(snap.depth, 0):
                        failures.append(f"snapshot root is not the top of its frontier {snap}")
                    if len(snap.frontier) != len(level_lengths(snap.size, arity)):
                        failures.append(f"snapshot frontier length at size {snap.size}")
                    if seen.setdefault(snap.size, snap.root) != snap.root:
                        failures.append(f"snapshot: two roots at size {snap.size}")
                    for i in (snap.size - 1, rng.randrange(snap.size)):
                        p = snap.generate_proof(i)
                        if not (p.verify_against(snap.root, snap.size) and p.leaf == leaf(i)):
                            failures.append(f"proof of {i} at size {snap.size} fails")
                        # gathered in C straight from the read-only mappings: never torn
                        blob = snap.proof_bytes(i)
                        if not (verify_proof_bytes(blob, snap.root, snap.size)
                                and blob[51:83] == leaf(i)):
                            failures.append(f"proof_bytes of {i} at size {snap.size} fails")
                        old = rng.randint(1, snap.size)
                        if not rotorshm.InclusionProof.from_bytes(
                                snap.proof_bytes(old - 1, old)).verify_against(
                                    seen.setdefault(old, snap.root_at(old)), old):
                            failures.append(f"proof_bytes at past size {old} fails")
                        if not snap.generate_consistency_proof(old).verify_against(
                                seen[old], snap.root, old, snap.size):
                            failures.append(f"consistency {old} -> {snap.size} fails")
    return {"seen": seen, "reads": reads, "busy": busy, "snapshots": snaps,
            "failures": failures}


def _single_leaf_client(directory: str, count: int) -> int:
    """Insert leaf(0..count-1) one per request, as fast as the socket allows."""
    with rotorshm.connect(directory) as client:
        for i in range(count):
            _, size, _ = client.insert(leaf(i))
            assert size == i + 1
    return count


def _inproc_writer(directory: str, name: str, count: int, ready: Any, go: Any) -> int:
    """A WriterDaemon in this child, publishing one leaf per insert with no socket in between."""
    cfg = RotorTreeConfig(directory, arity=3, max_depth=20, name=name)
    daemon = rotorshm.WriterDaemon(cfg, name=name)
    daemon.start()
    try:
        ready.set()
        assert go.wait(TIMEOUT)
        tree = daemon.tree
        assert tree is not None
        for i in range(count):
            tree.insert(leaf(i))
    finally:
        daemon.shutdown()
    return count


def _crash_reader(name: str, attached: Any, stop: Any) -> dict[str, Any]:
    """Keep taking snapshots and proofs across a writer kill -9; report what it saw."""
    rng = random.Random(1)
    failures: list[str] = []
    snapshots = dead_snapshots = 0
    with rotorshm.attach(name) as reader:
        epoch = reader.epoch
        attached.set()
        while not stop.is_set():
            alive = reader.writer_alive
            snap = reader.snapshot()
            snapshots += 1
            if not alive:
                dead_snapshots += 1
            i = rng.randrange(snap.size)
            p = snap.generate_proof(i)
            if not (p.verify_against(snap.root, snap.size) and p.leaf == leaf(i)):
                failures.append(f"proof of {i} at size {snap.size} (writer alive: {alive})")
        last = reader.snapshot()
        reader.reattach()
        new = reader.snapshot()
        out = {"epoch_before": epoch, "epoch_after": reader.epoch, "alive": reader.writer_alive,
               "last_size": last.size, "new_size": new.size, "new_root": new.root}
    out.update(failures=failures, snapshots=snapshots, dead_snapshots=dead_snapshots)
    return out


def _holding_reader(name: str, attached: Any) -> None:
    """Attach, map everything, then take snapshots forever (until SIGKILLed)."""
    reader = rotorshm.attach(name)
    snap = reader.snapshot()
    verify_snapshot(snap, random.Random(2))
    attached.set()
    while True:
        reader.snapshot()


def _check_reader(name: str, size: int) -> tuple[int, bytes | None]:
    """A fresh reader process: snapshot, check proofs, return (size, root)."""
    with rotorshm.attach(name) as reader:
        assert reader.wait_for_size(size, TIMEOUT)
        snap = reader.snapshot()
        verify_snapshot(snap, random.Random(3), proofs=10)
        return snap.size, snap.root


def _maps_reader(name: str, directory: str) -> list[tuple[str, str]]:
    """Attach, touch every level, and return this process's mappings of the tree."""
    with rotorshm.attach(name) as reader:
        snap = reader.snapshot()
        verify_snapshot(snap, random.Random(4), proofs=20)
        for lvl in range(snap.depth + 1):
            snap.get_node(lvl, 0)
        out = []
        with open("/proc/self/maps") as fh:
            for line in fh:
                parts = line.split(maxsplit=5)
                if len(parts) < 6:
                    continue
                path = parts[5].strip()
                if path.startswith(f"{SHM_DIR}/rotorshm.{name}.") or path.startswith(directory):
                    out.append((parts[1], path))
        return out


def _tag(cid: int, k: int) -> bytes:
    """Leaf number k of client cid: distinct across clients."""
    return b"C" + bytes((cid,)) + k.to_bytes(8, "little") + bytes(22)


def _tagged_client(directory: str, cid: int, batches: int, seed: int) -> list[tuple[int, ...]]:
    """Insert `batches` batches of tagged leaves; return (seq, size, first k, count) per reply."""
    rng = random.Random(seed)
    out = []
    k = 0
    with rotorshm.connect(directory) as client:
        for _ in range(batches):
            n = rng.randint(1, 300)
            seq, size, root = client.insert_many([_tag(cid, j) for j in range(k, k + n)])
            out.append((seq, size, k, n, root))
            k += n
    return out


def _size_waiter(name: str, size: int, root: bytes, ready: Any) -> dict[str, Any]:
    """Block in wait_for_size(size), then in wait_for_root(root)."""
    with rotorshm.attach(name) as reader:
        before = reader.size
        ready.set()
        got_size = reader.wait_for_size(size, TIMEOUT)
        size_seen = reader.size
        got_root = reader.wait_for_root(root, TIMEOUT)
        return {"before": before, "got_size": got_size, "size_seen": size_seen,
                "got_root": got_root, "root_seen": reader.root}


def _collect(children: list[Any]) -> list[Any]:
    """Results of every child; on the first failure kill the others too."""
    try:
        return [c.result() for c in children]
    finally:
        for c in children:
            c.kill()


# -- cross-process consistency under load ----------------------------------------------------


def test_consistency_under_load(daemons: Daemons) -> None:
    arity = 4
    per_reader = 1500
    d = daemons.start(arity=arity, pin_above_level=3)
    stop, client_started = CTX.Event(), CTX.Event()
    client = spawn(_stream_client, str(d.directory), 7, 300_000, stop, client_started)
    readers = []
    try:
        assert client_started.wait(TIMEOUT), "the client never got a reply"
        progress = [CTX.Value("q", 0, lock=False) for _ in range(3)]
        readers = [spawn(_load_reader, d.name, seed, progress[seed], stop) for seed in range(3)]
        # Ingest runs until every reader has taken its share of snapshots (or the stream
        # ends); then everybody stops.
        wait_until(lambda: all(v.value >= per_reader for v in progress)
                   or not all(r.proc.is_alive() for r in readers), what="reader progress")
        stop.set()
        results = [r.result() for r in readers]
        ingest = client.result()
    finally:
        stop.set()
        for c in [client, *readers]:
            c.kill()
    failures = [f for r in results for f in r["failures"]]
    assert failures == []
    total = sum(r["snapshots"] for r in results)
    assert total >= 3 * per_reader
    seen: dict[int, bytes] = {}
    for r in results:
        for size, root in r["seen"].items():
            assert seen.setdefault(size, root) == root, f"readers disagree at size {size}"
    for _, size, root in ingest["acks"]:
        assert seen.setdefault(size, root) == root, f"client reply disagrees at size {size}"
    ref = reference_roots(seen, arity)
    wrong = [s for s, root in seen.items() if ref[s] != root]
    assert wrong == [], f"roots differ from the reference at sizes {sorted(wrong)[:10]}"
    assert len(seen) > 3  # readers saw the tree grow, not a single size
    with rotorshm.attach(d.name) as reader:
        assert reader.size == ingest["size"]
    d.stop()


# -- seqlock torture ----------------------------------------------------------------------------


@pytest.mark.parametrize("feeder", ["socket-client", "in-process-writer"])
def test_seqlock_torture(daemons: Daemons, tmp_path: Path, feeder: str) -> None:
    min_reads = 4000
    done = CTX.Event()
    attached = [CTX.Event() for _ in range(3)]
    children = []
    d = None
    leftovers: list[str] = []
    try:
        if feeder == "socket-client":
            arity, count = 4, 3000
            d = daemons.start(arity=arity, pin_above_level=2)
            name = d.name
            children = [spawn(_torture_reader, name, min_reads, done, ev) for ev in attached]
            feeder_child = spawn(_single_leaf_client, str(d.directory), count)
        else:
            arity, count = 3, 10_000
            name = unique_name("inproc")
            ready, go = CTX.Event(), CTX.Event()
            feeder_child = spawn(_inproc_writer, str(tmp_path / "tree"), name, count, ready, go)
            assert ready.wait(TIMEOUT), "in-process writer did not start"
            children = [spawn(_torture_reader, name, min_reads, done, ev) for ev in attached]
            # Readers attach before the writer starts: its control block vanishes at the end.
            for ev in attached:
                assert ev.wait(TIMEOUT), "a reader did not attach"
            go.set()
        children.append(feeder_child)
        assert feeder_child.result() == count
        done.set()
        results = [c.result() for c in children if c is not feeder_child]
        if d is None:  # the in-process writer has shut down: it must have cleaned up
            leftovers = segments_of(name)
    finally:
        done.set()
        for c in children:
            c.kill()
        if d is None:
            unlink_segments(name)
    assert leftovers == []
    failures = [f for r in results for f in r["failures"]]
    assert failures == []
    assert sum(r["reads"] for r in results) >= 3 * min_reads
    assert all(r["snapshots"] for r in results)
    seen: dict[int, bytes] = {}
    for r in results:
        for size, root in r["seen"].items():
            assert seen.setdefault(size, root) == root, f"readers disagree at size {size}"
    ref = reference_roots(seen, arity)
    wrong = sorted(s for s, root in seen.items() if ref[s] != root)
    assert wrong == [], f"torn or wrong states at sizes {wrong[:10]}"
    assert seen, "readers never saw a published state"
    if d is not None:
        d.stop()


# -- writer and reader crashes ----------------------------------------------------------------


def test_writer_kill9_readers_survive_and_recover(daemons: Daemons) -> None:
    arity = 3
    rng = random.Random(11)
    d1 = daemons.start(arity=arity, pin_above_level=2)
    client = rotorshm.connect(d1.directory)
    pos = 0
    durable_size = 0
    for k in range(30):
        n = rng.randint(1, 500)
        seq, size, root = client.insert_many(leaf_range(pos, pos + n))
        pos += n
        assert size == pos
        if k == 20:
            assert client.wait_durable(seq, TIMEOUT)
            durable_size = size
    acked_size = pos
    check_root(root, acked_size, arity)

    r1 = rotorshm.attach(d1.name)
    s1 = r1.snapshot()
    assert (s1.size, s1.root) == (acked_size, root)
    verify_snapshot(s1, rng)  # maps every level, pinned ones included
    r2 = rotorshm.attach(d1.name)
    lazy = r2.snapshot()  # taken, but nothing read through its mappings yet
    attached, stop = CTX.Event(), CTX.Event()
    crash_reader = spawn(_crash_reader, d1.name, attached, stop)
    try:
        assert attached.wait(TIMEOUT)
        assert r1.writer_alive
        d1.kill()

        wait_until(lambda: not r1.writer_alive, what="writer_alive to turn False")
        s2 = r1.snapshot()
        assert (s2.size, s2.root) == (s1.size, s1.root)
        verify_snapshot(s1, rng)
        verify_snapshot(s2, rng)
        assert not r1.wait_for_size(acked_size + 1, timeout=TIMEOUT)  # returns: writer gone
        with pytest.raises(WriterUnavailable):
            client.insert(leaf(pos))
        with pytest.raises(WriterUnavailable):
            rotorshm.connect(d1.directory)  # stale socket file: nobody listens

        d2 = daemons.start(d1.directory, d1.name, arity=arity, pin_above_level=2)
        assert d2.epoch != d1.epoch
        # Old snapshots stay usable after the new writer took over the name.
        verify_snapshot(s1, rng)
        verify_snapshot(lazy, rng)
        assert not r1.writer_alive and r1.epoch == d1.epoch
        r1.reattach()
        assert r1.epoch == d2.epoch and r1.writer_alive
        s3 = r1.snapshot()
        assert durable_size <= s3.size <= acked_size
        check_root(s3.root, s3.size, arity)
        verify_snapshot(s3, rng)
        stop.set()
        seen = crash_reader.result()
    finally:
        stop.set()
        crash_reader.kill()
        r2.close()
    assert seen["failures"] == []
    assert seen["epoch_before"] == d1.epoch and seen["epoch_after"] == d2.epoch
    assert seen["alive"] and seen["last_size"] == acked_size
    assert seen["dead_snapshots"] > 0  # it kept serving snapshots while the writer was dead
    assert seen["new_size"] == s3.size and seen["new_root"] == s3.root

    # The recovered writer keeps ingesting from where recovery left it.
    client.close()
    with rotorshm.connect(d2.directory) as c2:
        _, size, root = c2.insert_many(leaf_range(s3.size, s3.size + 100))
    assert size == s3.size + 100
    check_root(root, size, arity)
    assert r1.wait_for_size(size, TIMEOUT)
    assert r1.snapshot().root == root
    r1.close()
    d2.stop()
    assert segments_of(d2.name) == []


def test_reader_kill9_goes_unnoticed(daemons: Daemons) -> None:
    arity = 4
    d = daemons.start(arity=arity, pin_above_level=2)
    with rotorshm.connect(d.directory) as client:
        client.insert_many(leaf_range(0, 5000))
        attached = CTX.Event()
        holder = spawn(_holding_reader, d.name, attached)
        try:
            assert attached.wait(TIMEOUT)
            os.kill(holder.pid, signal.SIGKILL)
            holder.proc.join(TIMEOUT)
            assert holder.proc.exitcode == -signal.SIGKILL
        finally:
            holder.kill()
        pos = 5000
        for n in (1, 700, 3000):
            _, size, root = client.insert_many(leaf_range(pos, pos + n))
            pos += n
            assert size == pos
        check_root(root, pos, arity)
        assert d.running()
    checker = spawn(_check_reader, d.name, pos)
    assert checker.result() == (pos, root)
    with rotorshm.attach(d.name) as reader:
        assert reader.writer_alive and reader.size == pos
    d.stop()


def _fake_writer(name: str, directory: str, ready: Any, go_odd: Any, go_exit: Any) -> str:
    """A writer that publishes one state, then dies in the middle of the next publication."""
    import threading

    from rotorshm.segments import segment_prefix
    from rotorshm.shm import HEARTBEAT_PERIOD, OFF_SEQLOCK, STATE_LIVE, ControlBlock

    ctl = ControlBlock.create(name, arity=2, max_depth=4, epoch=5, directory=directory,
                              segment_prefix=segment_prefix(name, 5), pin_above_level=1 << 30)
    ctl.publish(1, 1, (1,), (leaf(0),))
    ctl.set_state(STATE_LIVE)

    def heartbeat() -> None:
        while not go_exit.wait(HEARTBEAT_PERIOD):
            ctl.beat()

    threading.Thread(target=heartbeat, daemon=True).start()
    ready.set()
    assert go_odd.wait(TIMEOUT)
    counter = ctl.words.load_u64(OFF_SEQLOCK)
    ctl.words.store_u64(OFF_SEQLOCK, counter + 1)  # "inside a seqlock write" forever
    assert go_exit.wait(TIMEOUT)
    return "died without unlinking"


def test_writer_dead_inside_publication(tmp_path: Path) -> None:
    """Counter left odd: readers give up after bounded retries and keep the last snapshot."""
    name = unique_name("odd")
    ready, go_odd, go_exit = CTX.Event(), CTX.Event(), CTX.Event()
    writer = spawn(_fake_writer, name, str(tmp_path), ready, go_odd, go_exit)
    try:
        assert ready.wait(TIMEOUT)
        reader = rotorshm.attach(name)
        snap = reader.snapshot()
        assert (snap.size, snap.root) == (1, leaf(0))
        go_odd.set()
        # Writer alive but stuck mid-write: bounded wait, then the last good snapshot.
        wait_until(lambda: reader._control().read_state(max_retries=100) is None,
                   what="the counter to turn odd")
        assert reader.writer_alive
        assert reader.snapshot() is snap
        go_exit.set()
        assert writer.result() == "died without unlinking"
        wait_until(lambda: not reader.writer_alive, what="writer_alive to turn False")
        assert reader.snapshot() is snap
        assert not reader.wait_for_size(2, timeout=TIMEOUT)
        with rotorshm.attach(name) as fresh, pytest.raises(WriterGone):
            fresh.snapshot()  # nothing good to fall back on
        reader.close()
    finally:
        go_odd.set()
        go_exit.set()
        writer.kill()
        unlink_segments(name)


# -- one writer per directory and per name -------------------------------------------------------


def test_second_serve_refused(daemons: Daemons, tmp_path: Path) -> None:
    d = daemons.start(arity=4)
    with rotorshm.connect(d.directory) as client:
        client.insert_many(leaf_range(0, 10))

    same = run_serve(d.directory, d.name, arity=4)
    assert same.returncode != 0
    assert "error" in same.stderr and "already published" in same.stderr, same.stderr

    other_name = unique_name("other")
    locked = run_serve(d.directory, other_name, arity=4)
    assert locked.returncode != 0
    assert "error" in locked.stderr and "wal.lock" in locked.stderr, locked.stderr
    assert segments_of(other_name) == []

    other_dir = tmp_path / "other"
    clash = run_serve(other_dir, d.name, arity=4)
    assert clash.returncode != 0
    assert "already published" in clash.stderr, clash.stderr
    assert not (other_dir / "writer.sock").exists()

    # The first daemon is unharmed: same epoch, still ingesting and publishing.
    assert d.running()
    with rotorshm.connect(d.directory) as client:
        assert client.epoch == d.epoch
        _, size, root = client.insert_many(leaf_range(10, 20))
    assert size == 20
    check_root(root, 20, 4)
    with rotorshm.attach(d.name) as reader:
        assert reader.epoch == d.epoch and reader.writer_alive
        snap = reader.snapshot()
        assert (snap.size, snap.root) == (20, root)
        verify_snapshot(snap, random.Random(5))
    d.stop()


# -- readers cannot write -----------------------------------------------------------------------


def test_reader_mappings_are_read_only(daemons: Daemons) -> None:
    from rotorshm.shm import OFF_EPOCH, OFF_SEQLOCK

    d = daemons.start(arity=4, pin_above_level=1)
    with rotorshm.connect(d.directory) as client:
        client.insert_many(leaf_range(0, 3000))
    with rotorshm.attach(d.name) as reader:
        snap = reader.snapshot()
        verify_snapshot(snap, random.Random(6), proofs=10)
        ctl = reader._ctl
        assert ctl is not None
        with pytest.raises(TypeError):
            ctl._map[0] = 0
        with pytest.raises(TypeError):
            ctl._map[OFF_SEQLOCK : OFF_SEQLOCK + 8] = bytes(8)
        with pytest.raises(TypeError):
            struct.pack_into("<Q", ctl._map, OFF_EPOCH, 1)
        with pytest.raises(TypeError):
            ctl.words.store_u64(OFF_EPOCH, 1)
        file_level, shm_level = reader._levels[0], reader._levels[1]
        assert type(file_level).__name__ == "FileLevel"
        assert type(shm_level).__name__ == "ShmLevel"
        for level in (file_level, shm_level):
            region = level._regions[0]
            assert region.readonly
            with pytest.raises(TypeError):
                region[0:32] = bytes(32)
        assert snap.get_node(0, 0) == leaf(0)  # nothing was changed

    maps = spawn(_maps_reader, d.name, str(d.directory)).result()
    paths = {path for _, path in maps}
    assert f"{SHM_DIR}/rotorshm.{d.name}.ctl" in paths
    assert any(".L1.S" in p for p in paths), paths  # a pinned-level segment
    assert any("/data/level_0/shard_" in p for p in paths), paths  # a shard file
    writable = [(perm, path) for perm, path in maps if "w" in perm]
    assert writable == []
    d.stop()


# -- clients ----------------------------------------------------------------------------------


def test_concurrent_clients_every_leaf_once_in_seq_order(daemons: Daemons) -> None:
    arity = 4
    d = daemons.start(arity=arity)
    children = [spawn(_tagged_client, str(d.directory), cid, 25, 100 + cid) for cid in range(4)]
    results = _collect(children)
    replies = [(seq, size, cid, k, n, root)
               for cid, res in enumerate(results) for seq, size, k, n, root in res]
    total = sum(r[4] for r in replies)
    with rotorshm.attach(d.name) as reader:
        snap = reader.snapshot()
    assert snap.size == total
    replies.sort()
    assert len({r[0] for r in replies}) == len(replies), "duplicate sequence numbers"
    end = 0
    for seq, size, cid, k, n, root in replies:
        assert size - n == end, f"batch seq {seq} at [{size - n}, {size}) after {end}"
        end = size
        got = [snap.get_node(0, j) for j in range(size - n, size)]
        assert got == [_tag(cid, j) for j in range(k, k + n)], f"batch seq {seq} misplaced"
        assert snap.root_at(size) == root
    assert end == total
    # Every client's batches landed in the order that client sent them.
    for cid in range(4):
        ks = [r[3] for r in replies if r[2] == cid]
        assert ks == sorted(ks)
    d.stop()


def test_client_bad_inputs_and_capacity(daemons: Daemons) -> None:
    arity = 2
    d = daemons.start(arity=arity, max_depth=4)  # capacity 16
    with rotorshm.connect(d.directory) as client, rotorshm.attach(d.name) as reader:
        with pytest.raises(InvalidLeaf):
            client.insert(b"x" * 31)
        with pytest.raises(InvalidLeaf):
            client.insert_many([leaf(0), b"x" * 31])
        with pytest.raises(InvalidLeaf):
            client.insert_many(b"x" * 33)
        # A malformed batch that gets past the client is refused by the daemon too.
        assert client._sock is not None
        send_frame(client._sock, OP_INSERT, b"x" * 31)
        frame = recv_frame(client._sock)
        assert frame is not None and frame[0] == OP_ERROR
        assert isinstance(error_from(frame[1][0], ""), InvalidLeaf)
        assert reader.size == 0
        # An empty batch is a no-op reporting the tree as it is, as LeanIMT.insert_many([]).
        assert client.insert_many([]) == (0, 0, None)
        assert client.insert_many(b"") == (0, 0, None)

        seq, size, root = client.insert_many(leaf_range(0, 10))
        assert size == 10
        assert client.insert_many([]) == (seq, 10, root)
        assert client.wait_durable(seq, timeout=30)
        assert reader.snapshot().size == 10
        with pytest.raises(CapacityExceeded):
            client.insert_many(leaf_range(10, 17))
        snap = reader.snapshot()
        assert (snap.size, snap.root) == (10, root)
        _, size, root = client.insert_many(leaf_range(10, 16))
        assert size == 16
        check_root(root, 16, arity)
        with pytest.raises(CapacityExceeded):
            client.insert(leaf(16))
        snap = reader.snapshot()
        assert (snap.size, snap.root) == (16, root)
        verify_snapshot(snap, random.Random(7))
    d.stop()


def test_wait_durable_and_writer_unavailable(daemons: Daemons, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WriterUnavailable):
        rotorshm.connect(empty)
    with pytest.raises(WriterUnavailable):
        rotorshm.connect(empty / "writer.sock")

    d = daemons.start(arity=4)
    client = rotorshm.connect(d.directory)
    seq, size, _ = client.insert_many(leaf_range(0, 100))
    assert client.wait_durable(seq, TIMEOUT) is True
    with rotorshm.attach(d.name) as reader:
        assert reader.durable_seq >= seq
    assert client.wait_durable(seq, 0.0) is True  # already durable: no waiting at all
    assert client.wait_durable(seq + 1000, timeout=0.3) is False  # never written
    seq2, _, _ = client.insert(leaf(100))
    assert seq2 > seq
    assert client.wait_durable(seq2, TIMEOUT) is True

    d.kill()
    with pytest.raises(WriterUnavailable):
        client.insert(leaf(101))
    client.close()
    with pytest.raises(WriterUnavailable):
        rotorshm.connect(d.directory)


def test_wait_durable_after_writer_death_returns_false(daemons: Daemons) -> None:
    """Client.wait_durable documents 'False on timeout or if the writer died'."""
    d = daemons.start(arity=4)
    with rotorshm.connect(d.directory) as client:
        seq, _, _ = client.insert(leaf(0))
        assert client.wait_durable(seq, TIMEOUT)
        d.kill()
        assert client.wait_durable(seq, TIMEOUT) is True  # was durable before the crash
        assert client.wait_durable(seq + 1, TIMEOUT) is False


# -- permissions ------------------------------------------------------------------------------


def _mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_socket_and_segments_owner_only(daemons: Daemons) -> None:
    d = daemons.start(arity=4, pin_above_level=1)
    with rotorshm.connect(d.directory) as client:
        client.insert_many(leaf_range(0, 100))
    assert stat.S_ISSOCK(os.stat(d.socket).st_mode)
    assert _mode(d.socket) == 0o600
    segs = segments_of(d.name)
    assert f"rotorshm.{d.name}.ctl" in segs
    pinned = [s for s in segs if not s.endswith(".ctl")]
    assert pinned, segs
    for seg in segs:
        assert _mode(os.path.join(SHM_DIR, seg)) == 0o600, seg
    d.stop()


def _as_other_user(fn: Callable[[], dict[str, str]]) -> dict[str, str]:
    """Run fn in a forked child switched to uid/gid 65534; return its JSON-able result."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 0
        try:
            os.close(rfd)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            out = fn()
        except BaseException as exc:  # noqa: BLE001
            out = {"child_error": repr(exc)}
            code = 1
        try:
            os.write(wfd, json.dumps(out).encode())
        finally:
            os._exit(code)
    os.close(wfd)
    try:
        ready, _, _ = select.select([rfd], [], [], TIMEOUT)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError("the other-user child did not answer")
        data = b""
        while chunk := os.read(rfd, 65536):
            data += chunk
    finally:
        os.close(rfd)
        os.waitpid(pid, 0)
    return json.loads(data)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user (uid 65534) needs root")
def test_other_user_is_denied(open_dir: Path, daemons: Daemons) -> None:
    d = daemons.start(open_dir / "tree", arity=4, pin_above_level=1)
    open_dir.joinpath("tree").chmod(0o755)  # reachable: only the socket's own mode protects it
    with rotorshm.connect(d.directory) as client:
        client.insert_many(leaf_range(0, 100))

    def probe() -> dict[str, str]:
        out = {"uid": str(os.getuid())}
        for what, fn in (("connect", lambda: rotorshm.connect(d.directory)),
                         ("attach", lambda: rotorshm.attach(d.name))):
            try:
                fn()
                out[what] = "succeeded"
            except Exception as exc:  # noqa: BLE001
                out[what] = type(exc).__name__
        return out

    got = _as_other_user(probe)
    assert got == {"uid": "65534", "connect": "AccessDenied", "attach": "AccessDenied"}
    assert issubclass(AccessDenied, PermissionError)
    # Still fine for the owner.
    with rotorshm.connect(d.directory) as client, rotorshm.attach(d.name) as reader:
        client.insert(leaf(100))
        assert reader.wait_for_size(101, TIMEOUT)
    d.stop()


# -- waiting --------------------------------------------------------------------------------


def test_wait_for_size_and_root_across_processes(daemons: Daemons) -> None:
    arity = 4
    d = daemons.start(arity=arity)
    target, final = 5000, 6000
    final_root = reference_roots([final], arity)[final]
    assert final_root is not None
    ready = CTX.Event()
    waiter = spawn(_size_waiter, d.name, target, final_root, ready)
    try:
        assert ready.wait(TIMEOUT)
        with rotorshm.connect(d.directory) as client:
            for pos in range(0, final, 500):
                client.insert_many(leaf_range(pos, pos + 500))
        got = waiter.result()
    finally:
        waiter.kill()
    assert got["before"] < target
    assert got["got_size"] is True and got["size_seen"] >= target
    assert got["got_root"] is True and got["root_seen"] == final_root

    with rotorshm.attach(d.name) as reader:
        assert reader.wait_for_size(final, 0.1) is True
        assert reader.wait_for_size(final + 1, timeout=0.3) is False
        assert reader.wait_for_root(final_root, 0.1) is True
        assert reader.wait_for_root(bytes(32), timeout=0.3) is False
    d.stop()


# -- clean shutdown ---------------------------------------------------------------------------


@pytest.mark.parametrize(("checkpoint", "flush_ms"), [("manual", 0), ("on_close", 10)])
def test_sigterm_clean_shutdown(daemons: Daemons, checkpoint: str, flush_ms: int) -> None:
    arity = 3
    d = daemons.start(arity=arity, pin_above_level=1, checkpoint=checkpoint,
                      flush_interval_ms=flush_ms)
    rng = random.Random(8)
    pos = 0
    with rotorshm.connect(d.directory) as client:
        for _ in range(20):
            n = rng.randint(1, 400)
            _, size, root = client.insert_many(leaf_range(pos, pos + n))
            pos += n
        assert size == pos
    reader = rotorshm.attach(d.name)
    snap = reader.snapshot()
    verify_snapshot(snap, rng, proofs=10)
    with rotorshm.attach(d.name) as other:
        lazy = other.snapshot()  # nothing read through it before the writer stops
    assert segments_of(d.name)

    d.stop()  # SIGTERM; asserts exit code 0
    assert "rotorshm: serving" in d.stderr()
    assert not d.socket.exists()
    assert segments_of(d.name) == []
    assert not reader.writer_alive
    assert reader.snapshot().root == root  # last published state, still mapped
    verify_snapshot(snap, rng, proofs=10)
    verify_snapshot(lazy, rng, proofs=10)  # segments unlinked, but mapped by the snapshot
    reader.close()
    with pytest.raises(WriterGone):
        rotorshm.attach(d.name)

    cfg = RotorTreeConfig(d.directory, arity=arity, max_depth=20, name=d.name)
    with RotorTree.open(cfg) as tree:
        assert (tree.size, tree.root) == (pos, root)
        assert tree.checkpoint_meta.size == (pos if checkpoint == "on_close" else 0)
    assert segments_of(d.name) == []


def test_socket_in_a_directory_too_deep_for_sockaddr_un(daemons: Daemons) -> None:
    # DIR/writer.sock longer than the 108 bytes of sockaddr_un: bind and connect must
    # still work (through /proc/self/fd), and the socket lives where clients look for it.
    deep = daemons.base / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    d = daemons.start(deep / "tree")
    assert len(str(d.socket)) > 108
    assert d.socket.exists()
    with rotorshm.connect(d.directory) as client:
        seq, size, root = client.insert(leaf(0))
        assert (size, root) == (1, leaf(0))
        assert client.wait_durable(seq, timeout=30)
    d.stop()
    assert not d.socket.exists()
