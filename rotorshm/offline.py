"""Offline inspection of a tree directory: header, checkpoint, WAL, root verification.

Never takes the writer's lock and never writes: shard files are read with pread, and the
WAL is replayed into an in-memory overlay over the checkpointed levels.
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import Any

from . import checkpoint as ckpt
from .config import ProgressCallback
from .errors import CorruptionError, IndexOutOfRange, RotorError
from .hashing import NODE_SIZE
from .levels import SHARD_BYTES, Level, shard_name


class DiskLevel(Level):
    """Read-only view of one level's shard files through pread: no mmap, never writes.

    Shard files of pinned levels are only as long as what was checkpointed, so they
    cannot be mapped whole; a short read means the shard lost data (CorruptionError).
    """

    __slots__ = ("directory", "_fds")

    def __init__(self, level: int, directory: str) -> None:
        super().__init__(level, 1)
        self.directory = directory
        self._fds: dict[int, int] = {}

    def _open_region(self, index: int, create: bool) -> memoryview:
        raise NotImplementedError("DiskLevel reads with pread")

    def _fd(self, shard: int) -> int:
        fd = self._fds.get(shard)
        if fd is None:
            path = os.path.join(self.directory, shard_name(shard))
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise CorruptionError(f"{path}: shard missing for a checkpointed level") from None
            self._fds[shard] = fd
        return fd

    def reserve(self, nodes: int) -> None:
        """Read-only: nothing to reserve."""

    def read(self, start: int, count: int) -> bytes:
        """Nodes start..start+count-1 from the shard files."""
        lo, hi = start * NODE_SIZE, (start + count) * NODE_SIZE
        parts = []
        while lo < hi:
            shard, off = divmod(lo, SHARD_BYTES)
            n = min(SHARD_BYTES - off, hi - lo)
            got = os.pread(self._fd(shard), n, off)
            if len(got) != n:
                path = os.path.join(self.directory, shard_name(shard))
                raise CorruptionError(
                    f"{path}: shard ends at offset {off + len(got)}, but the checkpoint needs "
                    f"{off + n} bytes"
                )
            parts.append(got)
            lo += n
        return b"".join(parts)

    def node(self, index: int) -> bytes:
        """Node `index`."""
        return self.read(index, 1)

    def write(self, start: int, data: bytes | memoryview) -> None:
        """Refused: inspection never writes."""
        raise RotorError(f"level {self.level}: the on-disk view is read-only")

    def close(self) -> None:
        """Close the shard files."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


class OverlayLevel(Level):
    """A level seen as checkpointed on disk, with WAL-replayed nodes kept in memory on top.

    Nodes below the checkpoint's last one come from the shard files, the last from the
    checkpoint's frontier, and everything the replay writes (always a contiguous tail)
    from memory; so replaying a WAL costs memory for the WAL only, whatever the tree size.
    """

    __slots__ = ("_base", "_base_len", "_frontier", "_tail_start", "_tail")

    def __init__(self, level: int, base: Level | None, base_len: int, frontier: bytes) -> None:
        super().__init__(level, 1)
        self._base = base
        self._base_len = base_len if base is not None else 0
        self._frontier = frontier
        self._tail_start = 0
        self._tail: bytearray | None = None

    def _open_region(self, index: int, create: bool) -> memoryview:
        raise NotImplementedError("OverlayLevel has no regions")

    def reserve(self, nodes: int) -> None:
        """Memory grows on write: nothing to reserve."""

    def read(self, start: int, count: int) -> bytes:
        """Nodes start..start+count-1, from the tail, the frontier or the shard files."""
        end = start + count
        tail = self._tail
        ts = self._tail_start if tail is not None else end
        parts = []
        pos = start
        stop = min(end, ts, self._base_len - 1)
        if pos < stop:
            assert self._base is not None
            parts.append(self._base.read(pos, stop - pos))
            pos = stop
        if pos < min(end, ts) and pos == self._base_len - 1:
            parts.append(self._frontier)
            pos += 1
        if pos < end:
            if tail is None or pos < ts or (end - ts) * NODE_SIZE > len(tail):
                raise IndexOutOfRange(f"level {self.level}: node {pos} was never written")
            parts.append(bytes(tail[(pos - ts) * NODE_SIZE : (end - ts) * NODE_SIZE]))
        return b"".join(parts)

    def node(self, index: int) -> bytes:
        """Node `index`."""
        return self.read(index, 1)

    def write(self, start: int, data: bytes | memoryview) -> None:
        """Keep `data` in memory as nodes start..; earlier nodes stay as they were."""
        if self._tail is None:
            self._tail_start, self._tail = start, bytearray()
        elif start < self._tail_start:
            self._tail[:0] = self.read(start, self._tail_start - start)
            self._tail_start = start
        tail_end = self._tail_start + len(self._tail) // NODE_SIZE
        if start > tail_end:
            self._tail += self.read(tail_end, start - tail_end)
        off = (start - self._tail_start) * NODE_SIZE
        self._tail[off : off + len(data)] = data

    def close(self) -> None:
        """Close the shard files and drop the tail."""
        if self._base is not None:
            self._base.close()
        self._tail = None


