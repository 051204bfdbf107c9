"""Online backup: a consistent, durable, sparse copy of a tree while its writer ingests.

What can change under a copy, and how the backup keeps it still (DESIGN.md §3, "Online
backup"):

* A **checkpoint** rewrites checkpoint.meta, writes new nodes and CRCs into the shard files
  (pinned levels) and truncates the WAL. Every checkpoint holds `checkpoint.lock`
  exclusively (fcntl.flock, so it works across processes: the daemon and a `rotorshm
  backup` run beside it); the backup holds it shared for the whole copy. A checkpoint
  that falls due meanwhile is put off (an automatic one is retried at the next insert,
  close() skips its own; an explicit `checkpoint()` waits): ingest never waits for a
  backup, the WAL just grows a little longer than usual.
* **Ingest** goes on: records are appended to the WAL, and file-tier levels are written in
  place through the writer's mapping. But every node below a level's last one at the
  checkpoint is immutable (DESIGN.md §1), so the shard bytes the checkpoint covers do not
  change; the last node of each level comes from checkpoint.meta, not from the shard.
  The WAL is only appended to, so its records up to the durable sequence read once the
  lock is held are complete and final.

So the copy is: header.bin and checkpoint.meta as they are, each level's shard bytes below
its last checkpointed node (only that used prefix is read and written; a copied shard gets
its source's apparent size, so it stays as sparse as the original) and the CRC entries of
its complete chunks, and the WAL up to the end of the last record durable when the copy
began (the live writer's durable sequence, read from the tree or its control block; for a
tree without a live writer, every valid record, as its recovery would keep). Opening the
copy replays that WAL tail. Everything is written through a DurableIO door into a temporary
directory beside OUT, fsynced file by file and directory by directory, and renamed to OUT
at the end (then OUT's parent is fsynced).

Recovery of a starting writer may cut a torn tail or stale records off the WAL without
the lock; neither removes a record the copy needs, and a WAL read that a concurrent
change made inconsistent is read again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from . import checkpoint as ckpt
from . import wal
from .durable_io import DurableIO
from .errors import AccessDenied, CorruptionError, InvalidConfig, RotorError
from .hashing import NODE_SIZE
from .levels import CHUNK_NODES, SHARD_BYTES, SHARD_CHUNKS, shard_name
from .offline import disk_usage
from .progress import ProgressBar, progress_bar

#: The lock every checkpoint takes exclusively and a backup shared (beside wal.lock).
CHECKPOINT_LOCK_FILE = "checkpoint.lock"
_COPY_STEP = 4 << 20  # bytes per read/write while copying
_WAL_READS = 3  # attempts at a consistent WAL read (a starting writer may be cutting it)

#: Returns the writer's durable WAL sequence, or None when no live writer is known.
DurableSeq = Callable[[], "int | None"]


@dataclass(frozen=True)
class BackupResult:
    """What a backup copied."""

    source: str
    path: str
    size: int
    """Leaves the copy holds (checkpoint plus the WAL records copied)."""
    checkpoint_size: int
    seq: int
    """The last WAL sequence the copy holds."""
    durable_seq: int | None
    """The writer's durable sequence the WAL copy was cut at (None: no live writer)."""
    wal_records: int
    bytes_copied: int
    apparent_bytes: int
    real_bytes: int
    source_apparent_bytes: int
    source_real_bytes: int
    seconds: float
    lock_wait_seconds: float
    root: str | None = None
    """The copy's root, when it was verified."""

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON-ready dict."""
        return asdict(self)


@contextlib.contextmanager
def hold_checkpoints(tree_dir: str) -> Iterator[float]:
    """Hold `checkpoint.lock` shared: no checkpoint runs until the block ends.

    Waits for a checkpoint in progress to finish; yields the seconds it waited.
    """
    path = os.path.join(tree_dir, CHECKPOINT_LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except PermissionError:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise AccessDenied(f"{path}: cannot create the lock that holds off checkpoints "
                               f"during the backup") from None
    try:
        t0 = time.monotonic()
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield time.monotonic() - t0
    finally:
        os.close(fd)  # releases the lock


def try_lock_checkpoints(tree_dir: str, block: bool) -> int | None:
    """Writer: take `checkpoint.lock` exclusively; return its fd (close it to release), or
    None when `block` is False and a backup holds it.

    Each call opens the file anew: flock belongs to an open file description, so two
    threads of one process exclude each other too.
    """
    path = os.path.join(tree_dir, CHECKPOINT_LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if block else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_destination(out: str, source: str) -> str:
    """Validate OUT before anything is done: absolute path; InvalidConfig if unusable."""
    if not out:
        raise InvalidConfig("the backup destination is empty")
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    if os.path.lexists(out):
        if not os.path.isdir(out) or os.path.islink(out):
            raise InvalidConfig(f"{out}: exists and is not a directory (the backup creates "
                                f"OUT itself)")
        if os.listdir(out):
            raise InvalidConfig(f"{out}: exists and is not empty; the backup will not "
                                f"overwrite it")
    if not os.path.isdir(parent):
        raise InvalidConfig(f"{out}: directory {parent} does not exist")
    real_src = os.path.realpath(source)
    real_out = os.path.realpath(out)
    if real_out == real_src or real_out.startswith(real_src + os.sep):
        raise InvalidConfig(f"{out}: the backup cannot go inside the tree it copies")
    return out


def _check_source(source: str) -> ckpt.TreeHeader:
    from .store import DATA_DIR

    if not os.path.isdir(source):
        raise InvalidConfig(f"{source}: no such tree directory")
    header = ckpt.read_header(os.path.join(source, DATA_DIR))
    if header is None:
        raise InvalidConfig(f"{source}: not a rotorshm tree directory (no "
                            f"{DATA_DIR}/{ckpt.HEADER_FILE})")
    return header


class _Copier:
    """Writes the copy's files through one DurableIO door, counting bytes for the bar."""

    def __init__(self, root: str, bar: ProgressBar) -> None:
        self.root = root
        self.io = DurableIO(root)
        self.bar = bar
        self.copied = 0

    def write_file(self, rel: str, data: bytes | None = None, src: str | None = None,
                   nbytes: int = 0, apparent: int = 0) -> None:
        """Create `rel` with `data`, or the first `nbytes` of `src`, sized to at least
        `apparent` bytes (a hole); fsync it (a new entry's directory is fsynced too)."""
        path = os.path.join(self.root, rel)
        self.io.makedirs(os.path.dirname(path))
        fd = self.io.create_file(path, os.O_WRONLY)
        try:
            if data is not None:
                self.io.pwrite(fd, data, 0, path)
                self._advance(len(data))
                nbytes = len(data)
            elif nbytes:
                assert src is not None
                sfd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    pos = 0
                    while pos < nbytes:
                        chunk = os.pread(sfd, min(_COPY_STEP, nbytes - pos), pos)
                        if not chunk:
                            raise CorruptionError(f"{src}: ends at offset {pos}, but the "
                                                  f"checkpoint needs {nbytes} bytes")
                        self.io.pwrite(fd, chunk, pos, path)
                        pos += len(chunk)
                        self._advance(len(chunk))
                finally:
                    os.close(sfd)
            if apparent > nbytes:
                self.io.ftruncate(fd, apparent, path)
            self.io.fsync(fd, path)
        finally:
            os.close(fd)

    def _advance(self, n: int) -> None:
        self.copied += n
        self.bar.update(n)


