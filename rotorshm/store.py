"""RotorTree: the persistent tree of one process (WAL, group commit, checkpoints, recovery)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable
from types import TracebackType

import filelock

from . import checkpoint as ckpt
from . import recovery, wal
from .backup import BackupResult, try_lock_checkpoints
from .config import RotorTreeConfig
from .durable_io import DurableIO
from .errors import (
    AccessDenied,
    CorruptionError,
    InvalidConfig,
    RotorError,
    StorageFull,
    StorePoisoned,
    TreeClosed,
    TreeLocked,
)
from .hashing import NODE_SIZE
from .levels import FileLevel, Level
from .segments import ShmLevel, segment_prefix, stale_segments, unlink_segment
from .shm import supersede
from .snapshot import Snapshot
from .tree import BytesLike, Leaves, TreeCore, batch_bytes, leaf_bytes

WAL_FILE = "wal.log"
LOCK_FILE = "wal.lock"
DATA_DIR = "data"


_FADV_DONTNEED: int | None = getattr(os, "POSIX_FADV_DONTNEED", None)

def default_name(path: str) -> str:
    """A short, stable tree name derived from the directory's real path."""
    return "t" + hashlib.blake2s(os.path.realpath(path).encode(), digest_size=6).hexdigest()


class DurabilityToken:
    """Handle on one WAL record: tells whether it is durable and waits for it."""

    __slots__ = ("seq", "_tree")

    def __init__(self, seq: int, tree: RotorTree) -> None:
        self.seq = seq
        self._tree = tree

    @property
    def is_durable(self) -> bool:
        """True once the record has been fsynced (or folded into a checkpoint)."""
        return self._tree.durable_seq >= self.seq

    def wait(self, timeout: float | None = None) -> bool:
        """Block until durable; asks the flusher to sync now rather than sleeping out its interval.

        Returns False on timeout (or once the tree is closed). Under the manual flush policy
        it waits for someone's flush(). Raises StorePoisoned if the record can no longer
        become durable (a sync failed before it was covered).
        """
        return self._tree._wait_durable(self.seq, timeout)

    def __repr__(self) -> str:
        return f"DurabilityToken(seq={self.seq}, durable={self.is_durable})"


