"""Tests of rotorshm.atomics: single-process semantics and real cross-process races.

The multi-process tests use POSIX shared-memory segments (posix_ipc + mmap), the
same kind the writer publishes into, and 'spawn' children so they are safe under
pytest-xdist.  Every segment is unlinked by the ``segment`` fixture.
"""

from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import platform
import secrets
import struct
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

import posix_ipc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rotorshm.atomics import HAS_FUTEX, U32_MAX, U64_MAX, WAKE_ALL, SharedWords, fence

CTX = mp.get_context("spawn")
SEG_SIZE = 4096
CHILD_DEADLINE = 60.0  # seconds; a child that runs longer than this fails its test

# Seqlock torture layout inside the segment.
SL_COUNTER = 0
SL_STOP = 8
SL_STATE = 64
SL_WORDS = 32  # 256-byte state

# Futex test layout.
FX_WORD = 512  # outside the seqlock state


# -- helpers -------------------------------------------------------------------


def _new_name() -> str:
    return f"/rotorshm-test-{os.getpid()}-{secrets.token_hex(6)}"


@pytest.fixture
def segment() -> Iterator[str]:
    """Create a zeroed owner-only POSIX shm segment of SEG_SIZE bytes; unlink after."""
    name = _new_name()
    shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600, size=SEG_SIZE)
    shm.close_fd()
    try:
        yield name
    finally:
        posix_ipc.unlink_shared_memory(name)


@contextmanager
def attach(name: str, readonly: bool = False) -> Iterator[SharedWords]:
    """Map segment ``name`` (read-only if asked) and wrap it in SharedWords."""
    shm = posix_ipc.SharedMemory(name, read_only=readonly)
    try:
        access = mmap.ACCESS_READ if readonly else mmap.ACCESS_DEFAULT
        m = mmap.mmap(shm.fd, SEG_SIZE, access=access)
    finally:
        shm.close_fd()
    try:
        with SharedWords(m) as words:
            yield words
    finally:
        m.close()


def _spin_until(cond: Callable[[], bool], what: str, limit: float = CHILD_DEADLINE) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.0005)


# -- single process: words -------------------------------------------------------


@pytest.fixture
def anon() -> Iterator[SharedWords]:
    m = mmap.mmap(-1, SEG_SIZE)
    try:
        with SharedWords(m) as words:
            yield words
    finally:
        m.close()


def test_u64_roundtrip_and_wraparound(anon: SharedWords) -> None:
    assert anon.load_u64(0) == 0
    anon.store_u64(0, 41)
    assert anon.fetch_add_u64(0, 1) == 41
    assert anon.load_u64(0) == 42
    anon.store_u64(SEG_SIZE - 8, U64_MAX)
    assert anon.fetch_add_u64(SEG_SIZE - 8, 2) == U64_MAX
    assert anon.load_u64(SEG_SIZE - 8) == 1
    assert anon.load_u64(0) == 42  # neighbours untouched


def test_u32_roundtrip_and_wraparound(anon: SharedWords) -> None:
    anon.store_u32(4, 7)
    assert anon.fetch_add_u32(4, 3) == 7
    assert anon.load_u32(4) == 10
    assert anon.load_u32(0) == 0
    anon.store_u32(8, U32_MAX)
    assert anon.fetch_add_u32(8, 1) == U32_MAX
    assert anon.load_u32(8) == 0


def test_words_are_little_endian_native(anon: SharedWords) -> None:
    anon.store_u64(16, 0x0102030405060708)
    low_half = 0x05060708 if sys.byteorder == "little" else 0x01020304
    assert anon.load_u32(16) == low_half
    fence()


def test_values_out_of_range_are_rejected(anon: SharedWords) -> None:
    with pytest.raises(OverflowError):
        anon.store_u64(0, 2**64)
    with pytest.raises(OverflowError):
        anon.store_u64(0, -1)
    with pytest.raises(OverflowError):
        anon.store_u32(0, 2**32)
    assert anon.load_u64(0) == 0


