"""Inclusion and consistency proofs: verification, light-client update and encodings.

Verification never trusts a proof: every structural field is re-derived from the
claimed sizes and checked, so tampered input yields False (or InvalidProof when it
cannot even be decoded), never an exception of another kind or a wrong True.

No hash binds `tree_size`: two sizes with the same path shape give the same root, so a
verifier that cares about the size must compare against a trusted (root, size) pair
with `verify_against`.
"""

from __future__ import annotations

import contextlib
import json
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import _cpaths
from ._native import ffi, lib
from .errors import InvalidProof
from .hashing import (
    MAX_ARITY,
    MIN_ARITY,
    NODE_SIZE,
    hash_children,
    hash_group_with,
    level_lengths,
)

FORMAT_VERSION = 1
_KIND_INCLUSION = 0x49  # "I"
_KIND_CONSISTENCY = 0x43  # "C"
MAX_SIZE = 2**64 - 1
MAX_LEVELS = 64  # a u64 size never needs more levels, whatever the arity
_ONLY_HASH_LEN = {NODE_SIZE}
_ONLY_BYTES = {bytes}
# version, kind, arity, two sizes (index+size or old+new), two hashes, level count
_HEAD = struct.Struct("<BBBQQ32s32sB")


class ProofLevel(NamedTuple):
    """One level of an inclusion proof: the path node's position and its group's other members."""

    position: int
    siblings: tuple[bytes, ...]


class ConsistencyLevel(NamedTuple):
    """One level of a consistency proof: old right-edge members (`shared`) and appended ones."""

    shared: tuple[bytes, ...]
    new: tuple[bytes, ...]


def _group_hash(members: list[bytes] | tuple[bytes, ...]) -> bytes:
    if len(members) == 1:
        return members[0]
    return hash_children(members)


def _is_hash(x: object) -> bool:
    return isinstance(x, bytes) and len(x) == NODE_SIZE


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


_kstate = _cpaths._kstate
_switch = _cpaths._switch
_UNSET: Any = object()  # `levels` not decoded yet: the encoding in `_enc` is authoritative
_new = object.__new__
_tuple_new = tuple.__new__
_verify_inclusion = lib.rs_verify_inclusion
_verify_consistency = lib.rs_verify_consistency
_E_MALFORMED = _cpaths.E_MALFORMED
_ZERO_HEAD = bytes(_cpaths.HEAD)
_LEVEL_HEADS = [bytes((a, b)) for a in range(256) for b in range(256)]


class _LazyLevels:
    """The `levels` field of both proof kinds: decoded from the binary encoding on first read.

    A proof made by C (Snapshot.generate_proof, from_bytes, update_inclusion_proof) keeps
    its encoding in `_enc` and builds the per-level tuples only when a caller reads
    `levels`; assigning `levels` drops the encoding, and the tuples rule from then on.
    """

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            raise AttributeError("levels")  # no default for the dataclass field
        lv = obj._lv
        if lv is _UNSET:
            lv = obj._lv = obj._decode_levels()
        return lv

    def __set__(self, obj: Any, value: Any) -> None:
        obj._lv = value
        obj._enc = None


class _LazyState:
    """The lazily decoded levels' state of a proof (not dataclass fields: a plain base)."""

    __slots__ = ()
    _lv: Any  # the levels, or _UNSET while `_enc` holds them
    _enc: Any  # the binary encoding C made (its levels are authoritative while _lv is _UNSET)


def _valid_sizes(arity: object, *sizes: object) -> bool:
    if not _is_int(arity) or not MIN_ARITY <= arity <= MAX_ARITY:  # type: ignore[operator]
        return False
    return all(_is_int(s) and 1 <= s <= MAX_SIZE for s in sizes)  # type: ignore[operator]


