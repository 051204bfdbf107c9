"""The one door for durable I/O: every write, sync, rename, truncate and fallocate of a store.

The WAL, checkpoints and shard files never call `os.fsync`, `os.pwrite`, `mmap.flush`,
`os.replace`, ... themselves: they call the methods of the store's `DurableIO`. That
gives three things one home each:

* **The rule "after a failed sync, stop".** On Linux a failed fsync/fdatasync/msync
  drops the dirty pages' error state: a retry returns 0 although the pages were never
  written. So the first failed sync *poisons* the door: the failure and every later call
  through it raise `StorePoisoned`, and the store built on it never claims durability
  again. It recovers only by being reopened (recovery replays the WAL from disk).
* **Errors that mean "no space"** (ENOSPC, EDQUOT, EFBIG, a short write) of a write,
  rename, truncate or fallocate become `StorageFull`, which does not poison: nothing was
  changed, the caller can retry later. Any *other* failure of those calls (EIO, EROFS,
  ...) leaves the file in a state nobody knows (was the rename done? how much of the
  write reached the page cache?), so it poisons like a failed sync.
* **Errors that say what failed.** Every error from the door names the operation and the
  file ("fdatasync of /t/wal.log", "fallocate of /rotorshm.t.0123.L2.S0").
* **Fault injection.** Tests install a `FaultLayer` (`inject(...)`): it sees every call,
  of every door in the process, and can fail the Nth call of a chosen kind (or of a
  chosen *call site*) with a chosen errno, exactly where the real syscall would have
  failed. It is a hook in this module, consulted before each real call; nothing else is
  replaced, and without a layer installed it costs one global read per call.

Kinds of call: "write", "fsync", "fdatasync", "msync", "dirsync" (fsync of a directory),
"rename", "truncate", "fallocate". The four sync kinds poison on any failure.

A **call site** names where in rotorshm a call comes from: the kind, the function that
called the door (module.qualname; for the door's own compositions, `atomic_write`,
`create_file` and `makedirs`, also which one) and the role of the file, its path with
the tree directory replaced by `~` and every run of digits by `N`:
`fdatasync wal.WriteAheadLog.sync ~/wal.log`, `dirsync levels.FileLevel._open_fd
/create_file ~/data/level_N`. The sites are computed only while a layer is installed.
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import mmap
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from .errors import RotorError, StorageFull, StorePoisoned

KINDS = ("write", "fsync", "fdatasync", "msync", "dirsync", "rename", "truncate", "fallocate")
#: Kinds whose failure poisons the door (the kernel may have dropped the dirty pages).
SYNC_KINDS = frozenset({"fsync", "fdatasync", "msync", "dirsync"})
_FULL_ERRNOS = frozenset({errno_mod.ENOSPC, errno_mod.EDQUOT, errno_mod.EFBIG})


def is_full_error(exc: OSError) -> bool:
    """True if an OSError means "no space left" (disk full, quota, file size limit)."""
    return exc.errno in _FULL_ERRNOS


# -- the fault layer (tests) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """One call the fault layer saw: its kind, path and call site."""

    kind: str
    path: str
    site: str


@dataclass
class FaultLayer:
    """Fails the `nth` call (1-based) of `kind` (or at `site`) whose path contains `path_contains`.

    Records every call it sees in `calls` as (kind, path), and the same with its call site
    in `trace` (`Call`), so tests can also check which syscalls a workload made, from
    where, and in what order. `fired` tells whether the fault struck, `fired_call` which.
    """

    kind: str | None = None
    nth: int = 0
    errno: int = errno_mod.EIO
    path_contains: str = ""
    site: str | None = None
    calls: list[tuple[str, str]] = field(default_factory=list)
    trace: list[Call] = field(default_factory=list)
    fired: bool = False
    fired_call: Call | None = None
    _seen: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; one of {KINDS}")
        if self.site is not None:
            site_kind = self.site.split(" ", 1)[0]
            if site_kind not in KINDS or (self.kind is not None and self.kind != site_kind):
                raise ValueError(f"site {self.site!r} does not start with its kind")
            self.kind = site_kind

    def before(self, kind: str, path: str, site: str) -> None:
        """Called by the door before each real call: record it, raise if it is the one."""
        call = Call(kind, path, site)
        with self._lock:
            self.calls.append((kind, path))
            self.trace.append(call)
            if kind != self.kind or self.path_contains not in path:
                return
            if self.site is not None and site != self.site:
                return
            self._seen += 1
            if self._seen != self.nth:
                return
            self.fired = True
            self.fired_call = call
        raise OSError(self.errno, f"injected {os.strerror(self.errno)} ({kind} #{self.nth})",
                      path)

    def count(self, kind: str, path_contains: str = "") -> int:
        """How many calls of `kind` on a matching path were seen."""
        return sum(1 for k, p in self.calls if k == kind and path_contains in p)

    def sites(self) -> dict[str, int]:
        """Every call site seen, with its number of calls, in order of first appearance."""
        out: dict[str, int] = {}
        for call in self.trace:
            out[call.site] = out.get(call.site, 0) + 1
        return out


_layer: FaultLayer | None = None


@contextlib.contextmanager
def inject(kind: str | None = None, nth: int = 0, errno: int = errno_mod.EIO,
           path_contains: str = "", site: str | None = None) -> Iterator[FaultLayer]:
    """Install a FaultLayer for the duration of the block (process-wide); yields it.

    `inject()` with no kind and no site only traces the calls. With `site` (a call site
    as `FaultLayer.sites()` names it) the Nth call at that site fails.
    """
    global _layer
    layer = FaultLayer(kind, nth, errno, path_contains, site)
    previous, _layer = _layer, layer
    try:
        yield layer
    finally:
        _layer = previous


_HERE = os.path.normcase(os.path.abspath(__file__))
_COMPOSITIONS = frozenset({"atomic_write", "create_file", "makedirs"})
_DIGITS = re.compile(r"[0-9]+")


def _role(path: str, root: str) -> str:
    """The file's role: `path` with the tree directory as `~` and digit runs as `N`."""
    if path.startswith("/rotorshm."):  # a segment: /rotorshm.<name>.ctl or .<epoch>.L<l>.S<i>
        if path.endswith(".ctl"):
            return "shm:ctl"
        return "shm:" + _DIGITS.sub("N", ".".join(path.rsplit(".", 2)[-2:]))
    if root:
        root = os.path.abspath(root)
        full = os.path.abspath(path)
        if full == root or full.startswith(root + os.sep):
            path = "~" + full[len(root):]
        elif full == os.path.dirname(root):
            path = "~/.."
    return _DIGITS.sub("N", path)


