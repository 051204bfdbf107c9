"""Property tests (hypothesis): random arities 2..16, random sizes up to ~600, random leaves.

Oracles: tests/reference.py (checked against the Rust vectors) and fresh trees built from
scratch. Tampering tests assert the exact documented behaviour: a proof verifies if and
only if it is genuine, except that `tree_size` (and `arity`) are not bound by any hash,
so a change that keeps the path shape still verifies (DESIGN.md §2); `verify_against`
with the trusted size then rejects it.
"""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from reference import (
    ref_consistency,
    ref_consistency_shape,
    ref_inclusion,
    ref_path_shape,
    ref_root,
)

from rotorshm import ConsistencyLevel, ConsistencyProof, InclusionProof, LeanIMT, ProofLevel

MAX_SIZE = 600
SETTINGS = settings(
    deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow]
)
FEW = settings(deadline=None, max_examples=80, suppress_health_check=[HealthCheck.too_slow])


def random_leaves(seed: int, count: int) -> list[bytes]:
    blob = random.Random(seed).randbytes(32 * count)
    return [blob[i : i + 32] for i in range(0, len(blob), 32)]


@st.composite
def trees(draw: st.DrawFn, min_size: int = 1, max_size: int = MAX_SIZE):
    arity = draw(st.integers(2, 16))
    size = draw(
        st.one_of(
            st.integers(min_size, min(max_size, 40)),
            st.integers(min_size, max_size),
            st.sampled_from([s for s in (1, 2, 127, 128, 129, 256, 257, 600) if min_size <= s
                             <= max_size]),
        )
    )
    data = random_leaves(draw(st.integers(0, 2**32)), size)
    tree = LeanIMT(arity=arity, max_depth=64)
    tree.insert_many(data)
    return arity, data, tree


def shape(p: InclusionProof) -> list[tuple[int, int]]:
    return [(lv.position, len(lv.siblings)) for lv in p.levels]


def flip(h: bytes, i: int, bit: int = 0) -> bytes:
    b = bytearray(h)
    b[i] ^= 1 << bit
    return bytes(b)


# -- inclusion ---------------------------------------------------------------------------


@SETTINGS
@given(trees(), st.data())
def test_inclusion_proofs_verify_and_match_reference(t, data) -> None:
    arity, items, tree = t
    snap = tree.snapshot()
    root = ref_root(items, arity)
    assert snap.root == tree.root == root
    indices = {0, len(items) - 1} | set(
        data.draw(st.lists(st.integers(0, len(items) - 1), max_size=8))
    )
    for i in indices:
        p = snap.generate_proof(i)
        assert p.verify() is True
        assert p.verify_against(root, len(items)) is True
        assert (p.root, p.leaf, p.leaf_index, p.tree_size, p.arity) == (
            root, items[i], i, len(items), arity
        )
        assert [(lv.position, list(lv.siblings)) for lv in p.levels] == ref_inclusion(
            items, i, arity
        )


