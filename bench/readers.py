"""Reader benchmark: proof throughput across reader processes, snapshot latency and reader
memory against tree size, all through a real writer daemon.

    python -m bench.readers [--quick] [--out DIR] [--leaves N] [--duration S] [--tierings T]

Everything runs against ``python -m rotorshm serve`` subprocesses (arity 4) fed by
clients over the Unix socket, and reader processes (multiprocessing, spawn) that attach
by name:

* **proof throughput scaling** on a tree of N leaves (1,000,000; quick 50,000): K reader
  processes (K = 1 .. usable CPUs, then one more) each loop for a fixed time (3 s; quick
  0.3 s) doing ``snapshot()`` every 100 proofs, ``generate_proof(random index)`` and
  ``verify()``; aggregate proofs/s and per-call ``generate_proof`` latency. First without
  ingest (all runs on one tree), then while a client process ingests 10,000-leaf batches
  back to back - each of those runs on a fresh N-leaf tree, since the ingest adds millions
  of leaves per run; the sizes reached are recorded;
* **snapshot latency vs tree size**: one tree grown through 1K, 10K, 100K, 1M, 10M
  leaves (quick: up to 100K) in 100,000-leaf batches; at each size one reader process
  (fresh for the sweep, pinned to one CPU) times ``reader.snapshot()`` per call, in
  interleaved rounds with the snapshot of a 1,000-leaf reference tree (its own daemon), so
  that growth with size can be told from a slow phase of the machine;
* **reader private memory vs tree size**: the same reader, after 10,000 random proofs at
  each size, reads ``/proc/self/smaps_rollup`` (Private_Clean + Private_Dirty; Rss and
  Shared_* are recorded too).

The size sweep runs once per tiering (default: every level in shard files, the
``serve`` default; and levels >= 2 pinned in shared-memory segments, as the demo runs),
because a reader's snapshot does extra work for pinned levels. The daemons run with
``--checkpoint manual`` and the default 10 ms group commit; trees live in a temporary
directory, and every daemon is stopped with SIGTERM and checked for leftover
``/dev/shm/rotorshm.*`` segments. Each run records how much CPU other processes (and the
hypervisor) took meanwhile. Targets are informational: a miss is reported, never an
error.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import multiprocessing as mp
import os
import queue
import random
import shutil
import signal
import subprocess
import tempfile
import time
import traceback
import uuid
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from . import common
from .common import size_label

ARITY = 4
MAX_DEPTH = 16  # 4**16 leaves: room for the growth of the with-ingest runs
LEAF = 32
PROOFS_PER_SNAPSHOT = 100
INGEST_BATCH = 10_000
BUILD_BATCH = 100_000
REFERENCE_SIZE = 1_000  # leaves of the reference tree timed alongside each size
WARMUP_PROOFS = 200
RAND_POOL = 1 << 16  # random draws prepared before a timed loop (indices = draw % size)
DAEMON_READY_TIMEOUT = 60.0
DAEMON_STOP_TIMEOUT = 120.0
REPLY_TIMEOUT = 120.0  # guard for one worker command beyond its own duration (never a speed limit)

FULL_SIZES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000)
QUICK_SIZES = (1_000, 10_000, 100_000)

CTX = mp.get_context("spawn")


@dataclass(frozen=True)
class Params:
    leaves: int
    duration: float
    runs: int
    readers: tuple[int, ...]
    sizes: tuple[int, ...]
    snapshot_samples: int
    memory_proofs: int
    tierings: tuple[int | None, ...]  # pin_above_level per size sweep; None = all in files
    flush_interval_ms: float
    seed: int
    quick: bool


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity set where supported)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _tierings(text: str) -> tuple[int | None, ...]:
    out: list[int | None] = []
    for part in text.split(","):
        part = part.strip().lower()
        if part in ("files", "none"):
            out.append(None)
        else:
            try:
                level = int(part)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"tiering {part!r}: expected 'files' or a pin_above_level >= 0"
                ) from None
            if level < 0:
                raise argparse.ArgumentTypeError(f"pin_above_level must be >= 0, got {level}")
            out.append(level)
    if not out:
        raise argparse.ArgumentTypeError("need at least one tiering")
    return tuple(out)


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Params]:
    ap = common.base_parser(__doc__.splitlines()[0] if __doc__ else "readers benchmark")
    ap.add_argument("--leaves", type=int, default=None,
                    help="tree size of the throughput runs (default 1,000,000; quick 50,000)")
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds each reader loops per run (default 3; quick 0.3)")
    ap.add_argument("--runs", type=int, default=None,
                    help="runs per reader count and mode (default 3; quick 1)")
    ap.add_argument("--max-readers", type=int, default=None,
                    help="largest reader count (default: usable CPUs + 1)")
    ap.add_argument("--tierings", type=_tierings, default=None,
                    help="comma list of 'files' or pin_above_level values for the size sweep; "
                         "the first one also serves the throughput runs (default files,2)")
    ap.add_argument("--flush-interval-ms", type=float, default=10.0,
                    help="daemon group-commit interval (default 10, the serve default)")
    ap.add_argument("--seed", type=int, default=1, help="seed of leaves and random indices")
    args = ap.parse_args(argv)
    quick = bool(args.quick)
    leaves = common.quick_or_full(ap, "--leaves", args.leaves, quick, 50_000, 1_000_000, 2)
    duration = args.duration if args.duration is not None else (0.3 if quick else 3.0)
    if not duration > 0:
        ap.error("--duration must be > 0")
    runs = common.quick_or_full(ap, "--runs", args.runs, quick, 1, 3, 1)
    cpus = usable_cpus()
    top = args.max_readers if args.max_readers is not None else cpus + 1
    if top < 1:
        ap.error("--max-readers must be at least 1")
    readers = tuple(k for k in [*range(1, cpus + 1), cpus + 1] if k <= top)
    if top not in readers:
        readers = (*readers, top)
    params = Params(
        leaves=leaves,
        duration=duration,
        runs=runs,
        readers=readers,
        sizes=QUICK_SIZES if quick else FULL_SIZES,
        snapshot_samples=2_000 if quick else 20_000,
        memory_proofs=2_000 if quick else 10_000,
        tierings=args.tierings if args.tierings is not None else (None, 2),
        flush_interval_ms=args.flush_interval_ms,
        seed=args.seed,
        quick=quick,
    )
    return args, params


def tiering_label(pin: int | None) -> str:
    return "files" if pin is None else f"pin>={pin}"


# -- the writer daemon ---------------------------------------------------------------------

class Daemon:
    """A `python -m rotorshm serve` subprocess on its own temporary tree directory."""

    def __init__(self, root: Path, pin_above_level: int | None, flush_interval_ms: float) -> None:
        self.name = f"bench{uuid.uuid4().hex[:12]}"
        self.directory = root / self.name
        self.directory.mkdir(parents=True)
        self.pin_above_level = pin_above_level
        self.log_path = root / f"{self.name}.log"
        args = common.serve_argv(str(self.directory), "--name", self.name,
                                 "--arity", str(ARITY), "--max-depth", str(MAX_DEPTH),
                                 "--flush-interval-ms", str(flush_interval_ms),
                                 "--checkpoint", "manual")
        if pin_above_level is not None:
            args += ["--pin-above-level", str(pin_above_level)]
        self.args = args
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        # Its own session: a ^C in the terminal reaches us, and we stop it with SIGTERM.
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.leftovers: list[str] = []
        self.exit_code: int | None = None

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def wait_ready(self) -> None:
        """Until the socket answers from this process and a reader sees a live writer."""
        import rotorshm

        deadline = time.monotonic() + DAEMON_READY_TIMEOUT
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"writer daemon exited with code {self.proc.returncode} "
                                   f"at start:\n{self.output()}")
            if (self.directory / "writer.sock").exists():
                try:
                    with rotorshm.connect(self.directory, timeout=5.0) as client, \
                            rotorshm.attach(self.name) as reader:
                        if client.writer_pid == self.proc.pid and reader.writer_alive:
                            return
                except (rotorshm.RotorError, OSError) as exc:
                    last = exc
            time.sleep(0.02)
        raise RuntimeError(f"writer daemon not ready after {DAEMON_READY_TIMEOUT:.0f} s "
                           f"(last error: {last!r}):\n{self.output()}")

    def stop(self) -> None:
        """SIGTERM, wait (SIGKILL if it overstays), then remove any segment it left."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(DAEMON_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.exit_code = self.proc.returncode
        self._log.close()
        self.leftovers = common.remove_shm_segments(self.name)
        if self.exit_code != 0:
            common.log(f"warning: writer daemon {self.name} exited with code {self.exit_code}:"
                       f"\n{self.output()}")
        if self.leftovers:
            common.log(f"warning: daemon {self.name} left {self.leftovers} in {common.SHM_DIR} "
                       "(removed)")


