"""The `rotorshm` command line.

Subcommands: serve (writer daemon), insert (submit leaves to a daemon), proof and
consistency (from a published tree), verify (a proof file against a trusted root),
status (of a published tree), inspect (offline check of a tree directory), http (serve a
published tree over HTTP; needs the http extra), keygen, tiles export and remote
proof|watch (signed checkpoints, static tiles, verifying client; the tiles extra,
rotorshm/tlog_cli.py), demo (multi-process end-to-end run) and bench (forwards to
`python -m bench`).

Exit codes: 0 success, 1 failure (runtime error, FAILED verification, corruption),
2 bad usage or input (arguments, leaf lines, malformed proofs).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any, Protocol

from . import checkpoint as ckpt
from .config import (
    CheckpointPolicy,
    FlushPolicy,
    RotorTreeConfig,
    TieringConfig,
)
from .errors import IndexOutOfRange, InvalidProof, RotorError
from .hashing import NODE_SIZE
from .levels import SHARD_BYTES, shard_name
from .offline import inspect_tree
from .proof import ConsistencyProof, InclusionProof

LEAF_BATCH = 10_000
PROGRESS_MIN = 10_000
EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user (reported with exit code 2)."""


# -- small shared helpers ---------------------------------------------------------------------

class ProgressBar(Protocol):
    """The part of a tqdm bar this module uses."""

    def update(self, n: int = 1) -> object:
        """Advance the bar by `n`."""

    def close(self) -> None:
        """Finish the bar."""


class _NoBar:
    """A progress bar that shows nothing."""

    def update(self, n: int = 1) -> object:
        """Do nothing."""
        return None

    def close(self) -> None:
        """Do nothing."""


def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "leaf") -> ProgressBar:
    """A tqdm bar on stderr, or a silent stand-in when disabled or stderr is not a terminal."""
    if not enabled or not sys.stderr.isatty():
        return _NoBar()
    tqdm: Any = importlib.import_module("tqdm").tqdm  # untyped library: keep it Any
    bar: ProgressBar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True,
                            file=sys.stderr, dynamic_ncols=True, leave=False)
    return bar


class PhaseProgress:
    """A ProgressCallback that shows one tqdm bar per phase (verify, replay, ...)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._phase: str | None = None
        self._bar: ProgressBar = _NoBar()
        self._done = 0

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self._phase:
            self._bar.close()
            self._phase = phase
            self._bar = progress_bar(total, phase, self.enabled and total >= PROGRESS_MIN,
                                     unit="node")
            self._done = 0
        self._bar.update(done - self._done)
        self._done = done

    def close(self) -> None:
        """Close the current bar."""
        self._bar.close()


def human_bytes(n: int) -> str:
    """`n` bytes in binary units, e.g. 1.5 MiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def tree_name(arg: str) -> str:
    """A tree name, or the default name of a directory when `arg` contains a '/'."""
    if "/" in arg or arg in (".", ".."):
        from .store import default_name

        return default_name(arg)
    return arg


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


_count = _int_at_least(1)
_index = _int_at_least(0)


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


def _cmd_serve(args: argparse.Namespace) -> int:
    from .writer import serve

    flush = (FlushPolicy.manual() if args.flush_interval_ms <= 0
             else FlushPolicy.interval(args.flush_interval_ms / 1000))
    config = RotorTreeConfig(
        args.dir, arity=args.arity, max_depth=args.max_depth, flush_policy=flush,
        checkpoint_policy=args.checkpoint,
        tiering=TieringConfig(args.pin_above_level if args.pin_above_level is not None
                              else 1 << 30),
        verify_checkpoint=not args.no_verify,
    )

    def ready(daemon: object) -> None:
        print(f"rotorshm: serving {args.dir} as {getattr(daemon, 'name', '?')!r} on "
              f"{getattr(daemon, 'socket_path', '?')}", file=sys.stderr, flush=True)

    serve(config, name=args.name, socket_path=args.socket, ready=ready)
    return 0


# -- insert -----------------------------------------------------------------------------------

_HEX_LINE = re.compile(rb"(?:0[xX])?([0-9a-fA-F]{64})")


def read_leaf_lines(stream: IO[bytes], source: str) -> bytes:
    """Every leaf of `stream` (one 64-hex-digit line each, blank lines ignored), concatenated.

    The whole input is validated before anything is returned; a bad line raises
    UsageError naming `source` and the line number.
    """
    out = bytearray()
    fullmatch = _HEX_LINE.fullmatch
    for lineno, raw in enumerate(stream, 1):
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


