"""Durable-tree benchmark: RotorTree durable ingest, checkpoints, reopen, WAL replay, proofs.

    python -m bench.durable [--quick] [--out DIR] [--leaves N] [--tmpdir DIR]

Measures RotorTree (arity 4) in this process, with real fsyncs on the disk holding the
temporary trees (by default a temporary directory inside the --out directory, so that the
trees live on the results' filesystem rather than on a possibly memory-backed /tmp):

* durable ingest: N leaves in batches of 1,000 / 10,000 / 100,000 into a fresh tree
  (after one untimed 10,000-leaf warm-up batch), waiting for each batch to be durable
  (``token.wait()``) under the interval 10 ms and 1 ms flush policies, and ``flush()``
  after each batch under the manual policy: leaves/s (median of runs) and the per-batch
  durability wait (ns); plus the same ingest without waiting (non-durable);
* checkpoint cost against the number of leaves since the previous checkpoint (N/100,
  N/10, N new leaves): seconds;
* reopen of an N-leaf tree from its checkpoint, with and without ``verify_checkpoint``;
* WAL replay: reopen of an N-leaf tree held only in the WAL: leaves/s;
* WAL torn-tail scan: ``wal.scan`` of a valid log followed by 64 MiB (8 MiB with --quick)
  of non-zero garbage, random and 0xFF-filled (recovery searches the garbage for a valid
  later record before calling it a torn tail): MB of garbage per second, median of runs;
* ``generate_proof`` latency at N leaves from RotorTree snapshots (levels in mmap'd files,
  the default, and every level in shared memory) against LeanIMT, page cache warm, on one
  pinned core; the ratio of medians.

Prints one table, writes ``durable.json`` and the plots to the out dir. Targets are
informational: a miss is reported, never an error.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rotorshm import (
    FlushPolicy,
    LeanIMT,
    RotorTree,
    RotorTreeConfig,
    TieringConfig,
    depth_for,
)
from rotorshm.config import CheckpointPolicy

from . import common

SCENARIO = "durable"
ARITY = 4
MAX_DEPTH = 20
LEAF = 32
MAIN_BATCH = 10_000
BATCHES = (1_000, 10_000, 100_000)

# (label, flush policy, how a batch is made durable)
POLICIES: tuple[tuple[str, FlushPolicy, str], ...] = (
    ("interval 10ms", FlushPolicy.interval(0.010), "token.wait()"),
    ("interval 1ms", FlushPolicy.interval(0.001), "token.wait()"),
    ("manual", FlushPolicy.manual(), "flush()"),
)


# -- shared helpers (also used by bench.daemon) ---------------------------------------------

def fs_type(path: str | os.PathLike[str]) -> str:
    """Filesystem type of the mount holding `path` ("unknown" where /proc/mounts is absent)."""
    real = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


def unique_name(tag: str) -> str:
    """A short unique tree name (the shared-memory segments are named after it)."""
    return f"b{tag[:4]}{uuid.uuid4().hex[:12]}"


def remove_leftover_segments(names: Sequence[str]) -> list[str]:
    """Unlink every /dev/shm segment still named after one of `names`; return them."""
    removed = [entry for name in names for entry in common.remove_shm_segments(name)]
    if removed:
        common.log(f"warning: removed leftover shared-memory segments {removed}")
    return removed


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (every thread); 0.0 if unavailable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


class Contention:
    """How much of the machine processes other than the benchmark's own used, over spans.

    Each span reads every CPU's busy time and the CPU time of the benchmark's processes
    (`pids`) before and after; `others` is the machine's busy CPU time minus ours, as a
    fraction of all CPU time: near 0 on a quiet machine, whatever the benchmark itself
    uses. A process that exits inside a span is under-counted (its time looks foreign),
    so spans should end while every process in `pids` is still alive.
    """

    def __init__(self) -> None:
        self.busy = self.total = 0.0
        self.ours = 0.0
        self.spans = 0
        self.load_before: float | None = None
        self.load_after: float | None = None

    @contextlib.contextmanager
    def span(self, pids: Sequence[int]) -> Iterator[None]:
        tick = os.sysconf("SC_CLK_TCK")
        if self.load_before is None:
            self.load_before = os.getloadavg()[0]
        c0, o0 = common.cpu_times(), sum(proc_cpu_seconds(p) for p in pids)
        try:
            yield
        finally:
            o1, c1 = sum(proc_cpu_seconds(p) for p in pids), common.cpu_times()
            for cpu, (b1, t1) in c1.items():
                if cpu in c0:
                    self.busy += (b1 - c0[cpu][0]) / tick
                    self.total += (t1 - c0[cpu][1]) / tick
            self.ours += o1 - o0
            self.spans += 1
            self.load_after = os.getloadavg()[0]

    @property
    def others(self) -> float | None:
        """Fraction of all CPU time used by other processes (None if unmeasured)."""
        if self.total <= 0:
            return None
        return min(max((self.busy - self.ours) / self.total, 0.0), 1.0)

    def summary(self) -> dict[str, Any]:
        return {"others_busy": self.others, "machine_busy": self.busy / self.total
                if self.total > 0 else None, "ours_cpu_s": self.ours, "spans": self.spans,
                "loadavg_1_before": self.load_before, "loadavg_1_after": self.load_after}

    def describe(self) -> str:
        o = self.others
        load = ("" if self.load_before is None or self.load_after is None else
                f", 1-min load {self.load_before:.2f} -> {self.load_after:.2f}")
        return f"other processes used {'n/a' if o is None else f'{100 * o:.0f}%'} of the CPUs{load}"


# -- parameters ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Params:
    leaves: int
    batches: tuple[int, ...]
    runs: int
    ckpt_sizes: tuple[int, ...]
    reopens: int
    replays: int
    scan_mib: int
    scans: int
    samples: int
    warmup: int
    rounds: int
    seed: int
    quick: bool


TARGET_INGEST = f"durable ingest, interval 10ms, batch {MAIN_BATCH:,}"
TARGET_REOPEN = "reopen from checkpoint, verify=False"
TARGET_REOPEN_VERIFY = "reopen from checkpoint, verify=True"
TARGET_REPLAY = "WAL replay (reopen)"
SCAN_GARBAGE = ("random", "0xff")
RATIO_FILES = "proof ratio RotorTree files / LeanIMT"
RATIO_SHM = "proof ratio RotorTree shm / LeanIMT"


def ingest_key(label: str, batch: int) -> str:
    return f"durable ingest, {label}, batch {batch:,}"


def nondurable_key(batch: int) -> str:
    return f"non-durable ingest, batch {batch:,}"


def wait_key(label: str, batch: int) -> str:
    return f"durability wait, {label}, batch {batch:,}"


def scan_key(garbage: str) -> str:
    return f"WAL torn-tail scan, {garbage} garbage"


def ckpt_key(n: int) -> str:
    return f"checkpoint after {n:,} new leaves"


def targets_for(p: Params) -> list[common.Target]:
    Target = common.Target
    return [
        Target(TARGET_INGEST, "median", ">=", 1_500_000, "leaves/s"),
        Target(ckpt_key(p.ckpt_sizes[-1]), "median", "<=", 1.0, "s"),
        Target(TARGET_REOPEN, "median", "<=", 0.2, "s"),
        Target(TARGET_REOPEN_VERIFY, "median", "<=", 1.0, "s"),
        Target(TARGET_REPLAY, "median", ">=", 2_000_000, "leaves/s"),
        *(Target(scan_key(g), "median", ">=", 200, "MB/s") for g in SCAN_GARBAGE),
        Target(RATIO_FILES, "median", "<=", 1.2, "ratio"),
        Target(RATIO_SHM, "median", "<=", 1.2, "ratio"),
    ]


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Params]:
    ap = common.base_parser(__doc__.splitlines()[0] if __doc__ else "durable benchmark")
    ap.add_argument("--leaves", type=int, default=None,
                    help="tree size N (default 1,000,000; 50,000 with --quick)")
    ap.add_argument("--samples", type=int, default=None,
                    help="timed generate_proof calls per tree (default 20,000; 2,000 with "
                         "--quick)")
    ap.add_argument("--seed", type=int, default=1, help="seed of leaves and random indices")
    ap.add_argument("--tmpdir", type=Path, default=None,
                    help="where the temporary trees go (default: a temporary directory "
                         "inside --out, i.e. on the results' filesystem)")
    args = ap.parse_args(argv)
    quick = bool(args.quick)
    leaves = common.quick_or_full(ap, "--leaves", args.leaves, quick, 50_000, 1_000_000, 100)
    samples = common.quick_or_full(ap, "--samples", args.samples, quick, 2_000, 20_000, 1)
    params = Params(
        leaves=leaves,
        batches=tuple(sorted({min(b, leaves) for b in BATCHES})),
        runs=2 if quick else 3,
        ckpt_sizes=tuple(sorted({max(leaves // 100, 1), max(leaves // 10, 1), leaves})),
        reopens=3 if quick else 5,
        replays=3,
        scan_mib=8 if quick else 64,
        scans=3 if quick else 5,
        samples=samples,
        warmup=200 if quick else 1_000,
        rounds=4 if quick else 10,
        seed=args.seed,
        quick=quick,
    )
    return args, params


# -- helpers ---------------------------------------------------------------------------------

def split(data: bytes, batch: int) -> list[bytes]:
    """`data` (leaves back to back) cut into batches of `batch` leaves (the last may be short)."""
    step = batch * LEAF
    return [data[off: off + step] for off in range(0, len(data), step)]


class Workspace:
    """Temporary tree directories under one parent, and the names given to trees."""

    def __init__(self, parent: Path) -> None:
        parent.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix=".rotorshm-bench-durable-", dir=parent))
        self.names: list[str] = []

    def tree_dir(self, tag: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=self.root))

    def config(self, path: Path, **kwargs: Any) -> RotorTreeConfig:
        name = unique_name("dur")
        self.names.append(name)
        return RotorTreeConfig(path, arity=ARITY, max_depth=MAX_DEPTH, name=name, **kwargs)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        remove_leftover_segments(self.names)


@contextlib.contextmanager
def opened(config: RotorTreeConfig) -> Iterator[RotorTree]:
    tree = RotorTree.open(config)
    try:
        yield tree
    finally:
        tree.close()


def fill(tree: RotorTree, batches: Sequence[bytes]) -> None:
    """Insert every batch, then wait until the last one is durable (untimed helper)."""
    token = None
    for b in batches:
        _, token = tree.insert_many(b)
    if token is not None:
        if tree.config.flush_policy.kind == "manual":
            tree.flush()
        assert token.wait(60.0), "durability wait timed out"


# -- durable ingest --------------------------------------------------------------------------

@dataclass(frozen=True)
class IngestConfig:
    key: str
    label: str
    policy: FlushPolicy
    how: str
    batch: int
    durable: bool


def ingest_once(ws: Workspace, cfg: IngestConfig, warm: bytes, batches: Sequence[bytes],
                n: int) -> tuple[float, list[int], bytes | None]:
    """One run: seconds from the first insert to the last batch made durable, wait ns, root.

    A fresh tree first receives `warm` (untimed, made durable), so that the timed ingest
    does not include creating the tree's files.
    """
    path = ws.tree_dir("ingest")
    clock = time.perf_counter_ns
    waits: list[int] = []
    manual = cfg.policy.kind == "manual"
    with opened(ws.config(path, flush_policy=cfg.policy)) as tree:
        fill(tree, [warm])
        insert = tree.insert_many
        with common.frozen_heap():
            start = clock()
            if not cfg.durable:
                for b in batches:
                    insert(b)
            elif manual:
                flush = tree.flush
                for b in batches:
                    insert(b)
                    t0 = clock()
                    flush()
                    waits.append(clock() - t0)
            else:
                for b in batches:
                    _, token = insert(b)
                    t0 = clock()
                    ok = token.wait()
                    waits.append(clock() - t0)
                    assert ok
            total = clock() - start
        assert tree.size == n + len(warm) // LEAF
        root = tree.root
    shutil.rmtree(path, ignore_errors=True)
    return total / 1e9, waits, root


def bench_ingest(p: Params, ws: Workspace, data: bytes, results: dict[str, Any],
                 step: Callable[[str], None]) -> None:
    """Runs go round-robin over the configurations, so a slow phase of the machine (or of
    the disk) does not land on one configuration only."""
    n = p.leaves
    configs = [IngestConfig(ingest_key(label, b), label, pol, how, b, True)
               for b in p.batches for label, pol, how in POLICIES]
    configs += [IngestConfig(nondurable_key(b), "no wait", POLICIES[0][1], "none", b, False)
                for b in p.batches]
    split_data = {b: split(data, b) for b in p.batches}
    warm = data[: MAIN_BATCH * LEAF]
    some = split_data[min(p.batches)][:20]
    for _, pol, _ in POLICIES:  # untimed: warm the code paths, the allocator and the disk
        cfg = IngestConfig("warmup", "warmup", pol, "", min(p.batches), True)
        ingest_once(ws, cfg, warm, some, sum(len(b) for b in some) // LEAF)
    runs: dict[str, list[dict[str, Any]]] = {c.key: [] for c in configs}
    waits: dict[str, list[int]] = {c.key: [] for c in configs}
    roots: set[bytes | None] = set()
    for r in range(p.runs):
        for c in configs:
            step(f"{c.key} run {r + 1}/{p.runs}")
            seconds, w, root = ingest_once(ws, c, warm, split_data[c.batch], n)
            roots.add(root)
            runs[c.key].append({"seconds": seconds, "leaves_per_s": common.rate(n, seconds)})
            waits[c.key].extend(w)
    assert len(roots) == 1, "ingest runs disagree on the root"
    root = next(iter(roots))
    assert root is not None
    for c in configs:
        results[c.key] = common.runs_entry(
            "throughput", [x["leaves_per_s"] for x in runs[c.key]], "leaves/s",
            arity=ARITY, leaves=n, batch=c.batch, flush_policy=c.label if c.durable
            else "interval 10ms", durable=c.durable, made_durable_by=c.how,
            warmup_leaves=len(warm) // LEAF, root=root.hex(), runs=runs[c.key],
        )
    for c in configs:
        if c.durable:
            results[wait_key(c.label, c.batch)] = common.latency_entry(
                waits[c.key], arity=ARITY, leaves=n, batch=c.batch, flush_policy=c.label,
                what=f"{c.how} after each insert_many of {c.batch:,} leaves, all runs",
            )


# -- checkpoints -----------------------------------------------------------------------------

def bench_checkpoint(p: Params, ws: Workspace, data: bytes, results: dict[str, Any],
                     step: Callable[[str], None]) -> None:
    """In each run, one fresh tree receives N/100, N/10 and N new leaves, each followed by
    a timed checkpoint(); the WAL is made durable before the clock starts, so the time is
    that of the checkpoint alone (flushing the changed nodes, CRCs, meta, WAL truncation)."""
    seconds: dict[int, list[float]] = {k: [] for k in p.ckpt_sizes}
    sizes_after: dict[int, list[int]] = {k: [] for k in p.ckpt_sizes}
    clock = time.perf_counter
    for r in range(p.runs):
        step(f"checkpoint run {r + 1}/{p.runs}")
        path = ws.tree_dir("ckpt")
        with opened(ws.config(path)) as tree:
            for k in p.ckpt_sizes:
                fill(tree, split(data[: k * LEAF], MAIN_BATCH))
                t0 = clock()
                meta = tree.checkpoint()
                seconds[k].append(clock() - t0)
                assert meta.size == tree.size
                sizes_after[k].append(tree.size)
        shutil.rmtree(path, ignore_errors=True)
    for k in p.ckpt_sizes:
        results[ckpt_key(k)] = common.runs_entry(
            "value", seconds[k], "s", arity=ARITY, leaves_since_checkpoint=k,
            tree_size_after=sizes_after[k],
            what="checkpoint() after k durable new leaves, flush policy interval 10ms",
        )


# -- reopen and WAL replay -------------------------------------------------------------------

def bench_reopen(p: Params, ws: Workspace, data: bytes, results: dict[str, Any],
                 step: Callable[[str], None]) -> tuple[Path, bytes]:
    """Reopen an N-leaf checkpointed tree (the WAL is empty) with and without verify,
    alternating; returns the tree's directory (kept for the proof phase) and root."""
    n = p.leaves
    step("build the checkpointed tree")
    path = ws.tree_dir("reopen")
    with opened(ws.config(path)) as tree:
        fill(tree, split(data, MAIN_BATCH))
        tree.checkpoint()
        root = tree.root
    assert root is not None
    times: dict[bool, list[float]] = {False: [], True: []}
    clock = time.perf_counter
    for i in range(p.reopens):
        for verify in (False, True):
            step(f"reopen {i + 1}/{p.reopens} verify={verify}")
            cfg = ws.config(path, verify_checkpoint=verify)
            t0 = clock()
            tree = RotorTree.open(cfg)
            times[verify].append(clock() - t0)
            try:
                assert tree.size == n and tree.root == root
            finally:
                tree.close()
    for verify, key in ((False, TARGET_REOPEN), (True, TARGET_REOPEN_VERIFY)):
        results[key] = common.runs_entry(
            "value", times[verify], "s", arity=ARITY, tree_size=n, verify_checkpoint=verify,
            what="RotorTree.open() of a tree whose leaves are all in its checkpoint",
        )
    return path, root


