"""Framing of the writer daemon's Unix-socket protocol.

Every frame is `length u32 | op u8 | payload` (length counts the payload only). A client
sends INSERT (leaves) and gets OK (seq u64, size u64, root 32) or ERROR (code u8,
message); SYNC (seq u64) asks for an immediate fsync and gets no reply. On connect the
daemon sends HELLO (JSON: tree name, epoch, arity, max_depth, pid).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import (
    CapacityExceeded,
    InvalidConfig,
    InvalidLeaf,
    ProtocolError,
    RotorError,
    StorageFull,
    StorePoisoned,
    TreeClosed,
    WriterUnavailable,
)

FRAME = struct.Struct("<IB")
OK_BODY = struct.Struct("<QQ32s")
#: Root field of an OK reply for an empty tree (size 0); clients read it as None.
ZERO_ROOT = bytes(32)
SEQ_BODY = struct.Struct("<Q")
MAX_FRAME = 64 << 20

OP_HELLO = 0x01
OP_INSERT = 0x02
OP_SYNC = 0x03
OP_OK = 0x10
OP_ERROR = 0x11

_ERROR_CODES: list[type[RotorError]] = [
    RotorError, InvalidLeaf, CapacityExceeded, StorageFull, TreeClosed, ProtocolError,
    StorePoisoned,  # append new codes at the end: the numbers are on the wire
]


def error_code(exc: BaseException) -> int:
    """Wire code of an exception (most specific known class)."""
    for code in range(len(_ERROR_CODES) - 1, 0, -1):
        if isinstance(exc, _ERROR_CODES[code]):
            return code
    return 0


def error_from(code: int, message: str) -> RotorError:
    """Rebuild the exception a daemon reported."""
    cls = _ERROR_CODES[code] if 0 <= code < len(_ERROR_CODES) else RotorError
    if cls is StorageFull:
        return StorageFull(28, message)
    return cls(message)


SUN_PATH_MAX = 100  # sockaddr_un holds 108 bytes; keep a margin
_PROC_FD_HEAD = len(b"/proc/self/fd/2147483647/")


def check_socket_path(path: str, parent_will_exist: bool = False) -> str:
    """Return `path` if a Unix socket can be bound there, else raise InvalidConfig.

    Checked before anything is created: the path must be non-empty, its directory must
    exist (unless `parent_will_exist`, for DIR/writer.sock of a tree still to be created),
    it must not be a directory, and it must fit a socket address directly or through
    /proc/self/fd (see reachable_path).
    """
    if not isinstance(path, str) or not path or "\0" in path:
        raise InvalidConfig(f"socket path must be a non-empty path, got {path!r:.100}")
    raw = os.fsencode(path)
    parent = os.path.dirname(path) or "."
    if not parent_will_exist and not os.path.isdir(parent):
        raise InvalidConfig(f"socket path {path}: directory {parent} does not exist")
    if os.path.isdir(path):
        raise InvalidConfig(f"socket path {path}: is a directory")
    base = os.path.basename(raw)
    if len(raw) > SUN_PATH_MAX and (_PROC_FD_HEAD + len(base) > SUN_PATH_MAX
                                    or not os.path.isdir("/proc/self/fd")):
        raise InvalidConfig(
            f"socket path too long for a Unix socket ({len(raw)} bytes): use at most "
            f"{SUN_PATH_MAX} bytes, or a file name of at most {SUN_PATH_MAX - _PROC_FD_HEAD} "
            f"bytes in a deeper directory"
        )
    return path


@contextmanager
def reachable_path(path: str) -> Iterator[str]:
    """`path`, or an equivalent short enough for a Unix socket address.

    A deep directory can make DIR/writer.sock longer than sockaddr_un allows; on Linux
    the directory is then reached through /proc/self/fd/<fd>, which the kernel resolves
    while binding or connecting.
    """
    if len(os.fsencode(path)) <= SUN_PATH_MAX or not os.path.isdir("/proc/self/fd"):
        yield path
        return
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{os.path.basename(path)}"
    finally:
        os.close(fd)


def send_frame(sock: socket.socket, op: int, payload: bytes = b"") -> None:
    """Send one frame (header and payload in one call where possible)."""
    if len(payload) <= 65536:
        sock.sendall(FRAME.pack(len(payload), op) + payload)
    else:
        sock.sendall(FRAME.pack(len(payload), op))
        sock.sendall(payload)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            return None
        got += k
    return bytes(buf)


def recv_frame(sock: socket.socket) -> tuple[int, bytes] | None:
    """Receive one frame; None on a clean EOF before its first byte."""
    head = _recv_exact(sock, FRAME.size)
    if head is None:
        return None
    length, op = FRAME.unpack(head)
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")
    body = _recv_exact(sock, length) if length else b""
    if body is None:
        raise WriterUnavailable("connection closed in the middle of a frame")
    return op, body
