"""rotorshm: append-only N-ary Merkle trees (LeanIMT) served from shared memory to processes."""

from .config import CheckpointPolicy, FlushPolicy, RotorTreeConfig, TieringConfig
from .errors import (
    CapacityExceeded,
    ConfigMismatch,
    CorruptionError,
    IndexOutOfRange,
    InvalidConfig,
    InvalidLeaf,
    InvalidProof,
    RotorError,
    StorageFull,
    TreeClosed,
    TreeLocked,
)
from .hashing import depth_for, hash_children, hash_leaf
from .proof import ConsistencyLevel, ConsistencyProof, InclusionProof, ProofLevel
from .snapshot import Snapshot
from .store import DurabilityToken, RotorTree
from .tree import LeanIMT

__version__ = "0.1.0"

__all__ = [
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
    "InvalidConfig",
    "InvalidLeaf",
    "InvalidProof",
    "LeanIMT",
    "ProofLevel",
    "RotorError",
    "RotorTree",
    "RotorTreeConfig",
    "Snapshot",
    "StorageFull",
    "TieringConfig",
    "TreeClosed",
    "TreeLocked",
    "depth_for",
    "hash_children",
    "hash_leaf",
]