def bench_replay(p: Params, ws: Workspace, data: bytes, results: dict[str, Any],
                 step: Callable[[str], None], root: bytes) -> None:
    n = p.leaves
    step("build the WAL-only tree")
    path = ws.tree_dir("replay")
    kw: dict[str, Any] = {"flush_policy": FlushPolicy.manual(),
                          "checkpoint_policy": CheckpointPolicy.manual()}
    with opened(ws.config(path, **kw)) as tree:
        for b in split(data, MAIN_BATCH):
            tree.insert_many(b)
        tree.flush()
        assert tree.checkpoint_meta.size == 0
    wal_bytes = os.path.getsize(path / "wal.log")
    seconds: list[float] = []
    clock = time.perf_counter
    for i in range(p.replays):
        step(f"WAL replay {i + 1}/{p.replays}")
        cfg = ws.config(path, **kw)
        t0 = clock()
        tree = RotorTree.open(cfg)
        seconds.append(clock() - t0)
        try:
            assert tree.size == n and tree.root == root
            assert tree.checkpoint_meta.size == 0, "the replay tree was checkpointed"
        finally:
            tree.close()
    shutil.rmtree(path, ignore_errors=True)
    results[TARGET_REPLAY] = common.runs_entry(
        "throughput", [common.rate(n, s) for s in seconds], "leaves/s", arity=ARITY,
        tree_size=n, wal_bytes=wal_bytes, wal_records=len(range(0, n, MAIN_BATCH)),
        what="RotorTree.open() of a tree whose leaves are all in the WAL (no checkpoint)",
    )
    results["reopen from WAL only"] = common.runs_entry(
        "value", seconds, "s", arity=ARITY, tree_size=n, wal_bytes=wal_bytes,
        what="the same reopens as the WAL replay rate, in seconds",
    )


