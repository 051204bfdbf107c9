"""Bit-exact agreement with the Rust `rotortree` 0.15 vectors (tests/data/lean-imt-n2-n4.json).

Every root, inclusion proof, consistency proof and updated inclusion proof in the file is
reproduced field by field, both from a snapshot taken at that size and from a later
snapshot asked about the past size. The naive reference in tests/reference.py is checked
against the same roots, which is what entitles the other test files to use it as an oracle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from reference import (
    leaf,
    leaves,
    ref_consistency,
    ref_consistency_shape,
    ref_inclusion,
    ref_levels,
    ref_path_shape,
    ref_root,
)

from rotorshm import ConsistencyLevel, ConsistencyProof, InclusionProof, LeanIMT, ProofLevel
from rotorshm.kernel import KERNELS
from rotorshm.kernel import _use as use_kernel
from rotorshm.kernel import available as available_kernels

VECTORS = json.loads((Path(__file__).parent / "data" / "lean-imt-n2-n4.json").read_text())
ARITIES = sorted(int(n) for n in VECTORS["roots"])
ROOT_CASES = [(int(n), int(s)) for n in VECTORS["roots"] for s in VECTORS["roots"][n]]
STEP_BY_STEP = 300  # sizes up to this are inserted leaf by leaf, the rest in batches


def h(hex_str: str) -> bytes:
    return bytes.fromhex(hex_str)


def vector_root(n: int, size: int) -> bytes:
    return h(VECTORS["roots"][str(n)][str(size)])


def _all_sizes(n: int) -> list[int]:
    sizes = {int(s) for s in VECTORS["roots"][str(n)]}
    for e in VECTORS["inclusion"]:
        if e["n"] == n:
            sizes.add(e["size"])
    for key in ("consistency", "updated_inclusion"):
        for e in VECTORS[key]:
            if e["n"] == n:
                sizes.update((e["old_size"], e["new_size"]))
    return sorted(sizes)


class Built:
    """One tree per arity grown to the largest vector size, with a snapshot at every size."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.tree = LeanIMT(arity=n, max_depth=32)
        self.snaps = {}
        self.insert_roots = {}
        sizes = _all_sizes(n)
        data = leaves(max(sizes))
        wanted = set(sizes)
        for i in range(min(STEP_BY_STEP, max(sizes))):
            self.insert_roots[i + 1] = self.tree.insert(data[i])
            if i + 1 in wanted:
                self.snaps[i + 1] = self.tree.snapshot()
        for s in sizes:
            if s > self.tree.size:
                self.insert_roots[s] = self.tree.insert_many(data[self.tree.size : s])
                self.snaps[s] = self.tree.snapshot()
        self.final = self.tree.snapshot()


_BUILT: dict[int, Built] = {}


def built(n: int) -> Built:
    if n not in _BUILT:
        _BUILT[n] = Built(n)
    return _BUILT[n]


def inclusion_from_vector(e: dict[str, Any], size_key: str = "size") -> InclusionProof:
    return InclusionProof(
        root=h(e["root"]),
        leaf=h(e["leaf"]),
        leaf_index=e["index"],
        tree_size=e[size_key],
        arity=e["n"],
        levels=tuple(
            ProofLevel(lv["position"], tuple(h(s) for s in lv["siblings"])) for lv in e["levels"]
        ),
    )


def consistency_from_vector(e: dict[str, Any]) -> ConsistencyProof:
    return ConsistencyProof(
        old_root=h(e["old_root"]),
        new_root=h(e["new_root"]),
        old_size=e["old_size"],
        new_size=e["new_size"],
        arity=e["n"],
        levels=tuple(
            ConsistencyLevel(tuple(h(x) for x in lv["shared"]), tuple(h(x) for x in lv["new"]))
            for lv in e["levels"]
        ),
    )


