"""`rotorshm demo`: a writer daemon, a client and reader processes working at the same time.

The demo starts `python -m rotorshm serve` as a subprocess on a temporary directory,
streams leaves into it from this process (waiting for durability after every batch),
and meanwhile runs reader processes (multiprocessing, spawn) that attach by name, take
snapshots and generate and verify inclusion proofs of random leaves, plus a consistency
proof between successive snapshots. Leaf i is hash_leaf(i as 8 little-endian bytes), so a
reader can check the proven leaf's content too. At the end it compares the final root
with an in-memory LeanIMT, stops the daemon with SIGTERM, checks its exit code, inspects
the directory offline and looks for leftovers in /dev/shm.

With `--http` (the http extra installed) it also runs `rotorshm http` with two worker
processes on a free 127.0.0.1 port, and every reader fetches one proof per snapshot over
HTTP and verifies it against the size and root of the same response.
"""

from __future__ import annotations

import multiprocessing
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
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as EventType
from typing import Any

from .errors import InvalidConfig
from .hashing import NODE_SIZE, check_arity, depth_for, hash_leaf
from .offline import inspect_tree
from .progress import progress_bar

SERVE_TIMEOUT = 30.0
STOP_TIMEOUT = 300.0
LOG_TAIL_LINES = 15
MAX_SAMPLES = 200_000


