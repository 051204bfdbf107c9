"""The `rotorshm` command line.

Subcommands: serve (writer daemon), insert (submit leaves to a daemon), proof and
consistency (from a published tree), verify (a proof file against a trusted root),
status (of a published tree), cleanup (what a dead writer left), inspect (offline check
of a tree directory), backup (a consistent copy while the writer runs), http (serve a
published tree over HTTP; needs the http extra), keygen, tiles export and remote
proof|watch (signed checkpoints, static tiles, verifying client; the tiles extra,
rotorshm/tlog_cli.py), demo (multi-process end-to-end run) and bench (the benchmark suite).

Addressing: every TREE argument is a directory or a name. It is a directory if it
contains a '/', is '.' or '..', or names an existing directory; otherwise it is the name
the tree is published under (`serve --name`; 1..64 ASCII letters, digits, '_', '-', '.').
A directory is found under whatever name its writer publishes it (the control blocks in
/dev/shm record their directories). A bare word that is both a directory here and the
name of a tree published from elsewhere is refused as ambiguous: write ./WORD.

Exit codes: 0 success; 1 runtime failure (no writer, I/O error, corruption, FAILED
verification); 2 bad usage or input (arguments, leaf lines, malformed proofs, a path
that is not a tree). Every error is one line on stderr; input is validated before
anything is done. Set ROTORSHM_TRACEBACK=1 to see the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import logging
import math
import os
import re
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import IO, Any, NoReturn

from . import __version__
from . import checkpoint as ckpt
from .address import Target, is_socket, resolve
from .config import (
    MAX_DEPTH,
    CheckpointPolicy,
    FlushPolicy,
    RotorTreeConfig,
    TieringConfig,
    check_tree_name,
    describe_tiering_advice,
    tiering_advice,
)
from .errors import (
    ConfigMismatch,
    IndexOutOfRange,
    InvalidArgument,
    InvalidConfig,
    InvalidLeaf,
    InvalidProof,
    RotorError,
    TreeLocked,
    WriterGone,
)
from .hashing import MAX_ARITY, MIN_ARITY, NODE_SIZE
from .kernel import native_info
from .levels import SHARD_BYTES, shard_name
from .offline import disk_usage, inspect_tree
from .progress import PROGRESS_MIN, PhaseProgress, progress_bar
from .proof import FORMAT_VERSION, ConsistencyProof, InclusionProof
from .tlog_cli import add_commands as add_tlog_commands
from .tlog_cli import emit_proof

LEAF_BATCH = 10_000
EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user (reported with exit code 2)."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    UsageError, InvalidConfig, InvalidArgument, InvalidLeaf, InvalidProof, ConfigMismatch,
)
"""Errors that mean the input was wrong (exit 2); every other error is a failure (exit 1)."""


def error_line(exc: BaseException) -> tuple[str, int]:
    """The one-line message and the exit code of an error escaping a subcommand.

    The single place where the library's errors become exit codes: a user error
    (USER_ERRORS) exits 2, any other RotorError or OSError exits 1, and anything
    unexpected is still one line (an internal error, exit 1), never a traceback.
    """
    if isinstance(exc, USER_ERRORS):
        text, code = str(exc), EXIT_USAGE
    elif isinstance(exc, RotorError):
        text, code = str(exc), EXIT_FAIL
    elif isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        text, code = f"{where}{exc.strerror or exc}", EXIT_FAIL
    else:
        text, code = f"internal error: {type(exc).__name__}: {exc}", EXIT_FAIL
    return " ".join(text.split()) or type(exc).__name__, code


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(EXIT_USAGE, f"{self.prog}: error: {text} (see '{self.prog} --help')\n")


# -- small shared helpers ---------------------------------------------------------------------

def human_bytes(n: int) -> str:
    """`n` bytes in binary units, e.g. 1.5 MiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _hex32(text: str) -> bytes:
    """argparse type: a 32-byte hash as 64 hex digits (optional 0x)."""
    t = text.strip()
    if t[:2] in ("0x", "0X"):
        t = t[2:]
    try:
        raw = bytes.fromhex(t)
    except ValueError:
        raw = b""
    if len(raw) != NODE_SIZE or len(t) != 2 * NODE_SIZE:
        raise argparse.ArgumentTypeError(f"expected 64 hex digits, got {text!r:.80}")
    return raw


def _int_at_least(low: int) -> Callable[[str], int]:
    """argparse type: an integer >= `low`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


def _int_in(low: int, high: int) -> Callable[[str], int]:
    """argparse type: an integer in low..high."""
    at_least = _int_at_least(low)

    def parse(text: str) -> int:
        value = at_least(text)
        if value > high:
            raise argparse.ArgumentTypeError(f"expected an integer in {low}..{high}, got {value}")
        return value

    return parse


def _seconds(text: str) -> float:
    """argparse type: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or value > threading.TIMEOUT_MAX:
        raise argparse.ArgumentTypeError(
            f"expected a finite number of seconds in 0..{threading.TIMEOUT_MAX:.0f}, got {text!r}"
        )
    return value


def _interval_ms(text: str) -> float:
    """argparse type: a flush interval in milliseconds (0 = manual flushing), finite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected milliseconds, got {text!r}") from None
    if not math.isfinite(value) or not 0 <= value / 1000 <= threading.TIMEOUT_MAX:
        raise argparse.ArgumentTypeError(
            f"expected a finite number of milliseconds >= 0 (0: manual), got {text!r}"
        )
    return value


def _name(text: str) -> str:
    """argparse type: a tree name every subcommand can reach."""
    try:
        return check_tree_name(text)
    except InvalidConfig as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _output_file(text: str) -> str:
    """argparse type: a file that can be written (its directory exists; not a directory)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a file name, got an empty string")
    parent = os.path.dirname(text) or "."
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a directory, not a file")
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"{text}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (os.path.exists(text)
                                                     and not os.access(text, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{text}: not writable")
    return text


_count = _int_at_least(1)
_index = _int_at_least(0)
_arity = _int_in(MIN_ARITY, MAX_ARITY)
_depth = _int_in(1, MAX_DEPTH)


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2))


# -- serve ------------------------------------------------------------------------------------

