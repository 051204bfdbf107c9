"""The C path walks (csrc/tree_ops.c) against the Python reference algorithms.

Every test compares the C path with the Python one (``_cpaths.python_paths()``) on the same
snapshot, with the same node-hash kernel, for every C kernel this machine runs: proof bytes,
proof objects, single-leaf inserts, verification of valid, mutated, random and hand-built
proofs (the fuzz corpus of test_fuzz.py included), and the light-client update.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import test_fuzz as fz
from reference import leaf, ref_levels, ref_root

from rotorshm import (
    ConsistencyProof,
    InclusionProof,
    IndexOutOfRange,
    InvalidProof,
    LeanIMT,
    RotorError,
    RotorTree,
    RotorTreeConfig,
    Snapshot,
    TieringConfig,
    TreeClosed,
    _cpaths,
    kernel,
    verify_proof_bytes,
)
from rotorshm import tree as tree_mod
from rotorshm.levels import Level, MemoryLevel
from rotorshm.tree import TreeCore

C_KERNELS = [k for k in kernel.available() if k != "python"]


@pytest.fixture(params=C_KERNELS)
def kern(request: pytest.FixtureRequest) -> Iterator[str]:
    with kernel._use(request.param):
        yield request.param


def py(fn: Callable[[], Any]) -> Any:
    """fn() through the Python reference algorithms; an exception is returned, not raised."""
    with _cpaths.python_paths():
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - compared with the C side's outcome
            return exc


def c(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001
        return exc


def same(a: Any, b: Any) -> bool:
    if isinstance(a, Exception) or isinstance(b, Exception):
        return type(a) is type(b)
    return bool(a == b)


def random_tree(rng: random.Random, arity: int, size: int) -> tuple[LeanIMT, list[bytes]]:
    items = [rng.randbytes(32) for _ in range(size)]
    t = LeanIMT(arity=arity, max_depth=64)
    pos = 0
    while pos < size:  # batches and single inserts mixed
        step = rng.choice([1, 1, 2, 7, 130, 1000])
        chunk = items[pos : pos + step]
        if len(chunk) == 1:
            t.insert(chunk[0])
        else:
            t.insert_many(chunk)
        pos += len(chunk)
    return t, items


ARITIES = [2, 3, 4, 5, 8, 16, 31, 32, 33, 64, 255]


@pytest.mark.parametrize("arity", ARITIES + [random.Random(7).randint(2, 255)])
def test_proof_bytes_equal_python_encoder(kern: str, arity: int) -> None:
    rng = random.Random(arity * 1000 + C_KERNELS.index(kern))
    size = rng.choice([1, 2, arity, arity + 1, arity * arity + 3, rng.randint(1, 3000)])
    t, items = random_tree(rng, arity, size)
    snap = t.snapshot()
    assert snap.root == ref_root(items, arity)
    picks = [(size - 1, None), (0, None)]
    for _ in range(60):
        s = rng.randint(1, size)
        picks.append((rng.randrange(s), s))
        picks.append((s - 1, s))
    for i, s in picks:
        want = py(lambda i=i, s=s: snap.generate_proof(i, s))  # noqa: B023
        got = snap.generate_proof(i, s)
        assert snap.proof_bytes(i, s) == want.to_bytes() == got.to_bytes()
        assert got == want  # the lazily decoded levels equal the Python tuples
        assert got.verify() and want.verify()
    for _ in range(40):
        new = rng.randint(1, size)
        old = rng.randint(1, new)
        want_c = py(lambda o=old, n=new: snap.generate_consistency_proof(o, n))  # noqa: B023
        got_c = snap.generate_consistency_proof(old, new)
        assert snap.consistency_proof_bytes(old, new) == want_c.to_bytes() == got_c.to_bytes()
        assert got_c == want_c and got_c.verify()
        i = rng.randrange(old)
        before = snap.generate_proof(i, old)
        up = got_c.update_inclusion_proof(before)
        ref_up = py(lambda b=before, w=want_c: w.update_inclusion_proof(b))  # noqa: B023
        assert up.to_bytes() == ref_up.to_bytes() == snap.proof_bytes(i, new)


@pytest.mark.parametrize("arity", [2, 3, 4, 16, 32, 255])
def test_single_insert_equals_batches_and_python(kern: str, arity: int) -> None:
    rng = random.Random(arity)
    items = [rng.randbytes(32) for _ in range(1200)]
    one = LeanIMT(arity=arity, max_depth=64)
    roots = [one.insert(x) for x in items]
    ref = LeanIMT(arity=arity, max_depth=64)
    with _cpaths.python_paths():
        ref_roots = [ref.insert(x) for x in items]
    assert roots == ref_roots
    assert roots[-1] == ref_root(items, arity)
    assert one._core.state == ref._core.state  # same lengths and frontier tuples
    batch = LeanIMT(arity=arity, max_depth=64)
    batch.insert_many(items)
    assert batch._core.state == one._core.state


class SmallRegionLevel(MemoryLevel):
    """A level in regions of one 128-node chunk: groups of arities that do not divide 128
    straddle region boundaries, and large batches span hundreds of regions."""

    __slots__ = ()

    def __init__(self, level: int) -> None:
        Level.__init__(self, level, 1)


def stored_levels(core: TreeCore) -> list[list[bytes]]:
    """Every level's nodes as stored, leaves first."""
    out = []
    for lvl, n in zip(core.levels, core.lengths, strict=False):
        data = lvl.read(0, n)
        out.append([data[i : i + 32] for i in range(0, len(data), 32)])
    return out


