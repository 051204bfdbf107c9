"""Issue 14: every front door answers bad input with one clear line.

The rule, for the installed `rotorshm` command: a user error is one line on stderr and
exit code 2, a runtime failure one line and exit code 1, never a traceback, and nothing
is done before the input is validated. Every numbered case of the issue has a test here
(named test_NN_...), then the smaller and usability items, then a table-driven walk
over every subcommand with bad values for each argument.

CLI cases run the installed console script as a subprocess. Writer daemons are real
`rotorshm serve` subprocesses; each test stops its own and checks /dev/shm. Nothing
asserts on wall-clock time (timeouts are failure guards).
"""

from __future__ import annotations

import json
import math
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from daemon_util import (
    TIMEOUT,
    Daemon,
    child_env,
    leaf,
    leaf_range,
    reference_roots,
    segments_of,
    start_daemon,
    unique_name,
    unlink_segments,
    wait_until,
)

import rotorshm
from rotorshm import (
    IndexOutOfRange,
    InvalidArgument,
    InvalidConfig,
    LeanIMT,
    RotorTree,
    RotorTreeConfig,
    TreeClosed,
    WriterGone,
)
from rotorshm.cli import build_parser
from rotorshm.wal import encode_record

REPO = Path(__file__).resolve().parent.parent
BIN = shutil.which("rotorshm", path=os.path.dirname(sys.executable))
ROTORSHM = [BIN] if BIN else [sys.executable, "-m", "rotorshm"]
ROOT_HEX = "ab" * 32


def run(*args: str, stdin: str | bytes | None = None, cwd: Path | None = None,
        prefix: tuple[str, ...] = (), timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed `rotorshm ARGS...` and capture its output as text."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    res = subprocess.run([*prefix, *ROTORSHM, *args], input=data, capture_output=True,
                         timeout=timeout, env=child_env(), cwd=cwd,
                         stdin=None if data is not None else subprocess.DEVNULL)
    return subprocess.CompletedProcess(res.args, res.returncode,
                                       res.stdout.decode(errors="replace"),
                                       res.stderr.decode(errors="replace"))


