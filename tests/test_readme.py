"""The README as a new user meets it.

* Every ```python block of README.md runs, in order, each in a fresh namespace, with a
  real temporary directory in place of ``/var/lib/mytree`` and, for blocks that talk to a
  daemon, a real ``rotorshm serve`` on that directory under a unique name.
* The first README command (``pip install . && rotorshm demo``) runs verbatim from the
  root of a clone-like copy of the project, in a fresh venv with a non-editable install,
  as the first thing a newcomer does; so do the demo and the bench with the source tree on
  PYTHONPATH and from another folder. A child process must run the installed rotorshm,
  never the source tree it happens to start in (which has no compiled helper).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_util import start_daemon, unique_name

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PLACEHOLDER_DIR = "/var/lib/mytree"
PLACEHOLDER_NAME = '"mytree"'


def blocks(lang: str) -> list[str]:
    """The fenced code blocks of README.md in language `lang`, in order."""
    text = README.read_text(encoding="utf-8")
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)


def test_readme_has_the_blocks_this_test_runs() -> None:
    assert len(blocks("python")) >= 3
    commands = blocks("sh")[0].splitlines()
    assert commands[:2] == ["pip install . && rotorshm demo",
                            "pip install -e '.[dev]' && python -m pytest -n auto -q"]


PLACEHOLDER_URL = "https://log.example.com"
PLACEHOLDER_PUB = '"log.key.pub"'


@contextlib.contextmanager
def static_log(root: Path) -> Iterator[tuple[str, Path]]:
    """A signed tile export of a 2,000-leaf tree in `root`, served by `python -m http.server`
    on a free loopback port: (its URL, the verifier key file)."""
    from rotorshm import LeanIMT
    from rotorshm.note import Signer
    from rotorshm.tiles import export

    tree = LeanIMT(arity=4)
    tree.insert_many([i.to_bytes(32, "little") for i in range(2000)])
    signer = Signer.generate("example.com/mylog")
    pub = root / "log.key.pub"
    pub.write_text(signer.verifier.to_text() + "\n")
    site = root / "site"
    export(tree.snapshot(), str(site), signer)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory",
         str(site)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "http.server exited"
            try:
                with urllib.request.urlopen(url + "/checkpoint", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "http.server did not come up"
            time.sleep(0.05)
        yield url, pub
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_readme_python_block_runs(index: int, tmp_path: Path) -> None:
    code = blocks("python")[index]
    directory = tmp_path / "mytree"
    code = code.replace(PLACEHOLDER_DIR, str(directory))
    with contextlib.ExitStack() as stack:
        if "rotorshm.connect(" in code or "rotorshm.attach(" in code:
            name = unique_name("readme")
            code = code.replace(PLACEHOLDER_NAME, repr(name))
            daemon = start_daemon(directory, name)
            stack.callback(daemon.stop)
        if PLACEHOLDER_URL in code:
            url, pub = stack.enter_context(static_log(tmp_path))
            code = code.replace(PLACEHOLDER_URL, url).replace(PLACEHOLDER_PUB, repr(str(pub)))
        exec(compile(code, f"README.md python block {index + 1}", "exec"), {})  # noqa: S102


# -- the first README command, as a newcomer runs it ----------------------------------------

def project_files(root: Path) -> list[str]:
    """What a clone of the project holds: tracked and new, not ignored, files."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"], capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("git is not available to list the project's files")
    return [f for f in out.decode().split("\0") if f and (root / f).is_file()]


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A clone-like copy of the project and the environment of a fresh venv's shell."""
    base = tmp_path_factory.mktemp("newcomer")
    clone = base / "rotorshm"
    for rel in project_files(REPO):
        dst = clone / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst)
    assert not list((clone / "rotorshm").glob("_native*")), "the copy must hold no build"
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSAFEPATH")}
    env["VIRTUAL_ENV"] = str(env_dir)
    env["PATH"] = os.pathsep.join([str(env_dir / "bin"), env.get("PATH", "")])
    return clone, env


def sh(command: str, cwd: Path, env: dict[str, str], timeout: float = 900
       ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_first_readme_command_from_the_project_root(
        newcomer: tuple[Path, dict[str, str]]) -> None:
    clone, env = newcomer
    first = blocks("sh")[0].splitlines()[0]
    res = sh(first, clone, env)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert re.search(r"^\s*result\s+OK$", res.stdout, re.M), out
    assert not list((clone / "rotorshm").glob("_native*"))  # the trap was really there
    # The installed package, not the source tree it ran from.
    where = sh("python -c 'import rotorshm; print(rotorshm.__file__)'", Path("/"), env)
    assert "site-packages" in where.stdout, where.stdout + where.stderr


def test_demo_and_bench_with_the_source_tree_on_pythonpath(
        newcomer: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    clone, env = newcomer
    if not (Path(env["VIRTUAL_ENV"]) / "bin" / "rotorshm").exists():  # run alone
        res = sh("pip install .", clone, env)
        assert res.returncode == 0, res.stdout + res.stderr
    on_path = dict(env, PYTHONPATH=str(clone))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cwd, e in ((clone, on_path), (elsewhere, on_path), (elsewhere, env)):
        res = sh("rotorshm demo --leaves 20000 --quiet", cwd, e, timeout=600)
        assert res.returncode == 0 and re.search(r"result\s+OK$", res.stdout, re.M), (
            cwd, res.stdout + res.stderr)
    # `python -m rotorshm` from the source tree: the demo's children still run the
    # installed package, whatever the parent found first.
    res = sh("python -m rotorshm demo --leaves 20000 --quiet", clone, env, timeout=600)
    assert res.returncode == 0 and re.search(r"result\s+OK$", res.stdout, re.M), res.stderr
    for cwd, e in ((clone, env), (elsewhere, on_path), (elsewhere, env)):
        out = tmp_path / f"bench-{len(list(tmp_path.iterdir()))}"
        res = sh(f"rotorshm bench tree --quick --quiet --out {out}", cwd, e, timeout=600)
        assert res.returncode == 0, (cwd, res.stdout + res.stderr)
        assert (out / "tree.json").is_file()


def test_demo_reports_the_daemon_error_when_it_fails_at_start(tmp_path: Path) -> None:
    from rotorshm.demo import DemoConfig, _start_daemon

    tree = tmp_path / "tree"
    tree.write_text("a regular file where the tree directory should be")
    with open(tmp_path / "serve.log", "wb") as log, pytest.raises(RuntimeError) as info:
        _start_daemon(DemoConfig(leaves=10, readers=0), str(tree), unique_name("dfail"), log)
    message = str(info.value)
    assert "exited with code" in message and "its log ends with" in message
    assert str(tree) in message  # the child's own error names the path it could not use


def test_children_import_the_parent_rotorshm(tmp_path: Path) -> None:
    from rotorshm.spawn import rotorshm_argv

    decoy = tmp_path / "rotorshm"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise SystemExit('the decoy was imported')\n")
    (decoy / "__main__.py").write_text("raise SystemExit('the decoy was imported')\n")
    res = subprocess.run(rotorshm_argv("--help"), cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert res.returncode == 0 and "usage: rotorshm" in res.stdout, res.stderr
    # The same command as `python -m` picks the decoy: the trap the bootstrap avoids.
    res = subprocess.run([sys.executable, "-m", "rotorshm", "--help"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert "the decoy was imported" in res.stderr
