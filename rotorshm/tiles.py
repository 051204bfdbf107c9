"""The tree as static tiles and a signed checkpoint (C2SP tlog-tiles / tlog-checkpoint shape).

Layout, shared by a live `rotorshm http --key` server and a `rotorshm tiles export` folder:

    checkpoint                      signed note (rotorshm.note): origin, size, base64 root,
                                    one shape line (`shape_line`)
    tile/<L>/<N>                    nodes 128·N … 128·N+127 of tree level L (4 KiB), final
    tile/<L>/<N>.p/<W>              the first W (1..127) nodes of that tile, all final

`<N>` is written in tlog-tiles' path encoding (`encode_index`: 1234067 -> x001/x234/067).
A tile holds only **final** nodes: node j of level L covers leaves j·arity^L …
(j+1)·arity^L − 1 and never changes once all of them exist, so a tree of `size` leaves has
`final_nodes(size, arity, L) = size // arity^L` final nodes on level L. The last node of a
level is final only when its subtree is complete; when it is not, it is in no tile, and a
client recomputes it from the level below (the right edge). So every tile, full or partial,
is immutable: its bytes are a function of its path alone. See docs/DESIGN.md §7.
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .errors import IndexOutOfRange, RotorError
from .hashing import MAX_ARITY, MIN_ARITY, NODE_SIZE
from .levels import CHUNK_NODES
from .note import Signer, Verifier
from .note import open as open_note
from .note import sign as sign_note
from .snapshot import Snapshot

TILE_NODES = CHUNK_NODES  # 128: one 4 KiB chunk of a level
TILE_BYTES = TILE_NODES * NODE_SIZE
MAX_LEVEL = 63
MAX_SIZE = 2**64 - 1
HASH_SCHEME = "blake3-leanimt"
CHECKPOINT_FILE = "checkpoint"
EMPTY_ROOT = bytes(NODE_SIZE)  # the root line of an empty tree (rotorshm has no root for it)


class InvalidCheckpoint(RotorError, ValueError):
    """A checkpoint's text is malformed, or names another log or another tree shape."""


class ExportError(RotorError):
    """An export folder holds another log (other key, other tree, or a larger tree)."""


# -- geometry --------------------------------------------------------------------------------

def final_nodes(size: int, arity: int, level: int) -> int:
    """Number of final (never changing) nodes of `level` in a tree of `size` leaves."""
    return size // int(arity**level)


def tile_stride(arity: int) -> int:
    """Levels per tile band: the largest h with arity**h dividing 128 (1 if none).

    A full tile of level k·h holds whole subtrees of height h−1 above it (its groups align
    with the tile), so a client fetches tiles of levels 0, h, 2h, … and hashes the levels
    between itself, as tlog-tiles does with its 8-level tiles.
    """
    h = 1
    while TILE_NODES % arity ** (h + 1) == 0:
        h += 1
    return h if TILE_NODES % arity == 0 else 1


def encode_index(index: int) -> str:
    """tlog-tiles' path form of a tile index: 1234067 -> 'x001/x234/067', 5 -> '005'."""
    if index < 0:
        raise ValueError(f"tile index {index} is negative")
    groups = []
    while True:
        index, rest = divmod(index, 1000)
        groups.append(f"{rest:03d}")
        if not index:
            break
    groups.reverse()
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def tile_path(level: int, index: int, width: int | None = None) -> str:
    """'tile/<L>/<N>[.p/<W>]' (relative: no leading slash)."""
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"tile level {level} outside 0..{MAX_LEVEL}")
    path = f"tile/{level}/{encode_index(index)}"
    if width is not None:
        if not 1 <= width < TILE_NODES:
            raise ValueError(f"a partial tile has 1..{TILE_NODES - 1} nodes, not {width}")
        path += f".p/{width}"
    return path