def _checkpoint_policy(text: str) -> CheckpointPolicy:
    """Parse manual | on_close | every:N | memory:BYTES."""
    if text == "manual":
        return CheckpointPolicy.manual()
    if text == "on_close":
        return CheckpointPolicy.on_close()
    kind, _, value = text.partition(":")
    try:
        if kind == "every":
            return CheckpointPolicy.every_n_entries(int(value))
        if kind == "memory":
            return CheckpointPolicy.memory_threshold(int(value))
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"checkpoint policy must be manual, on_close, every:N or memory:BYTES, not {text!r}"
    )


class RecoveryProgress(PhaseProgress):
    """PhaseProgress that also says, one line per phase, what recovery is doing."""

    def __init__(self, directory: str, enabled: bool) -> None:
        super().__init__(enabled)
        self.directory = directory
        self.enabled_lines = enabled

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self._phase and self.enabled_lines:
            what = {"verify": f"verifying the checkpoint ({total:,} nodes)",
                    "replay": f"replaying the WAL ({total:,} leaves)"}.get(phase, phase)
            print(f"rotorshm: recovering {self.directory}: {what}", file=sys.stderr, flush=True)
        super().__call__(phase, done, total)


def _serve_config(args: argparse.Namespace) -> RotorTreeConfig:
    """Validate every serve argument and build the config; touches nothing on disk."""
    directory = args.dir
    if not directory:
        raise UsageError("DIR is empty")
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise UsageError(f"{directory}: exists and is not a directory")
    data_dir = os.path.join(directory, "data")
    header = ckpt.read_header(data_dir) if os.path.isdir(data_dir) else None
    arity, max_depth = args.arity, args.max_depth
    if header is not None:  # an existing tree: its own geometry, unless a flag disagrees
        path = os.path.join(data_dir, ckpt.HEADER_FILE)
        for flag, given, have in (("--arity", arity, header.arity),
                                  ("--max-depth", max_depth, header.max_depth)):
            if given is not None and given != have:
                raise ConfigMismatch(f"{path}: the tree has {flag[2:].replace('-', '_')} {have}, "
                                     f"{flag} asks for {given} (omit {flag} to use the tree's)")
        arity, max_depth = header.arity, header.max_depth
    flush = (FlushPolicy.manual() if args.flush_interval_ms == 0
             else FlushPolicy.interval(args.flush_interval_ms / 1000))
    return RotorTreeConfig(
        directory, arity=arity if arity is not None else 4,
        max_depth=max_depth if max_depth is not None else 20, flush_policy=flush,
        checkpoint_policy=args.checkpoint,
        tiering=TieringConfig(args.pin_above_level if args.pin_above_level is not None
                              else 1 << 30),
        verify_checkpoint=not args.no_verify, name=args.name,
        progress=RecoveryProgress(directory, not args.quiet),
        hash_threads=args.hash_threads,
    )


class _StderrLog(logging.Handler):
    """The library's log records (e.g. a torn WAL tail dropped) as rotorshm: lines."""

    def emit(self, record: logging.LogRecord) -> None:
        level = "error" if record.levelno >= logging.ERROR else "warning"
        print(f"rotorshm: {level}: {record.getMessage()}", file=sys.stderr, flush=True)


def _cmd_serve(args: argparse.Namespace) -> int:
    from .writer import WriterDaemon

    config = _serve_config(args)
    daemon = WriterDaemon(config, name=args.name, socket_path=args.socket)  # validates both
    log = logging.getLogger("rotorshm")
    handler = _StderrLog()
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    progress = config.progress
    try:
        t0 = time.monotonic()
        try:
            daemon.start()
        finally:
            if isinstance(progress, PhaseProgress):
                progress.close()

        def ready(d: WriterDaemon) -> None:
            tree = d.tree
            assert tree is not None
            print(f"rotorshm: serving {args.dir} as {d.name!r} on {d.socket_path} "
                  f"(size {tree.core.size}, arity {tree.arity}, max_depth "
                  f"{tree.core.max_depth}, pid {os.getpid()}, ready in "
                  f"{time.monotonic() - t0:.1f} s); stop with SIGTERM or Ctrl-C",
                  file=sys.stderr, flush=True)

        daemon.serve_forever(ready)
        tree = daemon.tree
        assert tree is not None
        if daemon.failure is not None:
            raise RotorError(f"the writer stopped: its WAL flusher failed: {daemon.failure}")
        print(f"rotorshm: shut down {args.dir} cleanly: size {tree.core.size}, durable seq "
              f"{tree.durable_seq}, shared memory removed", file=sys.stderr, flush=True)
    finally:
        log.removeHandler(handler)
    return EXIT_OK


# -- insert -----------------------------------------------------------------------------------

_HEX_LINE = re.compile(rb"(?:0[xX])?([0-9a-fA-F]{64})")
_BOM = b"\xef\xbb\xbf"


def read_leaf_lines(stream: IO[bytes], source: str) -> bytes:
    """Every leaf of `stream` (one 64-hex-digit line each, blank lines ignored), concatenated.

    The whole input is validated before anything is returned; a bad line raises
    UsageError naming `source` and the line number.
    """
    out = bytearray()
    fullmatch = _HEX_LINE.fullmatch
    for lineno, raw in enumerate(stream, 1):
        if lineno == 1 and raw.startswith(_BOM):  # a UTF-8 byte order mark, as editors write
            raw = raw[len(_BOM):]
        line = raw.strip()
        if not line:
            continue
        m = fullmatch(line)
        if m is None:
            shown = line[:80].decode("utf-8", errors="replace")
            raise UsageError(
                f"{source}, line {lineno}: expected a leaf as 64 hex digits, got {shown!r}"
                + (f" ({len(line)} characters)" if len(line) != 2 * NODE_SIZE else "")
            )
        out += bytes.fromhex(m.group(1).decode("ascii"))
    return bytes(out)


def _insert_socket(arg: str) -> str:
    """The socket an insert TARGET designates: a socket file, or a tree's writer socket."""
    if is_socket(arg):
        return arg
    target = resolve(arg)
    if target.socket is None:
        raise WriterGone(f"no writer publishes a tree named {target.name!r}")
    return target.socket


