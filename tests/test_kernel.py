"""The C BLAKE3 kernels against the blake3 package, on every kernel this CPU can run.

Each kernel is selected in process with ``rotorshm.kernel._use``; one subprocess test
checks ROTORSHM_KERNEL itself. Kernels this CPU lacks are skipped, saying why.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator

import pytest
from blake3 import blake3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import ref_root

from rotorshm import InvalidConfig, InvalidLeaf, LeanIMT, RotorTreeConfig, native_info
from rotorshm import kernel as K
from rotorshm.hashing import (
    GROUP_PREFIX,
    hash_children,
    hash_group_with,
    hash_groups,
    hash_groups_into,
)

LANES = {"python": 1, "portable": 1, "sse41": 4, "avx2": 8, "avx512": 16}
C_KERNELS = [k for k in K.KERNELS if k != "python"]


def kernel_params(names: list[str]) -> list[object]:
    have = K.available()
    return [
        pytest.param(
            k,
            id=k,
            marks=pytest.mark.skipif(
                k not in have,
                reason=f"this CPU cannot run the {k} kernel "
                f"(features: {', '.join(K.cpu_features()) or 'none'})",
            ),
        )
        for k in names
    ]


@pytest.fixture(params=kernel_params(C_KERNELS))
def ckernel(request: pytest.FixtureRequest) -> Iterator[str]:
    with K._use(request.param):
        yield request.param


@pytest.fixture(params=kernel_params(list(K.KERNELS)))
def any_kernel(request: pytest.FixtureRequest) -> Iterator[str]:
    with K._use(request.param):
        yield request.param


def counts_for(kernel: str) -> list[int]:
    n = LANES[kernel]
    return sorted({1, max(n - 1, 1), n, n + 1, 2 * n + 3, 37})


def test_every_length_through_every_kernel(ckernel: str) -> None:
    rng = random.Random(f"lengths-{ckernel}")
    counts = counts_for(ckernel)
    for length in range(0, K.MAX_MANY_LEN + 1):
        count = counts[length % len(counts)]
        data = rng.randbytes(length * count)
        got = K.hash_many(b"", data, length, length, count)
        want = b"".join(blake3(data[i * length : (i + 1) * length]).digest() for i in range(count))
        assert got == want, (ckernel, length, count)


@pytest.mark.parametrize("length", [0, 1, 31, 32, 63, 64, 65, 127, 128, 129, 130, 994, 1023, 1024])
def test_every_count_at_block_edges(ckernel: str, length: int) -> None:
    rng = random.Random(f"counts-{ckernel}-{length}")
    for count in counts_for(ckernel) + [0, 2, 17, 64]:
        data = rng.randbytes(length * count)
        got = K.hash_many(b"", data, length, length, count)
        want = b"".join(blake3(data[i * length : (i + 1) * length]).digest() for i in range(count))
        assert got == want, (length, count)


def test_prefix_and_stride(ckernel: str) -> None:
    """Message i = prefix || data[i*stride : i*stride + msg_len], with gaps between messages."""
    rng = random.Random(f"prefix-{ckernel}")
    for _ in range(300):
        plen = rng.choice([0, 1, 2, 2, 2, 3, 63, 64, 65, 200])
        msg_len = rng.randrange(0, K.MAX_MANY_LEN - plen + 1)
        stride = msg_len + rng.choice([0, 0, 1, 5, 64])
        count = rng.choice(counts_for(ckernel))
        prefix = rng.randbytes(plen)
        data = rng.randbytes((count - 1) * stride + msg_len)
        got = K.hash_many(prefix, data, stride, msg_len, count)
        want = b"".join(
            blake3(prefix + data[i * stride : i * stride + msg_len]).digest() for i in range(count)
        )
        assert got == want, (plen, msg_len, stride, count)


def test_one_message_of_any_length(any_kernel: str) -> None:
    rng = random.Random("one")
    lengths = [0, 1, 64, 1024, 1025, 2047, 2048, 2049, 3072, 4096, 4097, 5000, 8162, 9 * 1024]
    lengths += [rng.randrange(1025, 40_000) for _ in range(20)]
    for length in lengths:
        data = rng.randbytes(length)
        assert K.blake3_digest(data) == blake3(data).digest(), length


def test_hash_many_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="at most 1024"):
        K.hash_many(b"ab", bytes(1023), 1023, 1023, 1)
    with pytest.raises(ValueError, match="need more than"):
        K.hash_many(b"", bytes(100), 50, 60, 2)
    with pytest.raises(ValueError, match="non-negative"):
        K.hash_many(b"", bytes(10), 1, 1, -1)
    with pytest.raises(TypeError):
        K.hash_many("ab", bytes(10), 1, 1, 1)  # type: ignore[arg-type]


def _python_groups(nodes: bytes, count: int, arity: int) -> bytes:
    """Parents straight from the hash rules, with the blake3 package."""
    out = []
    for g in range(0, count, arity):
        kids = nodes[g * 32 : min(g + arity, count) * 32]
        k = len(kids) // 32
        out.append(kids if k == 1 else blake3(bytes((1, k)) + kids).digest())
    return b"".join(out)


def test_random_levels_of_random_arity(ckernel: str) -> None:
    rng = random.Random(f"levels-{ckernel}")
    for _ in range(120):
        arity = rng.choice([2, 3, 4, 8, 16, 31, 32, rng.randrange(2, 256)])
        count = rng.choice([0, 1, arity - 1, arity, arity + 1, rng.randrange(0, 40 * arity)])
        nodes = rng.randbytes(32 * count)
        want = _python_groups(nodes, count, arity)
        assert hash_groups(nodes, count, arity) == want, (arity, count)
        assert hash_groups(memoryview(nodes), count, arity) == want
        with K._use("python"):
            assert hash_groups(nodes, count, arity) == want


def test_threads_give_the_same_parents(ckernel: str) -> None:
    rng = random.Random(f"threads-{ckernel}")
    for arity in (2, 4, 16, 40):
        count = K.PARALLEL_MIN_GROUPS * arity + rng.randrange(0, 3 * arity)
        nodes = rng.randbytes(32 * count)
        one = hash_groups(nodes, count, arity)
        assert one == _python_groups(nodes, count, arity)
        for threads in (2, 3, 5):
            assert hash_groups(nodes, count, arity, threads=threads) == one


def test_hash_groups_checks_its_arguments() -> None:
    with pytest.raises(InvalidLeaf):
        hash_groups(bytes(64), 3, 2)
    with pytest.raises(InvalidConfig):
        hash_groups(bytes(64), 2, 1)
    with pytest.raises(InvalidConfig):
        hash_groups(bytes(64), 2, 256)
    with pytest.raises(InvalidConfig):
        hash_groups(bytes(64), 2, 2, threads=0)
    with pytest.raises(ValueError):
        hash_groups(bytes(64), -1, 2)


def test_one_group_helpers(any_kernel: str) -> None:
    rng = random.Random(f"group-{any_kernel}")
    for k in [1, 2, 3, 4, 16, 31, 32, 33, 100, 255]:
        kids = [rng.randbytes(32) for _ in range(k)]
        want = kids[0] if k == 1 else blake3(GROUP_PREFIX[k] + b"".join(kids)).digest()
        assert hash_children(kids) == want
        for pos in {0, k // 2, k - 1}:
            sibs = b"".join(kids[:pos] + kids[pos + 1 :])
            assert hash_group_with(sibs, pos, kids[pos]) == want, (k, pos)
    with pytest.raises(InvalidLeaf):
        hash_group_with(bytes(31), 0, bytes(32))
    with pytest.raises(InvalidLeaf):
        hash_group_with(bytes(32), 2, bytes(32))
    with pytest.raises(InvalidLeaf):
        hash_group_with(bytes(32 * 255), 0, bytes(32))


def test_native_info_describes_the_selection(any_kernel: str) -> None:
    info = native_info()
    assert info["kernel"] == any_kernel
    assert info["lanes"] == LANES[any_kernel]
    assert set(info["available"]) >= {"python", "portable"}
    assert any_kernel in info["available"]
    assert all(isinstance(f, str) for f in info["cpu_features"])


def test_use_rejects_unknown_and_unsupported_kernels() -> None:
    before = K.active()
    with pytest.raises(InvalidConfig, match="unknown kernel"), K._use("neon"):
        pass
    missing = [k for k in K.KERNELS if k not in K.available()]
    for k in missing:
        with pytest.raises(InvalidConfig, match="not supported on this CPU"), K._use(k):
            pass
    assert K.active() == before


def _run_with_env(value: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ROTORSHM_KERNEL=value)
    code = "import rotorshm, json; print(json.dumps(rotorshm.native_info()))"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


def test_env_var_selects_and_rejects() -> None:
    for name in K.available():
        res = _run_with_env(name)
        assert res.returncode == 0, res.stderr
        assert f'"kernel": "{name}"' in res.stdout
    bad = [k for k in K.KERNELS if k not in K.available()] + ["bogus"]
    for name in bad:
        res = _run_with_env(name)
        assert res.returncode != 0
        assert "InvalidConfig" in res.stderr and "ROTORSHM_KERNEL" in res.stderr, res.stderr
        assert "available: python, portable" in res.stderr or "runs python" in res.stderr


def test_avx512_where_present() -> None:
    if "avx512" not in K.available():
        pytest.skip(
            "this CPU has no AVX-512F (features: "
            f"{', '.join(K.cpu_features()) or 'none'}): the avx512 kernel is built, not run"
        )
    with K._use("avx512"):
        data = bytes(range(256)) * 4
        assert K.hash_many(b"", data, 64, 64, 16) == b"".join(
            blake3(data[i * 64 : i * 64 + 64]).digest() for i in range(16)
        )


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(
    arity=st.sampled_from([2, 3, 4, 5, 8, 16, 31, 32, 33, 64, 255]),
    size=st.integers(1, 700),
    seed=st.integers(0, 2**32),
    cuts=st.lists(st.integers(0, 700), max_size=6),
)
def test_trees_agree_across_kernels(arity: int, size: int, seed: int, cuts: list[int]) -> None:
    """Insert (single leaves and batches at random cuts) under every kernel: the same roots as
    the independent reference, and proofs made under one kernel verify under every other."""
    data = random.Random(seed).randbytes(32 * size)
    items = [data[i : i + 32] for i in range(0, len(data), 32)]
    want = ref_root(items, arity)
    bounds = sorted({0, size, *(c for c in cuts if c < size)})
    proofs = []
    for name in K.available():
        with K._use(name):
            t = LeanIMT(arity=arity, max_depth=64)
            for a, b in zip(bounds, bounds[1:], strict=False):
                if b - a == 1:
                    t.insert(items[a])
                else:
                    t.insert_many(data[32 * a : 32 * b])
            assert t.root == want, name
            snap = t.snapshot()
            i = seed % size
            proofs.append(snap.generate_proof(i))
            if size > 1:
                proofs.append(snap.generate_consistency_proof(1 + seed % (size - 1)))
    for name in K.available():
        with K._use(name):
            for p in proofs:
                assert p.verify() is True, name


@pytest.mark.parametrize("arity", [2, 4, 16])
def test_hash_threads_option_gives_the_same_tree(arity: int) -> None:
    rng = random.Random(arity)
    data = rng.randbytes(32 * (K.PARALLEL_MIN_GROUPS * arity * 2 + 77))
    one = LeanIMT(arity=arity, max_depth=32)
    two = LeanIMT(arity=arity, max_depth=32, hash_threads=2)
    assert two.hash_threads == 2
    for a, b in ((0, 1000), (1000, 1001), (1001, len(data) // 32)):
        assert one.insert_many(data[32 * a : 32 * b]) == two.insert_many(data[32 * a : 32 * b])
    assert one.root == ref_root([data[i : i + 32] for i in range(0, len(data), 32)], arity)


@pytest.mark.parametrize("bad", [0, -1, 257, 1.5, True, "2"])
def test_hash_threads_is_validated(bad: object, tmp_path: object) -> None:
    with pytest.raises(InvalidConfig, match="hash_threads"):
        LeanIMT(hash_threads=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidConfig, match="hash_threads"):
        RotorTreeConfig(str(tmp_path), hash_threads=bad)  # type: ignore[arg-type]


def test_hash_groups_into_writes_in_place(any_kernel: str) -> None:
    rng = random.Random(f"into-{any_kernel}")
    for arity in (2, 4, 16, 33):
        for count in (0, 1, arity, arity + 1, K.PARALLEL_MIN_GROUPS * arity + 3, 777):
            nodes = rng.randbytes(32 * count)
            out = bytearray(32 * -(-count // arity))
            for threads in (1, 2):
                hash_groups_into(memoryview(nodes), count, arity, memoryview(out), threads)
                assert bytes(out) == _python_groups(nodes, count, arity), (arity, count)
    with pytest.raises(ValueError, match="writable"):
        hash_groups_into(bytes(64), 2, 2, memoryview(bytes(32)))
    with pytest.raises(ValueError, match="one hash per group"):
        hash_groups_into(bytes(64), 2, 2, memoryview(bytearray(64)))
    with pytest.raises(InvalidLeaf):
        hash_groups_into(bytes(32), 2, 2, memoryview(bytearray(32)))
