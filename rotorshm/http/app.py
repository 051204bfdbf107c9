"""The ASGI application: a bare ASGI callable over one `Reader` per worker process.

Endpoints (JSON by default; binary where the client sends ``Accept: application/octet-stream``):

    GET  /v1/root                       size, root, arity, depth, epoch, published and durable
                                        sequence numbers, writer_alive
    GET  /v1/proof/{index}?size=S       inclusion proof (binary: the proof's own encoding)
    GET  /v1/consistency?from=M&to=N    consistency proof (default to = current size)
    GET  /v1/leaf/{index}               the leaf (binary: its 32 bytes)
    GET  /v1/tile/{level}/{index}       one complete 4 KiB chunk (128 nodes) of a level:
                                        immutable cache headers and a strong ETag
    GET  /v1/tile/{level}/{index}.p/{w} its first w nodes while it is incomplete: no-cache
    POST /v1/leaves[?durable=1]         raw 32-byte leaves or {"leaves": [hex, ...]}; forwarded
                                        to the writer daemon; needs the bearer token
    GET  /healthz                       200 while the worker holds a snapshot
    GET  /metrics                       Prometheus text (multi-process mode under the server)
    GET  /openapi.json                  the OpenAPI description

Every response carries ``X-Rotorshm-Worker`` (the worker's pid). Every answer computed
from a snapshot carries ``X-Rotorshm-Size`` and ``X-Rotorshm-Root`` of that snapshot, so a
client can verify a binary proof against the root of the same response; a JSON proof
carries them in its body too. While the writer is not alive, reads are served from the
last snapshot and carry ``X-Rotorshm-Writer: gone``; writes get 503.

Bad input gets a 4xx with a JSON body ``{"error": ..., "status": ...}``: 400 for a
malformed number, a negative index, ``from > to``, a body that is not whole leaves; 404
for an unknown path or an index or size the tree does not have (yet); 401/403 for the
token rule; 405 for a wrong method; 413 for a body over the limit. An unexpected error is
a 500 with a JSON body and never takes the worker down.

Why a bare ASGI callable rather than Starlette: measured in process, a request cost 58-76 µs
of CPU here and 85-97 µs behind Starlette's router and Response (server.py has the
numbers); the routes are few and fixed, so the framework buys little.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from threading import local
from typing import Any
from urllib.parse import parse_qsl

from blake3 import blake3

from ..errors import (
    CapacityExceeded,
    IndexOutOfRange,
    InvalidLeaf,
    RotorError,
    StaleSnapshot,
    StorageFull,
    WriterGone,
    WriterUnavailable,
)
from ..levels import CHUNK_NODES, NODE_SIZE
from ..reader import Reader
from ..snapshot import Snapshot
from .metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MAX_BODY = 1 << 20  # bytes of a POST body: 32,768 leaves
WORKER_HEADER = "x-rotorshm-worker"
WRITER_CHECK_S = 0.2  # how often a worker looks at the writer's liveness (and a new epoch)
REATTACH_EVERY_S = 0.5  # while the writer is gone, how often to look for a successor
INSERT_THREADS = 4  # blocking Client calls run here, one Client per thread
DURABLE_TIMEOUT_S = 30.0
TILE_CACHE = "public, max-age=31536000, immutable"

_JSON = b"application/json"
_BINARY = b"application/octet-stream"
_PROBLEM = b"application/json"


class HTTPError(Exception):
    """An answer other than 200, with a message for the JSON error body."""

    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


def _int(text: str, what: str, low: int = 0) -> int:
    """A decimal integer >= `low` from a path segment or query value, else a 400."""
    if not text.isdigit() or not text.isascii() or len(text) > 20:
        raise HTTPError(400, f"{what} must be a non-negative decimal integer, got {text[:40]!r}")
    value = int(text)
    if value < low:
        raise HTTPError(400, f"{what} must be at least {low}, got {value}")
    return value


def _query(scope: Scope) -> dict[str, str]:
    raw: bytes = scope.get("query_string", b"")
    if not raw:
        return {}
    try:
        return dict(parse_qsl(raw.decode("ascii"), keep_blank_values=True, max_num_fields=16))
    except (UnicodeDecodeError, ValueError):
        raise HTTPError(400, "malformed query string") from None


def inclusion_bytes(snap: Snapshot, index: int, size: int | None) -> bytes:
    """The binary inclusion proof of leaf `index` in the tree of `size` leaves.

    Uses `Snapshot.proof_bytes` (the C path) where the engine has it, else encodes the
    Python proof: the one place that knows which.
    """
    fast = getattr(snap, "proof_bytes", None)
    if fast is not None:
        data: bytes = fast(index, size)
        return data
    return snap.generate_proof(index, size).to_bytes()


def _published(reader: Reader) -> tuple[int, int] | None:
    """(WAL sequence, size) of the last publication, read together (None if unavailable).

    The engine's Reader does not expose the published sequence yet: read it from its
    control block (one seqlock read), the only private attribute this layer touches.
    """
    ctl = getattr(reader, "_ctl", None)
    try:
        state = ctl.read_state() if ctl is not None else None
    except RotorError:
        return None
    return (int(state.seq), int(state.size)) if state is not None else None


def _published_seq(reader: Reader) -> int | None:
    """The WAL sequence of the last publication (None if the engine does not expose it)."""
    seq = getattr(reader, "published_seq", None)
    if isinstance(seq, int):
        return seq
    pub = _published(reader)
    return pub[0] if pub is not None else None


def _tree_directory(reader: Reader) -> str | None:
    """The tree directory the writer daemon serves (its socket lives there)."""
    directory = getattr(reader, "directory", None)
    if isinstance(directory, str):
        return directory
    ctl = getattr(reader, "_ctl", None)
    directory = getattr(ctl, "directory", None)
    return directory if isinstance(directory, str) else None


class _Tree:
    """The worker's view of the tree: its Reader, the last snapshot, the writer's liveness.

    Liveness is looked at every WRITER_CHECK_S, not per request. While the writer is gone,
    the last snapshot is served without touching shared memory, and every
    REATTACH_EVERY_S a fresh attach looks for a successor (a new epoch); when one is
    live, the worker switches to it. (A fresh `attach` rather than `Reader.reattach()`,
    so the old Reader and the snapshots taken from it stay valid until dropped.)

    `durable_size`: a size whose leaves are all durable. Published but not yet durable
    leaves may be replaced after a writer crash (DESIGN.md), so only chunks below it are
    served as immutable. Each check records the (sequence, size) of the last publication;
    once the durable sequence reaches a recorded sequence, its size is durable.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.reader: Reader | None = None
        self.last: Snapshot | None = None
        self.alive = False
        self._next_check = 0.0
        self._next_attach = 0.0
        self.reattaches = 0
        self.durable_size = 0
        self._published: list[tuple[int, int]] = []

    def open(self) -> None:
        """Attach (in the worker, after it started); failure is retried on later requests."""
        try:
            self.reader = Reader(self.name)
        except RotorError:
            self.reader = None
            return
        self.alive = self.reader.writer_alive
        self._take()
        self._track_durable()

    def _track_durable(self) -> None:
        reader = self.reader
        if reader is None:
            return
        pub = _published(reader)
        pending = self._published
        if pub is not None and (not pending or pending[-1] != pub):
            pending.append(pub)
            if len(pending) > 256:  # a stalled fsync: forget the oldest (only delays)
                del pending[:128]
        try:
            durable = reader.durable_seq
        except RotorError:
            return
        keep = []
        for seq, size in pending:
            if seq <= durable:
                self.durable_size = max(self.durable_size, size)
            else:
                keep.append((seq, size))
        self._published = keep

    def _take(self) -> None:
        assert self.reader is not None
        with contextlib.suppress(RotorError):
            self.last = self.reader.snapshot()

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def _look_for_successor(self, now: float) -> None:
        if now < self._next_attach:
            return
        self._next_attach = now + REATTACH_EVERY_S
        try:
            fresh = Reader(self.name)
        except RotorError:
            return
        old = self.reader
        if (old is None or fresh.epoch != old.epoch) and fresh.writer_alive:
            self.reader = fresh
            self.alive = True
            self.reattaches += old is not None
            if old is not None:
                old.close()
            self.durable_size = 0  # measured anew for the new writer
            self._published = []
            self._take()
        else:
            fresh.close()

    def snapshot(self) -> Snapshot:
        """The current snapshot (the last one while the writer is gone); 503 if none yet."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + WRITER_CHECK_S
            reader = self.reader
            self.alive = reader is not None and reader.writer_alive
            if not self.alive:
                self._look_for_successor(now)
            self._track_durable()
        snap = self._current()
        if snap.stale:
            # The writer that published it died and a restarted one recovered fewer leaves
            # (DESIGN.md §4): look for the new writer now rather than at the next period.
            snap = self.after_stale(now)
        return snap

    def _current(self) -> Snapshot:
        if self.alive and self.reader is not None:
            try:
                snap = self.reader.snapshot()
            except RotorError:
                snap = None
            if snap is not None:
                self.last = snap
                return snap
        if self.last is None:
            raise HTTPError(503, f"no snapshot of tree {self.name!r} yet (no writer has "
                                 "published it)")
        return self.last

    def after_stale(self, now: float) -> Snapshot:
        """The snapshot of a successor writer, or a 503 (retry) while it still recovers."""
        self.alive = False
        self._next_attach = 0.0
        self._look_for_successor(now)
        snap = self._current()
        if snap.stale:
            raise stale_error(snap.size)
        return snap


def stale_error(size: int) -> HTTPError:
    """The 503 for a snapshot a writer restart made stale: retry once the new writer is up."""
    return HTTPError(503, f"the tree of {size} leaves this worker held was superseded: its "
                          "writer died before those leaves were durable and a restarted "
                          "writer recovered fewer; retry shortly", [(b"retry-after", b"1")])


class _Inserter:
    """Forwards inserts to the writer daemon on a few threads, one `Client` each."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self._pool: ThreadPoolExecutor | None = None
        self._local = local()

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            from ..client import connect

            if self.directory is None:
                raise WriterUnavailable("the tree's directory is not known yet")
            client = connect(self.directory, timeout=10.0)
            self._local.client = client
        return client

    def _insert(self, data: bytes, durable: bool) -> tuple[int, int, bytes | None, bool | None]:
        try:
            client = self._client()
            seq, size, root = client.insert_many(data)
        except (WriterUnavailable, OSError):
            old = getattr(self._local, "client", None)
            self._local.client = None
            if old is not None:
                old.close()
            client = self._client()  # one retry on a fresh connection (writer restarted)
            seq, size, root = client.insert_many(data)
        done = client.wait_durable(seq, DURABLE_TIMEOUT_S) if durable else None
        return seq, size, root, done

    async def insert(self, data: bytes, durable: bool
                     ) -> tuple[int, int, bytes | None, bool | None]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(INSERT_THREADS, thread_name_prefix="rotorshm-insert")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._insert, data, durable)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _error_body(status: int, message: str) -> bytes:
    return json.dumps({"error": message, "status": status}).encode()


