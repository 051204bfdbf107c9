"""Typed wrapper over the BLAKE3 kernels of the C helper (csrc/kernel_*.c, tree_hash.c).

Which kernel hashes the tree's nodes:

* ``python`` -- the ``blake3`` package, one call per node: the reference and the fallback;
* ``portable`` -- plain C, one message at a time (every platform);
* ``sse41`` / ``avx2`` / ``avx512`` -- x86-64 SIMD, 4 / 8 / 16 messages side by side.

At import the widest kernel this CPU supports is chosen. ``ROTORSHM_KERNEL`` forces one;
an unknown name, or one this CPU cannot run, makes ``import rotorshm`` raise
:class:`~rotorshm.errors.InvalidConfig` naming the kernels this machine has: a forced
kernel is never silently replaced by another.

Every function here checks its arguments (types, lengths, ranges) before the one C call,
so C never receives a buffer shorter than the lengths it is told. The C functions hold no
Python object, and cffi releases the GIL around them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, TypedDict

from blake3 import blake3

from rotorshm._native import ffi, lib

from .errors import InvalidConfig

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "ENV_VAR",
    "KERNELS",
    "MAX_MANY_LEN",
    "NativeInfo",
    "active",
    "available",
    "blake3_digest",
    "cpu_features",
    "hash_many",
    "native_info",
]

ENV_VAR: Final[str] = "ROTORSHM_KERNEL"
#: Every kernel name, narrowest first.
KERNELS: Final[tuple[str, ...]] = ("python", "portable", "sse41", "avx2", "avx512")
#: Longest message (prefix included) :func:`hash_many` takes: one BLAKE3 chunk.
MAX_MANY_LEN: Final[int] = int(lib.RS_B3_MAX_MANY_LEN)

_NODE: Final[int] = 32
_C_ID: Final[dict[str, int]] = {
    "portable": int(lib.RS_KERNEL_PORTABLE),
    "sse41": int(lib.RS_KERNEL_SSE41),
    "avx2": int(lib.RS_KERNEL_AVX2),
    "avx512": int(lib.RS_KERNEL_AVX512),
}
_C_NAME: Final[dict[int, str]] = {v: k for k, v in _C_ID.items()}
_FEATURES: Final[tuple[tuple[str, int], ...]] = (
    ("sse4.1", int(lib.RS_CPU_SSE41)),
    ("avx2", int(lib.RS_CPU_AVX2)),
    ("avx512f", int(lib.RS_CPU_AVX512F)),
)
# Output buffers that C overwrites entirely before Python reads them: skip zeroing.
_alloc = ffi.new_allocator(should_clear_after_alloc=False)


class NativeInfo(TypedDict):
    """What :func:`native_info` returns."""

    kernel: str
    lanes: int
    cpu_features: list[str]
    available: list[str]


def cpu_features() -> tuple[str, ...]:
    """SIMD features the C helper detected on this CPU (and OS)."""
    bits = int(lib.rs_cpu_features())
    return tuple(name for name, bit in _FEATURES if bits & bit)


def available() -> tuple[str, ...]:
    """Kernels this machine can run, narrowest first (``python`` and ``portable`` always)."""
    return ("python",) + tuple(n for n, i in _C_ID.items() if lib.rs_kernel_available(i))


class _State:
    """The kernel in use; ``python`` is a flag here, the C ones live in C."""

    __slots__ = ("name", "python")

    def __init__(self) -> None:
        self.name = _C_NAME[int(lib.rs_kernel_get())]
        self.python = False


_state = _State()
_select_lock = threading.Lock()


def active() -> str:
    """Name of the kernel in use."""
    return _state.name


def uses_python() -> bool:
    """True when node hashes go through the blake3 package (``ROTORSHM_KERNEL=python``)."""
    return _state.python


def _select(name: object) -> None:
    """Use kernel `name` from now on in this process; InvalidConfig if it is not available."""
    if not isinstance(name, str) or name not in KERNELS:
        raise InvalidConfig(
            f"unknown kernel {name!r}: choose one of {', '.join(KERNELS)} "
            f"(this CPU runs {', '.join(available())})"
        )
    if name not in available():
        raise InvalidConfig(
            f"kernel {name!r} is not supported on this CPU (features: "
            f"{', '.join(cpu_features()) or 'none'}); available: {', '.join(available())}"
        )
    with _select_lock:
        if name == "python":
            _state.python = True
        else:
            if lib.rs_kernel_set(_C_ID[name]) != 0:  # pragma: no cover - checked above
                raise InvalidConfig(f"kernel {name!r} could not be selected")
            _state.python = False
        _state.name = name


@contextmanager
def _use(name: str) -> Iterator[None]:
    """Use kernel `name` inside the block (tests), then restore the previous one.

    Process-wide, not per thread: meant for tests that run one at a time.
    """
    before = _state.name
    _select(name)
    try:
        yield
    finally:
        _select(before)


def native_info() -> NativeInfo:
    """The kernel in use, its SIMD lanes, the CPU features detected, the kernels available."""
    name = _state.name
    return {
        "kernel": name,
        "lanes": 1 if name == "python" else int(lib.rs_kernel_lanes(_C_ID[name])),
        "cpu_features": list(cpu_features()),
        "available": list(available()),
    }


def _buffer(data: Buffer, what: str) -> Any:
    """A cffi view of a C-contiguous buffer, and its size."""
    try:
        with memoryview(data) as view:
            if not view.c_contiguous:
                raise ValueError(f"{what} must be C-contiguous")
    except TypeError:
        raise TypeError(f"{what} must be a bytes-like object, got {type(data).__name__}") \
            from None
    return ffi.from_buffer(data)


def _nbytes(data: Buffer) -> int:
    with memoryview(data) as view:
        return view.nbytes


def hash_many(prefix: bytes, data: Buffer, stride: int, msg_len: int, count: int) -> bytes:
    """BLAKE3 of `count` messages, concatenated: message i = prefix || data[i*stride : +msg_len].

    The generic entry to the kernel in use (the ``python`` kernel hashes with the blake3
    package); len(prefix) + msg_len <= 1024.
    """
    if not isinstance(prefix, bytes):
        raise TypeError("prefix must be bytes")
    for name, v in (("stride", stride), ("msg_len", msg_len), ("count", count)):
        if not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    if len(prefix) + msg_len > MAX_MANY_LEN:
        raise ValueError(f"a message is at most {MAX_MANY_LEN} bytes with its prefix")
    size = _nbytes(data)
    if count and (count - 1) * stride + msg_len > size:
        raise ValueError(f"{count} messages of {msg_len} bytes at stride {stride} "
                         f"need more than the {size} bytes given")
    if _state.python:
        mv = memoryview(data).cast("B")
        return b"".join(
            blake3(prefix + mv[i * stride : i * stride + msg_len]).digest() for i in range(count)
        )
    out = _alloc("uint8_t[]", _NODE * count or 1)
    src = _buffer(data, "data") if size else ffi.NULL
    if lib.rs_hash_many(prefix, len(prefix), src, stride, msg_len, count, out) != 0:
        raise ValueError("message too long")  # pragma: no cover - checked above
    return bytes(ffi.buffer(out, _NODE * count))


def blake3_digest(data: Buffer) -> bytes:
    """BLAKE3 (32 bytes) of one message of any length, with the C kernel (or blake3)."""
    if _state.python:
        return blake3(bytes(data)).digest()
    size = _nbytes(data)
    out = _alloc("uint8_t[]", _NODE)
    lib.rs_blake3(_buffer(data, "data") if size else ffi.NULL, size, out)
    return bytes(ffi.buffer(out, _NODE))


# -- the tree's node hashes (called by rotorshm.hashing after its own checks) -----------

#: A level is split across threads only from this many full groups on (below, one call:
#: starting threads would cost more than they save).
PARALLEL_MIN_GROUPS: Final[int] = 4096
#: Most threads one level may be split across (RS_MAX_HASH_THREADS in C).
MAX_HASH_THREADS: Final[int] = int(lib.RS_MAX_HASH_THREADS)


def c_hash_groups(nodes: Buffer, count: int, arity: int, threads: int = 1) -> bytes:
    """Parents of `count` nodes (checked by the caller: 2 <= arity <= 255, buffer long enough).

    With threads > 1 and at least PARALLEL_MIN_GROUPS full groups, the parents are split
    into `threads` ranges hashed at once on POSIX threads started by C (the calling thread
    takes the first range), so no thread needs the GIL while the level is hashed.
    """
    parents = -(-count // arity)
    out = _alloc("uint8_t[]", _NODE * parents or 1)
    src = _buffer(nodes, "nodes") if count else ffi.NULL
    if threads <= 1 or count // arity < PARALLEL_MIN_GROUPS:
        rc = lib.rs_hash_groups(src, count, arity, out)
    else:
        rc = lib.rs_hash_groups_mt(src, count, arity, threads, out)
    if rc != 0:  # pragma: no cover - arguments are checked by the caller
        raise ValueError("rs_hash_groups rejected its arguments")
    return bytes(ffi.buffer(out, _NODE * parents))


def c_hash_groups_into(nodes: Buffer, count: int, arity: int, threads: int, out: Buffer) -> None:
    """c_hash_groups writing into `out` (writable, 32*ceil(count/arity) bytes; checked by the
    caller, as is `nodes`)."""
    with ffi.from_buffer(nodes) as src, ffi.from_buffer(out, require_writable=True) as dst:
        if threads <= 1 or count // arity < PARALLEL_MIN_GROUPS:
            rc = lib.rs_hash_groups(src, count, arity, dst)
        else:
            rc = lib.rs_hash_groups_mt(src, count, arity, threads, dst)
    if rc != 0:  # pragma: no cover - arguments are checked by the caller
        raise ValueError("rs_hash_groups rejected its arguments")


# One 32-byte output buffer per thread for the one-group helpers: a call fills it and
# copies it out before returning, and no Python code runs in between.
_tls = threading.local()


def _out32() -> Any:
    try:
        return _tls.out
    except AttributeError:
        _tls.out = ffi.new("char[32]")
        return _tls.out


def c_hash_group(children: bytes, k: int) -> bytes:
    """Parent of k = 1..255 contiguous children (len(children) == 32*k, checked by the caller)."""
    out = _out32()
    lib.rs_hash_group(children, k, out)
    return ffi.unpack(out, _NODE)  # type: ignore[no-any-return]


def c_hash_group_with(siblings: bytes, pos: int, child: bytes) -> bytes:
    """Parent of siblings[:pos] + child + siblings[pos:] (checked by the caller)."""
    out = _out32()
    lib.rs_hash_group_with(siblings, len(siblings) // _NODE + 1, pos, child, out)
    return ffi.unpack(out, _NODE)  # type: ignore[no-any-return]


def _from_env() -> None:
    choice = os.environ.get(ENV_VAR, "").strip()
    if not choice:
        return
    try:
        _select(choice.lower())
    except InvalidConfig as exc:
        raise InvalidConfig(f"{ENV_VAR}={choice}: {exc}") from None


_from_env()
