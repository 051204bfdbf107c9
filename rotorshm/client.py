"""Clients: submit leaves to a writer daemon over its Unix socket and wait for durability."""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
from types import TracebackType

from .errors import (
    AccessDenied,
    IndexOutOfRange,
    InvalidArgument,
    ProtocolError,
    TreeClosed,
    WriterGone,
    WriterUnavailable,
)
from .protocol import (
    OK_BODY,
    OP_ERROR,
    OP_HELLO,
    OP_INSERT,
    OP_OK,
    OP_SYNC,
    SEQ_BODY,
    error_from,
    reachable_path,
    recv_frame,
    send_frame,
)
from .shm import ControlBlock
from .snapshot import as_index
from .tree import BytesLike, Leaves, batch_bytes, leaf_bytes
from .writer import default_socket

MAX_SEQ = 2**64 - 1


class Client:
    """A connection to a writer daemon; one request at a time (use one client per thread)."""

    def __init__(self, sock: socket.socket, path: str) -> None:
        self.path = path
        self._sock: socket.socket | None = sock
        frame = self._recv()
        if frame[0] != OP_HELLO:
            raise ProtocolError(f"expected HELLO from the daemon, got op 0x{frame[0]:02x}")
        try:
            info = json.loads(frame[1])
            self.name: str = info["name"]
            self.epoch: int = info["epoch"]
            self.arity: int = info["arity"]
            self.writer_pid: int = info["pid"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ProtocolError(f"malformed HELLO: {exc}") from None
        self._ctl: ControlBlock | None = None

    def _recv(self) -> tuple[int, bytes]:
        if self._sock is None:
            raise TreeClosed("client is closed")
        try:
            frame = recv_frame(self._sock)
        except OSError as exc:
            raise WriterUnavailable(f"{self.path}: connection lost: {exc}") from None
        if frame is None:
            raise WriterUnavailable(f"{self.path}: the writer closed the connection")
        return frame

    def _send(self, op: int, payload: bytes) -> None:
        if self._sock is None:
            raise TreeClosed("client is closed")
        try:
            send_frame(self._sock, op, payload)
        except OSError as exc:
            raise WriterUnavailable(f"{self.path}: connection lost: {exc}") from None

    def insert(self, leaf: BytesLike) -> tuple[int, int, bytes]:
        """Submit one leaf; return (WAL sequence, size after it, root at that size)."""
        seq, size, root = self._insert(leaf_bytes(leaf))
        assert root is not None  # a tree with the new leaf in it has a root
        return seq, size, root

    def insert_many(self, leaves: Leaves) -> tuple[int, int, bytes | None]:
        """Submit a batch atomically; return (WAL sequence, size after it, root at that size).

        An empty batch changes nothing and reports the tree as it is (root None when empty),
        as LeanIMT.insert_many([]) does.
        """
        return self._insert(batch_bytes(leaves))

    def _insert(self, data: bytes) -> tuple[int, int, bytes | None]:
        self._send(OP_INSERT, data)
        op, body = self._recv()
        if op == OP_OK and len(body) == OK_BODY.size:
            seq, size, root = OK_BODY.unpack(body)
            return seq, size, (root if size else None)
        if op == OP_ERROR and body:
            raise error_from(body[0], body[1:].decode(errors="replace"))
        raise ProtocolError(f"unexpected reply op 0x{op:02x} ({len(body)} bytes)")

    def _control(self) -> ControlBlock:
        if self._ctl is None:
            ctl = ControlBlock.attach(self.name)
            if ctl.epoch != self.epoch:
                # Another writer publishes the name now: its sequence numbers say nothing
                # about the records the writer we talked to acknowledged.
                ctl.close()
                raise WriterGone(
                    f"the writer of {self.name!r} that this client connected to (epoch "
                    f"{self.epoch:#x}) is gone; a new writer publishes the tree now"
                )
            self._ctl = ctl
        return self._ctl

    def wait_durable(self, seq: int, timeout: float | None = None) -> bool:
        """Block until WAL record `seq` is durable; False on timeout or if the writer died.

        Asks the daemon for an immediate fsync, then sleeps on the shared durable word
        (a futex) instead of polling. StorePoisoned if the daemon lost durability (a sync
        failed) before `seq` was durable; WriterGone if the writer this client connected
        to was replaced before the first wait.
        """
        seq = as_index(seq, "seq")
        if not 0 <= seq <= MAX_SEQ:
            raise IndexOutOfRange(f"seq must be in 0..{MAX_SEQ}, got {seq}")
        if timeout is not None and (isinstance(timeout, bool)
                                    or not isinstance(timeout, (int, float))):
            raise InvalidArgument(f"timeout must be None or seconds, got {timeout!r:.40}")
        if timeout is not None and not timeout >= 0:
            raise InvalidArgument(f"timeout must be None or >= 0 seconds, got {timeout!r}")
        if timeout is not None and math.isinf(timeout):
            timeout = None
        ctl = self._control()
        if ctl.durable_seq >= seq:
            return True
        # If the writer died, the shared durable word still tells what was made durable.
        with contextlib.suppress(WriterUnavailable):
            self._send(OP_SYNC, SEQ_BODY.pack(seq))
        return ctl.wait_durable(seq, timeout)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def connect(target: str | os.PathLike[str], timeout: float | None = 10.0) -> Client:
    """Connect to the daemon of a tree directory (or directly to its socket path)."""
    path = os.fspath(target)
    if os.path.isdir(path):
        path = default_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with reachable_path(path) as address:
            sock.connect(address)
    except PermissionError as exc:
        sock.close()
        raise AccessDenied(f"{path}: permission denied: {exc}") from None
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise WriterUnavailable(f"{path}: no writer daemon is listening ({exc})") from None
    except OSError as exc:
        sock.close()
        raise WriterUnavailable(f"{path}: cannot connect: {exc}") from None
    sock.settimeout(None)
    return Client(sock, path)