def _decimal(text: str, lo: int, hi: int) -> int | None:
    if not text or not text.isascii() or not text.isdigit() or len(text) > 20:
        return None
    if len(text) > 1 and text[0] == "0":  # no leading zeroes
        return None
    value = int(text)
    return value if lo <= value <= hi else None


def parse_tile_path(path: str) -> tuple[int, int, int | None] | None:
    """(level, index, width or None) of 'tile/<L>/<N>[.p/<W>]' (leading '/' allowed), else None.

    Strict: the canonical encoding only (so that one tile has one URL).
    """
    parts = path.lstrip("/").split("/")
    if len(parts) < 3 or parts[0] != "tile" or len(parts) > 12:
        return None
    level = _decimal(parts[1], 0, MAX_LEVEL)
    if level is None:
        return None
    rest = parts[2:]
    width: int | None = None
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        width = _decimal(rest[-1], 1, TILE_NODES - 1)
        if width is None:
            return None
        rest = rest[:-2] + [rest[-2][:-2]]
    index = 0
    for i, g in enumerate(rest):
        last = i == len(rest) - 1
        digits = g if last else g[1:]
        if (not last and not g.startswith("x")) or len(digits) != 3 or not digits.isdigit() \
                or not digits.isascii():
            return None
        index = index * 1000 + int(digits)
    if len(rest) > 1 and rest[0] == "x000":  # a leading zero group is not canonical
        return None
    return level, index, width


def _read_nodes(snap: Snapshot, level: int, start: int, count: int) -> bytes:
    """Nodes start..start+count-1 of `level`, all of index < the level's last node."""
    levels = getattr(snap, "_levels", None)  # the snapshot's own storage: one bulk read
    if levels is not None:
        data: bytes = levels[level].read(start, count)
        snap.check_stale()  # after the read: a restarted writer may have replaced them
        return data
    return b"".join(snap.get_node(level, i) for i in range(start, start + count))


def tile_data(snap: Snapshot, level: int, index: int, width: int | None = None) -> bytes:
    """The bytes of tile (level, index[, width]) of `snap`; IndexOutOfRange if not all final."""
    count = TILE_NODES if width is None else width
    if not 1 <= count <= TILE_NODES or level < 0 or index < 0:
        raise IndexOutOfRange(f"no tile {level}/{index} of width {count}")
    start = index * TILE_NODES
    final = final_nodes(snap.size, snap.arity, level)
    if start + count > final:
        raise IndexOutOfRange(f"tile {level}/{index} of width {count} needs {start + count} "
                              f"final nodes on level {level}; the tree has {final}")
    last = snap.level_len(level) - 1
    if start + count - 1 < last:
        return _read_nodes(snap, level, start, count)
    # The level's last node is final here: take it from the snapshot's own copy.
    return _read_nodes(snap, level, start, count - 1) + snap.get_node(level, last)


# -- checkpoints -----------------------------------------------------------------------------