@dataclass
class InclusionProof(_LazyState):
    """Proof that `leaf` sits at `leaf_index` in the tree of `tree_size` leaves with `root`."""

    __slots__ = ("root", "leaf", "leaf_index", "tree_size", "arity", "_lv", "_enc")

    root: bytes
    leaf: bytes
    leaf_index: int
    tree_size: int
    arity: int
    levels: tuple[ProofLevel, ...] = _LazyLevels()  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:  # copy and pickle: the fields, levels decoded
        return (type(self), (self.root, self.leaf, self.leaf_index, self.tree_size, self.arity,
                             self.levels))

    def _decode_levels(self) -> tuple[ProofLevel, ...]:
        enc = self._enc
        off = _HEAD.size
        out = []
        for _ in range(enc[83]):
            pos, count = enc[off], enc[off + 1]
            off += 2
            end = off + count * NODE_SIZE
            out.append(_tuple_new(ProofLevel, (pos, tuple(
                enc[o : o + NODE_SIZE] for o in range(off, end, NODE_SIZE)))))
            off = end
        return tuple(out)

    def _encoded_levels(self) -> tuple[bytes, int] | None:
        """(an encoding whose bytes from 84 on are the levels, level count) for C, or None
        when a field of a hand-built proof has a type or shape no valid proof has."""
        if self._lv is _UNSET:
            enc: bytes = self._enc
            return enc, enc[83]
        levels = self._lv
        if type(levels) is not tuple or len(levels) > MAX_LEVELS:
            return None
        parts = [_ZERO_HEAD]
        try:
            for pos, sibs in levels:
                if type(pos) is not int or not 0 <= pos < 256 or type(sibs) is not tuple:
                    return None
                k = len(sibs)
                if k > 255 or (k and set(map(len, sibs)) != _ONLY_HASH_LEN):
                    return None
                joined = b"".join(sibs)
                if len(joined) != k * NODE_SIZE:
                    return None
                parts.append(_LEVEL_HEADS[pos * 256 + k])
                parts.append(joined)
        except (TypeError, ValueError):  # wrong shapes or types inside a hand-built proof
            return None
        return b"".join(parts), len(levels)

    def _scalars_ok(self) -> bool:
        n, size, idx = self.arity, self.tree_size, self.leaf_index
        return (type(n) is int and type(size) is int and type(idx) is int
                and MIN_ARITY <= n <= MAX_ARITY and 0 <= idx < size <= MAX_SIZE
                and _is_hash(self.leaf))

    def compute_root(self) -> bytes | None:
        """The root the path recomputes to, or None if any structural field is inconsistent."""
        if _kstate.python or _switch.python:
            return self._compute_root_py()
        if not self._scalars_ok():
            return None
        body = self._encoded_levels()
        if body is None:
            return None
        out = _cpaths.alloc("uint8_t[]", NODE_SIZE)
        enc, nlev = body
        rc = lib.rs_inclusion_root(self.arity, self.leaf_index, self.tree_size, self.leaf,
                                   enc, len(enc), nlev, out)
        return ffi.buffer(out, NODE_SIZE)[:] if rc == 1 else None

    def _compute_root_py(self) -> bytes | None:
        """The Python reference of compute_root."""
        n = self.arity
        size = self.tree_size
        idx = self.leaf_index
        # Exact type checks (bool is not an int here); this loop is the verify hot path.
        if not (type(n) is int and type(size) is int and type(idx) is int):
            return None
        if not (MIN_ARITY <= n <= MAX_ARITY and 0 <= idx < size <= MAX_SIZE):
            return None
        node = self.leaf
        if not _is_hash(node) or type(self.levels) is not tuple:
            return None
        length = size  # length of the current level, derived from the size alone
        try:
            for pos, sibs in self.levels:
                if type(pos) is not int or pos != idx % n or length <= 1 or type(sibs) is not tuple:
                    return None
                g = idx - pos
                end = g + n
                if end > length:
                    end = length
                k = len(sibs)
                if k != end - g - 1:
                    return None
                if k:
                    if set(map(len, sibs)) != _ONLY_HASH_LEN:
                        return None
                    node = hash_group_with(b"".join(sibs), pos, node)
                idx //= n
                length = (length + n - 1) // n
        except (TypeError, ValueError):  # wrong shapes or types inside a hand-built proof
            return None
        if length != 1:
            return None
        return node

    def verify(self) -> bool:
        """True if the path recomputes `root` and every structural field is consistent."""
        if _kstate.python or _switch.python:
            return _is_hash(self.root) and self._compute_root_py() == self.root
        if not (_is_hash(self.root) and self._scalars_ok()):
            return False
        if self._lv is _UNSET:  # made by C: its encoding holds the levels
            enc: bytes = self._enc
            nlev = enc[83]
        else:
            body = self._encoded_levels()
            if body is None:
                return False
            enc, nlev = body
        rc: int = _verify_inclusion(self.arity, self.leaf_index, self.tree_size, self.root,
                                    self.leaf, enc, len(enc), nlev)
        return rc == 1

    def verify_against(self, root: bytes, size: int | None = None) -> bool:
        """Verify against a trusted root (and, if given, a trusted tree size)."""
        if size is not None and size != self.tree_size:
            return False
        return self.root == root and self.verify()

    # -- encodings -------------------------------------------------------------------------

    def _check_encodable(self) -> None:
        """Raise InvalidProof unless every field fits the encodings (hand-built proofs)."""
        if not _valid_sizes(self.arity, self.tree_size) or not (
            _is_int(self.leaf_index) and 0 <= self.leaf_index <= MAX_SIZE
            and _is_hash(self.root) and _is_hash(self.leaf)
            and isinstance(self.levels, tuple) and len(self.levels) <= MAX_LEVELS
        ):
            raise InvalidProof("proof fields out of encodable range")
        for entry in self.levels:
            if not (isinstance(entry, tuple) and len(entry) == 2 and _is_int(entry[0])
                    and 0 <= entry[0] < self.arity):
                raise InvalidProof(f"unencodable level {entry!r:.80}")
            _check_hashes(entry[1], self.arity - 1)

    def to_bytes(self) -> bytes:
        """Compact versioned binary form (InvalidProof if a field cannot be encoded)."""
        enc: bytes = self._enc
        if self._lv is _UNSET and self.arity == enc[2]:  # levels still as C encoded them
            if not (_valid_sizes(self.arity, self.tree_size) and _is_int(self.leaf_index)
                    and 0 <= self.leaf_index <= MAX_SIZE
                    and _is_hash(self.root) and _is_hash(self.leaf)):
                raise InvalidProof("proof fields out of encodable range")
            head = _HEAD.pack(FORMAT_VERSION, _KIND_INCLUSION, self.arity, self.leaf_index,
                              self.tree_size, self.root, self.leaf, enc[83])
            return enc if enc.startswith(head) else head + enc[_HEAD.size:]
        self._check_encodable()
        parts = [
            _HEAD.pack(
                FORMAT_VERSION, _KIND_INCLUSION, self.arity, self.leaf_index, self.tree_size,
                self.root, self.leaf, len(self.levels),
            )
        ]
        for pos, sibs in self.levels:
            parts.append(bytes((pos, len(sibs))))
            parts.extend(sibs)
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> InclusionProof:
        """Decode `to_bytes` output; anything malformed raises InvalidProof."""
        buf = _as_bytes(data)
        if not (_kstate.python or _switch.python):  # checked in C, levels decoded lazily
            _cpaths.check_parse(buf, _KIND_INCLUSION, "inclusion proof")
            _, _, arity, index, size, _, _, _ = _HEAD.unpack_from(buf)
            return inclusion_from_encoding(buf, index, size, arity)
        if len(buf) < _HEAD.size:
            raise InvalidProof(f"inclusion proof too short: {len(buf)} bytes")
        ver, kind, arity, index, size, root, leaf, nlev = _HEAD.unpack_from(buf)
        _check_head(ver, kind, _KIND_INCLUSION, arity, nlev)
        off = _HEAD.size
        levels = []
        for _ in range(nlev):
            if off + 2 > len(buf):
                raise InvalidProof("inclusion proof truncated in a level header")
            pos, count = buf[off], buf[off + 1]
            off += 2
            if pos >= arity or count >= arity:
                raise InvalidProof(f"level position {pos} / sibling count {count} vs arity {arity}")
            sibs, off = _read_hashes(buf, off, count)
            levels.append(ProofLevel(pos, sibs))
        if off != len(buf):
            raise InvalidProof(f"{len(buf) - off} trailing bytes after inclusion proof")
        return cls(root, leaf, index, size, arity, tuple(levels))

    def to_json(self) -> str:
        """JSON form with hex-encoded hashes (InvalidProof if a field cannot be encoded)."""
        self._check_encodable()
        return json.dumps({
            "version": FORMAT_VERSION,
            "type": "inclusion",
            "arity": self.arity,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "root": self.root.hex(),
            "leaf": self.leaf.hex(),
            "levels": [
                {"position": pos, "siblings": [s.hex() for s in sibs]} for pos, sibs in self.levels
            ],
        })

    @classmethod
    def from_json(cls, text: str | bytes) -> InclusionProof:
        """Decode `to_json` output; anything malformed raises InvalidProof."""
        obj = _load_json(text, "inclusion")
        arity = _json_int(obj, "arity", MIN_ARITY, MAX_ARITY)
        raw_levels = _json_list(obj, "levels", MAX_LEVELS)
        levels = []
        for raw in raw_levels:
            if not isinstance(raw, dict) or set(raw) != {"position", "siblings"}:
                raise InvalidProof("each level needs exactly 'position' and 'siblings'")
            pos = _json_int(raw, "position", 0, arity - 1)
            sibs = tuple(_hex_hash(h) for h in _json_list(raw, "siblings", arity - 1))
            levels.append(ProofLevel(pos, sibs))
        return cls(
            root=_json_hash(obj, "root"),
            leaf=_json_hash(obj, "leaf"),
            leaf_index=_json_int(obj, "leaf_index", 0, MAX_SIZE),
            tree_size=_json_int(obj, "tree_size", 1, MAX_SIZE),
            arity=arity,
            levels=tuple(levels),
        )


