"""HTTP benchmark: proofs per second from `rotorshm http` workers, on 127.0.0.1, while the
writer ingests.

    python -m bench.http [--quick] [--out DIR] [--leaves N] [--duration S] [--runs R]
                         [--connections C] [--loadgen wrk|python]

A real ``python -m rotorshm serve`` daemon (arity 4) holds a tree of N leaves (200,000;
quick 20,000) and a client thread keeps ingesting 1,000-leaf batches every 10 ms for the
whole run. A real ``rotorshm http`` server (granian) runs with 1, then 2 worker processes.
Against each, a load generator on the same machine sends ``GET /v1/proof/{random index}``
over C keep-alive connections (32; indices uniform in [0, N)):

* **max throughput**, binary (``Accept: application/octet-stream``) and JSON: R runs of S
  seconds (3 x 5 s; quick 1 x 1 s) each, after a short warm-up; requests/s of every run
  (non-2xx answers are counted and reported, not as throughput). The CPU time of the
  worker processes (``/proc/PID/stat``) over a run gives proofs per worker CPU-second;
* **latency at half of max load** (1 worker, binary): the generator paces its
  connections (wrk's ``delay()`` hook, 1 ms between a response and the next request) to
  about half of the measured max; the latency distribution is wrk's histogram, stored as
  its quantiles (one per 0.05 %, as ns) in place of raw samples; the rate reached is
  recorded with it;
* **verification during ingest**: a separate httpx client fetches proofs (binary and
  JSON alternately, random indices over the whole current tree) while the writer
  ingests, and checks each against the size and root of the same response.

The generator is ``wrk`` when it is installed (Debian: ``apt-get install wrk``), else a
bounded Python one (two processes looping on ``http.client`` keep-alive connections; much
slower than wrk: it measures the generator as much as the server, which the JSON says).
Loops are bounded in count and time; everything listens on 127.0.0.1 only; the server's
whole process group and the daemon are stopped at the end and no ``/dev/shm`` entry is
left. Targets are informational.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rotorshm.spawn import rotorshm_argv

from . import common

ARITY = 4
INGEST_BATCH = 1000
INGEST_PAUSE_S = 0.010
READY_TIMEOUT = 60.0
QUANTILES = 2000  # latency quantiles stored per latency result (one per 0.05 %)
BINARY = "application/octet-stream"
JSON = "application/json"

_WRK_SCRIPT = """
local size = tonumber(os.getenv("ROTORSHM_BENCH_SIZE"))
local accept = os.getenv("ROTORSHM_BENCH_ACCEPT")
local pause = tonumber(os.getenv("ROTORSHM_BENCH_DELAY_MS") or "0")
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  math.randomseed(seed * 7919 + os.time())
end
function request()
  return wrk.format("GET", "/v1/proof/" .. math.random(0, size - 1), {["Accept"] = accept})
end
if pause > 0 then
  function delay() return pause end
end
function done(summary, latency, requests)
  local q = {}
  local n = tonumber(os.getenv("ROTORSHM_BENCH_QUANTILES"))
  for i = 1, n do q[i] = latency:percentile(100.0 * (i - 0.5) / n) end
  io.write("ROTORSHM_JSON ")
  io.write(string.format('{"requests": %d, "duration_us": %d, "non2xx": %d, ' ..
    '"errors": %d, "quantiles_us": [%s]}\\n', summary.requests, summary.duration,
    summary.errors.status, summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, table.concat(q, ",")))