def assert_inclusion_matches(p: InclusionProof, e: dict[str, Any], size: int) -> None:
    """Every field of `p` equals the vector entry `e` (a proof against a tree of `size`)."""
    assert isinstance(p, InclusionProof)
    assert p.arity == e["n"]
    assert p.tree_size == size
    assert p.leaf_index == e["index"]
    assert p.root.hex() == e["root"]
    assert p.leaf.hex() == e["leaf"]
    assert p.leaf == leaf(e["index"])
    assert len(p.levels) == len(e["levels"])
    for lvl, (got, want) in enumerate(zip(p.levels, e["levels"], strict=True)):
        assert got.position == want["position"], f"level {lvl}"
        assert [s.hex() for s in got.siblings] == want["siblings"], f"level {lvl}"
        assert all(type(s) is bytes for s in got.siblings)
    assert p.verify() is True
    assert p.verify_against(h(e["root"]), size) is True


def _id(e: dict[str, Any]) -> str:
    keys = [k for k in ("n", "size", "old_size", "new_size", "index") if k in e]
    return "-".join(f"{k}{e[k]}" for k in keys)


# -- the file itself -------------------------------------------------------------------------


def test_vector_file_shape() -> None:
    assert ARITIES == [2, 4]
    assert len(VECTORS["inclusion"]) == 30
    assert len(VECTORS["consistency"]) == 22
    assert len(VECTORS["updated_inclusion"]) == 48
    assert len(ROOT_CASES) == 2 * 306
    # the leaf rule stated in the file
    assert VECTORS["roots"]["2"]["1"] == leaf(0).hex() == "00" * 32


# -- the reference against the vectors -------------------------------------------------------


@pytest.mark.parametrize("n", ARITIES)
def test_reference_reproduces_every_vector_root(n: int) -> None:
    table = VECTORS["roots"][str(n)]
    data = leaves(max(int(s) for s in table))
    for s, want in table.items():
        size = int(s)
        assert ref_root(data[:size], n).hex() == want, f"reference root n={n} size={size}"
        if size <= 300:
            assert ref_levels(data[:size], n)[-1] == [h(want)]


@pytest.mark.parametrize("e", VECTORS["inclusion"], ids=_id)
def test_reference_reproduces_inclusion_vectors(e: dict[str, Any]) -> None:
    path = ref_inclusion(leaves(e["size"]), e["index"], e["n"])
    assert [(pos, [s.hex() for s in sibs]) for pos, sibs in path] == [
        (lv["position"], lv["siblings"]) for lv in e["levels"]
    ]


@pytest.mark.parametrize("e", VECTORS["inclusion"], ids=_id)
def test_reference_path_shape_matches_inclusion_vectors(e: dict[str, Any]) -> None:
    assert ref_path_shape(e["index"], e["size"], e["n"]) == [
        (lv["position"], len(lv["siblings"])) for lv in e["levels"]
    ]


@pytest.mark.parametrize("e", VECTORS["consistency"], ids=_id)
def test_reference_reproduces_consistency_vectors(e: dict[str, Any]) -> None:
    got = ref_consistency(leaves(e["new_size"]), e["old_size"], e["n"])
    assert [([x.hex() for x in s], [x.hex() for x in a]) for s, a in got] == [
        (lv["shared"], lv["new"]) for lv in e["levels"]
    ]
    assert ref_consistency_shape(e["old_size"], e["new_size"], e["n"]) == [
        (len(lv["shared"]), len(lv["new"])) for lv in e["levels"]
    ]


# -- roots ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "size"), ROOT_CASES)
def test_root(n: int, size: int) -> None:
    b = built(n)
    want = vector_root(n, size)
    assert b.insert_roots[size] == want, "root returned by insert/insert_many"
    assert b.snaps[size].root == want, "snapshot taken at that size"
    assert b.snaps[size].size == size
    assert b.final.root_at(size) == want, "root_at on a later snapshot"


