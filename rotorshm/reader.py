"""Readers: attach to a published tree by name from any process and take lock-free snapshots."""

from __future__ import annotations

import threading
import time
from types import TracebackType

from .checkpoint import level_dir
from .errors import IndexOutOfRange, InvalidArgument, TreeClosed, WriterGone
from .levels import FileLevel, Level
from .segments import ShmLevel
from .shm import ControlBlock, Published, check_name
from .snapshot import Snapshot
from .store import DATA_DIR

GIVE_UP_AFTER = 2.0  # seconds a live writer may hold the seqlock before we stop waiting


class _Attachment:
    """One writer epoch as a reader sees it: its control block and the level mappings.

    Replaced as a whole by reattach(), so a call that started on one attachment finishes
    on it; `lock` serialises growing the level list and mapping pinned regions.
    """

    __slots__ = ("ctl", "guard", "arity", "pin", "data_dir", "prefix", "levels", "mapped_size",
                 "lock")

    def __init__(self, ctl: ControlBlock) -> None:
        self.ctl = ctl
        self.guard = ctl.guard  # outlives ctl's mapping: snapshots keep it
        self.arity = ctl.arity
        self.pin = ctl.pin_above_level
        self.data_dir = f"{ctl.directory}/{DATA_DIR}"
        self.prefix = ctl.segment_prefix
        self.levels: list[Level] = []
        self.mapped_size = 0  # pinned regions are mapped for every size up to this
        self.lock = threading.Lock()

    def new_level(self, level: int) -> Level:
        if level >= self.pin:
            return ShmLevel(level, self.prefix, writable=False)
        return FileLevel(level, level_dir(self.data_dir, level), writable=False)