@SETTINGS
@given(trees(min_size=2), st.data())
def test_tampered_inclusion_proofs_fail(t, data) -> None:
    arity, items, tree = t
    size = len(items)
    i = data.draw(st.integers(0, size - 1))
    p = tree.snapshot().generate_proof(i)
    assert p.verify()

    # every single-byte change of root, leaf and every sibling
    for k in range(32):
        bit = k % 8
        assert not replace(p, root=flip(p.root, k, bit)).verify()
        assert not replace(p, leaf=flip(p.leaf, k, bit)).verify()
    for lvl, (pos, sibs) in enumerate(p.levels):
        for j in range(len(sibs)):
            for k in range(32):
                bad = sibs[:j] + (flip(sibs[j], k, (k + j) % 8),) + sibs[j + 1 :]
                levels = p.levels[:lvl] + (ProofLevel(pos, bad),) + p.levels[lvl + 1 :]
                assert not replace(p, levels=levels).verify(), (lvl, j, k)
            # swapping two different siblings changes the hash too
            if len(sibs) >= 2 and sibs[0] != sibs[-1]:
                swapped = (sibs[-1],) + sibs[1:-1] + (sibs[0],)
                levels = p.levels[:lvl] + (ProofLevel(pos, swapped),) + p.levels[lvl + 1 :]
                assert not replace(p, levels=levels).verify()

    # every other position on every level
    for lvl, (pos, sibs) in enumerate(p.levels):
        for other in [*range(arity), arity, -1, 255]:
            if other == pos:
                continue
            levels = p.levels[:lvl] + (ProofLevel(other, sibs),) + p.levels[lvl + 1 :]
            assert not replace(p, levels=levels).verify(), (lvl, other)

    # leaf_index: any other index in the tree and out-of-range ones
    others = {j for j in data.draw(st.lists(st.integers(0, size - 1), max_size=6)) if j != i}
    others |= {-1, size, size + arity, 2**64, i + arity ** max(len(p.levels), 1)}
    others.discard(i)
    for j in others:
        assert not replace(p, leaf_index=j).verify(), j

    # dropping / adding a sibling, dropping / adding a level
    extra = random_leaves(data.draw(st.integers(0, 2**16)), 1)[0]
    for lvl, (pos, sibs) in enumerate(p.levels):
        for j in range(len(sibs)):
            fewer = sibs[:j] + sibs[j + 1 :]
            levels = p.levels[:lvl] + (ProofLevel(pos, fewer),) + p.levels[lvl + 1 :]
            assert not replace(p, levels=levels).verify()
        for j in range(len(sibs) + 1):
            more = sibs[:j] + (extra,) + sibs[j:]
            levels = p.levels[:lvl] + (ProofLevel(pos, more),) + p.levels[lvl + 1 :]
            assert not replace(p, levels=levels).verify()
        assert not replace(p, levels=p.levels[:lvl] + p.levels[lvl + 1 :]).verify()
    for at in range(len(p.levels) + 1):
        for added in (ProofLevel(0, ()), ProofLevel(0, (extra,)), ProofLevel(1, (extra,))):
            levels = p.levels[:at] + (added,) + p.levels[at:]
            assert not replace(p, levels=levels).verify()


@SETTINGS
@given(trees(), st.data())
def test_changed_tree_size_verifies_only_with_the_same_path_shape(t, data) -> None:
    arity, items, tree = t
    size = len(items)
    i = data.draw(st.integers(0, size - 1))
    p = tree.snapshot().generate_proof(i)
    candidates = set(data.draw(st.lists(st.integers(-2, size * arity + 5), max_size=10)))
    candidates |= {size - 1, size + 1, 2 * size, i, i + 1, arity ** len(p.levels),
                   arity ** len(p.levels) + 1, 2**64 - 1, 2**64, 0}
    candidates.discard(size)
    for new_size in candidates:
        q = replace(p, tree_size=new_size)
        same_shape = 0 <= i < new_size <= 2**64 - 1 and ref_path_shape(
            i, new_size, arity
        ) == shape(p)
        # documented: the size is not bound by any hash, the shape is fully checked
        assert q.verify() is same_shape, new_size
        event(f"size change keeps shape: {same_shape}")
        assert q.verify_against(p.root, size) is False
        assert q.verify_against(p.root) is same_shape
    assert p.verify_against(p.root, size) is True


@SETTINGS
@given(trees(), st.data())
def test_changed_arity_verifies_only_with_the_same_path_shape(t, data) -> None:
    arity, items, tree = t
    size = len(items)
    i = data.draw(st.integers(0, size - 1))
    p = tree.snapshot().generate_proof(i)
    for other in [0, 1, 256, -3, *range(2, 20), 255]:
        if other == arity:
            continue
        q = replace(p, arity=other)
        same = 2 <= other <= 255 and ref_path_shape(i, size, other) == shape(p)
        assert q.verify() is same, other
        event(f"arity change keeps shape: {same}")
        if same:
            # only possible when the tree of these leaves has this root under both arities
            assert ref_root(items, other) == p.root


# -- consistency -------------------------------------------------------------------------


@st.composite
def consistency_cases(draw: st.DrawFn):
    arity, items, tree = draw(trees())
    new = draw(st.integers(1, len(items)))
    old = draw(st.one_of(st.integers(1, new), st.just(new), st.just(1)))
    return arity, items, tree, old, new


@SETTINGS
@given(consistency_cases())
def test_consistency_proofs_verify_and_match_reference(case) -> None:
    arity, items, tree, old, new = case
    snap = tree.snapshot()
    c = snap.generate_consistency_proof(old, new)
    assert c.verify() is True
    old_root = ref_root(items[:old], arity)
    new_root = ref_root(items[:new], arity)
    assert c.old_root == snap.root_at(old) == old_root
    assert c.new_root == snap.root_at(new) == new_root
    assert (c.old_size, c.new_size, c.arity) == (old, new, arity)
    assert c.verify_against(old_root, new_root, old, new) is True
    assert c.verify_transition(old_root) is True
    assert [(list(s), list(a)) for s, a in c.levels] == ref_consistency(items[:new], old, arity)
    if new == len(items):
        assert snap.generate_consistency_proof(old) == c


