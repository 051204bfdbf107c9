"""Shared fixtures, and a guard against POSIX shared-memory segments left in /dev/shm.

Two checks, both xdist-safe:

* the ``tree_dir`` fixture, at teardown, looks for segments of every tree directory the
  test created under its ``tmp_path`` and fails the test (naming them) if any is left;
* the controlling pytest process records the ``rotorshm.*`` entries of /dev/shm before
  the session and compares after it (once every worker is done). A leftover that belongs
  to a tree under this session's base temp directory fails the session loudly. Other new
  segments cannot be told apart from those of a concurrent pytest session on the same
  machine, so they are listed as a warning, and fail the session only when ``CI`` is set
  or ``ROTORSHM_STRICT_SHM=1``.

  Trees given an explicit name (the daemon tests: ``daemon_util.unique_name()``) are
  attributed by name instead: the controller picks a per-session prefix, exports it as
  ``ROTORSHM_TEST_SESSION`` before the xdist workers start, and every such name begins
  with it, so a leftover ``/dev/shm/rotorshm.<prefix>*`` fails the session too.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SHM_DIR = "/dev/shm"
SEGMENT_PREFIX = "rotorshm."


def shm_entries() -> set[str]:
    """Names in /dev/shm that look like rotorshm tree segments."""
    try:
        return {e for e in os.listdir(SHM_DIR) if e.startswith(SEGMENT_PREFIX)}
    except OSError:
        return set()


def tree_dirs_under(root: Path) -> list[Path]:
    """Every directory below `root` that was opened as a tree (it holds wal.lock)."""
    out = []
    for dirpath, _dirnames, filenames in os.walk(root):
        if "wal.lock" in filenames:
            out.append(Path(dirpath))
    return out


def segments_of(tree_path: Path, entries: set[str] | None = None) -> list[str]:
    """/dev/shm entries belonging to the tree in `tree_path` (default name), any epoch."""
    from rotorshm.store import default_name

    head = f"{SEGMENT_PREFIX}{default_name(str(tree_path))}."
    pool = shm_entries() if entries is None else entries
    return sorted(e for e in pool if e.startswith(head))


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.fixture
def tree_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh, not yet existing directory for one tree; checks for leftover segments after."""
    path = tmp_path / "tree"
    yield path
    leftovers = {str(d): segs for d in tree_dirs_under(tmp_path) if (segs := segments_of(d))}
    if leftovers:
        from rotorshm.segments import unlink_segment

        for segs in leftovers.values():
            for seg in segs:
                unlink_segment("/" + seg)
        pytest.fail(f"shared-memory segments left behind in /dev/shm: {leftovers}")


@pytest.fixture
def started() -> Iterator[list]:
    """Writer daemons (daemon_util.Daemon) a test starts: killed, and their segments
    removed, at teardown."""
    from daemon_util import unlink_segments

    daemons: list = []
    yield daemons
    for d in daemons:
        d.kill()
    for name in {d.name for d in daemons}:
        unlink_segments(name)


@pytest.fixture
def tree_segments():
    """segments_of(path): the /dev/shm entries of the tree in `path` (for assertions)."""
    return segments_of


_BEFORE = pytest.StashKey[set[str]]()
_SESSION = pytest.StashKey[str]()
#: Environment variable carrying the per-session prefix of explicitly named test trees.
SESSION_ENV = "ROTORSHM_TEST_SESSION"


def pytest_configure(config: pytest.Config) -> None:
    if not _is_worker(config):
        config.stash[_BEFORE] = shm_entries()
        # Workers are started after this hook and inherit the environment.
        prefix = "rt" + uuid.uuid4().hex[:6]
        os.environ[SESSION_ENV] = prefix
        config.stash[_SESSION] = prefix


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if _is_worker(config) or _BEFORE not in config.stash:
        return
    new = shm_entries() - config.stash[_BEFORE]
    if not new:
        return
    ours: set[str] = set()
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is not None:
        try:
            base = factory.getbasetemp()
        except Exception:  # noqa: BLE001 - no base temp, nothing to attribute
            base = None
        if base is not None and base.exists():
            for d in tree_dirs_under(base):
                ours.update(segments_of(d, new))
    prefix = config.stash.get(_SESSION, None)
    if prefix:
        ours.update(e for e in new if e.startswith(f"{SEGMENT_PREFIX}{prefix}"))
    others = sorted(new - ours)
    strict = bool(os.environ.get("CI")) or os.environ.get("ROTORSHM_STRICT_SHM") == "1"
    tr = config.pluginmanager.get_plugin("terminalreporter")

    def say(title: str, names: list[str]) -> None:
        text = "\n".join(f"{SHM_DIR}/{n}" for n in names)
        if tr is not None:
            tr.write_sep("=", title, red=True, bold=True)
            tr.write_line(text)
        else:  # pragma: no cover - no terminal reporter
            print(title, text, sep="\n")

    if ours:
        say(f"{len(ours)} shared-memory segment(s) of this session's trees LEFT BEHIND",
            sorted(ours))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if others:
        say(f"{len(others)} new rotorshm segment(s) not attributable to this session's trees"
            + ("" if strict else " (warning only: a concurrent session may own them)"), others)
        if strict:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
