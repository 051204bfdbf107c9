"""`rotorshm http`: the real server (granian, 2 worker processes) as a subprocess on a free
loopback port, in front of a real writer daemon.

Proofs from both workers verify against the root of the same response, bad input gets its
4xx with a JSON body, the token rule holds, tile cache headers are right, a `kill -9` of a
worker and a writer restart are survived, /metrics parses. Every server runs in its own
session and is ended with its whole process group; nothing asserts on time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("granian", reason="the http extra (in dev) installs granian")
httpx = pytest.importorskip("httpx")

from daemon_util import (  # noqa: E402
    REPO_ROOT,
    TIMEOUT,
    Daemon,
    child_env,
    leaf,
    leaf_range,
    segments_of,
    start_daemon,
    unique_name,
    unlink_segments,
    wait_until,
)

from rotorshm import ConsistencyProof, InclusionProof  # noqa: E402
from rotorshm.levels import CHUNK_NODES  # noqa: E402

BINARY = {"accept": "application/octet-stream"}
LEAVES = 1000  # 7 complete tiles of level 0, and a partial one
TOKEN = "s3cret-token-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A `python -m rotorshm http` subprocess (its own process group)."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0, **kw)  # type: ignore[arg-type]

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(15)
        # The whole group, whatever state the supervisor left its workers in.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(TIMEOUT)


def start_server(name: str, tmp: Path, *, workers: int = 2, token: str | None = TOKEN,
                 max_body: int | None = None, ready: bool = True) -> Server:
    port = free_port()
    args = [sys.executable, "-m", "rotorshm", "http", name, "--listen", f"127.0.0.1:{port}",
            "--workers", str(workers)]
    if token is not None:
        token_file = tmp / f"token-{port}"
        token_file.write_text(token + "\n")
        args += ["--token-file", str(token_file)]
    if max_body is not None:
        args += ["--max-body", str(max_body)]
    log = tmp / f"http-{port}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=fh,
                                stderr=subprocess.STDOUT, env=child_env(), cwd=str(REPO_ROOT),
                                start_new_session=True)
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    if not ready:
        return server
    deadline = time.monotonic() + TIMEOUT
    seen: set[str] = set()
    try:
        # Ready when every worker has answered /healthz (new connections spread over them).
        while len(seen) < workers:
            if proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}:\n"
                                     f"{server.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready (workers seen {seen}):\n"
                                     f"{server.output()}")
            with contextlib.suppress(httpx.HTTPError), server.client() as c:
                r = c.get("/healthz", headers={"connection": "close"})
                if r.status_code == 200:
                    seen.add(r.headers["x-rotorshm-worker"])
            time.sleep(0.02)
    except BaseException:
        server.stop()
        raise
    return server


@dataclass
class Setup:
    daemon: Daemon
    server: Server
    name: str
    directory: Path


@contextlib.contextmanager
def served(tmp: Path, tag: str, daemon_kw: dict[str, object] | None = None,
           **server_kw: object) -> Iterator[Setup]:
    name = unique_name(tag)
    directory = tmp / "t"
    daemon = start_daemon(directory, name, pin_above_level=2, **(daemon_kw or {}))
    server: Server | None = None
    setup: Setup | None = None
    try:
        import rotorshm

        with rotorshm.connect(directory) as client:
            client.insert_many(leaf_range(0, LEAVES))
        server = start_server(name, tmp, **server_kw)  # type: ignore[arg-type]
        setup = Setup(daemon, server, name, directory)
        yield setup
    finally:
        if server is not None:
            server.stop()
        if setup is not None:
            daemon = setup.daemon  # a test may have replaced it (writer restart)
        if daemon.running():
            daemon.stop()
        else:
            daemon.kill()
        left = segments_of(name)
        unlink_segments(name)
        assert not left, f"segments left behind: {left}"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """One daemon + 2-worker server for the tests that do not break anything."""
    with served(tmp_path_factory.mktemp("http"), "http") as setup:
        yield setup


def verify_response(r: httpx.Response) -> InclusionProof:
    """Check a proof response against the root and size it carries; return the proof."""
    assert r.status_code == 200, r.text
    size = int(r.headers["x-rotorshm-size"])
    root = bytes.fromhex(r.headers["x-rotorshm-root"])
    if r.headers["content-type"] == "application/octet-stream":
        proof = InclusionProof.from_bytes(r.content)
    else:
        body = r.json()
        assert body["size"] == size and body["root"] == root.hex()
        proof = InclusionProof.from_json(json.dumps(body["proof"]))
    assert proof.verify_against(root, size)
    return proof


# -- reads ------------------------------------------------------------------------------------

def test_proofs_from_both_workers_verify_while_ingesting(shared: Setup) -> None:
    import rotorshm

    workers: set[str] = set()
    with rotorshm.connect(shared.directory) as ingest, shared.server.client() as c:
        for i in range(400):
            if i % 20 == 0:  # the tree keeps growing meanwhile
                start = LEAVES + 1000 + i * 10
                ingest.insert_many(leaf_range(start, start + 10))
            headers = {"connection": "close", **(BINARY if i % 2 else {})}
            r = c.get(f"/v1/proof/{(i * 7919) % LEAVES}", headers=headers)
            proof = verify_response(r)
            if proof.leaf_index < LEAVES:
                assert proof.leaf == leaf(proof.leaf_index)
            workers.add(r.headers["x-rotorshm-worker"])
            if len(workers) == 2 and i >= 40:
                break
    assert len(workers) == 2, f"only saw workers {workers}"


def test_proof_at_a_past_size_and_consistency(shared: Setup) -> None:
    with shared.server.client() as c:
        r = c.get("/v1/proof/10", params={"size": 500})
        proof = verify_response(r)
        assert proof.tree_size == 500
        old_root = bytes.fromhex(r.json()["proof"]["root"])  # the root at size 500
        r = c.get("/v1/consistency", params={"from": 500}, headers=BINARY)
        assert r.status_code == 200, r.text
        cons = ConsistencyProof.from_bytes(r.content)
        assert cons.new_size == int(r.headers["x-rotorshm-size"])
        assert cons.verify_against(old_root, bytes.fromhex(r.headers["x-rotorshm-root"]))
        r = c.get("/v1/consistency", params={"from": 100, "to": 500})
        cons = ConsistencyProof.from_json(json.dumps(r.json()["proof"]))
        assert cons.new_root == old_root and cons.verify()
        r = c.get("/v1/leaf/42", headers=BINARY)
        assert r.content == leaf(42)
        assert c.get("/v1/leaf/42").json()["leaf"] == leaf(42).hex()
        root = c.get("/v1/root").json()
        assert root["arity"] == 4 and root["writer_alive"] is True and root["size"] >= LEAVES
        assert root["durable_seq"] >= 1 and root["published_seq"] >= 1
        health = c.get("/healthz")
        assert health.status_code == 200 and health.json()["writer_alive"] is True
        spec = c.get("/openapi.json").json()
        assert spec["openapi"].startswith("3.") and "/v1/proof/{index}" in spec["paths"]


BAD = [
    ("GET", "/v1/proof/abc", 400),
    ("GET", "/v1/proof/-1", 400),
    ("GET", "/v1/proof/1e3", 400),
    ("GET", "/v1/proof/99999999999999999999999", 400),
    ("GET", "/v1/proof/100000000", 404),
    ("GET", "/v1/proof/0?size=0", 400),
    ("GET", "/v1/proof/0?size=x", 400),
    ("GET", "/v1/proof/0?size=100000000", 404),
    ("GET", "/v1/proof/600?size=500", 404),
    ("GET", "/v1/proof", 404),
    ("GET", "/v1/consistency", 400),
    ("GET", "/v1/consistency?from=500&to=300", 400),
    ("GET", "/v1/consistency?from=0", 400),
    ("GET", "/v1/consistency?from=1&to=100000000", 404),
    ("GET", "/v1/leaf/-5", 400),
    ("GET", "/v1/leaf/100000000", 404),
    ("GET", "/v1/tile/0/x", 400),
    ("GET", "/v1/tile/99/0", 404),
    ("GET", "/v1/tile/0/100000", 404),
    ("GET", "/v1/tile/0/0.p/128", 400),
    ("GET", "/v1/tile/0/0.p/0", 400),
    ("GET", "/v1/tile/0", 404),
    ("GET", "/v1/nothing", 404),
    ("GET", "/nothing", 404),
    ("POST", "/v1/proof/1", 405),
    ("GET", "/v1/leaves", 405),
]


@pytest.mark.parametrize(("method", "path", "status"), BAD)
def test_bad_input_gets_a_clear_4xx(shared: Setup, method: str, path: str, status: int) -> None:
    with shared.server.client() as c:
        r = c.request(method, path)
        assert r.status_code == status, (path, r.status_code, r.text)
        body = r.json()
        assert body["status"] == status and body["error"]
        assert "x-rotorshm-worker" in r.headers


def test_bad_bodies(shared: Setup) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    with shared.server.client() as c:
        for body, ctype, status in [
            (b"x" * 33, "application/octet-stream", 400),
            (b"", "application/octet-stream", 400),
            (b"{not json", "application/json", 400),
            (json.dumps({"leaves": ["zz" * 32]}).encode(), "application/json", 400),
            (json.dumps({"leaves": "ab"}).encode(), "application/json", 400),
            (json.dumps([1, 2]).encode(), "application/json", 400),
            (b"\0" * (2 << 20), "application/octet-stream", 413),
        ]:
            r = c.post("/v1/leaves", content=body, headers={**auth, "content-type": ctype})
            assert r.status_code == status, (body[:40], r.status_code, r.text)
            assert r.json()["status"] == status
        # still serving after all of it
        verify_response(c.get("/v1/proof/3"))


def test_token_rule(shared: Setup, tmp_path: Path) -> None:
    one = leaf(10**9).hex()
    with shared.server.client() as c:
        assert c.post("/v1/leaves", content=leaf(1)).status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert c.post("/v1/leaves", content=leaf(1), headers=wrong).status_code == 401
        basic = {"authorization": f"Basic {TOKEN}"}
        assert c.post("/v1/leaves", content=leaf(1), headers=basic).status_code == 401
        auth = {"authorization": f"Bearer {TOKEN}"}
        before = c.get("/v1/root").json()["size"]
        r = c.post("/v1/leaves", json={"leaves": [one, one]}, headers=auth,
                   params={"durable": 1})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["size"] >= before + 2 and body["durable"] is True and body["inserted"] == 2
        r = c.post("/v1/leaves", content=leaf_range(5, 8), headers=auth)
        assert r.status_code == 200 and r.json()["size"] >= body["size"] + 3


def test_no_token_means_no_inserts(tmp_path: Path) -> None:
    with served(tmp_path, "notok", workers=1, token=None, max_body=64) as setup, \
            setup.server.client() as c:
        r = c.post("/v1/leaves", content=leaf(1), headers={"authorization": "Bearer x"})
        assert r.status_code == 403 and "token" in r.json()["error"]
        verify_response(c.get("/v1/proof/0", headers=BINARY))


def test_tile_cache_headers(shared: Setup) -> None:
    immutable = "public, max-age=31536000, immutable"
    with shared.server.client() as c:
        # Immutable once durable (the daemon makes its WAL durable every 10 ms; a worker
        # looks every 0.2 s); until then the same bytes and ETag, but no-cache.
        wait_until(lambda: c.get("/v1/root").json()["durable_size"] >= 2 * CHUNK_NODES
                   and c.get("/v1/tile/0/1").headers["cache-control"] == immutable,
                   what="tile 0/1 to be served as immutable")
        r = c.get("/v1/tile/0/1")
        assert r.status_code == 200
        assert r.content == leaf_range(CHUNK_NODES, 2 * CHUNK_NODES)
        assert r.headers["cache-control"] == immutable
        etag = r.headers["etag"]
        assert etag.startswith('"') and etag.endswith('"')  # strong: no W/
        again = c.get("/v1/tile/0/1", headers={"if-none-match": etag})
        assert again.status_code == 304 and again.content == b""
        # level 1 nodes are hashes of leaf groups: a complete tile of 128 of them
        size = c.get("/v1/root").json()["size"]
        if size // 4 - 1 >= CHUNK_NODES:
            assert c.get("/v1/tile/1/0").status_code == 200
        last = (LEAVES - 1) // CHUNK_NODES  # incomplete at LEAVES, complete later maybe
        width = LEAVES - last * CHUNK_NODES
        r = c.get(f"/v1/tile/0/{last}.p/{width}")
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-cache" and "etag" not in r.headers
        assert r.content == leaf_range(last * CHUNK_NODES, LEAVES)


def test_tiles_are_immutable_only_once_durable(tmp_path: Path) -> None:
    import rotorshm

    # A 20 s group-commit interval: nothing new is durable until a client asks for a sync.
    with served(tmp_path, "durtile", daemon_kw={"flush_interval_ms": 20_000},
                workers=1) as setup, \
            setup.server.client() as c:
        with rotorshm.connect(setup.directory) as client:
            seq, _, _ = client.insert_many(leaf_range(LEAVES, LEAVES + 300))
            r = c.get("/v1/tile/0/9")  # leaves 1152..1279: complete, not durable
            assert r.status_code == 200 and r.content == leaf_range(1152, 1280)
            assert r.headers["cache-control"] == "no-cache"
            etag = r.headers["etag"]
            assert client.wait_durable(seq, TIMEOUT)
        wait_until(lambda: c.get("/v1/root").json()["durable_size"] >= LEAVES + 300,
                   what="the worker to see the leaves durable")
        r = c.get("/v1/tile/0/9")
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert r.headers["etag"] == etag


def test_metrics_parse(shared: Setup) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    with shared.server.client() as c:
        for i in range(5):
            c.get(f"/v1/proof/{i}")
        c.get("/v1/proof/zzz")
        r = c.get("/metrics")
    assert r.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert "rotorshm_http_requests" in families
    assert "rotorshm_http_request_duration_seconds" in families
    assert "rotorshm_tree_size" in families and "rotorshm_writer_alive" in families
    samples = families["rotorshm_http_requests"].samples
    proof_ok = sum(s.value for s in samples
                   if s.labels.get("endpoint") == "proof" and s.labels.get("status") == "200")
    assert proof_ok >= 5
    assert any(s.labels.get("status") == "400" for s in samples)
    sizes = [s.value for s in families["rotorshm_tree_size"].samples]
    assert sizes and max(sizes) >= LEAVES


# -- failures ---------------------------------------------------------------------------------

def test_server_started_before_the_writer(tmp_path: Path) -> None:
    import rotorshm

    name = unique_name("early")
    server = start_server(name, tmp_path, workers=1, ready=False)
    daemon: Daemon | None = None
    try:
        with server.client() as c:
            def answers() -> bool:
                with contextlib.suppress(httpx.TransportError):
                    return c.get("/healthz").status_code == 503
                return False

            wait_until(answers, what="the server to answer without a tree")
            r = c.get("/v1/proof/0")
            assert r.status_code == 503 and "no snapshot" in r.json()["error"]
            daemon = start_daemon(tmp_path / "t", name)
            with rotorshm.connect(tmp_path / "t") as client:
                client.insert_many(leaf_range(0, 10))
            wait_until(lambda: c.get("/healthz").status_code == 200,
                       what="the worker to attach to the new writer")
            wait_until(lambda: c.get("/v1/root").json()["size"] == 10, what="size 10")
            verify_response(c.get("/v1/proof/9", headers=BINARY))
    finally:
        server.stop()
        if daemon is not None:
            daemon.stop()
        left = segments_of(name)
        unlink_segments(name)
        assert not left, f"segments left behind: {left}"


def _worker_pids(server: Server) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(server.proc.pid)],
                         capture_output=True, text=True, check=False)
    return {int(x) for x in out.stdout.split()}


def test_kill_9_of_a_worker_is_survived(tmp_path: Path) -> None:
    with served(tmp_path, "kill") as setup, setup.server.client() as c:
        server = setup.server
        r = c.get("/v1/proof/1", headers={"connection": "close"})
        victim = int(r.headers["x-rotorshm-worker"])
        assert victim in _worker_pids(server)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: victim not in _worker_pids(server), what="the worker to die")
        wait_until(lambda: len(_worker_pids(server)) == 2, what="a replacement worker")
        seen: set[int] = set()
        deadline = time.monotonic() + TIMEOUT
        while len(seen) < 2 and time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                r = c.get("/v1/proof/7", headers={"connection": "close"})
                if r.status_code == 200:
                    verify_response(r)
                    seen.add(int(r.headers["x-rotorshm-worker"]))
        assert len(seen) == 2 and victim not in seen, (seen, victim)
        assert server.proc.poll() is None


def test_writer_restart_is_survived(tmp_path: Path) -> None:
    import rotorshm

    auth = {"authorization": f"Bearer {TOKEN}"}
    with served(tmp_path, "restart") as setup, setup.server.client() as c:
        before = c.get("/v1/root").json()
        setup.daemon.kill()
        # Reads go on from the last snapshot, marked; writes are refused.
        for _ in range(2 * 2):
            r = c.get("/v1/proof/5", headers={"connection": "close"})
            verify_response(r)

        def gone_everywhere() -> bool:
            r = c.get("/v1/root", headers={"connection": "close"})
            return r.status_code == 200 and r.headers.get("x-rotorshm-writer") == "gone"

        wait_until(gone_everywhere, what="a worker to see the writer gone")
        assert c.post("/v1/leaves", content=leaf(1), headers=auth).status_code == 503
        # A new writer on the same directory and name: every worker follows it.
        new = start_daemon(setup.directory, setup.name, pin_above_level=2)
        setup.daemon = new
        with rotorshm.connect(setup.directory) as client:
            client.insert_many(leaf_range(LEAVES, LEAVES + 100))
        followed: set[str] = set()
        deadline = time.monotonic() + TIMEOUT
        while len(followed) < 2 and time.monotonic() < deadline:
            r = c.get("/v1/root", headers={"connection": "close"})
            body = r.json()
            if body["epoch"] == new.epoch and body["size"] >= LEAVES + 100:
                assert "x-rotorshm-writer" not in r.headers and body["writer_alive"]
                followed.add(r.headers["x-rotorshm-worker"])
            time.sleep(0.01)
        assert len(followed) == 2, f"workers on the new epoch: {followed}"
        assert before["epoch"] != new.epoch
        proof = verify_response(c.get(f"/v1/proof/{LEAVES + 50}", headers=BINARY))
        assert proof.leaf == leaf(LEAVES + 50)
        r = c.post("/v1/leaves", content=leaf_range(0, 2), headers=auth)
        assert r.status_code == 200, r.text


def test_demo_http() -> None:
    res = subprocess.run([sys.executable, "-m", "rotorshm", "demo", "--http", "--leaves",
                          "20000", "--batch", "1000", "-q"], capture_output=True, text=True,
                         env=child_env(), cwd=str(REPO_ROOT), timeout=300, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "HTTP proofs" in res.stdout and "each verified" in res.stdout
    assert "result              OK" in res.stdout or res.stdout.rstrip().endswith("OK")
