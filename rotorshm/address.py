"""How the command line addresses a tree: one rule for every subcommand.

A TREE argument is either a **directory** or a **name**:

* it is a directory if it contains a '/', is '.' or '..', or names an existing directory;
* otherwise it is a tree name (config.check_tree_name: letters, digits, '_', '-', '.').

A directory is published under whatever name its writer was given: the name is found
through the control blocks in /dev/shm, each of which records its tree's directory (live
writers first, then ones left by a dead writer). A name reaches its directory and socket
the same way. A bare word that is both an existing directory and the name of a tree
published from *another* directory is ambiguous and refused: write ./WORD for the
directory.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from .config import check_tree_name
from .errors import InvalidConfig, WriterGone


class AddressError(InvalidConfig):
    """A TREE argument that is neither a directory nor a valid name, or is ambiguous."""


@dataclass(frozen=True)
class Target:
    """What a TREE argument designates."""

    arg: str
    name: str | None
    """The name the tree is published under (None: no control block names the directory)."""
    directory: str | None
    """Absolute tree directory (None: a name whose control block is gone)."""
    socket: str | None
    """The writer's socket, as its control block records it (or DIR/writer.sock)."""
    by_directory: bool
    """True if the argument was read as a directory."""

    def require_name(self) -> str:
        """The published name, or WriterGone explaining why there is none."""
        if self.name is not None:
            return self.name
        raise WriterGone(self.unpublished())

    def unpublished(self) -> str:
        """Why no name was found (for a directory argument)."""
        from .store import default_name

        assert self.directory is not None
        return (f"no writer publishes the tree in {self.directory}: no control block in "
                f"/dev/shm records that directory (started there without --name, a writer "
                f"would publish it as {default_name(self.directory)!r})")


def is_socket(path: str) -> bool:
    """True if `path` is an existing Unix socket file."""
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _block_info(name: str) -> tuple[str, str] | None:
    """(directory, socket) recorded in the control block of `name`, or None."""
    from .shm import ControlBlock
    from .writer import default_socket

    try:
        block = ControlBlock.attach(name)
    except WriterGone:
        return None
    try:
        directory = block.directory
        return directory, block.socket_path or default_socket(directory)
    finally:
        block.close()


def resolve(arg: str) -> Target:
    """Apply the addressing rule to a TREE argument (see the module docstring)."""
    from .shm import names_publishing
    from .writer import default_socket

    if not arg:
        raise AddressError("a tree is a directory or a name, got an empty argument")
    looks_like_path = "/" in arg or arg in (".", "..")
    if looks_like_path or os.path.isdir(arg):
        directory = os.path.abspath(arg)
        if not looks_like_path:
            info = _valid_name_info(arg)
            if info is not None and os.path.realpath(info[0]) != os.path.realpath(directory):
                raise AddressError(
                    f"{arg!r} is ambiguous: a directory here ({directory}) and the name of "
                    f"the tree published from {info[0]}; write ./{arg} for the directory, "
                    f"or run from another directory to mean the name"
                )
        names = names_publishing(directory)
        if not names:
            return Target(arg, None, directory, default_socket(directory), True)
        info = _block_info(names[0])
        sock = info[1] if info is not None else default_socket(directory)
        return Target(arg, names[0], directory, sock, True)
    try:
        name = check_tree_name(arg)
    except InvalidConfig:
        raise AddressError(
            f"{arg!r} is neither a directory nor a tree name (names are 1..64 ASCII letters, "
            f"digits, '_', '-' or '.'; a path to a directory must exist or contain a '/')"
        ) from None
    info = _block_info(name)
    if info is None:
        return Target(arg, name, None, None, False)
    return Target(arg, name, info[0], info[1], False)


def _valid_name_info(word: str) -> tuple[str, str] | None:
    try:
        check_tree_name(word)
    except InvalidConfig:
        return None
    return _block_info(word)
