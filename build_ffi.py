"""cffi build script (API mode) for ``rotorshm._native``.

The C declarations come from ``csrc/rotorshm_native.h`` (the region between the
CFFI-CDEF markers), so the header is the single source of truth for the binding.
Run directly (``python build_ffi.py``) to build the module in place for hacking;
normally setuptools runs it through ``cffi_modules`` in setup.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
HEADER = HERE / "csrc" / "rotorshm_native.h"

_CDEF_RE = re.compile(r"/\* CFFI-CDEF-BEGIN \*/(.*?)/\* CFFI-CDEF-END \*/", re.DOTALL)


def read_cdef(header: Path = HEADER) -> str:
    """Return the cffi declarations embedded in the C header."""
    match = _CDEF_RE.search(header.read_text(encoding="utf-8"))
    if match is None:
        raise RuntimeError(f"{header}: CFFI-CDEF-BEGIN/END markers not found")
    return match.group(1)


# The atomics/seqlock/futex helper, the BLAKE3 kernels (one file per instruction set; the
# SIMD ones compile to nothing off x86-64) with their dispatcher, the tree's node hashing, and
# the path walks over level storage (single-leaf append, proofs, verification), and the WAL
# search behind a damaged record.
SOURCES = [
    "csrc/rotorshm_native.c",
    "csrc/kernel_portable.c",
    "csrc/kernel_sse41.c",
    "csrc/kernel_avx2.c",
    "csrc/kernel_avx512.c",
    "csrc/kernel_dispatch.c",
    "csrc/tree_hash.c",
    "csrc/tree_ops.c",
    "csrc/tree_append.c",
    "csrc/wal_scan.c",
]
DEPENDS = ["csrc/rotorshm_native.h", "csrc/kernel.h", "csrc/levels.h"]
# No -m flags: each SIMD function carries its own target attribute, so one build runs on
# any x86-64 and picks its kernel at run time.
COMPILE_ARGS = ["-O3", "-std=c11", "-pthread", "-Wall", "-Wextra"]
LINK_ARGS = ["-pthread"]  # rs_hash_groups_mt starts POSIX threads

ffibuilder = FFI()
ffibuilder.cdef(read_cdef())
ffibuilder.set_source(
    "rotorshm._native",
    '#include "rotorshm_native.h"',
    # Relative paths: setuptools runs this from the project root.
    sources=SOURCES,
    include_dirs=["csrc"],
    depends=DEPENDS,
    extra_compile_args=COMPILE_ARGS,
    extra_link_args=LINK_ARGS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