@SETTINGS
@given(consistency_cases())
def test_tampered_consistency_proofs_fail(case) -> None:
    arity, items, tree, old, new = case
    c = tree.snapshot().generate_consistency_proof(old, new)
    assert c.verify()
    for k in range(32):
        assert not replace(c, old_root=flip(c.old_root, k, k % 8)).verify()
        assert not replace(c, new_root=flip(c.new_root, k, k % 8)).verify()
    extra = random_leaves(old * 7919 + new, 1)[0]
    for lvl, (shared, added) in enumerate(c.levels):
        for which in ("shared", "new"):
            hashes = shared if which == "shared" else added

            def with_(hs: tuple[bytes, ...], which: str = which, lvl: int = lvl,
                      shared: tuple[bytes, ...] = shared,
                      added: tuple[bytes, ...] = added) -> ConsistencyProof:
                entry = ConsistencyLevel(hs, added) if which == "shared" else ConsistencyLevel(
                    shared, hs)
                return replace(c, levels=c.levels[:lvl] + (entry,) + c.levels[lvl + 1 :])

            for j in range(len(hashes)):
                for k in range(0, 32, 3):
                    bad = hashes[:j] + (flip(hashes[j], k, (j + k) % 8),) + hashes[j + 1 :]
                    assert not with_(bad).verify(), (lvl, which, j, k)
                assert not with_(hashes[:j] + hashes[j + 1 :]).verify(), (lvl, which, j)
            for j in range(len(hashes) + 1):
                assert not with_(hashes[:j] + (extra,) + hashes[j:]).verify(), (lvl, which, j)
        # drop the whole level
        assert not replace(c, levels=c.levels[:lvl] + c.levels[lvl + 1 :]).verify()
    # add a level anywhere
    for at in range(len(c.levels) + 1):
        for entry in (ConsistencyLevel((), ()), ConsistencyLevel((), (extra,))):
            assert not replace(c, levels=c.levels[:at] + (entry,) + c.levels[at:]).verify()


@SETTINGS
@given(consistency_cases(), st.data())
def test_changed_consistency_sizes_verify_only_with_the_same_shape(case, data) -> None:
    arity, items, tree, old, new = case
    c = tree.snapshot().generate_consistency_proof(old, new)
    want_shape = [(len(s), len(a)) for s, a in c.levels]
    sizes = set(data.draw(st.lists(st.integers(-1, 3 * len(items) + 5), max_size=8)))
    sizes |= {0, 1, old - 1, old + 1, new - 1, new + 1, 2**64}
    for o in sizes:
        if o == old:
            continue
        q = replace(c, old_size=o)
        ok = 1 <= o <= new and ref_consistency_shape(o, new, arity) == want_shape
        if o == new:  # equal sizes carry no levels: needs equal roots and no hashes
            ok = not c.levels and c.old_root == c.new_root
        assert q.verify() is ok, ("old", o)
        event(f"old_size change keeps shape: {ok}")
        assert q.verify_against(c.old_root, c.new_root, old, new) is False
    for n in sizes:
        if n == new:
            continue
        q = replace(c, new_size=n)
        ok = old <= n <= 2**64 - 1 and ref_consistency_shape(old, n, arity) == want_shape
        if n == old:
            ok = not c.levels and c.old_root == c.new_root
        assert q.verify() is ok, ("new", n)
        event(f"new_size change keeps shape: {ok}")
        assert q.verify_against(c.old_root, c.new_root, old, new) is False
    for other in (0, 1, 256, *range(2, 18)):
        if other == arity:
            continue
        q = replace(c, arity=other)
        ok = 2 <= other <= 255 and ref_consistency_shape(old, new, other) == want_shape
        assert q.verify() is ok, ("arity", other)
        event(f"consistency arity change keeps shape: {ok}")