def call_site(kind: str, path: str, root: str = "") -> str:
    """Name the call site of the door call being made (see the module doc)."""
    frame = sys._getframe(1)
    composition = ""
    while frame is not None and os.path.normcase(frame.f_code.co_filename) == _HERE:
        if frame.f_code.co_name in _COMPOSITIONS:
            composition = frame.f_code.co_name  # the outermost one wins
        frame = frame.f_back  # type: ignore[assignment]
    # A function of the same name outside this module only forwards to the composition
    # (checkpoint.atomic_write): the site is its caller's (write_header or write_meta).
    while frame is not None and composition and frame.f_code.co_name == composition:
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        caller = "?"
    else:
        module = str(frame.f_globals.get("__name__", "?")).removeprefix("rotorshm.")
        caller = f"{module}.{getattr(frame.f_code, 'co_qualname', frame.f_code.co_name)}"
    if composition:
        caller += "/" + composition
    return f"{kind} {caller} {_role(path, root)}"


def _before(kind: str, path: str, root: str = "") -> None:
    layer = _layer
    if layer is not None:
        layer.before(kind, path, call_site(kind, path, root))


def fallocate_segment(fd: int, length: int, name: str) -> None:
    """posix_fallocate a shared-memory segment that belongs to no store (a control block).

    Outside any store, nothing is poisoned: a full /dev/shm is StorageFull, anything else
    a RotorError naming the call and the segment.
    """
    try:
        _before("fallocate", name)
        os.posix_fallocate(fd, 0, length)
    except OSError as exc:
        text = f"fallocate of {name} failed: {exc.strerror or exc}"
        if is_full_error(exc):
            raise StorageFull(exc.errno, text) from exc
        raise RotorError(text) from exc


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
            _before(kind, path, self.label)
            call()
        except OSError as exc:
            raise self.poison(exc, f"{kind} of {path}") from exc

    def _plain(self, kind: str, path: str, call: Callable[[], object]) -> None:
        self.check()
        try:
            _before(kind, path, self.label)
            call()
        except OSError as exc:
            if is_full_error(exc):
                raise StorageFull(
                    exc.errno, f"{kind} of {path} failed: {exc.strerror or exc}"
                ) from exc
            # Not a full disk: what the call left behind is unknown (a rename done or not,
            # part of a write in the page cache); only a recovery from disk can tell.
            raise self.poison(exc, f"{kind} of {path}") from exc

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

    def pwrite(self, fd: int, data: bytes | memoryview | Sequence[bytes | memoryview],
               offset: int, path: str) -> None:
        """Write all of `data` (one buffer, or several written back to back by one
        pwritev) at `offset`; a short write is a full disk."""

        def call() -> None:
            if isinstance(data, (bytes, memoryview)):
                want = len(data)
                n = os.pwrite(fd, data, offset)
            else:
                want = sum(len(b) for b in data)
                n = os.pwritev(fd, data, offset)
            if n != want:
                raise OSError(errno_mod.ENOSPC, f"short write ({n} of {want} bytes)")

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