def _want_binary(scope: Scope) -> bool:
    for key, value in scope["headers"]:
        if key == b"accept":
            return _BINARY in value
    return False


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class ProofApp:
    """The ASGI application of one tree; create it with `create_app`."""

    def __init__(self, name: str, *, token: str | None = None,
                 max_body: int = DEFAULT_MAX_BODY) -> None:
        if max_body < NODE_SIZE:
            raise ValueError(f"max_body must be at least {NODE_SIZE} bytes, got {max_body}")
        self.name = name
        self.token = token.encode() if token else None
        self.max_body = max_body
        self.tree = _Tree(name)
        self.inserter = _Inserter(None)
        self.metrics: Metrics | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._worker = str(os.getpid()).encode()
        self._openapi: bytes | None = None
        self._get: dict[str, Callable[[Scope, list[str]], tuple[bytes, list[tuple[bytes, bytes]]]]]
        self._get = {"root": self._root, "proof": self._proof, "consistency": self._consistency,
                     "leaf": self._leaf, "tile": self._tile}

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.startup()
                except Exception as exc:  # noqa: BLE001 - reported to the server
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._flusher is not None:
                    self._flusher.cancel()
                self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def startup(self) -> None:
        """Per worker, after it started: attach the Reader, set up metrics."""
        self._worker = str(os.getpid()).encode()
        self.metrics = Metrics()
        self.tree.open()
        self._update_gauges()

    def shutdown(self) -> None:
        """Per worker, on the way out."""
        self.inserter.close()
        if self.metrics is not None:
            self._update_gauges()
            self.metrics.flush()
        self.tree.close()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._update_gauges()
            if self.metrics is not None:
                self.metrics.flush()

    def _update_gauges(self) -> None:
        if self.metrics is None:
            return
        tree = self.tree
        reader = tree.reader
        snap = tree.last
        self.metrics.set_tree(
            size=snap.size if snap is not None else 0,
            published_seq=_published_seq(reader) if reader is not None else None,
            durable_seq=reader.durable_seq if reader is not None else None,
            alive=tree.alive,
        )

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        path: str = scope["path"]
        method: str = scope["method"]
        endpoint = "unknown"
        headers: list[tuple[bytes, bytes]] = []
        status = 200
        try:
            parts = path.split("/")
            if len(parts) >= 3 and parts[1] == "v1":
                endpoint = parts[2]
                if endpoint == "leaves":
                    if method != "POST":
                        raise HTTPError(405, "use POST for /v1/leaves", [(b"allow", b"POST")])
                    body, headers = await self._leaves(scope, receive)
                else:
                    handler = self._get.get(endpoint)
                    if handler is None:
                        endpoint = "unknown"
                        raise HTTPError(404, f"no such endpoint: {path[:100]}")
                    if method not in ("GET", "HEAD"):
                        raise HTTPError(405, f"use GET for /v1/{endpoint}",
                                        [(b"allow", b"GET, HEAD")])
                    body, headers = handler(scope, parts[3:])
            elif path == "/healthz":
                endpoint = "healthz"
                status, body, headers = self._healthz()
            elif path == "/metrics":
                endpoint = "metrics"
                body, headers = self._metrics()
            elif path == "/openapi.json":
                endpoint = "openapi"
                body, headers = self._openapi_doc()
            elif path == "/checkpoint" or path.startswith("/tile/"):
                # tlog-shaped routes at the root, beside /v1 (issue 12): rotorshm/http/tlog.py
                from .tlog import handle as tlog_handle

                endpoint, body, headers = tlog_handle(self, path, method)
            else:
                raise HTTPError(404, f"no such endpoint: {path[:100]}")
        except _NotModified as exc:
            status, body, headers = 304, b"", exc.headers
        except StaleSnapshot as exc:  # went stale between the check and the read
            with contextlib.suppress(HTTPError, RotorError):
                self.tree.after_stale(time.monotonic())
            err = stale_error(exc.size)
            status = err.status
            body = _error_body(err.status, err.message)
            headers = [(b"content-type", _PROBLEM), *err.headers]
        except HTTPError as exc:
            status = exc.status
            body = _error_body(exc.status, exc.message)
            headers = [(b"content-type", _PROBLEM), *exc.headers]
        except Exception as exc:  # noqa: BLE001 - a bug must not take the worker down
            status = 500
            body = _error_body(500, f"internal error: {type(exc).__name__}: {exc}"[:300])
            headers = [(b"content-type", _PROBLEM)]
        if status != 304:
            headers.append((b"content-length", str(len(body)).encode()))
        headers.append((WORKER_HEADER.encode(), self._worker))
        if not self.tree.alive:
            headers.append((b"x-rotorshm-writer", b"gone"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
        if self.metrics is not None:
            self.metrics.observe(endpoint, status, time.perf_counter() - started)

    # -- reads ---------------------------------------------------------------------------------

    @staticmethod
    def _snap_headers(snap: Snapshot, content_type: bytes, size: int | None = None,
                      root: bytes | None = None) -> list[tuple[bytes, bytes]]:
        """Content type, and the size and root of the tree an answer is about."""
        if size is None:
            size, root = snap.size, snap.root
        return [(b"content-type", content_type),
                (b"x-rotorshm-size", str(size).encode()),
                (b"x-rotorshm-root", root.hex().encode() if root is not None else b"")]

    def _root(self, scope: Scope, rest: list[str]) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        if rest:
            raise HTTPError(404, "no such endpoint: /v1/root/...")
        snap = self.tree.snapshot()
        reader = self.tree.reader
        root = snap.root
        body = json.dumps({
            "size": snap.size,
            "root": root.hex() if root is not None else None,
            "arity": snap.arity,
            "depth": snap.depth,
            "epoch": reader.epoch if reader is not None else None,
            "published_seq": _published_seq(reader) if reader is not None else None,
            "durable_seq": reader.durable_seq if reader is not None else None,
            "durable_size": self.tree.durable_size,
            "writer_alive": self.tree.alive,
        }).encode()
        return body, self._snap_headers(snap, _JSON)

    def _proof(self, scope: Scope, rest: list[str]) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        if len(rest) != 1:
            raise HTTPError(404, "expected /v1/proof/{index}")
        index = _int(rest[0], "index")
        query = _query(scope)
        size_text = query.get("size")
        snap = self.tree.snapshot()
        size = snap.size if size_text is None else _int(size_text, "size", 1)
        if size > snap.size:
            raise HTTPError(404, f"size {size} is larger than the tree ({snap.size} leaves)")
        if index >= size:
            raise HTTPError(404, f"leaf {index} is not in a tree of {size} leaves")
        # The answer names the tree the proof is for: the snapshot, or its past `size`.
        arg = None if size == snap.size else size
        root = snap.root if arg is None else snap.root_at(size)
        assert root is not None
        if _want_binary(scope):
            return (inclusion_bytes(snap, index, arg),
                    self._snap_headers(snap, _BINARY, size, root))
        proof = snap.generate_proof(index, arg).to_json()
        body = (f'{{"size":{size},"root":"{root.hex()}","proof":{proof}}}').encode()
        return body, self._snap_headers(snap, _JSON, size, root)

    def _consistency(self, scope: Scope, rest: list[str]
                     ) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        if rest:
            raise HTTPError(404, "expected /v1/consistency?from=M&to=N")
        query = _query(scope)
        if "from" not in query:
            raise HTTPError(400, "missing query parameter 'from'")
        old = _int(query["from"], "from", 1)
        snap = self.tree.snapshot()
        new = snap.size if "to" not in query else _int(query["to"], "to", 1)
        if old > new:
            raise HTTPError(400, f"from ({old}) is larger than to ({new})")
        if new > snap.size:
            raise HTTPError(404, f"to ({new}) is larger than the tree ({snap.size} leaves)")
        proof = snap.generate_consistency_proof(old, new)
        root = proof.new_root  # the answer names the tree of `to` leaves
        if _want_binary(scope):
            return proof.to_bytes(), self._snap_headers(snap, _BINARY, new, root)
        body = f'{{"size":{new},"root":"{root.hex()}","proof":{proof.to_json()}}}'.encode()
        return body, self._snap_headers(snap, _JSON, new, root)

    def _leaf(self, scope: Scope, rest: list[str]) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        if len(rest) != 1:
            raise HTTPError(404, "expected /v1/leaf/{index}")
        index = _int(rest[0], "index")
        snap = self.tree.snapshot()
        if index >= snap.size:
            raise HTTPError(404, f"leaf {index} is not in a tree of {snap.size} leaves")
        leaf = snap.get_leaf(index)
        if _want_binary(scope):
            return leaf, self._snap_headers(snap, _BINARY)
        body = json.dumps({"index": index, "leaf": leaf.hex(), "size": snap.size}).encode()
        return body, self._snap_headers(snap, _JSON)

    def _tile(self, scope: Scope, rest: list[str]) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        width: int | None = None
        if len(rest) == 3 and rest[1].endswith(".p"):
            level_text, index_text, width_text = rest[0], rest[1][:-2], rest[2]
            width = _int(width_text, "width", 1)
            if width >= CHUNK_NODES:
                raise HTTPError(400, f"a partial tile has 1..{CHUNK_NODES - 1} nodes, not {width}")
        elif len(rest) == 2:
            level_text, index_text = rest
        else:
            raise HTTPError(404, "expected /v1/tile/{level}/{index} or "
                                 "/v1/tile/{level}/{index}.p/{width}")
        level = _int(level_text, "level")
        index = _int(index_text, "tile index")
        snap = self.tree.snapshot()
        length = snap.level_len(level)
        start = index * CHUNK_NODES
        count = CHUNK_NODES if width is None else width
        # Every node but the last of a level is immutable (DESIGN.md §1); at level 0 the last
        # leaf is final too.
        final = length if level == 0 else length - 1
        if width is None and start + count > final:
            have = max(min(length - start, CHUNK_NODES), 0)
            hint = (f"; it has {have} nodes so far: .../{index}.p/{have}"
                    if 0 < have < CHUNK_NODES else "")
            raise HTTPError(404, f"tile {index} of level {level} is not complete{hint}")
        if start + count > length:
            raise HTTPError(404, f"level {level} has {length} nodes, fewer than "
                                 f"{start + count}")
        data = b"".join(snap.get_node(level, i) for i in range(start, start + count))
        headers = self._snap_headers(snap, _BINARY)
        if width is None:
            # Immutable once durable: before that a writer crash may still replace leaves.
            durable = (start + count) * snap.arity ** level <= self.tree.durable_size
            etag = b'"' + blake3(data).hexdigest()[:32].encode() + b'"'
            headers += [(b"cache-control", TILE_CACHE.encode() if durable else b"no-cache"),
                        (b"etag", etag)]
            match = _header(scope, b"if-none-match")
            if match is not None and etag in [m.strip() for m in match.split(b",")]:
                raise _NotModified(headers)
        else:
            headers.append((b"cache-control", b"no-cache"))
        return data, headers

    def _healthz(self) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        snap = self.tree.last
        with contextlib.suppress(HTTPError):
            snap = self.tree.snapshot()
        ok = snap is not None
        body = json.dumps({
            "status": "ok" if ok else "no snapshot",
            "tree": self.name,
            "size": snap.size if snap is not None else None,
            "writer_alive": self.tree.alive,
            "epoch": self.tree.reader.epoch if self.tree.reader is not None else None,
            "worker": int(self._worker),
        }).encode()
        return (200 if ok else 503), body, [(b"content-type", _JSON),
                                            (b"cache-control", b"no-store")]

    def _metrics(self) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        if self.metrics is None:
            raise HTTPError(503, "metrics are not set up (no lifespan startup yet)")
        self._update_gauges()
        self.metrics.flush()
        body, content_type = self.metrics.render()
        return body, [(b"content-type", content_type.encode())]

    def _openapi_doc(self) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        if self._openapi is None:
            from .openapi import openapi

            self._openapi = json.dumps(openapi(self.name, self.max_body)).encode()
        return self._openapi, [(b"content-type", _JSON)]

    # -- writes --------------------------------------------------------------------------------

    def _check_token(self, scope: Scope) -> None:
        if self.token is None:
            raise HTTPError(403, "inserting over HTTP is disabled: the server has no token "
                                 "(start it with --token-file)")
        given = _header(scope, b"authorization") or b""
        scheme, _, credential = given.partition(b" ")
        ok = hmac.compare_digest(credential.strip(), self.token)
        if scheme.lower() != b"bearer" or not ok:
            raise HTTPError(401, "a valid 'Authorization: Bearer <token>' header is required",
                            [(b"www-authenticate", b'Bearer realm="rotorshm"')])

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                raise HTTPError(400, "malformed Content-Length")
            if int(declared) > self.max_body:
                raise HTTPError(413, f"body of {int(declared)} bytes is over the limit of "
                                     f"{self.max_body} bytes")
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HTTPError(400, "the client went away during the body")
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body:
                raise HTTPError(413, f"body over the limit of {self.max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    def _parse_leaves(content_type: bytes, body: bytes) -> bytes:
        if content_type.split(b";")[0].strip() == _JSON:
            try:
                obj = json.loads(body)
            except (ValueError, RecursionError):
                raise HTTPError(400, "the body is not valid JSON") from None
            leaves = obj.get("leaves") if isinstance(obj, dict) else None
            if not isinstance(leaves, list):
                raise HTTPError(400, 'expected {"leaves": ["<64 hex digits>", ...]}')
            out = bytearray()
            for i, item in enumerate(leaves):
                raw = None
                if isinstance(item, str) and len(item) == 2 * NODE_SIZE:
                    try:
                        raw = bytes.fromhex(item)
                    except ValueError:
                        raw = None
                if raw is None:
                    raise HTTPError(400, f"leaves[{i}] is not 64 hex digits: {str(item)[:80]!r}")
                out += raw
            data = bytes(out)
        else:
            data = body
            if len(data) % NODE_SIZE:
                raise HTTPError(400, f"a raw body must be whole 32-byte leaves; got {len(data)} "
                                     f"bytes ({len(data) % NODE_SIZE} too many)")
        if not data:
            raise HTTPError(400, "no leaves in the body")
        return data

    async def _leaves(self, scope: Scope, receive: Receive
                      ) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        self._check_token(scope)
        query = _query(scope)
        durable = query.get("durable", "0") not in ("0", "", "false")
        body = await self._read_body(scope, receive)
        data = self._parse_leaves(_header(scope, b"content-type") or _BINARY, body)
        if not self.tree.alive:
            self.tree.snapshot()  # refresh liveness (and follow a restarted writer)
        if not self.tree.alive:
            raise HTTPError(503, "the writer is not alive: inserts are refused",
                            [(b"retry-after", b"1")])
        reader = self.tree.reader
        if reader is not None:  # (a restarted writer may serve another directory)
            self.inserter.directory = _tree_directory(reader)
        try:
            seq, size, root, done = await self.inserter.insert(data, durable)
        except InvalidLeaf as exc:
            raise HTTPError(400, str(exc)) from None
        except CapacityExceeded as exc:
            raise HTTPError(409, str(exc)) from None
        except StorageFull as exc:
            raise HTTPError(507, str(exc)) from None
        except (WriterUnavailable, WriterGone, OSError) as exc:
            raise HTTPError(503, f"the writer is unavailable: {exc}",
                            [(b"retry-after", b"1")]) from None
        except IndexOutOfRange as exc:
            raise HTTPError(400, str(exc)) from None
        body = json.dumps({"seq": seq, "size": size,
                           "root": root.hex() if root is not None else None,
                           "inserted": len(data) // NODE_SIZE, "durable": done}).encode()
        return body, [(b"content-type", _JSON)]


class _NotModified(HTTPError):
    """304 for a tile whose ETag the client already has."""

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__(304, "not modified", headers)


def create_app(name: str, *, token: str | None = None, max_body: int = DEFAULT_MAX_BODY
               ) -> ProofApp:
    """The ASGI application serving tree `name`.

    `token`: the bearer token POST /v1/leaves requires; without one, inserting is refused
    (403). `max_body`: largest POST body accepted, in bytes (413 beyond). The Reader is
    attached at lifespan startup, in the worker process.
    """
    return ProofApp(name, token=token, max_body=max_body)


def app_from_env() -> ProofApp:
    """App factory for server workers: configuration from ROTORSHM_HTTP_* variables."""
    name = os.environ["ROTORSHM_HTTP_NAME"]
    token = None
    token_file = os.environ.get("ROTORSHM_HTTP_TOKEN_FILE")
    if token_file:
        with open(token_file, encoding="utf-8") as f:
            token = f.read().strip() or None
    max_body = int(os.environ.get("ROTORSHM_HTTP_MAX_BODY", DEFAULT_MAX_BODY))
    return create_app(name, token=token, max_body=max_body)