class RotorTree:
    """A durable append-only tree in one directory, owned by one writer at a time.

    Every batch is written to the WAL before it is applied; levels live in mmap'd shard
    files (or shared-memory segments for pinned levels), so checkpoints only flush what
    changed since the previous one.

    Errors: a call that raises has not changed `size`. Every write, sync, rename,
    truncate and fallocate goes through one DurableIO door (durable_io.py): after any
    failed fsync/fdatasync/msync the tree is *poisoned* and raises StorePoisoned from
    every write, flush, checkpoint and durability wait, and never advances `durable_seq`
    again; reopen it to recover from the WAL.
    """

    def __init__(self, config: RotorTreeConfig) -> None:
        """Use RotorTree.open(config)."""
        if not isinstance(config, RotorTreeConfig):
            raise InvalidConfig(f"expected a RotorTreeConfig, got {type(config).__name__}")
        self.config = config
        self.path = os.fspath(config.path)
        self.data_dir = os.path.join(self.path, DATA_DIR)
        self.name = config.name or default_name(self.path)
        self.epoch = secrets.randbits(63) | 1
        self._seg_prefix = segment_prefix(self.name, self.epoch)
        self._lock = threading.RLock()
        self._cv = threading.Condition()
        self._closed = True
        self._flusher: threading.Thread | None = None
        self._sync_requested = False
        self._stopping = False
        self._io = DurableIO(self.path)
        self._io.add_poison_hook(self._on_poisoned)
        self._flush_error: BaseException | None = None
        self.recovery_note = ""  # what recovery dropped (a torn WAL tail), for logs and status
        self._after_apply: list[Callable[[RotorTree], None]] = []
        self._on_durable: list[Callable[[int], None]] = []
        self._on_poison: list[Callable[[StorePoisoned], None]] = []
        # Durable hooks run in the order of the values they publish (see _set_durable).
        self._durable_hooks_lock = threading.Lock()
        self._file_lock = filelock.FileLock(os.path.join(self.path, LOCK_FILE), timeout=0)
        self.core = TreeCore(config.arity, config.max_depth, self._new_level, config.hash_threads)
        self._wal: wal.WriteAheadLog | None = None
        self.durable_seq = 0
        self.written_seq = 0
        # The WAL's last record written (it may not be applied yet), the last one an
        # fdatasync covered, and when a durability waiter last had to ask for a sync.
        # durable_seq = min(wal_synced, written_seq): durable and applied.
        self._wal_seq = 0
        self._wal_synced = 0
        self._last_wait = -math.inf
        # A sync starts at the WAL write, not at the wait, while waiters came within this
        # long (interval policy; never with the manual one, which has no flusher).
        self._eager_window = (config.flush_policy.seconds
                              if config.flush_policy.kind == "interval" else -1.0)
        self._ckpt: ckpt.CheckpointMeta = ckpt.CheckpointMeta(0, 0, b"", (), ())
        self._leaves_since_ckpt = 0

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, config: RotorTreeConfig) -> RotorTree:
        """Open (creating if needed) and recover the tree in config.path."""
        tree = cls(config)
        tree._open()
        return tree

    def _open(self) -> None:
        cfg = self.config
        _make_tree_dir(self.path, self._io)  # a new tree directory is fsynced into its parent
        try:
            self._file_lock.acquire()
        except filelock.Timeout:
            raise TreeLocked(f"{self.path}: another writer holds {LOCK_FILE}") from None
        except OSError as exc:
            raise _dir_error(os.path.join(self.path, LOCK_FILE), "cannot create the lock file",
                             exc) from None
        try:
            self._recover()
        except BaseException:
            self._release_resources()
            raise
        self._closed = False
        if cfg.flush_policy.kind == "interval":
            self._flusher = threading.Thread(
                target=self._flusher_main, name=f"rotorshm-flusher-{self.name}", daemon=True
            )
            self._flusher.start()

    def _recover(self) -> None:
        cfg = self.config
        io = self._io
        io.makedirs(self.data_dir)
        if not ckpt.check_header(self.data_dir, cfg.arity, cfg.max_depth):
            ckpt.write_header(self.data_dir, cfg.arity, cfg.max_depth, io)
        for name in stale_segments(self.name):
            # We hold the lock: any level segment of this tree is a leftover. The control
            # block is the daemon's business (it checks the owner's liveness first).
            if not name.endswith(".ctl"):
                unlink_segment(name)
        meta = ckpt.read_meta(self.data_dir, cfg.arity)
        # A previous writer may have died right after renaming checkpoint.meta (or
        # header.bin), before fsyncing data/: make that rename durable before the meta
        # may drive a WAL truncation below.
        io.fsync_dir(self.data_dir)
        ckpt_seq, ckpt_size = (meta.seq, meta.size) if meta is not None else (0, 0)
        wal_path = os.path.join(self.path, WAL_FILE)
        scan = wal.scan(wal_path, first_seq=ckpt_seq + 1)
        for rec in scan.records:
            if len(rec.payload) % NODE_SIZE:
                raise CorruptionError(
                    f"{wal_path}: record at offset {rec.offset} is not a whole number of leaves"
                )
        # Before writing any node: a dead writer of this directory may have published more
        # than we recover (leaves it never made durable), and its readers' snapshots read
        # the shard files we are about to write. Mark its control block superseded at the
        # size we recover, so those snapshots raise StaleSnapshot (DESIGN.md §4).
        recovered = ckpt_size + sum(
            len(r.payload) for r in scan.records if r.seq > ckpt_seq) // NODE_SIZE
        supersede(os.path.abspath(self.path), recovered)
        if meta is not None and meta.size:
            recovery.restore(self.core, self.data_dir, meta)
            if cfg.verify_checkpoint:
                recovery.verify(self.core, self.data_dir, meta, cfg.progress)
            self._ckpt = meta
        elif meta is not None:
            self._ckpt = meta
        last = recovery.replay(self.core, scan, self._ckpt.seq, wal_path, cfg.progress)
        if scan.torn_bytes:
            from .offline import torn_tail_note

            self.recovery_note = torn_tail_note(wal_path, scan)
            _log.warning("%s", self.recovery_note)
        self._leaves_since_ckpt = self.core.size - self._ckpt.size
        end = scan.end
        if scan.records and scan.records[-1].seq <= self._ckpt.seq:
            # Every record is already in the checkpoint: we stopped (or lost power, dropping
            # unsynced records) between writing checkpoint.meta and truncating the WAL.
            # Finish the truncation, so new records never follow a gap in the sequence.
            end = 0
        # Opening the log cuts a torn tail and fdatasyncs what a killed writer left in the
        # page cache: only then are the replayed records durable (and reported so).
        self._wal = wal.WriteAheadLog(wal_path, end, last + 1, io)
        self.durable_seq = self.written_seq = self._wal_seq = self._wal_synced = last

    def _new_level(self, level: int) -> Level:
        if self.config.tiering.pinned(level):
            return ShmLevel(level, self._seg_prefix, writable=True, io=self._io)
        return FileLevel(level, ckpt.level_dir(self.data_dir, level), writable=True, io=self._io)

    # -- properties -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise TreeClosed(f"{self.path}: the tree is closed")

    def _check_writable(self) -> None:
        self._check_open()
        self._io.check()

    @property
    def poisoned(self) -> StorePoisoned | None:
        """The error that poisoned the tree (a failed sync), or None while it is healthy."""
        return self._io.poisoned

    @property
    def root(self) -> bytes | None:
        """Current root (None when empty)."""
        self._check_open()
        return self.core.root

    @property
    def size(self) -> int:
        """Number of leaves."""
        self._check_open()
        return self.core.size

    @property
    def depth(self) -> int:
        """Hash levels above the leaves."""
        self._check_open()
        return self.core.depth

    @property
    def arity(self) -> int:
        """Children per group."""
        return self.core.arity

    @property
    def closed(self) -> bool:
        """True after close()."""
        return self._closed

    @property
    def segment_prefix(self) -> str:
        """Prefix of this writer epoch's shared-memory segment names."""
        return self._seg_prefix

    @property
    def checkpoint_meta(self) -> ckpt.CheckpointMeta:
        """The last checkpoint taken (or loaded)."""
        return self._ckpt

    # -- ingest -----------------------------------------------------------------------------

    def insert(self, leaf: BytesLike) -> tuple[bytes, DurabilityToken]:
        """Append one leaf; return the new root and a token for its WAL record."""
        root, token = self._ingest(leaf_bytes(leaf))
        assert root is not None
        return root, token

    def insert_many(self, leaves: Leaves) -> tuple[bytes | None, DurabilityToken]:
        """Append a batch atomically; return the new root and a token for its WAL record."""
        return self._ingest(batch_bytes(leaves))

    def insert_durable(self, leaf: BytesLike) -> bytes:
        """Append one leaf and return only once it is durable."""
        root, token = self.insert(leaf)
        if self.config.flush_policy.kind == "manual":
            self.flush()
        else:
            token.wait()
        return root

    def _ingest(self, data: bytes) -> tuple[bytes | None, DurabilityToken]:
        with self._lock:
            if not data:
                self._check_writable()
                return self.core.root, DurabilityToken(self.written_seq, self)
            seq = self.insert_group([data])[0][0]
            return self.core.root, DurabilityToken(seq, self)

    def insert_group(self, payloads: list[bytes]) -> list[tuple[int, int]]:
        """Append several validated, non-empty batches as one WAL write and one tree update.

        Each batch keeps its own WAL record (several, if it exceeds the record size limit;
        recovery keeps or drops them together); returns (seq, size after it) per batch,
        seq being the batch's last record. The group is atomic: if it raises, nothing
        changed (the batches are applied only once the WAL write succeeded).

        If it returns, the batches landed, even when an automatic checkpoint run inside it
        failed: a checkpoint that finds no space is retried at the next trigger; one whose
        sync failed poisons the tree, so every later call raises StorePoisoned, and so do
        the tokens' wait() unless their records were durable before the failure. Either
        way a caller never retries a batch that is in the tree.
        """
        with self._lock:
            self._check_writable()
            core = self.core
            data = b"".join(payloads)
            count = len(data) // NODE_SIZE
            core.check_room(count)
            old = core.size
            try:
                lengths = core.reserve(old + count)  # a full disk fails here, before the WAL
            except OSError as exc:
                # e.g. EFBIG from sizing a new shard under RLIMIT_FSIZE (levels.py raises
                # StorageFull itself only for fallocate)
                if wal.is_full_error(exc) and not isinstance(exc, StorageFull):
                    raise StorageFull(
                        exc.errno, f"{self.path}: cannot reserve space: {exc.strerror}"
                    ) from exc
                raise
            assert self._wal is not None
            seqs = self._wal.append_many(payloads)
            self._wal_seq = seqs[-1]
            if time.monotonic() - self._last_wait < self._eager_window:
                # Clients are waiting for durability, and will ask for a sync as soon as
                # this call returns: start it now, so the fdatasync runs while the batch
                # is hashed (both release the GIL). durable_seq still moves only once the
                # batch is applied too (below, or in the flusher).
                with self._cv:
                    self._sync_requested = True
                    self._cv.notify_all()
            core.apply(old, data, lengths)
            with self._cv:
                self.written_seq = seqs[-1]
                durable = min(self._wal_synced, self.written_seq)
            if durable > self.durable_seq:  # the early sync finished during the apply
                self._set_durable(durable)
            self._leaves_since_ckpt += count
            for hook in self._after_apply:
                hook(self)
            self._maybe_checkpoint()
            out = []
            size = old
            for seq, p in zip(seqs, payloads, strict=True):
                size += len(p) // NODE_SIZE
                out.append((seq, size))
            return out

    def add_apply_hook(self, hook: Callable[[RotorTree], None]) -> None:
        """Call `hook(tree)` after every applied batch (under the ingest lock): publication."""
        self._after_apply.append(hook)

    def add_durable_hook(self, hook: Callable[[int], None]) -> None:
        """Call `hook(seq)` whenever the durable sequence advances.

        Calls never overlap and their values never decrease (publish them as they come).
        """
        self._on_durable.append(hook)

    def add_poison_hook(self, hook: Callable[[StorePoisoned], None]) -> None:
        """Call `hook(error)` once, from the failing thread, when the tree gets poisoned."""
        self._on_poison.append(hook)

    def _on_poisoned(self, err: StorePoisoned) -> None:
        with self._cv:
            self._cv.notify_all()  # every waiter re-checks and raises
        for hook in self._on_poison:
            hook(err)

    def request_sync(self) -> None:
        """Ask the flusher to fsync now instead of at the end of its interval (a client
        waits for durability: the next batches' syncs start at their WAL writes)."""
        with self._cv:
            self._sync_requested = True
            self._last_wait = time.monotonic()
            self._cv.notify_all()

    def _maybe_checkpoint(self) -> None:
        policy = self.config.checkpoint_policy
        assert self._wal is not None
        if (policy.kind == "every_n_entries" and self._leaves_since_ckpt >= policy.value) or (
            policy.kind == "memory_threshold" and self._wal.size >= policy.value
        ):
            # The batch is already in the WAL and applied: the insert has succeeded and must
            # not report failure (a caller retrying it would insert it twice). A checkpoint
            # that finds no space (or fails to write) is retried at the next trigger; the
            # WAL holds everything meanwhile, and an explicit checkpoint() still raises. A
            # failed sync has poisoned the tree: the tokens and every later call say so.
            # A backup holding checkpoints off puts it off to the next trigger.
            with contextlib.suppress(OSError, StorePoisoned):
                self._checkpoint_if_free()

    # -- durability -------------------------------------------------------------------------

    @property
    def flush_error(self) -> BaseException | None:
        """Why the background flusher stopped early (then nothing new becomes durable)."""
        return self._flush_error

    def _flusher_main(self) -> None:
        """The flusher thread: whatever kills the loop is recorded, never lost with the thread."""
        try:
            self._flush_loop()
        except BaseException as exc:  # noqa: BLE001 - every waiter and the daemon must hear
            with self._cv:
                if self._flush_error is None:
                    self._flush_error = exc
                self._cv.notify_all()

    def _flush_loop(self) -> None:
        interval = self.config.flush_policy.seconds
        while True:
            with self._cv:
                if not (self._sync_requested or self._stopping):
                    self._cv.wait(interval)
                self._sync_requested = False
                stopping = self._stopping
                target = max(self.written_seq, self._wal_seq)
                pending = target > self._wal_synced
            if pending and self._io.poisoned is None:
                try:
                    self._sync_to(target)
                except StorePoisoned:
                    pass  # the door poisoned the tree and woke every waiter
                except BaseException as exc:  # noqa: BLE001 - a flusher must never die silently
                    self._io.poison(exc, "the WAL flusher")
            if stopping or self._io.poisoned is not None:
                return

    def _sync_to(self, target: int) -> None:
        wal_ = self._wal
        assert wal_ is not None
        wal_.sync()  # raises StorePoisoned (and poisons) if the fdatasync fails
        with self._cv:
            self._wal_synced = max(self._wal_synced, target)
            durable = min(self._wal_synced, self.written_seq)
        self._set_durable(durable)

    def _set_durable(self, seq: int) -> None:
        with self._cv:
            if seq <= self.durable_seq or self._io.poisoned is not None:
                return
            self.durable_seq = seq
            self._cv.notify_all()
        # Hooks publish outside the condition (they may be slow) but one at a time, each
        # with the latest value: a flusher preempted here can never publish its older
        # sequence after a checkpoint published a newer one.
        with self._durable_hooks_lock:
            latest = self.durable_seq
            for hook in self._on_durable:
                hook(latest)

    def _wait_durable(self, seq: int, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while self.durable_seq < seq:
                self._io.check()  # poisoned: this record will never become durable
                if self._flush_error is not None:  # the flusher died: nothing will sync
                    raise StorageFull(0, f"WAL flush failed: {self._flush_error}")
                if self._closed and self.durable_seq < seq:
                    return False
                self._sync_requested = True
                self._last_wait = time.monotonic()
                self._cv.notify_all()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(left)
            return True

    def flush(self) -> None:
        """fsync the WAL now: every record appended so far becomes durable.

        StorePoisoned if this (or any earlier) sync failed: nothing is claimed durable.
        """
        with self._lock:
            self._check_writable()
            self._sync_to(self.written_seq)

    # -- checkpoints ------------------------------------------------------------------------

    def checkpoint(self) -> ckpt.CheckpointMeta:
        """Make the shard files hold everything applied so far, then truncate the WAL.

        Costs work proportional to what changed since the previous checkpoint.
        """
        self._check_writable()
        # Waits while a backup holds checkpoints off (rotorshm/backup.py); taken before the
        # ingest lock, so that ingest goes on meanwhile.
        fd = try_lock_checkpoints(self.path, block=True)
        try:
            with self._lock:
                self._check_writable()
                return self._checkpoint_locked()
        finally:
            if fd is not None:
                os.close(fd)

    def _checkpoint_locked(self) -> ckpt.CheckpointMeta:
        """checkpoint() for a caller holding the ingest lock and checkpoint.lock."""
        try:
            return self._checkpoint()
        except OSError as exc:
            if wal.is_full_error(exc) and not isinstance(exc, StorageFull):
                raise StorageFull(exc.errno, f"checkpoint: {exc.strerror}") from exc
            raise

    def _checkpoint_if_free(self) -> bool:
        """Checkpoint now unless a backup holds checkpoints off (then False: try later).

        For callers holding the ingest lock, which must never wait for a backup.
        """
        self._check_writable()
        fd = try_lock_checkpoints(self.path, block=False)
        if fd is None:
            return False
        try:
            self._checkpoint_locked()
        finally:
            os.close(fd)
        return True

    def backup(self, path: str | os.PathLike[str], progress: bool = False,
               verify: bool = False) -> BackupResult:
        """Copy the tree to the new directory `path` while ingest goes on (online backup).

        The copy holds every leaf durable when the call began (and at most the leaves
        durable when it took its lock); it opens with `verify_checkpoint=True`. Checkpoints
        are held off while it copies; ingest is not. See rotorshm/backup.py.
        """
        from .backup import backup_tree

        self._check_open()
        return backup_tree(self.path, os.fspath(path), lambda: self.durable_seq,
                           progress=progress, verify=verify)

    def _checkpoint(self) -> ckpt.CheckpointMeta:
        core = self.core
        prev = self._ckpt
        if core.size == prev.size and prev.seq == self.written_seq:
            return prev
        for lvl, length in enumerate(core.lengths):
            level = core.levels[lvl]
            old_len = prev.lengths[lvl] if lvl < len(prev.lengths) else 0
            lo = max(old_len - 1, 0)
            directory = ckpt.level_dir(self.data_dir, lvl)
            if isinstance(level, ShmLevel):
                _write_pinned(directory, level, lo, length)
            else:
                assert isinstance(level, FileLevel)
                level.flush_range(lo, length)
            ckpt.write_crcs(directory, level, max(old_len - 1, 0), length - 1)
        meta = ckpt.CheckpointMeta(
            self.written_seq, core.size, core.root or b"", core.lengths, core.frontier
        )
        ckpt.write_meta(self.data_dir, meta, core.arity, core.max_depth, self._io)
        # Crash window: meta is durable but the WAL still holds its records; recovery
        # skips records with seq <= meta.seq, so truncating late is harmless.
        assert self._wal is not None
        self._wal.reset()
        self._ckpt = meta
        self._leaves_since_ckpt = 0
        with self._cv:  # the checkpoint holds every record up to meta.seq
            self._wal_synced = max(self._wal_synced, meta.seq)
        self._set_durable(meta.seq)
        return meta

    # -- snapshots --------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """O(depth) consistent view; stays valid while the tree grows (until close)."""
        self._check_open()
        return self.core.snapshot()

    # -- closing ----------------------------------------------------------------------------

    def close(self) -> None:
        """Flush, checkpoint if the policy says so, release segments and the lock. Idempotent.

        A poisoned tree releases everything, then raises StorePoisoned: records after
        `durable_seq` were not made durable by this writer (reopening recovers what the
        WAL on disk holds).
        """
        with self._lock:
            if self._closed:
                return
            try:
                if self._flusher is not None:
                    with self._cv:
                        self._stopping = True
                        self._cv.notify_all()
                    self._flusher.join()
                    self._flusher = None
                self._io.check()
                self._sync_to(self.written_seq)
                if self.config.checkpoint_policy.kind == "on_close" and \
                        not self._checkpoint_if_free():
                    # A backup holds checkpoints off: the WAL keeps the records instead,
                    # and the next open replays them (waiting would hold up the close).
                    _log.info("%s: closing without the on_close checkpoint: a backup is "
                              "running", self.path)
            finally:
                self._closed = True
                with self._cv:
                    self._cv.notify_all()
                self._release_resources()

    def _release_resources(self) -> None:
        if self._wal is not None:
            self._wal.close()
            self._wal = None
        for level in self.core.levels:
            if isinstance(level, ShmLevel):
                level.unlink()
        self.core.close()
        if self._file_lock.is_locked:
            self._file_lock.release()

    def __enter__(self) -> RotorTree:
        self._check_open()  # a closed tree cannot be re-entered
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"size={self.core.size}"
        return f"RotorTree({self.path!r}, arity={self.core.arity}, {state})"


_log = logging.getLogger("rotorshm")


def _dir_error(path: str, what: str, exc: OSError) -> RotorError:
    """The library's error for an OSError met while preparing a tree directory."""
    text = f"{path}: {what}: {exc.strerror or exc}"
    if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
        return AccessDenied(text)
    if wal.is_full_error(exc):
        return StorageFull(exc.errno, text)
    if exc.errno in (errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP, errno.EEXIST):
        return InvalidConfig(text)
    return RotorError(text)


def _make_tree_dir(path: str, io: DurableIO) -> None:
    """Create the tree directory if needed (each new entry fsynced into its parent); a
    clean error if `path` cannot be one."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise InvalidConfig(f"{path}: exists and is not a directory")
    try:
        io.makedirs(path)
    except OSError as exc:
        raise _dir_error(path, "cannot create the tree directory", exc) from None


def _write_pinned(directory: str, level: ShmLevel, start: int, end: int) -> None:
    """Copy nodes start..end-1 of a RAM level into its shard files and fdatasync them."""
    from .levels import SHARD_BYTES, shard_name

    io = level.io
    assert io is not None
    io.makedirs(directory)
    lo, hi = start * NODE_SIZE, end * NODE_SIZE
    while lo < hi:
        shard, off = divmod(lo, SHARD_BYTES)
        n = min(SHARD_BYTES - off, hi - lo)
        path = os.path.join(directory, shard_name(shard))
        fd = io.create_file(path, os.O_WRONLY)  # a new file's entry is fsynced at once
        try:
            data = level.read(lo // NODE_SIZE, n // NODE_SIZE)
            io.pwrite(fd, data, off, path)
            io.fdatasync(fd, path)
            # This copy is read only when the tree is reopened: its pages in the page
            # cache would just take room from the shard files that proofs fault in.
            if _FADV_DONTNEED is not None:
                os.posix_fadvise(fd, off, n, _FADV_DONTNEED)
        finally:
            os.close(fd)
        lo += n