def _wal_prefix(wal_path: str, after: int, durable: int | None) -> tuple[bytes, int, int]:
    """(bytes, records, last seq) of the WAL the copy holds: every record up to `durable`
    (None: every valid one). Nothing when the checkpoint already covers them."""
    last_error: CorruptionError | None = None
    for _ in range(_WAL_READS):
        try:
            with open(wal_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        try:
            scan = wal.scan(wal_path, first_seq=after + 1, data=data)
        except CorruptionError as exc:  # a starting writer cutting its tail meanwhile?
            last_error = exc
            continue
        keep = [r for r in scan.records if durable is None or r.seq <= durable]
        if durable is not None and durable > after and (not keep or keep[-1].seq != durable):
            have = scan.records[-1].seq if scan.records else None
            raise RotorError(f"{wal_path}: the writer reports sequence {durable} durable, but "
                             f"the log holds records up to {have}")
        if not keep or keep[-1].seq <= after:
            return b"", 0, after
        end = keep[-1].offset + wal.HEADER.size + len(keep[-1].payload)
        return data[:end], sum(1 for r in keep if r.seq > after), keep[-1].seq
    assert last_error is not None
    raise last_error


def backup_tree(source: str, out: str, durable_seq: DurableSeq | None = None,
                progress: bool = False, verify: bool = False) -> BackupResult:
    """Copy the tree in `source` to the new directory `out` while its writer runs.

    `durable_seq` tells the live writer's durable WAL sequence (RotorTree.backup passes
    the tree's own; the CLI reads the daemon's control block); without it, or when it
    returns None, the copy takes every valid WAL record. `verify` checks the copy as
    `rotorshm inspect` does (chunk CRCs, every level recomputed, WAL replayed) before it
    is renamed into place. See the module doc for what the copy holds.
    """
    from .store import DATA_DIR, WAL_FILE

    started = time.monotonic()
    source = os.path.abspath(source)
    header = _check_source(source)
    out = check_destination(out, source)
    parent = os.path.dirname(out)
    try:
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.backup-", dir=parent)
    except OSError as exc:
        raise AccessDenied(f"{parent}: cannot create the backup's temporary directory: "
                           f"{exc.strerror}") from None
    data_dir = os.path.join(source, DATA_DIR)
    try:
        with hold_checkpoints(source) as waited:
            meta_raw = b""
            with contextlib.suppress(FileNotFoundError), \
                    open(os.path.join(data_dir, ckpt.META_FILE), "rb") as f:
                meta_raw = f.read()
            meta = ckpt.read_meta(data_dir, header.arity)  # validated: CRC, lengths, root
            after = meta.seq if meta is not None else 0
            durable = durable_seq() if durable_seq is not None else None
            wal_bytes, records, last = _wal_prefix(os.path.join(source, WAL_FILE), after,
                                                   durable)
            # Everything to copy, checkpoint-covered only: (relative path, nbytes, source)
            plan: list[tuple[str, int, str]] = []
            lengths = meta.lengths if meta is not None else ()
            for lvl, length in enumerate(lengths):
                rel_dir = os.path.join(DATA_DIR, f"level_{lvl}")
                immutable = (length - 1) * NODE_SIZE  # the last node comes from the meta
                for shard in range(-(-immutable // SHARD_BYTES)):
                    n = min(SHARD_BYTES, immutable - shard * SHARD_BYTES)
                    plan.append((os.path.join(rel_dir, shard_name(shard)), n, source))
                chunks = (length - 1) // CHUNK_NODES
                for shard in range(-(-chunks // SHARD_CHUNKS)):
                    n = min(SHARD_CHUNKS, chunks - shard * SHARD_CHUNKS) * 4
                    plan.append((os.path.join(rel_dir, ckpt.crc_name(shard)), n, source))
            total = sum(n for _, n, _ in plan) + len(wal_bytes) + len(meta_raw)
            bar = progress_bar(total, "backup", progress and total >= 1 << 20, unit="B")
            try:
                copier = _Copier(tmp, bar)
                with open(os.path.join(data_dir, ckpt.HEADER_FILE), "rb") as f:
                    copier.write_file(os.path.join(DATA_DIR, ckpt.HEADER_FILE), f.read())
                for rel, n, _ in plan:
                    src = os.path.join(source, rel)
                    copier.write_file(rel, src=src, nbytes=n, apparent=os.stat(src).st_size)
                if meta_raw:
                    copier.write_file(os.path.join(DATA_DIR, ckpt.META_FILE), meta_raw)
                copier.write_file(WAL_FILE, wal_bytes)
            finally:
                bar.close()
        # The checkpoint lock is released: the rest touches only the copy.
        io = copier.io
        for d in sorted({os.path.dirname(os.path.join(tmp, rel)) for rel, _, _ in plan}
                        | {os.path.join(tmp, DATA_DIR), tmp}, reverse=True):
            io.fsync_dir(d)
        root = None
        if verify:
            from .offline import inspect_tree

            report = inspect_tree(tmp)
            if not report["ok"]:
                raise CorruptionError(f"the copy failed verification: {report['error']}")
            root = report["replay"]["root"]
        try:
            io.replace(tmp, out)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise InvalidConfig(f"{out}: appeared (not empty) during the backup; the "
                                    f"copy was not put there") from None
            raise
        tmp = ""
        io.fsync_dir(parent)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    apparent, real = disk_usage(out)
    src_apparent, src_real = disk_usage(source)
    size = (meta.size if meta is not None else 0) + (
        sum(len(r.payload) for r in wal.scan("", first_seq=after + 1, data=wal_bytes).records
            if r.seq > after) // NODE_SIZE)
    return BackupResult(
        source=source, path=out, size=size,
        checkpoint_size=meta.size if meta is not None else 0, seq=last, durable_seq=durable,
        wal_records=records, bytes_copied=copier.copied, apparent_bytes=apparent,
        real_bytes=real, source_apparent_bytes=src_apparent, source_real_bytes=src_real,
        seconds=time.monotonic() - started, lock_wait_seconds=waited, root=root,
    )
