"""Readers: attach to a published tree by name from any process and take lock-free snapshots."""

from __future__ import annotations

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


class Reader:
    """A read-only view of a tree published by a writer daemon.

    Every mapping is read-only. A reader never blocks the writer: a snapshot is a
    seqlock copy of O(depth) bytes plus the shared mappings. If the writer dies, the
    reader keeps serving its last snapshot and reports `writer_alive == False`;
    `reattach()` follows a restarted writer (new epoch).
    """

    def __init__(self, name: str) -> None:
        self.name = check_name(name)
        self._ctl: ControlBlock | None = None
        self._levels: list[Level] = []
        self._last: Snapshot | None = None
        self._attach()

    def _attach(self, ctl: ControlBlock | None = None) -> None:
        if ctl is None:
            ctl = ControlBlock.attach(self.name)
        self._ctl = ctl
        self._arity = ctl.arity
        self._pin = ctl.pin_above_level
        self._data_dir = f"{ctl.directory}/{DATA_DIR}"
        self._prefix = ctl.segment_prefix
        self._levels = []
        self._mapped_size = 0  # pinned regions are mapped for every size up to this

    def _control(self) -> ControlBlock:
        if self._ctl is None:
            raise TreeClosed(f"reader of {self.name!r} is closed")
        return self._ctl

    def _new_level(self, level: int) -> Level:
        if level >= self._pin:
            return ShmLevel(level, self._prefix, writable=False)
        return FileLevel(level, level_dir(self._data_dir, level), writable=False)

    # -- snapshots -----------------------------------------------------------------------------

    def _read(self) -> Published | None:
        ctl = self._control()
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
        state = self._read()
        if state is None:
            if self._last is not None:
                return self._last
            raise WriterGone(f"the writer of {self.name!r} died inside a publication")
        levels = self._levels
        lengths = state.lengths
        while len(levels) < len(lengths):
            levels.append(self._new_level(len(levels)))
        # Pinned levels live in segments that the writer unlinks when it stops (and a new
        # writer unlinks after a crash): map what this snapshot covers now, so that it stays
        # readable for as long as it is held. Shard files are never removed: no-op for them.
        if state.size > self._mapped_size:
            if not self._map_pinned(lengths):
                if self._last is not None:
                    return self._last
                raise WriterGone(f"the writer of {self.name!r} has stopped")
            self._mapped_size = state.size
        snap = Snapshot(levels, self._arity, state.size, lengths, state.frontier)
        self._last = snap
        return snap

    def _map_pinned(self, lengths: tuple[int, ...]) -> bool:
        """Map the pinned levels' regions through `lengths`; False if a segment is gone."""
        levels = self._levels
        for lvl in range(self._pin, len(lengths)):
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
        """Follow a restarted writer (new epoch). Old snapshots stay usable until dropped.

        A writer restarting after a crash recovers before it publishes, and meanwhile the
        name still shows its dead predecessor's control block: wait up to `timeout`
        seconds (None: no limit) for a live writer under the name. If none appears,
        raise WriterGone and stay as before (serving the last snapshot).
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
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None

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