@dataclass(frozen=True)
class DemoConfig:
    """Parameters of one demo run."""

    leaves: int = 1_000_000
    readers: int = 2
    batch: int = 10_000
    arity: int = 4
    keep: bool = False
    pin_above_level: int = 2
    seed: int = 1
    progress: bool = True
    proofs_per_snapshot: int = 8
    http: bool = False

    def __post_init__(self) -> None:
        # Checked before anything runs, so a bad value never yields a half-run summary.
        check_arity(self.arity)
        for what, value, low in (("leaves", self.leaves, 1), ("readers", self.readers, 0),
                                 ("batch", self.batch, 1),
                                 ("pin_above_level", self.pin_above_level, 0),
                                 ("proofs_per_snapshot", self.proofs_per_snapshot, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise InvalidConfig(f"demo {what} must be an integer >= {low}, got {value!r}")


@dataclass
class ReaderStats:
    """What one reader process did and measured while the ingest ran (and once after)."""

    index: int
    proofs: int = 0
    snapshots: int = 0
    consistency_checks: int = 0
    failures: int = 0
    elapsed: float = 0.0
    proof_ns: list[int] = field(default_factory=list)
    snapshot_ns: list[int] = field(default_factory=list)
    last_size: int = 0
    first_failure: str | None = None
    error: str | None = None
    http_proofs: int = 0
    http_workers: list[str] = field(default_factory=list)

    @property
    def proofs_per_second(self) -> float:
        """Proofs generated and verified per second of the reader's run."""
        return self.proofs / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class DemoResult:
    """Everything the summary reports; `ok` is False if any check failed."""

    config: DemoConfig
    directory: str
    name: str
    leaves: int = 0
    insert_seconds: float = 0.0
    wall_seconds: float = 0.0
    durable_waits: list[float] = field(default_factory=list)
    final_root: str | None = None
    root_matches: bool = False
    published_matches: bool = False
    readers: list[ReaderStats] = field(default_factory=list)
    daemon_exit: int | None = None
    shutdown_seconds: float = 0.0
    on_disk: str = "not checked"
    on_disk_ok: bool = False
    leftovers: list[str] = field(default_factory=list)
    kept: bool = False
    errors: list[str] = field(default_factory=list)
    http_url: str | None = None

    @property
    def failures(self) -> int:
        """Verification failures across readers (a crashed reader counts as one)."""
        return sum(r.failures + (1 if r.error else 0) for r in self.readers)

    @property
    def ok(self) -> bool:
        """True if every check passed."""
        return (not self.errors and self.failures == 0 and self.root_matches
                and self.published_matches and self.daemon_exit == 0 and self.on_disk_ok
                and not self.leftovers and self.leaves == self.config.leaves
                and len(self.readers) == self.config.readers
                and (not self.config.http or all(r.http_proofs for r in self.readers)))


def demo_leaf(i: int) -> bytes:
    """Leaf `i` of the demo: blake3(0x00 || i as 8 little-endian bytes)."""
    return hash_leaf(i.to_bytes(8, "little"))


def percentile(values: list[int] | list[float], q: float) -> float:
    """The q-quantile (0..1) of `values` by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return float(ordered[k])


class _Reservoir:
    """A uniform sample of at most `cap` values (Algorithm R)."""

    def __init__(self, cap: int, rng: random.Random) -> None:
        self.cap = cap
        self.rng = rng
        self.seen = 0
        self.values: list[int] = []

    def add(self, value: int) -> None:
        self.seen += 1
        if len(self.values) < self.cap:
            self.values.append(value)
        else:
            j = self.rng.randrange(self.seen)
            if j < self.cap:
                self.values[j] = value


# -- reader processes -------------------------------------------------------------------------

def reader_main(name: str, index: int, seed: int, per_snapshot: int, stop: EventType,
                out: Any, http_url: str | None = None) -> None:
    """Body of one reader process: attach, then snapshot, prove and verify until `stop`.

    Sends ("ready", index) once attached and ("done", ReaderStats) at the end, also
    after an unexpected error (recorded in `error`).
    """
    stats = ReaderStats(index)
    try:
        _reader_loop(name, seed, per_snapshot, stop, out, stats, http_url)
    except BaseException:  # noqa: BLE001 - reported to the parent, never lost
        stats.error = traceback.format_exc(limit=8)
    out.put(("done", stats))


class _HttpProver:
    """A reader's keep-alive HTTP connection to `rotorshm http` (reopened now and then, so
    that the readers' requests spread over the server's workers)."""

    def __init__(self, url: str) -> None:
        host, _, port = url.removeprefix("http://").rpartition(":")
        self._host, self._port = host, int(port)
        self._conn = self._new()
        self._count = 0

    def _new(self) -> Any:
        import http.client

        return http.client.HTTPConnection(self._host, self._port, timeout=30)

    def check(self, index: int, stats: ReaderStats, fail: Any) -> None:
        """Fetch the binary proof of leaf `index`; verify it against the response's root."""
        from .proof import InclusionProof

        self._count += 1
        if self._count % 50 == 0:
            self._conn.close()
            self._conn = self._new()
        self._conn.request("GET", f"/v1/proof/{index}",
                           headers={"Accept": "application/octet-stream"})
        resp = self._conn.getresponse()
        body = resp.read()
        stats.http_proofs += 1
        worker = resp.getheader("x-rotorshm-worker") or "?"
        if worker not in stats.http_workers:
            stats.http_workers.append(worker)
        if resp.status != 200:
            fail(f"HTTP proof of leaf {index}: status {resp.status}: {body[:200]!r}")
            return
        size = int(resp.getheader("x-rotorshm-size") or 0)
        root = bytes.fromhex(resp.getheader("x-rotorshm-root") or "")
        proof = InclusionProof.from_bytes(body)
        if not proof.verify_against(root, size):
            fail(f"HTTP proof of leaf {index} does not verify against its response's root")
        elif proof.leaf != demo_leaf(index):
            fail(f"HTTP proof: leaf {index} holds {proof.leaf.hex()}")

    def close(self) -> None:
        self._conn.close()


def _reader_loop(name: str, seed: int, per_snapshot: int, stop: EventType, out: Any,
                 stats: ReaderStats, http_url: str | None = None) -> None:
    from .reader import attach

    rng = random.Random(seed)
    proof_lat = _Reservoir(MAX_SAMPLES, rng)
    snap_lat = _Reservoir(MAX_SAMPLES, rng)
    clock = time.perf_counter_ns
    prev: tuple[int, bytes] | None = None

    def fail(msg: str) -> None:
        stats.failures += 1
        if stats.first_failure is None:
            stats.first_failure = msg

    prover = _HttpProver(http_url) if http_url else None
    with attach(name) as reader:
        out.put(("ready", stats.index))
        start: float | None = None  # the clock starts with the first leaf
        while True:
            final = stop.is_set()  # one last round after the ingest: the final tree
            t0 = clock()
            snap = reader.snapshot()
            snap_lat.add(clock() - t0)
            stats.snapshots += 1
            size, root = snap.size, snap.root
            if size == 0 or root is None:
                if final:
                    break
                time.sleep(0.0005)
                continue
            if start is None:
                start = time.perf_counter()
            if prev is not None:
                old_size, old_root = prev
                if size < old_size:
                    fail(f"size went back from {old_size} to {size}")
                elif size == old_size and root != old_root:
                    fail(f"root changed at size {size} without new leaves")
                elif size > old_size:
                    cons = snap.generate_consistency_proof(old_size)
                    stats.consistency_checks += 1
                    if not cons.verify_against(old_root, root, old_size, size):
                        fail(f"consistency proof {old_size} -> {size} does not verify")
            prev = (size, root)
            for _ in range(per_snapshot):
                i = rng.randrange(size)
                t0 = clock()
                proof = snap.generate_proof(i)
                proof_lat.add(clock() - t0)
                stats.proofs += 1
                if not proof.verify_against(root, size):
                    fail(f"proof of leaf {i} at size {size} does not verify")
                elif proof.leaf != demo_leaf(i):
                    fail(f"leaf {i} holds {proof.leaf.hex()}, not the leaf inserted there")
            if prover is not None:
                prover.check(rng.randrange(size), stats, fail)
            if final:
                break
        stats.elapsed = time.perf_counter() - start if start is not None else 0.0
        stats.last_size = prev[0] if prev else 0
    if prover is not None:
        prover.close()
    stats.proof_ns = proof_lat.values
    stats.snapshot_ns = snap_lat.values


# -- the daemon -------------------------------------------------------------------------------

def log_tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a child's log file ('' if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _start_daemon(cfg: DemoConfig, tree_dir: str, name: str,
                  log: Any) -> subprocess.Popen[bytes]:
    """Start the writer daemon subprocess and wait until it publishes and listens.

    The child runs this very rotorshm (rotorshm.spawn), never a source tree that happens
    to be the working directory. If it fails to come up, the error carries its log's tail.
    """
    from .shm import ControlBlock
    from .spawn import rotorshm_argv
    from .writer import default_socket

    max_depth = min(64, max(20, depth_for(cfg.leaves, cfg.arity)))
    cmd = rotorshm_argv("serve", tree_dir, "--name", name, "--arity", str(cfg.arity),
                        "--max-depth", str(max_depth),
                        "--pin-above-level", str(cfg.pin_above_level))
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True)
    deadline = time.monotonic() + SERVE_TIMEOUT
    sock = default_socket(tree_dir)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.flush()
            tail = log_tail(log.name)
            raise RuntimeError(f"the writer daemon exited with code {proc.returncode} at start"
                               + (f"; its log ends with:\n{tail}" if tail else " (empty log)"))
        if os.path.exists(sock) and ControlBlock.live_owner(name) == proc.pid:
            return proc
        time.sleep(0.02)
    _kill(proc)
    tail = log_tail(log.name)
    raise RuntimeError(f"the writer daemon did not come up within {SERVE_TIMEOUT:.0f} s"
                       + (f"; its log ends with:\n{tail}" if tail else ""))