def lock_holder(path: str) -> int | None:
    """Pid of the process holding a flock on `path`, from /proc/locks (Linux); None if free.

    Passive: it never takes the lock, so it cannot make a starting writer fail.
    """
    try:
        st = os.stat(path)
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->":  # "->" marks a blocked waiter
            continue
        try:
            major, minor, ino = fields[5].split(":")
            if (int(major, 16), int(minor, 16), int(ino)) == want:
                return int(fields[4])
        except ValueError:
            continue
    return None


def disk_usage(path: str) -> tuple[int, int]:
    """(apparent, real) bytes of the regular files under `path`: their st_size and
    st_blocks. Shard files are sparse (256 MiB apparent each), so the two differ widely."""
    apparent = real = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                apparent += st.st_size
                real += st.st_blocks * 512
    return apparent, real


def _read_or_none(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


class NotATree(RotorError):
    """The inspected path exists but is not (and never was) a tree directory."""


def torn_tail_note(path: str, scan: Any, verb: str = "dropped") -> str:
    """One line telling what a torn WAL tail holds: file, offset, bytes and leaves dropped."""
    from .wal import HEADER, MAX_PAYLOAD

    end, torn = scan.end, scan.torn_bytes
    head = b""
    with contextlib.suppress(OSError), open(path, "rb") as f:
        f.seek(end)
        head = f.read(HEADER.size)
    if len(head) < HEADER.size:
        what = "an incomplete record header, no whole leaf"
    elif not any(head):
        what = "zero-filled, no record"
    else:
        _crc, length, seq = HEADER.unpack(head)
        if length % NODE_SIZE or length > MAX_PAYLOAD:
            what = "a damaged record header, no whole leaf"
        else:
            k = length // NODE_SIZE
            what = (f"the record of seq {seq} with {k} lea{'f' if k == 1 else 'ves'}, "
                    f"incomplete or failing its checksum")
    return (f"{path}: {verb} a torn last record at offset {end}: {torn} bytes, {what} "
            f"(an append a crash interrupted: it was never durable)")


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, RotorError) and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def _inspect_once(path: str, report: dict[str, Any], progress: ProgressCallback | None) -> None:
    """One pass of inspect_tree; fills `report` and raises on the first problem."""
    from . import recovery, wal
    from .store import DATA_DIR, WAL_FILE
    from .tree import TreeCore

    data_dir = os.path.join(path, DATA_DIR)
    header_path = os.path.join(data_dir, ckpt.HEADER_FILE)
    if not os.path.lexists(path):
        raise NotATree(f"{path}: no such file or directory")
    if not os.path.isdir(path):
        raise NotATree(f"{path}: not a directory")
    entries = os.listdir(path)  # PermissionError: unreadable, not corrupt
    apparent, real = disk_usage(path)
    report["disk"] = {"apparent_bytes": apparent, "real_bytes": real}
    header = ckpt.read_header(data_dir)  # CRC, magic, version and geometry
    if header is None:
        if not entries:
            raise NotATree(f"{path}: an empty directory, not a rotorshm tree")
        if not {DATA_DIR, WAL_FILE} & set(entries):
            raise NotATree(f"{path}: not a rotorshm tree directory (no {DATA_DIR}/ "
                           f"{ckpt.HEADER_FILE} nor {WAL_FILE})")
        raise CorruptionError(f"{header_path}: missing (the directory holds a tree's files)")
    arity = header.arity
    report["header"] = {"arity": arity, "max_depth": header.max_depth,
                        "version": header.version, "chunk_nodes": header.chunk_nodes,
                        "shard_chunks": header.shard_chunks}

    meta = ckpt.read_meta(data_dir, arity)
    after = meta.seq if meta is not None else 0
    report["checkpoint"] = None if meta is None else {
        "seq": meta.seq, "size": meta.size, "root": meta.root.hex() if meta.root else None,
        "depth": max(len(meta.lengths) - 1, 0), "lengths": list(meta.lengths),
    }

    wal_path = os.path.join(path, WAL_FILE)
    scan = wal.scan(wal_path, first_seq=after + 1)
    for rec in scan.records:
        if len(rec.payload) % NODE_SIZE:
            raise CorruptionError(
                f"{wal_path}: record at offset {rec.offset} is not a whole number of leaves"
            )
    live = [r for r in scan.records if r.seq > after]
    report["wal"] = {
        "bytes": scan.end + scan.torn_bytes,
        "records": len(scan.records),
        "first_seq": scan.records[0].seq if scan.records else None,
        "last_seq": scan.records[-1].seq if scan.records else None,
        "leaves": sum(len(r.payload) for r in live) // NODE_SIZE,
        "stale_records": len(scan.records) - len(live),
        "torn_bytes": scan.torn_bytes,
    }
    if scan.torn_bytes:
        report["warnings"].append(torn_tail_note(wal_path, scan, "recovery will drop"))

    lengths = meta.lengths if meta is not None else ()
    frontier = meta.frontier if meta is not None else ()

    def new_level(lvl: int) -> Level:
        if lvl < len(lengths):
            return OverlayLevel(lvl, DiskLevel(lvl, ckpt.level_dir(data_dir, lvl)),
                                lengths[lvl], frontier[lvl])
        return OverlayLevel(lvl, None, 0, b"")

    core = TreeCore(arity, header.max_depth, new_level)
    try:
        if meta is not None and meta.size:
            core.restore(meta.size, meta.frontier)
            recovery.verify(core, data_dir, meta, progress)
            report["verify"] = {"levels": len(meta.lengths), "nodes": sum(meta.lengths),
                                "root": meta.root.hex(), "result": "ok"}
        else:
            report["verify"] = {"levels": 0, "nodes": 0, "root": None,
                                "result": "no checkpoint to verify"}
        last = recovery.replay(core, scan, after, wal_path, progress)
        report["replay"] = {"seq": last, "size": core.size, "depth": core.depth,
                            "root": core.root.hex() if core.root else None}
    finally:
        core.close()