def _cmd_insert(args: argparse.Namespace) -> int:
    from .client import connect

    if args.file is None or args.file == "-":
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
    with connect(args.target) as client:
        if total == 0:  # a no-op, as LeanIMT.insert_many([]): report the tree as it is
            seq, size, root = client.insert_many(b"")
        bar = progress_bar(total, "insert", not args.quiet and total >= PROGRESS_MIN)
        try:
            for off in range(0, len(data), step):
                chunk = data[off : off + step]
                try:
                    seq, size, root = client.insert_many(chunk)
                except RotorError as exc:
                    where = (f"; {done} of {total} leaves had been accepted before (seq {seq},"
                             f" size {size})" if done else "; nothing was inserted")
                    raise RotorError(f"{exc}{where}") from exc
                n = len(chunk) // NODE_SIZE
                done += n
                batches += 1
                bar.update(n)
        finally:
            bar.close()
        durable: bool | None = None
        if args.durable:
            durable = client.wait_durable(seq, args.timeout)
    if args.json:
        _print_json({"inserted": done, "batches": batches, "seq": seq, "size": size,
                     "root": root.hex() if root is not None else None, "durable": durable})
    else:
        print(f"inserted: {done} leaves in {batches} batch{'es' if batches != 1 else ''}")
        print(f"seq: {seq}")
        print(f"size: {size}")
        print(f"root: {root.hex() if root is not None else 'none (empty tree)'}")
        if durable is not None:
            print(f"durable: {'yes' if durable else 'no'}")
    if durable is False:
        print(f"rotorshm: error: seq {seq} did not become durable (timeout or writer gone)",
              file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK


# -- proof, consistency -----------------------------------------------------------------------

def _emit_proof(args: argparse.Namespace, binary: bytes, text: str) -> None:
    if args.output is not None:
        with open(args.output, "wb") as f:
            f.write(text.encode() + b"\n" if args.json else binary)
    else:
        print(text if args.json else binary.hex())


def _warn_if_gone(alive: bool, name: str) -> None:
    if not alive:
        print(f"rotorshm: warning: the writer of {name!r} is not alive; proving against its "
              "last publication", file=sys.stderr)


def _cmd_proof(args: argparse.Namespace) -> int:
    from .reader import attach

    with attach(tree_name(args.name)) as reader:
        snap = reader.snapshot()
        _warn_if_gone(reader.writer_alive, reader.name)
        proof = snap.generate_proof(args.index, args.size)
    _emit_proof(args, proof.to_bytes(), proof.to_json())
    return EXIT_OK


def _cmd_consistency(args: argparse.Namespace) -> int:
    from .reader import attach

    with attach(tree_name(args.name)) as reader:
        snap = reader.snapshot()
        _warn_if_gone(reader.writer_alive, reader.name)
        if snap.size == 0:
            raise IndexOutOfRange("the published tree is empty")
        proof = snap.generate_consistency_proof(args.old_size, args.size)
    _emit_proof(args, proof.to_bytes(), proof.to_json())
    return EXIT_OK


# -- verify -----------------------------------------------------------------------------------

_HEX_TEXT = frozenset(b"0123456789abcdefABCDEF \t\r\n")


def load_proof(data: bytes) -> InclusionProof | ConsistencyProof:
    """Decode a proof file: JSON, hex text or binary, inclusion or consistency (detected).

    Raises InvalidProof if the contents are malformed.
    """
    text = data.strip()
    if not text:
        raise InvalidProof("the proof file is empty")
    if text.startswith(b"{"):
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise InvalidProof(f"not valid JSON: {exc}") from None
        if isinstance(obj, dict) and obj.get("type") == "consistency":
            return ConsistencyProof.from_json(text)
        return InclusionProof.from_json(text)
    if _HEX_TEXT.issuperset(text):
        digits = bytes(b for b in text if b not in b" \t\r\n")
        try:
            data = bytes.fromhex(digits.decode("ascii"))
        except ValueError:
            raise InvalidProof(f"hex proof has an odd number of digits ({len(digits)})") from None
    if len(data) >= 2 and data[1] == ord("C"):
        return ConsistencyProof.from_bytes(data)
    return InclusionProof.from_bytes(data)


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
        }
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


def _cmd_status(args: argparse.Namespace) -> int:
    info = tree_status(tree_name(args.name))
    if args.json:
        _print_json(info)
        return EXIT_OK
    alive = "alive" if info["writer_alive"] else "NOT alive"
    rows = [
        ("tree", info["name"]),
        ("directory", info["directory"]),
        ("writer", f"pid {info['writer_pid']}, {alive}, state {info['writer_state']}, "
                   f"heartbeat {info['heartbeat_age_ms']:.0f} ms ago"),
        ("epoch", info["epoch"]),
        ("arity", f"{info['arity']} (max_depth {info['max_depth']})"),
        ("size", str(info["size"])),
        ("depth", str(info["depth"])),
        ("root", info["root"] or "-"),
        ("published seq", str(info["published_seq"])),
        ("durable seq", str(info["durable_seq"])),
        ("tiers", _tier_summary(info)),
    ]
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
    if "error" in info:
        rows.append(("error", info["error"]))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return EXIT_OK


# -- inspect ----------------------------------------------------------------------------------

def _short(h: str | None) -> str:
    return "-" if h is None else h


