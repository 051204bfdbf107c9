"""tlog-shaped routes at the server's root, beside /v1 (issue 12): the layout of `rotorshm.tiles`.

    GET /checkpoint                 the signed checkpoint (text/plain, no-cache); needs --key
    GET /tile/<L>/<N>[.p/<W>]       tiles of final nodes (immutable: a tile's bytes are a
                                    function of its path)

so that a live server and a static export (`rotorshm tiles export`) have one layout and
`rotorshm.remote.RemoteTree` takes either's base URL.

The checkpoint is shared by every worker through a state file beside the key
(`KEYFILE.checkpoint`, the last checkpoint this key signed), read and replaced under an
exclusive lock: a worker re-signs at most every `--checkpoint-interval` seconds (the state
file's age is the clock every worker reads), never for a size below the one signed last,
and never for a tree whose root at that size differs (a writer that lost leaves would
otherwise make the key sign a fork: the last checkpoint is served instead, and the worker
says so on stderr).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from typing import TYPE_CHECKING

from ..errors import IndexOutOfRange, RotorError
from ..note import Signer
from ..tiles import Checkpoint, open_checkpoint, parse_tile_path, tile_data

if TYPE_CHECKING:
    from .app import ProofApp

KEY_ENV = "ROTORSHM_HTTP_KEY_FILE"
INTERVAL_ENV = "ROTORSHM_HTTP_CHECKPOINT_INTERVAL"
DEFAULT_INTERVAL = 1.0
TILE_CACHE = b"public, max-age=31536000, immutable"
_TEXT = b"text/plain; charset=utf-8"
_BINARY = b"application/octet-stream"

Headers = list[tuple[bytes, bytes]]


def state_path(key_file: str) -> str:
    """Where the last checkpoint signed with `key_file` is kept."""
    return os.path.abspath(key_file) + ".checkpoint"


class CheckpointSigner:
    """One worker's view of the shared signed checkpoint."""

    def __init__(self, key_file: str, interval: float) -> None:
        with open(key_file, encoding="utf-8") as f:
            self.signer = Signer.from_text(f.read())
        self.interval = max(0.0, interval)
        self.state = state_path(key_file)
        self._note: bytes | None = None
        self._until = 0.0

    def _read_state(self, arity: int) -> tuple[Checkpoint | None, float, bytes | None]:
        try:
            age = time.time() - os.stat(self.state).st_mtime
            with open(self.state, "rb") as f:
                raw = f.read(1 << 16)
        except FileNotFoundError:
            return None, 0.0, None
        try:
            cp = open_checkpoint(raw, self.signer.verifier, arity=arity)
        except RotorError as exc:
            raise RotorError(f"{self.state}: not a checkpoint of this key and tree shape "
                             f"({exc})") from None
        return cp, age, raw

    def note(self, app: ProofApp) -> bytes:
        """The current signed checkpoint, re-signed when the shared one is old enough."""
        now = time.monotonic()
        if self._note is not None and now < self._until:
            return self._note
        snap = app.tree.snapshot()
        with open(self.state + ".lock", "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            last, age, raw = self._read_state(snap.arity)
            note = raw
            fresh = last is not None and age < self.interval
            if last is None or (not fresh and snap.size > last.size):
                if last is not None and last.size and snap.root_at(last.size) != last.root:
                    print(f"rotorshm http: NOT signing a checkpoint of {snap.size} leaves: the "
                          f"tree's root at {last.size} leaves differs from the one signed "
                          "before (the tree lost leaves?)", file=sys.stderr, flush=True)
                else:
                    note = Checkpoint.of(snap, self.signer.name).sign(self.signer).encode()
                    tmp = f"{self.state}.{os.getpid()}.tmp"
                    with open(tmp, "wb") as f:
                        f.write(note)
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, self.state)
            elif not fresh:  # nothing new to sign: restart the interval for every worker
                with contextlib.suppress(OSError):
                    os.utime(self.state)
        assert note is not None
        self._note = note
        self._until = now + self.interval
        return note


_signer: CheckpointSigner | None = None
_signer_loaded = False


def _checkpoint_signer() -> CheckpointSigner | None:
    global _signer, _signer_loaded
    if not _signer_loaded:
        _signer_loaded = True
        key_file = os.environ.get(KEY_ENV)
        if key_file:
            interval = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL))
            _signer = CheckpointSigner(key_file, interval)
    return _signer


def handle(app: ProofApp, path: str, method: str) -> tuple[str, bytes, Headers]:
    """(endpoint label, body, headers) of GET /checkpoint or GET /tile/...; HTTPError else."""
    from .app import HTTPError

    if method not in ("GET", "HEAD"):
        raise HTTPError(405, f"use GET for {path[:100]}", [(b"allow", b"GET, HEAD")])
    if path == "/checkpoint":
        signer = _checkpoint_signer()
        if signer is None:
            raise HTTPError(404, "no signed checkpoint: start the server with --key KEYFILE")
        try:
            body = signer.note(app)
        except RotorError as exc:
            raise HTTPError(503, f"cannot sign a checkpoint: {exc}") from None
        return "checkpoint", body, [(b"content-type", _TEXT), (b"cache-control", b"no-cache")]
    parsed = parse_tile_path(path)
    if parsed is None:
        raise HTTPError(404, "expected /tile/<L>/<N>[.p/<W>] with <N> in tlog-tiles' "
                             "encoding (e.g. x001/x234/067)")
    level, index, width = parsed
    snap = app.tree.snapshot()
    try:
        data = tile_data(snap, level, index, width)
    except IndexOutOfRange as exc:
        raise HTTPError(404, str(exc)) from None
    return "tlog_tile", data, [(b"content-type", _BINARY), (b"cache-control", TILE_CACHE)]


__all__ = ["CheckpointSigner", "handle", "state_path"]