@pytest.mark.parametrize("arity", [2, 3, 4, 5, 7, 16, 31, 32, 255])
def test_batch_append_writes_every_level_like_the_reference(kern: str, arity: int) -> None:
    """The one-call batch append (csrc/tree_append.c), batches of every shape across region
    boundaries: every stored node of every level, not only the root, equals the naive
    reference, and the C state equals the Python algorithm's."""
    rng = random.Random(arity * 31 + C_KERNELS.index(kern))
    items = [rng.randbytes(32) for _ in range(rng.randint(700, 1500))]
    core = TreeCore(arity, 64, SmallRegionLevel)
    ref = TreeCore(arity, 64, SmallRegionLevel)
    pos = 0
    while pos < len(items):
        step = rng.choice([2, 3, arity - 1, arity, arity + 1, 127, 128, 129, 300])
        data = b"".join(items[pos : pos + max(step, 2)])
        core.append(data)
        with _cpaths.python_paths():
            ref.append(data)
        pos += len(data) // 32
        assert core.state == ref.state
    assert stored_levels(core) == ref_levels(items, arity)


@pytest.mark.parametrize("threads", [2, 3, 4])
@pytest.mark.parametrize("arity", [2, 3, 4, 5, 16])
def test_batch_append_on_threads_writes_every_level_like_the_reference(
    arity: int, threads: int
) -> None:
    """hash_threads > 1 splits a large batch at multiples of arity^k: whatever the split
    (unaligned starts, region-straddling groups, uneven parts), every stored node equals the
    naive reference."""
    rng = random.Random(arity * 7 + threads)
    big = 4096 * arity * threads + rng.randint(1, 5000)  # enough groups to use threads
    first = rng.randint(2, 3 * arity**3)
    items = [rng.randbytes(32) for _ in range(first + big + big // 3)]
    core = TreeCore(arity, 64, SmallRegionLevel, hash_threads=threads)
    for a, b in ((0, first), (first, first + big), (first + big, len(items))):
        core.append(b"".join(items[a:b]))
    assert stored_levels(core) == ref_levels(items, arity)
    assert core.root == ref_root(items, arity)


def test_single_insert_respects_capacity(kern: str) -> None:
    t = LeanIMT(arity=2, max_depth=3)
    for i in range(8):
        t.insert(leaf(i))
    with pytest.raises(Exception) as exc:
        t.insert(leaf(8))
    assert type(exc.value).__name__ == "CapacityExceeded"
    assert t.size == 8 and t.root == ref_root([leaf(i) for i in range(8)], 2)


@pytest.mark.parametrize("pin", [0, 2, None], ids=["pin0", "pin2", "files"])
def test_persistent_levels_and_reopen(tree_dir: Path, kern: str, pin: int | None) -> None:
    tiering = TieringConfig() if pin is None else TieringConfig(pin_above_level=pin)
    cfg = RotorTreeConfig(str(tree_dir), arity=3, max_depth=20, tiering=tiering)
    items = [leaf(i) for i in range(700)]
    with RotorTree.open(cfg) as tree:
        for x in items[:300]:
            tree.insert(x)
        tree.insert_many(items[300:])
        snap = tree.snapshot()
        tree.checkpoint()
    with RotorTree.open(cfg) as tree:
        again = tree.snapshot()
        assert again.root == ref_root(items, 3)
        for i in (0, 299, 300, 699):
            want = py(lambda i=i: again.generate_proof(i, 500))  # noqa: B023
            assert again.proof_bytes(i, 500) == want.to_bytes() if i < 500 else True
            assert again.proof_bytes(i) == py(lambda i=i: again.generate_proof(i)).to_bytes()  # noqa: B023
    # the storage of the closed tree is refused, never read
    with pytest.raises(TreeClosed):
        snap.proof_bytes(5)
    with pytest.raises(TreeClosed):
        snap.generate_consistency_proof(3)


def test_closed_lean_tree_is_refused() -> None:
    t = LeanIMT(arity=4, max_depth=10)
    t.insert_many([leaf(i) for i in range(300)])
    snap = t.snapshot()
    assert snap.generate_proof(7).verify()
    t._core.close()
    with pytest.raises(TreeClosed):
        snap.proof_bytes(7)
    with pytest.raises(TreeClosed):
        t.insert(leaf(300))


@pytest.mark.parametrize("bad", [True, False, 1.0, None, "1", 2**64, -1, 10**30])
def test_indices_are_checked_before_c(bad: object) -> None:
    t = LeanIMT(arity=4, max_depth=10)
    t.insert_many([leaf(i) for i in range(50)])
    snap = t.snapshot()
    calls: list[Callable[[], object]] = [
        lambda: snap.proof_bytes(bad),  # type: ignore[arg-type]
        lambda: snap.generate_proof(bad),  # type: ignore[arg-type]
        lambda: snap.proof_bytes(0, bad),  # type: ignore[arg-type]
        lambda: snap.consistency_proof_bytes(bad),  # type: ignore[arg-type]
        lambda: snap.generate_consistency_proof(1, bad),  # type: ignore[arg-type]
    ]
    # an int out of range is IndexOutOfRange; a non-int is the library's own error too
    # (IndexOutOfRange here; main's argument rule may name it otherwise): never accepted
    want = IndexOutOfRange if type(bad) is int else RotorError
    for call in calls:
        if bad is None and call in (calls[2], calls[4]):
            call()  # None means "now"
            continue
        with pytest.raises(want):
            call()
        with _cpaths.python_paths(), pytest.raises(want):
            call()


def test_empty_snapshot() -> None:
    snap = LeanIMT(arity=4, max_depth=10).snapshot()
    for call in (lambda: snap.proof_bytes(0), lambda: snap.consistency_proof_bytes(1)):
        with pytest.raises(IndexOutOfRange):
            call()


# -- verification: C against the Python verifier ---------------------------------------------


def compare_inclusion(p: InclusionProof) -> None:
    assert c(p.verify) is py(p.verify)
    assert same(c(p.compute_root), py(p.compute_root))
    args = (p.root, p.tree_size)
    assert c(lambda: p.verify_against(*args)) is py(lambda: p.verify_against(*args))


def compare_consistency(x: ConsistencyProof) -> None:
    assert c(x.verify) is py(x.verify)
    assert same(c(x.compute_roots), py(x.compute_roots))
    assert c(lambda: x.verify_transition(x.old_root)) is py(
        lambda: x.verify_transition(x.old_root))


def compare_blob(blob: object, root: bytes, size: int) -> None:
    """verify_proof_bytes and from_bytes: the same outcome in C and in Python."""
    got = c(lambda: verify_proof_bytes(blob, root, size))  # type: ignore[arg-type]
    want = py(lambda: InclusionProof.from_bytes(blob).verify_against(root, size))  # type: ignore[arg-type]
    assert same(got, want), (got, want)
    assert not isinstance(got, Exception) or isinstance(got, InvalidProof)
    kinds = ((InclusionProof, compare_inclusion), (ConsistencyProof, compare_consistency))
    for cls, check in kinds:
        dc = c(lambda cls=cls: cls.from_bytes(blob))  # type: ignore[misc]
        dp = py(lambda cls=cls: cls.from_bytes(blob))  # type: ignore[misc]
        assert same(dc, dp), (dc, dp)
        if not isinstance(dc, Exception):
            check(dc)  # type: ignore[operator]
            assert same(c(dc.to_bytes), py(dp.to_bytes))


def test_verification_agrees_on_fuzz_corpus(kern: str) -> None:
    rng = random.Random(11)
    n = 0
    for case in fz.INCLUSION + fz.CONSISTENCY:
        raw = case.orig.to_bytes()
        root, size = case.snap.root, case.snap.size
        targets = [(root, size)]
        if isinstance(case.orig, InclusionProof):
            targets.append((case.orig.root, case.orig.tree_size))
        for data in [raw, *fz.byte_mutations(raw, rng, 120), *fz.odd_buffers(raw)]:
            for r, s in targets:
                compare_blob(data, r, s)
                n += 1
    for _ in range(1500):
        kind = rng.choice([0x49, 0x43])
        head = bytes([1, kind, rng.choice([2, 3, 4, 16, 255, rng.randrange(256)])])
        sizes = b"".join(rng.choice([0, 1, 2, 5, rng.randrange(2**64)]).to_bytes(8, "little")
                         for _ in range(2))
        body = rng.randbytes(rng.choice([0, 1, 34, 66, 130, rng.randrange(600)]))
        blob = head + sizes + rng.randbytes(64) + bytes([rng.randrange(8)]) + body
        compare_blob(blob, blob[19:51], int.from_bytes(blob[11:19], "little"))
        compare_blob(rng.randbytes(rng.randrange(200)), bytes(32), 1)
        n += 2
    for x in fz.NON_BUFFERS:
        compare_blob(x, bytes(32), 1)
    assert n > 8000


def test_verification_agrees_on_hand_built_proofs(kern: str) -> None:
    p = fz._genuine_inclusion()
    x = fz._genuine_consistency()
    n = 0
    for _, q in [*fz._inclusion_variants(p), *fz._benign_inclusion_variants(p)]:
        compare_inclusion(q)
        n += 1
    for _, y in fz._consistency_variants(x):
        compare_consistency(y)
        n += 1
    # proofs made by C, then a field changed: the C encoding must not be trusted for it
    made = fz.INCLUSION[3].snap.generate_proof(1)
    for change in ({"leaf_index": 2}, {"tree_size": made.tree_size + 1}, {"arity": 3},
                   {"root": bytes(32)}, {"leaf": bytes(32)}):
        q = InclusionProof.from_bytes(made.to_bytes())
        for k, v in change.items():
            setattr(q, k, v)
        compare_inclusion(q)
        assert same(c(q.to_bytes), py(lambda q=q: q.to_bytes()))  # type: ignore[misc]  # noqa: B023
    assert n > 100


def test_update_inclusion_proof_agrees(kern: str) -> None:
    rng = random.Random(5)
    for case in fz.CONSISTENCY:
        cp = case.orig
        assert isinstance(cp, ConsistencyProof)
        snap: Snapshot = case.snap
        for i in {0, cp.old_size - 1, rng.randrange(cp.old_size)}:
            old = snap.generate_proof(i, cp.old_size)
            got = c(lambda old=old: cp.update_inclusion_proof(old))  # type: ignore[misc]  # noqa: B023
            want = py(lambda old=old: cp.update_inclusion_proof(old))  # type: ignore[misc]  # noqa: B023
            assert same(got, want)
            if not isinstance(got, Exception):
                assert got.to_bytes() == want.to_bytes()
                assert got == snap.generate_proof(i, cp.new_size)
        garbage: list[object] = [None, b"", snap.generate_proof(0)]
        for g in garbage:
            assert same(c(lambda g=g: cp.update_inclusion_proof(g)),  # type: ignore[misc]  # noqa: B023
                        py(lambda g=g: cp.update_inclusion_proof(g)))  # type: ignore[misc]  # noqa: B023


def test_verify_proof_bytes_arguments() -> None:
    t = LeanIMT(arity=4, max_depth=10)
    t.insert_many([leaf(i) for i in range(100)])
    snap = t.snapshot()
    blob = snap.proof_bytes(42)
    assert verify_proof_bytes(blob, snap.root, 100) is True
    assert verify_proof_bytes(bytearray(blob), snap.root, 100) is True
    assert verify_proof_bytes(memoryview(blob), snap.root, 100) is True
    assert verify_proof_bytes(blob, snap.root, 99) is False
    assert verify_proof_bytes(blob, bytes(32), 100) is False
    assert verify_proof_bytes(blob, b"short", 100) is False
    assert verify_proof_bytes(blob, snap.root, True) is False  # type: ignore[arg-type]
    for bad in (blob[:-1], blob + b"\x00", b"", None, "x"):
        with pytest.raises(InvalidProof):
            verify_proof_bytes(bad, snap.root, 100)  # type: ignore[arg-type]
    # a valid blob of the other kind is malformed here
    with pytest.raises(InvalidProof):
        verify_proof_bytes(snap.consistency_proof_bytes(3), snap.root, 100)


def test_lazy_levels_and_assignment() -> None:
    t = LeanIMT(arity=4, max_depth=10)
    t.insert_many([leaf(i) for i in range(100)])
    snap = t.snapshot()
    p = snap.generate_proof(10)
    assert p._lv is not None and p._enc is not None
    levels = p.levels
    assert levels == py(lambda: snap.generate_proof(10)).levels
    p.levels = levels[:-1]
    assert p._enc is None and not p.verify()
    p.levels = levels
    assert p.verify() and p.to_bytes() == snap.proof_bytes(10)
    with pytest.raises(TypeError):
        InclusionProof(p.root, p.leaf, 10, 100, 4)  # type: ignore[call-arg]


def test_copy_and_pickle_of_lazy_proofs() -> None:
    import copy
    import pickle

    t = LeanIMT(arity=3, max_depth=10)
    t.insert_many([leaf(i) for i in range(100)])
    snap = t.snapshot()
    for obj in (snap.generate_proof(17), snap.generate_consistency_proof(40),
                InclusionProof.from_bytes(snap.proof_bytes(3))):
        for clone in (copy.copy(obj), copy.deepcopy(obj), pickle.loads(pickle.dumps(obj))):
            assert clone == obj and clone.verify()
            assert clone.to_bytes() == obj.to_bytes()


def test_unpacking_the_state_never_sets_it_back(kern: str, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    """Single inserts keep the state packed; a snapshot unpacks it. If the writer moves on
    while a snapshot (in another thread) is unpacking, the newer state must stay: here the
    writer's insert runs inside the unpacking, deterministically."""
    items = [leaf(i) for i in range(3)]
    tree = LeanIMT(arity=4, max_depth=20)
    tree.insert(items[0])
    tree.insert(items[1])
    real = tree_mod.level_lengths

    def writer_moves_on(size: int, arity: int) -> tuple[int, ...]:
        monkeypatch.setattr(tree_mod, "level_lengths", real)
        tree.insert(items[2])
        return real(size, arity)

    monkeypatch.setattr(tree_mod, "level_lengths", writer_moves_on)
    snap = tree.snapshot()
    assert snap.size == 2 and snap.root == ref_root(items[:2], 4)
    assert tree.size == 3 and tree.root == ref_root(items, 4)
    tree.insert(leaf(3))
    assert tree.root == ref_root([*items, leaf(3)], 4)
