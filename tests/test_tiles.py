"""Static tiles, signed checkpoints and the verifying remote client.

A real static web server (`python -m http.server` over a folder of exports, a subprocess on
a free loopback port) and a real `rotorshm http --key` server: RemoteTree's proofs equal
local Snapshot proofs and verify; tampering with tiles or checkpoints is detected; a log
that rolls back or forks is refused. Nothing asserts on time; every loop is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("cryptography", reason="the tiles extra (in dev) installs cryptography")
httpx = pytest.importorskip("httpx")

from daemon_util import (  # noqa: E402
    REPO_ROOT,
    TIMEOUT,
    child_env,
    leaf_range,
    segments_of,
    start_daemon,
    unique_name,
    unlink_segments,
)

from rotorshm import InvalidProof, LeanIMT  # noqa: E402
from rotorshm.note import InvalidSignature, Signer  # noqa: E402
from rotorshm.remote import LogFork, LogRollback, RemoteTree  # noqa: E402
from rotorshm.tiles import (  # noqa: E402
    Checkpoint,
    InvalidCheckpoint,
    encode_index,
    export,
    open_checkpoint,
    parse_checkpoint,
    parse_tile_path,
    shape_line,
    tile_path,
)

SIGNER = Signer.generate("example.com/rotorshm-test")
OTHER = Signer.generate("example.com/rotorshm-test")  # same name, another key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree(arity: int, size: int, start: int = 0) -> LeanIMT:
    t = LeanIMT(arity, 40)
    if size:
        t.insert_many(leaf_range(start, start + size))
    return t


# -- paths and checkpoint text ----------------------------------------------------------------

@pytest.mark.parametrize(("index", "text"), [
    (0, "000"), (5, "005"), (999, "999"), (1000, "x001/000"), (1234067, "x001/x234/067"),
])
def test_index_encoding(index: int, text: str) -> None:
    assert encode_index(index) == text
    assert parse_tile_path(f"/tile/2/{text}") == (2, index, None)
    assert parse_tile_path(f"tile/0/{text}.p/17") == (0, index, 17)


@pytest.mark.parametrize("path", [
    "tile/01/000", "tile/0/5", "tile/0/0005", "tile/0/x000/005", "tile/0/001/234",
    "tile/0/x1/234", "tile/0/000.p/0", "tile/0/000.p/128", "tile/0/000.p/07", "tile/64/000",
    "tile/entries/000", "tile/0", "tiles/0/000", "tile/0/x001",
])
def test_non_canonical_tile_paths_are_refused(path: str) -> None:
    assert parse_tile_path(path) is None


def test_checkpoint_text() -> None:
    t = tree(4, 1000)
    cp = Checkpoint.of(t.snapshot(), "example.com/log")
    body = cp.body()
    lines = body.splitlines()
    assert lines[0] == "example.com/log" and lines[1] == "1000" and lines[3] == shape_line(4)
    assert parse_checkpoint(body, arity=4) == cp
    with pytest.raises(InvalidCheckpoint, match="shape"):
        parse_checkpoint(body, arity=2)
    with pytest.raises(InvalidCheckpoint):
        parse_checkpoint(body, arity=4, origin="example.com/other")
    with pytest.raises(InvalidCheckpoint):
        parse_checkpoint(body + "extra\n", arity=4)
    with pytest.raises(InvalidCheckpoint):
        parse_checkpoint(body.replace("\n1000\n", "\n01000\n"), arity=4)


# -- a static web server over exported folders ------------------------------------------------

@pytest.fixture(scope="module")
def static(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """(root folder, its URL): `python -m http.server` serving `root`."""
    root = tmp_path_factory.mktemp("static")
    port = free_port()
    log = open(root.parent / f"http-server-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(root)], stdin=subprocess.DEVNULL, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert proc.poll() is None, "http.server exited"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/", timeout=2.0).status_code == 200:
                    break
            assert time.monotonic() < deadline, "http.server not ready"
            time.sleep(0.05)
        yield root, url
    finally:
        proc.terminate()
        try:
            proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


_n = 0


def folder(static: tuple[Path, str]) -> tuple[Path, str]:
    """A fresh sub-folder of the static root, and its URL."""
    global _n
    _n += 1
    root, url = static
    return root / f"log{_n}", f"{url}/log{_n}"


@pytest.mark.parametrize("arity", [2, 3, 4, 16])
def test_remote_proofs_equal_local_ones(static: tuple[Path, str], arity: int) -> None:
    out, url = folder(static)
    t = tree(arity, 3000)
    export(t.snapshot(), str(out), SIGNER)
    with RemoteTree(url, SIGNER.verifier.to_text(), arity=arity) as remote:
        snap = t.snapshot()
        assert remote.checkpoint() == (snap.size, snap.root)
        for i in [0, 1, 127, 128, 129, 2047, 2999, *range(5, 3000, 397)]:
            proof = remote.generate_proof(i)
            assert proof == snap.generate_proof(i)
            assert proof.verify_against(snap.root, snap.size)
            assert remote.leaf(i) == snap.get_leaf(i)
        # The tree grows; each export is incremental and each checkpoint extends the last.
        for grow in (1, 126, 1, 5000):
            old = snap.size
            t.insert_many(leaf_range(t.size, t.size + grow))
            snap = t.snapshot()
            result = export(snap, str(out), SIGNER)
            assert result.previous_size == old
            assert remote.checkpoint() == (snap.size, snap.root)
            consistency = remote.generate_consistency_proof(old)
            assert consistency == snap.generate_consistency_proof(old)
            assert consistency.verify_against(t.snapshot().root_at(old), snap.root)
            for i in (old - 1, snap.size - 1, (old * 7) % snap.size):
                assert remote.generate_proof(i) == snap.generate_proof(i)


def test_cold_then_warm_requests(static: tuple[Path, str]) -> None:
    out, url = folder(static)
    t = tree(4, 100_000)
    export(t.snapshot(), str(out), SIGNER)
    depth = t.depth
    with RemoteTree(url, SIGNER.verifier, arity=4) as remote:
        remote.generate_proof(31_337)
        assert remote.stats.requests <= depth + 1
        before = remote.stats.requests
        remote.checkpoint()  # same checkpoint: its partial tiles are kept with it
        remote.generate_proof(31_338)
        assert remote.stats.requests - before <= 2


def test_export_is_incremental_and_drops_superseded_partials(tmp_path: Path) -> None:
    t = tree(4, 100)
    first = export(t.snapshot(), str(tmp_path), SIGNER)
    assert first.full_tiles == 0 and (tmp_path / tile_path(0, 0, 100)).exists()
    assert export(t.snapshot(), str(tmp_path), SIGNER).bytes_written == 0
    t.insert_many(leaf_range(100, 300))
    second = export(t.snapshot(), str(tmp_path), SIGNER)
    assert second.full_tiles == 2  # level-0 tiles 0 and 1; nothing rewritten
    assert (tmp_path / tile_path(0, 0)).stat().st_size == 4096
    assert not (tmp_path / "tile/0/000.p").exists()
    assert (tmp_path / tile_path(0, 2, 44)).exists()
    # Another tree, a smaller tree, another key: refused.
    with pytest.raises(Exception, match="another tree"):
        export(tree(4, 400, start=10**6).snapshot(), str(tmp_path), SIGNER)
    with pytest.raises(Exception, match="roll it back"):
        export(tree(4, 200).snapshot(), str(tmp_path), SIGNER)
    with pytest.raises(Exception, match="not this log's"):
        export(t.snapshot(), str(tmp_path), OTHER)


def _tamper_setup(static: tuple[Path, str]) -> tuple[Path, str, LeanIMT]:
    out, url = folder(static)
    t = tree(4, 5000)
    export(t.snapshot(), str(out), SIGNER)
    return out, url, t


@pytest.mark.parametrize("how", ["flip", "truncate", "other-tree"])
def test_tampered_tiles_are_detected(static: tuple[Path, str], how: str) -> None:
    out, url, t = _tamper_setup(static)
    index = 1000  # in full level-0 tile 7, far from the right edge
    target = out / tile_path(0, index // 128)
    data = bytearray(target.read_bytes())
    if how == "flip":
        data[(index % 128) * 32 + 5] ^= 0x01
    elif how == "truncate":
        data = data[:-1]
    else:
        other = tree(4, 5000, start=10**6)
        data = bytearray(b"".join(other.snapshot().get_node(0, j)
                                  for j in range(896, 1024)))
    target.write_bytes(bytes(data))
    with RemoteTree(url, SIGNER.verifier, arity=4, retries=0) as remote:
        remote.checkpoint()  # the right edge is intact
        with pytest.raises(InvalidProof):
            remote.generate_proof(index)
        # A sibling leaf of the same group: its proof carries the tampered leaf.
        with pytest.raises(InvalidProof):
            remote.generate_proof(index + 1)
        assert remote.generate_proof(3000) == t.snapshot().generate_proof(3000)


def test_tampered_partial_tile_fails_the_checkpoint(static: tuple[Path, str]) -> None:
    out, url, _ = _tamper_setup(static)
    target = out / tile_path(0, 5000 // 128, 5000 % 128)
    data = bytearray(target.read_bytes())
    data[0] ^= 0x80
    target.write_bytes(bytes(data))
    with RemoteTree(url, SIGNER.verifier, arity=4, retries=0) as remote, \
            pytest.raises(InvalidProof):
        remote.checkpoint()


def test_checkpoint_of_another_key_or_shape(static: tuple[Path, str]) -> None:
    out, url, t = _tamper_setup(static)
    (out / "checkpoint").write_text(Checkpoint.of(t.snapshot(), OTHER.name).sign(OTHER))
    with RemoteTree(url, SIGNER.verifier, arity=4) as remote, pytest.raises(InvalidSignature):
        remote.checkpoint()
    (out / "checkpoint").write_text(Checkpoint.of(t.snapshot(), SIGNER.name).sign(SIGNER))
    with RemoteTree(url, SIGNER.verifier, arity=2) as remote, pytest.raises(InvalidCheckpoint):
        remote.checkpoint()


def test_rollback_and_fork_are_refused(static: tuple[Path, str]) -> None:
    out, url, t = _tamper_setup(static)
    old_note = (out / "checkpoint").read_text()
    with RemoteTree(url, SIGNER.verifier, arity=4) as remote:
        remote.checkpoint()
        t.insert_many(leaf_range(5000, 6000))
        export(t.snapshot(), str(out), SIGNER)
        assert remote.checkpoint()[0] == 6000
        # Rollback: the log serves its older (validly signed) checkpoint again.
        (out / "checkpoint").write_text(old_note)
        with pytest.raises(LogRollback):
            remote.checkpoint()
        assert remote.size == 6000  # the trusted checkpoint is unchanged
        # Fork: the same key signs a different tree that does not extend the trusted one.
        fork_out, fork_url = folder(static)
        fork = tree(4, 5000)
        fork.insert_many(leaf_range(10**6, 10**6 + 2000))
        export(fork.snapshot(), str(fork_out), SIGNER)
        for name in ("tile", "checkpoint"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()
        shutil.copytree(fork_out / "tile", out / "tile")
        shutil.copy(fork_out / "checkpoint", out / "checkpoint")
        with pytest.raises(LogFork):
            remote.checkpoint()
        # Same size, other root.
        same = tree(4, 6000, start=10**7)
        (out / "checkpoint").write_text(Checkpoint.of(same.snapshot(), SIGNER.name).sign(SIGNER))
        with pytest.raises(LogFork):
            remote.checkpoint()
        assert remote.size == 6000


# -- the live server, the CLI -----------------------------------------------------------------

def _run(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rotorshm", *args], capture_output=True,
                          text=True, env=child_env(), cwd=str(REPO_ROOT), timeout=timeout,
                          check=False)


def test_keygen(tmp_path: Path) -> None:
    key = tmp_path / "log.key"
    r = _run("keygen", str(key), "--name", "example.com/k")
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    signer = Signer.from_text(key.read_text())
    assert (tmp_path / "log.key.pub").read_text().strip() == signer.verifier.to_text()
    assert r.stdout.strip() == signer.verifier.to_text()
    assert _run("keygen", str(key), "--name", "example.com/k").returncode == 2


def test_live_server_and_export_serve_one_layout(tmp_path: Path, static: tuple[Path, str]
                                                 ) -> None:
    """`rotorshm http --key` and `rotorshm tiles export` of one tree: same tiles, same proofs."""
    import rotorshm

    key = tmp_path / "log.key"
    assert _run("keygen", str(key), "--name", "example.com/live").returncode == 0
    verifier = (tmp_path / "log.key.pub").read_text().strip()
    name = unique_name("tiles")
    directory = tmp_path / "t"
    daemon = start_daemon(directory, name, pin_above_level=2)
    port = free_port()
    log = open(tmp_path / "http.log", "wb")  # noqa: SIM115
    server = None
    try:
        with rotorshm.connect(directory) as client:
            client.insert_many(leaf_range(0, 3000))
        server = subprocess.Popen(
            [sys.executable, "-m", "rotorshm", "http", name, "--listen", f"127.0.0.1:{port}",
             "--workers", "2", "--key", str(key), "--checkpoint-interval", "0.1"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=child_env(),
            cwd=str(REPO_ROOT), start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert server.poll() is None, (tmp_path / "http.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/checkpoint", timeout=2.0).status_code == 200:
                    break
            assert time.monotonic() < deadline, "server not ready"
            time.sleep(0.05)
        r = httpx.get(url + "/checkpoint")
        assert r.headers["content-type"].startswith("text/plain")
        assert r.headers["cache-control"] == "no-cache"
        r = httpx.get(url + "/" + tile_path(0, 1))
        assert r.status_code == 200 and len(r.content) == 4096
        assert "immutable" in r.headers["cache-control"]
        assert httpx.get(url + "/" + tile_path(0, 30)).status_code == 404
        assert httpx.get(url + "/tile/0/0001").status_code == 404

        out, static_url = folder(static)
        e = _run("tiles", "export", name, str(out), "--key", str(key))
        assert e.returncode == 0, e.stderr
        with rotorshm.attach(name) as reader:
            snap = reader.snapshot()
        with RemoteTree(url, verifier, arity=4) as live, \
                RemoteTree(static_url, verifier, arity=4) as exported:
            assert live.checkpoint() == exported.checkpoint() == (snap.size, snap.root)
            for i in (0, 1234, 2999):
                assert live.generate_proof(i) == exported.generate_proof(i) \
                    == snap.generate_proof(i)
            assert (out / tile_path(0, 1)).read_bytes() == httpx.get(
                url + "/" + tile_path(0, 1)).content
            # The tree grows: the live checkpoint and a `tiles export --watch` follow it
            # (bounded waits), consistently.
            watch_out = tmp_path / "watched"
            watch = subprocess.Popen(
                [sys.executable, "-m", "rotorshm", "tiles", "export", name, str(watch_out),
                 "--key", str(key), "--watch", "--interval", "0.05", "--quiet"],
                stdin=subprocess.DEVNULL, env=child_env(), cwd=str(REPO_ROOT))
            try:
                with rotorshm.connect(directory) as client:
                    client.insert_many(leaf_range(3000, 4000))
                for _ in range(400):
                    if (watch_out / "checkpoint").exists() and open_checkpoint(
                            (watch_out / "checkpoint").read_bytes(), verifier, arity=4
                    ).size == 4000:
                        break
                    assert watch.poll() is None
                    time.sleep(0.05)
                else:
                    raise AssertionError("tiles export --watch did not reach 4000 leaves")
            finally:
                watch.send_signal(signal.SIGTERM)
                assert watch.wait(TIMEOUT) == 0
            for _ in range(200):
                if live.checkpoint()[0] == 4000:
                    break
                time.sleep(0.05)
            assert live.size == 4000
            assert live.generate_consistency_proof(3000).verify()
        p = _run("remote", "proof", static_url, "17", "--key",
                 str(tmp_path / "log.key.pub"), "--json")
        assert p.returncode == 0, p.stderr
        assert rotorshm.InclusionProof.from_json(p.stdout).verify_against(snap.root, snap.size)
        w = _run("remote", "watch", url, "--key", verifier, "--count", "2", "--interval", "0.05")
        assert w.returncode == 0 and '"size": 4000' in w.stdout, w.stderr
    finally:
        if server is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, signal.SIGKILL)
                server.wait(TIMEOUT)
        log.close()
        if daemon.running():
            daemon.stop()
        else:
            daemon.kill()
        left = segments_of(name)
        unlink_segments(name)
        assert not left, f"segments left behind: {left}"


def test_superseded_partial_tile_falls_back_to_the_full_one(static: tuple[Path, str]) -> None:
    """A client on an older checkpoint whose partial tile was removed uses the full tile."""
    out, url, t = _tamper_setup(static)
    old_note = (out / "checkpoint").read_text()
    old = t.snapshot()
    t.insert_many(leaf_range(5000, 6000))
    export(t.snapshot(), str(out), SIGNER)
    assert not (out / tile_path(0, 5000 // 128, 5000 % 128)).exists()
    (out / "checkpoint").write_text(old_note)  # as if fetched just before the export
    with RemoteTree(url, SIGNER.verifier, arity=4) as remote:
        assert remote.checkpoint() == (5000, old.root)
        assert remote.generate_proof(4999) == old.generate_proof(4999)


def test_retries_and_fetch_errors() -> None:
    """5xx answers are retried (bounded); a log that keeps failing is a FetchError."""
    from rotorshm.remote import FetchError

    t = tree(4, 300)
    with tempfile.TemporaryDirectory() as tmp:
        folder_path = Path(tmp)
        export(t.snapshot(), str(folder_path), SIGNER)
        calls = {"n": 0}

        def flaky(request: httpx.Request) -> httpx.Response:
            calls["n"] += 1
            if calls["n"] % 2:  # every first attempt fails
                return httpx.Response(503)
            path = folder_path / request.url.path.lstrip("/")
            if path.is_file():
                return httpx.Response(200, content=path.read_bytes())
            return httpx.Response(404)

        client = httpx.Client(transport=httpx.MockTransport(flaky))
        remote = RemoteTree("http://log.invalid", SIGNER.verifier, arity=4, client=client,
                            retries=1)
        assert remote.generate_proof(7) == t.snapshot().generate_proof(7)
        down = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(502)))
        with pytest.raises(FetchError):
            RemoteTree("http://log.invalid", SIGNER.verifier, arity=4, client=down,
                       retries=2).checkpoint()
