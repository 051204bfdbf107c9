"""Configuration of a persistent tree: flush, checkpoint and tiering policies."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import InvalidConfig
from .hashing import check_arity, check_hash_threads

ProgressCallback = Callable[[str, int, int], None]
"""Called as progress(phase, done, total) while opening a large tree."""


@dataclass(frozen=True, slots=True)
class FlushPolicy:
    """When WAL records are fsynced: every `seconds` in the background, or manually."""

    kind: str
    seconds: float = 0.0

    @classmethod
    def interval(cls, seconds: float = 0.010) -> FlushPolicy:
        """Group-commit every `seconds` (a waiter asks for an immediate sync)."""
        if not seconds > 0:
            raise InvalidConfig(f"flush interval must be > 0 seconds, got {seconds!r}")
        return cls("interval", float(seconds))

    @classmethod
    def manual(cls) -> FlushPolicy:
        """Only flush() and close() fsync; unflushed records are lost on a crash."""
        return cls("manual")


@dataclass(frozen=True, slots=True)
class CheckpointPolicy:
    """When the WAL is folded into the shard files."""

    kind: str
    value: int = 0

    @classmethod
    def manual(cls) -> CheckpointPolicy:
        """Only checkpoint() checkpoints."""
        return cls("manual")

    @classmethod
    def every_n_entries(cls, n: int) -> CheckpointPolicy:
        """Checkpoint once `n` leaves arrived since the last checkpoint."""
        if not isinstance(n, int) or n < 1:
            raise InvalidConfig(f"every_n_entries needs n >= 1, got {n!r}")
        return cls("every_n_entries", n)

    @classmethod
    def memory_threshold(cls, nbytes: int) -> CheckpointPolicy:
        """Checkpoint once the WAL holds `nbytes` or more."""
        if not isinstance(nbytes, int) or nbytes < 1:
            raise InvalidConfig(f"memory_threshold needs bytes >= 1, got {nbytes!r}")
        return cls("memory_threshold", nbytes)

    @classmethod
    def on_close(cls) -> CheckpointPolicy:
        """Checkpoint when the tree is closed."""
        return cls("on_close")


@dataclass(frozen=True, slots=True)
class TieringConfig:
    """Levels below `pin_above_level` live in mmap'd shard files, the rest in shared memory."""

    pin_above_level: int = 1 << 30

    def __post_init__(self) -> None:
        if not isinstance(self.pin_above_level, int) or self.pin_above_level < 0:
            raise InvalidConfig(f"pin_above_level must be >= 0, got {self.pin_above_level!r}")

    def pinned(self, level: int) -> bool:
        """True if `level` lives in a shared-memory segment."""
        return level >= self.pin_above_level


@dataclass(frozen=True)
class RotorTreeConfig:
    """Everything RotorTree.open needs; arity and max_depth must match the directory."""

    path: str | os.PathLike[str]
    arity: int = 4
    max_depth: int = 20
    flush_policy: FlushPolicy = field(default_factory=FlushPolicy.interval)
    checkpoint_policy: CheckpointPolicy = field(default_factory=CheckpointPolicy.manual)
    tiering: TieringConfig = field(default_factory=TieringConfig)
    verify_checkpoint: bool = True
    name: str | None = None
    progress: ProgressCallback | None = None
    #: Threads that hash one level of a large batch (>= 4,096 full groups); 1 = no threads.
    hash_threads: int = 1

    def __post_init__(self) -> None:
        check_arity(self.arity)
        check_hash_threads(self.hash_threads)
        if not isinstance(self.max_depth, int) or not 1 <= self.max_depth <= 64:
            raise InvalidConfig(f"max_depth must be an integer in 1..64, got {self.max_depth!r}")
        if self.name is not None and (not self.name or "/" in self.name or len(self.name) > 64):
            raise InvalidConfig(f"name must be 1..64 characters without '/', got {self.name!r}")
