"""The `rotorshm` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .config import CheckpointPolicy, FlushPolicy, RotorTreeConfig, TieringConfig
from .errors import RotorError


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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="rotorshm", description=__doc__)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except RotorError as exc:
        print(f"rotorshm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
