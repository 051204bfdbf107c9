"""The write-ahead log: CRC32C-framed leaf batches with consecutive sequence numbers.

Record layout (little-endian): crc32c u32 | payload length u32 | seq u64 | payload.
The CRC covers length, seq and payload. A record is durable once fdatasync'd.

Crash windows: an append interrupted by a crash leaves a torn tail (a short or
checksum-failing last record), which recovery truncates. A bad record *followed by a
valid one* cannot come from a torn append: it is corruption, reported with the file and
offset, never silently dropped together with the durable records after it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import crc32c

from .errors import CorruptionError, StorageFull

HEADER = struct.Struct("<IIQ")
MAX_PAYLOAD = 1 << 30
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def is_full_error(exc: OSError) -> bool:
    """True if an OSError means "no space left" (disk full, quota, file size limit)."""
    return exc.errno in _FULL_ERRNOS


def encode_record(seq: int, payload: bytes) -> bytes:
    """One framed record."""
    body = HEADER.pack(0, len(payload), seq)[4:] + payload
    return struct.pack("<I", crc32c.crc32c(body)) + body


@dataclass(frozen=True, slots=True)
class Record:
    """A decoded WAL record: its sequence number, payload and byte offset in the file."""

    seq: int
    payload: bytes
    offset: int


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What a scan of the log found: the valid records and where the valid prefix ends."""

    records: list[Record]
    end: int
    torn_bytes: int


def _record_at(buf: bytes | memoryview, off: int) -> tuple[int, int] | None:
    """(seq, end) of a valid record at `off`, or None."""
    if off + HEADER.size > len(buf):
        return None
    crc, length, seq = HEADER.unpack_from(buf, off)
    end = off + HEADER.size + length
    if length > MAX_PAYLOAD or end > len(buf):
        return None
    if crc32c.crc32c(buf[off + 4 : end]) != crc:
        return None
    return seq, end


def scan(path: str, first_seq: int | None = None, data: bytes | None = None) -> ScanResult:
    """Read and validate the whole log; raise CorruptionError for damage that is not a torn tail.

    `first_seq`, when known, is the sequence the first record may carry at the earliest
    (it only sharpens the search for records surviving behind a damaged one).
    """
    if data is None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return ScanResult([], 0, 0)
    mv = memoryview(data)
    records: list[Record] = []
    off = 0
    prev_seq: int | None = None
    while off < len(data):
        found = _record_at(mv, off)
        if found is None:
            _check_torn_tail(path, mv, off, prev_seq + 1 if prev_seq is not None else first_seq)
            break
        seq, end = found
        if prev_seq is not None and seq != prev_seq + 1:
            raise CorruptionError(
                f"{path}: record at offset {off} has sequence {seq}, expected {prev_seq + 1}"
            )
        records.append(Record(seq, bytes(mv[off + HEADER.size : end]), off))
        prev_seq = seq
        off = end
    end = records[-1].offset + HEADER.size + len(records[-1].payload) if records else 0
    return ScanResult(records, end, len(data) - end)


def _check_torn_tail(path: str, mv: memoryview, off: int, expect: int | None) -> None:
    """Raise if a valid record follows the bad one at `off` (then it is not a torn tail).

    Sequences are consecutive, so a surviving later record carries one of the next few
    sequence numbers after `expect` (the bad record's expected sequence); we search for
    those 8-byte values and check whether a valid record is framed around them.
    """
    data = bytes(mv)
    if not data[off:].strip(b"\0"):
        return  # a zero-filled tail (unwritten blocks after a crash) hides no record
    seeds = set()
    if expect is not None:
        seeds.add(expect)
    if off + HEADER.size <= len(data):
        seeds.add(HEADER.unpack_from(data, off)[2])  # the bad record's own seq field
    for base in seeds:
        for seq in range(base, min(base + 64, 1 << 64)):  # a garbage seq field may be ~2**64
            needle = struct.pack("<Q", seq)
            pos = data.find(needle, off + 1)
            while pos != -1:
                start = pos - 8
                if start > off and _record_at(mv, start) is not None:
                    raise CorruptionError(
                        f"{path}: invalid record at offset {off} followed by a valid record "
                        f"(sequence {seq}) at offset {start}: the log is corrupt, not torn"
                    )
                pos = data.find(needle, pos + 1)


class WriteAheadLog:
    """Appends records at the end of the valid log and fsyncs on demand.

    Not thread-safe for appends (the tree serialises them); `sync` may run concurrently
    with appends from another thread, and covers every append that returned before it.
    """

    def __init__(self, path: str, end: int, next_seq: int) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if os.fstat(self._fd).st_size != end:
            os.ftruncate(self._fd, end)
            os.fsync(self._fd)
        self._end = end
        self.next_seq = next_seq

    @property
    def size(self) -> int:
        """Bytes of valid log."""
        return self._end

    def append(self, payload: bytes) -> int:
        """Write one record; return its sequence number. Not durable until `sync`."""
        return self.append_many([payload])

    def append_many(self, payloads: list[bytes]) -> int:
        """Write one record per payload in a single write; return the first sequence number.

        A short or failed write is undone (the log is cut back to its previous end) so a
        full disk never leaves a half record in front of later ones.
        """
        seq = self.next_seq
        rec = b"".join(encode_record(seq + i, p) for i, p in enumerate(payloads))
        try:
            n = os.pwrite(self._fd, rec, self._end)
            if n != len(rec):
                raise OSError(errno.ENOSPC, "short write to the write-ahead log")
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._end)
            if is_full_error(exc):
                raise StorageFull(exc.errno, f"{self.path}: {exc.strerror}") from exc
            raise
        self._end += len(rec)
        self.next_seq = seq + len(payloads)
        return seq

    def sync(self) -> None:
        """fdatasync: every record appended before the call is durable when it returns."""
        os.fdatasync(self._fd)

    def reset(self) -> None:
        """Empty the log after a checkpoint made its records redundant (sequence numbers go on)."""
        os.ftruncate(self._fd, 0)
        os.fsync(self._fd)
        self._end = 0

    def records(self) -> Iterator[Record]:
        """Every valid record currently in the log (for inspection)."""
        yield from scan(self.path).records

    def close(self) -> None:
        """Close the file descriptor (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
