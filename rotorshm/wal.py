"""The write-ahead log: CRC32C-framed leaf batches with consecutive sequence numbers.

Record layout (little-endian): crc32c u32 | payload length u32 | seq u64 | payload.
The CRC covers length, seq and payload. A record is durable once fdatasync'd.

Crash windows: an append interrupted by a crash leaves a torn tail (a short or
checksum-failing last record), which recovery truncates. A bad record *followed by a
valid one* cannot come from a torn append: it is corruption, reported with the file and
offset, never silently dropped together with the durable records after it.

Large batches: a payload may hold at most MAX_PAYLOAD bytes. A batch larger than that is
written as several consecutive records; every record but the last has the CONTINUED bit
set in its length word. Recovery treats such a run as one batch: a run whose last record
is missing (the log ends, or is torn, inside it) is dropped as a whole, like a torn
record. Logs without split batches have the same bytes as before this bit existed.

Every write, truncate and sync goes through the store's DurableIO (durable_io.py).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import crc32c

from ._native import ffi, lib
from .durable_io import DurableIO, is_full_error
from .errors import CorruptionError, StorageFull

__all__ = ["MAX_PAYLOAD", "Record", "ScanResult", "WriteAheadLog", "encode_record",
           "is_full_error", "scan", "split_payload"]

HEADER = struct.Struct("<IIQ")
_CRC = struct.Struct("<I")
#: Buffers one writev takes at most (Linux IOV_MAX); a larger group is joined first.
_IOV_MAX = 1024
#: Largest payload of one record (tests scale it down to exercise split batches).
MAX_PAYLOAD = 1 << 30
#: Bit of the length word: more records of the same batch follow this one.
CONTINUED = 1 << 31
_LEAF = 32
#: How many sequences after each seed the search behind a damaged record looks for.
_SEQ_WINDOW = 64


def record_header(seq: int, payload: bytes | memoryview, continued: bool = False) -> bytes:
    """The 16 bytes that frame `payload` as a record: CRC32C (over the rest of the header and
    the payload), length word, sequence. Written in front of the payload, which is not copied."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"record payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    word = len(payload) | (CONTINUED if continued else 0)
    rest = HEADER.pack(0, word, seq)[4:]
    return _CRC.pack(crc32c.crc32c(payload, crc32c.crc32c(rest))) + rest


def encode_record(seq: int, payload: bytes | memoryview, continued: bool = False) -> bytes:
    """One framed record."""
    return record_header(seq, payload, continued) + payload


def split_payload(payload: bytes) -> list[memoryview]:
    """`payload` cut into record payloads of at most MAX_PAYLOAD bytes, whole leaves each."""
    step = max(MAX_PAYLOAD - MAX_PAYLOAD % _LEAF, _LEAF)
    if len(payload) <= step:
        return [memoryview(payload)]
    mv = memoryview(payload)
    return [mv[i : i + step] for i in range(0, len(payload), step)]