def bench_scan(p: Params, results: dict[str, Any], step: Callable[[str], None]) -> None:
    """wal.scan over a valid log followed by garbage: the search behind the damaged record
    (is a valid record hiding after it?) must run at disk speed, not ~1 MB/s."""
    from rotorshm import wal

    rng = random.Random(p.seed)
    prefix = b"".join(wal.encode_record(seq, rng.randbytes(MAIN_BATCH * LEAF))
                      for seq in range(1, 11))
    n = p.scan_mib << 20
    clock = time.perf_counter
    for garbage in SCAN_GARBAGE:
        junk = rng.randbytes(n) if garbage == "random" else b"\xff" * n
        data = prefix + junk
        rates = []
        for i in range(p.scans):
            step(f"WAL scan over {garbage} garbage {i + 1}/{p.scans}")
            t0 = clock()
            scan = wal.scan("wal.log", first_seq=1, data=data)
            rates.append(common.rate(n / 1e6, clock() - t0))
            assert len(scan.records) == 10 and scan.torn_bytes == n, "the scan kept garbage"
        results[scan_key(garbage)] = common.runs_entry(
            "throughput", rates, "MB/s", garbage_bytes=n, garbage=garbage,
            valid_records=10, valid_bytes=len(prefix),
            what="wal.scan of a log in memory (no I/O): 10 valid records, then garbage that "
                 "recovery drops as a torn tail after searching it for a later valid record",
        )


