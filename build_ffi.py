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


ffibuilder = FFI()
ffibuilder.cdef(read_cdef())
ffibuilder.set_source(
    "rotorshm._native",
    '#include "rotorshm_native.h"',
    # Relative paths: setuptools runs this from the project root.
    sources=["csrc/rotorshm_native.c"],
    include_dirs=["csrc"],
    depends=["csrc/rotorshm_native.h"],
    extra_compile_args=["-O2", "-std=c11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