def procs_cpu_s(pids: Sequence[int]) -> float:
    """CPU seconds (user + system, all threads) used so far by the processes `pids`."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            continue
    return total / tick


def cpu_ticks() -> tuple[int, int]:
    """(busy without steal, steal) clock ticks summed over every CPU, from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("cpu "):
                    v = [int(x) for x in line.split()[1:9]]
                    # user nice system idle iowait irq softirq steal
                    return v[0] + v[1] + v[2] + v[5] + v[6], v[7]
    except (OSError, ValueError):
        pass
    return 0, 0


def foreign_cores(before: tuple[int, int], after: tuple[int, int], ours_s: float,
                  seconds: float) -> tuple[float | None, float | None]:
    """(foreign, steal) over a window, in cores: both near 0 on a quiet machine.

    foreign: CPU time that processes other than ours ran (busy time of every CPU from
    /proc/stat minus what our processes used), per second of the window; near 1 means
    another job took a whole core. steal: time the hypervisor gave our vCPUs to others.
    """
    if seconds <= 0 or after == (0, 0):
        return None, None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = (after[0] - before[0]) / tick
    steal = (after[1] - before[1]) / tick
    return max(0.0, busy - ours_s) / seconds, steal / seconds


def build_to(client: Any, current: int, target: int, rng: random.Random) -> float:
    """Insert leaves until the tree has `target` (no durability wait per batch); return s."""
    t0 = time.perf_counter()
    seq = 0
    while current < target:
        n = min(BUILD_BATCH, target - current)
        seq, size, _ = client.insert_many(rng.randbytes(n * LEAF))
        current += n
        if size != current:
            raise RuntimeError(f"daemon reports size {size:,} after a batch, expected {current:,}")
    elapsed = time.perf_counter() - t0
    # Let the group commit catch up, so that no fsync of the build runs during a measurement.
    if seq and not client.wait_durable(seq, timeout=120.0):
        raise RuntimeError("the build did not become durable within 120 s")
    return elapsed