@dataclass(frozen=True, slots=True)
class Record:
    """A decoded WAL record: its sequence number, payload and byte offset in the file."""

    seq: int
    payload: bytes
    offset: int
    continued: bool = False  # more records of the same batch follow


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What a scan of the log found: the valid records and where the valid prefix ends."""

    records: list[Record]
    end: int
    torn_bytes: int


def _record_at(buf: bytes | memoryview, off: int) -> tuple[int, int, bool] | None:
    """(seq, end, continued) of a valid record at `off`, or None."""
    if off + HEADER.size > len(buf):
        return None
    crc, word, seq = HEADER.unpack_from(buf, off)
    length = word & ~CONTINUED
    end = off + HEADER.size + length
    if length > MAX_PAYLOAD or end > len(buf):
        return None
    if crc32c.crc32c(buf[off + 4 : end]) != crc:
        return None
    return seq, end, bool(word & CONTINUED)


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
            _check_torn_tail(path, data, off, prev_seq + 1 if prev_seq is not None else first_seq)
            break
        seq, end, continued = found
        if prev_seq is not None and seq != prev_seq + 1:
            raise CorruptionError(
                f"{path}: record at offset {off} has sequence {seq}, expected {prev_seq + 1}"
            )
        records.append(Record(seq, bytes(mv[off + HEADER.size : end]), off, continued))
        prev_seq = seq
        off = end
    # A split batch whose last record never made it is torn as a whole: drop the run.
    while records and records[-1].continued:
        records.pop()
    end = records[-1].offset + HEADER.size + len(records[-1].payload) if records else 0
    return ScanResult(records, end, len(data) - end)


def _check_torn_tail(path: str, data: bytes, off: int, expect: int | None) -> None:
    """Raise if a valid record follows the bad one at `off` (then it is not a torn tail).

    Sequences are consecutive, so a surviving later record carries one of the next few
    sequence numbers after `expect` (the bad record's expected sequence) or after the bad
    record's own sequence field: a later offset framing a valid record with such a
    sequence means corruption. One pass of the C helper (csrc/wal_scan.c) applies every
    test of `_record_at`, CRC included, at each later offset whose sequence is in range,
    and `_record_at` checks the offset it returns again: the decision is the one a search
    offset by offset would make, at memory speed even over low-entropy garbage (where a
    search per sequence number hits every offset).
    """
    n = len(data)
    if data.count(0, off) == n - off:
        return  # a zero-filled tail (unwritten blocks after a crash) hides no record
    seeds = set()
    if expect is not None:
        seeds.add(expect)
    if off + HEADER.size <= n:
        seeds.add(HEADER.unpack_from(data, off)[2])  # the bad record's own seq field
    if not seeds:
        return
    ranges = sorted(seeds)
    lo = ffi.new("uint64_t[]", ranges)
    # a garbage seq field may be ~2**64: its range stops there
    hi = ffi.new("uint64_t[]", [min(base + _SEQ_WINDOW - 1, (1 << 64) - 1) for base in ranges])
    buf = ffi.from_buffer("uint8_t[]", data)
    mv = memoryview(data)
    pos = off + 1
    while True:
        start = int(lib.rs_wal_find_record(buf, n, pos, lo, hi, len(ranges), MAX_PAYLOAD))
        if start < 0:
            return
        if _record_at(mv, start) is not None:  # the same test, with the crc32c package
            seq = HEADER.unpack_from(data, start)[2]
            raise CorruptionError(
                f"{path}: invalid record at offset {off} followed by a valid record "
                f"(sequence {seq}) at offset {start}: the log is corrupt, not torn"
            )
        pos = start + 1  # pragma: no cover - the two CRCs agree (tests/test_wal_recovery.py)


class WriteAheadLog:
    """Appends records at the end of the valid log and fsyncs on demand.

    Not thread-safe for appends (the tree serialises them); `sync` may run concurrently
    with appends from another thread, and covers every append that returned before it.

    Opening creates the file (and fsyncs its directory) if needed, cuts it to `end`, and
    fdatasyncs it: records that a previous writer left in the page cache become durable
    here, before anyone may call them durable.
    """

    def __init__(self, path: str, end: int, next_seq: int, io: DurableIO) -> None:
        self.path = path
        self.io = io
        self._fd = io.create_file(path)
        try:
            if os.fstat(self._fd).st_size != end:
                io.ftruncate(self._fd, end, path)
                io.fsync(self._fd, path)
            else:
                io.fdatasync(self._fd, path)
        except BaseException:
            os.close(self._fd)
            raise
        self._end = end
        self.next_seq = next_seq

    @property
    def size(self) -> int:
        """Bytes of valid log."""
        return self._end

    def append(self, payload: bytes) -> int:
        """Write one batch; return its (last) sequence number. Not durable until `sync`."""
        return self.append_many([payload])[0]

    def append_many(self, payloads: list[bytes]) -> list[int]:
        """Write every payload (a batch) in a single write; return each batch's last sequence.

        A batch over MAX_PAYLOAD bytes takes several records (see the module doc), so it
        may use several sequence numbers; it is durable once its last one is.
        A short or failed write is undone (the log is cut back to its previous end) so a
        full disk never leaves a half record in front of later ones; if even the undo
        fails, the log's tail is unknown and the store is poisoned.
        """
        seq = self.next_seq
        parts: list[bytes | memoryview] = []
        lasts = []
        for payload in payloads:
            pieces = split_payload(payload)
            for k, piece in enumerate(pieces):
                parts.append(record_header(seq, piece, continued=k < len(pieces) - 1))
                parts.append(piece)  # headers and payloads go out in one writev, uncopied
                seq += 1
            lasts.append(seq - 1)
        total = sum(len(p) for p in parts)
        rec: bytes | list[bytes | memoryview] = parts if len(parts) <= _IOV_MAX else b"".join(parts)
        try:
            self.io.pwrite(self._fd, rec, self._end, self.path)
        except OSError as exc:
            try:
                self.io.ftruncate(self._fd, self._end, self.path)
            except OSError as undo:
                raise self.io.poison(undo, f"undoing a failed write of {self.path}") from exc
            if is_full_error(exc) and not isinstance(exc, StorageFull):
                raise StorageFull(exc.errno, f"{self.path}: {exc.strerror}") from exc
            raise
        self._end += total
        self.next_seq = seq
        return lasts

    def sync(self) -> None:
        """fdatasync: every record appended before the call is durable when it returns.

        A failure poisons the store (StorePoisoned): see durable_io.
        """
        self.io.fdatasync(self._fd, self.path)

    def reset(self) -> None:
        """Empty the log after a checkpoint made its records redundant (sequence numbers go on)."""
        self.io.ftruncate(self._fd, 0, self.path)
        self._end = 0  # the file is empty now, whatever the fsync says
        self.io.fsync(self._fd, self.path)

    def records(self) -> Iterator[Record]:
        """Every valid record currently in the log (for inspection)."""
        yield from scan(self.path).records

    def close(self) -> None:
        """Close the file descriptor (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