@dataclass
class ConsistencyProof(_LazyState):
    """Proof that the tree of `old_size` leaves (`old_root`) is a prefix of the one of `new_size`.

    Per level, `shared` holds the old right-edge group members left of the boundary node
    (at level 0 the boundary leaf too) and `new` the members appended right of it.
    """

    __slots__ = ("old_root", "new_root", "old_size", "new_size", "arity", "_lv", "_enc")

    old_root: bytes
    new_root: bytes
    old_size: int
    new_size: int
    arity: int
    levels: tuple[ConsistencyLevel, ...] = _LazyLevels()  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:  # copy and pickle: the fields, levels decoded
        return (type(self), (self.old_root, self.new_root, self.old_size, self.new_size,
                             self.arity, self.levels))

    def _decode_levels(self) -> tuple[ConsistencyLevel, ...]:
        enc = self._enc
        off = _HEAD.size
        out = []
        for _ in range(enc[83]):
            ns, nn = enc[off], enc[off + 1]
            off += 2
            mid = off + ns * NODE_SIZE
            end = mid + nn * NODE_SIZE
            out.append(_tuple_new(ConsistencyLevel, (
                tuple(enc[o : o + NODE_SIZE] for o in range(off, mid, NODE_SIZE)),
                tuple(enc[o : o + NODE_SIZE] for o in range(mid, end, NODE_SIZE)),
            )))
            off = end
        return tuple(out)

    def _encoded_levels(self) -> tuple[bytes, int] | None:
        """(an encoding whose bytes from 84 on are the levels, level count) for C, or None
        when a field of a hand-built proof has a type or shape no valid proof has."""
        if self._lv is _UNSET:
            enc: bytes = self._enc
            return enc, enc[83]
        levels = self._lv
        if not isinstance(levels, tuple) or len(levels) > MAX_LEVELS:
            return None
        parts = [_ZERO_HEAD]
        for entry in levels:
            if not isinstance(entry, tuple) or len(entry) != 2:
                return None
            shared, added = entry
            if not isinstance(shared, tuple) or not isinstance(added, tuple):
                return None
            if len(shared) > 255 or len(added) > 255:
                return None
            if not all(_is_hash(h) for h in shared) or not all(_is_hash(h) for h in added):
                return None
            parts.append(_LEVEL_HEADS[len(shared) * 256 + len(added)])
            parts.extend(shared)
            parts.extend(added)
        return b"".join(parts), len(levels)

    def _native_walk(self) -> tuple[bytes, int] | None:
        """The encoded levels, if every scalar field is valid; None otherwise."""
        if not (_valid_sizes(self.arity, self.old_size, self.new_size)
                and self.old_size <= self.new_size):
            return None
        return self._encoded_levels()

    def _edges(self) -> list[bytes] | None:
        """The new tree's boundary-path node at every level 0..depth, or None if malformed.

        The old root is appended as the last element, so callers get both from one pass.
        """
        n = self.arity
        old, new = self.old_size, self.new_size
        if not _valid_sizes(n, old, new) or old > new or not isinstance(self.levels, tuple):
            return None
        if old == new:
            return None if self.levels else []
        lengths = level_lengths(new, n)
        if len(self.levels) != len(lengths) - 1:
            return None
        bnd = old - 1
        old_edge = new_edge = b""
        edges = []
        for lvl, entry in enumerate(self.levels):
            if not isinstance(entry, tuple) or len(entry) != 2:
                return None
            shared, added = entry
            if not isinstance(shared, tuple) or not isinstance(added, tuple):
                return None
            pos = bnd % n
            g = bnd - pos
            want_shared = pos + 1 if lvl == 0 else pos
            if len(shared) != want_shared or len(added) != min(g + n, lengths[lvl]) - bnd - 1:
                return None
            if not all(_is_hash(h) for h in shared) or not all(_is_hash(h) for h in added):
                return None
            if lvl == 0:
                new_edge = shared[-1]
                edges.append(new_edge)
                old_edge = _group_hash(shared)
                new_edge = _group_hash(shared + added)
            else:
                edges.append(new_edge)
                old_edge = _group_hash(shared + (old_edge,))
                new_edge = _group_hash(shared + (new_edge,) + added)
            bnd //= n
        edges.append(new_edge)
        edges.append(old_edge)
        return edges

    def compute_roots(self) -> tuple[bytes, bytes] | None:
        """(old root, new root) recomputed from the proof, or None if it is malformed.

        For old_size == new_size the proof carries no hashes and echoes its claimed roots.
        """
        if _kstate.python or _switch.python:
            return self._compute_roots_py()
        body = self._native_walk()
        if body is None:
            return None
        enc, nlev = body
        if self.old_size == self.new_size:
            return (self.old_root, self.new_root) if nlev == 0 else None
        out = _cpaths.alloc("uint8_t[]", 2 * NODE_SIZE)
        if lib.rs_consistency_roots(self.arity, self.old_size, self.new_size, enc, len(enc),
                                    nlev, out, out + NODE_SIZE) != 1:
            return None
        raw = ffi.buffer(out, 2 * NODE_SIZE)[:]
        return (raw[:NODE_SIZE], raw[NODE_SIZE:])

    def _compute_roots_py(self) -> tuple[bytes, bytes] | None:
        """The Python reference of compute_roots."""
        edges = self._edges()
        if edges is None:
            return None
        if not edges:
            return (self.old_root, self.new_root)
        return (edges[-1], edges[-2])

    def verify(self) -> bool:
        """True if both claimed roots are recomputed and the structure matches the sizes."""
        if not (_is_hash(self.old_root) and _is_hash(self.new_root)):
            return False
        if _kstate.python or _switch.python:
            if self.old_size == self.new_size and self.old_root != self.new_root:
                return False
            return self._compute_roots_py() == (self.old_root, self.new_root)
        body = self._native_walk()
        if body is None:
            return False
        enc, nlev = body
        rc: int = _verify_consistency(self.arity, self.old_size, self.new_size, self.old_root,
                                      self.new_root, enc, len(enc), nlev)
        return rc == 1

    def verify_against(
        self, old_root: bytes, new_root: bytes, old_size: int | None = None,
        new_size: int | None = None,
    ) -> bool:
        """Verify against trusted roots (and, if given, trusted sizes)."""
        if old_size is not None and old_size != self.old_size:
            return False
        if new_size is not None and new_size != self.new_size:
            return False
        return self.old_root == old_root and self.new_root == new_root and self.verify()

    def verify_transition(self, trusted_old_root: bytes) -> bool:
        """A light client that trusts only the old root accepts `new_root` iff this is True."""
        return self.old_root == trusted_old_root and self.verify()

    def update_inclusion_proof(self, old_proof: InclusionProof) -> InclusionProof:
        """Turn a proof against the old root into one against the new root.

        Uses only this consistency proof; raises InvalidProof if either proof does not
        verify or they do not describe the same old tree.
        """
        if not self.verify():
            raise InvalidProof("consistency proof does not verify")
        if not isinstance(old_proof, InclusionProof) or not old_proof.verify():
            raise InvalidProof("inclusion proof does not verify")
        if (old_proof.arity, old_proof.tree_size, old_proof.root) != (
            self.arity, self.old_size, self.old_root
        ):
            raise InvalidProof("inclusion proof is not against this proof's old tree")
        if self.old_size == self.new_size:
            return old_proof
        if not (_kstate.python or _switch.python):
            return self._update_native(old_proof)
        edges = self._edges()
        assert edges
        n = self.arity
        idx = old_proof.leaf_index
        bnd = self.old_size - 1
        levels = []
        for lvl, (shared, added) in enumerate(self.levels):
            pos = idx % n
            if idx - pos != bnd - bnd % n:
                sibs = old_proof.levels[lvl][1]
            elif idx == bnd:
                sibs = (shared[:-1] if lvl == 0 else shared) + added
            else:
                # old siblings end with the old boundary node; swap in its new value.
                old_sibs = old_proof.levels[lvl][1]
                sibs = old_sibs[:-1] + (edges[lvl],) + added
            levels.append(ProofLevel(pos, sibs))
            idx //= n
            bnd //= n
        proof = InclusionProof(
            self.new_root, old_proof.leaf, old_proof.leaf_index, self.new_size, n, tuple(levels)
        )
        if not proof.verify():  # pragma: no cover - guarded by the checks above
            raise InvalidProof("updated proof does not verify")
        return proof

    def _update_native(self, old_proof: InclusionProof) -> InclusionProof:
        """update_inclusion_proof in C, for two verified proofs of the same old tree."""
        cbody = self._encoded_levels()
        ibody = old_proof._encoded_levels()
        if cbody is None or ibody is None:  # pragma: no cover - both verified just before
            raise InvalidProof("proof levels cannot be encoded")
        n = self.arity
        cap = int(lib.rs_proof_capacity(n, cbody[1]))
        out = _cpaths.alloc("uint8_t[]", cap)
        head = _HEAD.pack(FORMAT_VERSION, _KIND_INCLUSION, n, old_proof.leaf_index,
                          self.new_size, self.new_root, old_proof.leaf, cbody[1])
        ffi.memmove(out, head, _HEAD.size)
        got = lib.rs_update_inclusion(n, self.old_size, self.new_size, cbody[0], len(cbody[0]),
                                      cbody[1], old_proof.leaf_index, ibody[0], len(ibody[0]),
                                      ibody[1], out + _HEAD.size, cap - _HEAD.size)
        if got < 0:  # pragma: no cover - both verified just before
            raise InvalidProof("the proofs do not describe the same old tree")
        enc = ffi.buffer(out, _HEAD.size + got)[:]
        proof = inclusion_from_encoding(enc, old_proof.leaf_index, self.new_size, n)
        if not proof.verify():  # pragma: no cover - guarded by the checks above
            raise InvalidProof("updated proof does not verify")
        return proof

    # -- encodings -------------------------------------------------------------------------

    def _check_encodable(self) -> None:
        """Raise InvalidProof unless every field fits the encodings (hand-built proofs)."""
        if not _valid_sizes(self.arity, self.old_size, self.new_size) or not (
            _is_hash(self.old_root) and _is_hash(self.new_root)
            and isinstance(self.levels, tuple) and len(self.levels) <= MAX_LEVELS
        ):
            raise InvalidProof("proof fields out of encodable range")
        for entry in self.levels:
            if not (isinstance(entry, tuple) and len(entry) == 2):
                raise InvalidProof(f"unencodable level {entry!r:.80}")
            _check_hashes(entry[0], self.arity)
            _check_hashes(entry[1], self.arity - 1)

    def to_bytes(self) -> bytes:
        """Compact versioned binary form (InvalidProof if a field cannot be encoded)."""
        enc: bytes = self._enc
        if self._lv is _UNSET and self.arity == enc[2]:  # levels still as C encoded them
            if not (_valid_sizes(self.arity, self.old_size, self.new_size)
                    and _is_hash(self.old_root) and _is_hash(self.new_root)):
                raise InvalidProof("proof fields out of encodable range")
            head = _HEAD.pack(FORMAT_VERSION, _KIND_CONSISTENCY, self.arity, self.old_size,
                              self.new_size, self.old_root, self.new_root, enc[83])
            return enc if enc.startswith(head) else head + enc[_HEAD.size:]
        self._check_encodable()
        parts = [
            _HEAD.pack(
                FORMAT_VERSION, _KIND_CONSISTENCY, self.arity, self.old_size, self.new_size,
                self.old_root, self.new_root, len(self.levels),
            )
        ]
        for shared, added in self.levels:
            parts.append(bytes((len(shared), len(added))))
            parts.extend(shared)
            parts.extend(added)
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> ConsistencyProof:
        """Decode `to_bytes` output; anything malformed raises InvalidProof."""
        buf = _as_bytes(data)
        if not (_kstate.python or _switch.python):  # checked in C, levels decoded lazily
            _cpaths.check_parse(buf, _KIND_CONSISTENCY, "consistency proof")
            _, _, arity, old, new, _, _, _ = _HEAD.unpack_from(buf)
            return consistency_from_encoding(buf, old, new, arity)
        if len(buf) < _HEAD.size:
            raise InvalidProof(f"consistency proof too short: {len(buf)} bytes")
        ver, kind, arity, old, new, old_root, new_root, nlev = _HEAD.unpack_from(buf)
        _check_head(ver, kind, _KIND_CONSISTENCY, arity, nlev)
        off = _HEAD.size
        levels = []
        for _ in range(nlev):
            if off + 2 > len(buf):
                raise InvalidProof("consistency proof truncated in a level header")
            ns, nn = buf[off], buf[off + 1]
            off += 2
            if ns > arity or nn >= arity:
                raise InvalidProof(f"level counts {ns}/{nn} exceed arity {arity}")
            shared, off = _read_hashes(buf, off, ns)
            added, off = _read_hashes(buf, off, nn)
            levels.append(ConsistencyLevel(shared, added))
        if off != len(buf):
            raise InvalidProof(f"{len(buf) - off} trailing bytes after consistency proof")
        return cls(old_root, new_root, old, new, arity, tuple(levels))

    def to_json(self) -> str:
        """JSON form with hex-encoded hashes (InvalidProof if a field cannot be encoded)."""
        self._check_encodable()
        return json.dumps({
            "version": FORMAT_VERSION,
            "type": "consistency",
            "arity": self.arity,
            "old_size": self.old_size,
            "new_size": self.new_size,
            "old_root": self.old_root.hex(),
            "new_root": self.new_root.hex(),
            "levels": [
                {"shared": [h.hex() for h in s], "new": [h.hex() for h in a]}
                for s, a in self.levels
            ],
        })

    @classmethod
    def from_json(cls, text: str | bytes) -> ConsistencyProof:
        """Decode `to_json` output; anything malformed raises InvalidProof."""
        obj = _load_json(text, "consistency")
        arity = _json_int(obj, "arity", MIN_ARITY, MAX_ARITY)
        levels = []
        for raw in _json_list(obj, "levels", MAX_LEVELS):
            if not isinstance(raw, dict) or set(raw) != {"shared", "new"}:
                raise InvalidProof("each level needs exactly 'shared' and 'new'")
            shared = tuple(_hex_hash(h) for h in _json_list(raw, "shared", arity))
            added = tuple(_hex_hash(h) for h in _json_list(raw, "new", arity - 1))
            levels.append(ConsistencyLevel(shared, added))
        return cls(
            old_root=_json_hash(obj, "old_root"),
            new_root=_json_hash(obj, "new_root"),
            old_size=_json_int(obj, "old_size", 1, MAX_SIZE),
            new_size=_json_int(obj, "new_size", 1, MAX_SIZE),
            arity=arity,
            levels=tuple(levels),
        )