@pytest.mark.parametrize(
    ("method", "off"),
    [
        ("load_u64", 4),
        ("load_u64", -8),
        ("load_u64", SEG_SIZE - 4),
        ("load_u64", SEG_SIZE),
        ("load_u32", 2),
        ("load_u32", SEG_SIZE),
        ("load_u32", -4),
    ],
)
def test_bad_offsets_raise(anon: SharedWords, method: str, off: int) -> None:
    with pytest.raises(ValueError):
        getattr(anon, method)(off)


def test_bad_offsets_raise_for_every_operation(anon: SharedWords) -> None:
    calls: list[Callable[[], object]] = [
        lambda: anon.store_u64(12, 1),
        lambda: anon.fetch_add_u64(SEG_SIZE, 1),
        lambda: anon.store_u32(SEG_SIZE - 2, 1),
        lambda: anon.fetch_add_u32(1, 1),
        lambda: anon.futex_wait_u32(2, 0, 0.0),
        lambda: anon.futex_wake_u32(SEG_SIZE),
        lambda: anon.seqlock_write(4, 64, b"\0" * 8),
        lambda: anon.seqlock_write(0, 60, b"\0" * 8),
        lambda: anon.seqlock_write(0, 64, b"\0" * 7),
        lambda: anon.seqlock_write(0, SEG_SIZE - 8, b"\0" * 16),
        lambda: anon.seqlock_write(0, 0, b"\0" * 16),  # counter inside the data
        lambda: anon.seqlock_read(0, 64, 12, 10),
        lambda: anon.seqlock_read(0, SEG_SIZE, 8, 10),
        lambda: anon.seqlock_read(SEG_SIZE, 64, 8, 10),
        lambda: anon.seqlock_read(64, 56, 16, 10),  # counter inside the data
        lambda: anon.seqlock_read(0, 64, 8, 0),
        lambda: anon.seqlock_read(0, 64, 8, 2**32),
        lambda: anon.futex_wait_u32(0, 2**32, 0.0),
        lambda: anon.futex_wait_u32(0, 0, float("nan")),
        lambda: anon.futex_wake_u32(0, 0),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()
    with pytest.raises(TypeError):
        anon.load_u64(8.0)  # type: ignore[arg-type]


def test_alignment_is_checked_on_absolute_addresses() -> None:
    m = mmap.mmap(-1, SEG_SIZE)
    try:
        view = memoryview(m)[3:]
        with SharedWords(view) as words:
            assert words.address % 8 == 3
            with pytest.raises(ValueError):
                words.load_u64(0)
            with pytest.raises(ValueError):
                words.load_u32(0)
            words.store_u64(5, 99)  # absolute offset 8
            words.store_u32(1, 7)  # absolute offset 4
        view.release()
        assert struct.unpack_from("=IQ", m, 4) == (7, 99)
    finally:
        m.close()


def test_read_only_buffers_load_but_refuse_stores(segment: str) -> None:
    with attach(segment) as rw, attach(segment, readonly=True) as ro:
        assert ro.readonly and not rw.readonly
        rw.store_u64(8, 1234)
        rw.seqlock_write(0, 64, b"abcdefgh" * 4)
        assert ro.load_u64(8) == 1234
        assert ro.seqlock_read(0, 64, 32, 10) == (2, b"abcdefgh" * 4)
        for store in (
            lambda: ro.store_u64(8, 1),
            lambda: ro.fetch_add_u64(8, 1),
            lambda: ro.store_u32(8, 1),
            lambda: ro.fetch_add_u32(8, 1),
            lambda: ro.seqlock_write(0, 64, b"\0" * 8),
        ):
            with pytest.raises(TypeError):
                store()
        assert ro.load_u64(8) == 1234
    with SharedWords(b"\x01" + b"\0" * 15) as frozen:
        assert frozen.readonly
        with pytest.raises(TypeError):
            frozen.store_u32(0, 1)


def test_non_contiguous_buffer_is_rejected() -> None:
    with pytest.raises(ValueError):
        SharedWords(memoryview(bytearray(64))[::2])


def test_release_unblocks_close_and_disables_access() -> None:
    m = mmap.mmap(-1, SEG_SIZE)
    words = SharedWords(m)
    words.store_u64(0, 5)
    with pytest.raises(BufferError):
        m.close()  # still exported to cffi
    words.release()
    words.release()  # idempotent
    assert words.size == 0
    with pytest.raises(ValueError, match="released"):
        words.load_u64(0)
    m.close()


@given(st.lists(st.integers(min_value=0, max_value=U64_MAX), max_size=50))
def test_fetch_add_u64_matches_model(increments: list[int]) -> None:
    with SharedWords(bytearray(16)) as words:
        model = 0
        for inc in increments:
            assert words.fetch_add_u64(8, inc) == model
            model = (model + inc) % 2**64
        assert words.load_u64(8) == model
        assert words.load_u64(0) == 0


# -- single process: seqlock -----------------------------------------------------


def test_seqlock_roundtrip(anon: SharedWords) -> None:
    payload = bytes(range(256))
    for i in range(1, 4):
        anon.seqlock_write(SL_COUNTER, SL_STATE, payload)
        got = anon.seqlock_read(SL_COUNTER, SL_STATE, 256, 10)
        assert got == (2 * i, payload)
    out = bytearray(64)
    assert anon.seqlock_read_into(SL_COUNTER, SL_STATE, out, 10) == 6
    assert bytes(out) == payload[:64]
    assert anon.seqlock_read(SL_COUNTER, SL_STATE, 0, 1) == (6, b"")


def test_seqlock_accepts_unaligned_private_buffers(anon: SharedWords) -> None:
    raw = bytearray(b"\xee" + bytes(range(64)))
    anon.seqlock_write(SL_COUNTER, SL_STATE, memoryview(raw)[1:])
    out = bytearray(65)
    assert anon.seqlock_read_into(SL_COUNTER, SL_STATE, memoryview(out)[1:], 10) == 2
    assert out[1:] == raw[1:]


def test_seqlock_read_gives_up_on_odd_counter(anon: SharedWords) -> None:
    anon.seqlock_write(SL_COUNTER, SL_STATE, b"\x11" * 64)
    anon.store_u64(SL_COUNTER, 3)  # simulate a writer that died mid-publication
    t0 = time.monotonic()
    assert anon.seqlock_read(SL_COUNTER, SL_STATE, 64, 100_000) is None
    assert anon.seqlock_read_into(SL_COUNTER, SL_STATE, bytearray(64), 5) is None
    assert time.monotonic() - t0 < 5.0
    anon.store_u64(SL_COUNTER, 4)
    assert anon.seqlock_read(SL_COUNTER, SL_STATE, 64, 1) == (4, b"\x11" * 64)


# -- single process: futex -------------------------------------------------------


def test_has_futex_on_linux() -> None:
    on_linux = sys.platform.startswith("linux")
    assert HAS_FUTEX is on_linux


def test_futex_wait_times_out(anon: SharedWords) -> None:
    t0 = time.monotonic()
    assert anon.futex_wait_u32(FX_WORD, 0, timeout=0.1) is False
    elapsed = time.monotonic() - t0
    assert 0.09 <= elapsed < 5.0
    assert anon.futex_wait_u32(FX_WORD, 0, timeout=0.0) is False
    assert anon.futex_wait_u32(FX_WORD, 0, timeout=-1.0) is False


def test_futex_wait_returns_at_once_when_value_differs(anon: SharedWords) -> None:
    anon.store_u32(FX_WORD, 9)
    t0 = time.monotonic()
    assert anon.futex_wait_u32(FX_WORD, 8, timeout=10.0) is True
    assert anon.futex_wait_u32(FX_WORD, 8, timeout=None) is True
    assert anon.futex_wait_u32(FX_WORD, 8, timeout=0.0) is True
    assert time.monotonic() - t0 < 1.0
    assert anon.futex_wake_u32(FX_WORD) == 0  # nobody waiting


def test_futex_wait_on_read_only_mapping_times_out(segment: str) -> None:
    with attach(segment, readonly=True) as ro:
        assert ro.futex_wait_u32(FX_WORD, 0, timeout=0.05) is False
        assert ro.futex_wait_u32(FX_WORD, 1, timeout=0.05) is True


# -- multi-process: fetch_add ----------------------------------------------------

N_ADDERS = 4
ADDS_EACH = 20_000
FA_COUNTER = 0
FA_READY = 8
FA_U32 = 16


def _adder(name: str) -> int:
    with attach(name) as words:
        words.fetch_add_u64(FA_READY, 1)  # start barrier: all adders race together
        _spin_until(lambda: words.load_u64(FA_READY) == N_ADDERS, "the other adders")
        for _ in range(ADDS_EACH):
            words.fetch_add_u64(FA_COUNTER, 1)
            words.fetch_add_u32(FA_U32, 1)
        return os.getpid()


def test_fetch_add_across_processes(segment: str) -> None:
    with ProcessPoolExecutor(max_workers=N_ADDERS, mp_context=CTX) as pool:
        futures = [pool.submit(_adder, segment) for _ in range(N_ADDERS)]
        pids = {f.result(timeout=CHILD_DEADLINE * 2) for f in futures}
    assert len(pids) == N_ADDERS
    with attach(segment, readonly=True) as words:
        assert words.load_u64(FA_COUNTER) == N_ADDERS * ADDS_EACH
        assert words.load_u32(FA_U32) == N_ADDERS * ADDS_EACH


# -- multi-process: seqlock torture ----------------------------------------------

N_READERS = 2
READS_EACH = 20_000


def _seqlock_writer(name: str) -> int:
    """Publish states whose every word is k, for k = 1, 2, ... until told to stop."""
    with attach(name) as words:
        deadline = time.monotonic() + CHILD_DEADLINE
        k = 0
        while words.load_u64(SL_STOP) == 0:
            if time.monotonic() > deadline:
                raise TimeoutError("writer was never told to stop")
            k += 1
            words.seqlock_write(SL_COUNTER, SL_STATE, struct.pack(f"={SL_WORDS}Q", *[k] * SL_WORDS))
        return k


def _seqlock_reader(name: str) -> dict[str, int]:
    """Take READS_EACH snapshots through a read-only mapping and check each one."""
    with attach(name, readonly=True) as words:
        _spin_until(lambda: words.load_u64(SL_COUNTER) >= 2, "the writer's first publication")
        last_k = 0
        busy = 0
        distinct = 0
        first_k = -1
        ok = 0
        deadline = time.monotonic() + CHILD_DEADLINE
        while ok < READS_EACH:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {ok} consistent reads ({busy} busy)")
            got = words.seqlock_read(SL_COUNTER, SL_STATE, SL_WORDS * 8, 64)
            if got is None:
                busy += 1
                continue
            seq, data = got
            state = struct.unpack(f"={SL_WORDS}Q", data)
            k = state[0]
            if any(w != k for w in state):
                raise AssertionError(f"torn read at seq {seq}: {sorted(set(state))}")
            if seq != 2 * k:
                raise AssertionError(f"seq {seq} does not match state k={k}")
            if k < last_k:
                raise AssertionError(f"k went backwards: {last_k} -> {k}")
            if k != last_k:
                distinct += 1
            if first_k < 0:
                first_k = k
            last_k = k
            ok += 1
        return {"ok": ok, "busy": busy, "distinct": distinct, "first": first_k, "last": last_k}


def test_seqlock_torture_across_processes(segment: str) -> None:
    with ProcessPoolExecutor(max_workers=1 + N_READERS, mp_context=CTX) as pool:
        writer = pool.submit(_seqlock_writer, segment)
        readers = [pool.submit(_seqlock_reader, segment) for _ in range(N_READERS)]
        try:
            stats = [r.result(timeout=CHILD_DEADLINE * 2) for r in readers]
        finally:
            with attach(segment) as words:
                words.store_u64(SL_STOP, 1)
        writes = writer.result(timeout=CHILD_DEADLINE * 2)
    for s in stats:
        assert s["ok"] == READS_EACH
        assert 1 <= s["first"] <= s["last"] <= writes
    # The readers really raced the writer: they saw it publish new states.
    assert max(s["distinct"] for s in stats) > 1
    with attach(segment, readonly=True) as words:
        final = words.seqlock_read(SL_COUNTER, SL_STATE, SL_WORDS * 8, 1)
    assert final == (2 * writes, struct.pack(f"={SL_WORDS}Q", *[writes] * SL_WORDS))


# -- multi-process: futex --------------------------------------------------------

_FUTEX_SYSCALL = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98}.get(
    platform.machine().lower()
)