@SETTINGS
@given(consistency_cases(), st.data())
def test_update_inclusion_proof_equals_fresh_proof(case, data) -> None:
    arity, items, tree, old, new = case
    snap = tree.snapshot()
    c = snap.generate_consistency_proof(old, new)
    indices = {0, old - 1} | set(data.draw(st.lists(st.integers(0, old - 1), max_size=6)))
    for i in indices:
        before = snap.generate_proof(i, old)
        assert before.verify() and before.root == ref_root(items[:old], arity)
        updated = c.update_inclusion_proof(before)
        fresh = snap.generate_proof(i, new)
        assert updated == fresh
        assert updated.verify()
        assert updated.root == ref_root(items[:new], arity)
        assert [(lv.position, list(lv.siblings)) for lv in updated.levels] == ref_inclusion(
            items[:new], i, arity
        )


# -- the past, fresh trees and batch splits -----------------------------------------------


@SETTINGS
@given(trees(), st.data())
def test_root_at_equals_fresh_tree(t, data) -> None:
    arity, items, tree = t
    snap = tree.snapshot()
    ks = {1, len(items)} | set(data.draw(st.lists(st.integers(1, len(items)), max_size=6)))
    for k in ks:
        fresh = LeanIMT(arity=arity, max_depth=64)
        fresh.insert_many(items[:k])
        assert snap.root_at(k) == fresh.root == ref_root(items[:k], arity)


@SETTINGS
@given(trees(), st.data())
def test_proof_at_past_size_equals_fresh_tree_proof(t, data) -> None:
    arity, items, tree = t
    snap = tree.snapshot()
    k = data.draw(st.integers(1, len(items)))
    fresh = LeanIMT(arity=arity, max_depth=64)
    fresh.insert_many(items[:k])
    fsnap = fresh.snapshot()
    indices = {0, k - 1} | set(data.draw(st.lists(st.integers(0, k - 1), max_size=6)))
    for i in indices:
        p = snap.generate_proof(i, k)
        assert p == fsnap.generate_proof(i)
        assert p.verify()
        assert p.root == ref_root(items[:k], arity)
    # consistency proofs between two past sizes agree with the fresh tree too
    old = data.draw(st.integers(1, k))
    assert snap.generate_consistency_proof(old, k) == fsnap.generate_consistency_proof(old)


@SETTINGS
@given(
    st.integers(2, 16),
    st.integers(1, MAX_SIZE),
    st.integers(0, 2**32),
    st.lists(st.integers(0, 200), min_size=1, max_size=30),
)
def test_insert_and_insert_many_splits_agree(arity, size, seed, cuts) -> None:
    items = random_leaves(seed, size)
    one = LeanIMT(arity=arity, max_depth=64)
    roots_one = [one.insert(x) for x in items]
    many = LeanIMT(arity=arity, max_depth=64)
    done = 0
    for step in cuts * (size // max(sum(cuts), 1) + 1):
        if done >= size:
            break
        step = min(step, size - done)
        root = many.insert_many(items[done : done + step])
        done += step
        if done:
            assert root == roots_one[done - 1], done
    if done < size:
        many.insert_many(items[done:])
    assert many.root == one.root == ref_root(items, arity)
    a, b = one.snapshot(), many.snapshot()
    assert a.frontier == b.frontier
    for lvl in range(a.depth + 1):
        n = a.level_len(lvl)
        assert n == b.level_len(lvl)
        assert [a.get_node(lvl, j) for j in range(n)] == [b.get_node(lvl, j) for j in range(n)]


# -- encodings ---------------------------------------------------------------------------


@FEW
@given(consistency_cases(), st.data())
def test_encodings_round_trip(case, data) -> None:
    arity, items, tree, old, new = case
    snap = tree.snapshot()
    i = data.draw(st.integers(0, new - 1))
    p = snap.generate_proof(i, new)
    c = snap.generate_consistency_proof(old, new)
    for proof, cls in ((p, InclusionProof), (c, ConsistencyProof)):
        raw = proof.to_bytes()
        assert isinstance(raw, bytes)
        back = cls.from_bytes(raw)
        assert back == proof
        assert back.verify()
        assert back.to_bytes() == raw
        assert cls.from_bytes(bytearray(raw)) == proof
        assert cls.from_bytes(memoryview(raw)) == proof
        text = proof.to_json()
        assert isinstance(text, str)
        back = cls.from_json(text)
        assert back == proof
        assert back.verify()
        assert back.to_json() == text
        assert cls.from_json(text.encode()) == proof
    # every field survives with its Python type
    q = InclusionProof.from_bytes(p.to_bytes())
    assert all(type(x) is bytes for x in (q.root, q.leaf))
    assert all(type(s) is bytes for lv in q.levels for s in lv.siblings)
