"""The exception hierarchy: every error rotorshm raises on purpose derives from RotorError."""

from __future__ import annotations


class RotorError(Exception):
    """Base class of every error raised by rotorshm."""


class InvalidLeaf(RotorError, ValueError):
    """A leaf is not exactly 32 bytes, or a batch is not a whole number of leaves."""


class IndexOutOfRange(RotorError, IndexError):
    """A leaf index, level or size lies outside the tree (or the snapshot)."""


class InvalidArgument(RotorError, TypeError):
    """An argument has the wrong type: e.g. a bool, float, str or None given as an index."""


class CapacityExceeded(RotorError):
    """An insert would need a tree deeper than max_depth; nothing was inserted."""


class InvalidConfig(RotorError, ValueError):
    """A configuration value is out of its allowed range."""


class InvalidProof(RotorError, ValueError):
    """Proof bytes or JSON are malformed, or a proof is structurally unusable."""


class ConfigMismatch(RotorError):
    """The configuration does not match the tree directory's header."""


class TreeLocked(RotorError):
    """Another writer holds the tree directory's lock."""


class TreeClosed(RotorError):
    """The tree (or reader, or client) was used after close()."""


class CorruptionError(RotorError):
    """On-disk data failed a CRC or root check; the message names the file and offset."""


class StorageFull(RotorError, OSError):
    """Space for new data could not be reserved (disk or /dev/shm full)."""


class WriterGone(RotorError):
    """No live writer publishes the tree (it died, stopped, or never started)."""


class StaleSnapshot(RotorError):
    """A snapshot reaches past what a restarted writer recovered: its data may be replaced.

    The writer that published the snapshot died before some of its leaves were durable;
    a new writer recovered fewer leaves and may be writing different ones (and different
    right-edge nodes above them) in the storage the snapshot reads. Nothing mixed is ever
    returned: take a new snapshot after `Reader.reattach()`, which follows the new writer.
    Snapshots within the recovered size stay valid.
    """

    def __init__(self, message: str, size: int = 0, recovered_size: int = 0) -> None:
        super().__init__(message)
        self.size = size  #: the snapshot's size
        self.recovered_size = recovered_size  #: leaves the restarted writer recovered


class WriterUnavailable(RotorError, ConnectionError):
    """The writer daemon's socket cannot be reached, or the daemon went away mid-request."""


class AccessDenied(RotorError, PermissionError):
    """This process lacks permission for the daemon's socket or shared-memory segments."""


class ProtocolError(RotorError):
    """A peer sent a malformed frame on the daemon socket."""


class StorePoisoned(RotorError):
    """A sync (fsync, fdatasync, msync) failed: durability can no longer be guaranteed.

    The store (and a daemon serving it) refuses every write and every durability wait
    from then on; only reopening the tree, which recovers from the WAL on disk, clears it.
    Records acknowledged durable before the failure stay durable.
    """
