"""Named POSIX shared-memory segments: pinned levels kept in RAM and shared with readers."""

from __future__ import annotations

import os
import re

import posix_ipc

from .durable_io import DurableIO
from .errors import IndexOutOfRange
from .levels import _ReservedLevel

SEGMENT_PREFIX = "rotorshm."
SHM_DIR = "/dev/shm"


def segment_prefix(name: str, epoch: int) -> str:
    """Prefix of every segment of tree `name` in writer epoch `epoch`."""
    return f"/{SEGMENT_PREFIX}{name}.{epoch:016x}."


def level_segment_name(prefix: str, level: int, index: int) -> str:
    """Name of segment `index` of pinned level `level`."""
    return f"{prefix}L{level}.S{index}"


def unlink_segment(name: str) -> bool:
    """Unlink a segment by name; False if it did not exist."""
    try:
        posix_ipc.unlink_shared_memory(name)
    except posix_ipc.ExistentialError:
        return False
    return True


def _segment_pattern(name: str) -> re.Pattern[str]:
    """The exact entry names of tree `name`: its control block and `<epoch>.L<l>.S<i>` levels.

    A bare prefix would also match the segments of a tree named `name.x` (a live tree of
    another writer), so the whole shape is matched.
    """
    return re.compile(
        rf"{re.escape(SEGMENT_PREFIX + name)}\.(?:ctl|[0-9a-f]{{16}}\.L[0-9]+\.S[0-9]+)"
    )


def tree_segments(name: str) -> list[str]:
    """Sorted /dev/shm entries of tree `name` (control block and every epoch's levels).

    Only names of exactly that shape: never the segments of another tree whose name
    merely starts with `name.`. Empty where /dev/shm cannot be listed (not Linux).
    """
    pattern = _segment_pattern(name)
    try:
        return sorted(e for e in os.listdir(SHM_DIR) if pattern.fullmatch(e))
    except OSError:
        return []


def stale_segments(name: str) -> list[str]:
    """POSIX names of existing segments belonging to tree `name` (any epoch)."""
    return ["/" + e for e in tree_segments(name)]


class ShmLevel(_ReservedLevel):
    """A pinned level held in POSIX shared-memory segments (RAM), one per 256 MiB shard."""

    __slots__ = ("prefix", "mode", "created")

    def __init__(self, level: int, prefix: str, writable: bool, mode: int = 0o600,
                 io: DurableIO | None = None) -> None:
        super().__init__(level, writable, io)
        self.prefix = prefix
        self.mode = mode
        self.created: list[str] = []

    def _where(self, index: int) -> str:
        return level_segment_name(self.prefix, self.level, index)

    def _open_fd(self, index: int, create: bool) -> int:
        name = self._where(index)
        try:
            if create:
                seg = posix_ipc.SharedMemory(name, posix_ipc.O_CREAT, mode=self.mode)
                self.created.append(name)
            else:
                seg = posix_ipc.SharedMemory(name, read_only=not self.writable)
        except posix_ipc.ExistentialError:
            raise IndexOutOfRange(f"level {self.level}: segment {name} does not exist") from None
        fd = os.dup(seg.fd)
        seg.close_fd()
        return fd

    def unlink(self) -> None:
        """Remove the segments this level created (readers keep their existing mappings)."""
        for name in self.created:
            unlink_segment(name)
        self.created.clear()