# -- proofs made by C -----------------------------------------------------------------------


def inclusion_from_encoding(enc: bytes, index: int, size: int, arity: int) -> InclusionProof:
    """An InclusionProof over a well-formed encoding whose header holds these fields;
    its levels are decoded when first read."""
    p: InclusionProof = _new(InclusionProof)
    p.root = enc[19:51]
    p.leaf = enc[51:83]
    p.leaf_index = index
    p.tree_size = size
    p.arity = arity
    p._lv = _UNSET
    p._enc = enc
    return p


def consistency_from_encoding(enc: bytes, old: int, new: int, arity: int) -> ConsistencyProof:
    """A ConsistencyProof over a well-formed encoding whose header holds these fields."""
    c: ConsistencyProof = _new(ConsistencyProof)
    c.old_root = enc[19:51]
    c.new_root = enc[51:83]
    c.old_size = old
    c.new_size = new
    c.arity = arity
    c._lv = _UNSET
    c._enc = enc
    return c


def verify_proof_bytes(blob: bytes | bytearray | memoryview, root: bytes, size: int) -> bool:
    """Check an encoded inclusion proof against a trusted `root` and tree `size`, without
    building proof objects: ``InclusionProof.from_bytes(blob).verify_against(root, size)``.

    A malformed encoding raises InvalidProof (nothing else); a proof that does not match
    returns False.
    """
    buf = blob if type(blob) is bytes else _as_bytes(blob)
    if _kstate.python or _switch.python:
        return InclusionProof.from_bytes(buf).verify_against(root, size)
    if isinstance(root, (bytearray, memoryview)):  # compares equal to bytes in Python too
        with contextlib.suppress(TypeError, ValueError):
            root = bytes(memoryview(root).cast("B"))
    if not (_is_hash(root) and type(size) is int and 0 <= size <= MAX_SIZE):
        InclusionProof.from_bytes(buf)  # a malformed blob still raises
        return False
    rc: int = lib.rs_verify_proof_bytes(buf, len(buf), root, size)
    if rc < 0:
        raise _cpaths.malformed(-rc, "inclusion proof", buf)
    return rc == 1


