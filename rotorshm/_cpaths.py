"""Typed wrapper over the path walks of the C helper (csrc/tree_ops.c).

The single-leaf append, inclusion and consistency proofs gathered straight from level
storage into the binary encoding, and their verification run in C, one call each. The
Python algorithms in tree.py, snapshot.py and proof.py stay as the tested reference: they
run when ``ROTORSHM_KERNEL=python`` and inside :func:`python_paths` (tests, benchmarks).

What C is handed, and how it is kept safe:

* a level is a :class:`RegionTable` beside ``Level._regions``: an ``rs_level`` struct with a
  table of region base pointers. Tables only grow (a larger copy is published, the old one
  is kept), every region buffer is held (``ffi.from_buffer``) until the level is closed,
  and closing sets ``closed`` first, so C refuses a closed level instead of reading
  memory that has gone. C checks every node index against the published region count.
* a snapshot is an ``rs_view`` built once per snapshot (:func:`make_view`): lengths,
  frontier copy and the levels' structs; the view keeps their tables alive.
* every index and size is checked here before the call; C re-checks and never writes
  before its checks pass.
"""

from __future__ import annotations

import struct
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from rotorshm._native import ffi, lib

from . import kernel as _kernel
from .errors import IndexOutOfRange, InvalidProof, TreeClosed

if TYPE_CHECKING:
    from .levels import Level
    from .shm import EpochGuard

NODE: Final[int] = 32
HEAD: Final[int] = 84
VIEW_LEVELS: Final[int] = int(lib.RS_VIEW_LEVELS)
E_ARG: Final[int] = int(lib.RS_E_ARG)
E_CLOSED: Final[int] = int(lib.RS_E_CLOSED)
E_UNMAPPED: Final[int] = int(lib.RS_E_UNMAPPED)
E_RESERVE: Final[int] = int(lib.RS_E_RESERVE)
E_MALFORMED: Final[int] = int(lib.RS_E_MALFORMED)
E_STALE: Final[int] = int(lib.RS_E_STALE)

# Output buffers that C fills before Python reads them: skip zeroing.
alloc = ffi.new_allocator(should_clear_after_alloc=False)

_WHY: Final[dict[int, str]] = {
    int(lib.RS_WHY_SHORT): "too short",
    int(lib.RS_WHY_VERSION): "unsupported proof format version",
    int(lib.RS_WHY_KIND): "wrong proof kind byte",
    int(lib.RS_WHY_ARITY): "arity out of range",
    int(lib.RS_WHY_LEVELS): "too many levels",
    int(lib.RS_WHY_LEVEL_TRUNCATED): "truncated in a level header",
    int(lib.RS_WHY_COUNTS): "level counts exceed the arity",
    int(lib.RS_WHY_HASHES_TRUNCATED): "truncated inside a hash list",
    int(lib.RS_WHY_TRAILING): "trailing bytes after the last level",
}


def malformed(why: int, what: str, data: bytes) -> InvalidProof:
    """The InvalidProof for an encoding that rs_parse_proof rejected with `why`."""
    detail = _WHY.get(why, f"malformed (code {why})")
    if why == int(lib.RS_WHY_VERSION):
        detail += f" {data[0]}"
    elif why == int(lib.RS_WHY_KIND):
        detail += f" 0x{data[1]:02x}"
    elif why in (int(lib.RS_WHY_ARITY), int(lib.RS_WHY_LEVELS)):
        detail += f" ({data[2] if why == int(lib.RS_WHY_ARITY) else data[83]})"
    return InvalidProof(f"{what}: {detail} ({len(data)} bytes)")


# -- which implementation runs ------------------------------------------------------------


class _Switch:
    __slots__ = ("python",)

    def __init__(self) -> None:
        self.python = False


_switch = _Switch()
_kstate = _kernel._state
_switch_lock = threading.Lock()


def native() -> bool:
    """True when the path walks run in C (not the python kernel, not forced off)."""
    return not (_kstate.python or _switch.python)


def native_over(levels: Sequence[object]) -> bool:
    """True when the path walks may run in C over `levels`: native(), and levels whose
    regions hold every node (`Level.in_place`). A level that overrides read/write
    (recovery's held edges, offline overlays, a remote client's tiles) must see every
    access, so it gets the Python algorithm. All levels of a tree are of one kind, so the
    first one answers for all."""
    if _kstate.python or _switch.python:
        return False
    return not levels or bool(getattr(levels[0], "in_place", False))


@contextmanager
def python_paths() -> Iterator[None]:
    """Run the Python reference algorithms inside the block (node hashes still go through
    the kernel in use). Process-wide: for tests and benchmarks that compare the two."""
    with _switch_lock:
        before = _switch.python
        _switch.python = True
    try:
        yield
    finally:
        _switch.python = before


# -- level storage ------------------------------------------------------------------------


