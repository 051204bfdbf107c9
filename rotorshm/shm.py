"""The control block: one small POSIX shared-memory segment through which a writer publishes.

Layout (little-endian, every word naturally aligned; DESIGN.md §4):

    0     magic "RSHMCTL1"            8   layout version u32, arity u16, max_depth u16
    16    epoch u64                   24  writer pid u64
    32    heartbeat u64 (CLOCK_MONOTONIC ns, refreshed by the writer)
    40    state u64 (0 starting, 1 live, 2 stopped cleanly)
    48    pin_above_level u32, pad
    56    durable WAL sequence u64    64  durable futex word u32 (bumped on every advance)
    68    publish futex word u32 (bumped on every publication)
    72    directory path: length u32 + 1020 bytes utf-8
    1096  segment prefix: length u32 + 124 bytes
    1224  seqlock counter u64
    1232  published state, STATE_BYTES: size u64, WAL seq u64, level count u64, then
          per level (MAX_LEVELS slots): length u64, frontier hash [32]. Levels are
          interleaved so that a reader copies only the prefix a tree of its depth uses.
    4096  socket path: length u32 + 1020 bytes (length 0: DIR/writer.sock)
    5120  recovery note: length u32 + 1020 bytes utf-8 (what recovery dropped; 0: nothing)

Only the C helper touches the seqlock counter and the words under it, with the orderings
DESIGN.md §4 prescribes; Python only packs and parses private copies.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from collections.abc import Callable
from typing import NamedTuple

import posix_ipc

from ._native import ffi, lib
from .atomics import WAKE_ALL, SharedWords
from .config import check_tree_name
from .errors import AccessDenied, InvalidConfig, TreeLocked, WriterGone
from .segments import SEGMENT_PREFIX, SHM_DIR, unlink_segment

MAGIC = b"RSHMCTL1"
LAYOUT_VERSION = 2
MAX_LEVELS = 65
CTL_BYTES = 8192

OFF_VERSION = 8
OFF_EPOCH = 16
OFF_PID = 24
OFF_HEARTBEAT = 32
OFF_STATE = 40
OFF_PIN = 48
OFF_DURABLE = 56
OFF_DURABLE_FUTEX = 64
OFF_PUBLISH_FUTEX = 68
OFF_DIR = 72
DIR_MAX = 1020
OFF_PREFIX = 1096
PREFIX_MAX = 124
OFF_SEQLOCK = 1224
OFF_STATE_DATA = 1232
OFF_SOCKET = 4096
SOCKET_MAX = 1020
OFF_NOTE = 5120
NOTE_MAX = 1020
_STATE_HEAD = struct.Struct("<QQQ")
_LEVEL_BYTES = 8 + 32
STATE_BYTES = _STATE_HEAD.size + _LEVEL_BYTES * MAX_LEVELS

STATE_STARTING = 0
STATE_LIVE = 1
STATE_STOPPED = 2

HEARTBEAT_PERIOD = 0.1
HEARTBEAT_STALE_NS = 3_000_000_000
SPIN_RETRIES = 20_000

assert OFF_STATE_DATA + STATE_BYTES <= OFF_SOCKET
assert OFF_NOTE + 4 + NOTE_MAX <= CTL_BYTES


Check = Callable[[], bool]


def control_name(name: str) -> str:
    """POSIX name of the control block of tree `name`."""
    return f"/{SEGMENT_PREFIX}{name}.ctl"


def check_name(name: str) -> str:
    """Validate a tree name used in segment names (config.check_tree_name: one rule)."""
    return check_tree_name(name)


def published_names() -> list[str]:
    """Names of every tree with a control block in /dev/shm (live or left by a dead writer)."""
    head, tail = SEGMENT_PREFIX, ".ctl"
    try:
        entries = os.listdir(SHM_DIR)
    except OSError:
        return []
    out = []
    for e in sorted(entries):
        if e.startswith(head) and e.endswith(tail):
            name = e[len(head) : -len(tail)]
            try:
                out.append(check_tree_name(name))
            except InvalidConfig:
                continue
    return out


def names_publishing(directory: str) -> list[str]:
    """Names whose control block says it publishes the tree in `directory` (live first)."""
    want = os.path.realpath(directory)
    found: list[tuple[bool, str]] = []
    for name in published_names():
        try:
            block = ControlBlock.attach(name)
        except (WriterGone, AccessDenied):
            continue
        try:
            if os.path.realpath(block.directory) == want:
                found.append((not block.owner_alive(), name))
        finally:
            block.close()
    return [name for _, name in sorted(found)]


def pid_alive(pid: int) -> bool:
    """True if a process with `pid` exists (it may belong to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Published(NamedTuple):
    """One consistent copy of the published state (a tuple: it is built on the hot path)."""

    size: int
    seq: int
    lengths: tuple[int, ...]
    frontier: tuple[bytes, ...]


def _state_bytes(levels: int) -> int:
    """Bytes of published state covering `levels` levels."""
    return _STATE_HEAD.size + _LEVEL_BYTES * levels


# Per level count: the struct reading every level's length, and the frontier slices.
_LENGTHS = [struct.Struct("<" + "Q32x" * n) for n in range(MAX_LEVELS + 1)]
_FRONTIER_SLICES = [
    tuple(slice(_state_bytes(i) + 8, _state_bytes(i + 1)) for i in range(n))
    for n in range(MAX_LEVELS + 1)
]
_tuple_new = tuple.__new__
_SPARE_LEVELS = 2  # copied beyond the last level count seen, so growth rarely costs a re-read


class ControlBlock:
    """A mapped control block: created read-write by the writer, attached read-only by readers."""

    def __init__(self, name: str, mapping: mmap.mmap, writable: bool) -> None:
        self.name = name
        self._map = mapping
        self.writable = writable
        self.words = SharedWords(mapping)
        # Raw pointers for the hot seqlock read; the SharedWords export keeps them valid.
        base = ffi.from_buffer("char[]", mapping, require_writable=False)
        self._base = base
        self._counter_ptr = base + OFF_SEQLOCK
        self._state_ptr = base + OFF_STATE_DATA
        self._dst = ffi.new("char[]", STATE_BYTES)
        self._seq_out = ffi.new("uint64_t *")
        self._copy_bytes = _state_bytes(_SPARE_LEVELS)
        self._closed = False

    # -- creation and attachment -------------------------------------------------------------

    @classmethod
    def create(cls, name: str, *, arity: int, max_depth: int, epoch: int, directory: str,
               segment_prefix: str, pin_above_level: int, mode: int = 0o600,
               socket_path: str = "", note: str = "") -> ControlBlock:
        """Create and initialise the control block of tree `name`, replacing a stale one.

        A block whose writer is still alive (starting or live) is never replaced:
        TreeLocked. The magic is stored last, so a reader never trusts a half-built block.
        """
        seg_name = control_name(check_name(name))
        dir_b = os.fsencode(directory)
        pre_b = segment_prefix.encode()
        sock_b = os.fsencode(socket_path)
        note_b = note.encode()[:NOTE_MAX]
        if len(dir_b) > DIR_MAX or len(pre_b) > PREFIX_MAX or len(sock_b) > SOCKET_MAX:
            raise InvalidConfig("tree directory path, socket path or segment prefix too long")
        for _ in range(3):
            try:
                seg = posix_ipc.SharedMemory(seg_name, posix_ipc.O_CREX, mode=mode,
                                             size=CTL_BYTES)
                break
            except posix_ipc.ExistentialError:
                owner = ControlBlock.live_owner(name)
                if owner is not None:
                    raise TreeLocked(
                        f"tree name {name!r} is already published by a live writer (pid {owner})"
                    ) from None
                unlink_segment(seg_name)  # stale: its writer is gone
        else:
            raise TreeLocked(f"could not create {seg_name}: another writer keeps creating it")
        try:
            os.posix_fallocate(seg.fd, 0, CTL_BYTES)
            m = mmap.mmap(seg.fd, CTL_BYTES, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            seg.close_fd()
        struct.pack_into("<IHH", m, OFF_VERSION, LAYOUT_VERSION, arity, max_depth)
        struct.pack_into("<QQ", m, OFF_EPOCH, epoch, os.getpid())
        struct.pack_into("<I", m, OFF_PIN, min(pin_above_level, 2**32 - 1))
        struct.pack_into("<I", m, OFF_DIR, len(dir_b))
        m[OFF_DIR + 4 : OFF_DIR + 4 + len(dir_b)] = dir_b
        struct.pack_into("<I", m, OFF_PREFIX, len(pre_b))
        m[OFF_PREFIX + 4 : OFF_PREFIX + 4 + len(pre_b)] = pre_b
        struct.pack_into("<I", m, OFF_SOCKET, len(sock_b))
        m[OFF_SOCKET + 4 : OFF_SOCKET + 4 + len(sock_b)] = sock_b
        struct.pack_into("<I", m, OFF_NOTE, len(note_b))
        m[OFF_NOTE + 4 : OFF_NOTE + 4 + len(note_b)] = note_b
        block = cls(name, m, writable=True)
        block.beat()
        block.words.store_u64(0, int.from_bytes(MAGIC, "little"))  # release: fields first
        return block

    @classmethod
    def attach(cls, name: str) -> ControlBlock:
        """Map the control block of tree `name` read-only; WriterGone if there is none."""
        seg_name = control_name(check_name(name))
        try:
            seg = posix_ipc.SharedMemory(seg_name, read_only=True)
        except posix_ipc.ExistentialError:
            raise WriterGone(f"no writer publishes a tree named {name!r}") from None
        except posix_ipc.PermissionsError as exc:
            raise AccessDenied(f"no access to {seg_name}: {exc}") from None
        try:
            if os.fstat(seg.fd).st_size < CTL_BYTES:
                raise WriterGone(f"control block {seg_name} is still being created")
            m = mmap.mmap(seg.fd, CTL_BYTES, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            seg.close_fd()
        if struct.unpack_from("<Q", m, 0)[0] != int.from_bytes(MAGIC, "little"):
            m.close()
            raise WriterGone(f"{seg_name} is not a rotorshm control block")
        version = struct.unpack_from("<I", m, OFF_VERSION)[0]
        if version != LAYOUT_VERSION:
            m.close()
            raise WriterGone(f"{seg_name}: layout version {version}, expected {LAYOUT_VERSION}")
        return cls(name, m, writable=False)

    @staticmethod
    def live_owner(name: str) -> int | None:
        """Pid of a live writer publishing `name`, or None if the block is absent or stale."""
        try:
            block = ControlBlock.attach(name)
        except WriterGone:
            return None
        except AccessDenied:
            return -1  # a block we cannot read: treat as owned, never clobber it
        try:
            return block.pid if block.owner_alive() else None
        finally:
            block.close()

    # -- static fields ------------------------------------------------------------------------

    @property
    def arity(self) -> int:
        """Arity of the published tree."""
        return int(struct.unpack_from("<H", self._map, OFF_VERSION + 4)[0])

    @property
    def max_depth(self) -> int:
        """max_depth of the published tree."""
        return int(struct.unpack_from("<H", self._map, OFF_VERSION + 6)[0])

    @property
    def epoch(self) -> int:
        """Changes every time a writer starts."""
        return self.words.load_u64(OFF_EPOCH)

    @property
    def pid(self) -> int:
        """Process id of the writer."""
        return self.words.load_u64(OFF_PID)

    @property
    def pin_above_level(self) -> int:
        """Levels at or above this one live in shared-memory segments."""
        return self.words.load_u32(OFF_PIN)

    @property
    def directory(self) -> str:
        """The tree directory (shard files of file-tier levels live under it)."""
        n = struct.unpack_from("<I", self._map, OFF_DIR)[0]
        return os.fsdecode(self._map[OFF_DIR + 4 : OFF_DIR + 4 + n])

    @property
    def socket_path(self) -> str:
        """The writer's socket ('' if it is the default, DIR/writer.sock)."""
        n = min(struct.unpack_from("<I", self._map, OFF_SOCKET)[0], SOCKET_MAX)
        return os.fsdecode(self._map[OFF_SOCKET + 4 : OFF_SOCKET + 4 + n])

    @property
    def note(self) -> str:
        """What the writer's recovery dropped (a torn WAL tail), '' if nothing."""
        n = min(struct.unpack_from("<I", self._map, OFF_NOTE)[0], NOTE_MAX)
        return self._map[OFF_NOTE + 4 : OFF_NOTE + 4 + n].decode(errors="replace")

    @property
    def segment_prefix(self) -> str:
        """Prefix of the pinned levels' segment names for this epoch."""
        n = struct.unpack_from("<I", self._map, OFF_PREFIX)[0]
        return self._map[OFF_PREFIX + 4 : OFF_PREFIX + 4 + n].decode()

    # -- liveness -----------------------------------------------------------------------------

    @property
    def state(self) -> int:
        """STATE_STARTING, STATE_LIVE or STATE_STOPPED."""
        return self.words.load_u64(OFF_STATE)

    def set_state(self, state: int) -> None:
        """Writer: announce starting, live or stopped."""
        self.words.store_u64(OFF_STATE, state)
        self.words.fetch_add_u32(OFF_PUBLISH_FUTEX, 1)
        self.words.futex_wake_u32(OFF_PUBLISH_FUTEX, WAKE_ALL)

    def beat(self) -> None:
        """Writer: refresh the heartbeat."""
        self.words.store_u64(OFF_HEARTBEAT, time.monotonic_ns())

    def owner_alive(self) -> bool:
        """True while the writer that created the block runs (starting or live), not stopped."""
        if self._closed or self.state == STATE_STOPPED or not pid_alive(self.pid):
            return False
        return time.monotonic_ns() - self.words.load_u64(OFF_HEARTBEAT) < HEARTBEAT_STALE_NS

    def writer_alive(self) -> bool:
        """True while the writer is live: state, pid and a fresh heartbeat all agree."""
        if self._closed or self.state != STATE_LIVE:
            return False
        if not pid_alive(self.pid):
            return False
        return time.monotonic_ns() - self.words.load_u64(OFF_HEARTBEAT) < HEARTBEAT_STALE_NS

    # -- publication --------------------------------------------------------------------------

    def publish(self, size: int, seq: int, lengths: tuple[int, ...],
                frontier: tuple[bytes, ...]) -> None:
        """Writer: seqlock-publish a new state, then wake readers waiting for a change."""
        n = len(lengths)
        buf = bytearray(_state_bytes(n))
        _STATE_HEAD.pack_into(buf, 0, size, seq, n)
        for i, (length, node) in enumerate(zip(lengths, frontier, strict=True)):
            off = _state_bytes(i)
            struct.pack_into("<Q", buf, off, length)
            buf[off + 8 : off + _LEVEL_BYTES] = node
        self.words.seqlock_write(OFF_SEQLOCK, OFF_STATE_DATA, buf)
        self.words.fetch_add_u32(OFF_PUBLISH_FUTEX, 1)
        self.words.futex_wake_u32(OFF_PUBLISH_FUTEX, WAKE_ALL)

    def read_state(self, max_retries: int = SPIN_RETRIES) -> Published | None:
        """Reader: one consistent copy of the published state, or None if the writer is mid-write.

        Calls the C seqlock loop directly on preallocated buffers (this is the snapshot
        hot path); the copy is made with relaxed word loads inside the loop.
        """
        if self._closed:
            raise WriterGone(f"control block of {self.name!r} is closed")
        while True:
            nbytes = self._copy_bytes
            if lib.rs_seqlock_read(self._counter_ptr, self._state_ptr, self._dst, nbytes,
                                   max_retries, self._seq_out) != 0:
                return None
            data = ffi.buffer(self._dst, nbytes)[:]
            size, seq, n = _STATE_HEAD.unpack_from(data)
            if n > MAX_LEVELS:  # cannot happen with a consistent copy from a sane writer
                raise WriterGone(f"control block of {self.name!r} holds {n} levels")
            if _state_bytes(n) <= nbytes:
                # tuple.__new__ skips Published's Python-level __new__ (hot path).
                return _tuple_new(Published, (
                    size, seq, _LENGTHS[n].unpack_from(data, _STATE_HEAD.size),
                    tuple(map(data.__getitem__, _FRONTIER_SLICES[n])),
                ))
            # The tree grew deeper than our copy: copy more (the whole copy is redone, so
            # it stays one consistent seqlock read).
            self._copy_bytes = _state_bytes(min(n + _SPARE_LEVELS, MAX_LEVELS))

    # -- durability ---------------------------------------------------------------------------

    @property
    def durable_seq(self) -> int:
        """Highest WAL sequence known durable."""
        return self.words.load_u64(OFF_DURABLE)

    def set_durable(self, seq: int) -> None:
        """Writer: advance the durable sequence and wake every waiter."""
        self.words.store_u64(OFF_DURABLE, seq)
        self.words.fetch_add_u32(OFF_DURABLE_FUTEX, 1)
        self.words.futex_wake_u32(OFF_DURABLE_FUTEX, WAKE_ALL)

    def wait_durable(self, seq: int, timeout: float | None) -> bool:
        """Block (futex, no polling) until `seq` is durable; False on timeout or writer death."""
        return self._wait(OFF_DURABLE_FUTEX, lambda: self.durable_seq >= seq, timeout)

    def wait_change(self, check: Check, timeout: float | None) -> bool:
        """Block until `check()` is true, waking on every publication; False on timeout."""
        return self._wait(OFF_PUBLISH_FUTEX, check, timeout)

    def _wait(self, off: int, check: Check, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            word = self.words.load_u32(off)
            if check():
                return True
            if not self.writer_alive():
                return bool(check())
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            # Sleep in the kernel until the word moves; wake now and then to notice a
            # writer that died without waking us.
            slice_ = 0.5 if left is None else min(left, 0.5)
            self.words.futex_wait_u32(off, word, slice_)

    # -- teardown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Unmap (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.words.release()
        ffi.release(self._base)
        self._map.close()

    def unlink(self) -> None:
        """Writer: remove the name (mapped readers keep their view)."""
        unlink_segment(control_name(self.name))