# -- decoding helpers ----------------------------------------------------------------------

def _as_bytes(data: object) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidProof(f"proof bytes must be bytes-like, got {type(data).__name__}")
    try:
        return bytes(memoryview(data).cast("B"))
    except (TypeError, ValueError) as exc:
        raise InvalidProof(f"unusable buffer: {exc}") from None


def _check_hashes(hashes: object, max_count: int) -> None:
    """Raise InvalidProof unless `hashes` is a tuple of at most `max_count` 32-byte bytes."""
    if not isinstance(hashes, tuple) or len(hashes) > max_count:
        raise InvalidProof(f"expected a tuple of at most {max_count} hashes")
    if hashes and (
        set(map(type, hashes)) != _ONLY_BYTES or set(map(len, hashes)) != _ONLY_HASH_LEN
    ):
        raise InvalidProof("every hash must be 32 bytes")


def _check_head(ver: int, kind: int, want_kind: int, arity: int, nlev: int) -> None:
    if ver != FORMAT_VERSION:
        raise InvalidProof(f"unsupported proof format version {ver}")
    if kind != want_kind:
        raise InvalidProof(f"wrong proof kind byte 0x{kind:02x}")
    if not MIN_ARITY <= arity <= MAX_ARITY:
        raise InvalidProof(f"arity {arity} out of range")
    if nlev > MAX_LEVELS:
        raise InvalidProof(f"{nlev} levels exceed the maximum of {MAX_LEVELS}")


