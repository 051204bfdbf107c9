"""Run the benchmark suite: every scenario, or the ones named.

    python -m bench [SCENARIO ...] [--quick] [--out DIR] [--quiet]
    python -m bench SCENARIO [its own options, e.g. scale --leaves 100000000]
    rotorshm bench ...                        (the same, from the source tree)

Scenarios (default: all of them, in this order): tree, durable, daemon, readers, peers,
http, tiles, then any other ``bench/<name>.py`` that defines ``run(argv)``; ``scale``
(a billion leaves on disk by default) runs only when named, or with --quick. A known
scenario whose module does not exist yet is reported as missing and skipped.

Each scenario runs in its own Python process (``bench.<name>.run(argv)``, with --quick,
--out and --quiet passed through), so CPU pinning, the frozen heap or a crash of one
cannot affect the next. A scenario has failed if its process exits non-zero, or if it
did not write a valid ``<out>/<name>.json`` (see bench/schema.py) or the plots that file
lists (when matplotlib is installed). Targets are informational: a miss never fails.

The output directory defaults to bench/results/ (bench/results/quick/ with --quick). At
the end a one-line summary per scenario is printed and ``<out>/suite.json`` records what
ran. Exit status: 0 if every scenario that exists succeeded, 1 otherwise, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import importlib.util
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import common, report

SCENARIOS = ("tree", "durable", "daemon", "readers", "peers", "http", "tiles", "scale")
# Scenarios run only when named (or with --quick): the full scale run takes ~45 GB of disk.
ON_DEMAND = frozenset({"scale"})
# Scenarios that need an optional extra: skipped (not failed) when it is not installed.
REQUIRES = {
    "http": ("http", ("granian", "prometheus_client", "httpx")),
    "tiles": ("tiles", ("cryptography", "httpx")),
}
# modules of the package that are not scenarios
FRAMEWORK = frozenset({"common", "report", "schema"})
PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = common.DEFAULT_OUT
QUICK_OUT = DEFAULT_OUT / "quick"



def _defines_run(path: Path) -> bool:
    """Whether the module source at `path` has a top-level `def run` (parsed, not imported)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return True  # let running it report the problem
    return any(isinstance(node, ast.FunctionDef) and node.name == "run" for node in tree.body)


