"""Real crashes: a writer process is killed with SIGKILL at random moments, then recovered.

A child process opens the tree and appends a deterministic stream of leaves (leaf i is
i as a little-endian u64 followed by 24 zero bytes) in batches; after each batch is
durable (token.wait() under the interval flush policy, flush() under the manual one) it
prints the durable size. The parent kills it after a seeded random delay, reopens the
tree and checks: nothing acknowledged is lost, the leaves are exactly a prefix of the
stream, and the root equals a from-scratch recomputation. The next child continues from
the recovered size.

A second group kills the writer deterministically at each step of a checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from reference import leaves, ref_root

from rotorshm import (
    LeanIMT,
    RotorTree,
    RotorTreeConfig,
    TieringConfig,
)

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

WRITER = r'''
import json, random, sys
from rotorshm import CheckpointPolicy, FlushPolicy, RotorTree, RotorTreeConfig, TieringConfig

a = json.loads(sys.argv[1])

def leaf(i):
    return i.to_bytes(8, "little") + bytes(24)

def policy(spec):
    kind, value = spec
    return getattr(CheckpointPolicy, kind)(*([value] if value is not None else []))

manual_flush = a["flush"] == "manual"
cfg = RotorTreeConfig(
    a["path"],
    arity=4,
    flush_policy=FlushPolicy.manual() if manual_flush else FlushPolicy.interval(0.010),
    checkpoint_policy=policy(a["ckpt"]),
    tiering=TieringConfig() if a["pin"] is None else TieringConfig(pin_above_level=a["pin"]),
)
t = RotorTree.open(cfg)
i = t.size
print("ready", i, flush=True)
rng = random.Random(a["seed"])
while True:
    if rng.random() < 0.1:
        t.insert_durable(leaf(i))       # one leaf, durable on return
        i += 1
    else:
        n = rng.randint(a["lo"], a["hi"])
        _, token = t.insert_many(b"".join(leaf(j) for j in range(i, i + n)))
        i += n
        if manual_flush:
            t.flush()
        elif not token.wait(30):
            sys.exit("token.wait timed out")
    print("ack", i, flush=True)
'''


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")])
    return env


class Stream:
    """The deterministic leaf stream and a LeanIMT that follows the recovered prefix."""

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self.lean = LeanIMT(arity=4)

    def prefix(self, size: int) -> list[bytes]:
        if size > len(self.items):
            self.items += leaves(size - len(self.items), len(self.items))
        return self.items[:size]

    def root(self, size: int) -> bytes | None:
        assert size >= self.lean.size, "a recovered tree never shrinks"
        if size > self.lean.size:
            self.lean.insert_many(self.prefix(size)[self.lean.size :])
        return self.lean.root


def run_child_and_kill(script: Path, args: dict, delay: float, log: Path) -> tuple[int, list[int]]:
    """Start a writer, wait for it to be ready, sleep `delay`, SIGKILL it.

    Returns the size it reported when ready and every acknowledged durable size.
    """
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script), json.dumps(args)],
            stdout=subprocess.PIPE, stderr=err, env=child_env(), text=True, bufsize=1,
        )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("ready"):
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not ready.wait(60) or proc.poll() is not None:
            pytest.fail(f"writer did not start: {lines}\n{log.read_text()[-3000:]}")
        time.sleep(delay)
        if proc.poll() is not None:
            pytest.fail(f"writer exited by itself ({proc.returncode}): {log.read_text()[-3000:]}")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        reader.join(30)
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    ready_size = int(next(ln for ln in lines if ln.startswith("ready")).split()[1])
    acks = [int(ln.split()[1]) for ln in lines if ln.startswith("ack") and ln.endswith("\n")]
    return ready_size, acks


def check_recovered(path: Path, pin: int | None, stream: Stream, acked: int) -> int:
    """Reopen after a kill; every acknowledged leaf is there, and nothing else but the stream."""
    tiering = TieringConfig() if pin is None else TieringConfig(pin_above_level=pin)
    cfg = RotorTreeConfig(str(path), arity=4, tiering=tiering, verify_checkpoint=True)
    with RotorTree.open(cfg) as tree:
        size = tree.size
        assert size >= acked, f"acknowledged {acked} leaves, recovered only {size}"
        snap = tree.snapshot()
        stored = [snap.get_leaf(i) for i in range(size)]
        assert stored == stream.prefix(size), "recovered leaves are not a prefix of the stream"
        assert tree.root == ref_root(stored, 4), "root differs from a from-scratch recomputation"
        assert tree.root == stream.root(size)
        if size:
            assert snap.generate_proof(size - 1).verify_against(tree.root, size)
    return size


# (checkpoint policy, pin_above_level, flush policy, kills)
KILL_MATRIX = {
    "manual-files": (("manual", None), None, "interval", 8),
    "manual-pin0": (("manual", None), 0, "interval", 8),
    "every_n-files": (("every_n_entries", 300), None, "interval", 10),
    "every_n-pin0": (("every_n_entries", 300), 0, "interval", 10),
    "memory-files": (("memory_threshold", 24_000), None, "interval", 8),
    "memory-pin0": (("memory_threshold", 24_000), 0, "interval", 8),
    "manualflush-every_n-files": (("every_n_entries", 700), None, "manual", 5),
    "manualflush-manual-pin0": (("manual", None), 0, "manual", 5),
}
TOTAL_KILLS = sum(v[3] for v in KILL_MATRIX.values())
assert TOTAL_KILLS >= 50


@pytest.mark.parametrize("name", list(KILL_MATRIX))
def test_kill_9_loses_nothing_acknowledged(tree_dir: Path, tmp_path: Path, name: str):
    ckpt, pin, flush, kills = KILL_MATRIX[name]
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    log = tmp_path / "writer.stderr"
    rng = random.Random(f"kill-9/{name}")
    stream = Stream()
    size = 0
    total_acks = 0
    for k in range(kills):
        args = {
            "path": str(tree_dir), "seed": rng.randrange(1 << 30), "flush": flush,
            "ckpt": list(ckpt), "pin": pin, "lo": 50, "hi": 300,
        }
        ready_size, acks = run_child_and_kill(script, args, rng.uniform(0.005, 0.200), log)
        assert ready_size == size, f"kill {k}: writer reopened at {ready_size}, expected {size}"
        acked = max(acks, default=size)
        assert acks == sorted(acks)
        total_acks += len(acks)
        size = check_recovered(tree_dir, pin, stream, acked)
    assert size > 0 and total_acks > 0, "no writer ever acknowledged anything"


# -- deterministic kills inside a checkpoint ------------------------------------------------------

CRASH_AT = r'''
import json, os, signal, sys
import rotorshm.checkpoint as ckpt
import rotorshm.store as store
import rotorshm.wal as wal
from rotorshm import FlushPolicy, RotorTree, RotorTreeConfig, TieringConfig
from rotorshm.levels import FileLevel

a = json.loads(sys.argv[1])

def leaf(i):
    return i.to_bytes(8, "little") + bytes(24)

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def after_call(owner, attr, nth):
    real = getattr(owner, attr)
    calls = [0]
    def wrapper(*args, **kw):
        out = real(*args, **kw)
        calls[0] += 1
        if calls[0] == nth:
            die()
        return out
    setattr(owner, attr, wrapper)

def before_call(owner, attr):
    def wrapper(*args, **kw):
        die()
    setattr(owner, attr, wrapper)

cfg = RotorTreeConfig(
    a["path"], arity=4, flush_policy=FlushPolicy.manual(),
    tiering=TieringConfig() if a["pin"] is None else TieringConfig(pin_above_level=a["pin"]),
)
t = RotorTree.open(cfg)
t.insert_many(b"".join(leaf(i) for i in range(a["first"])))
t.checkpoint()
n = a["first"]
for size in a["batches"]:
    t.insert_many(b"".join(leaf(i) for i in range(n, n + size)))
    n += size
t.flush()
print("flushed", n, flush=True)
point = a["point"]
if point == "after_level0_data":
    if a["pin"] == 0:
        after_call(store, "_write_pinned", 1)
    else:
        after_call(FileLevel, "flush_range", 1)
elif point == "after_level0_crcs":
    after_call(ckpt, "write_crcs", 1)
elif point == "after_all_crcs":
    before_call(ckpt, "write_meta")
elif point == "meta_temp_written":
    real_replace = os.replace
    def replace(src, dst, *args, **kw):
        if str(dst).endswith("checkpoint.meta"):
            die()
        return real_replace(src, dst, *args, **kw)
    os.replace = replace
elif point == "meta_renamed":
    after_call(ckpt, "write_meta", 1)
elif point == "wal_truncated":
    after_call(wal.WriteAheadLog, "reset", 1)
t.checkpoint()
print("survived", flush=True)
'''

CRASH_POINTS = ["after_level0_data", "after_level0_crcs", "after_all_crcs",
                "meta_temp_written", "meta_renamed", "wal_truncated"]


@pytest.mark.parametrize("point", CRASH_POINTS)
@pytest.mark.parametrize("pin", [None, 0], ids=["files", "pin0"])
@pytest.mark.parametrize("first, batches", [(1000, [37, 5]), (4096, [128, 1])],
                         ids=["1000+42", "4096+129"])
def test_kill_inside_checkpoint(
    tree_dir: Path, tmp_path: Path, point: str, pin: int | None, first: int, batches: list[int]
):
    script = tmp_path / "crash_at.py"
    script.write_text(CRASH_AT)
    args = {"path": str(tree_dir), "pin": pin, "point": point, "first": first,
            "batches": batches}
    res = subprocess.run([sys.executable, str(script), json.dumps(args)], capture_output=True,
                         text=True, env=child_env(), timeout=120)
    assert res.returncode == -signal.SIGKILL, res.stdout + res.stderr
    assert "survived" not in res.stdout
    total = first + sum(batches)
    assert res.stdout.split() == ["flushed", str(total)]
    stream = Stream()
    assert check_recovered(tree_dir, pin, stream, total) == total
    # the interrupted checkpoint can be completed, and the tree keeps growing
    tiering = TieringConfig() if pin is None else TieringConfig(pin_above_level=pin)
    cfg = RotorTreeConfig(str(tree_dir), arity=4, tiering=tiering)
    with RotorTree.open(cfg) as tree:
        tree.checkpoint()
        tree.insert_many(leaves(100, total))
    assert check_recovered(tree_dir, pin, stream, total + 100) == total + 100


def test_manual_flush_acknowledgements_survive_kill_9(tree_dir: Path, tmp_path: Path):
    """FlushPolicy.manual(): what flush() acknowledged survives; the rest may not."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    log = tmp_path / "writer.stderr"
    rng = random.Random("manual-flush")
    stream = Stream()
    size = 0
    for _ in range(3):
        args = {"path": str(tree_dir), "seed": rng.randrange(1 << 30), "flush": "manual",
                "ckpt": ["memory_threshold", 40_000], "pin": 2, "lo": 50, "hi": 200}
        ready_size, acks = run_child_and_kill(script, args, rng.uniform(0.05, 0.2), log)
        assert ready_size == size
        size = check_recovered(tree_dir, 2, stream, max(acks, default=size))


def test_the_kill_matrix_is_large_enough():
    assert TOTAL_KILLS >= 50
    kinds = {v[0][0] for v in KILL_MATRIX.values()}
    assert kinds == {"manual", "every_n_entries", "memory_threshold"}
    assert {v[1] for v in KILL_MATRIX.values()} == {0, None}
    assert {v[2] for v in KILL_MATRIX.values()} == {"interval", "manual"}