# -- worker processes ----------------------------------------------------------------------

class _WorkerCtx:
    """What a command running in a worker process can use."""

    def __init__(self, wid: int, replies: Any, start: Any, stop: Any) -> None:
        self.wid = wid
        self.replies = replies
        self.start = start
        self.stop = stop
        self.readers: dict[str, Any] = {}
        self.reference: Any = None  # a reader of a small fixed tree, timed alongside

    def notify(self, kind: str, payload: object = None) -> None:
        self.replies.put((self.wid, kind, payload))

    def reader(self, name: str) -> Any:
        import rotorshm

        r = self.readers.get(name)
        if r is None:
            for old in self.readers.values():  # a new tree: its predecessors are gone
                with contextlib.suppress(Exception):
                    old.close()
            self.readers.clear()
            r = rotorshm.attach(name)
            self.readers[name] = r
        return r


def _cmd_prove(w: _WorkerCtx, name: str, duration: float, seed: int,
               per_snapshot: int, mode: str = "generate_proof") -> dict[str, Any]:
    """Loop snapshot / generate_proof / verify for `duration` s once the start event is set.

    With mode "proof_bytes": snapshot / proof_bytes (the encoding a server sends), checked
    with verify_proof_bytes once per snapshot.
    """
    if mode == "proof_bytes":
        return _prove_bytes(w, name, duration, seed, per_snapshot)
    reader = w.reader(name)
    rng = random.Random(seed)
    draws = [rng.getrandbits(62) for _ in range(RAND_POOL)]
    mask = RAND_POOL - 1
    snap = reader.snapshot()
    for j in range(WARMUP_PROOFS):
        if not snap.generate_proof(draws[j] % snap.size).verify():
            raise RuntimeError("a warm-up proof does not verify")
    w.notify("ready")
    if not w.start.wait(REPLY_TIMEOUT):
        raise RuntimeError("no start signal")
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    proofs = snapshots = failures = 0
    k = 0
    size_first = -1
    nivcsw = common.preemptions()
    cpu0 = time.process_time()
    with common.frozen_heap():
        start = clock()
        deadline = start + int(duration * 1e9)
        while True:
            snap = reader.snapshot()
            snapshots += 1
            size = snap.size
            if size_first < 0:
                size_first = size
            gen = snap.generate_proof
            for _ in range(per_snapshot):
                i = draws[k & mask] % size
                k += 1
                t0 = clock()
                proof = gen(i)
                t1 = clock()
                append(t1 - t0)
                if not proof.verify():
                    failures += 1
            proofs += per_snapshot
            if clock() >= deadline:
                break
        elapsed = clock() - start
    return {
        "proofs": proofs,
        "snapshots": snapshots,
        "failures": failures,
        "elapsed_s": elapsed / 1e9,
        "cpu_s": time.process_time() - cpu0,
        "preemptions": common.preemptions() - nivcsw,
        "size_first": size_first,
        "size_last": size,
        "samples": array("q", samples).tobytes(),
    }


def _cmd_ingest(w: _WorkerCtx, directory: str, seed: int, batch: int) -> dict[str, Any]:
    """Insert `batch`-leaf batches back to back until the stop event is set."""
    import rotorshm

    rng = random.Random(seed)
    buffers = [rng.randbytes(batch * LEAF) for _ in range(8)]
    with rotorshm.connect(directory) as client:
        _, size0, _ = client.insert_many(buffers[0])
        w.notify("ready")
        batches = 0
        size = size0
        t0 = time.perf_counter()
        while not w.stop.is_set():
            _, size, _ = client.insert_many(buffers[batches & 7])
            batches += 1
        elapsed = time.perf_counter() - t0
    return {"batches": batches, "leaves": batches * batch, "elapsed_s": elapsed,
            "leaves_per_s": batches * batch / elapsed if elapsed > 0 else 0.0,
            "size_first": size0, "size_last": size}


def _prove_bytes(w: _WorkerCtx, name: str, duration: float, seed: int,
                 per_snapshot: int) -> dict[str, Any]:
    from rotorshm import verify_proof_bytes

    reader = w.reader(name)
    rng = random.Random(seed)
    draws = [rng.getrandbits(62) for _ in range(RAND_POOL)]
    mask = RAND_POOL - 1
    snap = reader.snapshot()
    for j in range(WARMUP_PROOFS):
        if not verify_proof_bytes(snap.proof_bytes(draws[j] % snap.size), snap.root, snap.size):
            raise RuntimeError("a warm-up proof does not verify")
    w.notify("ready")
    if not w.start.wait(REPLY_TIMEOUT):
        raise RuntimeError("no start signal")
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    proofs = snapshots = failures = 0
    k = 0
    size_first = -1
    nivcsw = common.preemptions()
    cpu0 = time.process_time()
    with common.frozen_heap():
        start = clock()
        deadline = start + int(duration * 1e9)
        while True:
            snap = reader.snapshot()
            snapshots += 1
            size = snap.size
            if size_first < 0:
                size_first = size
            gen = snap.proof_bytes
            blob = b""
            for _ in range(per_snapshot):
                i = draws[k & mask] % size
                k += 1
                t0 = clock()
                blob = gen(i)
                t1 = clock()
                append(t1 - t0)
            if not verify_proof_bytes(blob, snap.root, size):
                failures += 1
            proofs += per_snapshot
            if clock() >= deadline:
                break
        elapsed = clock() - start
    return {
        "proofs": proofs,
        "snapshots": snapshots,
        "failures": failures,
        "elapsed_s": elapsed / 1e9,
        "cpu_s": time.process_time() - cpu0,
        "preemptions": common.preemptions() - nivcsw,
        "size_first": size_first,
        "size_last": size,
        "samples": array("q", samples).tobytes(),
    }