@pytest.mark.parametrize("n", ARITIES)
def test_root_of_fresh_trees_built_in_one_batch(n: int) -> None:
    for size in (1, 2, 3, 127, 128, 129, 255, 256, 257, 300, 1000, 4096, 4097):
        t = LeanIMT(arity=n, max_depth=32)
        assert t.insert_many(leaves(size)) == vector_root(n, size)
        assert t.root == vector_root(n, size)
        assert t.size == size


@pytest.mark.parametrize("n", ARITIES)
def test_root_of_one_buffer_batches(n: int) -> None:
    t = LeanIMT(arity=n, max_depth=32)
    for size in (1000, 4096, 4097, 65536, 65537, 100000):
        assert t.insert_many(b"".join(leaves(size - t.size, t.size))) == vector_root(n, size)


# -- inclusion proofs -------------------------------------------------------------------------


@pytest.mark.parametrize("e", VECTORS["inclusion"], ids=_id)
def test_inclusion(e: dict[str, Any]) -> None:
    b = built(e["n"])
    size = e["size"]
    assert h(e["root"]) == vector_root(e["n"], size)
    assert_inclusion_matches(b.snaps[size].generate_proof(e["index"]), e, size)
    assert_inclusion_matches(b.final.generate_proof(e["index"], size), e, size)
    assert_inclusion_matches(b.snaps[size].generate_proof(e["index"], size), e, size)


@pytest.mark.parametrize("e", VECTORS["inclusion"], ids=_id)
def test_inclusion_vector_verifies_as_given(e: dict[str, Any]) -> None:
    p = inclusion_from_vector(e)
    assert p.verify() is True
    assert p.compute_root() == h(e["root"])
    assert InclusionProof.from_bytes(p.to_bytes()) == p
    assert InclusionProof.from_json(p.to_json()) == p


# -- consistency proofs -----------------------------------------------------------------------


def assert_consistency_matches(c: ConsistencyProof, e: dict[str, Any]) -> None:
    assert isinstance(c, ConsistencyProof)
    assert c.arity == e["n"]
    assert (c.old_size, c.new_size) == (e["old_size"], e["new_size"])
    assert c.old_root.hex() == e["old_root"]
    assert c.new_root.hex() == e["new_root"]
    assert len(c.levels) == len(e["levels"])
    for lvl, (got, want) in enumerate(zip(c.levels, e["levels"], strict=True)):
        assert [x.hex() for x in got.shared] == want["shared"], f"level {lvl}"
        assert [x.hex() for x in got.new] == want["new"], f"level {lvl}"
    assert c.verify() is True
    assert c.verify_against(h(e["old_root"]), h(e["new_root"]), e["old_size"], e["new_size"])
    assert c.verify_transition(h(e["old_root"])) is True


@pytest.mark.parametrize("e", VECTORS["consistency"], ids=_id)
def test_consistency(e: dict[str, Any]) -> None:
    b = built(e["n"])
    old, new = e["old_size"], e["new_size"]
    assert h(e["old_root"]) == vector_root(e["n"], old)
    assert h(e["new_root"]) == vector_root(e["n"], new)
    assert_consistency_matches(b.snaps[new].generate_consistency_proof(old), e)
    assert_consistency_matches(b.final.generate_consistency_proof(old, new), e)
    assert_consistency_matches(b.snaps[new].generate_consistency_proof(old, new), e)


@pytest.mark.parametrize("e", VECTORS["consistency"], ids=_id)
def test_consistency_vector_verifies_as_given(e: dict[str, Any]) -> None:
    c = consistency_from_vector(e)
    assert c.verify() is True
    assert c.compute_roots() == (h(e["old_root"]), h(e["new_root"]))
    assert ConsistencyProof.from_bytes(c.to_bytes()) == c
    assert ConsistencyProof.from_json(c.to_json()) == c


# -- updated inclusion proofs (light-client flow) ---------------------------------------------