def _read_hashes(buf: bytes, off: int, count: int) -> tuple[tuple[bytes, ...], int]:
    end = off + count * NODE_SIZE
    if end > len(buf):
        raise InvalidProof("proof truncated inside a hash list")
    return tuple(buf[o : o + NODE_SIZE] for o in range(off, end, NODE_SIZE)), end


def _load_json(text: object, kind: str) -> dict[str, Any]:
    if not isinstance(text, (str, bytes, bytearray)):
        raise InvalidProof(f"proof JSON must be str or bytes, got {type(text).__name__}")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidProof(f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidProof(f"proof JSON must be an object, got {_json_kind(obj)}")
    if "type" not in obj:
        raise InvalidProof(f'missing field "type" (expected "{kind}")')
    if obj.get("type") != kind:
        raise InvalidProof(f"expected a {kind} proof, got type {obj.get('type')!r:.40}")
    if "version" not in obj:
        raise InvalidProof(f'missing field "version" (expected {FORMAT_VERSION})')
    if obj.get("version") != FORMAT_VERSION or isinstance(obj.get("version"), bool):
        raise InvalidProof(f"unsupported proof format version {obj.get('version')!r:.40}"
                           f" (expected {FORMAT_VERSION})")
    return obj


def _json_kind(obj: object) -> str:
    """A JSON value's kind in JSON's own terms (for messages)."""
    return {list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(obj), type(obj).__name__)


def _json_hash(obj: dict[str, Any], key: str) -> bytes:
    if key not in obj:
        raise InvalidProof(f'missing field "{key}"')
    try:
        return _hex_hash(obj[key])
    except InvalidProof as exc:
        raise InvalidProof(f'field "{key}": {exc}') from None


def _json_int(obj: dict[str, Any], key: str, lo: int, hi: int) -> int:
    if key not in obj:
        raise InvalidProof(f'missing field "{key}"')
    v = obj.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise InvalidProof(f"field {key!r} must be an integer in {lo}..{hi}, got {v!r:.40}")
    return v


def _json_list(obj: dict[str, Any], key: str, max_len: int) -> list[Any]:
    if key not in obj:
        raise InvalidProof(f'missing field "{key}"')
    v = obj.get(key)
    if not isinstance(v, list) or len(v) > max_len:
        raise InvalidProof(f"field {key!r} must be a list of at most {max_len} items")
    return v


def _hex_hash(v: object) -> bytes:
    if not isinstance(v, str) or len(v) != 2 * NODE_SIZE:
        raise InvalidProof(f"a hash is {2 * NODE_SIZE} hex digits, got {v!r:.80}")
    try:
        raw = bytes.fromhex(v)
    except ValueError:
        raise InvalidProof(f"not hex: {v!r:.80}") from None
    if len(raw) != NODE_SIZE:
        raise InvalidProof(f"not a {NODE_SIZE}-byte hex hash: {v!r:.80}")
    return raw