class RegionTable:
    """The C view of one level's regions: an rs_level struct and its pointer table.

    Grown under the same rule as ``Level._regions`` (append only, regions never move);
    every table published stays alive with this object, so a C call in another thread
    that loaded the previous table still reads valid pointers.
    """

    __slots__ = ("c", "_table", "_cap", "_count", "_keep", "_bufs")

    def __init__(self, region_bytes: int) -> None:
        shift = region_bytes.bit_length() - 1
        if region_bytes <= 0 or 1 << shift != region_bytes or region_bytes < NODE:
            raise ValueError(f"region size must be a power of two >= 32, got {region_bytes}")
        self.c = ffi.new("rs_level *")
        self.c.shift = shift
        self._cap = 0
        self._count = 0
        self._table: Any = ffi.NULL
        self._keep: list[Any] = []  # every table published
        self._bufs: list[Any] = []  # ffi.from_buffer of every region: holds the buffer

    def add(self, region: memoryview) -> None:
        """Publish one more region (the next in the level's order)."""
        if self.c.closed:
            return  # a closed level's table stays closed; close() made a fresh one
        buf = ffi.from_buffer("uint8_t[]", region)
        if self._count == 0:
            self.c.writable = 0 if region.readonly else 1
        elif region.readonly:
            self.c.writable = 0
        if self._count == self._cap:
            cap = max(16, self._cap * 2)
            table = ffi.new("uint8_t *[]", cap)
            if self._count:
                ffi.memmove(table, self._table, self._count * ffi.sizeof("uint8_t *"))
            self._keep.append(table)
            self._table = table
            self._cap = cap
        self._table[self._count] = buf
        self._bufs.append(buf)
        self._count += 1
        lib.rs_level_publish(self.c, self._table, self._count)

    def set_ready(self, nodes: int) -> None:
        """Nodes 0..nodes-1 have reserved storage (the writer's single-leaf path checks it)."""
        self.c.ready = nodes

    def close(self) -> None:
        """Refuse every later C call on this level, then let go of the region buffers."""
        lib.rs_level_close(self.c)
        for buf in self._bufs:
            ffi.release(buf)
        self._bufs.clear()


# -- snapshots ----------------------------------------------------------------------------


class View:
    """A snapshot as C sees it (rs_view), with what must outlive it (its region tables and
    the epoch guard whose word C reads)."""

    __slots__ = ("c", "cap", "keep", "guard")

    def __init__(self, c: Any, cap: int, keep: tuple[RegionTable, ...],
                 guard: EpochGuard | None = None) -> None:
        self.c = c
        self.cap = cap
        self.keep = keep
        self.guard = guard


def make_view(
    levels: Sequence[Level], arity: int, size: int, lengths: tuple[int, ...],
    frontier: tuple[bytes, ...], guard: EpochGuard | None = None,
) -> View:
    """The rs_view of a non-empty snapshot; maps (read-only readers) every region it covers.

    With a `guard`, every proof gathered from the view is checked against its epoch after
    gathering: RS_E_STALE (StaleSnapshot) instead of nodes a restarted writer may have
    replaced."""
    nl = len(lengths)
    if not 1 <= nl <= VIEW_LEVELS or len(frontier) != nl or len(levels) < nl:
        raise IndexOutOfRange(f"a snapshot of {nl} levels cannot be handed to C")
    tables = []
    for lvl in range(nl):
        level = levels[lvl]
        if level._ctab.c.closed:
            raise TreeClosed(f"level {lvl} of this snapshot's tree is closed")
        if level.capacity < lengths[lvl]:
            level.map_through(lengths[lvl])
        tables.append(level._ctab)
    v = ffi.new("rs_view *")
    v.arity = arity
    v.nlevels = nl
    v.size = size
    v.lengths[0:nl] = lengths
    front = b"".join(frontier)
    ffi.memmove(v.frontier, front, len(front))
    v.levels[0:nl] = [t.c for t in tables]
    v.guard = ffi.NULL if guard is None else guard.word
    return View(v, int(lib.rs_proof_capacity(arity, nl - 1)), tuple(tables), guard)


def _failed(rc: int, what: str, view: View) -> Exception:
    if rc == E_STALE and view.guard is not None:
        return view.guard.error(int(view.c.size))
    if rc == E_CLOSED:
        return TreeClosed(f"{what}: the tree's storage is closed")
    return IndexOutOfRange(f"{what}: refused by the C helper (code {rc})")


# Output buffers C encodes proofs into, reused: a list's pop and append are atomic, so a
# buffer is never shared by two threads, nor by a signal handler and the code it interrupted.
_OUT_BYTES: Final[int] = 8192
_out_pool: list[Any] = []
_unpack = ffi.unpack
_rs_inclusion_proof = lib.rs_inclusion_proof
_rs_consistency_proof = lib.rs_consistency_proof


def _take(cap: int) -> Any:
    if cap <= _OUT_BYTES:
        try:
            return _out_pool.pop()
        except IndexError:
            return alloc("char[]", _OUT_BYTES)
    return alloc("char[]", cap)  # large arities: a buffer of its own