def _cmd_size_point(w: _WorkerCtx, name: str, size: int, samples: int, proofs: int,
                    seed: int, cpu: int | None, reference: str) -> dict[str, Any]:
    """At tree size `size`: snapshot() latency, `proofs` random proofs, then smaps_rollup.

    The snapshot is timed in interleaved rounds with the snapshot of a reference tree
    that keeps its size for the whole sweep, so that a slow phase of the machine shows
    in both and the ratio of the two tells whether the latency grows with the tree.
    """
    import rotorshm

    if cpu is not None:
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setaffinity(0, {cpu})
    if w.reference is None:
        w.reference = rotorshm.attach(reference)
    ref = w.reference
    reader = w.reader(name)
    snap = reader.snapshot()
    if snap.size != size:
        raise RuntimeError(f"reader sees {snap.size:,} leaves, expected {size:,}")
    rng = random.Random(seed)
    indices = [rng.randrange(size) for _ in range(proofs)]

    def prove_all() -> list[int]:
        clock = time.perf_counter_ns
        out = []
        s = reader.snapshot()
        for i in indices:
            t0 = clock()
            p = s.generate_proof(i)
            out.append(clock() - t0)
            if not p.verify():
                raise RuntimeError(f"proof of leaf {i} at size {size} does not verify")
        return out

    cases = [common.Case("tree", reader.snapshot, samples),
             common.Case("reference", ref.snapshot, samples)]
    rounds = 10
    nivcsw = common.preemptions()
    cpus0 = common.cpu_times()
    timed = common.time_interleaved(cases, rounds, warmup=1_000)
    others = common.others_busy(cpus0, common.cpu_times(), cpu)
    snap_preempted = common.preemptions() - nivcsw
    snap_ns, ref_ns = timed["tree"], timed["reference"]
    with common.frozen_heap():
        proof_ns = prove_all()
    del snap
    gc.collect()
    mem = common.smaps_rollup()
    return {"snapshot_ns": snap_ns, "reference_ns": ref_ns,
            "snapshot_preemptions": snap_preempted,
            "snapshot_other_cpus_busy": others, "proof_ns": proof_ns, "smaps": mem,
            "pid": os.getpid()}


_COMMANDS: dict[str, Callable[..., dict[str, Any]]] = {
    "prove": _cmd_prove,
    "ingest": _cmd_ingest,
    "size_point": _cmd_size_point,
}


def _worker_main(wid: int, cmds: Any, replies: Any, start: Any, stop: Any) -> None:
    """Body of a worker process: run commands from `cmds` until None, reply on `replies`."""
    w = _WorkerCtx(wid, replies, start, stop)
    try:
        while True:
            cmd = cmds.get()
            if cmd is None:
                return
            op, kwargs = cmd
            try:
                result = _COMMANDS[op](w, **kwargs)
            except BaseException:  # noqa: BLE001 - reported to the parent, never lost
                replies.put((wid, "error", traceback.format_exc(limit=12)))
            else:
                replies.put((wid, "ok", result))
    finally:
        for r in [*w.readers.values(), w.reference]:
            if r is not None:
                with contextlib.suppress(Exception):
                    r.close()


class Pool:
    """Worker processes (spawn) that run commands; one shared reply queue."""

    def __init__(self, count: int) -> None:
        self.replies = CTX.Queue()
        self.start = CTX.Event()
        self.stop = CTX.Event()
        self.cmds: list[Any] = []
        self.procs: list[BaseProcess] = []
        for wid in range(count):
            q = CTX.Queue()
            p = CTX.Process(target=_worker_main, name=f"bench-readers-{wid}",
                            args=(wid, q, self.replies, self.start, self.stop), daemon=True)
            p.start()
            self.cmds.append(q)
            self.procs.append(p)

    def pid(self, wid: int) -> int:
        pid = self.procs[wid].pid
        assert pid is not None
        return pid

    def send(self, wid: int, op: str, **kwargs: Any) -> None:
        self.cmds[wid].put((op, kwargs))

    def wait(self, kind: str, wids: Sequence[int], timeout: float) -> dict[int, Any]:
        """Replies of `kind` from every worker in `wids`; raises on an error or a timeout."""
        want = set(wids)
        got: dict[int, Any] = {}
        deadline = time.monotonic() + timeout
        while want - got.keys():
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"workers {sorted(want - got.keys())} gave no {kind!r} "
                                   f"within {timeout:.0f} s")
            try:
                wid, k, payload = self.replies.get(timeout=min(left, 0.5))
            except queue.Empty:
                dead = [w for w in want - got.keys() if not self.procs[w].is_alive()]
                if dead:
                    raise RuntimeError(f"worker processes {dead} died "
                                       f"(exit codes {[self.procs[w].exitcode for w in dead]})"
                                       ) from None
                continue
            if k == "error":
                raise RuntimeError(f"worker {wid} failed:\n{payload}")
            if k != kind or wid not in want:
                raise RuntimeError(f"unexpected reply {k!r} from worker {wid}")
            got[wid] = payload
        return got

    def close(self) -> None:
        for q in self.cmds:
            with contextlib.suppress(Exception):
                q.put(None)
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(10)


