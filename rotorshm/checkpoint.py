"""The checkpoint files of DESIGN.md §3: header.bin, checkpoint.meta and per-chunk CRC files.

Each shard file `level_<l>/shard_<NNNN>.bin` has a sidecar `shard_<NNNN>.crc` holding one
CRC32C per 4 KiB chunk, for the chunks whose 128 nodes were all immutable at the
checkpoint (index < length - 1): the frontier node, and anything the writer appends
after the checkpoint, may legitimately differ on disk later. The frontier itself lives
in checkpoint.meta, which has its own CRC and is replaced atomically.

A CRC entry is written once, when its chunk is complete, and never rewritten: a partly
immutable last chunk gets no entry (recomputing the parents from the children at open
still checks it). Rewriting the last chunk's CRC at every checkpoint would open a crash
window: killed after the CRC files but before checkpoint.meta, the previous checkpoint
would no longer match its own CRCs and the tree could not be opened.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import crc32c

from . import _cpaths
from .durable_io import DurableIO
from .errors import ConfigMismatch, CorruptionError
from .hashing import NODE_SIZE, level_lengths
from .levels import CHUNK_BYTES, CHUNK_NODES, SHARD_CHUNKS, Level, shard_name

FORMAT_VERSION = 1
HEADER_FILE = "header.bin"
META_FILE = "checkpoint.meta"
_HEADER_MAGIC = b"RSHMHDR1"
_META_MAGIC = b"RSHMCKP1"
_HEADER = struct.Struct("<8sIHHII")
_META_HEAD = struct.Struct("<8sIHHQQ32sH")


def level_dir(data_dir: str, level: int) -> str:
    """Directory of level `level`'s shards."""
    return os.path.join(data_dir, f"level_{level}")


def crc_name(index: int) -> str:
    """File name of the CRC sidecar of shard `index`."""
    return f"shard_{index:04d}.crc"


def atomic_write(path: str, data: bytes, io: DurableIO | None = None) -> None:
    """Replace `path` with `data`: write a temp file, fsync, rename, fsync the directory."""
    (io or DurableIO(path)).atomic_write(path, data)


# -- header ---------------------------------------------------------------------------------

def write_header(data_dir: str, arity: int, max_depth: int, io: DurableIO | None = None) -> None:
    """Create header.bin for a new tree."""
    body = _HEADER.pack(_HEADER_MAGIC, FORMAT_VERSION, arity, max_depth, CHUNK_NODES, SHARD_CHUNKS)
    atomic_write(os.path.join(data_dir, HEADER_FILE),
                 body + struct.pack("<I", crc32c.crc32c(body)), io)