end
"""


@dataclass
class Params:
    quick: bool
    leaves: int
    duration: float
    runs: int
    connections: int
    workers: tuple[int, ...]
    verify: int
    loadgen: str
    seed: int


def parse_args(argv: Sequence[str] | None) -> tuple[Any, Params]:
    ap = common.base_parser(__doc__ or "")
    ap.add_argument("--leaves", type=int, default=None)
    ap.add_argument("--duration", type=float, default=None, help="seconds per run")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    loadgen = args.loadgen
    if loadgen == "auto":
        loadgen = "wrk" if shutil.which("wrk") else "python"
    elif loadgen == "wrk" and not shutil.which("wrk"):
        ap.error("wrk is not installed (apt-get install wrk), use --loadgen python")
    p = Params(
        quick=args.quick,
        leaves=common.quick_or_full(ap, "--leaves", args.leaves, args.quick, 20_000, 200_000,
                                    1000),
        duration=common.quick_or_full(ap, "--duration", args.duration, args.quick, 1.0, 5.0,
                                      0.2),
        runs=common.quick_or_full(ap, "--runs", args.runs, args.quick, 1, 3, 1),
        connections=max(1, args.connections),
        workers=(1, 2),
        verify=200 if args.quick else 4000,
        loadgen=loadgen,
        seed=args.seed,
    )
    return args, p


# -- processes ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """The writer daemon on its own temporary tree directory."""

    def __init__(self, root: Path) -> None:
        self.name = f"benchh{uuid.uuid4().hex[:10]}"
        self.directory = root / self.name
        self.directory.mkdir(parents=True)
        self.log_path = root / f"{self.name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            common.serve_argv(str(self.directory), "--name", self.name, "--arity", str(ARITY),
                              "--checkpoint", "manual", "--pin-above-level", "2"),
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def wait_ready(self) -> None:
        import rotorshm

        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(rotorshm.RotorError, OSError), \
                    rotorshm.connect(self.directory, timeout=5.0) as c:
                if c.writer_pid == self.proc.pid:
                    return
            time.sleep(0.02)
        raise RuntimeError("writer daemon not ready")

    def stop(self) -> list[str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return common.remove_shm_segments(self.name)


class HttpServer:
    """`rotorshm http NAME --workers K` in its own process group."""

    def __init__(self, name: str, workers: int, root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.log_path = root / f"http-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            rotorshm_argv("http", name, "--listen", f"127.0.0.1:{self.port}",
                          "--workers", str(workers)),
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)],
                             capture_output=True, text=True, check=False)
        return [int(x) for x in out.stdout.split()]

    def wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + READY_TIMEOUT
        seen: set[str] = set()
        while len(seen) < self.workers:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"http server not ready: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(self.url + "/healthz", headers={"connection": "close"}, timeout=5)
                if r.status_code == 200:
                    seen.add(r.headers["x-rotorshm-worker"])
            time.sleep(0.02)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._log.close()


def procs_cpu_s(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) used so far by `pids` (0 for a pid that is gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


class Ingest:
    """A thread streaming 1,000-leaf batches into the daemon until stopped."""

    def __init__(self, directory: Path, start: int) -> None:
        self.directory = directory
        self.next = start
        self.leaves = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self.started = time.perf_counter()
        self.error: BaseException | None = None
        self._thread.start()

    def _run(self) -> None:
        import rotorshm

        try:
            with rotorshm.connect(self.directory) as client:
                while not self._stop.wait(INGEST_PAUSE_S):
                    n = self.next
                    client.insert_many(b"".join(i.to_bytes(32, "little")
                                                for i in range(n, n + INGEST_BATCH)))
                    self.next += INGEST_BATCH
                    self.leaves += INGEST_BATCH
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc

    def stop(self) -> float:
        """Stop; return the ingest rate (leaves/s) over its life."""
        self._stop.set()
        self._thread.join(30)
        if self.error is not None:
            raise RuntimeError(f"ingest failed: {self.error!r}")
        return self.leaves / (time.perf_counter() - self.started)


# -- load generators -----------------------------------------------------------------------

@dataclass
class Load:
    requests: int
    seconds: float
    non2xx: int
    errors: int
    quantiles_ns: list[int]
    cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return common.rate(self.requests - self.non2xx - self.errors, self.seconds)


def run_wrk(url: str, size: int, accept: str, seconds: float, connections: int,
            script: Path, delay_ms: int = 0) -> Load:
    env = dict(os.environ, ROTORSHM_BENCH_SIZE=str(size), ROTORSHM_BENCH_ACCEPT=accept,
               ROTORSHM_BENCH_DELAY_MS=str(delay_ms), ROTORSHM_BENCH_QUANTILES=str(QUANTILES))
    duration = max(1, round(seconds))
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s",
                          "-s", str(script), url], capture_output=True, text=True, env=env,
                         timeout=duration + 60, check=False)
    m = re.search(r"^ROTORSHM_JSON (.*)$", out.stdout, re.MULTILINE)
    if out.returncode != 0 or m is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-1500:]}"
                           f"{out.stderr[-1500:]}")
    data = json.loads(m.group(1))
    return Load(int(data["requests"]), data["duration_us"] / 1e6, int(data["non2xx"]),
                int(data["errors"]), [int(q * 1000) for q in data["quantiles_us"]])


def _py_client(url: str, size: int, accept: str, seconds: float, delay_s: float, seed: int,
               queue: Any, go: Any) -> None:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    rng = random.Random(seed)
    lat: list[int] = []
    bad = 0
    clock = time.perf_counter_ns
    queue.put("ready")
    go.wait(60)
    start = time.monotonic()
    end = start + seconds
    headers = {"Accept": accept}
    while time.monotonic() < end and len(lat) < 5_000_000:
        t0 = clock()
        conn.request("GET", f"/v1/proof/{rng.randrange(size)}", headers=headers)
        resp = conn.getresponse()
        resp.read()
        lat.append(clock() - t0)
        if resp.status != 200:
            bad += 1
        if delay_s:
            time.sleep(delay_s)
    elapsed = time.monotonic() - start
    conn.close()
    queue.put((lat, bad, elapsed))


def run_python(url: str, size: int, accept: str, seconds: float, connections: int,
               delay_ms: int = 0, seed: int = 1) -> Load:
    """A bounded Python generator: min(connections, 2) processes, one connection each,
    started together once all are up; the rate is the sum of each one's own rate."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    go = ctx.Event()
    n = min(connections, 2)
    procs = [ctx.Process(target=_py_client, args=(url, size, accept, seconds, delay_ms / 1000,
                                                  seed + i, queue, go), daemon=True)
             for i in range(n)]
    for p in procs:
        p.start()
    for _ in procs:
        queue.get(timeout=60)  # "ready"
    go.set()
    lats: list[int] = []
    bad = 0
    rate = 0.0
    for _ in procs:
        lat, b, took = queue.get(timeout=seconds + 60)
        lats += lat
        bad += b
        rate += len(lat) / took
    for p in procs:
        p.join(10)
    elapsed = len(lats) / rate if rate > 0 else seconds
    lats.sort()
    qs = [int(common.percentile(lats, (i + 0.5) / QUANTILES)) for i in range(QUANTILES)]
    return Load(len(lats), elapsed, bad, 0, qs)