# -- measurements --------------------------------------------------------------------------

BYTES_KEY = "K=1 proof_bytes no ingest"


def proof_key(k: int, ingest: bool) -> str:
    return f"K={k} {'with ingest' if ingest else 'no ingest'}"


@contextlib.contextmanager
def tree_daemon(root: Path, pin: int | None, p: Params, leaves: int, seed: int,
                info: dict[str, Any]) -> Iterator[Daemon]:
    """A ready daemon holding a tree of `leaves` random leaves; stopped and removed after."""
    import rotorshm

    daemon = Daemon(root, pin, p.flush_interval_ms)
    try:
        daemon.wait_ready()
        if leaves:
            with rotorshm.connect(daemon.directory) as client:
                build_s = build_to(client, 0, leaves, random.Random(seed))
            info.setdefault("build_leaves_per_s", []).append(leaves / build_s)
        yield daemon
    finally:
        daemon.stop()
        info.setdefault("leftover_segments", []).extend(daemon.leftovers)
        info.setdefault("daemon_exit_codes", []).append(daemon.exit_code)
        shutil.rmtree(daemon.directory, ignore_errors=True)


def bench_throughput(p: Params, root: Path, results: dict[str, Any], info: dict[str, Any],
                     step: Callable[[str], None]) -> None:
    """Aggregate proofs/s and generate_proof latency for every reader count, both modes.

    The runs without ingest share one N-leaf tree. Every run with ingest gets a fresh
    N-leaf tree (a new daemon), so that it starts from the same size: continuous ingest
    grows the tree by millions of leaves per run, and proofs get deeper as it grows.
    """
    pin = p.tierings[0]
    kmax = max(p.readers)
    ingest_wid = kmax
    runs: dict[str, list[dict[str, Any]]] = {}
    lat: dict[str, list[int]] = {}
    load = {"before": list(os.getloadavg())}
    pool = Pool(kmax + 1)
    try:
        step(f"throughput: build {p.leaves:,} leaves")
        with tree_daemon(root, pin, p, p.leaves, p.seed, info) as daemon:
            for r in range(p.runs):
                for k in p.readers:
                    key = proof_key(k, False)
                    step(f"{key}, run {r + 1}/{p.runs}")
                    run = _one_run(p, pool, daemon, k, False, ingest_wid,
                                   seed=p.seed * 1_000_003 + r * 1_009 + k * 17)
                    lat.setdefault(key, []).extend(run.pop("samples_ns"))
                    runs.setdefault(key, []).append(run)
                step(f"{BYTES_KEY}, run {r + 1}/{p.runs}")
                run = _one_run(p, pool, daemon, 1, False, ingest_wid,
                               seed=p.seed * 1_000_003 + r * 1_009 + 5, mode="proof_bytes")
                lat.setdefault(BYTES_KEY, []).extend(run.pop("samples_ns"))
                runs.setdefault(BYTES_KEY, []).append(run)
        for r in range(p.runs):
            for k in p.readers:
                key = proof_key(k, True)
                step(f"{key}, run {r + 1}/{p.runs}")
                with tree_daemon(root, pin, p, p.leaves, p.seed, info) as daemon:
                    run = _one_run(p, pool, daemon, k, True, ingest_wid,
                                   seed=p.seed * 1_000_003 + r * 1_009 + k * 17 + 1)
                lat.setdefault(key, []).extend(run.pop("samples_ns"))
                runs.setdefault(key, []).append(run)
    finally:
        pool.close()
    load["after"] = list(os.getloadavg())
    info["throughput_loadavg"] = load
    for ingest in (False, True):
        for k in p.readers:
            key = proof_key(k, ingest)
            rs = runs[key]
            rates = [x["proofs_per_s"] for x in rs]
            extra = {"readers": k, "ingest": ingest, "arity": ARITY,
                     "duration_s": p.duration, "proofs_per_snapshot": PROOFS_PER_SNAPSHOT,
                     "tree_size": p.leaves, "tiering": tiering_label(p.tierings[0])}
            results[f"proofs/s {key}"] = {
                "kind": "throughput", "unit": "proofs/s",
                "summary": common.summarize(rates), "samples": rates, **extra,
                "runs": rs,
            }
            results[f"generate_proof {key}"] = common.latency_entry(
                lat[key], what="snap.generate_proof(random index), per call, all readers "
                               "and runs merged", **extra)
    rs = runs[BYTES_KEY]
    rates = [x["proofs_per_s"] for x in rs]
    extra = {"readers": 1, "ingest": False, "arity": ARITY, "duration_s": p.duration,
             "proofs_per_snapshot": PROOFS_PER_SNAPSHOT, "tree_size": p.leaves,
             "tiering": tiering_label(p.tierings[0])}
    results[f"proofs/s {BYTES_KEY}"] = {
        "kind": "throughput", "unit": "proofs/s",
        "summary": common.summarize(rates), "samples": rates, **extra, "runs": rs,
        "what": "one reader: snapshot() every 100 proofs, snap.proof_bytes(random index), "
                "verify_proof_bytes on the last proof of each snapshot",
    }
    results[f"proof_bytes {BYTES_KEY}"] = common.latency_entry(
        lat[BYTES_KEY], what="snap.proof_bytes(random index), per call", **extra)
    one = results[f"proofs/s {proof_key(1, False)}"]["summary"]["median"]
    two_k = 2 if 2 in p.readers else max(p.readers)
    two = results[f"proofs/s {proof_key(two_k, False)}"]["summary"]["median"]
    results[f"proofs/s scaling 1->{two_k} readers"] = common.single_value_entry(
        two / one, "x", readers=[1, two_k], ingest=False,
        what=f"median aggregate proofs/s with {two_k} readers / with 1 reader, no ingest")