class Reader:
    """A read-only view of a tree published by a writer daemon.

    Every mapping is read-only. A reader never blocks the writer: a snapshot is a
    seqlock copy of O(depth) bytes plus the shared mappings. If the writer dies, the
    reader keeps serving its last snapshot and reports `writer_alive == False`;
    `reattach()` follows a restarted writer (new epoch). If the dead writer had published
    leaves that were not durable and the restarted writer recovered fewer, snapshots
    covering them raise StaleSnapshot from every call that reads the tree (`reattach()`
    and a new snapshot are the way on); smaller snapshots stay valid.

    A Reader (and its snapshots) may be shared by threads: each seqlock copy goes into a
    buffer of its own call, level growth is locked, and reattach()/close() unmap the
    control block only once the calls in flight on it have left.
    """

    def __init__(self, name: str) -> None:
        self.name = check_name(name)
        self._att: _Attachment | None = None
        self._last: Snapshot | None = None
        self._attach()

    def _attach(self, ctl: ControlBlock | None = None) -> None:
        self._att = _Attachment(ctl if ctl is not None else ControlBlock.attach(self.name))

    @property
    def _ctl(self) -> ControlBlock | None:
        att = self._att
        return None if att is None else att.ctl

    @property
    def _levels(self) -> list[Level]:
        att = self._att
        return [] if att is None else att.levels

    def _attachment(self) -> _Attachment:
        att = self._att
        if att is None:
            raise TreeClosed(f"reader of {self.name!r} is closed")
        return att

    def _control(self) -> ControlBlock:
        return self._attachment().ctl

    # -- snapshots -----------------------------------------------------------------------------

    def _read(self, ctl: ControlBlock) -> Published | None:
        state = ctl.read_state()
        if state is not None:
            return state
        # The counter stayed odd or kept moving: a writer killed mid-publication, or one
        # that is merely descheduled. Bounded retries, then check whether it is alive.
        deadline = time.monotonic() + GIVE_UP_AFTER
        while time.monotonic() < deadline:
            if not ctl.writer_alive():
                return None
            time.sleep(0.0005)
            state = ctl.read_state()
            if state is not None:
                return state
        return None

    def snapshot(self) -> Snapshot:
        """A consistent, O(depth) snapshot; the last good one if the writer is gone."""
        att = self._attachment()
        try:
            state = self._read(att.ctl)
        except WriterGone:
            if self._att is att or self._att is None:
                raise
            return self.snapshot()  # reattached meanwhile: read from the new writer
        if state is None:
            if self._last is not None:
                return self._last
            raise WriterGone(f"the writer of {self.name!r} died inside a publication")
        levels = att.levels
        lengths = state.lengths
        if len(levels) < len(lengths) or state.size > att.mapped_size:
            with att.lock:
                while len(levels) < len(lengths):
                    levels.append(att.new_level(len(levels)))
                # Pinned levels live in segments that the writer unlinks when it stops (and
                # a new writer unlinks after a crash): map what this snapshot covers now, so
                # that it stays readable for as long as it is held. Shard files are never
                # removed: no-op for them.
                if state.size > att.mapped_size:
                    if not self._map_pinned(att, lengths):
                        if self._last is not None:
                            return self._last
                        raise WriterGone(f"the writer of {self.name!r} has stopped")
                    att.mapped_size = state.size
        snap = Snapshot(levels, att.arity, state.size, lengths, state.frontier, att.guard)
        self._last = snap
        return snap

    @staticmethod
    def _map_pinned(att: _Attachment, lengths: tuple[int, ...]) -> bool:
        """Map the pinned levels' regions through `lengths`; False if a segment is gone."""
        levels = att.levels
        for lvl in range(att.pin, len(lengths)):
            level = levels[lvl]
            if level.capacity < lengths[lvl]:
                try:
                    level.map_through(lengths[lvl])
                except IndexOutOfRange:  # already unlinked: its writer has stopped
                    return False
        return True

    @property
    def root(self) -> bytes | None:
        """Current published root."""
        return self.snapshot().root

    @property
    def size(self) -> int:
        """Current published size."""
        return self.snapshot().size

    @property
    def epoch(self) -> int:
        """Epoch of the writer this reader is attached to."""
        return self._control().epoch

    @property
    def writer_alive(self) -> bool:
        """True while the attached writer is running (pid alive, fresh heartbeat, state live)."""
        return self._control().writer_alive()

    @property
    def durable_seq(self) -> int:
        """Highest WAL sequence the writer reports durable."""
        return self._control().durable_seq

    def wait_for_size(self, size: int, timeout: float | None = None) -> bool:
        """Block until the published size reaches `size`; False on timeout or writer death."""
        return self._control().wait_change(lambda: self.snapshot().size >= size, timeout)

    def wait_for_root(self, root: bytes, timeout: float | None = None) -> bool:
        """Block until `root` is the published root; False on timeout or writer death."""
        return self._control().wait_change(lambda: self.snapshot().root == root, timeout)

    def reattach(self, timeout: float | None = 10.0) -> None:
        """Follow a restarted writer (new epoch). Old snapshots stay usable until dropped,
        except those a restart made stale (StaleSnapshot).

        A writer restarting after a crash recovers before it publishes, and meanwhile the
        name still shows its dead predecessor's control block: wait up to `timeout`
        seconds (None: no limit) for a live writer under the name. If none appears,
        raise WriterGone and stay as before (serving the last snapshot).

        Safe while other threads use the reader: the old control block is unmapped only
        once the calls in flight on it have left (see ControlBlock.close).
        """
        old = self._control()
        if timeout is not None and not timeout >= 0:
            raise InvalidArgument(f"timeout must be None or >= 0 seconds, got {timeout!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                ctl: ControlBlock | None = ControlBlock.attach(self.name)
            except WriterGone:
                ctl = None
            if ctl is not None:
                if ctl.writer_alive():
                    break
                ctl.close()
            if deadline is not None and time.monotonic() >= deadline:
                raise WriterGone(f"no live writer publishes {self.name!r}"
                                 + (f" (waited {timeout:g} s)" if timeout else ""))
            time.sleep(0.01)
        self._attach(ctl)
        old.close()
        self._last = None

    # -- teardown ------------------------------------------------------------------------------

    def close(self) -> None:
        """Unmap the control block; idempotent. Snapshots taken before stay readable."""
        att, self._att = self._att, None
        if att is not None:
            att.ctl.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Reader({self.name!r}, closed={self._ctl is None})"


def attach(name: str) -> Reader:
    """Attach to the tree published under `name` (WriterGone if no writer ever published it)."""
    return Reader(name)
