"""Helpers (not tests) for the multi-process tests of the writer daemon.

- `start_daemon` runs `python -m rotorshm serve DIR --name NAME ...` as a real subprocess
  (PYTHONPATH points at the repository root, so it works installed and in-tree) and
  waits until it is ready: its socket answers with a HELLO from *that* process and
  `attach(name)` sees a live writer of the same epoch.
- `Daemon.stop()` sends SIGTERM and asserts exit code 0; `Daemon.kill()` sends SIGKILL.
- `unique_name()` makes short tree names that all start with the session's
  `SESSION_PREFIX`, so the session-end check in conftest.py can tell which
  `/dev/shm/rotorshm.*` segments this pytest session created.
- `leaf(i)` is the deterministic leaf stream: i as u64 little-endian + 24 zero bytes.
- `spawn()` runs a function in a multiprocessing 'spawn' child and returns its value
  (or re-raises its traceback) with a timeout, never hanging the test run.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import rotorshm
from rotorshm import LeanIMT
from rotorshm.protocol import OP_HELLO, reachable_path, recv_frame
from rotorshm.segments import SHM_DIR, tree_segments

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Generous guard for anything that waits on another process (never a speed assertion).
TIMEOUT = 30.0

#: Every tree name made by unique_name() starts with this. conftest.py picks it once per
#: pytest session (in the controller, before xdist workers start) and exports it, so the
#: session-end check can attribute leftover /dev/shm segments; standalone use gets its own.
SESSION_PREFIX = (os.environ.get("ROTORSHM_TEST_SESSION") or "rt" + uuid.uuid4().hex[:6])[:8]

CTX = mp.get_context("spawn")


# -- names, leaves, reference roots --------------------------------------------------------------


def unique_name(tag: str = "") -> str:
    """A short unique tree name (< 30 characters) carrying this session's prefix."""
    tag = "".join(c for c in tag if c.isalnum())[:6]
    name = f"{SESSION_PREFIX}{tag}{uuid.uuid4().hex[:10]}"
    assert len(name) < 30
    return name


def leaf(i: int) -> bytes:
    """Leaf i of the deterministic stream: i as u64 little-endian, then 24 zero bytes."""
    return i.to_bytes(8, "little") + bytes(24)


def leaf_range(start: int, stop: int) -> bytes:
    """Leaves start..stop-1 concatenated (one batch buffer)."""
    return b"".join(i.to_bytes(8, "little") + bytes(24) for i in range(start, stop))


def reference_roots(sizes: Iterable[int], arity: int,
                    leaf_fn: Callable[[int], bytes] = leaf) -> dict[int, bytes | None]:
    """Root of the LeanIMT of leaves leaf_fn(0..size-1) for every size, built incrementally."""
    tree = LeanIMT(arity=arity, max_depth=64)
    out: dict[int, bytes | None] = {}
    for size in sorted(set(sizes)):
        if size > tree.size:
            tree.insert_many(b"".join(leaf_fn(i) for i in range(tree.size, size)))
        out[size] = tree.root
    return out


def segments_of(name: str) -> list[str]:
    """Entries of /dev/shm belonging to tree `name` (control block and pinned levels)."""
    return tree_segments(name)


def unlink_segments(name: str) -> list[str]:
    """Remove every /dev/shm entry of tree `name`; return what was removed."""
    removed = []
    for entry in segments_of(name):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(SHM_DIR, entry))
            removed.append(entry)
    return removed


# -- the daemon subprocess --------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """Environment for a child Python: the repository root first on PYTHONPATH."""
    env = dict(os.environ)
    parts = [str(REPO_ROOT)]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


class DaemonFailed(AssertionError):
    """A daemon subprocess did not become ready or did not exit as expected."""


class Daemon:
    """A `rotorshm serve` subprocess."""

    def __init__(self, directory: Path, name: str, args: list[str], log: Path) -> None:
        self.directory = Path(directory)
        self.name = name
        self.args = args
        self.log = log
        self.killed = False
        self._log_fh = open(log, "wb")  # noqa: SIM115 - closed in _reap()
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=self._log_fh, stderr=subprocess.STDOUT,
            env=child_env(), cwd=str(REPO_ROOT),
        )
        self.epoch: int | None = None

    @property
    def pid(self) -> int:
        """Process id of the daemon."""
        return self.proc.pid

    @property
    def socket(self) -> Path:
        """The daemon's Unix socket (DIR/writer.sock)."""
        return self.directory / "writer.sock"

    def stderr(self) -> str:
        """Everything the daemon printed so far (stdout and stderr)."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def running(self) -> bool:
        """True while the process has not exited."""
        return self.proc.poll() is None

    def _fail(self, what: str) -> DaemonFailed:
        return DaemonFailed(
            f"daemon {self.name!r} on {self.directory} (pid {self.pid}): {what}\n"
            f"command: {' '.join(self.args)}\n--- daemon output ---\n{self.stderr()}"
        )

    def wait_ready(self, timeout: float = TIMEOUT) -> Daemon:
        """Poll until the socket answers from this process and attach(name) sees it live."""
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self._fail(f"exited with code {self.proc.returncode} before becoming ready")
            if self.socket.exists():
                try:
                    epoch = self._hello()
                    with rotorshm.attach(self.name) as reader:
                        if reader.epoch != epoch or not reader.writer_alive:
                            raise RuntimeError("control block not yet live for this epoch")
                    self.epoch = epoch
                    return self
                except (rotorshm.RotorError, OSError, RuntimeError) as exc:
                    last = exc
            time.sleep(0.02)
        self.kill()
        raise self._fail(f"not ready after {timeout:.0f} s (last error: {last!r})")

    def _hello(self) -> int:
        """Connect to the socket (with a timeout), check who answers, return its epoch."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            with reachable_path(str(self.socket)) as address:
                sock.connect(address)
            frame = recv_frame(sock)
        if frame is None or frame[0] != OP_HELLO:
            raise RuntimeError(f"no HELLO on the socket: {frame!r}")
        info = json.loads(frame[1])
        if info.get("pid") != self.pid or info.get("name") != self.name:
            raise RuntimeError(f"socket answered by {info}")
        return int(info["epoch"])

    def wait_exit(self, timeout: float = TIMEOUT) -> int:
        """Wait for the process to exit (killing it if it overstays) and return its code."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise self._fail(f"did not exit within {timeout:.0f} s") from None
        self._log_fh.close()
        return rc

    def stop(self, timeout: float = TIMEOUT) -> None:
        """SIGTERM, wait, and assert a clean exit (code 0)."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        if rc != 0:
            raise self._fail(f"exit code {rc} after SIGTERM, expected 0")

    def kill(self) -> None:
        """SIGKILL and reap (so that the pid is really gone)."""
        if self.running():
            self.proc.kill()
            self.killed = True
        self.proc.wait()
        self._log_fh.close()