def _one_run(p: Params, pool: Pool, daemon: Daemon, k: int, ingest: bool, ingest_wid: int,
             seed: int, mode: str = "generate_proof") -> dict[str, Any]:
    pool.start.clear()
    pool.stop.clear()
    if ingest:
        pool.send(ingest_wid, "ingest", directory=str(daemon.directory), seed=seed,
                  batch=INGEST_BATCH)
        pool.wait("ready", [ingest_wid], REPLY_TIMEOUT)
    wids = list(range(k))
    for wid in wids:
        pool.send(wid, "prove", name=daemon.name, duration=p.duration, seed=seed + wid * 7919,
                  per_snapshot=PROOFS_PER_SNAPSHOT, mode=mode)
    pool.wait("ready", wids, REPLY_TIMEOUT)
    ours = [os.getpid(), daemon.proc.pid] + [pool.pid(w) for w in wids]
    if ingest:
        ours.append(pool.pid(ingest_wid))
    busy0, ticks0 = common.cpu_times(), cpu_ticks()
    ours0, t0 = procs_cpu_s(ours), time.perf_counter()
    pool.start.set()
    got = pool.wait("ok", wids, p.duration + REPLY_TIMEOUT)
    busy1, ticks1 = common.cpu_times(), cpu_ticks()
    ours1, t1 = procs_cpu_s(ours), time.perf_counter()
    foreign, steal = foreign_cores(ticks0, ticks1, ours1 - ours0, t1 - t0)
    ing: dict[str, Any] | None = None
    if ingest:
        pool.stop.set()
        ing = pool.wait("ok", [ingest_wid], REPLY_TIMEOUT)[ingest_wid]
    pool.start.clear()
    pool.stop.clear()
    per_reader = []
    samples: list[int] = []
    failures = 0
    for wid in wids:
        g = got[wid]
        failures += g["failures"]
        a = array("q")
        a.frombytes(g["samples"])
        samples.extend(a)
        per_reader.append({
            "proofs": g["proofs"], "snapshots": g["snapshots"], "elapsed_s": g["elapsed_s"],
            "cpu_s": g["cpu_s"], "preemptions": g["preemptions"],
            "proofs_per_s": g["proofs"] / g["elapsed_s"],
            "tree_size_first": g["size_first"], "tree_size_last": g["size_last"],
        })
    if failures:
        raise RuntimeError(f"{failures} proofs did not verify ({k} readers, ingest={ingest})")
    return {
        "proofs_per_s": sum(x["proofs_per_s"] for x in per_reader),
        "per_reader": per_reader,
        "all_cpus_busy": common.others_busy(busy0, busy1, None),
        "foreign_cores": foreign,
        "steal_cores": steal,
        "tree_size_first": min(x["tree_size_first"] for x in per_reader),
        "tree_size_last": max(x["tree_size_last"] for x in per_reader),
        "ingest": ing,
        "samples_ns": samples,
    }