# -- proof latency ---------------------------------------------------------------------------

def bench_proofs(p: Params, ws: Workspace, data: bytes, results: dict[str, Any],
                 step: Callable[[str], None], files_path: Path, root: bytes,
                 cpu: int | None) -> dict[str, Any]:
    """generate_proof(random index) on three snapshots of the same N-leaf tree, measured in
    interleaved rounds on one pinned core; returns the contention of this phase."""
    n = p.leaves
    step("build the LeanIMT and the all-in-shm tree")
    lean = LeanIMT(ARITY, max(depth_for(n, ARITY), 1))
    for b in split(data, MAIN_BATCH):
        lean.insert_many(b)
    assert lean.root == root
    shm_path = ws.tree_dir("shm")
    with contextlib.ExitStack() as stack:
        files_tree = stack.enter_context(opened(ws.config(files_path, verify_checkpoint=False)))
        shm_tree = stack.enter_context(opened(ws.config(
            shm_path, tiering=TieringConfig(pin_above_level=0))))
        fill(shm_tree, split(data, MAIN_BATCH))
        assert files_tree.root == root and shm_tree.root == root
        snaps = {"LeanIMT": lean.snapshot(), "RotorTree files": files_tree.snapshot(),
                 "RotorTree shm": shm_tree.snapshot()}
        rng = random.Random(p.seed + 2)
        indices = [rng.randrange(n) for _ in range(p.samples)]
        for s in snaps.values():  # every snapshot gives the same, valid proofs
            for i in indices[:200]:
                proof = s.generate_proof(i)
                assert proof.root == root and proof.verify()
        try:
            allowed: set[int] | None = os.sched_getaffinity(0)
        except AttributeError:
            allowed = None
        pinned = common.pin_to_cpu(cpu)
        try:
            before, cont = common.preemptions(), Contention()
            with cont.span([os.getpid()]):
                samples = common.time_interleaved(
                    [common.Case(k, s.generate_proof, indices) for k, s in snaps.items()],
                    p.rounds, p.warmup,
                    on_round=lambda r: step(f"proof latency round {r + 1}/{p.rounds}"),
                )
            phase = {"pinned_cpu": pinned, "preemptions": common.preemptions() - before,
                     **cont.summary()}
        finally:
            if allowed is not None:
                os.sched_setaffinity(0, allowed)
    shutil.rmtree(shm_path, ignore_errors=True)
    tiering = {"LeanIMT": "memory (LeanIMT)",
               "RotorTree files": "every level in mmap'd shard files (default tiering)",
               "RotorTree shm": "every level in POSIX shared memory (pin_above_level=0)"}
    for k in snaps:
        results[f"generate_proof, {k}"] = common.latency_entry(
            samples[k], arity=ARITY, tree_size=n, storage=tiering[k],
            what="snapshot.generate_proof(random index), page cache warm",
        )
    lean_s = results["generate_proof, LeanIMT"]["summary"]
    for k, key in (("RotorTree files", RATIO_FILES), ("RotorTree shm", RATIO_SHM)):
        s = results[f"generate_proof, {k}"]["summary"]
        results[key] = common.runs_entry(
            "value", [s["median"] / lean_s["median"]], "ratio", arity=ARITY, tree_size=n,
            p99_ratio=s["p99"] / lean_s["p99"],
            what=f"median generate_proof ns of {k} / median of LeanIMT",
        )
    return phase