# -- measurements ---------------------------------------------------------------------------

def verify_proofs(url: str, count: int, seed: int) -> tuple[int, int]:
    """Fetch `count` proofs (binary and JSON alternately) and verify each against the size and
    root of its own response; (verified, failed)."""
    import httpx

    from rotorshm import InclusionProof

    rng = random.Random(seed)
    ok = bad = 0
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=url, timeout=10) as c:
        size = int(c.get("/v1/root").json()["size"])
        for i in range(count):
            if time.monotonic() > deadline:
                break
            binary = i % 2 == 0
            r = c.get(f"/v1/proof/{rng.randrange(size)}",
                      headers={"accept": BINARY if binary else JSON})
            try:
                size = int(r.headers["x-rotorshm-size"])
                root = bytes.fromhex(r.headers["x-rotorshm-root"])
                if binary:
                    proof = InclusionProof.from_bytes(r.content)
                else:
                    proof = InclusionProof.from_json(json.dumps(r.json()["proof"]))
                good = r.status_code == 200 and proof.verify_against(root, size)
            except Exception:  # noqa: BLE001 - a failed check, counted
                good = False
            ok += good
            bad += not good
    return ok, bad


def measure(p: Params, server: HttpServer, script: Path, accept: str, seconds: float,
            delay_ms: int = 0, connections: int | None = None) -> Load:
    conns = connections or p.connections
    pids = server.worker_pids()
    cpu0 = procs_cpu_s(pids)
    if p.loadgen == "wrk":
        load = run_wrk(server.url, p.leaves, accept, seconds, conns, script, delay_ms)
    else:
        load = run_python(server.url, p.leaves, accept, seconds, conns, delay_ms, p.seed)
    load.cpu_s = procs_cpu_s(pids) - cpu0
    return load


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args, p = parse_args(argv)
    common.set_quiet(args.quiet)
    started = time.perf_counter()
    machine = common.machine_info()
    results: dict[str, Any] = {}
    info: dict[str, Any] = {"runs": {}}
    root = Path(tempfile.mkdtemp(prefix="rsh-"))
    script = root / "proof.lua"
    script.write_text(_WRK_SCRIPT)
    daemon = Daemon(root)
    leftovers: list[str] = []
    ingest_rates: list[float] = []
    try:
        daemon.wait_ready()
        import rotorshm

        with rotorshm.connect(daemon.directory) as client:
            for start in range(0, p.leaves, 10_000):
                stop = min(start + 10_000, p.leaves)
                client.insert_many(b"".join(i.to_bytes(32, "little")
                                            for i in range(start, stop)))
        steps = len(p.workers) * 2 * p.runs + 2
        with common.Steps(steps, desc="bench.http") as bar:
            for k in p.workers:
                server = HttpServer(daemon.name, k, root)
                ingest = None
                try:
                    server.wait_ready()
                    ingest = Ingest(daemon.directory, 10**9 + k * 10**8)
                    for accept, fmt in ((BINARY, "binary"), (JSON, "json")):
                        if not p.quick:
                            measure(p, server, script, accept, 1.0)  # warm-up
                        loads = []
                        for r in range(p.runs):
                            bar.advance(f"{k} worker(s) {fmt} run {r + 1}")
                            loads.append(measure(p, server, script, accept, p.duration))
                        label = f"{k} worker{'s' if k > 1 else ''} {fmt}"
                        rates = [ld.rate for ld in loads]
                        per_cpu = [ld.requests / ld.cpu_s for ld in loads if ld.cpu_s > 0]
                        results[f"proofs/s {label}"] = common.runs_entry(
                            "throughput", rates, "proofs/s",
                            non2xx=sum(ld.non2xx for ld in loads),
                            errors=sum(ld.errors for ld in loads),
                            worker_cpu_s=[ld.cpu_s for ld in loads])
                        if per_cpu:
                            results[f"proofs per worker CPU-s {label}"] = common.runs_entry(
                                "throughput", per_cpu, "proofs/CPU-s")
                        lat = [q for ld in loads for q in ld.quantiles_ns]
                        results[f"latency at max load {label}"] = common.latency_entry(
                            lat, source="load generator quantiles (one per 0.05 %), per run")
                    if k == 1:
                        bar.advance("half load")
                        half = results["proofs/s 1 worker binary"]["summary"]["median"] / 2
                        # A paced connection does one request per (1 ms + its latency): guess
                        # the connections from the max rate, then correct once by measuring.
                        conns = max(1, round(half * (0.001 + 1 / (2 * half))))
                        probe = measure(p, server, script, BINARY, 1.0, delay_ms=1,
                                        connections=conns)
                        if probe.rate > 0:
                            conns = max(1, round(conns * half / probe.rate))
                        load = measure(p, server, script, BINARY, p.duration * max(1, p.runs),
                                       delay_ms=1, connections=conns)
                        results["latency at half load 1 worker binary"] = common.latency_entry(
                            load.quantiles_ns, rate=load.rate, target_rate=half,
                            connections=conns,
                            source="load generator quantiles (one per 0.05 %)")
                    bar.advance("verification")
                    ok, bad = verify_proofs(server.url, p.verify, p.seed + k)
                    info["runs"][f"{k} workers verified"] = {"ok": ok, "failed": bad}
                    results[f"verified during ingest {k} worker{'s' if k > 1 else ''}"] = (
                        common.single_value_entry(ok / max(1, ok + bad), "fraction",
                                                  verified=ok, failed=bad))
                finally:
                    if ingest is not None:
                        ingest_rates.append(ingest.stop())
                    server.stop()
    finally:
        leftovers = daemon.stop()
        shutil.rmtree(root, ignore_errors=True)

    targets = [
        common.Target("proofs/s 1 worker binary", "median", ">=", 15_000, "proofs/s"),
        common.Target("proofs/s 1 worker json", "median", ">=", 10_000, "proofs/s"),
        common.Target("proofs per worker CPU-s 1 worker binary", "median", ">=", 15_000,
                      "proofs/CPU-s"),
        common.Target("latency at half load 1 worker binary", "p99", "<=", 2e6, "ns"),
        common.Target("verified during ingest 1 worker", "min", ">=", 1.0, "fraction"),
        common.Target("verified during ingest 2 workers", "min", ">=", 1.0, "fraction"),
    ]
    verdicts = common.evaluate_targets(results, targets)
    elapsed = time.perf_counter() - started
    title = (f"rotorshm http benchmark: GET /v1/proof on 127.0.0.1, {p.leaves:,} leaves + ingest,"
             f" {p.connections} connections, load generator {p.loadgen}, "
             f"{'quick' if p.quick else 'full'} run")
    common.print_table(title, common.table_rows(results, verdicts, show_metric=True),
                       common.TABLE_COLUMNS, common.TABLE_ALIGN)
    half = results.get("latency at half load 1 worker binary")
    if half is not None:
        print(f"half load: {half['rate']:,.0f} req/s reached of {half['target_rate']:,.0f} "
              f"aimed at, over {half['connections']} paced connections")
    print(f"ingest meanwhile: {', '.join(f'{r:,.0f}' for r in ingest_rates)} leaves/s; "
          f"leftover /dev/shm segments: {leftovers or 'none'}; 1-min load average at start "
          f"{machine['loadavg_1_5_15'][0]:.2f}; runtime {elapsed:.1f} s")

    def series(fmt: str) -> dict[str, Any]:
        return {"label": fmt, "x": [f"{k} worker{'s' if k > 1 else ''}" for k in p.workers],
                "y": [results[f"proofs/s {k} worker{'s' if k > 1 else ''} {fmt}"]["summary"]
                      ["median"] for k in p.workers]}

    curves = []
    for key in ("latency at max load 1 worker binary", "latency at half load 1 worker binary"):
        if key in results:
            s = sorted(results[key]["samples"])
            xs = [100.0 * (i + 0.5) / len(s) for i in range(len(s))]
            curves.append({"label": key.removeprefix("latency "), "x": xs,
                           "y": [max(v, 1) / 1000 for v in s]})
    plots: list[dict[str, Any]] = [
        {"file": "http_throughput.png",
         "title": "GET /v1/proof requests/s by worker processes (median of runs), "
                  "while the writer ingests",
         "xlabel": "granian worker processes", "ylabel": "proofs/s", "xscale": "linear",
         "yscale": "linear", "kind": "bar", "series": [series("binary"), series("json")]},
        {"file": "http_latency.png",
         "title": "latency distribution, 1 worker, binary proofs: at max load and at half",
         "xlabel": "percentile", "ylabel": "latency (µs)", "xscale": "linear", "yscale": "log",
         "kind": "line", "series": curves},
    ]
    payload = common.result_payload(
        benchmark="http",
        machine=machine,
        parameters={
            "arity": ARITY, "leaves": p.leaves, "duration_s": p.duration, "runs": p.runs,
            "connections": p.connections, "workers": list(p.workers), "loadgen": p.loadgen,
            "server": "granian (rotorshm http)", "ingest_batch": INGEST_BATCH,
            "ingest_pause_s": INGEST_PAUSE_S, "ingest_leaves_per_s": ingest_rates,
            "verify_requests": p.verify, "quick": p.quick, "seed": p.seed,
            "leftover_segments": leftovers, **info,
        },
        results=results,
        targets=verdicts,
        plots=plots,
        runtime_s=elapsed,
    )
    common.write_results(payload, args.out, plot_errors_fatal=False)
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
