"""The control block: one small POSIX shared-memory segment through which a writer publishes.

Layout (little-endian, every word naturally aligned; DESIGN.md §4):

    0     magic "RSHMCTL1"            8   layout version u32, arity u16, max_depth u16
    16    epoch u64                   24  writer pid u64
    32    heartbeat u64 (CLOCK_MONOTONIC ns, refreshed by the writer)
    40    state u64 (0 starting, 1 live, 2 stopped cleanly)
    48    pin_above_level u32         52  flags u32 (bit 0: durability lost, see below)
    56    durable WAL sequence u64    64  durable futex word u32 (bumped on every advance)
    68    publish futex word u32 (bumped on every publication)
    72    directory path: length u32 + 1020 bytes utf-8
    1096  segment prefix: length u32 + 124 bytes
    1224  seqlock counter u64
    1232  published state, STATE_BYTES: size u64, WAL seq u64, level count u64, then
          per level (MAX_LEVELS slots): length u64, frontier hash [32]. Levels are
          interleaved so that a reader copies only the prefix a tree of its depth uses.
    4088  epoch guard u64: 0 while this epoch is current; 1 + the size a restarted writer
          recovered once it superseded this block (see EpochGuard)
    4096  socket path: length u32 + 1020 bytes (length 0: DIR/writer.sock)
    5120  note: length u32 + 1020 bytes utf-8 (what recovery dropped, and why durability
          was lost if it was; 0: nothing)

Only the C helper touches the seqlock counter and the words under it, with the orderings
DESIGN.md §4 prescribes; Python only packs and parses private copies.

The durable sequence only grows. If the writer's store is poisoned (a failed sync), it
sets the durability-lost flag and wakes the durable futex: waiters for a sequence that
is not durable yet get StorePoisoned instead of sleeping forever.

Threads: a ControlBlock may be used from several threads at once. Every call that reads
the mapping counts itself in-flight, and `close()` waits for in-flight calls to leave
before it unmaps (long futex waits notice a pending close within one slice).
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

import posix_ipc

from ._native import ffi, lib
from .atomics import WAKE_ALL, SharedWords
from .config import check_tree_name
from .durable_io import fallocate_segment
from .errors import (
    AccessDenied,
    InvalidConfig,
    StaleSnapshot,
    StorePoisoned,
    TreeLocked,
    WriterGone,
)
from .segments import SEGMENT_PREFIX, SHM_DIR, unlink_segment

MAGIC = b"RSHMCTL1"
LAYOUT_VERSION = 4  # 3: flags word (durability lost), socket path, recovery note; 4: guard
MAX_LEVELS = 65
CTL_BYTES = 8192

OFF_VERSION = 8
OFF_EPOCH = 16
OFF_PID = 24
OFF_HEARTBEAT = 32
OFF_STATE = 40
OFF_PIN = 48
OFF_FLAGS = 52
OFF_DURABLE = 56
OFF_DURABLE_FUTEX = 64
OFF_PUBLISH_FUTEX = 68
OFF_DIR = 72
DIR_MAX = 1020
OFF_PREFIX = 1096
PREFIX_MAX = 124
OFF_SEQLOCK = 1224
OFF_STATE_DATA = 1232
OFF_GUARD = 4088
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

FLAG_DURABILITY_LOST = 1

HEARTBEAT_PERIOD = 0.1
HEARTBEAT_STALE_NS = 3_000_000_000
SPIN_RETRIES = 20_000

assert OFF_STATE_DATA + STATE_BYTES <= OFF_GUARD and OFF_GUARD + 8 <= OFF_SOCKET
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


# Per level count: the struct reading every level's (length, frontier node) pair.
_LEVELS = [struct.Struct("<" + "Q32s" * n) for n in range(MAX_LEVELS + 1)]
_tuple_new = tuple.__new__
# Output buffers that C overwrites entirely before Python reads them: skip zeroing.
_alloc_uncleared = ffi.new_allocator(should_clear_after_alloc=False)
_SPARE_LEVELS = 2  # copied beyond the last level count seen, so growth rarely costs a re-read


class EpochGuard:
    """A reader's handle on one epoch's guard word: has a restarted writer superseded it?

    Readers trust that nodes below a level's published length never change. That holds
    while the epoch lasts; a writer that restarts after a crash and recovers fewer leaves
    than its predecessor published rewrites the nodes past the recovered size, in place
    in the shard files. Before it writes anything it marks its predecessor's control block
    (`supersede`): the guard word becomes 1 + the recovered size. Every proof checks the
    word after gathering (in C, acquire fence then load: the seqlock pattern), and a
    snapshot larger than the recovered size raises StaleSnapshot instead of returning data.

    The guard maps the block a second time, read-only, and keeps that mapping for as long
    as a snapshot (or its C view) refers to it, so a Reader's reattach() or close(), which
    unmap the block itself, never leave a snapshot pointing at unmapped memory.
    """

    __slots__ = ("name", "word", "_map", "_buf")

    def __init__(self, name: str, mapping: mmap.mmap) -> None:
        self.name = name
        self._map = mapping
        self._buf = ffi.from_buffer("char[]", mapping, require_writable=False)
        self.word = ffi.cast("const uint64_t *", self._buf + OFF_GUARD)

    def recovered_size(self) -> int | None:
        """The size a restarted writer recovered, or None while the epoch is current."""
        w = int(lib.rs_load_acquire_u64(self.word))
        return None if w == 0 else w - 1

    def stale(self, size: int) -> bool:
        """True if a snapshot of `size` leaves reaches past what a restarted writer recovered."""
        return bool(lib.rs_guard_stale(self.word, size))

    def check(self, size: int) -> None:
        """Raise StaleSnapshot if stale(size) (call after reading the nodes, not before)."""
        if lib.rs_guard_stale(self.word, size):
            raise self.error(size)

    def error(self, size: int) -> StaleSnapshot:
        """The StaleSnapshot for a snapshot of `size` leaves."""
        got = self.recovered_size()
        rec = size if got is None else got
        return StaleSnapshot(
            f"stale snapshot of {size} leaves: the writer of {self.name!r} that published it "
            f"died before leaves {rec}..{size - 1} were durable, and a restarted writer "
            f"recovered {rec} leaves and may have replaced the rest; take a new snapshot "
            f"after Reader.reattach() (snapshots of up to {rec} leaves stay valid)",
            size, rec,
        )


def supersede(directory: str, recovered_size: int) -> list[str]:
    """Mark every control block publishing `directory` as superseded at `recovered_size`.

    Called by a writer that holds the directory's lock, after it knows what recovery will
    keep and before it writes any node: every block naming the directory then belongs to a
    writer that is gone (a killed writer cannot unlink its block). The mark only ever
    lowers a block's recovered size (a second restart never revives a stale snapshot).
    Returns the names marked; a block this process may not write is skipped with a warning.
    """
    import logging

    marked = []
    for name in names_publishing(directory):
        seg_name = control_name(name)
        try:
            seg = posix_ipc.SharedMemory(seg_name)
        except posix_ipc.ExistentialError:
            continue
        except posix_ipc.PermissionsError as exc:
            logging.getLogger("rotorshm").warning(
                "cannot mark %s superseded (%s): snapshots its readers hold over leaves "
                "past %d may serve replaced data", seg_name, exc, recovered_size)
            continue
        try:
            if os.fstat(seg.fd).st_size < CTL_BYTES:
                continue
            m = mmap.mmap(seg.fd, CTL_BYTES, mmap.MAP_SHARED,
                          mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            seg.close_fd()
        try:
            buf = ffi.from_buffer("char[]", m)
            try:
                lib.rs_guard_mark(buf + OFF_GUARD, recovered_size)
            finally:
                ffi.release(buf)
        finally:
            m.close()
        marked.append(name)
    return marked


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
        self._copy_bytes = _state_bytes(_SPARE_LEVELS)
        self._closed = False
        self._closing = False
        self._users = 0  # calls in flight on the mapping (close() waits for them)
        self._users_lock = threading.Lock()
        self._users_cv = threading.Condition(self._users_lock)
        self._tls = threading.local()  # per-thread seqlock output buffers (_read_state)
        self._durable_lock = threading.Lock()  # writer: durable publications in order
        self.guard: EpochGuard | None = None  # readers: this epoch's guard (attach)

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
            fallocate_segment(seg.fd, CTL_BYTES, seg_name)
            m = mmap.mmap(seg.fd, CTL_BYTES, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            unlink_segment(seg_name)  # e.g. /dev/shm is full: never leave a half-made block
            raise
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
            guard_map = mmap.mmap(seg.fd, CTL_BYTES, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            seg.close_fd()
        # The creator stores the magic last, with release ordering: an acquire load pairs
        # with it, so every field read after a matching magic is the initialised one.
        with SharedWords(m) as words:
            magic = words.load_u64(0)
        if magic != int.from_bytes(MAGIC, "little"):
            m.close()
            guard_map.close()
            raise WriterGone(f"{seg_name} is not a rotorshm control block (or half-created)")
        version = struct.unpack_from("<I", m, OFF_VERSION)[0]
        if version != LAYOUT_VERSION:
            m.close()
            guard_map.close()
            raise WriterGone(f"{seg_name}: layout version {version}, expected {LAYOUT_VERSION}")
        block = cls(name, m, writable=False)
        block.guard = EpochGuard(name, guard_map)
        return block

    @staticmethod
    def live_owner(name: str) -> int | None:
        """Pid of a live writer publishing `name`, or None if the block is absent or stale.

        A block still being created (too short, or its magic not stored yet) belongs to a
        writer that is starting now unless it has stayed half-made for longer than a
        heartbeat may go stale: it is owned (-1 when its pid is not known yet).
        """
        try:
            block = ControlBlock.attach(name)
        except WriterGone:
            return _half_created_owner(control_name(name))
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

    def _load_u64(self, off: int) -> int:
        self._enter()
        try:
            return self.words.load_u64(off)
        finally:
            self._leave()

    def _load_u32(self, off: int) -> int:
        self._enter()
        try:
            return self.words.load_u32(off)
        finally:
            self._leave()

    @property
    def epoch(self) -> int:
        """Changes every time a writer starts."""
        return self._load_u64(OFF_EPOCH)

    @property
    def pid(self) -> int:
        """Process id of the writer."""
        return self._load_u64(OFF_PID)

    @property
    def pin_above_level(self) -> int:
        """Levels at or above this one live in shared-memory segments."""
        return self._load_u32(OFF_PIN)

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
        """What the writer's recovery dropped (a torn WAL tail) and, once the writer is
        poisoned, first the error that poisoned it; '' if nothing."""
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
        return self._load_u64(OFF_STATE)

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
        if self._closing or self.state == STATE_STOPPED or not pid_alive(self.pid):
            return False
        return time.monotonic_ns() - self._load_u64(OFF_HEARTBEAT) < HEARTBEAT_STALE_NS

    def writer_alive(self) -> bool:
        """True while the writer is live: state, pid and a fresh heartbeat all agree."""
        if self._closing:
            return False
        try:
            if self.state != STATE_LIVE or not pid_alive(self.pid):
                return False
            return time.monotonic_ns() - self._load_u64(OFF_HEARTBEAT) < HEARTBEAT_STALE_NS
        except WriterGone:  # closed meanwhile
            return False

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

        Calls the C seqlock loop directly (this is the snapshot hot path); the copy is
        made with relaxed word loads inside the loop, into a buffer of this call's own, so
        threads sharing the block never see each other's copies.
        """
        self._enter()  # WriterGone once closed
        try:
            return self._read_state(max_retries)
        finally:
            self._leave()

    def _read_state(self, max_retries: int) -> Published | None:
        # The output buffers belong to the calling thread (threading.local): threads
        # sharing the block never copy into one buffer, and the hot path allocates nothing.
        tls = self._tls
        try:
            seq_out, dst, cap = tls.bufs
        except AttributeError:
            seq_out, dst, cap = ffi.new("uint64_t *"), None, 0
        while True:
            nbytes = self._copy_bytes
            if cap < nbytes:
                dst, cap = _alloc_uncleared("char[]", nbytes), nbytes
                tls.bufs = (seq_out, dst, cap)
            if lib.rs_seqlock_read(self._counter_ptr, self._state_ptr, dst, nbytes,
                                   max_retries, seq_out) != 0:
                return None
            data = ffi.buffer(dst, nbytes)  # unpacked in place: the copy is private
            size, seq, n = _STATE_HEAD.unpack_from(data)
            if n > MAX_LEVELS:  # cannot happen with a consistent copy from a sane writer
                raise WriterGone(f"control block of {self.name!r} holds {n} levels")
            if _state_bytes(n) <= nbytes:
                # (length, frontier node) per level in one struct call; tuple.__new__ skips
                # Published's Python-level __new__ (hot path).
                both = _LEVELS[n].unpack_from(data, _STATE_HEAD.size)
                return _tuple_new(Published, (size, seq, both[0::2], both[1::2]))
            # The tree grew deeper than our copy: copy more (the whole copy is redone, so
            # it stays one consistent seqlock read).
            self._copy_bytes = _state_bytes(min(n + _SPARE_LEVELS, MAX_LEVELS))

    # -- durability ---------------------------------------------------------------------------

    @property
    def durable_seq(self) -> int:
        """Highest WAL sequence known durable."""
        return self._load_u64(OFF_DURABLE)

    def set_durable(self, seq: int) -> None:
        """Writer: advance the durable sequence and wake every waiter (never moves it back)."""
        with self._durable_lock:
            if seq <= self.words.load_u64(OFF_DURABLE):
                return
            self.words.store_u64(OFF_DURABLE, seq)
            self.words.fetch_add_u32(OFF_DURABLE_FUTEX, 1)
        self.words.futex_wake_u32(OFF_DURABLE_FUTEX, WAKE_ALL)

    @property
    def durability_lost(self) -> bool:
        """True once the writer's store was poisoned: nothing more becomes durable."""
        return bool(self._load_u32(OFF_FLAGS) & FLAG_DURABILITY_LOST)

    def set_durability_lost(self, reason: str = "") -> None:
        """Writer: announce that the durable sequence will never advance again; wake waiters.

        `reason` (the error that poisoned the store: which call failed on which file) goes
        first into the note, before the flag is set, so that a waiter that sees the flag
        can tell its caller what failed; `status` shows it too.
        """
        if reason:
            old = self.note
            text = (reason + (f" | {old}" if old else "")).encode()[:NOTE_MAX]
            self._map[OFF_NOTE + 4 : OFF_NOTE + 4 + len(text)] = text
            struct.pack_into("<I", self._map, OFF_NOTE, len(text))
        with self._durable_lock:
            flags = self.words.load_u32(OFF_FLAGS)
            self.words.store_u32(OFF_FLAGS, flags | FLAG_DURABILITY_LOST)
            self.words.fetch_add_u32(OFF_DURABLE_FUTEX, 1)
        self.words.futex_wake_u32(OFF_DURABLE_FUTEX, WAKE_ALL)

    def wait_durable(self, seq: int, timeout: float | None) -> bool:
        """Block (futex, no polling) until `seq` is durable; False on timeout or writer death.

        StorePoisoned if the writer lost durability before `seq` became durable.
        """
        reached = self._wait(OFF_DURABLE_FUTEX,
                             lambda: self.durable_seq >= seq or self.durability_lost, timeout)
        if reached and self.durable_seq >= seq:
            return True
        if self.durability_lost and self.durable_seq < seq:
            raise StorePoisoned(
                f"the writer of {self.name!r} lost durability before sequence {seq} became "
                f"durable ({self.note or 'a sync failed'}); it must be restarted"
            )
        return False

    def wait_change(self, check: Check, timeout: float | None) -> bool:
        """Block until `check()` is true, waking on every publication; False on timeout."""
        return self._wait(OFF_PUBLISH_FUTEX, check, timeout)

    def _wait(self, off: int, check: Check, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if not self._enter(raise_closed=False):
                return False  # closed under us (e.g. a reader's reattach): stop waiting
            try:
                word = self.words.load_u32(off)
            finally:
                self._leave()
            if check():
                return True
            if not self.writer_alive():
                return bool(check())
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            # Sleep in the kernel until the word moves; wake now and then to notice a
            # writer that died without waking us, or a close() waiting for us to leave.
            slice_ = 0.5 if left is None else min(left, 0.5)
            if not self._enter(raise_closed=False):
                return False
            try:
                self.words.futex_wait_u32(off, word, slice_)
            finally:
                self._leave()

    # -- in-flight calls and teardown ---------------------------------------------------------

    def _enter(self, raise_closed: bool = True) -> bool:
        """Count a call in flight on the mapping; refuse once close() has begun."""
        with self._users_lock:  # the condition's own lock: cheaper than entering it
            if self._closing:
                if raise_closed:
                    raise WriterGone(f"control block of {self.name!r} is closed")
                return False
            self._users += 1
            return True

    def _leave(self) -> None:
        with self._users_lock:
            self._users -= 1
            if not self._users and self._closing:
                self._users_cv.notify_all()  # close() waits for the last call to leave

    def close(self) -> None:
        """Unmap (idempotent), once every call in flight on the mapping has left."""
        with self._users_cv:
            if self._closing:
                return
            self._closing = True
            while self._users:
                self._users_cv.wait()
            self._closed = True
        self.words.release()
        ffi.release(self._base)
        self._map.close()

    def unlink(self) -> None:
        """Writer: remove the name (mapped readers keep their view)."""
        unlink_segment(control_name(self.name))



def _half_created_owner(seg_name: str) -> int | None:
    """-1 (owned) if a control block exists but is still being created by a live writer.

    It is being created if its creator's pid (stored before the magic) is alive, or, if
    not stored yet, if the segment was created less than a stale-heartbeat period ago.
    None if there is no such segment, or it is an abandoned half-made one.
    """
    path = os.path.join(SHM_DIR, seg_name.lstrip("/"))
    try:
        st = os.stat(path)
    except OSError:
        return None  # absent (or not Linux: no way to tell; the caller creates it O_EXCL)
    pid = 0
    if st.st_size >= OFF_PID + 8:
        try:
            with open(path, "rb") as f:
                f.seek(OFF_PID)
                pid = struct.unpack("<Q", f.read(8))[0]
        except OSError:
            return -1  # cannot read it: treat as owned, never clobber it
    if pid:  # stored before the magic: its creator decides
        return pid if pid_alive(pid) else None
    age_ns = time.time_ns() - st.st_mtime_ns  # creation, sizing and writes all set it
    return -1 if age_ns < HEARTBEAT_STALE_NS else None
