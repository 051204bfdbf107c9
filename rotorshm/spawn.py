"""Start child Pythons that import the very same rotorshm as this process.

``python -m rotorshm`` (and ``-c``) put the working directory first on ``sys.path``: run
from a source checkout, the child would import the checkout's ``rotorshm/`` (which has no
compiled helper unless built in place) instead of the installed package its parent runs.
So a child runs a short bootstrap instead: the working-directory entry of its ``sys.path``
is replaced by the directories this process imported rotorshm (and any other pinned
package) from, then the module runs as ``-m`` would run it. Grandchildren started with
multiprocessing's "spawn" inherit that ``sys.path``, so they are pinned too.
"""

from __future__ import annotations

import json
import os
import sys
from types import ModuleType

# argv[1]: JSON list of directories to search first; argv[2]: the module to run as __main__.
_BOOT = ("import json, runpy, sys; sys.path[0:1] = json.loads(sys.argv.pop(1)); "
         "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)")


def package_root(package: ModuleType) -> str:
    """The directory holding `package` (the sys.path entry it was imported from)."""
    init: str | None = getattr(package, "__file__", None)
    if not init or not os.path.basename(init).startswith("__init__."):
        raise ValueError(f"{package.__name__} is not a regular package with an __init__ file")
    depth = package.__name__.count(".") + 1
    root = os.path.abspath(init)
    for _ in range(depth + 1):
        root = os.path.dirname(root)
    return root


def python_argv(module: str, *args: str, pin: tuple[ModuleType, ...] = ()) -> list[str]:
    """argv that runs ``python -m MODULE ARGS...`` with rotorshm (and `pin`) imported from
    the same files as in this process, whatever the child's working directory."""
    import rotorshm

    roots = list(dict.fromkeys(package_root(p) for p in (rotorshm, *pin)))
    return [sys.executable, "-c", _BOOT, json.dumps(roots), module, *args]


def rotorshm_argv(*args: str) -> list[str]:
    """argv that runs this rotorshm's command line (``rotorshm ARGS...``) in a child."""
    return python_argv("rotorshm", *args)
