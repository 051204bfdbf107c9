"""Writer-daemon benchmark: ingest from client processes, with and without concurrent readers.

    python -m bench.daemon [--quick] [--out DIR] [--leaves N] [--tmpdir DIR]

A real writer daemon subprocess (``python -m rotorshm serve DIR --name NAME``, arity 4,
group commit every 10 ms, manual checkpoints), fresh for every measurement, and real
client and reader processes (multiprocessing 'spawn' workers, started once and reused):

* k = 1, 2, 4 client processes each stream N/k leaves in 10,000-leaf batches, durable
  (``client.wait_durable(seq)`` after each batch) and not durable (each batch acknowledged
  once applied and published): aggregate leaves/s;
* one client streams N leaves durably while 0, 1 or 2 reader processes run at full speed
  (``attach(name)``, then snapshot + generate_proof(random index) + verify in a tight
  loop): ingest leaves/s, and each reader's proofs/s and generate_proof latency during
  the ingest; the ratio of the 2-reader to the 0-reader ingest rate is a result (the
  0-reader case is the same setup as "ingest durable, 1 client", run separately).

Every daemon first receives one untimed 10,000-leaf batch (a warm-up that also gives the
readers leaves to prove from the start), so no measurement includes a cold tree.

Every worker prepares (leaves generated, connection or attachment made, code warmed)
before a shared start event; the clock runs from that event to the last client's last
acknowledgement (CLOCK_MONOTONIC, comparable across processes). Prints one table, writes
``daemon.json`` and the plots to the out dir. Targets are informational.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import traceback
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import rotorshm

from . import common
from .durable import (
    LEAF,
    Contention,
    fs_type,
    proc_cpu_seconds,
    remove_leftover_segments,
    split,
    unique_name,
)

SCENARIO = "daemon"
ARITY = 4
BATCH = 10_000
FLUSH_MS = 10.0
CLIENT_COUNTS = (1, 2, 4)
READER_COUNTS = (0, 1, 2)
TIMEOUT = 60.0  # a guard against hangs, never a speed limit
READER_MAX_SECONDS = 600.0
CTX = mp.get_context("spawn")


# -- worker processes ------------------------------------------------------------------------

def _now() -> int:
    return time.monotonic_ns()


def _client_job(conn: Connection, go: Event, flags: Any, job: dict[str, Any]) -> dict[str, Any]:
    n, durable = int(job["leaves"]), bool(job["durable"])
    batches = split(random.Random(job["seed"]).randbytes(n * LEAF), int(job["batch"]))
    clock = time.monotonic_ns
    insert_ns = array("q")
    wait_ns = array("q")
    with rotorshm.connect(job["socket"]) as client:
        client.wait_durable(0)  # attaches the control block before the clock starts
        conn.send(("ready", None))
        go.wait()
        if flags[1]:  # aborted: another worker failed to get ready
            return {"aborted": True}
        insert, wait = client.insert_many, client.wait_durable
        seq = size = 0
        with common.frozen_heap():
            start = clock()
            for b in batches:
                t0 = clock()
                seq, size, _ = insert(b)
                t1 = clock()
                insert_ns.append(t1 - t0)
                if durable:
                    if not wait(seq, TIMEOUT):
                        raise RuntimeError(f"wait_durable({seq}) timed out")
                    wait_ns.append(clock() - t1)
            end = clock()
    return {"start_ns": start, "end_ns": end, "leaves": n, "batches": len(batches),
            "last_seq": seq, "last_size": size, "insert_ns": insert_ns.tobytes(),
            "wait_ns": wait_ns.tobytes()}


def _reader_job(conn: Connection, go: Event, flags: Any, job: dict[str, Any]) -> dict[str, Any]:
    randrange = random.Random(job["seed"]).randrange
    clock = time.monotonic_ns
    ends = array("q")
    proof_ns = array("q")
    iter_ns = array("q")
    failures = 0
    with rotorshm.attach(job["name"]) as reader:
        snapshot = reader.snapshot
        for _ in range(200):  # warm up: the mappings, the code paths
            snap = snapshot()
            if not snap.generate_proof(randrange(snap.size)).verify():
                failures += 1
        first_size = snapshot().size
        conn.send(("ready", None))
        go.wait()
        with common.frozen_heap():
            start = clock()
            deadline = start + int(READER_MAX_SECONDS * 1e9)
            t3 = start
            while not flags[0] and t3 < deadline:
                t0 = clock()
                snap = snapshot()
                i = randrange(snap.size)
                t1 = clock()
                proof = snap.generate_proof(i)
                t2 = clock()
                if not (proof.verify() and proof.root == snap.root):
                    failures += 1
                t3 = clock()
                proof_ns.append(t2 - t1)
                iter_ns.append(t3 - t0)
                ends.append(t3)
        last_size = snapshot().size
    return {"start_ns": start, "ends_ns": ends.tobytes(), "proof_ns": proof_ns.tobytes(),
            "iter_ns": iter_ns.tobytes(), "failures": failures, "first_size": first_size,
            "last_size": last_size}


def _worker_main(conn: Connection, go: Event, flags: Any) -> None:
    """A reusable worker: runs client or reader jobs sent by the parent until told to stop."""
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            fn = _client_job if job["role"] == "client" else _reader_job
            conn.send(("done", fn(conn, go, flags, job)))
        except BaseException:  # noqa: BLE001 - reported to the parent
            conn.send(("error", traceback.format_exc()))


class WorkerFailed(RuntimeError):
    """A worker process raised, died or did not answer in time."""


class Pool:
    """Worker processes started once; `run` gives each a job and starts them together."""

    def __init__(self, count: int) -> None:
        self.go = CTX.Event()
        self.flags: Any = CTX.RawArray("i", 2)  # [stop readers, abort]
        self.workers: list[tuple[Any, Connection]] = []
        for i in range(count):
            parent, child = CTX.Pipe()
            proc = CTX.Process(target=_worker_main, args=(child, self.go, self.flags),
                               name=f"bench-daemon-worker-{i}", daemon=True)
            proc.start()
            child.close()
            self.workers.append((proc, parent))

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc, _ in self.workers if proc.pid is not None]

    def _recv(self, i: int, expect: str, timeout: float) -> Any:
        proc, conn = self.workers[i]
        deadline = time.monotonic() + timeout
        while not conn.poll(0.1):
            if not proc.is_alive():
                raise WorkerFailed(f"worker {i} died (exit code {proc.exitcode})")
            if time.monotonic() > deadline:
                raise WorkerFailed(f"worker {i} sent no {expect!r} within {timeout:.0f} s")
        kind, value = conn.recv()
        if kind == "error":
            raise WorkerFailed(f"worker {i} failed:\n{value}")
        if kind != expect:
            raise WorkerFailed(f"worker {i} sent {kind!r}, expected {expect!r}")
        return value

    def run(self, clients: Sequence[dict[str, Any]], readers: Sequence[dict[str, Any]],
            on_go: Callable[[], None] | None = None
            ) -> tuple[int, int, list[dict[str, Any]], list[dict[str, Any]]]:
        """Run the jobs together; returns (go ns, clients-done ns, client and reader results).

        Readers run until every client has finished.
        """
        jobs = [dict(j, role="client") for j in clients] + [dict(j, role="reader")
                                                             for j in readers]
        if len(jobs) > len(self.workers):
            raise ValueError(f"{len(jobs)} jobs for {len(self.workers)} workers")
        self.go.clear()
        self.flags[0] = self.flags[1] = 0
        for i, job in enumerate(jobs):
            self.workers[i][1].send(job)
        try:
            for i in range(len(jobs)):
                self._recv(i, "ready", TIMEOUT)
        except BaseException:
            self.flags[1] = self.flags[0] = 1
            self.go.set()
            raise
        if on_go is not None:
            on_go()
        t_go = _now()
        self.go.set()
        try:
            done = [self._recv(i, "done", 10 * TIMEOUT) for i in range(len(clients))]
        finally:
            t_done = _now()
            self.flags[0] = 1
        seen = [self._recv(len(clients) + i, "done", TIMEOUT) for i in range(len(readers))]
        self.go.clear()
        return t_go, t_done, done, seen

    def close(self) -> None:
        for _, conn in self.workers:
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc, conn in self.workers:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
            conn.close()
        self.workers.clear()


# -- the daemon subprocess -------------------------------------------------------------------

class Daemon:
    """`rotorshm serve` in a fresh directory under a fresh unique name."""

    def __init__(self, parent: Path, flush_ms: float = FLUSH_MS) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="d-", dir=parent))
        self.directory = self.home / "tree"
        self.name = unique_name("dmn")
        self.log = self.home / "daemon.log"
        self.socket = self.directory / "writer.sock"  # long paths are handled by rotorshm
        self.args = common.serve_argv(
            str(self.directory), "--name", self.name, "--socket", str(self.socket),
            "--arity", str(ARITY), "--flush-interval-ms", f"{flush_ms:g}",
            "--checkpoint", "manual")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def _fail(self, what: str) -> RuntimeError:
        return RuntimeError(f"daemon {self.name!r} (pid {self.proc.pid}): {what}\n"
                            f"command: {' '.join(self.args)}\n--- output ---\n{self.output()}")

    def wait_ready(self, timeout: float = TIMEOUT) -> None:
        """Until the socket answers from this process and attach(name) sees a live writer."""
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self._fail(f"exited with code {self.proc.returncode} before ready")
            if self.socket.exists():
                try:
                    with rotorshm.connect(self.socket, timeout=5.0) as c:
                        if c.writer_pid != self.proc.pid:
                            raise RuntimeError(f"socket answered by pid {c.writer_pid}")
                    with rotorshm.attach(self.name) as r:
                        if r.writer_alive:
                            return
                except (rotorshm.RotorError, OSError, RuntimeError) as exc:
                    last = exc
            time.sleep(0.01)
        raise self._fail(f"not ready after {timeout:.0f} s (last error: {last!r})")

    def stop(self) -> None:
        """SIGTERM and a clean exit (code 0), then remove the directory and any segment."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                raise self._fail(f"did not exit within {TIMEOUT:.0f} s of SIGTERM") from None
            if rc != 0:
                raise self._fail(f"exit code {rc} after SIGTERM")
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            shutil.rmtree(self.home, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                self.socket.unlink()
            remove_leftover_segments([self.name])


@contextlib.contextmanager
def running_daemon(parent: Path) -> Iterator[Daemon]:
    daemon = Daemon(parent)
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        daemon.stop()


# -- parameters ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Params:
    leaves: int
    batch: int
    runs: int
    seed: int
    quick: bool


@dataclass(frozen=True)
class Config:
    key: str
    clients: int
    durable: bool
    readers: int  # -1: the client-count series (no readers)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def clients_key(k: int, durable: bool) -> str:
    return f"ingest {'durable' if durable else 'not durable'}, {plural(k, 'client')}"


def readers_key(r: int) -> str:
    return f"ingest durable, 1 client, {plural(r, 'reader')}"


RATIO_KEY = f"ingest ratio {plural(READER_COUNTS[-1], 'reader')} / 0 readers"
TARGETS = (
    common.Target(clients_key(1, True), "median", ">=", 1_000_000, "leaves/s"),
    common.Target(RATIO_KEY, "median", ">=", 0.7, "ratio"),
)


def configs() -> list[Config]:
    out = [Config(clients_key(k, d), k, d, -1) for d in (True, False) for k in CLIENT_COUNTS]
    out += [Config(readers_key(r), 1, True, r) for r in READER_COUNTS]
    return out


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Params]:
    ap = common.base_parser(__doc__.splitlines()[0] if __doc__ else "daemon benchmark")
    ap.add_argument("--leaves", type=int, default=None,
                    help="leaves per measurement N (default 1,000,000; 50,000 with --quick)")
    ap.add_argument("--runs", type=int, default=None,
                    help="runs per configuration (default 5; 1 with --quick)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the leaves and indices")
    ap.add_argument("--tmpdir", type=Path, default=None,
                    help="where the daemons' tree directories go (default: a temporary "
                         "directory inside --out, i.e. on the results' filesystem)")
    args = ap.parse_args(argv)
    quick = bool(args.quick)
    leaves = common.quick_or_full(ap, "--leaves", args.leaves, quick, 50_000, 1_000_000,
                                  max(CLIENT_COUNTS))
    runs = common.quick_or_full(ap, "--runs", args.runs, quick, 1, 5, 1)
    return args, Params(leaves=leaves, batch=BATCH, runs=runs, seed=args.seed, quick=quick)