def shape_line(arity: int) -> str:
    """The extension line that pins what no hash binds: arity, hash scheme, tile width."""
    return f"rotorshm arity={arity} hash={HASH_SCHEME} tile={TILE_NODES}"


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: origin (the log's name), size, root, arity."""

    origin: str
    size: int
    root: bytes
    arity: int

    def body(self) -> str:
        """The note text (C2SP tlog-checkpoint): origin, size, base64 root, shape line."""
        root = base64.b64encode(self.root).decode("ascii")
        return f"{self.origin}\n{self.size}\n{root}\n{shape_line(self.arity)}\n"

    @classmethod
    def of(cls, snap: Snapshot, origin: str) -> Checkpoint:
        """The checkpoint of a snapshot."""
        return cls(origin, snap.size, snap.root or EMPTY_ROOT, snap.arity)

    def sign(self, signer: Signer) -> str:
        """The signed checkpoint note."""
        return sign_note(self.body(), signer)


def parse_checkpoint(text: str, *, arity: int, origin: str | None = None) -> Checkpoint:
    """Parse a checkpoint body, expecting `arity`'s shape line (and `origin`, if given)."""
    if not MIN_ARITY <= arity <= MAX_ARITY:
        raise InvalidCheckpoint(f"arity {arity} outside {MIN_ARITY}..{MAX_ARITY}")
    if not text.endswith("\n"):
        raise InvalidCheckpoint("a checkpoint body ends in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise InvalidCheckpoint("a checkpoint has at least three non-empty lines")
    if origin is not None and lines[0] != origin:
        raise InvalidCheckpoint(f"checkpoint of log {lines[0][:80]!r}, expected {origin!r}")
    size = _decimal(lines[1], 0, MAX_SIZE)
    if size is None:
        raise InvalidCheckpoint(f"tree size {lines[1][:40]!r} is not a canonical decimal")
    try:
        root = base64.b64decode(lines[2].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidCheckpoint("the root line is not base64") from None
    if len(root) != NODE_SIZE or base64.b64encode(root).decode("ascii") != lines[2]:
        raise InvalidCheckpoint("the root line is not the canonical base64 of 32 bytes")
    if lines[3:] != [shape_line(arity)]:
        got = lines[3] if len(lines) > 3 else "(none)"
        raise InvalidCheckpoint(f"unexpected tree shape {got[:100]!r}: this verifier expects "
                                f"{shape_line(arity)!r} and no other extension line")
    if size == 0 and root != EMPTY_ROOT:
        raise InvalidCheckpoint("an empty tree's root line must be 32 zero bytes")
    return Checkpoint(lines[0], size, root, arity)


def open_checkpoint(note: str | bytes, verifier: Verifier | str, *, arity: int) -> Checkpoint:
    """Verify a signed checkpoint note and parse it (origin = the verifier's key name)."""
    v = verifier if isinstance(verifier, Verifier) else Verifier.from_text(verifier)
    return parse_checkpoint(open_note(note, v), arity=arity, origin=v.name)


# -- static export ---------------------------------------------------------------------------

@dataclass
class ExportResult:
    """What one export pass did."""

    size: int
    previous_size: int
    full_tiles: int
    partial_tiles: int
    bytes_written: int
    seconds: float


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Writer:
    """Writes tile files under `out` on a few threads, remembering what must be synced.

    Creating and syncing a file costs far more than writing 4 KiB, and those waits overlap
    well (the file system commits concurrent syncs together): WRITE_THREADS threads each
    create, write and fdatasync files, a batch of BATCH files at a time. Only this export's
    files are synced (not the whole file system, as syncfs would).
    """

    WRITE_THREADS = 32
    BATCH = 512

    def __init__(self, out: str) -> None:
        self.out = out
        self.dirs: set[str] = set()
        self.files: list[str] = []
        self.bytes = 0
        self._pending: list[tuple[str, bytes]] = []
        self._pool: ThreadPoolExecutor | None = None

    def write(self, rel: str, data: bytes) -> None:
        path = os.path.join(self.out, rel)
        parent = os.path.dirname(path)
        if parent not in self.dirs:
            os.makedirs(parent, mode=0o755, exist_ok=True)
            self.dirs.add(parent)
        self._pending.append((path, data))
        self.files.append(path)
        self.bytes += len(data)
        if len(self._pending) >= self.BATCH:
            self.drain()

    @staticmethod
    def _write_file(job: tuple[str, bytes]) -> None:
        path, data = job
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def drain(self) -> None:
        """Write every pending file (errors propagate)."""
        jobs, self._pending = self._pending, []
        if len(jobs) < 4:
            for job in jobs:
                self._write_file(job)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.WRITE_THREADS, thread_name_prefix="tiles")
        for _ in self._pool.map(self._write_file, jobs, chunksize=16):
            pass

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def sync(self) -> None:
        """Write (and sync) what is pending, then make the directory entries durable."""
        self.drain()
        if not self.files:
            return
        todo: set[str] = set()
        for d in self.dirs:  # each directory and its ancestors up to `out` (new entries)
            while d not in todo and len(d) > len(self.out):
                todo.add(d)
                d = os.path.dirname(d)
        if len(todo) < 4 or self._pool is None:
            for d in todo:
                _fsync_dir(d)
        else:
            for _ in self._pool.map(_fsync_dir, sorted(todo)):
                pass
        self.close()


def read_export_checkpoint(out: str, verifier: Verifier, arity: int) -> Checkpoint | None:
    """The checkpoint an export folder holds (verified), None if it holds none yet."""
    try:
        with open(os.path.join(out, CHECKPOINT_FILE), "rb") as f:
            raw = f.read(1 << 20)
    except FileNotFoundError:
        return None
    try:
        return open_checkpoint(raw, verifier, arity=arity)
    except RotorError as exc:
        raise ExportError(f"{out}: its checkpoint is not this log's ({exc})") from None


def _write_tiles(writer: _Writer, snap: Snapshot, old: int, first: bool
                 ) -> tuple[int, int, list[str]]:
    """Hand the tiles new since `old` leaves to `writer`: (full, partial, superseded .p dirs)."""
    arity = snap.arity
    full = partial = 0
    replaced: list[str] = []
    for level in range(max(snap.depth + 1, 1) if snap.size else 0):
        f_new = final_nodes(snap.size, arity, level)
        f_old = final_nodes(old, arity, level)
        for t in range(f_old // TILE_NODES, f_new // TILE_NODES):
            writer.write(tile_path(level, t), tile_data(snap, level, t))
            full += 1
            if t * TILE_NODES < f_old:  # it had a partial before: now superseded
                replaced.append(tile_path(level, t) + ".p")
        w = f_new % TILE_NODES
        if w and (f_new != f_old or first):
            t = f_new // TILE_NODES
            writer.write(tile_path(level, t, w), tile_data(snap, level, t, w))
            partial += 1
    return full, partial, replaced


def export(snap: Snapshot, out: str, signer: Signer) -> ExportResult:
    """Bring the static tile folder `out` up to `snap`, incrementally; the checkpoint last.

    Writes the tiles that are new or newly complete since the checkpoint `out` holds, makes
    them durable, then replaces `checkpoint` atomically (temporary file, fsync, rename,
    fsync of the folder), and only then removes the partial tiles that full ones replaced.
    Refuses (ExportError) a folder signed by another key, a smaller tree, or a tree whose
    root at the exported size differs (another tree).
    """
    started = time.perf_counter()
    os.makedirs(out, mode=0o755, exist_ok=True)
    arity = snap.arity
    prev = read_export_checkpoint(out, signer.verifier, arity)
    old = prev.size if prev is not None else 0
    if prev is not None:
        if snap.size < old:
            raise ExportError(f"{out} already holds a checkpoint of {old} leaves; the tree "
                              f"has {snap.size}: refusing to roll it back")
        if old and snap.root_at(old) != prev.root:
            raise ExportError(f"{out} holds a checkpoint of another tree (its root at "
                              f"{old} leaves differs)")
        if snap.size == old:
            return ExportResult(old, old, 0, 0, 0, time.perf_counter() - started)
    writer = _Writer(out)
    try:
        full, partial, replaced = _write_tiles(writer, snap, old, prev is None)
        writer.sync()
    finally:
        writer.close()
    note = Checkpoint.of(snap, signer.name).sign(signer)
    tmp = os.path.join(out, CHECKPOINT_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(note)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(out, CHECKPOINT_FILE))
    _fsync_dir(out)
    # A client holding an older checkpoint falls back to the full tile (same first nodes).
    for rel in replaced:
        shutil.rmtree(os.path.join(out, rel), ignore_errors=True)
    return ExportResult(snap.size, old, full, partial, writer.bytes + len(note),
                        time.perf_counter() - started)