def _cmd_inspect(args: argparse.Namespace) -> int:
    progress = PhaseProgress(not args.quiet)
    try:
        report = inspect_tree(args.dir, progress)
    finally:
        progress.close()
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
        if report["attempts"] > 1:
            rows.append(("attempts", f"{report['attempts']} (a checkpoint ran meanwhile)"))
        rows.append(("result", "OK" if report["ok"] else f"CORRUPT: {report['error']}"))
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            print(f"{k:<{width}}  {v}")
    if not report["ok"]:
        print(f"rotorshm: error: {report['error']}", file=sys.stderr)
        return EXIT_FAIL
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
        serve(tree_name(args.name), host=host, port=port, workers=args.workers,
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

def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="rotorshm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the writer daemon of a tree directory")
    p.add_argument("dir")
    p.add_argument("--name", help="shared-memory name readers attach to (default: from DIR)")
    p.add_argument("--socket", help="socket path (default: DIR/writer.sock)")
    p.add_argument("--arity", type=int, default=4)
    p.add_argument("--max-depth", type=int, default=20)
    p.add_argument("--flush-interval-ms", type=float, default=10.0,
                   help="group-commit interval; 0 = manual flushing only")
    p.add_argument("--checkpoint", type=_checkpoint_policy, default=CheckpointPolicy.on_close(),
                   help="manual | on_close (default) | every:N | memory:BYTES")
    p.add_argument("--pin-above-level", type=int, default=None,
                   help="levels at or above this live in shared memory (default: none)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip recomputing the root when opening from a checkpoint")
    p.set_defaults(func=_cmd_serve)

    name_help = "tree name (or a path containing '/': the default name of that directory)"

    p = sub.add_parser("insert", help="submit leaves (64 hex digits per line) to a writer daemon")
    p.add_argument("target", metavar="DIR_OR_SOCKET", help="tree directory or daemon socket")
    p.add_argument("file", metavar="FILE", nargs="?",
                   help="file of leaves, one per line (default or '-': stdin)")
    p.add_argument("--batch", type=_count, default=LEAF_BATCH,
                   help=f"leaves per request (default {LEAF_BATCH})")
    p.add_argument("--durable", action="store_true", help="wait until the last batch is durable")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to wait for durability (default 60)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_insert)

    p = sub.add_parser("proof", help="print the inclusion proof of a leaf of a published tree")
    p.add_argument("name", metavar="NAME", help=name_help)
    p.add_argument("index", metavar="INDEX", type=_index)
    p.add_argument("--size", type=_count, help="prove against the tree as it was at N leaves")
    p.add_argument("--json", action="store_true", help="JSON instead of hex of the binary form")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write to FILE (raw binary, or JSON with --json) instead of stdout")
    p.set_defaults(func=_cmd_proof)

    p = sub.add_parser("consistency", help="print a consistency proof of a published tree")
    p.add_argument("name", metavar="NAME", help=name_help)
    p.add_argument("old_size", metavar="OLD_SIZE", type=_count)
    p.add_argument("--size", type=_count, help="new size (default: the current size)")
    p.add_argument("--json", action="store_true", help="JSON instead of hex of the binary form")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write to FILE (raw binary, or JSON with --json) instead of stdout")
    p.set_defaults(func=_cmd_consistency)

    p = sub.add_parser("verify", help="verify a proof file (binary, hex or JSON) against a root")
    p.add_argument("proof_file", metavar="PROOF_FILE", help="proof file ('-': stdin)")
    p.add_argument("--root", type=_hex32, required=True,
                   help="trusted root (for a consistency proof: the new root)")
    p.add_argument("--size", type=_count, help="trusted tree size (consistency: the new size)")
    p.add_argument("--old-root", type=_hex32, help="consistency proofs: trusted old root")
    p.add_argument("--old-size", type=_count, help="consistency proofs: trusted old size")
    p.add_argument("-q", "--quiet", action="store_true", help="no explanation on stderr")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("status", help="state of a published tree and of its shared memory")
    p.add_argument("name", metavar="NAME", help=name_help)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("inspect", help="offline, read-only check of a tree directory")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--json", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("http", help="serve proofs, leaves and tiles of a published tree over HTTP")
    p.add_argument("name", metavar="NAME", help=name_help)
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

    from .tlog_cli import add_commands  # keygen, tiles export, remote proof|watch

    add_commands(sub, _count, _index)

    p = sub.add_parser("demo", help="writer daemon + client + reader processes, end to end")
    p.add_argument("--leaves", type=_count, default=1_000_000)
    p.add_argument("--readers", type=_index, default=2, help="reader processes (default 2)")
    p.add_argument("--batch", type=_count, default=LEAF_BATCH)
    p.add_argument("--arity", type=int, default=4)
    p.add_argument("--pin-above-level", type=_index, default=2,
                   help="levels at or above this live in shared memory (default 2)")
    p.add_argument("--seed", type=int, default=1)
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
    """Entry point of the console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["bench"]:  # forward everything, options included
        return run_bench(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args))
    except UsageError as exc:
        print(f"rotorshm: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RotorError as exc:
        print(f"rotorshm: error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except BrokenPipeError:
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
