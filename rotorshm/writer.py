"""The writer daemon: owns a RotorTree, publishes it in shared memory, serves clients.

Threads: the accept loop (the caller's thread), one thread per client connection, one
ingest thread that coalesces every pending batch into one WAL write and one tree update,
the RotorTree's flusher (group commit), and a heartbeat. Publication happens after each
applied group, under the tree's ingest lock, so published states follow WAL order.

If the tree is poisoned (a sync failed, see durable_io), the daemon stays up for its
readers but refuses every insert with StorePoisoned, and flags the control block so that
every client waiting for durability gets StorePoisoned too; restarting it recovers from
the WAL. Its shutdown then ends with StorePoisoned (a non-zero exit from `serve`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable

from .config import RotorTreeConfig
from .errors import (
    CapacityExceeded,
    InvalidLeaf,
    ProtocolError,
    RotorError,
    StorePoisoned,
    TreeClosed,
    TreeLocked,
)
from .hashing import NODE_SIZE
from .protocol import (
    OK_BODY,
    OP_ERROR,
    OP_HELLO,
    OP_INSERT,
    OP_OK,
    OP_SYNC,
    ZERO_ROOT,
    check_socket_path,
    error_code,
    reachable_path,
    recv_frame,
    send_frame,
)
from .shm import HEARTBEAT_PERIOD, STATE_LIVE, STATE_STOPPED, ControlBlock, check_name
from .store import RotorTree, default_name

_log = logging.getLogger("rotorshm")

SOCKET_NAME = "writer.sock"
MAX_GROUP_BYTES = 64 << 20


def default_socket(path: str | os.PathLike[str]) -> str:
    """The daemon socket of a tree directory."""
    return os.path.join(os.fspath(path), SOCKET_NAME)


class _Pending:
    """One client batch waiting for the ingest thread."""

    __slots__ = ("data", "done", "result", "error")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.done = threading.Event()
        self.result: tuple[int, int, bytes] | None = None
        self.error: BaseException | None = None


class WriterDaemon:
    """A running writer: create with `start()`, run `serve_forever()`, end with `stop()`."""

    def __init__(self, config: RotorTreeConfig, name: str | None = None,
                 socket_path: str | None = None, socket_mode: int = 0o600) -> None:
        if name is None:
            name = config.name or default_name(os.fspath(config.path))
        self.name = check_name(name)
        self.config = dataclasses.replace(config, name=self.name)
        if socket_path is None:
            socket_path = default_socket(config.path)
        # A socket inside the tree directory may name a directory start() will create.
        in_tree = (os.path.realpath(os.path.dirname(socket_path) or ".")
                   == os.path.realpath(config.path))
        self.socket_path = check_socket_path(socket_path, parent_will_exist=in_tree)
        self.failure: BaseException | None = None  # why the daemon stopped on its own
        self.socket_mode = socket_mode
        self.tree: RotorTree | None = None
        self.control: ControlBlock | None = None
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._queue: list[_Pending] = []
        self._queue_cv = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Open and recover the tree, create the control block and the socket."""
        owner = ControlBlock.live_owner(self.name)
        if owner is not None:
            raise TreeLocked(
                f"tree name {self.name!r} is already published by a live writer (pid {owner})"
            )
        tree = RotorTree.open(self.config)  # TreeLocked if another writer owns the directory
        self.tree = tree
        try:
            ctl = ControlBlock.create(
                self.name, arity=tree.arity, max_depth=tree.core.max_depth, epoch=tree.epoch,
                directory=os.path.abspath(tree.path), segment_prefix=tree.segment_prefix,
                pin_above_level=self.config.tiering.pin_above_level,
                socket_path=os.path.abspath(self.socket_path), note=tree.recovery_note,
            )
            self.control = ctl
            core = tree.core
            ctl.publish(core.size, tree.written_seq, core.lengths, core.frontier)
            ctl.set_durable(tree.durable_seq)
            tree.add_apply_hook(self._publish)
            tree.add_durable_hook(ctl.set_durable)
            tree.add_poison_hook(self._poisoned)
            self._listener = self._bind()
            ctl.set_state(STATE_LIVE)
        except BaseException:
            self._teardown()
            raise
        for target, label in ((self._ingest_loop, "ingest"), (self._heartbeat_loop, "heartbeat")):
            t = threading.Thread(target=target, name=f"rotorshm-{label}", daemon=True)
            t.start()
            self._threads.append(t)

    def _bind(self) -> socket.socket:
        # We hold the directory lock, so a socket file left here belongs to a dead writer.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o777 & ~self.socket_mode)  # never visible with wider mode
        try:
            with reachable_path(self.socket_path) as address:
                sock.bind(address)
        finally:
            os.umask(old_umask)
        os.chmod(self.socket_path, self.socket_mode)
        sock.listen(128)
        sock.settimeout(0.1)
        return sock

    def _publish(self, tree: RotorTree) -> None:
        assert self.control is not None
        size, lengths, frontier = tree.core.state
        self.control.publish(size, tree.written_seq, lengths, frontier)

    def _poisoned(self, err: StorePoisoned) -> None:
        ctl = self.control
        if ctl is not None:
            ctl.set_durability_lost(str(err))
        with contextlib.suppress(OSError, ValueError):
            print(f"rotorshm serve {self.name}: {err}", file=sys.stderr, flush=True)

    def serve_forever(self, ready: Callable[[WriterDaemon], None] | None = None) -> None:
        """Accept clients until stop() (or SIGTERM/SIGINT when run in the main thread)."""
        assert self._listener is not None
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self._stop.set())
        if ready is not None:
            ready(self)
        try:
            while not self._stop.is_set():
                try:
                    conn, _ = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    if self._stop.is_set():
                        break
                    raise
                conn.settimeout(None)
                with self._conns_lock:
                    self._conns.add(conn)
                t = threading.Thread(target=self._serve_client, args=(conn,), daemon=True,
                                     name="rotorshm-client")
                t.start()
        finally:
            self.shutdown()

    def stop(self) -> None:
        """Ask serve_forever() to return (thread-safe, idempotent)."""
        self._stop.set()

    def shutdown(self) -> None:
        """Stop accepting, finish queued batches, flush/checkpoint, unlink segments and socket."""
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
        with self._queue_cv:
            self._queue_cv.notify_all()
        for t in self._threads:
            t.join()
        self._threads.clear()
        with self._conns_lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        self._teardown()

    def _teardown(self) -> None:
        ctl, self.control = self.control, None
        try:
            if self.tree is not None:
                self.tree.close()
        finally:
            if ctl is not None:
                ctl.set_state(STATE_STOPPED)
                ctl.unlink()
                ctl.close()

    # -- client connections ---------------------------------------------------------------------

    def _serve_client(self, conn: socket.socket) -> None:
        tree, ctl = self.tree, self.control
        assert tree is not None and ctl is not None
        try:
            hello = json.dumps({
                "name": self.name, "epoch": ctl.epoch, "arity": tree.arity,
                "max_depth": tree.core.max_depth, "pid": os.getpid(),
            }).encode()
            send_frame(conn, OP_HELLO, hello)
            while not self._stop.is_set():
                frame = recv_frame(conn)
                if frame is None:
                    return
                op, body = frame
                if op == OP_SYNC:
                    self._sync(tree)
                    continue
                if op != OP_INSERT:
                    raise ProtocolError(f"unknown op 0x{op:02x}")
                self._reply(conn, self._submit(body))
        except (OSError, RotorError):
            return
        finally:
            with self._conns_lock:
                self._conns.discard(conn)
            conn.close()

    def _sync(self, tree: RotorTree) -> None:
        """A client waits for durability: sync now, whatever the flush policy.

        Under the interval policy the flusher is asked to sync at once; under the manual
        policy nothing would ever sync, so the client's request is the flush() call.
        """
        if self.config.flush_policy.kind == "manual":
            with contextlib.suppress(TreeClosed):
                tree.flush()
        else:
            tree.request_sync()

    def _submit(self, data: bytes) -> _Pending:
        item = _Pending(data)
        if len(data) % NODE_SIZE:
            item.error = InvalidLeaf(
                f"a batch must be a multiple of {NODE_SIZE} bytes, got {len(data)}"
            )
            return item
        # An empty batch goes through the queue too: the ingest thread, the only writer,
        # answers it with a consistent (seq, size, root) of the tree as it is then.
        with self._queue_cv:
            if self._stop.is_set():
                item.error = TreeClosed("the writer is shutting down")
                return item
            self._queue.append(item)
            self._queue_cv.notify()
        item.done.wait()
        return item

    @staticmethod
    def _reply(conn: socket.socket, item: _Pending) -> None:
        if item.error is not None:
            msg = str(item.error).encode()[:4096]
            send_frame(conn, OP_ERROR, bytes((error_code(item.error),)) + msg)
        else:
            assert item.result is not None
            send_frame(conn, OP_OK, OK_BODY.pack(*item.result))

    # -- ingest -------------------------------------------------------------------------------

    def _ingest_loop(self) -> None:
        while True:
            with self._queue_cv:
                while not self._queue and not self._stop.is_set():
                    self._queue_cv.wait()
                if not self._queue:
                    return
                group: list[_Pending] = []
                nbytes = 0
                while self._queue and (not group or nbytes + len(self._queue[0].data)
                                       <= MAX_GROUP_BYTES):
                    item = self._queue.pop(0)
                    group.append(item)
                    nbytes += len(item.data)
            self._apply_group(group)

    def _apply_group(self, group: list[_Pending]) -> None:
        tree = self.tree
        assert tree is not None
        accepted: list[_Pending] = []
        empty: list[_Pending] = []
        room = tree.core.capacity - tree.core.size
        for item in group:
            n = len(item.data) // NODE_SIZE
            if n == 0:
                empty.append(item)
            elif n > room:
                item.error = CapacityExceeded(
                    f"{n} leaves do not fit: {room} left of capacity {tree.core.capacity}"
                )
            else:
                accepted.append(item)
                room -= n
        try:
            if accepted:
                results = tree.insert_group([i.data for i in accepted])
                snap = tree.core.snapshot()
                for item, (seq, size) in zip(accepted, results, strict=True):
                    root = snap.root_at(size) if size != snap.size else snap.root
                    assert root is not None
                    item.result = (seq, size, root)
        except Exception as exc:  # noqa: BLE001 - every waiting client must hear about it
            for item in accepted:
                item.error = exc
        if empty:  # a no-op, as LeanIMT.insert_many([]): report the tree as it is
            size, root = tree.core.size, tree.core.root
            for item in empty:
                item.result = (tree.written_seq, size, root if root is not None else ZERO_ROOT)
        for item in group:
            item.done.set()

    def _heartbeat_loop(self) -> None:
        ctl, tree = self.control, self.tree
        while not self._stop.wait(HEARTBEAT_PERIOD):
            if ctl is None:
                return
            if tree is not None and tree.flush_error is not None:
                # Nothing can become durable any more: stop rather than keep acknowledging
                # inserts that no flush will ever make durable.
                self.failure = tree.flush_error
                _log.error("the WAL flusher stopped: %s; shutting down", tree.flush_error)
                self._stop.set()
                return
            ctl.beat()


def serve(config: RotorTreeConfig, name: str | None = None, socket_path: str | None = None,
          ready: Callable[[WriterDaemon], None] | None = None) -> None:
    """Run a writer daemon in this process until SIGTERM/SIGINT (or its stop()).

    Raises RotorError if the daemon had to stop on its own (its WAL flusher failed).
    """
    daemon = WriterDaemon(config, name=name, socket_path=socket_path)
    daemon.start()
    daemon.serve_forever(ready)
    if daemon.failure is not None:
        raise RotorError(f"the writer stopped: its WAL flusher failed: {daemon.failure}")
