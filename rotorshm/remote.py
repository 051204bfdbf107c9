"""A client that verifies for itself: proofs built from tiles fetched over HTTP.

`RemoteTree(base_url, verifier_key, arity=N)` reads the layout of `rotorshm.tiles` (a live
`rotorshm http --key` server or a static export on any web server, object store or CDN):

- `checkpoint()` fetches `/checkpoint`, checks its signature and shape line, recomputes the
  tree's right edge from the partial tiles and checks it against the signed root, and, if
  it already trusted an earlier checkpoint, checks that the new tree extends it (a
  consistency proof built from tiles): a log that rolls back raises `LogRollback`, one that
  forks raises `LogFork`, and the earlier checkpoint stays the trusted one.
- `generate_proof(index)`, `generate_consistency_proof(old_size)` and `leaf(index)` build
  the proof locally from tiles, with the one proof algorithm of the engine (`Snapshot`
  over levels backed by tiles), and verify it against the trusted checkpoint before
  returning it. A tile that is tampered with, truncated or from another tree yields
  `InvalidProof`, never a proof.

Only the tiles a proof needs are fetched. Tiles of levels 0, h, 2h, … are fetched (h =
`tiles.tile_stride(arity)`, 3 for arity 4: a full tile holds whole subtrees of height
h−1) and the levels between are hashed locally, as tlog-tiles clients do. Full tiles are
immutable and kept in an LRU cache; partial tiles belong to one checkpoint and are kept
with it, never in the cache. A tile from the cache that takes part in a failed check is
dropped and fetched again once before the failure is reported.

HTTP goes through httpx with timeouts and bounded retries (connection errors, timeouts and
5xx answers). One RemoteTree is for one thread.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from .errors import IndexOutOfRange, InvalidProof, RotorError
from .hashing import NODE_SIZE, hash_children, hash_groups, level_lengths
from .levels import Level
from .note import Verifier
from .proof import ConsistencyProof, InclusionProof
from .snapshot import Snapshot
from .tiles import (
    TILE_BYTES,
    TILE_NODES,
    Checkpoint,
    final_nodes,
    open_checkpoint,
    tile_path,
    tile_stride,
)

T = TypeVar("T")
DEFAULT_CACHE_TILES = 4096  # 16 MiB of full tiles
MAX_CHECKPOINT_BYTES = 64 * 1024


class FetchError(RotorError, ConnectionError):
    """The log could not be reached, or answered with an error, after the retries."""


class LogInconsistent(RotorError):
    """The log served a checkpoint that does not extend the one this client trusts."""


class LogRollback(LogInconsistent):
    """The log's new checkpoint is smaller than the one this client trusts."""


class LogFork(LogInconsistent):
    """The log's new checkpoint is not an extension of the one this client trusts."""


class _BadTiles(Exception):
    """Internal: tiles fetched for one operation did not reproduce a signed root."""


@dataclass
class Stats:
    """What the client fetched: requests made (each attempt), bytes of bodies received."""

    requests: int = 0
    bytes: int = 0
    tile_requests: int = 0
    checkpoint_requests: int = 0
    cache_hits: int = 0


@dataclass
class _State:
    """A verified checkpoint with its partial tiles and the tree's right edge."""

    checkpoint: Checkpoint
    lengths: tuple[int, ...]
    finals: tuple[int, ...] = ()
    partials: dict[tuple[int, int], tuple[bytes, ...]] = field(default_factory=dict)
    frontier: tuple[bytes, ...] = ()


class _TileLevel:
    """A tree level as `Snapshot` reads it (`read`, `node`), answered from tiles."""

    __slots__ = ("_nodes", "_run", "level")

    def __init__(self, nodes: Callable[[int, int], bytes],
                 run: Callable[[int, int, int], bytes | None], level: int) -> None:
        self._nodes = nodes
        self._run = run
        self.level = level

    def node(self, index: int) -> bytes:
        return self._nodes(self.level, index)

    def read(self, start: int, count: int) -> bytes:
        data = self._run(self.level, start, count)
        if data is not None:
            return data
        return b"".join(self._nodes(self.level, j) for j in range(start, start + count))


