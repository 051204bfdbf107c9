"""The tlog commands of the CLI: `keygen`, `tiles export`, `remote proof|watch`.

Kept apart from cli.py, which only registers them (`add_commands`); every heavy import
(cryptography, httpx) happens when a command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any


def _usage(message: str) -> Exception:
    """Bad input from the user: the command line reports it with exit code 2."""
    from .errors import InvalidArgument

    return InvalidArgument(message)


def emit_proof(args: argparse.Namespace, binary: bytes, text: str) -> None:
    """Write a proof where the command line asked: `--output` (binary, or JSON with
    `--json`) or standard output (hex, or JSON)."""
    if args.output is not None:
        with open(args.output, "wb") as f:
            f.write(text.encode() + b"\n" if args.json else binary)
    else:
        print(text if args.json else binary.hex())


def _read_text(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(1 << 16)
    except OSError as exc:
        raise _usage(f"{path}: cannot read the {what}: {exc.strerror}") from None


def _cmd_keygen(args: argparse.Namespace) -> int:
    from .note import Signer

    signer = Signer.generate(args.name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if args.force else os.O_EXCL)
    try:
        fd = os.open(args.keyfile, flags, 0o600)
    except FileExistsError:
        raise _usage(f"{args.keyfile} exists (use --force to replace it)") from None
    except OSError as exc:
        raise _usage(f"{args.keyfile}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(signer.to_text() + "\n")
    with open(args.keyfile + ".pub", "w", encoding="utf-8") as f:
        f.write(signer.verifier.to_text() + "\n")
    print(signer.verifier.to_text())
    return 0


def _signer(path: str) -> Any:
    from .note import Signer

    return Signer.from_text(_read_text(path, "signer key"))


def _verifier(path: str) -> Any:
    from .note import Verifier

    text = _read_text(path, "verifier key") if os.path.exists(path) else path
    return Verifier.from_text(text)


def _cmd_tiles_export(args: argparse.Namespace) -> int:
    from .address import resolve
    from .reader import attach
    from .tiles import export

    signer = _signer(args.key)
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    if args.watch:
        signal.signal(signal.SIGTERM, on_term)
    with attach(resolve(args.source).require_name()) as reader:
        while True:
            result = export(reader.snapshot(), args.out, signer)
            if not args.quiet and (result.size != result.previous_size or not args.watch):
                print(json.dumps({"size": result.size, "previous_size": result.previous_size,
                                  "full_tiles": result.full_tiles,
                                  "partial_tiles": result.partial_tiles,
                                  "bytes": result.bytes_written,
                                  "seconds": round(result.seconds, 4)}), flush=True)
            if not args.watch or stop:
                return 0
            started = time.monotonic()
            try:
                reader.wait_for_size(result.size + 1, timeout=max(args.interval, 0.05))
                rest = args.interval - (time.monotonic() - started)
                if rest > 0 and not stop:
                    time.sleep(rest)
            except KeyboardInterrupt:
                return 0
            if stop:
                return 0


def _remote(args: argparse.Namespace) -> Any:
    from .remote import RemoteTree

    return RemoteTree(args.url, _verifier(args.key), arity=args.arity, timeout=args.timeout)


def _cmd_remote_proof(args: argparse.Namespace) -> int:

    with _remote(args) as tree:
        size, root = tree.checkpoint()
        proof = tree.generate_proof(args.index)
        print(f"rotorshm: verified against the signed checkpoint of {size} leaves, root "
              f"{root.hex()} ({tree.stats.requests} requests)", file=sys.stderr)
    emit_proof(args, proof.to_bytes(), proof.to_json())
    return 0


def _cmd_remote_watch(args: argparse.Namespace) -> int:
    with _remote(args) as tree:
        checks = 0
        while True:
            old = tree.size if checks else None
            size, root = tree.checkpoint()
            if old != size:
                print(json.dumps({"size": size, "root": root.hex(), "previous_size": old,
                                  "consistent": old is not None,
                                  "requests": tree.stats.requests, "bytes": tree.stats.bytes}),
                      flush=True)
            checks += 1
            if args.count and checks >= args.count:
                return 0
            try:
                time.sleep(args.interval)
            except KeyboardInterrupt:
                return 0


def add_commands(sub: Any, count: Any, index: Any) -> None:
    """Register keygen, tiles and remote on the CLI's subparsers."""
    p = sub.add_parser("keygen", help="make an Ed25519 signer key for signed checkpoints")
    p.add_argument("keyfile", metavar="KEYFILE", help="signer key (0600); KEYFILE.pub gets the "
                                                      "verifier key")
    p.add_argument("--name", required=True,
                   help="key name, also the checkpoints' origin (e.g. example.com/mylog)")
    p.add_argument("--force", action="store_true", help="replace an existing KEYFILE")
    p.set_defaults(func=_cmd_keygen)

    p = sub.add_parser("tiles", help="static tiles and signed checkpoints of a published tree")
    tsub = p.add_subparsers(dest="tiles_command", required=True, metavar="COMMAND",
                            help="export: write the tiles and the signed checkpoint as files")
    q = tsub.add_parser("export", help="write (incrementally) tile/... and checkpoint to OUT")
    q.add_argument("source", metavar="DIR_OR_NAME", help="tree directory or published name")
    q.add_argument("out", metavar="OUT", help="folder to serve with any static web server")
    q.add_argument("--key", required=True, metavar="KEYFILE", help="signer key (rotorshm keygen)")
    q.add_argument("--watch", action="store_true", help="keep exporting as the tree grows")
    q.add_argument("--interval", type=float, default=1.0,
                   help="--watch: seconds between exports at most (default 1)")
    q.add_argument("-q", "--quiet", action="store_true")
    q.set_defaults(func=_cmd_tiles_export)

    p = sub.add_parser("remote", help="verified proofs from a tile server or static export")
    rsub = p.add_subparsers(dest="remote_command", required=True, metavar="COMMAND",
                            help="proof: one verified proof; watch: follow the log")
    for name, helptext in (("proof", "inclusion proof of a leaf, built and verified locally"),
                           ("watch", "follow the log, checking each checkpoint's consistency")):
        q = rsub.add_parser(name, help=helptext)
        q.add_argument("url", metavar="URL", help="base URL (holding /checkpoint and /tile/)")
        if name == "proof":
            q.add_argument("index", metavar="INDEX", type=index)
        q.add_argument("--key", required=True, metavar="FILE.pub",
                       help="verifier key file (or the key text itself)")
        q.add_argument("--arity", type=int, default=4, help="the tree's arity (default 4)")
        q.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
        if name == "proof":
            q.add_argument("--json", action="store_true",
                           help="JSON instead of hex of the binary form")
            q.add_argument("-o", "--output", metavar="FILE", help="write the proof to FILE")
            q.set_defaults(func=_cmd_remote_proof)
        else:
            q.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
            q.add_argument("--count", type=count, default=None,
                           help="stop after this many checkpoints (default: never)")
            q.set_defaults(func=_cmd_remote_watch)


__all__ = ["add_commands"]
