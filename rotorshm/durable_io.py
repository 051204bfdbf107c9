"""The one door for durable I/O: every write, sync, rename, truncate and fallocate of a store.

The WAL, checkpoints and shard files never call `os.fsync`, `os.pwrite`, `mmap.flush`,
`os.replace`, ... themselves: they call the methods of the store's `DurableIO`. That
gives three things one home each:

* **The rule "after a failed sync, stop".** On Linux a failed fsync/fdatasync/msync
  drops the dirty pages' error state: a retry returns 0 although the pages were never
  written. So the first failed sync *poisons* the door: the failure and every later call
  through it raise `StorePoisoned`, and the store built on it never claims durability
  again. It recovers only by being reopened (recovery replays the WAL from disk).
* **Errors that mean "no space"** (ENOSPC, EDQUOT, EFBIG, a short write) become
  `StorageFull`, which does not poison: nothing was lost, the caller can retry later.
* **Fault injection.** Tests install a `FaultLayer` (`inject(...)`): it sees every call,
  of every door in the process, and can fail the Nth call of a chosen kind with a chosen
  errno, exactly where the real syscall would have failed. It is a hook in this module,
  consulted before each real call; nothing else is replaced.

Kinds of call: "write", "fsync", "fdatasync", "msync", "dirsync" (fsync of a directory),
"rename", "truncate", "fallocate". The first four sync kinds poison on failure.
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import mmap
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .errors import StorageFull, StorePoisoned

KINDS = ("write", "fsync", "fdatasync", "msync", "dirsync", "rename", "truncate", "fallocate")
#: Kinds whose failure poisons the door (the kernel may have dropped the dirty pages).
SYNC_KINDS = frozenset({"fsync", "fdatasync", "msync", "dirsync"})
_FULL_ERRNOS = frozenset({errno_mod.ENOSPC, errno_mod.EDQUOT, errno_mod.EFBIG})


def is_full_error(exc: OSError) -> bool:
    """True if an OSError means "no space left" (disk full, quota, file size limit)."""
    return exc.errno in _FULL_ERRNOS


# -- the fault layer (tests) ------------------------------------------------------------------


@dataclass
class FaultLayer:
    """Fails the `nth` call (1-based) of `kind` whose path contains `path_contains`.

    Records every call it sees in `calls` as (kind, path), so tests can also check which
    syscalls a workload made, and in what order. `fired` tells whether the fault struck.
    """

    kind: str | None = None
    nth: int = 0
    errno: int = errno_mod.EIO
    path_contains: str = ""
    calls: list[tuple[str, str]] = field(default_factory=list)
    fired: bool = False
    _seen: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; one of {KINDS}")

    def before(self, kind: str, path: str) -> None:
        """Called by the door before each real call: record it, raise if it is the one."""
        with self._lock:
            self.calls.append((kind, path))
            if kind != self.kind or self.path_contains not in path:
                return
            self._seen += 1
            if self._seen != self.nth:
                return
            self.fired = True
        raise OSError(self.errno, f"injected {os.strerror(self.errno)} ({kind} #{self.nth})",
                      path)

    def count(self, kind: str, path_contains: str = "") -> int:
        """How many calls of `kind` on a matching path were seen."""
        return sum(1 for k, p in self.calls if k == kind and path_contains in p)


_layer: FaultLayer | None = None


@contextlib.contextmanager
def inject(kind: str | None = None, nth: int = 0, errno: int = errno_mod.EIO,
           path_contains: str = "") -> Iterator[FaultLayer]:
    """Install a FaultLayer for the duration of the block (process-wide); yields it.

    `inject()` with no kind only traces the calls.
    """
    global _layer
    layer = FaultLayer(kind, nth, errno, path_contains)
    previous, _layer = _layer, layer
    try:
        yield layer
    finally:
        _layer = previous


def _before(kind: str, path: str) -> None:
    layer = _layer
    if layer is not None:
        layer.before(kind, path)


# -- the door -----------------------------------------------------------------------------------


class DurableIO:
    """The durable-I/O door of one store: its WAL, checkpoint files and shard files.

    Thread-safe: calls may come from the ingest thread and the flusher at once. Once
    poisoned, it stays poisoned for the life of the object.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self._poisoned: StorePoisoned | None = None
        self._lock = threading.Lock()
        self._hooks: list[Callable[[StorePoisoned], None]] = []

    # -- poisoning ----------------------------------------------------------------------------

    @property
    def poisoned(self) -> StorePoisoned | None:
        """The error that poisoned the door, or None while it is healthy."""
        return self._poisoned

    def add_poison_hook(self, hook: Callable[[StorePoisoned], None]) -> None:
        """Call `hook(error)` once, from the failing thread, when the door gets poisoned."""
        self._hooks.append(hook)

    def check(self) -> None:
        """Raise StorePoisoned if the door is poisoned."""
        err = self._poisoned
        if err is not None:
            raise StorePoisoned(str(err)) from err.__cause__

    def poison(self, cause: BaseException, what: str) -> StorePoisoned:
        """Poison the door (idempotent: the first cause wins); return the error to raise."""
        with self._lock:
            err = self._poisoned
            first = err is None
            if err is None:
                err = StorePoisoned(
                    f"{self.label}: {what} failed ({cause}); durability can no longer be "
                    "guaranteed: the store refuses every write until it is reopened"
                )
                err.__cause__ = cause
                self._poisoned = err
        if first:
            for hook in self._hooks:
                hook(err)
        return err

    def _sync(self, kind: str, path: str, call: Callable[[], object]) -> None:
        self.check()
        try:
            _before(kind, path)
            call()
        except OSError as exc:
            raise self.poison(exc, f"{kind} of {path}") from exc

    def _plain(self, kind: str, path: str, call: Callable[[], object]) -> None:
        self.check()
        try:
            _before(kind, path)
            call()
        except OSError as exc:
            if is_full_error(exc) and not isinstance(exc, StorageFull):
                raise StorageFull(exc.errno, f"{path}: {exc.strerror}") from exc
            raise

    # -- syncs (a failure poisons) -----------------------------------------------------------

    def fsync(self, fd: int, path: str) -> None:
        """fsync(fd): data and metadata of `path`."""
        self._sync("fsync", path, lambda: os.fsync(fd))

    def fdatasync(self, fd: int, path: str) -> None:
        """fdatasync(fd): the data of `path` (and the metadata needed to read it back)."""
        self._sync("fdatasync", path, lambda: os.fdatasync(fd))

    def msync(self, m: mmap.mmap, offset: int, length: int, path: str) -> None:
        """msync(MS_SYNC) of a page-aligned range of a shared file mapping."""
        self._sync("msync", path, lambda: m.flush(offset, length))

    def fsync_dir(self, path: str) -> None:
        """fsync a directory, so that entries created or renamed in it survive a crash."""

        def call() -> None:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        self._sync("dirsync", path, call)

    # -- changes (a full disk raises StorageFull; nothing is poisoned) ------------------------

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int, path: str) -> None:
        """Write all of `data` at `offset`; a short write is a full disk."""

        def call() -> None:
            n = os.pwrite(fd, data, offset)
            if n != len(data):
                raise OSError(errno_mod.ENOSPC, f"short write ({n} of {len(data)} bytes)")

        self._plain("write", path, call)

    def write_all(self, fd: int, data: bytes | memoryview, path: str) -> None:
        """Write all of `data` at the file position (looping over short writes)."""

        def call() -> None:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                if n <= 0:
                    raise OSError(errno_mod.ENOSPC, "write made no progress")
                view = view[n:]

        self._plain("write", path, call)

    def ftruncate(self, fd: int, size: int, path: str) -> None:
        """Set the size of `path`."""
        self._plain("truncate", path, lambda: os.ftruncate(fd, size))

    def fallocate(self, fd: int, offset: int, length: int, path: str) -> None:
        """Reserve real space (posix_fallocate), so that later writes cannot hit a full disk."""
        self._plain("fallocate", path, lambda: os.posix_fallocate(fd, offset, length))

    def replace(self, src: str, dst: str) -> None:
        """Atomically rename `src` over `dst` (not durable until the directory is fsynced)."""
        self._plain("rename", dst, lambda: os.replace(src, dst))

    # -- compositions -------------------------------------------------------------------------

    def atomic_write(self, path: str, data: bytes) -> None:
        """Replace `path` with `data`: write a temp file, fsync, rename, fsync the directory."""
        tmp = path + ".tmp"
        self.check()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            self.write_all(fd, data, tmp)
            self.fsync(fd, tmp)
        finally:
            os.close(fd)
        self.replace(tmp, path)
        self.fsync_dir(os.path.dirname(path) or ".")

    def create_file(self, path: str, flags: int = os.O_RDWR, mode: int = 0o600) -> int:
        """Open `path`, creating it if needed; a new entry's directory is fsynced before return."""
        self.check()
        try:
            return os.open(path, flags | os.O_CLOEXEC)
        except FileNotFoundError:
            pass
        fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, mode)
        try:
            self.fsync_dir(os.path.dirname(path) or ".")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def makedirs(self, path: str) -> None:
        """Create `path` and missing parents, fsyncing each new entry into its parent."""
        path = os.path.abspath(path)
        if os.path.isdir(path):
            return
        parent = os.path.dirname(path)
        if parent != path:
            self.makedirs(parent)
        self.check()
        with contextlib.suppress(FileExistsError):
            os.mkdir(path)
        self.fsync_dir(parent)