class RemoteTree:
    """Verified proofs of a remote tree, from its signed checkpoint and tiles."""

    def __init__(self, base_url: str, verifier_key: Verifier | str, *, arity: int,
                 timeout: float = 10.0, retries: int = 3, cache_tiles: int = DEFAULT_CACHE_TILES,
                 trusted: tuple[int, bytes] | None = None, client: Any = None) -> None:
        try:
            import httpx
        except ImportError:  # pragma: no cover - depends on the installation
            raise RotorError("RemoteTree needs httpx: pip install 'rotorshm[tiles]'") from None
        self.base_url = base_url.rstrip("/")
        self.verifier = (verifier_key if isinstance(verifier_key, Verifier)
                         else Verifier.from_text(verifier_key))
        self.arity = arity
        self.stride = tile_stride(arity)
        self.retries = max(0, retries)
        self.cache_tiles = max(0, cache_tiles)
        self.stats = Stats()
        self._httpx = httpx
        self._own_client = client is None
        self._http = client if client is not None else httpx.Client(
            timeout=httpx.Timeout(timeout), follow_redirects=True,
            headers={"user-agent": "rotorshm-remote"},
            transport=httpx.HTTPTransport(retries=self.retries))
        # (level, index) -> the tile and the levels above it hashed from it (`_expand`)
        self._cache: OrderedDict[tuple[int, int], tuple[bytes, ...]] = OrderedDict()
        self._spans = [arity**r for r in range(self.stride)]
        self._state: _State | None = None
        self._trusted = trusted  # a (size, root) pinned by the caller, checked on first use
        self._used: set[tuple[int, int]] = set()
        self._memo: dict[tuple[int, int], bytes] = {}

    # -- HTTP ----------------------------------------------------------------------------------

    def _get(self, path: str, cap: int) -> bytes | None:
        """Body of GET base/path (None on 404), at most `cap` bytes; retried, else FetchError."""
        url = f"{self.base_url}/{path}"
        httpx = self._httpx
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(0.05 * 2 ** (attempt - 1), 1.0))
            self.stats.requests += 1
            try:
                with self._http.stream("GET", url) as r:
                    if r.status_code == 404:
                        return None
                    if r.status_code >= 500 or r.status_code == 429:
                        last = f"HTTP {r.status_code}"
                        continue
                    if r.status_code != 200:
                        raise FetchError(f"GET {url}: HTTP {r.status_code}")
                    chunks = []
                    got = 0
                    for chunk in r.iter_bytes():
                        got += len(chunk)
                        if got > cap:
                            raise InvalidProof(f"GET {url}: body over {cap} bytes")
                        chunks.append(chunk)
                    self.stats.bytes += got
                    return b"".join(chunks)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
        raise FetchError(f"GET {url} failed after {self.retries + 1} attempts ({last})")

    def _fetch_tile(self, level: int, index: int, width: int | None) -> bytes:
        count = TILE_NODES if width is None else width
        self.stats.tile_requests += 1
        data = self._get(tile_path(level, index, width), TILE_BYTES)
        if data is None and width is not None:
            # The log may drop a partial tile once the full one exists: same first nodes.
            self.stats.tile_requests += 1
            full = self._get(tile_path(level, index), TILE_BYTES)
            data = full[: count * NODE_SIZE] if full is not None and len(full) == TILE_BYTES \
                else None
        if data is None:
            raise InvalidProof(f"the log has no tile {tile_path(level, index, width)} although "
                               "its checkpoint needs it")
        if len(data) != count * NODE_SIZE:
            raise InvalidProof(f"tile {tile_path(level, index, width)} has {len(data)} bytes, "
                               f"expected {count * NODE_SIZE}")
        return data

    # -- nodes from tiles ----------------------------------------------------------------------

    def _expand(self, data: bytes) -> tuple[bytes, ...]:
        """The tile, then for r = 1 … stride−1 the level-r nodes of its complete groups."""
        out = [data]
        n = self.arity
        cur = data
        for _ in range(1, self.stride):
            count = len(cur) // NODE_SIZE
            count -= count % n
            cur = hash_groups(cur, count, n) if count else b""
            out.append(cur)
        return tuple(out)

    def _tile(self, state: _State, level: int, index: int) -> tuple[bytes, ...]:
        """Tile `index` of tile level `level` as far as `state`'s tree has final nodes."""
        final = state.finals[level]
        if (index + 1) * TILE_NODES <= final:
            key = (level, index)
            tile = self._cache.get(key)
            if tile is not None:
                self._cache.move_to_end(key)
                self.stats.cache_hits += 1
            else:
                tile = self._expand(self._fetch_tile(level, index, None))
                if self.cache_tiles:
                    self._cache[key] = tile
                    if len(self._cache) > self.cache_tiles:
                        self._cache.popitem(last=False)
            self._used.add(key)
            return tile
        width = final - index * TILE_NODES
        if width <= 0:
            raise InvalidProof(f"level {level} has no final node {index * TILE_NODES}")
        part = state.partials.get((level, index))
        if part is None:
            part = state.partials[(level, index)] = self._expand(
                self._fetch_tile(level, index, width))
        return part

    def _node(self, state: _State, level: int, j: int) -> bytes:
        """Node j of `level` in `state`'s tree: from a tile, or hashed from the level below."""
        finals = state.finals
        if level < len(finals) and 0 <= j < finals[level]:
            # Final: in the tile of the band's bottom level holding its subtree, where
            # `_expand` hashed it already.
            r = level % self.stride
            span = self._spans[r]
            t, off = divmod(j * span, TILE_NODES)
            o = (off // span) * NODE_SIZE
            return self._tile(state, level - r, t)[r][o : o + NODE_SIZE]
        key = (level, j)
        memo = self._memo.get(key)
        if memo is not None:
            return memo
        lengths = state.lengths
        if level >= len(lengths) or not 0 <= j < lengths[level] or level == 0:
            raise IndexOutOfRange(f"node {j} not on level {level}")
        # The right edge (in no tile): hash its children.
        n = self.arity
        below = lengths[level - 1]
        value = hash_children(
            [self._node(state, level - 1, c) for c in range(j * n, min(j * n + n, below))])
        self._memo[key] = value
        return value

    def _run_of_nodes(self, state: _State, level: int, start: int, count: int) -> bytes | None:
        """Final nodes start..start+count-1 of `level` in one slice, if one tile holds them."""
        if count <= 0 or start + count > state.finals[level]:
            return None
        r = level % self.stride
        span = self._spans[r]
        t, off = divmod(start * span, TILE_NODES)
        if ((start + count) * span - 1) // TILE_NODES != t:
            return None
        o = (off // span) * NODE_SIZE
        return self._tile(state, level - r, t)[r][o : o + count * NODE_SIZE]

    def _snapshot(self, state: _State) -> Snapshot:
        def nodes(level: int, j: int) -> bytes:
            return self._node(state, level, j)

        def run(level: int, start: int, count: int) -> bytes | None:
            return self._run_of_nodes(state, level, start, count)

        levels = [_TileLevel(nodes, run, lvl) for lvl in range(len(state.lengths))]
        return Snapshot(cast(Sequence[Level], levels), self.arity, state.checkpoint.size,
                        state.lengths, state.frontier)

    def _right_edge(self, state: _State) -> None:
        """Compute the right edge from tiles; _BadTiles unless it reaches the signed root."""
        cp = state.checkpoint
        if cp.size == 0:
            return
        state.frontier = tuple(self._node(state, lvl, length - 1)
                               for lvl, length in enumerate(state.lengths))
        if state.frontier[-1] != cp.root:
            raise _BadTiles(f"the tiles of the tree of {cp.size} leaves do not hash to its "
                            "signed root")

    def _run(self, op: Callable[[], T], what: str) -> T:
        """Run `op` over tiles; on a mismatch drop the cached tiles it used and retry once."""
        for attempt in range(2):
            self._used = set()
            self._memo = {}
            try:
                return op()
            except _BadTiles as exc:
                for key in self._used:
                    self._cache.pop(key, None)
                if self._state is not None:
                    self._state.partials.clear()
                if attempt:
                    raise InvalidProof(f"{what}: {exc}") from None
            finally:
                self._memo = {}
        raise AssertionError("unreachable")

    # -- checkpoints ---------------------------------------------------------------------------

    def _load_state(self, cp: Checkpoint) -> _State:
        lengths = level_lengths(cp.size, self.arity)
        finals = tuple(final_nodes(cp.size, self.arity, lvl) for lvl in range(len(lengths)))
        state = _State(cp, lengths, finals)
        self._right_edge(state)
        return state

    def checkpoint(self) -> tuple[int, bytes]:
        """Fetch, verify and adopt the log's current checkpoint; (size, root).

        InvalidSignature for a bad or foreign signature, InvalidCheckpoint for another
        shape, LogRollback / LogFork if it does not extend the trusted one, InvalidProof if
        its tiles do not reproduce its root.
        """
        self.stats.checkpoint_requests += 1
        raw = self._get("checkpoint", MAX_CHECKPOINT_BYTES)
        if raw is None:
            raise FetchError(f"{self.base_url}/checkpoint: not found")
        cp = open_checkpoint(raw, self.verifier, arity=self.arity)
        old = self._state.checkpoint if self._state is not None else None
        if old is None and self._trusted is not None:
            old = Checkpoint(cp.origin, self._trusted[0], self._trusted[1], self.arity)
        if old is not None:
            if cp.size < old.size:
                raise LogRollback(f"the log's checkpoint went back from {old.size} to "
                                  f"{cp.size} leaves")
            if cp.size == old.size:
                if cp.root != old.root:
                    raise LogFork(f"two different roots for {cp.size} leaves: trusted "
                                  f"{old.root.hex()}, served {cp.root.hex()}")
                if self._state is not None:
                    return cp.size, cp.root
        state = self._run(lambda: self._adopt(cp, old), "checkpoint")
        self._state = state
        return cp.size, cp.root

    def _adopt(self, cp: Checkpoint, old: Checkpoint | None) -> _State:
        state = self._load_state(cp)
        if old is not None and old.size and old.size < cp.size:
            proof = self._snapshot(state).generate_consistency_proof(old.size)
            if not proof.verify() or proof.new_root != cp.root:
                raise _BadTiles("consistency proof from tiles does not verify")
            if proof.old_root != old.root:
                raise LogFork(f"the log's tree of {cp.size} leaves does not extend the trusted "
                              f"one of {old.size} leaves (root {old.root.hex()})")
        return state

    def _current(self) -> _State:
        if self._state is None:
            self.checkpoint()
        assert self._state is not None
        return self._state

    @property
    def size(self) -> int:
        """Size of the trusted checkpoint (fetching one if none yet)."""
        return self._current().checkpoint.size

    @property
    def root(self) -> bytes:
        """Root of the trusted checkpoint (fetching one if none yet)."""
        return self._current().checkpoint.root

    # -- proofs --------------------------------------------------------------------------------

    def generate_proof(self, index: int) -> InclusionProof:
        """Inclusion proof of leaf `index` in the trusted checkpoint's tree, verified."""
        state = self._current()
        cp = state.checkpoint
        if not 0 <= index < cp.size:
            raise IndexOutOfRange(f"leaf {index} not in a tree of {cp.size} leaves")

        def build() -> InclusionProof:
            proof = self._snapshot(state).generate_proof(index)
            if not proof.verify_against(cp.root, cp.size):
                raise _BadTiles(f"the inclusion proof of leaf {index} built from tiles does "
                                "not verify against the signed root")
            return proof

        return self._run(build, f"inclusion proof of leaf {index}")

    def generate_consistency_proof(self, old_size: int) -> ConsistencyProof:
        """Consistency proof from the tree of `old_size` leaves to the trusted checkpoint's."""
        state = self._current()
        cp = state.checkpoint
        if not 1 <= old_size <= cp.size:
            raise IndexOutOfRange(f"old_size {old_size} outside 1..{cp.size}")

        def build() -> ConsistencyProof:
            proof = self._snapshot(state).generate_consistency_proof(old_size)
            if not proof.verify() or proof.new_root != cp.root or proof.new_size != cp.size:
                raise _BadTiles(f"the consistency proof from {old_size} leaves built from tiles "
                                "does not verify against the signed root")
            return proof

        return self._run(build, f"consistency proof from {old_size}")

    def leaf(self, index: int) -> bytes:
        """Leaf `index`, checked by its inclusion proof against the signed root."""
        return self.generate_proof(index).leaf

    # -- teardown ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP client (if this object made it)."""
        if self._own_client:
            self._http.close()

    def __enter__(self) -> RemoteTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        cp = self._state.checkpoint if self._state is not None else None
        return (f"RemoteTree({self.base_url!r}, {self.verifier.name!r}, arity={self.arity}, "
                f"size={cp.size if cp else None})")