def inclusion_bytes(view: View, index: int, size: int) -> bytes:
    """Encoded inclusion proof (arguments checked by the caller)."""
    cap = view.cap
    out = _take(cap)
    n = _rs_inclusion_proof(view.c, index, size, out, cap)
    if n < 0:
        raise _failed(n, f"inclusion proof of leaf {index} at size {size}", view)
    enc: bytes = _unpack(out, n)
    if cap <= _OUT_BYTES:
        _out_pool.append(out)
    return enc


def consistency_bytes(view: View, old_size: int, new_size: int) -> bytes:
    """Encoded consistency proof (arguments checked by the caller)."""
    cap = view.cap
    out = _take(cap)
    n = _rs_consistency_proof(view.c, old_size, new_size, out, cap)
    if n < 0:
        raise _failed(n, f"consistency proof {old_size} -> {new_size}", view)
    enc: bytes = _unpack(out, n)
    if cap <= _OUT_BYTES:
        _out_pool.append(out)
    return enc


# -- the writer's single-leaf append ------------------------------------------------------


class Appender:
    """The C single-leaf append state of a TreeCore (an rs_appender: the level structs as
    one array, and a per-level cache of the right edge's group prefix), and its output
    buffers. ``c`` is what ``rs_append_one`` takes; the cache is this writer's alone."""

    __slots__ = ("c", "count", "keep", "frontier", "lengths", "frontier_buf", "lengths_buf")

    def __init__(self, arity: int) -> None:
        self.c = ffi.new("rs_appender *")
        lib.rs_appender_reset(self.c)
        self.c.arity = arity
        self.count = 0
        self.keep: list[RegionTable] = []
        # The outputs of both appends (rs_append_one writes them inside the struct).
        self.frontier = self.c.frontier
        self.lengths = self.c.lengths
        # Buffers over the outputs, read with FRONTIER[n] / LENGTHS[n].unpack_from.
        self.frontier_buf = ffi.buffer(self.frontier)
        self.lengths_buf = ffi.buffer(self.lengths)

    def sync(self, levels: Sequence[Level], reset: bool = False) -> None:
        """Point at the current region tables of `levels` (after new levels or a reopen).

        A level that is not the one it was, or `reset` (the levels now hold another tree,
        as after a restore), empties the prefix cache: no entry outlives that. The same
        levels grown by regions keep it (TreeCore.reserve calls this for every batch)."""
        n = min(len(levels), VIEW_LEVELS)
        tables = [levels[i]._ctab for i in range(n)]
        keep = self.keep
        if (not reset and n >= len(keep)
                and all(t is k for t, k in zip(tables, keep, strict=False))):
            if n > len(keep):
                self.c.levels[len(keep):n] = [t.c for t in tables[len(keep):]]
                self.keep = tables
                self.count = self.c.nlevels = n
            return
        self.c.levels[0:n] = [t.c for t in tables]
        lib.rs_appender_reset(self.c)
        self.keep = tables
        self.count = self.c.nlevels = n


#: Per level count n: the structs that read n frontier nodes / n lengths as one tuple.
FRONTIER: Final[list[struct.Struct]] = [struct.Struct("32s" * n)
                                        for n in range(VIEW_LEVELS + 1)]
LENGTHS: Final[list[struct.Struct]] = [struct.Struct(f"={n}Q") for n in range(VIEW_LEVELS + 1)]


# -- verification -------------------------------------------------------------------------


def check_parse(data: bytes, kind: int, what: str) -> None:
    """Raise InvalidProof unless `data` is a well-formed encoding of `kind`."""
    why = lib.rs_parse_proof(data, len(data), kind)
    if why:
        raise malformed(why, what, data)


# -- recovery's checks and the checkpoint's CRCs --------------------------------------------

_LITTLE: Final[bool] = sys.byteorder == "little"


def chunk_crcs(level: Level, first: int, count: int) -> bytes | None:
    """CRC32C of chunks first..first+count-1 of `level`, packed u32 little-endian, computed
    in C straight from its regions (GIL released); None where C does not see the level
    (the caller then reads it through Python)."""
    if count <= 0 or not _LITTLE or not native_over((level,)):
        return None
    out = alloc("uint32_t[]", count)
    if lib.rs_level_chunk_crcs(level._ctab.c, first, count, out) != 0:
        return None
    packed: bytes = ffi.buffer(out)[:]
    return packed


def check_parents(below: Level, above: Level, arity: int, plo: int, phi: int,
                  clen: int) -> int | None:
    """Recompute parents plo..phi-1 from `below` (clen nodes) and compare with `above`:
    -1 if all match, else the first parent that differs; None where C does not see the
    levels."""
    if plo >= phi or not native_over((below,)) or not native_over((above,)):
        return None if plo < phi else -1
    bad = ffi.new("uint64_t *")
    rc = lib.rs_check_parents(below._ctab.c, above._ctab.c, arity, plo, phi, clen, bad)
    if rc < 0:
        return None
    return int(bad[0]) if rc else -1