# -- plots -----------------------------------------------------------------------------------

def plots(p: Params, results: Mapping[str, Any]) -> list[dict[str, Any]]:
    def med(key: str) -> float:
        return float(results[key]["summary"]["median"])

    xs = [f"{b:,}" for b in p.batches]
    series = [{"label": f"durable, {label} ({how})", "x": xs,
               "y": [med(ingest_key(label, b)) for b in p.batches]}
              for label, _, how in POLICIES]
    series.append({"label": "non-durable (no wait)", "x": xs,
                   "y": [med(nondurable_key(b)) for b in p.batches]})
    return [
        {"file": f"{SCENARIO}_ingest.png",
         "title": f"RotorTree ingest of {p.leaves:,} leaves by flush policy and batch size "
                  f"(arity {ARITY}, median of {p.runs})",
         "xlabel": "batch size (leaves)", "ylabel": "ingest rate (leaves/s)",
         "xscale": "linear", "yscale": "linear", "kind": "bar", "series": series},
        {"file": f"{SCENARIO}_checkpoint.png",
         "title": f"Checkpoint time vs leaves since the last checkpoint (median of {p.runs})",
         "xlabel": "leaves since the last checkpoint (leaves)",
         "ylabel": "checkpoint time (s)", "xscale": "log", "yscale": "linear", "kind": "line",
         "series": [{"label": "checkpoint()", "x": list(p.ckpt_sizes),
                     "y": [med(ckpt_key(k)) for k in p.ckpt_sizes]}]},
        {"file": f"{SCENARIO}_reopen.png",
         "title": f"Reopen time of a {p.leaves:,}-leaf tree (median)",
         "xlabel": "how the tree is reopened (case)", "ylabel": "open time (s)",
         "xscale": "linear", "yscale": "linear", "kind": "bar",
         "series": [{"label": "RotorTree.open()",
                     "x": ["checkpoint, verify=False", "checkpoint, verify=True",
                           "WAL replay only"],
                     "y": [med(TARGET_REOPEN), med(TARGET_REOPEN_VERIFY),
                           med("reopen from WAL only")]}]},
    ]


