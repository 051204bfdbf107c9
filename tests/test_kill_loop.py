"""The writer daemon killed with SIGKILL again and again under load, and restarted each time.

One client process streams the deterministic leaves (leaf i = i as u64 little-endian +
24 zero bytes) in random batches and waits for each to be durable; it reconnects to
each new daemon and goes on from the size that daemon recovered. Two reader processes
prove and verify random leaves (and, within one writer epoch, consistency from their
previous snapshot) the whole time, reattaching when they see the writer gone. The test
process kills the daemon after a random delay, starts it again (rotating the
checkpoint policy), and checks after every restart that every leaf acknowledged durable
is there and that the root is the reference root of exactly that prefix of the stream.

`ROTORSHM_KILLS` sets the number of kills (default 20, which keeps the suite quick);
the report line (kills, acks, leaves lost, proofs, failed proofs, seconds) is printed
and, with `ROTORSHM_KILL_REPORT=path`, written as JSON.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

from daemon_util import (
    CTX,
    TIMEOUT,
    Daemon,
    leaf_range,
    spawn,
    start_daemon,
    unique_name,
    unlink_segments,
)
from reference import leaves, ref_root

import rotorshm
from rotorshm import LeanIMT, RotorTree, RotorTreeConfig, TieringConfig

KILLS = int(os.environ.get("ROTORSHM_KILLS", "20"))
PIN = 2  # levels 0-1 in shard files, the rest in shared-memory segments
POLICIES = ["manual", "every:600", "memory:30000", "on_close"]


def _client(directory: str, stop: Any, acked: Any, seed: int) -> dict[str, int]:
    """Insert batches and wait for each to be durable; follow every new daemon."""
    rng = random.Random(seed)
    client = None
    pos = 0
    stats = {"acks": 0, "inserts": 0, "errors": 0, "reconnects": 0}
    while not stop.is_set():
        try:
            if client is None:
                client = rotorshm.connect(directory, timeout=2.0)
                _, pos, _ = client.insert_many(b"")  # where the new daemon's tree ends
                stats["reconnects"] += 1
            n = rng.randint(1, 120)
            seq, size, _ = client.insert_many(leaf_range(pos, pos + n))
            if size != pos + n:
                raise AssertionError(f"a batch of {n} at {pos} landed at size {size}")
            pos = size
            stats["inserts"] += 1
            if client.wait_durable(seq, 10.0):
                with acked.get_lock():
                    acked.value = max(acked.value, size)
                stats["acks"] += 1
        except (rotorshm.RotorError, OSError):
            stats["errors"] += 1
            if client is not None:
                client.close()
                client = None
            time.sleep(0.005)
    if client is not None:
        client.close()
    return stats


def _prover(name: str, stop: Any, seed: int) -> dict[str, Any]:
    """Prove and verify random leaves; reattach when the writer is gone."""
    rng = random.Random(seed)
    reader = None
    out: dict[str, Any] = {"proofs": 0, "consistency": 0, "failed": [], "reattaches": 0}
    prev: tuple[int, int, bytes | None] | None = None  # epoch, size, root
    while not stop.is_set():
        if reader is None:
            try:
                reader = rotorshm.attach(name)
            except rotorshm.RotorError:
                time.sleep(0.01)
                continue
        try:
            epoch = reader.epoch
            snap = reader.snapshot()
        except rotorshm.RotorError:
            snap = None
        if snap is not None and snap.size:
            size, root = snap.size, snap.root
            for _ in range(8):
                i = rng.randrange(size)
                try:
                    ok = snap.generate_proof(i).verify_against(root, size)
                except Exception as exc:  # noqa: BLE001 - a held snapshot must always prove
                    ok = False
                    out["failed"].append(f"proof of {i} in {size}: {type(exc).__name__}: {exc}")
                out["proofs"] += 1
                if not ok and len(out["failed"]) < 20:
                    out["failed"].append(f"proof of leaf {i} in {size} does not verify")
            if prev is not None and prev[0] == epoch and 0 < prev[1] <= size:
                try:
                    ok = snap.generate_consistency_proof(prev[1]).verify_transition(prev[2])
                except Exception as exc:  # noqa: BLE001
                    ok = False
                    out["failed"].append(f"consistency {prev[1]}->{size}: {exc}")
                out["consistency"] += 1
                if not ok and len(out["failed"]) < 20:
                    out["failed"].append(f"consistency {prev[1]} -> {size} does not verify")
            prev = (epoch, size, root)
        try:
            alive = reader.writer_alive
        except rotorshm.RotorError:
            alive = False
        if not alive:
            try:
                reader.reattach(timeout=0.2)
                out["reattaches"] += 1
            except rotorshm.RotorError:
                pass
    if reader is not None:
        reader.close()
    out["failed_count"] = len(out["failed"])
    return out


class Reference:
    """Roots of prefixes of the leaf stream, from a LeanIMT holding the longest prefix."""

    def __init__(self) -> None:
        self.tree = LeanIMT(arity=4, max_depth=32)

    def root(self, size: int) -> bytes | None:
        if size > self.tree.size:
            self.tree.insert_many(leaf_range(self.tree.size, size))
        if size == 0:
            return None
        return self.tree.snapshot().root_at(size)


def test_kill_9_loop_under_load(tmp_path: Path):
    directory = tmp_path / "tree"
    name = unique_name("kloop")
    rng = random.Random(f"kill-loop/{KILLS}")
    ref = Reference()
    stop = CTX.Event()
    acked = CTX.Value("q", 0)
    budget = 120 + 6 * KILLS  # a failure guard on the whole loop, never a speed check
    t0 = time.monotonic()
    daemon: Daemon | None = None
    client = None
    provers: list[Any] = []
    lost = 0
    wrong_roots: list[str] = []
    restarts = 0
    kills = 0
    smallest_margin = None
    try:
        daemon = start_daemon(directory, name, checkpoint=POLICIES[0], pin_above_level=PIN)
        client = spawn(_client, str(directory), stop, acked, rng.randrange(1 << 30))
        provers = [spawn(_prover, name, stop, rng.randrange(1 << 30)) for _ in range(2)]
        for k in range(KILLS):
            assert time.monotonic() - t0 < budget, f"the loop overran {budget} s at kill {k}"
            time.sleep(rng.choice([0.0, 0.02, 0.05]) + rng.uniform(0.0, 0.35))
            daemon.kill()
            kills += 1
            daemon = start_daemon(directory, name, checkpoint=POLICIES[(k + 1) % len(POLICIES)],
                                  pin_above_level=PIN)
            restarts += 1
            must = acked.value  # read before the snapshot: everything acked so far
            with rotorshm.attach(name) as reader:
                snap = reader.snapshot()
            if snap.size < must:
                lost += must - snap.size
            margin = snap.size - must
            smallest_margin = margin if smallest_margin is None else min(smallest_margin, margin)
            if snap.root != ref.root(snap.size):
                wrong_roots.append(f"kill {k}: wrong root at size {snap.size}")
        time.sleep(0.2)
    finally:
        stop.set()
        results = []
        for child in [client, *provers]:
            if child is not None:
                try:
                    results.append(child.result(TIMEOUT))
                except Exception:  # noqa: BLE001 - reported below, after cleanup
                    child.kill()
                    results.append(None)
        if daemon is not None:
            daemon.stop()
        unlink_segments(name)
    client_stats, *prover_stats = results
    assert client_stats is not None and all(p is not None for p in prover_stats), results
    # offline: the whole tree, every leaf checked against the naive reference
    cfg = RotorTreeConfig(str(directory), arity=4, tiering=TieringConfig(pin_above_level=PIN))
    with RotorTree.open(cfg) as tree:
        size = tree.size
        assert size >= acked.value
        assert tree.root == ref_root(leaves(size), 4)
    failed = sum(p["failed_count"] for p in prover_stats)
    report = {
        "kills": kills, "restarts": restarts, "acks": client_stats["acks"],
        "acked_leaves": acked.value, "final_size": size, "leaves_lost": lost,
        "smallest_margin": smallest_margin, "wrong_roots": len(wrong_roots),
        "proofs": sum(p["proofs"] for p in prover_stats),
        "consistency_proofs": sum(p["consistency"] for p in prover_stats),
        "failed_proofs": failed, "reattaches": sum(p["reattaches"] for p in prover_stats),
        "client_errors": client_stats["errors"], "seconds": round(time.monotonic() - t0, 1),
    }
    print("kill loop:", json.dumps(report))
    if os.environ.get("ROTORSHM_KILL_REPORT"):
        Path(os.environ["ROTORSHM_KILL_REPORT"]).write_text(json.dumps(report, indent=1))
    assert lost == 0
    assert wrong_roots == []
    assert failed == 0, [p["failed"] for p in prover_stats]
    assert client_stats["acks"] > kills // 2, client_stats
    assert report["proofs"] > 0
