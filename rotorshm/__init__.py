"""rotorshm: append-only N-ary Merkle trees (LeanIMT) served from shared memory to processes."""

from pkgutil import extend_path

# A source checkout that shadows the installed package (on PYTHONPATH, or as the working
# directory of `python -m`) has no compiled helper `_native` unless it was built in place.
# Searching every `rotorshm/` directory on sys.path, in order, lets such a checkout use the
# installed copy's helper; modules present in the checkout are still found there first.
__path__ = extend_path(__path__, __name__)

from .client import Client, connect
from .config import (
    CheckpointPolicy,
    FlushPolicy,
    RotorTreeConfig,
    TieringConfig,
    level_bytes,
    suggest_pin_above_level,
)
from .errors import (
    AccessDenied,
    CapacityExceeded,
    ConfigMismatch,
    CorruptionError,
    IndexOutOfRange,
    InvalidArgument,
    InvalidConfig,
    InvalidLeaf,
    InvalidProof,
    ProtocolError,
    RotorError,
    StaleSnapshot,
    StorageFull,
    StorePoisoned,
    TreeClosed,
    TreeLocked,
    WriterGone,
    WriterUnavailable,
)
from .hashing import depth_for, hash_children, hash_leaf
from .kernel import NativeInfo, native_info
from .proof import (
    ConsistencyLevel,
    ConsistencyProof,
    InclusionProof,
    ProofLevel,
    verify_proof_bytes,
)
from .reader import Reader, attach
from .snapshot import Snapshot
from .store import DurabilityToken, RotorTree
from .tree import LeanIMT
from .writer import WriterDaemon, serve

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "Client",
    "ProtocolError",
    "Reader",
    "WriterDaemon",
    "WriterGone",
    "WriterUnavailable",
    "attach",
    "connect",
    "serve",
    "CapacityExceeded",
    "CheckpointPolicy",
    "ConfigMismatch",
    "ConsistencyLevel",
    "ConsistencyProof",
    "CorruptionError",
    "DurabilityToken",
    "FlushPolicy",
    "InclusionProof",
    "IndexOutOfRange",
    "InvalidArgument",
    "InvalidConfig",
    "InvalidLeaf",
    "InvalidProof",
    "LeanIMT",
    "ProofLevel",
    "RotorError",
    "RotorTree",
    "RotorTreeConfig",
    "Snapshot",
    "StaleSnapshot",
    "StorageFull",
    "StorePoisoned",
    "TieringConfig",
    "level_bytes",
    "suggest_pin_above_level",
    "TreeClosed",
    "TreeLocked",
    "depth_for",
    "hash_children",
    "hash_leaf",
    "NativeInfo",
    "native_info",
    "verify_proof_bytes",
]