def serve_args(directory: Path | str, name: str | None, *, arity: int | None = None,
               max_depth: int | None = None, flush_interval_ms: float | None = None,
               checkpoint: str | None = None, pin_above_level: int | None = None,
               extra: Iterable[str] = ()) -> list[str]:
    """Command line of `python -m rotorshm serve`."""
    args = [sys.executable, "-m", "rotorshm", "serve", str(directory)]
    if name is not None:
        args += ["--name", name]
    for flag, value in (("--arity", arity), ("--max-depth", max_depth),
                        ("--flush-interval-ms", flush_interval_ms),
                        ("--checkpoint", checkpoint), ("--pin-above-level", pin_above_level)):
        if value is not None:
            args += [flag, str(value)]
    args += list(extra)
    return args


def start_daemon(directory: Path | str, name: str, *, log: Path | None = None,
                 wait: bool = True, timeout: float = TIMEOUT, **options: Any) -> Daemon:
    """Start `rotorshm serve DIR --name NAME` and (by default) wait until it is ready."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if log is None:
        log = directory.parent / f"{directory.name}.{name}.{uuid.uuid4().hex[:6]}.log"
    daemon = Daemon(directory, name, serve_args(directory, name, **options), log)
    if wait:
        daemon.wait_ready(timeout)
    return daemon


def run_serve(directory: Path | str, name: str | None, timeout: float = TIMEOUT,
              **options: Any) -> subprocess.CompletedProcess[str]:
    """Run a `serve` expected to exit by itself (e.g. refused); return its result."""
    return subprocess.run(
        serve_args(directory, name, **options), stdin=subprocess.DEVNULL, capture_output=True,
        text=True, env=child_env(), cwd=str(REPO_ROOT), timeout=timeout, check=False,
    )


# -- spawned children -----------------------------------------------------------------------


def _child_main(queue: Any, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        result = target(*args)
    except BaseException:  # noqa: BLE001 - reported to the parent
        queue.put(("error", traceback.format_exc()))
    else:
        queue.put(("ok", result))


class ChildFailed(AssertionError):
    """A spawned child raised, died, or did not answer in time."""


class Child:
    """A function running in a 'spawn' child process; `result()` returns what it returned."""

    def __init__(self, target: Callable[..., Any], *args: Any) -> None:
        self.queue = CTX.Queue()
        self.name = getattr(target, "__name__", "child")
        self.proc = CTX.Process(target=_child_main, args=(self.queue, target, args), daemon=True)
        self.proc.start()

    @property
    def pid(self) -> int:
        """Process id of the child."""
        assert self.proc.pid is not None
        return self.proc.pid

    def result(self, timeout: float = TIMEOUT) -> Any:
        """The target's return value; ChildFailed with its traceback if it raised or hung."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                kind, value = self.queue.get(timeout=0.2)
                break
            except Exception:  # noqa: BLE001 - queue.Empty
                if not self.proc.is_alive() and self.queue.empty():
                    # One last look: the result may have been flushed just before exit.
                    try:
                        kind, value = self.queue.get(timeout=1.0)
                        break
                    except Exception:  # noqa: BLE001
                        raise ChildFailed(
                            f"child {self.name} (pid {self.pid}) died with exit code "
                            f"{self.proc.exitcode} without a result"
                        ) from None
                if time.monotonic() > deadline:
                    self.kill()
                    raise ChildFailed(
                        f"child {self.name} (pid {self.pid}) gave no result in {timeout:.0f} s"
                    ) from None
        self.proc.join(TIMEOUT)
        if kind == "error":
            raise ChildFailed(f"child {self.name} (pid {self.pid}) failed:\n{value}")
        return value

    def kill(self) -> None:
        """SIGKILL the child (if still running) and reap it."""
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(TIMEOUT)


def spawn(target: Callable[..., Any], *args: Any) -> Child:
    """Run `target(*args)` in a 'spawn' child; target must be importable (module level)."""
    return Child(target, *args)


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT,
               what: str = "condition") -> None:
    """Poll `predicate` until true; AssertionError after `timeout` (a failure guard only)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.01)
