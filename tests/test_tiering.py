"""Tiering at scale: level sizes, the pin_above_level suggestion, and random-access mappings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rotorshm import (
    FlushPolicy,
    RotorTree,
    RotorTreeConfig,
    TieringConfig,
    level_bytes,
    suggest_pin_above_level,
)
from rotorshm.config import tiering_advice


def test_level_bytes_by_hand() -> None:
    assert level_bytes(1, 4) == [32]
    assert level_bytes(10, 4) == [320, 96, 32]  # 10 -> 3 -> 1 nodes
    assert level_bytes(16, 4) == [512, 128, 32]
    assert level_bytes(17, 2) == [32 * n for n in (17, 9, 5, 3, 2, 1)]
    # a billion leaves of arity 4: 16 levels, ~42.7 GB, the leaves 32 GB of it
    lb = level_bytes(10**9, 4)
    assert len(lb) == 16 and lb[0] == 32 * 10**9 and lb[-1] == 32
    assert sum(lb) == 42_666_666_784


@pytest.mark.parametrize("size,arity", [(1, 4), (10, 4), (1000, 2), (10**6, 16), (10**9, 4)])
def test_suggestion_is_the_lowest_pin_that_fits(size: int, arity: int) -> None:
    lb = level_bytes(size, arity)
    for budget in (0, 31, 32, 33, lb[-1] + lb[-2] if len(lb) > 1 else 64, sum(lb) - 1,
                   sum(lb), 10 * sum(lb)):
        pin = suggest_pin_above_level(size, arity, budget)
        assert 0 <= pin <= len(lb)
        assert sum(lb[pin:]) <= budget  # what it pins fits
        if pin > 0:
            assert sum(lb[pin - 1:]) > budget  # and one level more would not


def test_advice_for_a_billion_leaves_on_24_gib() -> None:
    adv = tiering_advice(10**9, 4, None, 12 * 2**30)
    assert adv["suggested_pin_above_level"] == 1  # levels 1.. are ~10.7 GB: one page read
    assert adv["page_reads_per_proof"] == 15  # unpinned: one per level below the root
    pinned = tiering_advice(10**9, 4, 1, 12 * 2**30)
    assert pinned["page_reads_per_proof"] == 1
    assert pinned["pinned_bytes"] == sum(level_bytes(10**9, 4)[1:])


def _vmflags_of(path: str) -> list[list[str]]:
    """VmFlags of every mapping of `path` in this process (from /proc/self/smaps)."""
    out: list[list[str]] = []
    current = None
    with open("/proc/self/smaps", encoding="utf-8") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
                current = head[5] if len(head) > 5 else None
            elif line.startswith("VmFlags:") and current == path:
                out.append(head[1:])
    return out


@pytest.mark.parametrize("pin", [None, 1], ids=["files", "pin1"])
def test_shard_mappings_read_one_page_per_fault(tree_dir: Path, pin: int | None) -> None:
    """Shard files are mapped MADV_RANDOM ("rr" in smaps): a fault reads no readahead."""
    tiering = TieringConfig() if pin is None else TieringConfig(pin)
    cfg = RotorTreeConfig(tree_dir, flush_policy=FlushPolicy.manual(), tiering=tiering)
    with RotorTree.open(cfg) as tree:
        tree.insert_many(os.urandom(32 * 5000))
        tree.checkpoint()
        shard = str(tree_dir / "data" / "level_0" / "shard_0000.bin")
        flags = _vmflags_of(shard)
        assert flags, "the leaf shard is not mapped"
        assert all("rr" in f for f in flags), flags
    # Recovery's verification scans with readahead (MADV_SEQUENTIAL, "sr"), then the
    # mappings are random-access again for proofs.
    cfg = RotorTreeConfig(tree_dir, tiering=tiering, verify_checkpoint=True)
    with RotorTree.open(cfg) as tree:
        assert tree.size == 5000
        flags = _vmflags_of(shard)
        assert flags and all("rr" in f and "sr" not in f for f in flags), flags
        assert tree.snapshot().generate_proof(4321).verify_against(tree.root, 5000)