@pytest.mark.parametrize("e", VECTORS["updated_inclusion"], ids=_id)
def test_updated_inclusion(e: dict[str, Any]) -> None:
    n = e["n"]
    b = built(n)
    old, new, index = e["old_size"], e["new_size"], e["index"]
    assert h(e["old_root"]) == vector_root(n, old)
    assert h(e["root"]) == vector_root(n, new)

    olds = [b.final.generate_proof(index, old), b.snaps[old].generate_proof(index)]
    fresh_old = LeanIMT(arity=n, max_depth=32)
    fresh_old.insert_many(leaves(old))
    olds.append(fresh_old.snapshot().generate_proof(index))
    for p in olds:
        assert p.root.hex() == e["old_root"]
        assert p.tree_size == old
        assert p.verify()
    assert olds[0] == olds[1] == olds[2]

    fresh_new = b.snaps[new].generate_proof(index)
    assert_inclusion_matches(fresh_new, e, new)
    consistency = [
        b.snaps[new].generate_consistency_proof(old),
        b.final.generate_consistency_proof(old, new),
    ]
    for c in consistency:
        for p in olds:
            updated = c.update_inclusion_proof(p)
            assert_inclusion_matches(updated, e, new)
            assert updated == fresh_new


def _vector_chain(e: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The consistency and old inclusion vectors an updated_inclusion entry derives from."""
    key = (e["n"], e["old_size"], e["new_size"])
    cons = [c for c in VECTORS["consistency"] if (c["n"], c["old_size"], c["new_size"]) == key]
    olds = [
        x for x in VECTORS["inclusion"]
        if (x["n"], x["size"], x["index"]) == (e["n"], e["old_size"], e["index"])
    ]
    return (cons[0], olds[0]) if cons and olds else None


CHAINED = [e for e in VECTORS["updated_inclusion"] if _vector_chain(e)]


def test_some_updated_entries_chain_to_other_vectors() -> None:
    assert len(CHAINED) >= 10


@pytest.mark.parametrize("e", CHAINED, ids=_id)
def test_updated_inclusion_from_vector_objects(e: dict[str, Any]) -> None:
    """The same flow fed only with objects decoded from the vectors (no generation at all)."""
    chain = _vector_chain(e)
    assert chain is not None
    cons, old = chain
    updated = consistency_from_vector(cons).update_inclusion_proof(inclusion_from_vector(old))
    assert_inclusion_matches(updated, e, e["new_size"])


# -- every hashing kernel ---------------------------------------------------------------------

_KERNEL_PARAMS = [
    pytest.param(
        k,
        marks=pytest.mark.skipif(k not in available_kernels(), reason=f"this CPU cannot run {k}"),
    )
    for k in KERNELS
]


@pytest.mark.parametrize("kernel", _KERNEL_PARAMS)
@pytest.mark.parametrize("n", ARITIES)
def test_every_kernel_reproduces_the_vectors(kernel: str, n: int) -> None:
    """Every root and proof vector, with the tree built and proofs checked under `kernel`."""
    with use_kernel(kernel):
        b = Built(n)
        for s, want in VECTORS["roots"][str(n)].items():
            size = int(s)
            assert b.insert_roots[size].hex() == want, (kernel, size)
            assert b.final.root_at(size).hex() == want, (kernel, size)
        t = LeanIMT(arity=n, max_depth=32)
        assert t.insert_many(b"".join(leaves(100000))) == vector_root(n, 100000)
        for e in VECTORS["inclusion"]:
            if e["n"] == n:
                p = b.final.generate_proof(e["index"], e["size"])
                assert_inclusion_matches(p, e, e["size"])
                assert inclusion_from_vector(e).verify() is True
        for e in VECTORS["consistency"]:
            if e["n"] == n:
                c = b.final.generate_consistency_proof(e["old_size"], e["new_size"])
                assert_consistency_matches(c, e)
                assert consistency_from_vector(e).verify() is True
        for e in VECTORS["updated_inclusion"]:
            if e["n"] == n:
                old = b.final.generate_proof(e["index"], e["old_size"])
                c = b.final.generate_consistency_proof(e["old_size"], e["new_size"])
                assert_inclusion_matches(c.update_inclusion_proof(old), e, e["new_size"])