def _cmd_insert(args: argparse.Namespace) -> int:
    from .client import connect

    if args.file is None or args.file == "-":
        if sys.stdin.isatty() and not args.quiet:
            print("rotorshm: reading leaves from the terminal: one leaf (64 hex digits) per "
                  "line; end with Ctrl-D", file=sys.stderr, flush=True)
        data = read_leaf_lines(sys.stdin.buffer, "stdin")
    else:
        try:
            with open(args.file, "rb") as f:
                data = read_leaf_lines(f, args.file)
        except OSError as exc:
            raise UsageError(f"{args.file}: {exc.strerror}") from None
    total = len(data) // NODE_SIZE
    step = args.batch * NODE_SIZE
    done = batches = 0
    seq = size = 0
    root: bytes | None = None
    error: RotorError | None = None
    durable: bool | None = None
    with connect(_insert_socket(args.target)) as client:
        if total == 0:  # a no-op, as LeanIMT.insert_many([]): report the tree as it is
            seq, size, root = client.insert_many(b"")
        bar = progress_bar(total, "insert", not args.quiet and total >= PROGRESS_MIN)
        try:
            for off in range(0, len(data), step):
                chunk = data[off : off + step]
                try:
                    seq, size, root = client.insert_many(chunk)
                except RotorError as exc:
                    error = exc
                    break
                n = len(chunk) // NODE_SIZE
                done += n
                batches += 1
                bar.update(n)
        finally:
            bar.close()
        known = done > 0 or total == 0  # seq, size and root describe the tree now
        if args.durable and known:
            # Whatever was committed is made durable when asked, even if a later batch failed.
            try:
                durable = client.wait_durable(seq, args.timeout)
            except RotorError as exc:
                durable = False
                error = error or exc
    result: dict[str, Any] = {"inserted": done, "batches": batches,
                              "seq": seq if known else None, "size": size if known else None,
                              "root": root.hex() if known and root is not None else None,
                              "durable": durable}
    message = None
    if error is not None:
        message = (f"{error}; {done} of {total} leaves were committed before (seq {seq}, size "
                   f"{size}{', durable' if durable else ''})" if done
                   else f"{error}; nothing was inserted")
        result["error"] = message
    elif durable is False:
        message = f"seq {seq} did not become durable within {args.timeout:g} s (or writer gone)"
        result["error"] = message
    if args.json:
        _print_json(result)
    elif known:
        print(f"inserted: {done} leaves in {batches} batch{'es' if batches != 1 else ''}"
              + (f" (of {total})" if done != total else ""))
        print(f"seq: {seq}")
        print(f"size: {size}")
        print(f"root: {root.hex() if root is not None else 'none (empty tree)'}")
        if durable is not None:
            print(f"durable: {'yes' if durable else 'no'}")
    if message is not None:
        print(f"rotorshm: error: {' '.join(message.split())}", file=sys.stderr)
        return EXIT_USAGE if isinstance(error, USER_ERRORS) and not done else EXIT_FAIL
    return EXIT_OK


# -- proof, consistency -----------------------------------------------------------------------

def _warn_if_gone(alive: bool, name: str) -> None:
    if not alive:
        print(f"rotorshm: warning: the writer of {name!r} is not alive; proving against its "
              "last publication", file=sys.stderr)


def _attach(arg: str) -> Any:
    """A Reader of the tree a TREE argument designates (WriterGone explains a miss)."""
    from .reader import attach

    target = resolve(arg)
    name = target.require_name()
    try:
        return attach(name)
    except WriterGone:
        if target.by_directory:
            raise
        raise WriterGone(f"no writer publishes a tree named {name!r} (no control block "
                         f"/dev/shm/rotorshm.{name}.ctl; a tree directory must exist or "
                         f"contain a '/')") from None


def _cmd_proof(args: argparse.Namespace) -> int:
    with _attach(args.name) as reader:
        snap = reader.snapshot()
        proof = snap.generate_proof(args.index, args.size)
        _warn_if_gone(reader.writer_alive, reader.name)
    emit_proof(args, proof.to_bytes(), proof.to_json())
    return EXIT_OK


def _cmd_consistency(args: argparse.Namespace) -> int:
    if args.size is not None and args.size < args.old_size:
        raise UsageError(f"--size {args.size} is smaller than OLD_SIZE {args.old_size}")
    with _attach(args.name) as reader:
        snap = reader.snapshot()
        if snap.size == 0:
            raise IndexOutOfRange("the published tree is empty")
        proof = snap.generate_consistency_proof(args.old_size, args.size)
        _warn_if_gone(reader.writer_alive, reader.name)
    emit_proof(args, proof.to_bytes(), proof.to_json())
    return EXIT_OK


# -- verify -----------------------------------------------------------------------------------

_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_SPACE = b" \t\r\n"