def _sleeping_on(pid: int, addr: int) -> bool | None:
    """Whether ``pid``'s main thread is in futex() on ``addr``; None if unknowable here."""
    if _FUTEX_SYSCALL is None:
        return None
    try:
        with open(f"/proc/{pid}/syscall") as f:
            fields = f.read().split()
    except OSError:
        return None
    # "<nr> <arg1> ..." while in a syscall, "running" otherwise.
    return len(fields) > 1 and fields[0] == str(_FUTEX_SYSCALL) and int(fields[1], 16) == addr


def _confirm_sleeping(pid: int, addr: int, limit: float = 10.0) -> bool:
    """Poll until ``pid`` sleeps in futex() on ``addr``; False if that can't be confirmed."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        state = _sleeping_on(pid, addr)
        if state is None:
            return False
        if state:
            return True
        time.sleep(0.001)
    return False


def _futex_waiter(name: str, results: Any) -> None:
    """Wait (through a read-only mapping, like a reader) for FX_WORD to leave 0."""
    with attach(name, readonly=True) as words:
        results.put(("waiting", os.getpid(), words.address + FX_WORD))
        t0 = time.monotonic()
        woke = words.futex_wait_u32(FX_WORD, 0, timeout=30.0)
        elapsed = time.monotonic() - t0
        results.put(("done", os.getpid(), (woke, elapsed, words.load_u32(FX_WORD))))


@pytest.mark.parametrize("n_waiters", [1, 3])
def test_futex_wake_across_processes(segment: str, n_waiters: int) -> None:
    results = CTX.Queue()
    procs = [
        CTX.Process(target=_futex_waiter, args=(segment, results), daemon=True)
        for _ in range(n_waiters)
    ]
    for p in procs:
        p.start()
    try:
        waiting = [results.get(timeout=CHILD_DEADLINE) for _ in procs]
        assert all(tag == "waiting" for tag, _, _ in waiting)
        confirmed = all([_confirm_sleeping(pid, addr) for _, pid, addr in waiting])
        if not confirmed:
            time.sleep(0.2)  # can't see inside the children: give them time to sleep
        with attach(segment) as words:
            words.store_u32(FX_WORD, 1)
            t_wake = time.monotonic()
            woken = words.futex_wake_u32(FX_WORD, WAKE_ALL)
        done = [results.get(timeout=10.0) for _ in procs]
        latency = time.monotonic() - t_wake
        for p in procs:
            p.join(timeout=10.0)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
        results.close()
    assert all(tag == "done" for tag, _, _ in done)
    for _, _, (woke, elapsed, value) in done:
        assert woke is True and value == 1 and elapsed < 30.0
    assert latency < 10.0
    if confirmed and HAS_FUTEX:
        assert woken == n_waiters  # each waiter was asleep in the kernel and was woken


def test_futex_wait_times_out_across_processes(segment: str) -> None:
    """A waiter in another process that nobody wakes reports a timeout."""
    with ProcessPoolExecutor(max_workers=1, mp_context=CTX) as pool:
        woke, elapsed = pool.submit(_futex_timeout_waiter, segment).result(timeout=CHILD_DEADLINE)
    assert woke is False
    assert 0.09 <= elapsed < 10.0


def _futex_timeout_waiter(name: str) -> tuple[bool, float]:
    with attach(name, readonly=True) as words:
        t0 = time.monotonic()
        woke = words.futex_wait_u32(FX_WORD, 0, timeout=0.1)
        return woke, time.monotonic() - t0
