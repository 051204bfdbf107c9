"""Typed wrapper over the C helper ``rotorshm._native``.

Atomic loads, stores and fetch-adds on words inside a shared buffer (an mmap of
a shard file or of a POSIX shared-memory segment), the seqlock read and write
loops, and futex wait/wake on a shared 32-bit word.  Every offset is checked for
range and natural alignment here, so C never receives a bad pointer.
"""

from __future__ import annotations

import math
import os
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from rotorshm._native import ffi, lib

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "HAS_FUTEX",
    "U32_MAX",
    "U64_MAX",
    "WAKE_ALL",
    "SharedWords",
    "fence",
]

#: True where futex wait/wake are real syscalls (Linux); elsewhere waits poll.
HAS_FUTEX: Final[bool] = bool(lib.rs_has_futex())

U32_MAX: Final[int] = 2**32 - 1
U64_MAX: Final[int] = 2**64 - 1
#: ``n`` for :meth:`SharedWords.futex_wake_u32` that wakes every waiter.
WAKE_ALL: Final[int] = 2**31 - 1

_MAX_WAIT_NS: Final[int] = 2**62
_SEQLOCK_BUSY: Final[int] = int(lib.RS_SEQLOCK_BUSY)
_FUTEX_WOKEN: Final[int] = int(lib.RS_FUTEX_WOKEN)
_FUTEX_TIMEDOUT: Final[int] = int(lib.RS_FUTEX_TIMEDOUT)
_FUTEX_RECHECK: Final[int] = int(lib.RS_FUTEX_RECHECK)

# Scratch memory that C overwrites entirely before Python reads it: skip zeroing.
_alloc_uncleared = ffi.new_allocator(should_clear_after_alloc=False)


def fence() -> None:
    """Issue a sequentially consistent memory fence."""
    lib.rs_fence()


