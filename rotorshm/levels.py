"""Where a level's nodes live: 4 KiB chunks of 128 nodes, grouped in regions.

The tree algorithm only calls `reserve`, `read`, `write` and `node`; a level in RAM,
in mmap'd shard files or in shared-memory segments differs only in how a region is
obtained (`_open_region`). Regions are never moved once handed out, which is what lets
a snapshot keep reading immutable nodes while the writer appends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from .errors import IndexOutOfRange

NODE_SIZE = 32
CHUNK_NODES = 128
CHUNK_BYTES = NODE_SIZE * CHUNK_NODES
SHARD_CHUNKS = 65_536
SHARD_BYTES = CHUNK_BYTES * SHARD_CHUNKS


class Level(ABC):
    """One level's nodes, addressed by index, stored in regions of `region_chunks` chunks."""

    __slots__ = ("level", "region_chunks", "_region_bytes", "_regions")

    def __init__(self, level: int, region_chunks: int) -> None:
        self.level = level
        self.region_chunks = region_chunks
        self._region_bytes = region_chunks * CHUNK_BYTES
        self._regions: list[memoryview] = []

    @abstractmethod
    def _open_region(self, index: int, create: bool) -> memoryview:
        """Return region `index` as a memoryview of `_region_bytes` bytes.

        With `create`, space must be really reserved (a full disk raises here, never
        later as a SIGBUS); without it, the region must already exist.
        """

    def close(self) -> None:
        """Drop every region view."""
        for mv in self._regions:
            mv.release()
        self._regions.clear()

    @property
    def capacity(self) -> int:
        """Number of nodes the regions obtained so far can hold."""
        return len(self._regions) * self._region_bytes // NODE_SIZE

    def reserve(self, nodes: int) -> None:
        """Make sure nodes 0..nodes-1 have storage, allocating regions as needed."""
        need = -(-nodes * NODE_SIZE // self._region_bytes)
        regions = self._regions
        while len(regions) < need:
            regions.append(self._open_region(len(regions), True))

    def _region(self, index: int) -> memoryview:
        regions = self._regions
        while len(regions) <= index:
            regions.append(self._open_region(len(regions), False))
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


class MemoryLevel(Level):
    """A level held in process memory, one 4 KiB bytearray per chunk."""

    __slots__ = ()

    def __init__(self, level: int) -> None:
        super().__init__(level, 1)

    def _open_region(self, index: int, create: bool) -> memoryview:
        if not create:
            raise IndexOutOfRange(f"level {self.level}: chunk {index} was never written")
        return memoryview(bytearray(CHUNK_BYTES))