# -- main ------------------------------------------------------------------------------------

def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the scenario, print its table, write durable.json and its plots; return the payload."""
    args, p = parse_args(argv)
    common.set_quiet(args.quiet)
    started = time.perf_counter()
    machine = common.machine_info()
    out: Path = args.out
    ws = Workspace(args.tmpdir if args.tmpdir is not None else out)
    fstype = fs_type(ws.root)
    if fstype in ("tmpfs", "ramfs"):
        common.log(f"warning: {ws.root} is on {fstype}: fsync costs nothing there")
    data = random.Random(p.seed).randbytes(p.leaves * LEAF)
    results: dict[str, Any] = {}
    phases: dict[str, Any] = {}
    steps = (p.runs * len(p.batches) * (len(POLICIES) + 1) + p.runs + 1 + 2 * p.reopens
             + 1 + p.replays + len(SCAN_GARBAGE) * p.scans + 1 + p.rounds)

    @contextlib.contextmanager
    def phase(name: str) -> Iterator[None]:
        cont, pre = Contention(), common.preemptions()
        with cont.span([os.getpid()]):
            yield
        phases[name] = {"preemptions": common.preemptions() - pre, **cont.summary()}

    try:
        with common.Steps(steps, desc=f"bench.{SCENARIO}") as bar:
            with phase("ingest"):
                bench_ingest(p, ws, data, results, bar.advance)
            with phase("checkpoint"):
                bench_checkpoint(p, ws, data, results, bar.advance)
            with phase("reopen"):
                files_path, root = bench_reopen(p, ws, data, results, bar.advance)
            with phase("replay"):
                bench_replay(p, ws, data, results, bar.advance, root)
            with phase("wal scan"):
                bench_scan(p, results, bar.advance)
            phases["proofs"] = bench_proofs(p, ws, data, results, bar.advance, files_path,
                                            root, args.cpu)
    finally:
        ws.cleanup()

    # table order: ingest rates, waits, then the rest as measured
    order = [k for k in results if "ingest" in k] + [k for k in results if "ingest" not in k]
    results = {k: results[k] for k in order}
    verdicts = common.evaluate_targets(results, targets_for(p))
    elapsed = time.perf_counter() - started
    title = (f"rotorshm durable benchmark: RotorTree arity {ARITY}, N={p.leaves:,} leaves, "
             f"trees on {fstype}, {'quick' if p.quick else 'full'} run")
    common.print_table(title, common.table_rows(results, verdicts), common.TABLE_COLUMNS,
                       common.TABLE_ALIGN)
    print("ingest: leaves/s from the first insert to the last batch durable (median of "
          f"{p.runs} runs); checkpoint/reopen in seconds; generate_proof per call on one "
          "core, timer included; targets are informational")
    print("CPU time of other processes per phase (share of all CPUs; 1-min load after): "
          + ", ".join(f"{k} {common.fmt_pct(v['others_busy'])} ({v['loadavg_1_after']:.2f})"
                      for k, v in phases.items()))
    print(f"runtime {elapsed:.1f} s")
    payload = common.result_payload(
        benchmark=SCENARIO,
        machine=machine,
        parameters={
            "arity": ARITY,
            "max_depth": MAX_DEPTH,
            "leaves": p.leaves,
            "batches": list(p.batches),
            "main_batch": MAIN_BATCH,
            "flush_policies": [label for label, _, _ in POLICIES],
            "runs": p.runs,
            "checkpoint_sizes": list(p.ckpt_sizes),
            "reopens": p.reopens,
            "replays": p.replays,
            "scan_garbage_mib": p.scan_mib,
            "scans": p.scans,
            "proof_samples": p.samples,
            "proof_warmup": p.warmup,
            "proof_rounds": p.rounds,
            "seed": p.seed,
            "quick": p.quick,
            "tree_dir_parent": str(ws.root.parent),
            "tree_fs_type": fstype,
            "sample_cap": common.SAMPLE_CAP,
            "contention": phases,
            "timing": "ingest and checkpoint phases unpinned (the flusher thread and the "
                      "kernel's fsync work are part of the cost); generate_proof latencies "
                      "pinned to one CPU, perf_counter_ns around each call, nothing "
                      "subtracted, gc enabled with the heap frozen, interleaved rounds",
        },
        results=results,
        targets=verdicts,
        plots=plots(p, results),
        runtime_s=elapsed,
    )
    common.write_results(payload, out)
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