def one_line(res: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """Assert the rule: exit `code`, exactly one line on stderr, no traceback; return it."""
    what = f"{res.args!r}: rc {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"
    assert res.returncode == code, what
    assert "Traceback" not in res.stderr, what
    lines = res.stderr.strip("\n").splitlines()
    assert len(lines) == 1, what
    for needle in needles:
        assert needle in lines[0], what
    return lines[0]


def ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, (res.args, res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    return res.stdout


def hex_lines(data: bytes) -> str:
    return "".join(data[i : i + 32].hex() + "\n" for i in range(0, len(data), 32))


_OTHER_USER_PROBE: list[str] = []  # "" once uid 65534 was seen to run rotorshm, else why not


def as_other_user() -> tuple[str, ...]:
    """Command prefix running as an unprivileged user (root bypasses permission bits).

    The other user must be able to read this Python and the rotorshm it runs: a venv or
    checkout in a private (0700) folder is not, and then the test cannot be made here.
    """
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv to drop root's privileges")
    prefix = (setpriv, "--reuid=65534", "--regid=65534", "--clear-groups")
    if not _OTHER_USER_PROBE:
        probe = subprocess.run([*prefix, sys.executable, "-c", "import rotorshm.cli"],
                               capture_output=True, text=True, timeout=60, cwd="/")
        _OTHER_USER_PROBE.append("" if probe.returncode == 0 else
                                 probe.stderr.strip().splitlines()[-1:][0]
                                 if probe.stderr.strip() else f"exit {probe.returncode}")
    if _OTHER_USER_PROBE[0]:
        pytest.skip(f"uid 65534 cannot run this rotorshm ({_OTHER_USER_PROBE[0]}); "
                    "install it where any user can read it")
    return prefix


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory any user may traverse (tmp_path's parents are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="rotorshm-front-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for p in path.rglob("*"):
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(path, ignore_errors=True)


class Daemons:
    """Daemon subprocesses of one test: stopped at teardown, leftovers checked."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.started: list[Daemon] = []
        self.unnamed: list[tuple[subprocess.Popen[bytes], str]] = []

    def start(self, directory: Path | None = None, name: str | None = None,
              **options: object) -> Daemon:
        d = start_daemon(directory or self.base / "tree", name or unique_name("fd"), **options)
        self.started.append(d)
        return d

    def start_unnamed(self, directory: str, cwd: Path, *extra: str) -> tuple[str, str]:
        """`rotorshm serve DIR` (no --name) in `cwd`; returns (name, daemon output)."""
        log = self.base / f"serve-{uuid.uuid4().hex[:6]}.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen([*ROTORSHM, "serve", directory, *extra], cwd=cwd,
                                    stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                    env=child_env())
        deadline = time.monotonic() + TIMEOUT
        while True:
            text = log.read_text(errors="replace")
            m = re.search(r"serving .* as '([^']+)'", text)
            if m:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail(f"daemon did not start: {text}")
            time.sleep(0.02)
        self.unnamed.append((proc, m.group(1)))
        return m.group(1), text

    def close(self) -> list[str]:
        problems = []
        for d in self.started:
            if d.running():
                d.proc.send_signal(signal.SIGTERM)
                try:
                    d.proc.wait(TIMEOUT)
                except subprocess.TimeoutExpired:
                    d.kill()
        for proc, _ in self.unnamed:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(TIMEOUT)
        last = {d.name: d for d in self.started}
        for name, d in last.items():
            if unlink_segments(name) and not d.killed:
                problems.append(f"{name}: segments left by a cleanly stopped daemon")
        for _, name in self.unnamed:
            if unlink_segments(name):
                problems.append(f"{name}: segments left by a cleanly stopped daemon")
        return problems


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    ds = Daemons(tmp_path)
    yield ds
    problems = ds.close()
    assert not problems, problems


def status(tree: str, cwd: Path | None = None) -> dict[str, object]:
    out: dict[str, object] = json.loads(ok(run("status", tree, "--json", cwd=cwd)))
    return out


# -- tracebacks instead of a clean message --------------------------------------------------------

def test_01_serve_on_a_regular_file(tmp_path: Path) -> None:
    f = tmp_path / "afile"
    f.write_text("not a tree\n")
    one_line(run("serve", str(f)), 2, "not a directory")
    with pytest.raises(InvalidConfig, match="not a directory"):
        RotorTree.open(RotorTreeConfig(f))
    assert f.read_text() == "not a tree\n"


def test_02_serve_where_the_directory_cannot_be_made(tmp_path: Path, open_dir: Path) -> None:
    f = tmp_path / "afile"
    f.write_text("")
    one_line(run("serve", str(f / "tree")), 2, "cannot create the tree directory")
    with pytest.raises(InvalidConfig):
        RotorTree.open(RotorTreeConfig(f / "tree"))
    prefix = as_other_user()
    ro = open_dir / "ro"
    ro.mkdir()
    ro.chmod(0o555)  # nobody may create anything in it
    name = unique_name("ro")
    # A tree directory to create inside a read-only one, and a read-only tree directory.
    line = one_line(run("serve", str(ro / "tree"), "--name", name, prefix=prefix), 1,
                    "cannot create the tree directory")
    assert "ermission denied" in line
    line = one_line(run("serve", str(ro), "--name", name, prefix=prefix), 1, "wal.lock")
    assert "ermission denied" in line
    assert list(ro.iterdir()) == [] and not segments_of(name)


def test_03_names_are_checked_in_bytes_and_characters(tmp_path: Path) -> None:
    emoji = "\N{GRINNING FACE}" * 64  # 64 characters, 256 bytes
    one_line(run("serve", str(tmp_path / "t"), "--name", emoji), 2, "tree name")
    one_line(run("status", emoji), 2)
    one_line(run("proof", emoji, "0"), 2)
    with pytest.raises(InvalidConfig):
        rotorshm.attach(emoji)
    with pytest.raises(InvalidConfig):
        RotorTreeConfig(tmp_path / "t", name=emoji)
    assert not (tmp_path / "t").exists()


def test_04_socket_paths_are_checked_before_anything(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    long_sock = tmp_path / ("s" * 120 + ".sock")
    one_line(run("serve", str(tree), "--socket", str(long_sock)), 2, "too long")
    one_line(run("serve", str(tree), "--socket", str(tmp_path / "missing" / "w.sock")), 2,
             "does not exist")
    one_line(run("serve", str(tree), "--socket", str(tmp_path)), 2, "is a directory")
    one_line(run("serve", str(tree), "--socket", str(tree / "sub" / "w.sock")), 2,
             "does not exist")
    assert not tree.exists()


def test_04_a_socket_inside_the_new_tree_directory(daemons: Daemons, tmp_path: Path) -> None:
    tree = tmp_path / "fresh"  # does not exist yet: serve creates it, then binds in it
    name, _ = daemons.start_unnamed(str(tree), tmp_path, "--socket", str(tree / "my.sock"))
    assert (tree / "my.sock").exists() and not (tree / "writer.sock").exists()
    out = json.loads(ok(run("insert", name, "--json", stdin=hex_lines(leaf(0)))))  # by name
    assert out["size"] == 1


def test_05_proof_output_paths(tmp_path: Path) -> None:
    one_line(run("proof", "anything", "0", "-o", "/missing/dir/p.bin"), 2, "does not exist")
    one_line(run("proof", "anything", "0", "-o", str(tmp_path)), 2, "is a directory")
    one_line(run("consistency", "anything", "1", "-o", str(tmp_path)), 2, "is a directory")


def test_06_insert_validates_every_argument_first(daemons: Daemons, tmp_path: Path) -> None:
    d = daemons.start()
    leaves = tmp_path / "leaves.txt"
    leaves.write_text(hex_lines(leaf_range(0, 10)))
    for bad in ("nan", "inf", "-1", "soon"):
        one_line(run("insert", str(d.directory), str(leaves), "--durable", "--timeout", bad),
                 2, "--timeout")
    assert status(d.name)["size"] == 0  # nothing was committed
    out = json.loads(ok(run("insert", str(d.directory), str(leaves), "--durable",
                            "--timeout", "30", "--json")))
    assert out["size"] == 10 and out["durable"] is True


def _boom(self: RotorTree) -> None:
    raise OverflowError("timeout value is too large")


def test_07_flush_interval_inf_and_a_dead_flusher(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("inf", "nan", "-1", "1e300"):
        one_line(run("serve", str(tmp_path / "t"), "--flush-interval-ms", bad), 2,
                 "--flush-interval-ms")
    assert not (tmp_path / "t").exists()
    for seconds in (math.inf, math.nan, 0, -1, 1e300, True):
        with pytest.raises(InvalidConfig):
            rotorshm.FlushPolicy.interval(seconds)  # type: ignore[arg-type]
    # Whatever kills the flusher thread is recorded: waiters and the daemon hear of it.
    monkeypatch.setattr(RotorTree, "_flush_loop", _boom)
    with RotorTree.open(RotorTreeConfig(tmp_path / "inproc", name=unique_name("fl"))) as tree:
        _, token = tree.insert(leaf(0))
        wait_until(lambda: tree.flush_error is not None, what="the flusher's failure")
        with pytest.raises(rotorshm.StorageFull, match="too large"):
            token.wait(TIMEOUT)
    name = unique_name("fl")
    daemon = rotorshm.WriterDaemon(RotorTreeConfig(tmp_path / "daemon"), name=name)
    daemon.start()
    # serve_forever returns by itself: the heartbeat noticed the dead flusher.
    runner = threading.Thread(target=daemon.serve_forever, daemon=True)
    runner.start()
    runner.join(TIMEOUT)
    if runner.is_alive():
        daemon.stop()
        runner.join(TIMEOUT)
        pytest.fail("the daemon kept serving with a dead flusher")
    assert isinstance(daemon.failure, OverflowError)
    assert not segments_of(name)


# -- wrong or misleading results ---------------------------------------------------------------

def _snapshot() -> rotorshm.Snapshot:
    tree = LeanIMT(arity=4)
    tree.insert_many(leaf_range(0, 10))
    return tree.snapshot()


def test_08_bool_is_not_an_index() -> None:
    snap = _snapshot()
    for call in (lambda: snap.generate_proof(True), lambda: snap.generate_proof(0, size=True),
                 lambda: snap.generate_consistency_proof(True),
                 lambda: snap.generate_consistency_proof(1, True), lambda: snap.root_at(True),
                 lambda: snap.get_leaf(False)):
        with pytest.raises(InvalidArgument, match="bool"):
            call()
    assert snap.generate_proof(1).verify_against(snap.root, 10)  # ints still work


def test_09_wrong_types_raise_library_errors(daemons: Daemons) -> None:
    snap = _snapshot()
    for bad in (1.0, "3", None, b"\x01"):
        with pytest.raises(InvalidArgument) as info:
            snap.generate_proof(bad)  # type: ignore[arg-type]
        assert isinstance(info.value, rotorshm.RotorError) and isinstance(info.value, TypeError)
        with pytest.raises(InvalidArgument):
            snap.root_at(bad)  # type: ignore[arg-type]
    d = daemons.start()
    with rotorshm.connect(d.directory) as client:
        seq, _, _ = client.insert(leaf(0))
        with pytest.raises(IndexOutOfRange):
            client.wait_durable(10**30)
        with pytest.raises(IndexOutOfRange):
            client.wait_durable(-1)
        with pytest.raises(InvalidArgument):
            client.wait_durable(1.5)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            client.wait_durable(seq, math.nan)
        assert client.wait_durable(seq, TIMEOUT)


def test_10_demo_rejects_a_bad_arity_before_running() -> None:
    for bad in ("1", "300"):
        res = run("demo", "--arity", bad, "--leaves", "10")
        one_line(res, 2, "--arity")
        assert res.stdout == ""  # no summary of a run that never happened
    from rotorshm.demo import DemoConfig

    with pytest.raises(InvalidConfig):
        DemoConfig(arity=1)
    with pytest.raises(InvalidConfig):
        DemoConfig(leaves=0)


def test_11_bad_configuration_values_exit_2(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    for args in (["--arity", "1"], ["--arity", "256"], ["--max-depth", "0"],
                 ["--max-depth", "65"], ["--name", ".."], ["--pin-above-level", "-1"],
                 ["--flush-interval-ms", "nan"], ["--batch-size", "3"]):
        one_line(run("serve", str(tree), *args), 2)
    one_line(run("insert", str(tree), "--batch", "0"), 2, "--batch")
    assert not tree.exists()


def test_12_one_addressing_rule(daemons: Daemons, tmp_path: Path) -> None:
    # Names the other subcommands could not reach are refused by serve.
    for bad in ("..", ".", "a\nb", "a b", "a/b", "-x", ""):
        one_line(run("serve", str(tmp_path / "x"), "--name", bad), 2, "--name")
    assert not (tmp_path / "x").exists()
    # A tree served without --name, from its parent: the bare directory name works everywhere.
    name, _ = daemons.start_unnamed("dn", tmp_path)
    ok(run("insert", "dn", cwd=tmp_path, stdin=hex_lines(leaf_range(0, 5))))
    for spelling in ("dn", "./dn", str(tmp_path / "dn"), name):
        assert status(spelling, cwd=tmp_path)["size"] == 5
        proof = ok(run("proof", spelling, "3", "--json", cwd=tmp_path))
        assert json.loads(proof)["tree_size"] == 5
    # A tree served under another name is found from its directory.
    other = daemons.start(tmp_path / "named")
    ok(run("insert", other.name, stdin=hex_lines(leaf_range(0, 7))))  # by name, too
    info = status(str(other.directory))
    assert info["name"] == other.name and info["size"] == 7
    ok(run("proof", str(other.directory), "6"))
    assert json.loads(ok(run("inspect", other.name, "--json")))["directory"] == str(
        other.directory.resolve())  # inspect takes a name too: its control block's directory
    # A directory nobody publishes: the message explains the name it would have.
    (tmp_path / "idle").mkdir()
    line = one_line(run("proof", str(tmp_path / "idle"), "0"), 1, "no writer publishes")
    assert "/dev/shm" in line and "without --name" in line
    # A bare word that is a directory here and a name published from elsewhere: ambiguous.
    (tmp_path / other.name).mkdir()
    one_line(run("status", other.name, cwd=tmp_path), 2, "ambiguous", f"./{other.name}")
    assert status(other.name)["size"] == 7  # from any other directory it is the name
    one_line(run("status", "not a name"), 2, "neither a directory nor a tree name")


def test_13_inspect_says_what_is_not_a_tree(tmp_path: Path, open_dir: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run("inspect", str(empty))
    one_line(res, 2, "empty directory")
    assert "NOT A TREE" in res.stdout and "CORRUPT" not in res.stdout
    res = run("inspect", str(tmp_path / "missing"))
    one_line(res, 2, "no such file or directory")
    (tmp_path / "f").write_text("x")
    one_line(run("inspect", str(tmp_path / "f")), 2, "not a directory")
    other = tmp_path / "other"
    (other / "stuff").mkdir(parents=True)
    one_line(run("inspect", str(other)), 2, "not a rotorshm tree")
    report = json.loads(run("inspect", str(empty), "--json").stdout)
    assert report["ok"] is False and report["problem"] == "not_a_tree"
    # A tree this user may not read: unreadable (exit 1), not corrupt.
    tree = open_dir / "tree"
    with RotorTree.open(RotorTreeConfig(tree, name=unique_name("pm"))) as t:
        t.insert_many(leaf_range(0, 3))
    tree.chmod(0o700)
    res = run("inspect", str(tree), prefix=as_other_user())
    one_line(res, 1, "ermission denied")
    assert "UNREADABLE" in res.stdout and "CORRUPT" not in res.stdout


def test_14_a_dropped_torn_tail_is_reported(daemons: Daemons, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    with RotorTree.open(RotorTreeConfig(tree, name=unique_name("tt"))) as t:
        t.insert_many(leaf_range(0, 6))
        next_seq = t.written_seq + 1
    record = encode_record(next_seq, leaf_range(6, 9))  # 3 leaves, then cut short
    with open(tree / "wal.log", "ab") as f:
        f.write(record[:-40])
    torn = len(record) - 40
    res = run("inspect", str(tree))
    warning = one_line(res, 0, "warning", "wal.log", f"{torn} bytes", "3 leaves",
                       f"seq {next_seq}")
    assert "OK (with 1 warning)" in res.stdout and "recovery will drop" in warning
    d = daemons.start(tree)
    log = d.stderr()
    assert re.search(rf"warning: .*wal\.log: dropped a torn last record .*{torn} bytes.*3 "
                     "leaves", log), log
    info = status(d.name)
    assert info["size"] == 6
    assert "3 leaves" in str(info["recovery_note"])
    assert re.search(r"^recovery\s+.*dropped a torn last record", ok(run("status", d.name)),
                     re.M)


def test_15_verify_detects_the_encoding_first(tmp_path: Path) -> None:
    snap = _snapshot()
    root = snap.root
    assert root is not None
    proof = snap.generate_proof(4)
    cons = snap.generate_consistency_proof(3)
    good = {
        "0x.hex": b"0x" + proof.to_bytes().hex().encode() + b"\n",
        "bom.hex": b"\xef\xbb\xbf" + proof.to_bytes().hex().encode(),
        "bom.json": b"\xef\xbb\xbf" + proof.to_json().encode(),
        "p.bin": proof.to_bytes(),
    }
    for fname, data in good.items():
        (tmp_path / fname).write_bytes(data)
        assert ok(run("verify", str(tmp_path / fname), "--root", "0x" + root.hex())) == "OK\n"
    (tmp_path / "c.hex").write_bytes(b"0X" + cons.to_bytes().hex().encode())
    old = snap.root_at(3).hex()
    assert ok(run("verify", str(tmp_path / "c.hex"), "--root", root.hex(),
                  "--old-root", old)) == "OK\n"
    bad = {
        "list.json": (b"[1,2,3]", "JSON proof: expected an object"),
        "type.json": (b'{"type": "inclusion"}', 'missing field "version"'),
        "notype.json": (b'{"version": 1}', '"type" must be'),
        "text.txt": (b"hello world", "neither JSON nor hex"),
        "odd.hex": (b"0xabc", "odd number of hex digits"),
        "version.hex": (b"02" + proof.to_bytes().hex().encode()[2:], "hex proof: first byte 2"),
        "bin.bin": (b"\x07\x00\x01", "binary proof: first byte 7"),
        "short.hex": (proof.to_bytes().hex().encode()[:60],
                      "hex proof: inclusion proof: too short"),
    }
    for fname, (data, needle) in bad.items():
        (tmp_path / fname).write_bytes(data)
        line = one_line(run("verify", str(tmp_path / fname), "--root", root.hex()), 2, needle)
        assert "version 48" not in line and "version 239" not in line


def test_16_insert_reports_what_was_committed(daemons: Daemons, tmp_path: Path) -> None:
    d = daemons.start(arity=2, max_depth=2)  # capacity 4 leaves
    leaves = tmp_path / "six.txt"
    leaves.write_text(hex_lines(leaf_range(0, 6)))
    res = run("insert", str(d.directory), str(leaves), "--batch", "2", "--durable", "--json")
    one_line(res, 1, "4 of 6 leaves were committed", "durable")
    out = json.loads(res.stdout)
    assert (out["inserted"], out["batches"], out["size"], out["durable"]) == (4, 2, 4, True)
    assert "do not fit" in out["error"]
    assert out["root"] == reference_roots([4], 2)[4].hex()  # type: ignore[union-attr]
    assert int(status(d.name)["durable_seq"]) >= out["seq"]  # type: ignore[call-overload]
    res = run("insert", str(d.directory), str(leaves), "--batch", "2")  # text form
    one_line(res, 1, "nothing was inserted")
    # Manual flushing on the server: a durable wait makes the server flush.
    m = daemons.start(tmp_path / "manual", flush_interval_ms=0)
    out = json.loads(ok(run("insert", str(m.directory), "--durable", "--timeout", "60",
                            "--json", stdin=hex_lines(leaf_range(0, 3)))))
    assert out["durable"] is True and out["size"] == 3


def test_17_cleanup_status_and_reattach_after_sigkill(daemons: Daemons) -> None:
    d = daemons.start(pin_above_level=1)
    ok(run("insert", str(d.directory), stdin=hex_lines(leaf_range(0, 300))))
    left = segments_of(d.name)
    assert len(left) > 2
    one_line(run("cleanup", d.name), 1, "refusing", "still running")
    assert segments_of(d.name) == left
    reader = rotorshm.attach(d.name)
    try:
        assert reader.snapshot().size == 300
        d.kill()
        wait_until(lambda: not reader.writer_alive, what="the reader to see the writer dead")
        text = ok(run("status", d.name))
        assert re.search(r"^writer\s+DEAD: pid \d+ is gone", text, re.M), text
        assert re.search(rf"^left behind\s+{len(left)} /dev/shm entries .* and the socket .*"
                         rf"rotorshm cleanup {d.name}", text, re.M), text
        info = status(d.name)
        assert info["writer"] == "dead" and len(info["left_behind"]) == len(left) + 1  # type: ignore[arg-type]
        # A reader follows a restarted writer, even one still recovering when asked.
        d2 = start_daemon(d.directory, d.name, pin_above_level=1, wait=False)
        daemons.started.append(d2)
        reader.reattach(timeout=TIMEOUT)
        snap = reader.snapshot()
        assert reader.writer_alive and snap.size == 300
        assert snap.generate_proof(299).verify_against(snap.root, 300)
        d2.wait_ready()
        assert reader.epoch == d2.epoch
    finally:
        reader.close()
    d2.kill()
    wait_until(lambda: segments_of(d.name) != [] and not
               rotorshm.shm.ControlBlock.live_owner(d.name), what="the second writer gone")
    out = ok(run("cleanup", str(d.directory)))
    assert "writer.sock" in out and f"rotorshm.{d.name}.ctl" in out
    assert segments_of(d.name) == [] and not (d.directory / "writer.sock").exists()
    assert ok(run("cleanup", d.name)).startswith("nothing to clean up")
    one_line(run("status", d.name), 1, "no writer publishes")
    with pytest.raises(WriterGone):
        rotorshm.attach(d.name)


# -- smaller ----------------------------------------------------------------------------------

def test_bom_prefixed_leaf_file(daemons: Daemons, tmp_path: Path) -> None:
    d = daemons.start()
    f = tmp_path / "bom.txt"
    f.write_bytes(b"\xef\xbb\xbf" + hex_lines(leaf_range(0, 4)).encode())
    out = json.loads(ok(run("insert", str(d.directory), str(f), "--json")))
    assert out["size"] == 4 and out["root"] == reference_roots([4], 4)[4].hex()  # type: ignore[union-attr]


def test_one_max_depth_rule_and_config_checks(tmp_path: Path) -> None:
    for bad in (0, 65, 200, True, 2.0, None):
        with pytest.raises(InvalidConfig):
            LeanIMT(max_depth=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidConfig):
            RotorTreeConfig(tmp_path, max_depth=bad)  # type: ignore[arg-type]
    assert LeanIMT(max_depth=64).max_depth == 64
    for path in ("", "a\0b"):
        with pytest.raises(InvalidConfig):
            RotorTreeConfig(path)
    tree = RotorTree.open(RotorTreeConfig(tmp_path / "t", name=unique_name("cl")))
    with tree:
        tree.insert(leaf(0))
    with pytest.raises(TreeClosed), tree:
        pass


def test_license_metadata() -> None:
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        pytest.skip("tomllib needs Python 3.11")
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "Apache-2.0"
    assert "LICENSE" in meta["license-files"]
    assert meta["urls"]
    from importlib.metadata import metadata

    installed = metadata("rotorshm")
    assert installed.get("License-Expression") == "Apache-2.0" or \
        "Apache" in (installed.get("License") or "")


# -- usability ----------------------------------------------------------------------------------

def test_version() -> None:
    res = run("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"rotorshm {rotorshm.__version__}"


def test_every_argument_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    missing = []
    assert isinstance(sub.choices, dict)
    for cmd, p in sub.choices.items():
        if cmd == "bench":
            continue
        for action in p._actions:
            if action.dest == "help":
                continue
            if not action.help:
                missing.append(f"{cmd} {action.option_strings or action.dest}")
    assert not missing, missing


def test_serve_reads_geometry_and_reports_progress(daemons: Daemons, tmp_path: Path) -> None:
    tree = tmp_path / "geo"
    d = daemons.start(tree, arity=3, max_depth=10, checkpoint="every:50")
    # batches of 30: checkpoints at 60 leaves, then 40 leaves stay in the WAL
    ok(run("insert", str(tree), "--durable", "--batch", "30",
           stdin=hex_lines(leaf_range(0, 100))))
    d.stop()
    assert re.search(r"shut down .* cleanly: size 100", d.stderr()), d.stderr()
    one_line(run("serve", str(tree), "--arity", "4"), 2, "arity 3", "--arity asks for 4")
    one_line(run("serve", str(tree), "--max-depth", "20"), 2, "max_depth 10")
    d2 = daemons.start(tree, d.name)  # no --arity / --max-depth: read from the tree
    log = d2.stderr()
    assert "recovering" in log and "verifying the checkpoint" in log, log
    assert "replaying the WAL (40 leaves)" in log, log
    assert re.search(r"serving .* \(size 100, arity 3, max_depth 10,", log), log
    info = status(d2.name)
    assert (info["arity"], info["max_depth"], info["size"]) == (3, 10, 100)


def test_insert_from_a_terminal_says_it_waits(daemons: Daemons) -> None:
    d = daemons.start()
    master, slave = pty.openpty()
    proc = subprocess.Popen([*ROTORSHM, "insert", str(d.directory)], stdin=slave,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
    os.close(slave)
    try:
        assert proc.stderr is not None
        ready, _, _ = select.select([proc.stderr], [], [], TIMEOUT)
        assert ready, "no prompt on stderr"
        prompt = os.read(proc.stderr.fileno(), 4096).decode()
        assert "reading leaves from the terminal" in prompt and "Ctrl-D" in prompt
        os.write(master, hex_lines(leaf_range(0, 2)).encode() + b"\x04")
        out, _err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert proc.returncode == 0 and b"size: 2" in out


# -- the rule, walked over every subcommand -------------------------------------------------------

def _bad_cases(live: str, tree_dir: str, tmp: Path) -> list[tuple[list[str], int]]:
    """(argv, expected exit code) for bad values of every argument of every subcommand."""
    new = str(tmp / "new-tree")
    leaves = str(tmp / "leaves.txt")
    badleaves = str(tmp / "bad.txt")
    proof = str(tmp / "p.hex")
    afile = str(tmp / "afile")
    emptydir = str(tmp / "emptydir")
    cases: list[tuple[list[str], int]] = []

    def add(code: int, *argvs: list[str]) -> None:
        cases.extend((argv, code) for argv in argvs)

    # the command itself
    add(2, [], ["nosuch"], ["--bogus"])
    # serve
    add(2, ["serve"], ["serve", ""], ["serve", afile], ["serve", new, "--bogus"],
        ["serve", new, new])
    for v in ("1", "256", "x", "", "2.5", "nan"):
        add(2, ["serve", new, "--arity", v])
    for v in ("0", "65", "-1", "x"):
        add(2, ["serve", new, "--max-depth", v])
    for v in ("..", ".", "a/b", "a b", "a\nb", "\N{GRINNING FACE}" * 64, "x" * 65, "", "-a"):
        add(2, ["serve", new, "--name", v])
    for v in ("", str(tmp / "missing" / "s.sock"), str(tmp), str(tmp / ("s" * 120))):
        add(2, ["serve", new, "--socket", v])
    for v in ("nan", "inf", "-1", "x", "1e300"):
        add(2, ["serve", new, "--flush-interval-ms", v])
    for v in ("every:0", "every:x", "memory:-1", "sometimes", ""):
        add(2, ["serve", new, "--checkpoint", v])
    for v in ("-1", "x", "1.5"):
        add(2, ["serve", new, "--pin-above-level", v])
    # insert
    add(2, ["insert"], ["insert", tree_dir, badleaves], ["insert", tree_dir, str(tmp / "nope")],
        ["insert", tree_dir, emptydir], ["insert", "not a name", leaves])
    for v in ("0", "-1", "x", ""):
        add(2, ["insert", tree_dir, leaves, "--batch", v])
    for v in ("nan", "inf", "-1", "x"):
        add(2, ["insert", tree_dir, leaves, "--durable", "--timeout", v])
    # proof, consistency
    add(2, ["proof", live], ["proof", "not a name", "0"], ["proof", "", "0"])
    for v in ("-1", "x", "1.0", "", "True"):
        add(2, ["proof", live, v])
    for v in ("0", "-3", "x"):
        add(2, ["proof", live, "0", "--size", v])
    add(2, ["proof", live, "0", "-o", str(tmp / "missing" / "p")],
        ["proof", live, "0", "-o", str(tmp)], ["proof", live, "0", "-o", ""])
    for v in ("0", "-1", "x"):
        add(2, ["consistency", live, v])
    add(2, ["consistency", live, "5", "--size", "3"], ["consistency", live, "1", "--size", "0"],
        ["consistency", live, "1", "-o", str(tmp)])
    # verify
    for v in ("x", "ab" * 31, "", "ab" * 33):
        add(2, ["verify", proof, "--root", v])
    add(2, ["verify", proof], ["verify", str(tmp / "missing"), "--root", ROOT_HEX],
        ["verify", emptydir, "--root", ROOT_HEX], ["verify", badleaves, "--root", ROOT_HEX],
        ["verify", proof, "--root", ROOT_HEX, "--size", "0"],
        ["verify", proof, "--root", ROOT_HEX, "--old-root", "xyz"],
        ["verify", proof, "--root", ROOT_HEX, "--old-size", "-1"])
    # status, cleanup, inspect
    for cmd in ("status", "cleanup", "inspect"):
        add(2, [cmd], [cmd, "not a name"], [cmd, ""], [cmd, "a\nb"], [cmd, live, "--bogus"])
    add(2, ["inspect", str(tmp / "missing")], ["inspect", emptydir], ["inspect", afile])
    # demo
    for flag, values in (("--arity", ("1", "300", "x")), ("--leaves", ("0", "-5")),
                         ("--readers", ("-1", "x")), ("--batch", ("0",)),
                         ("--seed", ("x", "-1")), ("--pin-above-level", ("-1",))):
        for v in values:
            add(2, ["demo", flag, v])
    # Runtime failures: exit 1.
    add(1, ["proof", live, "1000"], ["consistency", live, "999"],
        ["proof", f"nosuch{uuid.uuid4().hex[:8]}", "0"], ["status", emptydir],
        ["insert", emptydir, leaves], ["cleanup", live])
    return cases


def test_the_rule_for_every_subcommand(daemons: Daemons, tmp_path: Path) -> None:
    d = daemons.start()
    ok(run("insert", str(d.directory), stdin=hex_lines(leaf_range(0, 20))))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "leaves.txt").write_text(hex_lines(leaf_range(100, 105)))
    (scratch / "bad.txt").write_text(hex_lines(leaf_range(100, 102)) + "zz\n")
    (scratch / "p.hex").write_text(ok(run("proof", d.name, "3")))
    (scratch / "afile").write_text("x")
    (scratch / "emptydir").mkdir()
    before = sorted(p.name for p in scratch.rglob("*"))
    shm_before = set(os.listdir("/dev/shm"))
    info_before = status(d.name)
    cases = _bad_cases(d.name, str(d.directory), scratch)
    assert len(cases) > 100

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda c: run(*c[0], cwd=scratch), cases))
    failures = []
    for (argv, code), res in zip(cases, results, strict=True):
        try:
            one_line(res, code)
        except AssertionError as exc:
            failures.append(f"{argv!r}: {str(exc).splitlines()[0]} | {res.stderr.strip()!r}")
    assert not failures, "\n".join(failures)
    # Nothing was done: no file created or removed, the tree unchanged, no new segment.
    assert sorted(p.name for p in scratch.rglob("*")) == before
    info = status(d.name)
    assert (info["size"], info["root"]) == (info_before["size"], info_before["root"])
    assert not (scratch / "new-tree").exists()
    from rotorshm.store import default_name

    assert not segments_of(default_name(str(scratch / "new-tree")))
    assert not segments_of(d.name + "x") and sorted(segments_of(d.name)) == sorted(
        e for e in shm_before if e.startswith(f"rotorshm.{d.name}."))
