"""End-to-end tests of the `rotorshm` command line: every subcommand runs as a real subprocess.

Writer daemons are `python -m rotorshm serve` subprocesses under unique (uuid) names,
stopped with SIGTERM at teardown, which also fails the test if any /dev/shm entry of
theirs is left behind. Expected roots come from tests/reference.py, never from rotorshm.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from reference import leaves, ref_depth, ref_root

REPO = Path(__file__).resolve().parent.parent
SHM_DIR = "/dev/shm"
ARITY = 4


def _env(pythonpath: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = pythonpath if pythonpath is not None else os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p
    )
    env.pop("CI", None)
    return env


def rsm(*args: str, stdin: str | None = None, timeout: float = 120,
        cwd: Path | None = None, pythonpath: str | None = None,
        ) -> subprocess.CompletedProcess[str]:
    """Run `python -m rotorshm ARGS...` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "rotorshm", *args], input=stdin, capture_output=True,
        text=True, timeout=timeout, env=_env(pythonpath), cwd=cwd,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """Stdout of a run that must have succeeded."""
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def root_hex(items: list[bytes]) -> str:
    """Reference root of `items` (arity ARITY) as hex."""
    root = ref_root(items, ARITY)
    assert root is not None
    return root.hex()


def hex_lines(items: list[bytes]) -> str:
    return "".join(x.hex() + "\n" for x in items)


def kv(text: str) -> dict[str, str]:
    """`key: value` lines as a dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            out[key.strip()] = value.strip()
    return out


def shm_of(name: str) -> list[str]:
    try:
        return sorted(e for e in os.listdir(SHM_DIR) if e.startswith(f"rotorshm.{name}."))
    except OSError:
        return []


def tree_files(path: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime_ns) of every file under `path` (nothing may write)."""
    out = {}
    for p in sorted(path.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(path))] = (st.st_size, st.st_mtime_ns)
    return out


def sparse_copy(src: Path, dst: Path) -> None:
    """Copy a tree directory keeping its 256 MiB shard files sparse (fast)."""
    subprocess.run(["cp", "-a", "--sparse=always", str(src), str(dst)], check=True)