def _read_framed(path: str, min_body: int, what: str) -> bytes | None:
    """Body of a file that ends with a CRC32C of its body; None if the file is absent."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    if len(raw) < min_body + 4:
        raise CorruptionError(f"{path}: truncated {what} ({len(raw)} bytes)")
    body, (crc,) = raw[:-4], struct.unpack("<I", raw[-4:])
    if crc32c.crc32c(body) != crc:
        raise CorruptionError(f"{path}: {what} CRC mismatch")
    return body


@dataclass(frozen=True, slots=True)
class TreeHeader:
    """The fixed parameters of a tree directory, from header.bin."""

    version: int
    arity: int
    max_depth: int
    chunk_nodes: int
    shard_chunks: int


def read_header(data_dir: str) -> TreeHeader | None:
    """Load and validate header.bin (CRC, magic, version, geometry); None if absent."""
    path = os.path.join(data_dir, HEADER_FILE)
    body = _read_framed(path, _HEADER.size, "header")
    if body is None:
        return None
    if len(body) != _HEADER.size:
        raise CorruptionError(f"{path}: header is damaged (length {len(body) + 4})")
    magic, version, arity, max_depth, chunk_nodes, shard_chunks = _HEADER.unpack(body)
    if magic != _HEADER_MAGIC or version != FORMAT_VERSION:
        raise CorruptionError(f"{path}: not a rotorshm header (or unsupported version {version})")
    if (chunk_nodes, shard_chunks) != (CHUNK_NODES, SHARD_CHUNKS):
        raise ConfigMismatch(f"{path}: chunk geometry {chunk_nodes}x{shard_chunks} unsupported")
    return TreeHeader(version, arity, max_depth, chunk_nodes, shard_chunks)


def check_header(data_dir: str, arity: int, max_depth: int) -> bool:
    """Validate header.bin against the config; False if it does not exist yet."""
    header = read_header(data_dir)
    if header is None:
        return False
    path = os.path.join(data_dir, HEADER_FILE)
    if header.arity != arity:
        raise ConfigMismatch(
            f"{path}: directory has arity {header.arity}, config asks for {arity}"
        )
    if header.max_depth != max_depth:
        raise ConfigMismatch(
            f"{path}: directory has max_depth {header.max_depth}, config asks for {max_depth}"
        )
    return True


# -- checkpoint.meta ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CheckpointMeta:
    """The last checkpoint: WAL sequence it covers, size, root, level lengths and frontier."""

    seq: int
    size: int
    root: bytes
    lengths: tuple[int, ...]
    frontier: tuple[bytes, ...]

    def encode(self, arity: int, max_depth: int) -> bytes:
        """Serialised form with a trailing CRC32C."""
        body = b"".join([
            _META_HEAD.pack(_META_MAGIC, FORMAT_VERSION, arity, max_depth, self.seq, self.size,
                            self.root, len(self.lengths)),
            struct.pack(f"<{len(self.lengths)}Q", *self.lengths),
            *self.frontier,
        ])
        return body + struct.pack("<I", crc32c.crc32c(body))


def write_meta(data_dir: str, meta: CheckpointMeta, arity: int, max_depth: int,
               io: DurableIO | None = None) -> None:
    """Atomically replace checkpoint.meta."""
    atomic_write(os.path.join(data_dir, META_FILE), meta.encode(arity, max_depth), io)


def read_meta(data_dir: str, arity: int) -> CheckpointMeta | None:
    """Load and validate checkpoint.meta; None if no checkpoint was ever taken."""
    path = os.path.join(data_dir, META_FILE)
    body = _read_framed(path, _META_HEAD.size, "checkpoint")
    if body is None:
        return None
    magic, version, m_arity, _depth, seq, size, root, nlev = _META_HEAD.unpack_from(body)
    if magic != _META_MAGIC or version != FORMAT_VERSION or m_arity != arity:
        raise CorruptionError(f"{path}: bad magic, version or arity in checkpoint")
    if len(body) != _META_HEAD.size + nlev * (8 + NODE_SIZE):
        raise CorruptionError(f"{path}: checkpoint length does not match its level count")
    off = _META_HEAD.size
    lengths = struct.unpack_from(f"<{nlev}Q", body, off)
    off += 8 * nlev
    frontier = tuple(body[off + i * NODE_SIZE : off + (i + 1) * NODE_SIZE] for i in range(nlev))
    if lengths != level_lengths(size, arity) or (frontier and frontier[-1] != root):
        raise CorruptionError(f"{path}: checkpoint lengths or root inconsistent with its size")
    return CheckpointMeta(seq, size, root, lengths, frontier)


# -- chunk CRCs -----------------------------------------------------------------------------

def _chunk_crcs(level: Level, first_chunk: int, immutable_end: int) -> bytes:
    """CRC32C of the complete chunks first_chunk.. below `immutable_end`, packed u32."""
    packed = _cpaths.chunk_crcs(level, first_chunk, immutable_end // CHUNK_NODES - first_chunk)
    if packed is not None:
        return packed
    out = []
    c = first_chunk
    while (c + 1) * CHUNK_NODES <= immutable_end:
        out.append(crc32c.crc32c(level.read(c * CHUNK_NODES, CHUNK_NODES)))
        c += 1
    return struct.pack(f"<{len(out)}I", *out)


def write_crcs(directory: str, level: Level, old_end: int, new_end: int) -> None:
    """Add the CRCs of chunks completed by immutable nodes old_end..new_end-1; fdatasync them.

    Entries of chunks already complete at `old_end` are never touched (see the module doc).
    """
    first = old_end // CHUNK_NODES
    if new_end // CHUNK_NODES <= first:
        return
    io = level.io or DurableIO(directory)
    packed = _chunk_crcs(level, first, new_end)
    io.makedirs(directory)
    count = len(packed) // 4
    c = first
    while c < first + count:
        shard, within = divmod(c, SHARD_CHUNKS)
        n = min(SHARD_CHUNKS - within, first + count - c)
        path = os.path.join(directory, crc_name(shard))
        fd = io.create_file(path, os.O_WRONLY)  # a new file's entry is fsynced at once
        try:
            piece = packed[(c - first) * 4 : (c - first + n) * 4]
            io.pwrite(fd, piece, within * 4, path)
            io.fdatasync(fd, path)
        finally:
            os.close(fd)
        c += n


def verify_crcs(directory: str, level: Level, immutable_end: int) -> None:
    """Check the CRC of every complete chunk below `immutable_end`; CorruptionError names the file.

    The partly immutable last chunk has no CRC; the parent recomputation at open covers it.
    """
    chunks = immutable_end // CHUNK_NODES
    for shard in range(-(-chunks // SHARD_CHUNKS)):
        path = os.path.join(directory, crc_name(shard))
        first = shard * SHARD_CHUNKS
        n = min(SHARD_CHUNKS, chunks - first)
        try:
            with open(path, "rb") as f:
                stored = f.read(n * 4)
        except FileNotFoundError:
            raise CorruptionError(f"{path}: missing chunk CRC file") from None
        if len(stored) != n * 4:
            raise CorruptionError(f"{path}: holds {len(stored) // 4} CRCs, {n} expected")
        packed = _cpaths.chunk_crcs(level, first, n)
        if packed == stored:
            continue
        want = struct.unpack(f"<{n}I", stored)
        for i in range(n):
            got = crc32c.crc32c(level.read((first + i) * CHUNK_NODES, CHUNK_NODES))
            if got != want[i]:
                shard_path = os.path.join(directory, shard_name(shard))
                raise CorruptionError(
                    f"{shard_path}: chunk {i} (offset {i * CHUNK_BYTES}) fails its CRC"
                )