def _start_http(name: str, log: Any) -> tuple[subprocess.Popen[bytes], str]:
    """Start `rotorshm http NAME` (2 workers, free loopback port); wait for both workers."""
    import http.client
    import socket

    from .spawn import rotorshm_argv

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(rotorshm_argv("http", name, "--listen", f"127.0.0.1:{port}",
                                          "--workers", "2"),
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True)
    deadline = time.monotonic() + SERVE_TIMEOUT
    seen: set[str] = set()
    while len(seen) < 2:
        if proc.poll() is not None or time.monotonic() > deadline:
            _kill_group(proc)
            log.flush()
            raise RuntimeError(f"rotorshm http did not come up; its log ends with:\n"
                               f"{log_tail(log.name)}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                seen.add(resp.getheader("x-rotorshm-worker") or "?")
        except OSError:
            time.sleep(0.05)
        finally:
            conn.close()
    return proc, f"http://127.0.0.1:{port}"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group of `proc` (its own session), then SIGKILL what is left."""
    import contextlib

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the process does not exit."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def shm_leftovers(name: str) -> list[str]:
    """/dev/shm entries still carrying the tree name `name`."""
    from .segments import tree_segments

    return tree_segments(name)


# -- the run ----------------------------------------------------------------------------------

def run_demo(cfg: DemoConfig) -> DemoResult:
    """Run the whole demo and return its measurements; cleans up whatever happens."""
    tmp = tempfile.mkdtemp(prefix="rotorshm-demo-")
    tree_dir = os.path.join(tmp, "tree")
    name = f"demo-{uuid.uuid4().hex[:12]}"
    result = DemoResult(cfg, tree_dir, name)
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    out = ctx.Queue()
    readers: list[multiprocessing.process.BaseProcess] = []
    proc: subprocess.Popen[bytes] | None = None
    http_proc: subprocess.Popen[bytes] | None = None
    try:
        with open(os.path.join(tmp, "serve.log"), "wb") as log:
            data = b"".join(demo_leaf(i) for i in range(cfg.leaves))
            proc = _start_daemon(cfg, tree_dir, name, log)
            if cfg.http:
                http_log = open(os.path.join(tmp, "http.log"), "wb")  # noqa: SIM115
                try:
                    http_proc, result.http_url = _start_http(name, http_log)
                finally:
                    http_log.close()  # the server keeps its own descriptor
            for i in range(cfg.readers):
                rp = ctx.Process(target=reader_main, name=f"rotorshm-demo-reader-{i}",
                                args=(name, i, cfg.seed * 1000 + i, cfg.proofs_per_snapshot,
                                      stop, out, result.http_url), daemon=True)
                rp.start()
                readers.append(rp)
            pending = _wait_ready(out, readers, result)
            _ingest(cfg, tree_dir, data, result)
            stop.set()
            _collect(out, readers, pending, result)
            _check_final(cfg, name, data, result)
            if http_proc is not None:
                _kill_group(http_proc)
            t0 = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            try:
                result.daemon_exit = proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                result.errors.append("the writer daemon did not stop after SIGTERM")
            result.shutdown_seconds = time.perf_counter() - t0
        if result.daemon_exit != 0:
            tail = log_tail(os.path.join(tmp, "serve.log"))
            result.errors.append(f"daemon log: {tail}")
        result.leftovers = shm_leftovers(name)
        report = inspect_tree(tree_dir)
        if report["ok"]:
            c = report["checkpoint"] or {}
            r = report["replay"]
            result.on_disk_ok = r["size"] == cfg.leaves and r["root"] == result.final_root
            result.on_disk = (f"OK (checkpoint size {c.get('size', 0):,}, "
                              f"{report['wal']['leaves']:,} leaves in the WAL, root "
                              f"{'matches' if result.on_disk_ok else 'DIFFERS'})")
        else:
            result.on_disk = f"CORRUPT: {report['error']}"
    except (Exception, KeyboardInterrupt) as exc:
        result.errors.append(f"{type(exc).__name__}: {exc}")
        if isinstance(exc, KeyboardInterrupt):
            raise
    finally:
        stop.set()
        for p in readers:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join()
        if http_proc is not None:
            _kill_group(http_proc)
        if proc is not None:
            _kill(proc)
        from .segments import unlink_segment

        for seg in shm_leftovers(name):  # reported above; never leave them behind
            unlink_segment("/" + seg)
        out.close()
        if cfg.keep:
            result.kept = True
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def _wait_ready(out: Any, readers: list[multiprocessing.process.BaseProcess],
                result: DemoResult) -> set[int]:
    """Wait until every reader attached; returns the indices still expected to report."""
    waiting = set(range(len(readers)))
    deadline = time.monotonic() + SERVE_TIMEOUT
    while waiting and time.monotonic() < deadline:
        try:
            kind, payload = out.get(timeout=0.5)
        except queue.Empty:
            if not any(p.is_alive() for p in readers):
                break
            continue
        if kind == "ready":
            waiting.discard(payload)
        elif kind == "done":  # a reader that failed to attach
            result.readers.append(payload)
            waiting.discard(payload.index)
    if waiting:
        raise RuntimeError(f"reader(s) {sorted(waiting)} did not attach")
    return {i for i in range(len(readers))} - {r.index for r in result.readers}


def _ingest(cfg: DemoConfig, tree_dir: str, data: bytes, result: DemoResult) -> None:
    """Stream the leaves in batches, waiting for durability after each; time both."""
    from .client import connect

    step = cfg.batch * NODE_SIZE
    clock = time.perf_counter
    bar = progress_bar(cfg.leaves, "ingest", cfg.progress)
    try:
        with connect(tree_dir) as client:
            start = clock()
            for off in range(0, len(data), step):
                chunk = data[off : off + step]
                t0 = clock()
                seq, size, root = client.insert_many(chunk)
                t1 = clock()
                if not client.wait_durable(seq, timeout=60.0):
                    raise RuntimeError(f"batch seq {seq} did not become durable")
                t2 = clock()
                result.insert_seconds += t1 - t0
                result.durable_waits.append(t2 - t1)
                result.leaves = size
                assert root is not None  # the batch was not empty
                result.final_root = root.hex()
                bar.update(len(chunk) // NODE_SIZE)
            result.wall_seconds = clock() - start
    finally:
        bar.close()


def _collect(out: Any, readers: list[multiprocessing.process.BaseProcess], pending: set[int],
             result: DemoResult) -> None:
    """Gather the readers' final statistics (a silent death counts as a failure)."""
    deadline = time.monotonic() + 60.0
    while pending and time.monotonic() < deadline:
        try:
            kind, payload = out.get(timeout=0.5)
        except queue.Empty:
            if not any(readers[i].is_alive() for i in pending):
                break
            continue
        if kind == "done":
            result.readers.append(payload)
            pending.discard(payload.index)
    for i in sorted(pending):
        result.readers.append(ReaderStats(i, error="the reader exited without reporting"))
    result.readers.sort(key=lambda r: r.index)
    for s in result.readers:
        if s.error is None and s.last_size != result.leaves:
            result.errors.append(f"reader {s.index} last saw {s.last_size} leaves, "
                                 f"not {result.leaves}")


def _check_final(cfg: DemoConfig, name: str, data: bytes, result: DemoResult) -> None:
    """Compare the published tree and the last acknowledged root with an in-memory LeanIMT."""
    from .reader import attach
    from .tree import LeanIMT

    max_depth = min(64, max(20, depth_for(cfg.leaves, cfg.arity)))
    ref = LeanIMT(cfg.arity, max_depth)
    ref.insert_many(data)
    expect = ref.root.hex() if ref.root else None
    result.root_matches = expect == result.final_root
    with attach(name) as reader:
        snap = reader.snapshot()
        published = snap.root.hex() if snap.root else None
        result.published_matches = snap.size == cfg.leaves and published == expect
    if not result.root_matches:
        result.errors.append(f"final root {result.final_root} differs from LeanIMT's {expect}")
    if not result.published_matches:
        result.errors.append(f"published tree (size {snap.size}, root {published}) differs "
                             f"from LeanIMT's (size {cfg.leaves}, root {expect})")


# -- the summary ------------------------------------------------------------------------------

def format_summary(r: DemoResult) -> str:
    """The demo's summary table as printable text."""
    c = r.config
    lines = [f"rotorshm demo: {c.leaves:,} leaves, arity {c.arity}, batches of {c.batch:,}, "
             f"{c.readers} reader process(es), levels >= {c.pin_above_level} in shared memory"]
    rows: list[tuple[str, str]] = []
    rows.append(("tree", f"{r.directory} (name {r.name})"
                 + (" [kept]" if r.kept else " [removed]")))
    rows.append(("leaves", f"{r.leaves:,}"))
    if r.insert_seconds > 0:
        rows.append(("ingest rate", f"{r.leaves / r.insert_seconds:,.0f} leaves/s "
                                    f"(insert + publish, {r.insert_seconds:.2f} s)"))
    if r.wall_seconds > 0:
        rows.append(("durable rate", f"{r.leaves / r.wall_seconds:,.0f} leaves/s "
                                     f"(durable after every batch, {r.wall_seconds:.2f} s)"))
    if r.durable_waits:
        rows.append(("durability wait", f"p50 {percentile(r.durable_waits, 0.5) * 1e3:.2f} ms, "
                                        f"p99 {percentile(r.durable_waits, 0.99) * 1e3:.2f} ms"
                                        " per batch"))
    rows.append(("final root", f"{r.final_root} ("
                 + ("matches" if r.root_matches else "DIFFERS from") + " in-memory LeanIMT)"))
    head = ["", "reader", "proofs", "proofs/s", "p50 µs", "p99 µs", "snapshots",
            "snap p50 µs", "consistency", "failures"]
    table = [head]
    all_proof: list[int] = []
    all_snap: list[int] = []
    for s in r.readers:
        all_proof += s.proof_ns
        all_snap += s.snapshot_ns
        table.append(["", str(s.index), f"{s.proofs:,}", f"{s.proofs_per_second:,.0f}",
                      f"{percentile(s.proof_ns, 0.5) / 1e3:.1f}",
                      f"{percentile(s.proof_ns, 0.99) / 1e3:.1f}", f"{s.snapshots:,}",
                      f"{percentile(s.snapshot_ns, 0.5) / 1e3:.1f}",
                      f"{s.consistency_checks:,}",
                      str(s.failures + (1 if s.error else 0))])
    proofs = sum(s.proofs for s in r.readers)
    snaps = sum(s.snapshots for s in r.readers)
    table.append(["", "all", f"{proofs:,}",
                  f"{sum(s.proofs_per_second for s in r.readers):,.0f}",
                  f"{percentile(all_proof, 0.5) / 1e3:.1f}",
                  f"{percentile(all_proof, 0.99) / 1e3:.1f}", f"{snaps:,}",
                  f"{percentile(all_snap, 0.5) / 1e3:.1f}",
                  f"{sum(s.consistency_checks for s in r.readers):,}", str(r.failures)])
    rows.append(("proof latency", f"p50 {percentile(all_proof, 0.5) / 1e3:.1f} µs, "
                                  f"p99 {percentile(all_proof, 0.99) / 1e3:.1f} µs "
                                  f"(generation, {len(all_proof):,} samples)"))
    rows.append(("snapshots taken", f"{snaps:,}"))
    if c.http:
        workers = sorted({w for s in r.readers for w in s.http_workers})
        rows.append(("HTTP proofs", f"{sum(s.http_proofs for s in r.readers):,} fetched from "
                                    f"{r.http_url} (workers {', '.join(workers) or '-'}), "
                                    "each verified against its response's root"))
    rows.append(("verify failures", str(r.failures)))
    rows.append(("daemon exit", "-" if r.daemon_exit is None else
                 f"{r.daemon_exit} (SIGTERM, shutdown with checkpoint {r.shutdown_seconds:.2f} s)"))
    rows.append(("on-disk check", r.on_disk))
    rows.append(("/dev/shm leftovers", str(len(r.leftovers)) +
                 (f" ({', '.join(r.leftovers)})" if r.leftovers else "")))
    rows.append(("result", "OK" if r.ok else "FAILED"))
    width = max(len(k) for k, _ in rows)
    out = lines + [f"  {k:<{width}}  {v}" for k, v in rows[:6]]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    out.append("  readers:")
    for row in table:
        out.append("  " + "  ".join(cell.rjust(w) if i > 1 else cell.ljust(w)
                                    for i, (cell, w) in enumerate(zip(row, widths,
                                                                      strict=True))).rstrip())
    out += [f"  {k:<{width}}  {v}" for k, v in rows[6:]]
    for s in r.readers:
        if s.first_failure:
            out.append(f"  reader {s.index}: first failure: {s.first_failure}")
        if s.error:
            out.append(f"  reader {s.index} crashed:\n{s.error}")
    for e in r.errors:
        first, *rest = e.splitlines() or [""]
        out.append(f"  error: {first}")
        out.extend(f"    | {line}" for line in rest)
    return "\n".join(out)