def available(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """The scenario modules that exist: the known ones in order, then any extra ones."""
    known = [name for name in SCENARIOS if (package_dir / f"{name}.py").is_file()]
    extra = sorted(
        p.stem for p in package_dir.glob("*.py")
        if p.stem not in SCENARIOS and p.stem not in FRAMEWORK and not p.stem.startswith("_")
        and _defines_run(p)
    )
    return known + extra


def exists(name: str) -> bool:
    """Whether bench.<name> can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(f"{__package__}.{name}") is not None
    except (ImportError, ValueError):
        return False


@dataclass
class Outcome:
    name: str
    status: str = "ok"  # ok | failed | missing | skipped (an optional extra not installed)
    runtime_s: float = 0.0
    exit_code: int | None = None
    targets_passed: int = 0
    targets_missed: int = 0
    json: str | None = None
    plots: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        if self.status == "missing":
            return (f"{self.name:<10} missing   no module bench/{self.name}.py yet, skipped")
        if self.status == "skipped":
            return f"{self.name:<10} skipped   {self.problems[0] if self.problems else ''}"
        head = f"{self.name:<10} {self.status:<8} {self.runtime_s:7.1f} s"
        if self.status == "ok":
            return (f"{head}  targets {self.targets_passed} passed, "
                    f"{self.targets_missed} missed")
        why = (f"exit code {self.exit_code}" if self.exit_code
               else f"{len(self.problems)} problem(s)")
        first = f": {self.problems[0]}" if self.problems else ""
        return f"{head}  {why}{first}"


def check_output(name: str, out: Path, started: float, o: Outcome) -> None:
    """Validate `<out>/<name>.json` written since `started`, and the plots it lists."""
    path = out / f"{name}.json"
    if not path.is_file():
        o.problems.append(f"{path} was not written")
        return
    if path.stat().st_mtime < started - 1:
        o.problems.append(f"{path} is older than this run (not rewritten)")
        return
    o.json = path.name
    payload, problems = report.load(path)
    if problems or payload is None:
        o.problems.extend(f"{path.name}: {p}" for p in problems)
        return
    o.targets_passed, o.targets_missed = report.target_counts(payload)
    o.plots = [spec["file"] for spec in payload["plots"]]
    if importlib.util.find_spec("matplotlib") is None:
        return  # render_plots said so; not a failure of the scenario
    for f in o.plots:
        png = out / f
        if not png.is_file() or png.stat().st_size == 0:
            o.problems.append(f"plot {f} listed in {path.name} was not written")


def missing_extra(name: str) -> str | None:
    """Why scenario `name` cannot run here (an optional extra not installed), or None."""
    if name not in REQUIRES:
        return None
    extra, modules = REQUIRES[name]
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if not absent:
        return None
    return f"needs {', '.join(absent)}: pip install 'rotorshm[{extra}]'"


def run_scenario(name: str, flags: Sequence[str], out: Path) -> Outcome:
    o = Outcome(name)
    why = missing_extra(name)
    if why is not None:
        o.status = "skipped"
        o.problems.append(why)
        print(f"bench: {name}: skipped, {why}", file=sys.stderr, flush=True)
        return o
    started_wall = time.time()
    t0 = time.perf_counter()
    try:
        rc = subprocess.call(common.scenario_argv(name, *flags))
    except KeyboardInterrupt:
        o.status, o.runtime_s, o.exit_code = "failed", time.perf_counter() - t0, -2
        o.problems.append("interrupted")
        raise
    o.runtime_s = time.perf_counter() - t0
    o.exit_code = rc
    if rc != 0:
        o.status = "failed"
        o.problems.append(f"bench.{name} exited with {rc}")
        return o
    check_output(name, out, started_wall, o)
    if o.problems:
        o.status = "failed"
        print(f"bench: {name}: INVALID OUTPUT:", file=sys.stderr)
        for p in o.problems:
            print(f"  - {p}", file=sys.stderr)
    return o


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run rotorshm's benchmark scenarios and check their result files.")
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                    help=f"scenarios to run (default: all; known: {', '.join(SCENARIOS)})")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, few samples: a few seconds per scenario")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"directory for results and plots (default: {DEFAULT_OUT}, "
                         f"with --quick {QUICK_OUT})")
    ap.add_argument("--quiet", action="store_true", help="no progress bars or status lines")
    args, extra = ap.parse_known_args(argv)
    if extra and len(args.scenarios) != 1:
        ap.error(f"options {' '.join(extra)} are a scenario's own: name exactly one scenario")
    args.extra = extra
    for name in args.scenarios:
        if name not in SCENARIOS and (name in FRAMEWORK or name.startswith("_")
                                      or not name.isidentifier() or not exists(name)):
            ap.error(f"unknown scenario {name!r} (known: {', '.join(available())})")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names: list[str] = list(dict.fromkeys(args.scenarios)) or [
        n for n in list(SCENARIOS) + [n for n in available() if n not in SCENARIOS]
        if args.quick or n not in ON_DEMAND]
    out: Path = args.out if args.out is not None else (QUICK_OUT if args.quick else DEFAULT_OUT)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    flags = ["--out", str(out)] + (["--quick"] if args.quick else []) + (
        ["--quiet"] if args.quiet else []) + args.extra
    started = time.perf_counter()
    date = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    outcomes: list[Outcome] = []
    try:
        for i, name in enumerate(names):
            if not exists(name):
                print(f"bench: {name}: missing (no module bench/{name}.py yet), skipped",
                      file=sys.stderr, flush=True)
                outcomes.append(Outcome(name, status="missing"))
                continue
            if any(o.status != "missing" for o in outcomes):
                print()
            print(f"== bench.{name} ({i + 1}/{len(names)})", flush=True)
            outcomes.append(run_scenario(name, flags, out))
    finally:
        total = time.perf_counter() - started
        ok = all(o.status != "failed" for o in outcomes) and len(outcomes) == len(names)
        suite: dict[str, Any] = {
            "suite": 1,
            "date": date,
            "quick": bool(args.quick),
            "out": str(out),
            "scenarios": [asdict(o) for o in outcomes],
            "ok": ok,
            "runtime_s": total,
        }
        common.write_json(out / report.SUITE_FILE, suite)
    print(f"\nbench suite ({'quick' if args.quick else 'full'}), results in {out}:")
    for o in outcomes:
        print("  " + o.line())
    print(f"  total {total:.1f} s: {'ok' if ok else 'FAILED'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
