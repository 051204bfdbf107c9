"""Where a level's nodes live: 4 KiB chunks of 128 nodes, grouped in regions.

The tree algorithm only calls `reserve`, `read`, `write` and `node`; a level in RAM,
in mmap'd shard files or in shared-memory segments differs only in how a region is
obtained (`_open_region`). Regions are never moved once handed out, which is what lets
a snapshot keep reading immutable nodes while the writer appends.

Thread safety: any number of threads may read a level (through snapshots) while one
thread writes it; growing the region list (a writer's `reserve`, a reader mapping a
region it has not seen yet) happens under a per-level lock, so two threads never map the
same region index twice or append regions out of order.
"""

from __future__ import annotations

import mmap
import os
import threading
from abc import ABC, abstractmethod

from ._cpaths import RegionTable
from .durable_io import DurableIO
from .errors import IndexOutOfRange, StorageFull

NODE_SIZE = 32
CHUNK_NODES = 128
CHUNK_BYTES = NODE_SIZE * CHUNK_NODES
SHARD_CHUNKS = 65_536
SHARD_BYTES = CHUNK_BYTES * SHARD_CHUNKS


class Level(ABC):
    """One level's nodes, addressed by index, stored in regions of `region_chunks` chunks."""

    __slots__ = ("level", "region_chunks", "io", "_region_bytes", "_regions", "_ready",
                 "_grow_lock", "_ctab")

    #: True where `view` may hand out the regions themselves (read and write are the plain
    #: region copies below); a subclass that overrides read/write leaves it False.
    in_place = False

    def __init__(self, level: int, region_chunks: int, io: DurableIO | None = None) -> None:
        self.level = level
        self.region_chunks = region_chunks
        self.io = io  # the store's durable-I/O door (None: a level nobody persists)
        self._region_bytes = region_chunks * CHUNK_BYTES
        self._regions: list[memoryview] = []
        self._ready = 0  # nodes known to have storage: reserve() returns at once below it
        self._grow_lock = threading.Lock()
        # The same regions as C sees them (rotorshm._cpaths): grown with _regions.
        self._ctab = RegionTable(self._region_bytes)

    @abstractmethod
    def _open_region(self, index: int, create: bool) -> memoryview:
        """Return region `index` as a memoryview of `_region_bytes` bytes.

        With `create`, space must be really reserved (a full disk raises here, never
        later as a SIGBUS); without it, the region must already exist.
        """

    def close(self) -> None:
        """Drop every region view."""
        with self._grow_lock:
            self._ctab.close()  # C refuses this level from now on
            for mv in self._regions:
                mv.release()
            self._regions.clear()
            self._ready = 0

    @property
    def capacity(self) -> int:
        """Number of nodes the regions obtained so far can hold."""
        return len(self._regions) * self._region_bytes // NODE_SIZE

    def reserve(self, nodes: int) -> None:
        """Make sure nodes 0..nodes-1 have storage, allocating regions and space as needed."""
        if nodes <= self._ready:
            return
        need = -(-nodes * NODE_SIZE // self._region_bytes)
        regions = self._regions
        with self._grow_lock:
            while len(regions) < need:
                self._add_region(self._open_region(len(regions), True))
            self._allocate(nodes * NODE_SIZE)
            self._ready = nodes
            self._ctab.set_ready(self._storage_nodes())

    def _storage_nodes(self) -> int:
        """Nodes whose storage really exists: C's single-leaf append writes only below it."""
        return self.capacity

    def _add_region(self, region: memoryview) -> None:
        """Append a region to the Python list and to C's table (under _grow_lock)."""
        self._regions.append(region)
        self._ctab.add(region)

    def _allocate(self, nbytes: int) -> None:  # noqa: B027 - optional hook
        """Really reserve the first `nbytes` bytes of the level (no-op for process memory)."""

    def map_through(self, nodes: int) -> None:
        """Map (without creating) every region holding nodes 0..nodes-1, for readers."""
        if nodes > self.capacity:
            self._region((nodes - 1) * NODE_SIZE // self._region_bytes)

    def _region(self, index: int) -> memoryview:
        regions = self._regions
        if index < len(regions):
            return regions[index]
        with self._grow_lock:  # another thread may be mapping the same region right now
            while len(regions) <= index:
                self._add_region(self._open_region(len(regions), False))
            return regions[index]

    def read(self, start: int, count: int) -> bytes:
        """Nodes start..start+count-1 as one bytes object."""
        rb = self._region_bytes
        r, off = divmod(start * NODE_SIZE, rb)
        end = off + count * NODE_SIZE
        if end <= rb:
            try:
                return self._regions[r][off:end].tobytes()
            except IndexError:
                return self._region(r)[off:end].tobytes()
        parts = []
        left = count * NODE_SIZE
        while left:
            n = min(left, rb - off)
            parts.append(self._region(r)[off : off + n].tobytes())
            left -= n
            r += 1
            off = 0
        return b"".join(parts)

    def view(self, start: int, count: int) -> memoryview | None:
        """Nodes start..start+count-1 in place: a view into one region (writable where the
        level is), or None if they span two regions or the level is not `in_place`.

        For the writer's hashing, which reads children and writes parents without copies.
        """
        if not self.in_place:
            return None
        r, off = divmod(start * NODE_SIZE, self._region_bytes)
        end = off + count * NODE_SIZE
        if end > self._region_bytes or r >= len(self._regions):
            return None
        return self._regions[r][off:end]

    def sequential(self, on: bool) -> None:  # noqa: B027 - optional hook
        """Hint that the level is about to be read from start to end (True), or no longer
        (False); a no-op here."""

    def node(self, index: int) -> bytes:
        """Node `index` (32 bytes)."""
        r, off = divmod(index * NODE_SIZE, self._region_bytes)
        try:
            return self._regions[r][off : off + NODE_SIZE].tobytes()
        except IndexError:
            return self._region(r)[off : off + NODE_SIZE].tobytes()

    def write(self, start: int, data: bytes | memoryview) -> None:
        """Store `data` (a whole number of nodes) from node `start` on; space must be reserved."""
        rb = self._region_bytes
        r, off = divmod(start * NODE_SIZE, rb)
        if off + len(data) <= rb and r < len(self._regions):  # within one region
            self._regions[r][off : off + len(data)] = data
            return
        mv = memoryview(data)
        pos = 0
        total = len(mv)
        while pos < total:
            n = min(total - pos, rb - off)
            try:
                region = self._regions[r]
            except IndexError:
                raise IndexOutOfRange(
                    f"level {self.level}: write beyond reserved storage at node {start}"
                ) from None
            region[off : off + n] = mv[pos : pos + n]
            pos += n
            r += 1
            off = 0


_MADV_RANDOM: int | None = getattr(mmap, "MADV_RANDOM", None)
_MADV_SEQUENTIAL: int | None = getattr(mmap, "MADV_SEQUENTIAL", None)
_MADV_HUGEPAGE: int | None = getattr(mmap, "MADV_HUGEPAGE", None)
#: Linux 5.14+: fault in (writable) every page of the range now; not in the mmap module.
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)
#: Chunks per region of a level in process memory (2 MiB: one transparent huge page).
MEMORY_REGION_CHUNKS = 512


class MemoryLevel(Level):
    """A level held in process memory, in 2 MiB anonymous mappings.

    The kernel zero-fills a page when it is first touched, so a small tree's top levels
    cost address space, not memory; a big batch writes into few regions.
    """

    __slots__ = ()
    in_place = True

    def __init__(self, level: int) -> None:
        super().__init__(level, MEMORY_REGION_CHUNKS)

    def _open_region(self, index: int, create: bool) -> memoryview:
        if not create:
            raise IndexOutOfRange(f"level {self.level}: chunk {index} was never written")
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        m = mmap.mmap(-1, self._region_bytes, flags=flags)
        if index:
            # The first region of a level is faulted in page by page as it is written (a
            # small tree's upper levels touch a page or two). A level that outgrew one region
            # is big: its next region is asked for as one transparent huge page (the kernel
            # places mappings of 2 MiB on a 2 MiB boundary) and populated now, one fault
            # instead of 512 (1M leaves: 5 ms instead of 23 ms of page faults).
            _populate(m)
        return memoryview(m)


def _populate(m: mmap.mmap) -> None:
    """Back a fresh anonymous mapping with memory now, as a huge page where the kernel
    allows it; where it cannot (old kernels, THP off), touch one byte per page."""
    try:
        if _MADV_HUGEPAGE is not None:
            m.madvise(_MADV_HUGEPAGE)
        m.madvise(_MADV_POPULATE_WRITE)
    except OSError:
        for off in range(0, len(m), mmap.PAGESIZE):
            m[off] = 0


ALLOC_STEP = 1 << 20


class _ReservedLevel(Level):
    """A level whose regions are sparse files of SHARD_BYTES, reserved step by step.

    Each region is mapped whole at once (so views never move) over a sparse file;
    posix_fallocate reserves real space ahead of the writes, so a full disk or /dev/shm
    raises StorageFull at reserve time instead of a SIGBUS when a page is touched.
    """

    __slots__ = ("writable", "_fds", "_maps", "_reserved", "_advice")
    in_place = True

    def __init__(self, level: int, writable: bool, io: DurableIO | None = None) -> None:
        if writable and io is None:
            io = DurableIO(f"level {level}")
        super().__init__(level, SHARD_CHUNKS, io)
        self.writable = writable
        self._fds: list[int] = []
        self._maps: list[mmap.mmap] = []
        self._reserved = 0
        self._advice = _MADV_RANDOM

    @abstractmethod
    def _open_fd(self, index: int, create: bool) -> int:
        """File descriptor of region `index` (sized to SHARD_BYTES when created)."""

    @abstractmethod
    def _where(self, index: int) -> str:
        """Path (or segment name) of region `index`, for the I/O door and messages."""

    def _open_region(self, index: int, create: bool) -> memoryview:
        fd = self._open_fd(index, create and self.writable)
        try:
            if self.writable:
                if os.fstat(fd).st_size < SHARD_BYTES:
                    assert self.io is not None
                    where = self._where(index)
                    try:
                        self.io.ftruncate(fd, SHARD_BYTES, where)
                    except StorageFull as exc:
                        raise StorageFull(
                            exc.errno, f"level {self.level}: cannot reserve {where}: "
                            f"{exc.strerror}"
                        ) from exc
                m = mmap.mmap(fd, SHARD_BYTES, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            else:
                m = mmap.mmap(fd, SHARD_BYTES, mmap.MAP_SHARED, mmap.PROT_READ)
            # Proofs touch one node group per level at random: once the level files
            # outgrow the page cache, the kernel's default readahead turns each fault into
            # a 128 KiB read of which 128 bytes are used, and evicts hot pages for it.
            # MADV_RANDOM makes a fault read its one page; a scan of the whole level
            # (recovery's verification) switches to MADV_SEQUENTIAL while it runs.
            # (Called under _grow_lock, which sequential() also holds.)
            if self._advice is not None:
                m.madvise(self._advice)
        except BaseException:
            os.close(fd)
            raise
        self._fds.append(fd)
        self._maps.append(m)
        return memoryview(m)

    def _allocate(self, nbytes: int) -> None:
        if nbytes <= self._reserved:
            return
        target = min(-(-nbytes // ALLOC_STEP) * ALLOC_STEP, len(self._regions) * SHARD_BYTES)
        pos = self._reserved
        while pos < target:
            r, off = divmod(pos, SHARD_BYTES)
            n = min(SHARD_BYTES - off, target - pos)
            assert self.io is not None
            try:
                self.io.fallocate(self._fds[r], off, n, self._where(r))
            except StorageFull as exc:  # anything else poisoned the store (durable_io)
                raise StorageFull(
                    exc.errno, f"level {self.level}: cannot reserve {n} bytes: {exc.strerror}"
                ) from exc
            pos += n
            self._reserved = pos

    def _storage_nodes(self) -> int:
        return min(self.capacity, self._reserved // NODE_SIZE)

    def sequential(self, on: bool) -> None:
        """Readahead on faults for a scan from start to end (True), or one page per fault
        again (False): recovery's CRC check and root recomputation read every node once."""
        advice = _MADV_SEQUENTIAL if on else _MADV_RANDOM
        if advice is None:
            return
        with self._grow_lock:
            self._advice = advice
            for m in self._maps:
                m.madvise(advice)

    def flush_range(self, start: int, end: int) -> None:
        """Write nodes start..end-1 back to their files and fdatasync them (msync + fdatasync).

        Either failing poisons the store (durable_io): the pages' error state is gone.
        """
        io = self.io
        assert io is not None
        lo, hi = start * NODE_SIZE, end * NODE_SIZE
        page = mmap.PAGESIZE
        while lo < hi:
            r, off = divmod(lo, SHARD_BYTES)
            n = min(SHARD_BYTES - off, hi - lo)
            a = off - off % page
            where = self._where(r)
            io.msync(self._maps[r], a, off + n - a, where)
            io.fdatasync(self._fds[r], where)
            lo += n

    def close(self) -> None:
        super().close()
        with self._grow_lock:
            for m in self._maps:
                m.close()
            for fd in self._fds:
                os.close(fd)
            self._maps.clear()
            self._fds.clear()


def shard_name(index: int) -> str:
    """File name of shard `index` of a level."""
    return f"shard_{index:04d}.bin"


class FileLevel(_ReservedLevel):
    """A level mapped MAP_SHARED from its shard files: the page cache is the shared memory."""

    __slots__ = ("directory", "mode")

    def __init__(self, level: int, directory: str, writable: bool, mode: int = 0o600,
                 io: DurableIO | None = None) -> None:
        super().__init__(level, writable, io)
        self.directory = directory
        self.mode = mode

    def _where(self, index: int) -> str:
        return os.path.join(self.directory, shard_name(index))

    def _open_fd(self, index: int, create: bool) -> int:
        path = self._where(index)
        if not create:
            flags = os.O_RDWR if self.writable else os.O_RDONLY
            try:
                return os.open(path, flags | os.O_CLOEXEC)
            except FileNotFoundError:
                raise IndexOutOfRange(f"level {self.level}: shard {path} does not exist") from None
        assert self.io is not None
        self.io.makedirs(self.directory)
        return self.io.create_file(path, os.O_RDWR, self.mode)