# -- one measurement -------------------------------------------------------------------------

def shares(n: int, k: int) -> list[int]:
    """`n` leaves split over `k` clients as evenly as possible."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def _ns(raw: bytes) -> array[int]:
    a = array("q")
    a.frombytes(raw)
    return a


def measure(p: Params, pool: Pool, parent: Path, cfg: Config, run: int, cont: Contention
            ) -> dict[str, Any]:
    """One run of one configuration in a fresh daemon; returns its raw outcome."""
    seed = p.seed * 1_000 + run * 100
    with running_daemon(parent) as daemon:
        # One untimed batch first: it warms the daemon (shard files created, code paths
        # run) the same way in every configuration, and gives readers leaves to prove.
        with rotorshm.connect(daemon.socket) as c:
            seq, seeded, _ = c.insert_many(random.Random(seed).randbytes(p.batch * LEAF))
            if not c.wait_durable(seq, TIMEOUT):
                raise RuntimeError(f"{cfg.key}: the seed batch did not become durable")
        clients = [{"socket": str(daemon.socket), "leaves": n, "batch": p.batch,
                    "durable": cfg.durable, "seed": seed + 1 + i}
                   for i, n in enumerate(shares(p.leaves, cfg.clients))]
        readers = [{"name": daemon.name, "seed": seed + 50 + i}
                   for i in range(max(cfg.readers, 0))]
        cpu: list[float] = []
        with cont.span([os.getpid(), daemon.proc.pid, *pool.pids]):
            t_go, _, done, seen = pool.run(
                clients, readers, on_go=lambda: cpu.append(proc_cpu_seconds(daemon.proc.pid)))
            daemon_cpu = proc_cpu_seconds(daemon.proc.pid) - cpu[0]
        with rotorshm.attach(daemon.name) as r:
            size = r.size
            durable_seq = r.durable_seq
    expected = seeded + p.leaves
    if size != expected:
        raise RuntimeError(f"{cfg.key}: the daemon holds {size} leaves, expected {expected}")
    if cfg.durable and durable_seq < max(d["last_seq"] for d in done):
        raise RuntimeError(f"{cfg.key}: durable seq {durable_seq} behind the last ack")
    t_end = max(d["end_ns"] for d in done)
    seconds = (t_end - t_go) / 1e9
    out: dict[str, Any] = {
        "seconds": seconds,
        "leaves_per_s": common.rate(p.leaves, seconds),
        "per_client_leaves_per_s": [common.rate(d["leaves"], (d["end_ns"] - t_go) / 1e9)
                                    for d in done],
        "start_skew_ms": (max(d["start_ns"] for d in done) - t_go) / 1e6,
        "daemon_cpu_s": daemon_cpu,
        "insert_ns": [x for d in done for x in _ns(d["insert_ns"])],
        "wait_ns": [x for d in done for x in _ns(d["wait_ns"])],
        "readers": [],
    }
    for i, s in enumerate(seen):
        ends, proof_ns, iter_ns = _ns(s["ends_ns"]), _ns(s["proof_ns"]), _ns(s["iter_ns"])
        if s["failures"]:
            raise RuntimeError(f"{cfg.key}: reader {i} got {s['failures']} invalid proofs")
        keep = [j for j, e in enumerate(ends) if e <= t_end]  # iterations during the ingest
        window = (t_end - max(s["start_ns"], t_go)) / 1e9
        out["readers"].append({
            "proofs": len(keep),
            "proofs_per_s": common.rate(len(keep), window) if window > 0 else 0.0,
            "proof_ns": [proof_ns[j] for j in keep],
            "iteration_ns": [iter_ns[j] for j in keep],
            "sizes_seen": [s["first_size"], s["last_size"]],
        })
    return out


# -- results ---------------------------------------------------------------------------------

def collect(p: Params, raw: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for cfg in configs():
        runs = raw[cfg.key]
        results[cfg.key] = common.runs_entry(
            "throughput", [r["leaves_per_s"] for r in runs], "leaves/s",
            arity=ARITY, clients=cfg.clients, readers=max(cfg.readers, 0),
            durable=cfg.durable, leaves=p.leaves, batch=p.batch, flush_interval_ms=FLUSH_MS,
            seeded_leaves=p.batch,
            runs=[{k: v for k, v in r.items() if k not in ("insert_ns", "wait_ns", "readers")}
                  for r in runs],
        )
    one = raw[clients_key(1, True)]
    results["1 client durable: insert_many round trip"] = common.latency_entry(
        [x for r in one for x in r["insert_ns"]], clients=1, batch=p.batch,
        what="client.insert_many(10,000 leaves) until the daemon's acknowledgement")
    results["1 client durable: wait_durable"] = common.latency_entry(
        [x for r in one for x in r["wait_ns"]], clients=1, batch=p.batch,
        what="client.wait_durable(seq) after each acknowledged batch")
    for rc in READER_COUNTS[1:]:
        runs = raw[readers_key(rc)]
        for j in range(rc):
            tag = f"reader {j + 1} of {rc}"
            per = [r["readers"][j] for r in runs]
            results[f"{tag}: proofs/s during ingest"] = common.runs_entry(
                "throughput", [x["proofs_per_s"] for x in per], "proofs/s", readers=rc,
                reader=j + 1,
                proofs=[x["proofs"] for x in per], sizes_seen=[x["sizes_seen"] for x in per],
                what="snapshot + generate_proof(random index) + verify per proof, counted "
                     "from the start event to the client's last acknowledgement")
            iters = [y for x in per for y in x["iteration_ns"]]
            results[f"{tag}: generate_proof during ingest"] = common.latency_entry(
                [y for x in per for y in x["proof_ns"]], readers=rc, reader=j + 1,
                iteration_summary_ns=common.summarize(iters) if iters else None,
                what="snap.generate_proof(random index) while the client ingests; "
                     "iteration_summary_ns: the whole snapshot+proof+verify loop")
    zero = results[readers_key(0)]["summary"]["median"]
    most = results[readers_key(READER_COUNTS[-1])]["summary"]["median"]
    results[RATIO_KEY] = common.runs_entry(
        "value", [most / zero], "ratio", readers=READER_COUNTS[-1],
        what=f"median durable ingest rate with {READER_COUNTS[-1]} readers / with 0 readers")
    return results


def plots(p: Params, results: dict[str, Any]) -> list[dict[str, Any]]:
    def med(key: str) -> float:
        return float(results[key]["summary"]["median"])

    return [
        {"file": f"{SCENARIO}_clients.png",
         "title": f"Writer daemon ingest of {p.leaves:,} leaves vs client processes "
                  f"(batches of {p.batch:,}, median of {p.runs})",
         "xlabel": "client processes (count)", "ylabel": "aggregate ingest rate (leaves/s)",
         "xscale": "linear", "yscale": "linear", "kind": "line",
         "series": [{"label": label, "x": list(CLIENT_COUNTS),
                     "y": [med(clients_key(k, d)) for k in CLIENT_COUNTS]}
                    for label, d in (("durable (wait_durable per batch)", True),
                                     ("not durable (ack per batch)", False))]},
        {"file": f"{SCENARIO}_readers.png",
         "title": f"Durable ingest by 1 client while readers generate proofs "
                  f"(median of {p.runs})",
         "xlabel": "reader processes (count)", "ylabel": "ingest rate (leaves/s)",
         "xscale": "linear", "yscale": "linear", "kind": "bar",
         "series": [{"label": "1 client, durable", "x": [str(r) for r in READER_COUNTS],
                     "y": [med(readers_key(r)) for r in READER_COUNTS]}]},
    ]


# -- main ------------------------------------------------------------------------------------

def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the scenario, print its table, write daemon.json and its plots; return the payload."""
    args, p = parse_args(argv)
    common.set_quiet(args.quiet)
    started = time.perf_counter()
    machine = common.machine_info()
    out: Path = args.out
    base = args.tmpdir if args.tmpdir is not None else out
    base.mkdir(parents=True, exist_ok=True)
    parent = Path(tempfile.mkdtemp(prefix=".bench-daemon-", dir=base))
    fstype = fs_type(parent)
    if fstype in ("tmpfs", "ramfs"):
        common.log(f"warning: {parent} is on {fstype}: fsync costs nothing there")
    cfgs = configs()
    raw: dict[str, list[dict[str, Any]]] = {c.key: [] for c in cfgs}
    workers = max(max(CLIENT_COUNTS), 1 + max(READER_COUNTS))
    cont = Contention()
    pool = Pool(workers)
    try:
        with common.Steps(p.runs * len(cfgs), desc=f"bench.{SCENARIO}") as bar:
            for r in range(p.runs):  # round-robin, so a slow phase hits every configuration
                for cfg in cfgs:
                    bar.advance(f"{cfg.key} run {r + 1}/{p.runs}")
                    raw[cfg.key].append(measure(p, pool, parent, cfg, r, cont))
    finally:
        pool.close()
        shutil.rmtree(parent, ignore_errors=True)

    results = collect(p, raw)
    verdicts = common.evaluate_targets(results, TARGETS)
    elapsed = time.perf_counter() - started
    title = (f"rotorshm daemon benchmark: writer daemon arity {ARITY}, flush {FLUSH_MS:g} ms, "
             f"N={p.leaves:,} leaves per measurement, batches of {p.batch:,}, tree on "
             f"{fstype}, {'quick' if p.quick else 'full'} run")
    common.print_table(title, common.table_rows(results, verdicts), common.TABLE_COLUMNS,
                       common.TABLE_ALIGN)
    print(f"ingest: leaves/s from the start event to the last acknowledgement, median of "
          f"{p.runs} run(s), a fresh daemon each; readers: proofs during the ingest; "
          f"{os.cpu_count()} CPUs shared by the daemon, clients and readers; targets are "
          "informational")
    cpu_note = ", ".join(
        f"{c.key} {sum(x['daemon_cpu_s'] for x in raw[c.key]) / len(raw[c.key]):.2f}"
        for c in cfgs)
    print(f"daemon CPU seconds per run (mean): {cpu_note}")
    print(f"during the measurements, {cont.describe()}")
    print(f"runtime {elapsed:.1f} s")
    payload = common.result_payload(
        benchmark=SCENARIO,
        machine=machine,
        parameters={
            "arity": ARITY,
            "leaves": p.leaves,
            "batch": p.batch,
            "flush_interval_ms": FLUSH_MS,
            "checkpoint_policy": "manual",
            "client_counts": list(CLIENT_COUNTS),
            "reader_counts": list(READER_COUNTS),
            "runs": p.runs,
            "seed": p.seed,
            "quick": p.quick,
            "worker_processes": workers,
            "tree_dir_parent": str(parent.parent),
            "tree_fs_type": fstype,
            "contention": cont.summary(),
            "timing": "CLOCK_MONOTONIC (time.monotonic_ns) in every process: from the "
                      "parent's start event to the last client's last acknowledgement "
                      "(after wait_durable when durable); processes not pinned",
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
