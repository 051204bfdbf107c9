"""Configuration of a persistent tree: flush, checkpoint and tiering policies."""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import InvalidConfig
from .hashing import check_arity, check_hash_threads

ProgressCallback = Callable[[str, int, int], None]
"""Called as progress(phase, done, total) while opening a large tree."""

MAX_DEPTH = 64
"""The deepest tree any arity may have (a u64 size never needs more levels)."""

NAME_MAX = 64
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def check_max_depth(max_depth: object) -> int:
    """Return `max_depth` if it is an integer in 1..MAX_DEPTH, else raise InvalidConfig."""
    if (not isinstance(max_depth, int) or isinstance(max_depth, bool)
            or not 1 <= max_depth <= MAX_DEPTH):
        raise InvalidConfig(
            f"max_depth must be an integer in 1..{MAX_DEPTH}, got {max_depth!r:.40}"
        )
    return max_depth


def check_tree_name(name: object) -> str:
    """Return `name` if it is a valid tree name, else raise InvalidConfig.

    A tree name is 1..64 ASCII letters, digits, '_', '-' and '.', not starting with '.'
    or '-': it is embedded in POSIX shared-memory names (255 bytes at most), must never
    be mistaken for a path (no '/', never '.' or '..') and must survive a shell and a
    log line unchanged (no spaces, newlines or other control characters).
    """
    if not isinstance(name, str):
        raise InvalidConfig(f"a tree name is a string, got {type(name).__name__}")
    if not 1 <= len(name) <= NAME_MAX or not name.isascii() or not _NAME.fullmatch(name):
        raise InvalidConfig(
            f"tree name must be 1..{NAME_MAX} ASCII letters, digits, '_', '-' or '.', not "
            f"starting with '.' or '-', got {name!r:.100}"
        )
    return name


@dataclass(frozen=True, slots=True)
class FlushPolicy:
    """When WAL records are fsynced: every `seconds` in the background, or manually."""

    kind: str
    seconds: float = 0.0

    @classmethod
    def interval(cls, seconds: float = 0.010) -> FlushPolicy:
        """Group-commit every `seconds` (a waiter asks for an immediate sync)."""
        if (not isinstance(seconds, (int, float)) or isinstance(seconds, bool)
                or not 0 < seconds <= threading.TIMEOUT_MAX or not math.isfinite(seconds)):
            raise InvalidConfig(
                f"flush interval must be a finite number of seconds in "
                f"(0, {threading.TIMEOUT_MAX:.0f}], got {seconds!r:.40}"
            )
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
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise InvalidConfig(f"every_n_entries needs n >= 1, got {n!r}")
        return cls("every_n_entries", n)

    @classmethod
    def memory_threshold(cls, nbytes: int) -> CheckpointPolicy:
        """Checkpoint once the WAL holds `nbytes` or more."""
        if not isinstance(nbytes, int) or isinstance(nbytes, bool) or nbytes < 1:
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
        pin = self.pin_above_level
        if not isinstance(pin, int) or isinstance(pin, bool) or pin < 0:
            raise InvalidConfig(f"pin_above_level must be an integer >= 0, got {pin!r:.40}")

    def pinned(self, level: int) -> bool:
        """True if `level` lives in a shared-memory segment."""
        return level >= self.pin_above_level


NODE_BYTES = 32


def level_bytes(size: int, arity: int) -> list[int]:
    """Bytes each level of a `size`-leaf tree of `arity` holds (level 0 = the leaves)."""
    out = []
    n = size
    while n > 1:
        out.append(n * NODE_BYTES)
        n = -(-n // arity)
    out.append(n * NODE_BYTES)
    return out


def mem_total() -> int:
    """Bytes of RAM of this machine (MemTotal of /proc/meminfo; 0 where unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def memory_budget() -> int:
    """The default RAM budget for pinned levels: half of the machine's memory (0 if unknown)."""
    return mem_total() // 2


def tiering_advice(size: int, arity: int, pin_above_level: int | None,
                   budget_bytes: int | None = None) -> dict[str, int | None]:
    """What `status` and `inspect` say about `pin_above_level` for a tree of `size` leaves.

    Page reads per proof count the levels below the pin: each costs at most one page
    read once the shard files no longer fit in the page cache (the shard mappings are
    MADV_RANDOM, so a fault reads one page).
    """
    budget = memory_budget() if budget_bytes is None else budget_bytes
    sizes = level_bytes(max(size, 1), arity)
    depth = len(sizes)
    suggested = suggest_pin_above_level(size, arity, budget)
    pin = pin_above_level if pin_above_level is not None and pin_above_level < depth else None
    return {
        "memory_budget": budget,
        "tree_bytes": sum(sizes),
        "pin_above_level": pin,
        "pinned_bytes": sum(sizes[pin:]) if pin is not None else 0,
        "page_reads_per_proof": min(pin, depth - 1) if pin is not None else depth - 1,
        "suggested_pin_above_level": suggested,
        "suggested_pinned_bytes": sum(sizes[suggested:]),
    }


def describe_tiering_advice(advice: dict[str, int | None]) -> str:
    """One line of `tiering_advice` for people."""
    def gib(n: int | None) -> str:
        n = n or 0
        return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"

    now = (f"pin_above_level {advice['pin_above_level']} keeps {gib(advice['pinned_bytes'])} "
           f"in RAM" if advice["pin_above_level"] is not None
           else "every level in shard files (the default tiering)")
    return (f"{now}; a random proof costs at most {advice['page_reads_per_proof']} page "
            f"read(s) once the {gib(advice['tree_bytes'])} of levels outgrow the page cache. "
            f"Suggested for a {gib(advice['memory_budget'])} budget (half the RAM): "
            f"pin_above_level {advice['suggested_pin_above_level']} "
            f"({gib(advice['suggested_pinned_bytes'])} pinned, at most "
            f"{advice['suggested_pin_above_level']} page read(s) per proof)")


def suggest_pin_above_level(size: int, arity: int, budget_bytes: int) -> int:
    """The lowest `pin_above_level` whose pinned levels fit in `budget_bytes` of RAM.

    A proof reads one node group per level; the pinned levels (in shared memory) never
    fault, so once the tree outgrows the page cache a random proof costs at most one
    page read per level *below* the pin. Pinning from level 1 keeps about 1/(arity-1) of
    the leaf bytes in memory (a third at arity 4) and leaves a proof one page read.
    """
    sizes = level_bytes(max(size, 1), arity)
    above = 0
    for level in range(len(sizes) - 1, -1, -1):
        above += sizes[level]
        if above > budget_bytes:
            return level + 1
    return 0


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
    #: Threads that hash a large batch (>= 4,096 groups of leaves), each its own part of the
    #: lower levels (tree_append.c); 1 = no threads.
    hash_threads: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, os.PathLike)):
            raise InvalidConfig(f"path must be a str or os.PathLike, got {self.path!r:.80}")
        path = os.fspath(self.path)
        if not path or (isinstance(path, str) and "\0" in path):
            raise InvalidConfig(f"path must name a directory, got {path!r:.80}")
        check_arity(self.arity)
        check_hash_threads(self.hash_threads)
        check_max_depth(self.max_depth)
        if self.name is not None:
            check_tree_name(self.name)
        for what, value, kind in (("flush_policy", self.flush_policy, FlushPolicy),
                                  ("checkpoint_policy", self.checkpoint_policy, CheckpointPolicy),
                                  ("tiering", self.tiering, TieringConfig)):
            if not isinstance(value, kind):
                raise InvalidConfig(f"{what} must be a {kind.__name__}, got {value!r:.80}")
