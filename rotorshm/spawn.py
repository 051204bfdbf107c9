"""Start child Pythons that import the very same rotorshm as this process.

``python -m rotorshm`` (and ``-c``) put the working directory first on ``sys.path``: run
from a source checkout, the child would import the checkout's ``rotorshm/`` (which has no
compiled helper unless built in place) instead of the installed package its parent runs.
So a child runs a short bootstrap instead. It imports rotorshm (and any other pinned
package) from the exact ``__init__`` file this process imported, before anything else can
look for it, and replaces the working-directory entry of ``sys.path`` by the directories
those packages came from, so that grandchildren started with multiprocessing's "spawn"
(which inherit ``sys.path``) find the same files. Then it runs the module as ``-m`` would.
"""

from __future__ import annotations

import json
import os
import sys
from types import ModuleType

# argv[1]: JSON [directories to search first, [[package, its __init__ file], ...]];
# argv[2]: the module to run as __main__, or "module:function" to call function(argv).
_BOOT = """\
import importlib, importlib.util, json, os, runpy, sys
_roots, _pins = json.loads(sys.argv.pop(1))
sys.path[0:1] = _roots
for _name, _init in _pins:
    _spec = importlib.util.spec_from_file_location(
        _name, _init, submodule_search_locations=[os.path.dirname(_init)])
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules[_name] = _mod
    _spec.loader.exec_module(_mod)
_target = sys.argv.pop(1)
if ":" in _target:
    _module, _function = _target.split(":")
    getattr(importlib.import_module(_module), _function)(sys.argv[1:])
else:
    runpy.run_module(_target, run_name="__main__", alter_sys=True)
"""


def _top_init(package: ModuleType) -> tuple[str, str]:
    """(name, __init__ file) of the top-level package that `package` belongs to."""
    top = sys.modules[package.__name__.partition(".")[0]]
    init: str | None = getattr(top, "__file__", None)
    if not init or not os.path.basename(init).startswith("__init__."):
        raise ValueError(f"{top.__name__} is not a regular package with an __init__ file")
    return top.__name__, os.path.abspath(init)


def python_argv(module: str, *args: str, pin: tuple[ModuleType, ...] = ()) -> list[str]:
    """argv that runs ``python -m MODULE ARGS...`` with rotorshm (and `pin`) imported from
    the same files as in this process, whatever the child's working directory.

    MODULE may also be ``"module:function"``: the child calls ``function(list_of_args)``.
    """
    import rotorshm

    pins = dict(_top_init(p) for p in (rotorshm, *pin))
    roots = list(dict.fromkeys(os.path.dirname(os.path.dirname(i)) for i in pins.values()))
    boot = json.dumps([roots, list(pins.items())])
    return [sys.executable, "-c", _BOOT, boot, module, *args]


def rotorshm_argv(*args: str) -> list[str]:
    """argv that runs this rotorshm's command line (``rotorshm ARGS...``) in a child."""
    return python_argv("rotorshm", *args)