def load_proof(data: bytes) -> InclusionProof | ConsistencyProof:
    """Decode a proof file: JSON, hex text or binary, inclusion or consistency (detected).

    The encoding is detected first (a UTF-8 byte order mark is skipped; hex may start
    with 0x), and what is wrong is said in that encoding's terms. Raises InvalidProof.
    """
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    text = data.strip(_SPACE)
    if not text:
        raise InvalidProof("the proof file is empty")
    if text[:1] in (b"{", b"["):
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise InvalidProof(f"JSON proof: not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            got = "an array" if isinstance(obj, list) else type(obj).__name__
            raise InvalidProof('JSON proof: expected an object with "type": "inclusion" or '
                               f'"consistency", got {got}')
        kind = obj.get("type")
        try:
            if kind == "consistency":
                return ConsistencyProof.from_json(text)
            if kind == "inclusion":
                return InclusionProof.from_json(text)
        except InvalidProof as exc:
            raise InvalidProof(f"JSON {kind} proof: {exc}") from None
        raise InvalidProof('JSON proof: "type" must be "inclusion" or "consistency", got '
                           + ("nothing (missing field)" if "type" not in obj else f"{kind!r:.40}"))
    digits = text[2:] if text[:2] in (b"0x", b"0X") else text
    digits = bytes(b for b in digits if b not in _SPACE)
    if digits and _HEX_DIGITS.issuperset(digits):
        if len(digits) % 2:
            raise InvalidProof(f"hex proof: odd number of hex digits ({len(digits)})")
        return _binary_proof(bytes.fromhex(digits.decode("ascii")), "hex proof")
    if all(32 <= b < 127 or b in _SPACE for b in text):
        bad = next(b for b in digits if b not in _HEX_DIGITS)
        raise InvalidProof(f"text that is neither JSON nor hex (character {chr(bad)!r} at "
                           f"offset {digits.index(bad)}); expected JSON, hex or binary")
    return _binary_proof(data, "binary proof")


def _binary_proof(raw: bytes, what: str) -> InclusionProof | ConsistencyProof:
    """Decode the binary form (given raw or as hex), naming `what` in messages."""
    if raw[0] != FORMAT_VERSION:
        raise InvalidProof(f"{what}: first byte {raw[0]} is not a known format version "
                           f"(expected {FORMAT_VERSION})")
    if len(raw) < 2 or raw[1] not in (ord("I"), ord("C")):
        raise InvalidProof(f"{what}: kind byte must be 'I' (inclusion) or 'C' (consistency)")
    try:
        if raw[1] == ord("C"):
            return ConsistencyProof.from_bytes(raw)
        return InclusionProof.from_bytes(raw)
    except InvalidProof as exc:
        raise InvalidProof(f"{what}: {exc}") from None


def _cmd_verify(args: argparse.Namespace) -> int:
    try:
        if args.proof_file == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(args.proof_file, "rb") as f:
                data = f.read()
    except OSError as exc:
        raise UsageError(f"{args.proof_file}: {exc.strerror}") from None
    try:
        proof = load_proof(data)
    except InvalidProof as exc:
        raise UsageError(f"malformed proof: {exc}") from None
    reason = ""
    if isinstance(proof, InclusionProof):
        ok = proof.verify_against(args.root, args.size)
        what = f"leaf {proof.leaf_index} in a tree of {proof.tree_size} leaves"
        if not ok:
            if args.size is not None and args.size != proof.tree_size:
                reason = f"the proof is for a tree of {proof.tree_size} leaves, not {args.size}"
            elif proof.root != args.root:
                reason = f"the proof's root {proof.root.hex()} is not the trusted root"
            else:
                reason = "the path does not recompute the root (tampered or inconsistent proof)"
    else:
        if args.old_root is None:
            raise UsageError("a consistency proof needs --old-root (and --root for the new tree)")
        ok = proof.verify_against(args.old_root, args.root, args.old_size, args.size)
        what = f"tree of {proof.old_size} leaves is a prefix of the one of {proof.new_size}"
        if not ok:
            if args.size is not None and args.size != proof.new_size:
                reason = f"the proof's new size is {proof.new_size}, not {args.size}"
            elif args.old_size is not None and args.old_size != proof.old_size:
                reason = f"the proof's old size is {proof.old_size}, not {args.old_size}"
            elif (proof.old_root, proof.new_root) != (args.old_root, args.root):
                reason = "the proof's roots are not the trusted roots"
            else:
                reason = "the proof does not recompute its roots (tampered or inconsistent)"
    if ok:
        print("OK")
        if not args.quiet:
            print(f"rotorshm: verified: {what}", file=sys.stderr)
        return EXIT_OK
    print("FAILED")
    if not args.quiet:
        print(f"rotorshm: {reason}", file=sys.stderr)
    return EXIT_FAIL


# -- status -----------------------------------------------------------------------------------

def _stat_entry(path: str) -> dict[str, Any] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"path": path, "size": st.st_size, "allocated": st.st_blocks * 512}