class SharedWords:
    """Atomic, seqlock and futex access to aligned words of one shared buffer.

    The buffer (mmap, memoryview, bytearray, ...) must be C-contiguous; a read-only
    buffer allows loads, seqlock reads and futex waits but refuses every store.
    The buffer stays exported until :meth:`release` (or the end of a ``with``
    block), so release before closing an mmap or a ``SharedMemory``.
    """

    __slots__ = ("_cdata", "_addr", "_size", "_readonly", "_released")

    def __init__(self, buf: Buffer) -> None:
        with memoryview(buf) as view:
            if not view.c_contiguous:
                raise ValueError("shared buffer must be C-contiguous")
            readonly = view.readonly
            nbytes = view.nbytes
        self._cdata: Any = ffi.from_buffer("char[]", buf, require_writable=False)
        if len(self._cdata) != nbytes:  # pragma: no cover - defensive
            ffi.release(self._cdata)
            raise ValueError("cffi saw a different buffer size than memoryview")
        self._addr: int = int(ffi.cast("uintptr_t", self._cdata))
        self._size: int = nbytes
        self._readonly: bool = readonly
        self._released: bool = False

    # -- lifetime -----------------------------------------------------------

    def release(self) -> None:
        """Drop the buffer export; every later operation raises ValueError."""
        if not self._released:
            self._released = True
            self._size = 0
            ffi.release(self._cdata)

    def __enter__(self) -> SharedWords:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    @property
    def size(self) -> int:
        """Size of the wrapped buffer in bytes (0 once released)."""
        return self._size

    @property
    def readonly(self) -> bool:
        """Whether the wrapped buffer refuses stores."""
        return self._readonly

    @property
    def address(self) -> int:
        """Virtual address of byte 0 of the buffer in this process."""
        return self._addr

    # -- checks -------------------------------------------------------------

    def _word(self, off: int, width: int) -> Any:
        """Return a pointer to the naturally aligned ``width``-byte word at ``off``."""
        if not isinstance(off, int):
            raise TypeError(f"offset must be an int, not {type(off).__name__}")
        if off < 0 or off + width > self._size:
            self._raise_range(off, width)
        if (self._addr + off) % width:
            raise ValueError(f"offset {off} is not {width}-byte aligned")
        return self._cdata + off

    def _span(self, off: int, nbytes: int) -> Any:
        """Return a pointer to an 8-aligned span of ``nbytes`` (a multiple of 8)."""
        if not isinstance(off, int) or not isinstance(nbytes, int):
            raise TypeError("offset and length must be ints")
        if nbytes < 0 or nbytes % 8:
            raise ValueError(f"length {nbytes} is not a non-negative multiple of 8")
        if off < 0 or off + nbytes > self._size:
            self._raise_range(off, nbytes)
        if (self._addr + off) % 8:
            raise ValueError(f"offset {off} is not 8-byte aligned")
        return self._cdata + off

    def _raise_range(self, off: int, width: int) -> None:
        if self._released:
            raise ValueError("SharedWords has been released")
        raise ValueError(
            f"bytes [{off}, {off + width}) out of range for a {self._size}-byte buffer"
        )

    def _writable(self) -> None:
        if self._readonly:
            raise TypeError("cannot store into a read-only shared buffer")

    @staticmethod
    def _check_disjoint(counter_off: int, off: int, nbytes: int) -> None:
        if off < counter_off + 8 and counter_off < off + nbytes:
            raise ValueError("seqlock counter overlaps the data it protects")

    # -- single words -------------------------------------------------------

    def load_u64(self, off: int) -> int:
        """Acquire-load the 64-bit word at byte offset ``off``."""
        return int(lib.rs_load_acquire_u64(self._word(off, 8)))

    def store_u64(self, off: int, value: int) -> None:
        """Release-store ``value`` into the 64-bit word at ``off``."""
        self._writable()
        lib.rs_store_release_u64(self._word(off, 8), value)

    def fetch_add_u64(self, off: int, value: int) -> int:
        """Atomically add ``value`` (mod 2**64, seq_cst) and return the previous value."""
        self._writable()
        return int(lib.rs_fetch_add_u64(self._word(off, 8), value))

    def load_u32(self, off: int) -> int:
        """Acquire-load the 32-bit word at byte offset ``off``."""
        return int(lib.rs_load_acquire_u32(self._word(off, 4)))

    def store_u32(self, off: int, value: int) -> None:
        """Release-store ``value`` into the 32-bit word at ``off``."""
        self._writable()
        lib.rs_store_release_u32(self._word(off, 4), value)

    def fetch_add_u32(self, off: int, value: int) -> int:
        """Atomically add ``value`` (mod 2**32, seq_cst) and return the previous value."""
        self._writable()
        return int(lib.rs_fetch_add_u32(self._word(off, 4), value))

    # -- seqlock ------------------------------------------------------------

    def seqlock_write(self, counter_off: int, dst_off: int, data: Buffer) -> None:
        """Publish ``data`` at ``dst_off`` under the seqlock counter at ``counter_off``.

        Single writer only; ``len(data)`` must be a multiple of 8.
        """
        self._writable()
        src = ffi.from_buffer("char[]", data, require_writable=False)
        try:
            nbytes = len(src)
            counter = self._word(counter_off, 8)
            dst = self._span(dst_off, nbytes)
            self._check_disjoint(counter_off, dst_off, nbytes)
            lib.rs_seqlock_write(counter, dst, src, nbytes)
        finally:
            ffi.release(src)

    def seqlock_read(
        self, counter_off: int, src_off: int, nbytes: int, max_retries: int
    ) -> tuple[int, bytes] | None:
        """Return ``(seq, copy)`` of a consistent ``nbytes`` at ``src_off``.

        Returns None when ``max_retries`` attempts all met a writer (counter odd or
        moving): the caller decides whether to retry or suspect a dead writer.
        """
        counter = self._word(counter_off, 8)
        src = self._span(src_off, nbytes)
        self._check_disjoint(counter_off, src_off, nbytes)
        _check_retries(max_retries)
        dst = _alloc_uncleared("char[]", max(nbytes, 1))
        seq = ffi.new("uint64_t *")
        if lib.rs_seqlock_read(counter, src, dst, nbytes, max_retries, seq) == _SEQLOCK_BUSY:
            return None
        return int(seq[0]), ffi.unpack(dst, nbytes)

    def seqlock_read_into(
        self, counter_off: int, src_off: int, out: Buffer, max_retries: int
    ) -> int | None:
        """Like :meth:`seqlock_read`, copying ``len(out)`` bytes into ``out``; returns seq."""
        dst = ffi.from_buffer("char[]", out, require_writable=True)
        try:
            nbytes = len(dst)
            counter = self._word(counter_off, 8)
            src = self._span(src_off, nbytes)
            self._check_disjoint(counter_off, src_off, nbytes)
            _check_retries(max_retries)
            seq = ffi.new("uint64_t *")
            if lib.rs_seqlock_read(counter, src, dst, nbytes, max_retries, seq) == _SEQLOCK_BUSY:
                return None
            return int(seq[0])
        finally:
            ffi.release(dst)

    # -- futex --------------------------------------------------------------

    def futex_wait_u32(self, off: int, expected: int, timeout: float | None = None) -> bool:
        """Block while the 32-bit word at ``off`` equals ``expected``.

        Returns True once woken or the word differs (wakeups may be spurious, so
        recheck your condition), False if ``timeout`` seconds (None = forever) pass.
        """
        ptr = self._word(off, 4)
        if not isinstance(expected, int) or not 0 <= expected <= U32_MAX:
            raise ValueError(f"expected must be a u32, got {expected!r}")
        deadline: float | None = None
        if timeout is not None:
            if math.isnan(timeout):
                raise ValueError("timeout must not be NaN")
            if not math.isinf(timeout) or timeout < 0:
                deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            if deadline is None:
                timeout_ns = -1
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return int(lib.rs_load_acquire_u32(ptr)) != expected
                timeout_ns = min(max(int(remaining * 1e9), 1), _MAX_WAIT_NS)
            r = int(lib.rs_futex_wait_u32(ptr, expected, timeout_ns))
            if r == _FUTEX_WOKEN:
                return True
            if r == _FUTEX_TIMEDOUT:
                return int(lib.rs_load_acquire_u32(ptr)) != expected
            if r == _FUTEX_RECHECK:  # EINTR or polling fallback: signals run here
                if int(lib.rs_load_acquire_u32(ptr)) != expected:
                    return True
                continue
            raise OSError(-r, os.strerror(-r))

    def futex_wake_u32(self, off: int, n: int = WAKE_ALL) -> int:
        """Wake up to ``n`` waiters on the 32-bit word at ``off``; return how many woke.

        Without futexes (non-Linux) this is a no-op returning 0: waiters poll.
        """
        ptr = self._word(off, 4)
        if not isinstance(n, int) or not 1 <= n <= WAKE_ALL:
            raise ValueError(f"n must be in [1, {WAKE_ALL}], got {n!r}")
        r = int(lib.rs_futex_wake_u32(ptr, n))
        if r < 0:
            raise OSError(-r, os.strerror(-r))
        return r


def _check_retries(max_retries: int) -> None:
    if not isinstance(max_retries, int) or not 1 <= max_retries <= U32_MAX:
        raise ValueError(f"max_retries must be in [1, {U32_MAX}], got {max_retries!r}")