@dataclass
class Daemon:
    """A running `rotorshm serve` subprocess."""

    dir: Path
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Factory of writer daemons on directories under tmp_path; stops them all at teardown."""
    started: list[Daemon] = []

    def start(*extra: str, sub: str = "tree", named: bool = True) -> Daemon:
        directory = tmp_path / sub
        log = tmp_path / f"{sub}.log"
        name_args = ["--name", f"cli-{uuid.uuid4().hex[:16]}"] if named else []
        with open(log, "wb") as f:
            proc = subprocess.Popen(
                [sys.executable, "-m", "rotorshm", "serve", str(directory), "--arity",
                 str(ARITY), *name_args, *extra],
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=_env(),
            )
        deadline = time.monotonic() + 30
        while True:
            text = log.read_text(errors="replace")
            m = re.search(r"serving .* as '([^']+)'", text)
            if m:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"daemon did not start (rc {proc.poll()}): {text}")
            time.sleep(0.02)
        daemon = Daemon(directory, m.group(1), proc, log)
        started.append(daemon)
        return daemon

    yield start
    problems = []
    for d in started:
        rc = d.stop()
        if rc != 0:
            problems.append(f"daemon {d.name} exited with {rc}: {d.log.read_text()[-1000:]}")
        if left := shm_of(d.name):
            from rotorshm.segments import unlink_segment

            for seg in left:
                unlink_segment("/" + seg)
            problems.append(f"/dev/shm entries of {d.name} left behind: {left}")
    assert not problems, problems


# -- insert -----------------------------------------------------------------------------------

def test_insert_from_file_and_stdin(serve: Callable[..., Daemon], tmp_path: Path) -> None:
    d = serve()
    first = leaves(100)
    text = hex_lines(first[:50]) + "\n   \n0x" + hex_lines(first[50:51]) + "".join(
        "  " + x.hex().upper() + "  \n" for x in first[51:]
    )
    path = tmp_path / "leaves.txt"
    path.write_text(text)
    out = kv(ok(rsm("insert", str(d.dir), str(path), "--durable")))
    assert out["size"] == "100"
    assert out["root"] == root_hex(first)
    assert out["durable"] == "yes"
    assert out["inserted"].startswith("100 leaves")

    more = leaves(37, start=100)
    res = json.loads(ok(rsm("insert", str(d.dir / "writer.sock"), "-", "--batch", "10",
                            "--json", stdin=hex_lines(more))))
    assert res["inserted"] == 37 and res["batches"] == 4 and res["size"] == 137
    assert res["root"] == root_hex(first + more)
    assert res["seq"] == int(out["seq"]) + 4
    assert res["durable"] is None


def test_insert_validates_everything_first(serve: Callable[..., Daemon],
                                            tmp_path: Path) -> None:
    d = serve()
    good = hex_lines(leaves(5))
    bad = tmp_path / "bad.txt"
    bad.write_text(good + "\n" + "ab" * 31 + "\n" + good)  # line 7: 62 digits
    res = rsm("insert", str(d.dir), str(bad))
    assert res.returncode == 2
    assert "line 7" in res.stderr and "64 hex digits" in res.stderr
    bad.write_text(good + "zz" * 32 + "\n")
    res = rsm("insert", str(d.dir), str(bad))
    assert res.returncode == 2 and "line 6" in res.stderr
    # Empty input is a no-op that reports the tree as it is (as LeanIMT.insert_many([])).
    out = json.loads(ok(rsm("insert", str(d.dir), "--json", stdin="\n\n")))
    assert (out["inserted"], out["size"], out["root"]) == (0, 0, None)
    status = json.loads(ok(rsm("status", d.name, "--json")))
    assert status["size"] == 0 and status["root"] is None  # nothing was submitted
    ok(rsm("insert", str(d.dir), stdin=good))
    out = json.loads(ok(rsm("insert", str(d.dir), "--json", "--durable", stdin="")))
    assert (out["inserted"], out["size"], out["durable"]) == (0, 5, True)
    assert out["root"] == root_hex(leaves(5))
    res = rsm("insert", str(d.dir), stdin="")
    assert res.returncode == 0 and "inserted: 0 leaves" in res.stdout and "size: 5" in res.stdout
    res = rsm("insert", str(tmp_path / "nowhere"), stdin=good)
    assert res.returncode == 1 and "no writer daemon" in res.stderr


# -- proof, verify, consistency ---------------------------------------------------------------

def test_proof_and_verify(serve: Callable[..., Daemon], tmp_path: Path) -> None:
    d = serve()
    items = leaves(137)
    ok(rsm("insert", str(d.dir), stdin=hex_lines(items), timeout=60))
    root = root_hex(items)
    root100 = root_hex(items[:100])

    hex_proof = ok(rsm("proof", d.name, "42")).strip()
    assert re.fullmatch(r"[0-9a-f]+", hex_proof)
    pfile = tmp_path / "p.hex"
    pfile.write_text(hex_proof + "\n")
    res = rsm("verify", str(pfile), "--root", root, "--size", "137")
    assert res.returncode == 0 and res.stdout.strip() == "OK", res.stderr

    # JSON and raw binary forms, written with -o; the format is detected.
    ok(rsm("proof", d.name, "136", "--json", "-o", str(tmp_path / "p.json")))
    obj = json.loads((tmp_path / "p.json").read_text())
    assert obj["leaf"] == items[136].hex() and obj["tree_size"] == 137
    assert ok(rsm("verify", str(tmp_path / "p.json"), "--root", root)).strip() == "OK"
    ok(rsm("proof", d.name, "0", "-o", str(tmp_path / "p.bin")))
    assert (tmp_path / "p.bin").read_bytes() == bytes.fromhex(ok(rsm("proof", d.name, "0")))
    assert ok(rsm("verify", str(tmp_path / "p.bin"), "--root", root)).strip() == "OK"

    # A proof against an earlier size verifies against that size's root only.
    old = tmp_path / "old.hex"
    old.write_text(ok(rsm("proof", d.name, "7", "--size", "100")))
    assert ok(rsm("verify", str(old), "--root", root100, "--size", "100")).strip() == "OK"
    res = rsm("verify", str(old), "--root", root)
    assert res.returncode == 1 and res.stdout.strip() == "FAILED"

    # Wrong trusted size, tampered sibling, tampered leaf: FAILED, exit 1.
    res = rsm("verify", str(pfile), "--root", root, "--size", "138")
    assert res.returncode == 1 and res.stdout.strip() == "FAILED"
    assert "138" in res.stderr
    flipped = hex_proof[:-1] + ("0" if hex_proof[-1] != "0" else "1")
    (tmp_path / "t.hex").write_text(flipped)
    res = rsm("verify", str(tmp_path / "t.hex"), "--root", root)
    assert res.returncode == 1 and res.stdout.strip() == "FAILED"
    obj["leaf"] = items[135].hex()
    (tmp_path / "t.json").write_text(json.dumps(obj))
    res = rsm("verify", str(tmp_path / "t.json"), "--root", root)
    assert res.returncode == 1 and res.stdout.strip() == "FAILED"

    # Malformed proofs: exit 2 with the InvalidProof message.
    (tmp_path / "m.hex").write_text(hex_proof[:100])
    res = rsm("verify", str(tmp_path / "m.hex"), "--root", root)
    assert res.returncode == 2 and "malformed proof" in res.stderr and "too short" in res.stderr
    (tmp_path / "m.json").write_text('{"version": 1, "type": "inclusion", "arity": 1}')
    res = rsm("verify", str(tmp_path / "m.json"), "--root", root)
    assert res.returncode == 2 and "arity" in res.stderr
    (tmp_path / "odd.hex").write_text("abc")
    assert rsm("verify", str(tmp_path / "odd.hex"), "--root", root).returncode == 2
    assert rsm("verify", str(pfile), "--root", "xyz").returncode == 2
    assert rsm("verify", str(tmp_path / "missing"), "--root", root).returncode == 2

    # Out-of-range index and unknown tree: exit 1 with a message.
    res = rsm("proof", d.name, "137")
    assert res.returncode == 1 and "137" in res.stderr
    res = rsm("proof", f"nosuch-{uuid.uuid4().hex[:8]}", "0")
    assert res.returncode == 1 and "no writer publishes" in res.stderr


def test_consistency(serve: Callable[..., Daemon], tmp_path: Path) -> None:
    d = serve()
    items = leaves(80)
    ok(rsm("insert", str(d.dir), stdin=hex_lines(items[:50])))
    ok(rsm("insert", str(d.dir), stdin=hex_lines(items[50:])))
    old_root = root_hex(items[:50])
    new_root = root_hex(items)

    cfile = tmp_path / "c.json"
    cfile.write_text(ok(rsm("consistency", d.name, "50", "--json")))
    obj = json.loads(cfile.read_text())
    assert (obj["old_size"], obj["new_size"]) == (50, 80)
    assert (obj["old_root"], obj["new_root"]) == (old_root, new_root)
    res = rsm("verify", str(cfile), "--root", new_root, "--old-root", old_root,
              "--old-size", "50", "--size", "80")
    assert res.returncode == 0 and res.stdout.strip() == "OK", res.stderr

    hfile = tmp_path / "c.hex"
    hfile.write_text(ok(rsm("consistency", d.name, "13", "--size", "77")))
    root13 = root_hex(items[:13])
    root77 = root_hex(items[:77])
    assert ok(rsm("verify", str(hfile), "--root", root77, "--old-root", root13)).strip() == "OK"

    res = rsm("verify", str(cfile), "--root", new_root, "--old-root", root13)
    assert res.returncode == 1 and res.stdout.strip() == "FAILED"
    res = rsm("verify", str(cfile), "--root", new_root, "--old-root", old_root,
              "--old-size", "49")
    assert res.returncode == 1
    res = rsm("verify", str(cfile), "--root", new_root)
    assert res.returncode == 2 and "--old-root" in res.stderr
    res = rsm("consistency", d.name, "81")
    assert res.returncode == 1 and "81" in res.stderr


# -- status -----------------------------------------------------------------------------------

def test_status(serve: Callable[..., Daemon]) -> None:
    # default name: derived from the path; two hash threads (small batches hash on one)
    d = serve("--pin-above-level", "1", "--hash-threads", "2", named=False)
    items = leaves(1000)
    ins = kv(ok(rsm("insert", str(d.dir), "--durable", "--batch", "300",
                    stdin=hex_lines(items))))
    info = json.loads(ok(rsm("status", d.name, "--json")))
    assert info["name"] == d.name
    assert info["size"] == 1000
    assert info["root"] == root_hex(items)
    assert info["depth"] == ref_depth(1000, ARITY)
    assert info["writer_pid"] == d.proc.pid and info["writer_alive"] is True
    assert info["writer_state"] == "live"
    assert info["durable_seq"] >= int(ins["seq"]) == info["published_seq"] == 4
    assert info["directory"] == str(d.dir.resolve())
    assert info["pin_above_level"] == 1
    assert [e["tier"] for e in info["levels"]] == ["file"] + ["shm"] * ref_depth(1000, ARITY)
    assert [e["nodes"] for e in info["levels"]][:2] == [1000, 250]
    names = {os.path.basename(s["path"]) for s in info["shm_segments"]}
    assert f"rotorshm.{d.name}.ctl" in names
    assert sum(1 for n in names if re.search(r"\.L\d+\.S0$", n)) == ref_depth(1000, ARITY)
    assert all(s["size"] > 0 for s in info["shm_segments"])
    assert info["kernel"]["kernel"] in info["kernel"]["available"]
    assert info["kernel"]["lanes"] >= 1
    adv = info["tiering_advice"]
    # 1000 leaves, arity 4: levels of 1000, 250, 63, 16, 4, 1 nodes (32 bytes each)
    assert adv["tree_bytes"] == 32 * (1000 + 250 + 63 + 16 + 4 + 1)
    assert adv["pin_above_level"] == 1 and adv["pinned_bytes"] == 32 * (250 + 63 + 16 + 4 + 1)
    assert adv["page_reads_per_proof"] == 1
    assert adv["suggested_pin_above_level"] == 0  # 42 KiB fit in any machine's budget

    # A path containing '/' stands for the directory's default name.
    text = ok(rsm("status", str(d.dir)))
    assert "alive" in text and str(d.dir.resolve()) in text
    assert re.search(r"^size\s+1000$", text, re.M)
    assert "levels 1-5 in shared memory" in text
    assert re.search(r"^kernel\s+\w+ \(\d+ lanes", text, re.M)
    assert re.search(r"^tiering advice\s+pin_above_level 1 keeps .* at most 1 page read", text,
                     re.M)

    assert d.stop() == 0
    res = rsm("status", d.name)
    assert res.returncode == 1 and "no writer publishes" in res.stderr


# -- inspect ----------------------------------------------------------------------------------

def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_inspect(serve: Callable[..., Daemon], tmp_path: Path) -> None:
    d = serve("--checkpoint", "every:64", "--pin-above-level", "2")
    items = leaves(310)
    ok(rsm("insert", str(d.dir), "--batch", "50", stdin=hex_lines(items[:300])))
    ok(rsm("insert", str(d.dir), "--batch", "5", "--durable", stdin=hex_lines(items[300:])))
    want = root_hex(items)

    live = json.loads(ok(rsm("inspect", str(d.dir), "--json")))  # beside the running writer
    assert live["ok"] and live["writer"] == {"running": True, "pid": d.proc.pid}
    assert live["replay"]["size"] == 310 and live["replay"]["root"] == want

    assert d.stop() == 0
    before = tree_files(d.dir)
    rep = json.loads(ok(rsm("inspect", str(d.dir), "--json")))
    assert tree_files(d.dir) == before  # read-only
    assert rep["ok"] and rep["error"] is None and rep["writer"]["running"] is False
    assert rep["header"] == {"arity": 4, "max_depth": 20, "version": 1,
                             "chunk_nodes": 128, "shard_chunks": 65536}
    ck = rep["checkpoint"]
    assert ck["size"] == 300 and ck["root"] == root_hex(items[:300])
    assert rep["wal"]["records"] == 2 and rep["wal"]["leaves"] == 10
    assert rep["wal"]["last_seq"] == rep["wal"]["first_seq"] + 1 == ck["seq"] + 2
    assert rep["wal"]["torn_bytes"] == 0
    assert rep["verify"]["result"] == "ok"
    assert rep["replay"] == {"seq": ck["seq"] + 2, "size": 310, "depth": ref_depth(310, ARITY),
                             "root": want}
    assert rep["tiering_advice"]["tree_bytes"] == 32 * (310 + 78 + 20 + 5 + 2 + 1)
    assert rep["tiering_advice"]["page_reads_per_proof"] == 5  # the default tiering
    text = ok(rsm("inspect", str(d.dir)))
    assert "none (offline)" in text and re.search(r"^result\s+OK$", text, re.M)
    assert re.search(r"^tiering advice\s+every level in shard files", text, re.M)

    def broken(label: str, damage: Callable[[Path], None]) -> subprocess.CompletedProcess[str]:
        copy = tmp_path / f"copy-{label}"
        sparse_copy(d.dir, copy)
        damage(copy)
        return rsm("inspect", str(copy))

    res = broken("leaf", lambda p: _flip(p / "data/level_0/shard_0000.bin", 32 * 200 + 5))
    assert res.returncode == 1 and "level_0/shard_0000.bin" in res.stderr
    assert "CORRUPT" in res.stdout
    res = broken("pinned", lambda p: _flip(p / "data/level_2/shard_0000.bin", 32 * 3))
    assert res.returncode == 1 and "level_2" in res.stderr
    res = broken("meta", lambda p: _flip(p / "data/checkpoint.meta", 40))
    assert res.returncode == 1 and "checkpoint.meta" in res.stderr
    res = broken("header", lambda p: _flip(p / "data/header.bin", 12))
    assert res.returncode == 1 and "header.bin" in res.stderr
    res = broken("wal", lambda p: _flip(p / "wal.log", 30))  # first of two records
    assert res.returncode == 1 and "wal.log" in res.stderr and "corrupt" in res.stderr

    garbage = b"\x01\x02\x03 half a record"

    def torn(p: Path) -> None:
        with open(p / "wal.log", "ab") as f:
            f.write(garbage)

    res = broken("torn", torn)  # a torn tail is what a crash leaves: recoverable, not corrupt
    assert res.returncode == 0, res.stderr
    assert f"torn tail {len(garbage)} bytes" in res.stdout
    res = rsm("inspect", str(tmp_path / "nothing-here"))  # not a tree: bad input, not corrupt
    assert res.returncode == 2 and "no such file or directory" in res.stderr
    assert "CORRUPT" not in res.stdout

    # The directory is still a healthy tree that a writer reopens where it left off.
    d2 = serve("--checkpoint", "every:64")
    assert d2.dir == d.dir
    assert json.loads(ok(rsm("status", d2.name, "--json")))["root"] == want


# -- demo, bench ------------------------------------------------------------------------------

def test_demo() -> None:
    res = rsm("demo", "--leaves", "20000", "--readers", "2", "-q", timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert re.search(r"verify failures\s+0$", out, re.M), out
    assert re.search(r"^\s*leaves\s+20,000$", out, re.M), out
    assert re.search(r"result\s+OK$", out, re.M), out
    assert "matches in-memory LeanIMT" in out
    assert re.search(r"daemon exit\s+0 ", out), out
    assert re.search(r"/dev/shm leftovers\s+0$", out, re.M), out
    m = re.search(r"tree\s+(\S+) \(name (\S+)\) \[removed\]", out)
    assert m, out
    assert not Path(m.group(1)).exists()
    assert not shm_of(m.group(2))
    rows = re.findall(r"^\s+([01])\s+([\d,]+)\s+([\d,]+)\s", out, re.M)
    assert len(rows) == 2 and all(int(r[1].replace(",", "")) > 0 for r in rows), out


def test_bench_forwarding(tmp_path: Path) -> None:
    # `rotorshm bench` runs the suite shipped with the package (rotorshm.bench, the source
    # tree's bench/), from any folder, passing its arguments through.
    res = rsm("bench", "--help", cwd=tmp_path)
    assert res.returncode == 0 and "usage: python -m bench" in res.stdout, res.stderr
    res = rsm("bench", "no_such_scenario", "--quick", "--out", str(tmp_path), cwd=tmp_path)
    assert res.returncode == 2 and "unknown scenario 'no_such_scenario'" in res.stderr


def test_demo_summary_reports_failures() -> None:
    from rotorshm.demo import DemoConfig, DemoResult, ReaderStats, format_summary

    cfg = DemoConfig(leaves=10, readers=1)
    good = DemoResult(cfg, "/tmp/x", "n", leaves=10, root_matches=True, published_matches=True,
                      daemon_exit=0, on_disk_ok=True,
                      readers=[ReaderStats(0, proofs=5, elapsed=1.0, last_size=10)])
    assert good.ok and re.search(r"verify failures\s+0$", format_summary(good), re.M)
    bad = DemoResult(cfg, "/tmp/x", "n", leaves=10, root_matches=True, published_matches=True,
                     daemon_exit=0, on_disk_ok=True,
                     readers=[ReaderStats(0, proofs=5, failures=2, elapsed=1.0,
                                          first_failure="proof of leaf 3 does not verify")])
    text = format_summary(bad)
    assert not bad.ok and re.search(r"verify failures\s+2$", text, re.M)
    assert "result              FAILED" in text or re.search(r"result\s+FAILED", text)
    assert "first failure: proof of leaf 3" in text