def bench_sizes(p: Params, root: Path, pin: int | None, cpu: int | None,
                results: dict[str, Any], info: dict[str, Any],
                step: Callable[[str], None]) -> None:
    """Grow one tree through p.sizes; at each, snapshot latency, proofs and smaps_rollup."""
    import rotorshm

    tier = tiering_label(pin)
    points: list[dict[str, Any]] = []
    pool = Pool(1)  # a fresh reader process for this tree
    try:
        with tree_daemon(root, pin, p, REFERENCE_SIZE, p.seed + 3, info) as ref, \
                tree_daemon(root, pin, p, 0, p.seed, info) as daemon, \
                rotorshm.connect(daemon.directory) as client:
            rng = random.Random(p.seed + 7)
            size = 0
            for j, target in enumerate(p.sizes):
                step(f"sizes [{tier}]: build to {size_label(target)}")
                build_s = build_to(client, size, target, rng)
                built = target - size
                size = target
                step(f"sizes [{tier}]: measure at {size_label(target)}")
                # At the first size the whole measurement runs twice and the first result
                # is dropped: the reader's heap only reaches its steady size after one
                # full cycle (measure, reply), so without it the first size alone would
                # show ~2 MiB less private memory (with 20,000 samples).
                for _ in range(2 if j == 0 else 1):
                    pool.send(0, "size_point", name=daemon.name, size=size,
                              samples=p.snapshot_samples, proofs=p.memory_proofs,
                              seed=p.seed + 100 + j, cpu=cpu, reference=ref.name)
                    got = pool.wait("ok", [0], REPLY_TIMEOUT + 60)[0]
                got["build_leaves_per_s"] = built / build_s if build_s > 0 else None
                points.append(got)
    finally:
        pool.close()
    privates = []
    relative: list[float] = []
    for size, pt in zip(p.sizes, points, strict=True):
        lab = size_label(size)
        extra = {"tree_size": size, "arity": ARITY, "tiering": tier,
                 "pin_above_level": pin, "pinned_cpu": cpu,
                 "build_leaves_per_s": pt["build_leaves_per_s"]}
        ref_med = common.summarize(pt["reference_ns"])["median"]
        med = common.summarize(pt["snapshot_ns"])["median"]
        relative.append(med / ref_med)
        results[f"snapshot @{lab} {tier}"] = common.latency_entry(
            pt["snapshot_ns"], what="reader.snapshot(), per call",
            reference_tree_size=REFERENCE_SIZE, reference_median_ns=ref_med,
            relative_to_reference=med / ref_med,
            preemptions=pt["snapshot_preemptions"],
            other_cpus_busy=pt["snapshot_other_cpus_busy"], **extra)
        mem = pt["smaps"]
        private = mem.get("Private_Clean", 0) + mem.get("Private_Dirty", 0)
        privates.append(private)
        proof = common.summarize(pt["proof_ns"])
        results[f"reader private memory @{lab} {tier}"] = common.single_value_entry(
            private, "bytes",
            what=f"Private_Clean + Private_Dirty of the reader after {p.memory_proofs:,} "
                 "random proofs (smaps_rollup)",
            smaps_rollup_bytes={k: mem[k] for k in (
                "Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean",
                "Private_Dirty", "Anonymous") if k in mem},
            proof_ns_median=proof["median"], proof_ns_p99=proof["p99"],
            proofs=p.memory_proofs, **extra)
    if privates and privates[0] > 0:
        results[f"reader private memory ratio {size_label(p.sizes[-1])}/"
                f"{size_label(p.sizes[0])} {tier}"] = common.single_value_entry(
            privates[-1] / privates[0], "x", tiering=tier,
            what="private bytes at the largest size / at the smallest size")
    meds = [results[f"snapshot @{size_label(s)} {tier}"]["summary"]["median"] for s in p.sizes]
    results[f"snapshot growth {size_label(p.sizes[-1])}/{size_label(p.sizes[0])} "
            f"{tier}"] = common.single_value_entry(
        relative[-1] / relative[0], "x", tiering=tier,
        raw_median_ratio=meds[-1] / meds[0],
        relative_to_reference=dict(zip((size_label(s) for s in p.sizes), relative,
                                       strict=True)),
        what="snapshot median / that of a 1,000-leaf reference tree timed in interleaved "
             "rounds, at the largest size over at the smallest size (flat = 1); "
             "raw_median_ratio is the same without the reference")


# -- targets, table, plots -----------------------------------------------------------------

def targets_for(p: Params, results: dict[str, Any]) -> list[common.Target]:
    Target = common.Target
    two_k = 2 if 2 in p.readers else max(p.readers)
    out = [
        Target(f"proofs/s scaling 1->{two_k} readers", "median", ">=", 1.8, "x"),
        Target(f"generate_proof {proof_key(1, True)}", "p99", "<=", 50_000.0, "ns"),
        Target(f"proofs/s {BYTES_KEY}", "median", ">=", 250_000.0, "proofs/s"),
        Target(f"proof_bytes {BYTES_KEY}", "median", "<=", 1_500.0, "ns"),
    ]
    for pin in p.tierings:
        tier = tiering_label(pin)
        out += [Target(f"snapshot @{size_label(s)} {tier}", "median", "<=", 5_000.0, "ns")
                for s in p.sizes]
        key = (f"reader private memory ratio {size_label(p.sizes[-1])}/"
               f"{size_label(p.sizes[0])} {tier}")
        if key in results:
            out.append(Target(key, "median", "<=", 1.1, "x"))
    return out


def make_plots(p: Params, results: dict[str, Any]) -> list[dict[str, Any]]:
    ks = list(p.readers)
    plots: list[dict[str, Any]] = [{
        "file": "readers_proofs.png",
        "title": f"Aggregate proofs/s vs reader processes (arity {ARITY}, "
                 f"{p.leaves:,} leaves, {usable_cpus()} CPUs)",
        "xlabel": "reader processes (count)",
        "ylabel": "aggregate proofs/s, median of runs (proofs/s)",
        "xscale": "linear", "yscale": "linear", "kind": "line",
        "series": [
            {"label": label, "x": ks,
             "y": [results[f"proofs/s {proof_key(k, ingest)}"]["summary"]["median"]
                   for k in ks]}
            for label, ingest in (("no ingest", False), ("with ingest", True))
        ],
    }]
    sizes = list(p.sizes)
    snap_series = []
    mem_series = []
    for pin in p.tierings:
        tier = tiering_label(pin)
        for metric in ("median", "p99"):
            snap_series.append({
                "label": f"{metric} ({tier})", "x": sizes,
                "y": [results[f"snapshot @{size_label(s)} {tier}"]["summary"][metric] / 1000
                      for s in sizes]})
        mem = [results[f"reader private memory @{size_label(s)} {tier}"] for s in sizes]
        mem_series.append({"label": f"private ({tier})", "x": sizes,
                           "y": [m["samples"][0] / common.MIB for m in mem]})
        mem_series.append({"label": f"Rss ({tier})", "x": sizes,
                           "y": [m["smaps_rollup_bytes"].get("Rss", 0) / common.MIB for m in mem]})
    plots.append({
        "file": "readers_snapshot.png",
        "title": "Reader snapshot() latency vs tree size",
        "xlabel": "tree size (leaves)", "ylabel": "snapshot latency (µs)",
        "xscale": "log", "yscale": "linear", "kind": "line", "series": snap_series,
    })
    plots.append({
        "file": "readers_memory.png",
        "title": f"Reader memory after {p.memory_proofs:,} random proofs vs tree size",
        "xlabel": "tree size (leaves)", "ylabel": "memory (MiB)",
        "xscale": "log", "yscale": "linear", "kind": "line", "series": mem_series,
    })
    return plots