def _problem(exc: BaseException) -> str:
    """What kind of failure `exc` is: not_a_tree, unreadable or corrupt."""
    if isinstance(exc, NotATree):
        return "not_a_tree"
    if isinstance(exc, OSError) and not isinstance(exc, RotorError):
        return "unreadable"  # permissions, I/O errors: the files may well be fine
    return "corrupt"


def inspect_tree(path: str, progress: ProgressCallback | None = None,
                 attempts: int = 5) -> dict[str, Any]:
    """Check a tree directory read-only and return a JSON-ready report (`ok`, `error`, ...).

    Reads the header, checkpoint and WAL; verifies the chunk CRCs and recomputes every
    checkpointed level up to the root; replays the WAL in memory on top. It takes no
    lock and writes nothing, so it also works beside a running writer; then a
    checkpoint taken mid-inspection can make the files disagree, and the inspection is
    repeated (up to `attempts` times) while checkpoint.meta keeps changing.

    `problem` tells a failure's kind: "not_a_tree" (missing, not a directory, empty or
    without a tree's files), "unreadable" (permissions, I/O) or "corrupt". `warnings`
    lists what recovery would drop (a torn WAL tail) although the tree is OK.
    """
    from .store import DATA_DIR, LOCK_FILE

    path = os.path.abspath(path)
    pid = lock_holder(os.path.join(path, LOCK_FILE))
    report: dict[str, Any] = {"directory": path, "writer": {"running": pid is not None,
                                                             "pid": pid}}
    meta_path = os.path.join(path, DATA_DIR, ckpt.META_FILE)
    attempt = 0
    for attempt in range(1, attempts + 1):  # noqa: B007 - reported below
        before = _read_or_none(meta_path)
        report["warnings"] = []
        try:
            _inspect_once(path, report, progress)
        except (RotorError, OSError) as exc:
            report["ok"] = False
            report["error"] = _error_text(exc)
            report["problem"] = _problem(exc)
            if pid is None or _read_or_none(meta_path) == before:
                break
        else:
            report["ok"] = True
            report["error"] = None
            report["problem"] = None
            break
    report["attempts"] = attempt
    return report