def tree_status(name: str) -> dict[str, Any]:
    """Everything `status` reports about the tree published under `name`, JSON-ready."""
    from .segments import SEGMENT_PREFIX, SHM_DIR
    from .shm import (
        OFF_HEARTBEAT,
        STATE_LIVE,
        STATE_STARTING,
        STATE_STOPPED,
        ControlBlock,
        control_name,
        pid_alive,
    )
    from .store import DATA_DIR

    ctl = ControlBlock.attach(name)
    try:
        state = None
        for _ in range(200):
            state = ctl.read_state()
            if state is not None or not ctl.writer_alive():
                break
            time.sleep(0.005)
        heartbeat_ns = ctl.words.load_u64(OFF_HEARTBEAT)
        info: dict[str, Any] = {
            "name": name,
            "directory": ctl.directory,
            "arity": ctl.arity,
            "max_depth": ctl.max_depth,
            "epoch": f"{ctl.epoch:016x}",
            "writer_pid": ctl.pid,
            "writer_alive": ctl.writer_alive(),
            "writer_state": {STATE_STARTING: "starting", STATE_LIVE: "live",
                             STATE_STOPPED: "stopped"}.get(ctl.state, f"?{ctl.state}"),
            "heartbeat_age_ms": round((time.monotonic_ns() - heartbeat_ns) / 1e6, 1),
            "durable_seq": ctl.durable_seq,
            "socket": ctl.socket_path or None,
            "recovery_note": ctl.note or None,
        }
        pid_exists = pid_alive(ctl.pid)
        info["writer"] = ("alive" if info["writer_alive"] else
                          "stopped" if ctl.state == STATE_STOPPED else
                          "starting" if ctl.state == STATE_STARTING and ctl.owner_alive() else
                          "hung" if pid_exists else "dead")
        pin = ctl.pin_above_level
        prefix = ctl.segment_prefix
        directory = ctl.directory
    finally:
        ctl.close()
    if state is None:
        info.update(size=None, root=None, depth=None, published_seq=None, lengths=None,
                    error="no consistent publication could be read (writer mid-write or dead)")
        lengths: tuple[int, ...] = ()
    else:
        lengths = state.lengths
        info.update(size=state.size, root=state.frontier[-1].hex() if state.frontier else None,
                    depth=max(len(lengths) - 1, 0), published_seq=state.seq,
                    lengths=list(lengths))
    info["pin_above_level"] = pin if pin < 2**32 - 1 and pin < 1 << 30 else None
    # Shared-memory entries: the control block, this epoch's segments, stale ones.
    ctl_entry = control_name(name).lstrip("/")
    seg_head = prefix.lstrip("/")
    any_epoch = re.compile(re.escape(f"{SEGMENT_PREFIX}{name}.") + r"[0-9a-f]{16}\.L\d+\.S\d+")
    try:
        entries = sorted(os.listdir(SHM_DIR))
    except OSError:
        entries = []
    shm: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []
    for e in entries:
        if e == ctl_entry or e.startswith(seg_head):
            st = _stat_entry(os.path.join(SHM_DIR, e))
            if st is not None:
                shm.append(st)
        elif any_epoch.fullmatch(e):
            st = _stat_entry(os.path.join(SHM_DIR, e))
            if st is not None:
                stale.append(st)
    info["shm_segments"] = shm
    info["shm_bytes"] = sum(s["allocated"] for s in shm)
    info["stale_segments"] = stale
    levels = []
    for lvl, length in enumerate(lengths):
        tier = "shm" if lvl >= pin else "file"
        entry: dict[str, Any] = {"level": lvl, "nodes": length, "tier": tier}
        if tier == "file":
            d = ckpt.level_dir(os.path.join(directory, DATA_DIR), lvl)
            shards = [s for s in (_stat_entry(os.path.join(d, shard_name(i)))
                                  for i in range(-(-length * NODE_SIZE // SHARD_BYTES)))
                      if s is not None]
            entry["shards"] = len(shards)
            entry["allocated"] = sum(s["allocated"] for s in shards)
        else:
            head = f"{seg_head}L{lvl}.S"
            mine = [s for s in shm if os.path.basename(s["path"]).startswith(head)]
            entry["segments"] = len(mine)
            entry["allocated"] = sum(s["allocated"] for s in mine)
        levels.append(entry)
    info["levels"] = levels
    apparent, real = disk_usage(directory) if os.path.isdir(directory) else (0, 0)
    info["disk"] = {"apparent_bytes": apparent, "real_bytes": real}
    sock = info["socket"]
    info["socket_exists"] = bool(sock) and is_socket(sock)
    if info["writer"] in ("dead", "hung"):
        left = [s["path"] for s in shm + stale]
        if info["socket_exists"]:
            left.append(sock)
        info["left_behind"] = left
    info["tiering_advice"] = tiering_advice(info["size"] or 0, info["arity"],
                                            info["pin_above_level"])
    # The hashing kernel this machine selects (the daemon picks the same one unless its
    # ROTORSHM_KERNEL differs from this process's).
    info["kernel"] = dict(native_info())
    return info


def _tier_summary(info: dict[str, Any]) -> str:
    levels = info["levels"]
    pin = info["pin_above_level"]
    if not levels:
        return f"pin_above_level {pin if pin is not None else 'none'} (empty tree)"
    files = [e["level"] for e in levels if e["tier"] == "file"]
    shm = [e["level"] for e in levels if e["tier"] == "shm"]

    def span(ls: list[int]) -> str:
        return f"level {ls[0]}" if len(ls) == 1 else f"levels {ls[0]}-{ls[-1]}"

    parts = []
    if files:
        parts.append(f"{span(files)} in shard files")
    if shm:
        parts.append(f"{span(shm)} in shared memory")
    return f"pin_above_level {pin if pin is not None else 'none'}: " + ", ".join(parts)


def _disk_row(disk: dict[str, int]) -> str:
    """Real and apparent size of a tree directory (shard files are sparse)."""
    return (f"real {human_bytes(disk['real_bytes'])}, apparent "
            f"{human_bytes(disk['apparent_bytes'])} (shard files are sparse)")


def _writer_row(info: dict[str, Any]) -> str:
    pid, writer = info["writer_pid"], info["writer"]
    beat = f"heartbeat {info['heartbeat_age_ms'] / 1000:.1f} s ago"
    if writer == "alive":
        return f"alive, pid {pid}, heartbeat {info['heartbeat_age_ms']:.0f} ms ago"
    if writer == "dead":
        return (f"DEAD: pid {pid} is gone (killed or crashed) without cleaning up; the state "
                f"below is its last publication")
    if writer == "hung":
        return f"NOT RESPONDING: pid {pid} exists but its {beat} (stopped or hung?)"
    if writer == "starting":
        return f"starting (pid {pid}): recovering, not serving yet"
    return f"stopped cleanly (pid {pid})"


def _cmd_status(args: argparse.Namespace) -> int:
    name = resolve(args.name).require_name()
    info = tree_status(name)
    if args.json:
        _print_json(info)
        return EXIT_OK
    rows = [
        ("tree", info["name"]),
        ("directory", info["directory"]),
        ("writer", _writer_row(info)),
        ("socket", (info["socket"] or "-") + ("" if info["socket_exists"] else " (absent)")),
        ("epoch", info["epoch"]),
        ("arity", f"{info['arity']} (max_depth {info['max_depth']})"),
        ("size", str(info["size"])),
        ("depth", str(info["depth"])),
        ("root", info["root"] or "-"),
        ("published seq", str(info["published_seq"])),
        ("durable seq", str(info["durable_seq"])),
        ("tiers", _tier_summary(info)),
        ("disk", _disk_row(info["disk"])),
        ("tiering advice", describe_tiering_advice(info["tiering_advice"])),
        ("kernel", f"{info['kernel']['kernel']} ({info['kernel']['lanes']} lanes; available "
                   f"{', '.join(info['kernel']['available'])})"),
    ]
    if info["recovery_note"]:
        rows.append(("recovery", info["recovery_note"]))
    for e in info["levels"]:
        where = (f"{e['shards']} shard file(s)" if e["tier"] == "file"
                 else f"{e['segments']} segment(s)")
        rows.append((f"  level {e['level']}", f"{e['nodes']} nodes, {e['tier']}, {where}, "
                     f"{human_bytes(e['allocated'])} allocated"))
    rows.append(("/dev/shm", f"{len(info['shm_segments'])} entries, "
                             f"{human_bytes(info['shm_bytes'])} allocated"))
    for s in info["shm_segments"]:
        rows.append(("", f"{os.path.basename(s['path'])}: size {human_bytes(s['size'])}, "
                         f"allocated {human_bytes(s['allocated'])}"))
    if info["stale_segments"]:
        rows.append(("stale", ", ".join(os.path.basename(s["path"])
                                        for s in info["stale_segments"])))
    if "left_behind" in info:
        n_shm = len(info["shm_segments"]) + len(info["stale_segments"])
        rows.append(("left behind", f"{n_shm} /dev/shm entr{'y' if n_shm == 1 else 'ies'} "
                     f"(control block and segments)"
                     + (f" and the socket {info['socket']}" if info["socket_exists"] else "")
                     + f": `rotorshm cleanup {name}` removes them (refused while a writer "
                       f"lives); `rotorshm serve {info['directory']}` restarts the tree"))
    if "error" in info:
        rows.append(("error", info["error"]))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return EXIT_OK


# -- cleanup ----------------------------------------------------------------------------------

def cleanup_tree(target: Target) -> dict[str, Any]:
    """Remove what a dead writer left: its control block, segments and socket file.

    Refuses (TreeLocked) while a writer lives: the directory's wal.lock is held, or the
    control block's writer is alive (or its pid still exists: a hung writer).
    """
    import socket as socketlib

    from .offline import lock_holder
    from .protocol import reachable_path
    from .segments import tree_segments, unlink_segment
    from .shm import STATE_STOPPED, ControlBlock, pid_alive
    from .store import LOCK_FILE, default_name

    name = target.name
    directory = target.directory
    if name is None:
        assert directory is not None
        name = default_name(directory)
    try:
        block: Any = ControlBlock.attach(name)
    except WriterGone:
        block = None
    if block is not None:
        try:
            directory = directory or block.directory
            pid = block.pid
            if block.owner_alive() or (block.state != STATE_STOPPED and pid_alive(pid)):
                raise TreeLocked(f"refusing to clean up {name!r}: its writer (pid {pid}) is "
                                 f"still running; stop it with SIGTERM, which cleans up itself")
        finally:
            block.close()
    entries = tree_segments(name)
    if directory is None and entries:
        raise TreeLocked(f"refusing to clean up {name!r}: it has /dev/shm entries but no "
                         f"control block naming its directory, so a writer may be starting; "
                         f"pass the tree directory instead")
    if directory is not None:
        holder = lock_holder(os.path.join(directory, LOCK_FILE))
        if holder is not None:
            raise TreeLocked(f"refusing to clean up {name!r}: pid {holder} holds "
                             f"{os.path.join(directory, LOCK_FILE)} (a writer is running or "
                             f"starting there)")
    removed: list[str] = []
    # Level segments first, the control block last: a reader never sees a block whose
    # segments are half gone and then a new one.
    for entry in sorted(entries, key=lambda e: e.endswith(".ctl")):
        if unlink_segment("/" + entry):
            removed.append(f"/dev/shm/{entry}")
    sock = target.socket
    if sock and is_socket(sock):
        probe = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
        probe.settimeout(2.0)
        try:
            with reachable_path(sock) as address:
                probe.connect(address)
            listening = True
        except OSError:
            listening = False
        finally:
            probe.close()
        if not listening:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sock)
                removed.append(sock)
    return {"name": name, "directory": directory, "removed": removed}


def _cmd_cleanup(args: argparse.Namespace) -> int:
    report = cleanup_tree(resolve(args.tree))
    if args.json:
        _print_json(report)
        return EXIT_OK
    if report["removed"]:
        print(f"removed {len(report['removed'])} leftover(s) of {report['name']!r}:")
        for path in report["removed"]:
            print(f"  {path}")
    else:
        print(f"nothing to clean up for {report['name']!r}")
    return EXIT_OK


# -- inspect ----------------------------------------------------------------------------------

def _short(h: str | None) -> str:
    return "-" if h is None else h


_PROBLEM_TITLE = {"not_a_tree": "NOT A TREE", "unreadable": "UNREADABLE", "corrupt": "CORRUPT"}


def _inspect_dir(arg: str) -> str:
    """The directory an inspect TREE argument designates (a name: its control block's)."""
    target = resolve(arg)
    if target.directory is None:
        raise UsageError(f"{arg}: no such directory, and no control block names a tree "
                         f"{arg!r} (a tree directory must exist or contain a '/')")
    return target.directory


def _cmd_inspect(args: argparse.Namespace) -> int:
    directory = _inspect_dir(args.dir)
    progress = PhaseProgress(not args.quiet)
    try:
        report = inspect_tree(directory, progress)
    finally:
        progress.close()
    if "header" in report:  # the size a reopen reaches: the replayed one, else the checkpoint's
        sized = report.get("replay") or report.get("checkpoint") or {"size": 0}
        report["tiering_advice"] = tiering_advice(sized["size"] or 0, report["header"]["arity"],
                                                  None)
    if args.json:
        _print_json(report)
    else:
        rows: list[tuple[str, str]] = [("directory", report["directory"])]
        w = report["writer"]
        rows.append(("writer", f"running (pid {w['pid']}): read-only inspection of a live tree"
                     if w["running"] else "none (offline)"))
        if "header" in report:
            h = report["header"]
            rows.append(("header", f"arity {h['arity']}, max_depth {h['max_depth']}, "
                                   f"format version {h['version']}"))
        if "disk" in report:
            rows.append(("disk", _disk_row(report["disk"])))
        if "checkpoint" in report:
            c = report["checkpoint"]
            rows.append(("checkpoint", "none" if c is None else
                         f"seq {c['seq']}, size {c['size']}, depth {c['depth']}, "
                         f"root {_short(c['root'])}"))
        if "wal" in report:
            x = report["wal"]
            seqs = (f"seq {x['first_seq']}..{x['last_seq']}" if x["records"] else "empty")
            rows.append(("wal", f"{x['records']} records ({seqs}), {x['leaves']} leaves after "
                                f"the checkpoint, {x['stale_records']} already checkpointed, "
                                f"{x['bytes']} bytes, torn tail {x['torn_bytes']} bytes"))
        if "verify" in report:
            v = report["verify"]
            rows.append(("verify", v["result"] if v["levels"] == 0 else
                         f"chunk CRCs and {v['levels']} levels ({v['nodes']} nodes) recomputed:"
                         f" root matches the checkpoint"))
        if "replay" in report:
            r = report["replay"]
            rows.append(("replayed", f"seq {r['seq']}, size {r['size']}, depth {r['depth']}, "
                                     f"root {_short(r['root'])}"))
        if "tiering_advice" in report:
            rows.append(("tiering advice", describe_tiering_advice(report["tiering_advice"])))
        if report["attempts"] > 1:
            rows.append(("attempts", f"{report['attempts']} (a checkpoint ran meanwhile)"))
        for warning in report.get("warnings", []):
            rows.append(("warning", warning))
        if report["ok"]:
            n = len(report.get("warnings", []))
            result = "OK" + (f" (with {n} warning{'s' if n > 1 else ''})" if n else "")
        else:
            result = f"{_PROBLEM_TITLE.get(report.get('problem') or '', 'FAILED')}: " \
                     f"{report['error']}"
        rows.append(("result", result))
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            print(f"{k:<{width}}  {v}")
    if not report["ok"]:
        print(f"rotorshm: error: {' '.join(str(report['error']).split())}", file=sys.stderr)
        return EXIT_USAGE if report.get("problem") == "not_a_tree" else EXIT_FAIL
    for warning in report.get("warnings", []):
        print(f"rotorshm: warning: {warning}", file=sys.stderr)
    return EXIT_OK


# -- backup -----------------------------------------------------------------------------------

def _live_durable_seq(target: Target, directory: str) -> Callable[[], int | None]:
    """The durable sequence of the live writer publishing `directory`, read when called;
    None when no live writer publishes it (then the copy takes every valid WAL record)."""
    from .shm import ControlBlock

    def read() -> int | None:
        if target.name is None:
            return None
        try:
            block = ControlBlock.attach(target.name)
        except WriterGone:
            return None
        try:
            if (os.path.realpath(block.directory) != os.path.realpath(directory)
                    or not block.writer_alive()):
                return None
            return int(block.durable_seq)
        finally:
            block.close()

    return read


def _cmd_backup(args: argparse.Namespace) -> int:
    from .backup import backup_tree, check_destination

    target = resolve(args.tree)
    if target.directory is None:
        raise UsageError(f"{args.tree}: no such directory, and no control block names a tree "
                         f"{args.tree!r} (a tree directory must exist or contain a '/')")
    directory = target.directory
    check_destination(args.out, directory)  # before anything is done
    result = backup_tree(directory, args.out, _live_durable_seq(target, directory),
                         progress=not args.quiet, verify=args.verify)
    if args.json:
        _print_json(result.to_json())
        return EXIT_OK
    rows = [
        ("source", result.source),
        ("backup", result.path),
        ("size", f"{result.size} leaves ({result.checkpoint_size} in the checkpoint, "
                 f"{result.wal_records} WAL record(s) to replay), up to seq {result.seq}"),
        ("durable seq", "no live writer: every valid WAL record" if result.durable_seq is None
         else f"{result.durable_seq} (the writer's, when the copy began)"),
        ("copied", f"{human_bytes(result.bytes_copied)} in {result.seconds:.2f} s"),
        ("disk", f"real {human_bytes(result.real_bytes)}, apparent "
                 f"{human_bytes(result.apparent_bytes)} (source: real "
                 f"{human_bytes(result.source_real_bytes)}, apparent "
                 f"{human_bytes(result.source_apparent_bytes)})"),
    ]
    if result.root is not None:
        rows.append(("verified", f"root {result.root}"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return EXIT_OK


# -- http -------------------------------------------------------------------------------------

def _cmd_http(args: argparse.Namespace) -> int:
    try:
        from .http import serve
        from .http.server import parse_listen
    except ImportError as exc:
        raise UsageError(f"the HTTP server needs the http extra: pip install 'rotorshm[http]' "
                         f"({exc})") from None
    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        serve(resolve(args.name).require_name(), host=host, port=port, workers=args.workers,
              token_file=args.token_file, max_body=args.max_body, server=args.server,
              key_file=args.key, checkpoint_interval=args.checkpoint_interval)
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    except KeyboardInterrupt:
        pass
    return EXIT_OK


# -- demo, bench ------------------------------------------------------------------------------

def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, format_summary, run_demo

    config = DemoConfig(
        leaves=args.leaves, readers=args.readers, batch=args.batch, arity=args.arity,
        keep=args.keep, pin_above_level=args.pin_above_level, seed=args.seed,
        progress=not args.quiet, http=args.http,
    )
    result = run_demo(config)
    print(format_summary(result))
    return EXIT_OK if result.ok else EXIT_FAIL


def run_bench(argv: Sequence[str]) -> int:
    """Run the benchmark suite (``python -m bench ARGV...``) in a child process.

    The suite ships inside the package as ``rotorshm.bench`` (the source tree's bench/), so
    it runs from any folder; the child imports this very rotorshm (rotorshm.spawn).
    """
    from .spawn import python_argv

    try:
        package = importlib.import_module("rotorshm.bench")
    except ImportError as exc:
        print(f"rotorshm: error: the benchmark suite is not installed with this rotorshm "
              f"({exc}); reinstall with `pip install .` from the source tree",
              file=sys.stderr)
        return EXIT_USAGE
    return subprocess.call(python_argv(package.__name__, *argv, pin=(package,)))


# -- parser -----------------------------------------------------------------------------------

TREE_HELP = ("the tree: a directory (contains a '/', is '.' or '..', or exists) or the name "
             "it is published under")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(prog="rotorshm", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"rotorshm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the writer daemon of a tree directory",
                       description="Run the writer daemon of a tree directory (created if "
                       "needed) until SIGTERM or Ctrl-C.")
    p.add_argument("dir", metavar="DIR",
                   help="the tree directory (created if needed; an existing tree keeps its "
                        "arity and max depth)")
    p.add_argument("--name", type=_name,
                   help="name readers attach to: 1..64 ASCII letters, digits, '_', '-', '.' "
                        "(default: derived from DIR's real path)")
    p.add_argument("--socket", metavar="PATH",
                   help="socket path; its directory must exist or be DIR (default: "
                        "DIR/writer.sock)")
    p.add_argument("--arity", type=_arity, default=None,
                   help=f"children per node, {MIN_ARITY}..{MAX_ARITY} (new tree: default 4; "
                        "existing tree: read from it)")
    p.add_argument("--max-depth", type=_depth, default=None,
                   help=f"deepest tree allowed, 1..{MAX_DEPTH}; capacity is arity**max_depth "
                        "leaves (new tree: default 20; existing tree: read from it)")
    p.add_argument("--flush-interval-ms", type=_interval_ms, default=10.0, metavar="MS",
                   help="group-commit interval in milliseconds (default 10); 0 = fsync only "
                        "when a client waits for durability, and at shutdown")
    p.add_argument("--checkpoint", type=_checkpoint_policy, default=CheckpointPolicy.on_close(),
                   help="manual | on_close (default) | every:N | memory:BYTES")
    p.add_argument("--pin-above-level", type=_index, default=None, metavar="LEVEL",
                   help="levels at or above this live in shared memory (default: none)")
    p.add_argument("--hash-threads", type=int, default=1,
                   help="threads hashing each level of a large batch (default 1)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip recomputing the root when opening from a checkpoint")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no recovery progress (the ready and shut-down lines stay)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("insert", help="submit leaves (64 hex digits per line) to a writer daemon")
    p.add_argument("target", metavar="TREE",
                   help=TREE_HELP + "; or the daemon's socket file")
    p.add_argument("file", metavar="FILE", nargs="?",
                   help="file of leaves, one per line (default or '-': stdin)")
    p.add_argument("--batch", type=_count, default=LEAF_BATCH,
                   help=f"leaves per request (default {LEAF_BATCH})")
    p.add_argument("--durable", action="store_true",
                   help="wait until what was committed is durable (fsynced)")
    p.add_argument("--timeout", type=_seconds, default=60.0,
                   help="seconds to wait for durability (default 60)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or prompt")
    p.set_defaults(func=_cmd_insert)

    p = sub.add_parser("proof", help="print the inclusion proof of a leaf of a published tree")
    p.add_argument("name", metavar="TREE", help=TREE_HELP)
    p.add_argument("index", metavar="INDEX", type=_index,
                   help="index of the leaf (0-based, in insertion order)")
    p.add_argument("--size", type=_count, help="prove against the tree as it was at N leaves")
    p.add_argument("--json", action="store_true", help="JSON instead of hex of the binary form")
    p.add_argument("-o", "--output", metavar="FILE", type=_output_file,
                   help="write to FILE (raw binary, or JSON with --json) instead of stdout")
    p.set_defaults(func=_cmd_proof)

    p = sub.add_parser("consistency", help="print a consistency proof of a published tree")
    p.add_argument("name", metavar="TREE", help=TREE_HELP)
    p.add_argument("old_size", metavar="OLD_SIZE", type=_count,
                   help="size of the older tree, which the proof shows is a prefix")
    p.add_argument("--size", type=_count, help="new size (default: the current size)")
    p.add_argument("--json", action="store_true", help="JSON instead of hex of the binary form")
    p.add_argument("-o", "--output", metavar="FILE", type=_output_file,
                   help="write to FILE (raw binary, or JSON with --json) instead of stdout")
    p.set_defaults(func=_cmd_consistency)

    p = sub.add_parser("verify", help="verify a proof file (binary, hex or JSON) against a root")
    p.add_argument("proof_file", metavar="PROOF_FILE",
                   help="proof file: binary, hex (optional 0x) or JSON ('-': stdin)")
    p.add_argument("--root", type=_hex32, required=True,
                   help="trusted root, 64 hex digits (for a consistency proof: the new root)")
    p.add_argument("--size", type=_count, help="trusted tree size (consistency: the new size)")
    p.add_argument("--old-root", type=_hex32, help="consistency proofs: trusted old root")
    p.add_argument("--old-size", type=_count, help="consistency proofs: trusted old size")
    p.add_argument("-q", "--quiet", action="store_true", help="no explanation on stderr")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("status", help="state of a published tree and of its shared memory")
    p.add_argument("name", metavar="TREE", help=TREE_HELP)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("cleanup", help="remove what a dead writer left (/dev/shm, socket)",
                       description="Remove the control block, segments and socket file a "
                       "killed writer left behind. Refused while a writer lives.")
    p.add_argument("tree", metavar="TREE", help=TREE_HELP)
    p.add_argument("--json", action="store_true", help="print what was removed as JSON")
    p.set_defaults(func=_cmd_cleanup)

    p = sub.add_parser("inspect", help="offline, read-only check of a tree directory")
    p.add_argument("dir", metavar="TREE",
                   help="the tree directory to check (or the name of a published tree)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("backup", help="consistent copy of a tree while its writer runs",
                       description="Copy a tree to a new directory while its writer keeps "
                       "ingesting: checkpoints wait, inserts do not. The copy holds every leaf "
                       "durable when the backup began, is sparse like the original, and opens "
                       "with verify_checkpoint=True.")
    p.add_argument("tree", metavar="TREE", help=TREE_HELP)
    p.add_argument("out", metavar="OUT",
                   help="the new tree directory (must not exist, or be an empty directory)")
    p.add_argument("--verify", action="store_true",
                   help="check the copy as `inspect` does before putting it in place")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_backup)

    p = sub.add_parser("http", help="serve proofs, leaves and tiles of a published tree over HTTP")
    p.add_argument("name", metavar="TREE", help=TREE_HELP)
    p.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (default 127.0.0.1:8080)")
    p.add_argument("--workers", type=_count, default=1, help="worker processes (default 1)")
    p.add_argument("--token-file", metavar="FILE",
                   help="bearer token for POST /v1/leaves (without it inserting is refused)")
    p.add_argument("--max-body", type=_count, default=1 << 20, metavar="BYTES",
                   help="largest POST body accepted (default 1 MiB; 413 beyond)")
    p.add_argument("--server", choices=("granian", "uvicorn"), default="granian",
                   help=argparse.SUPPRESS)
    p.add_argument("--key", metavar="KEYFILE",
                   help="signer key (rotorshm keygen): serve a signed GET /checkpoint")
    p.add_argument("--checkpoint-interval", type=float, default=1.0, metavar="SECONDS",
                   help="re-sign the checkpoint at most this often (default 1)")
    p.set_defaults(func=_cmd_http)


    add_tlog_commands(sub, _count, _index)  # keygen, tiles export, remote proof|watch

    p = sub.add_parser("demo", help="writer daemon + client + reader processes, end to end")
    p.add_argument("--leaves", type=_count, default=1_000_000,
                   help="leaves to insert (default 1,000,000)")
    p.add_argument("--readers", type=_index, default=2, help="reader processes (default 2)")
    p.add_argument("--batch", type=_count, default=LEAF_BATCH,
                   help=f"leaves per insert request (default {LEAF_BATCH})")
    p.add_argument("--arity", type=_arity, default=4,
                   help=f"children per node, {MIN_ARITY}..{MAX_ARITY} (default 4)")
    p.add_argument("--pin-above-level", type=_index, default=2,
                   help="levels at or above this live in shared memory (default 2)")
    p.add_argument("--seed", type=_index, default=1,
                   help="seed of the readers' random leaf choices (default 1)")
    p.add_argument("--keep", action="store_true", help="keep the temporary tree directory")
    p.add_argument("--http", action="store_true",
                   help="also serve the tree with `rotorshm http` (2 workers); the readers "
                        "fetch and verify proofs over HTTP too (needs the http extra)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("bench", add_help=False,
                       help="run the benchmarks (`python -m bench ARGS...`)")
    p.add_argument("bench_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda a: run_bench(a.bench_args))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script: every error becomes one line and an exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["bench"]:  # forward everything, options included
        return run_bench(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args))
    except KeyboardInterrupt:
        print("rotorshm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        with contextlib.suppress(OSError):  # stdout's reader went away: exit quietly
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the exit flush silent
        return EXIT_FAIL
    except Exception as exc:  # noqa: BLE001 - the one place errors become exit codes
        text, code = error_line(exc)
        print(f"rotorshm: error: {text}", file=sys.stderr)
        if os.environ.get("ROTORSHM_TRACEBACK"):
            traceback.print_exc()
        return code