# -- main ----------------------------------------------------------------------------------

def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args, p = parse_args(argv)
    common.set_quiet(args.quiet)
    started = time.perf_counter()
    machine = common.machine_info()
    cpus = usable_cpus()
    cpu = common.default_cpu(args.cpu)
    results: dict[str, Any] = {}
    info: dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="rotorshm-bench-readers-"))
    steps = (1 + 2 * p.runs * len(p.readers)) + 2 * len(p.sizes) * len(p.tierings)
    try:
        with common.Steps(steps, desc="bench.readers") as bar:
            bench_throughput(p, root, results, info, bar.advance)
            for pin in p.tierings:
                bench_sizes(p, root, pin, cpu, results, info, bar.advance)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    verdicts = common.evaluate_targets(results, targets_for(p, results))
    elapsed = time.perf_counter() - started
    title = (f"rotorshm readers benchmark: arity {ARITY}, throughput on {p.leaves:,} leaves "
             f"({tiering_label(p.tierings[0])}), {cpus} CPUs, "
             f"{'quick' if p.quick else 'full'} run")
    common.print_table(title, common.table_rows(results, verdicts, show_metric=True),
                       common.TABLE_COLUMNS, common.TABLE_ALIGN)
    for k in p.readers:
        key = proof_key(k, True)
        rs = results[f"proofs/s {key}"]["runs"]
        rates = [r["ingest"]["leaves_per_s"] for r in rs if r["ingest"]]
        last = [r["tree_size_last"] for r in rs]
        print(f"ingest during '{key}': {common.summarize(rates)['median']:,.0f} leaves/s "
              f"(median of runs); each run starts at {p.leaves:,} leaves and ends at "
              f"{min(last):,}..{max(last):,}")
    def cores(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    print("foreign load during the throughput runs, per run (cores busy with processes other "
          "than ours + cores stolen by the hypervisor): " + "; ".join(
              f"{proof_key(k, ing)} " + " ".join(
                  f"{cores(r['foreign_cores'])}+{cores(r['steal_cores'])}"
                  for r in results[f"proofs/s {proof_key(k, ing)}"]["runs"])
              for ing in (False, True) for k in p.readers))
    def snap(size: int, pin: int | None) -> dict[str, Any]:
        entry: dict[str, Any] = results[f"snapshot @{size_label(size)} {tiering_label(pin)}"]
        return entry

    print(f"snapshot median / median of a {REFERENCE_SIZE:,}-leaf reference tree timed in "
          "interleaved rounds: " + "; ".join(
              f"{tiering_label(pin)} " + " ".join(
                  f"{size_label(s)} {snap(s, pin)['relative_to_reference']:.2f}"
                  for s in p.sizes) for pin in p.tierings))
    print("other CPU busy while timing snapshot(): " + "; ".join(
        f"{tiering_label(pin)} " + " ".join(
            f"{size_label(s)} {common.fmt_pct(snap(s, pin)['other_cpus_busy'])}" for s in p.sizes)
        for pin in p.tierings))
    for pin in p.tierings:
        tier = tiering_label(pin)
        rates = [results[f"snapshot @{size_label(s)} {tier}"]["build_leaves_per_s"]
                 for s in p.sizes]
        print(f"daemon build rate [{tier}] per size step: "
              + ", ".join(f"{size_label(s)} {r:,.0f}/s" for s, r in zip(p.sizes, rates,
                                                                      strict=True) if r))
    print("latencies per call, timer included, nothing subtracted; targets are informational; "
          f"1-min load average at start {machine['loadavg_1_5_15'][0]:.2f}")
    leftovers = info.get("leftover_segments", [])
    print(f"leftover /dev/shm segments: {leftovers or 'none'}; runtime {elapsed:.1f} s")

    payload = common.result_payload(
        benchmark="readers",
        machine=machine,
        parameters={
            "arity": ARITY,
            "max_depth": MAX_DEPTH,
            "leaves": p.leaves,
            "duration_s": p.duration,
            "runs": p.runs,
            "readers": list(p.readers),
            "usable_cpus": cpus,
            "proofs_per_snapshot": PROOFS_PER_SNAPSHOT,
            "ingest_batch": INGEST_BATCH,
            "build_batch": BUILD_BATCH,
            "sizes": list(p.sizes),
            "snapshot_samples": p.snapshot_samples,
            "memory_proofs": p.memory_proofs,
            "tierings": [tiering_label(t) for t in p.tierings],
            "throughput_tiering": tiering_label(p.tierings[0]),
            "flush_interval_ms": p.flush_interval_ms,
            "checkpoint": "manual",
            "size_sweep_pinned_cpu": cpu,
            "seed": p.seed,
            "quick": p.quick,
            "sample_cap": common.SAMPLE_CAP,
            "timing": "perf_counter_ns around each generate_proof / snapshot call, nothing "
                      "subtracted; gc enabled, heap frozen before each timed loop; "
                      "throughput = sum over readers of proofs / own elapsed, each reader "
                      "looping snapshot + 100 x (generate_proof + verify); p99 by linear "
                      "interpolation",
            **info,
        },
        results=results,
        targets=verdicts,
        plots=make_plots(p, results),
        runtime_s=elapsed,
    )
    common.write_results(payload, args.out, plot_errors_fatal=False)
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
