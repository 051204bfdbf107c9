"""Tables and plots of benchmark results, regenerated from the result JSON alone.

    python -m bench.report DIR [--no-plots]

reads every ``*.json`` result file in DIR (not ``suite.json``), validates it against the
schema (``bench.schema``), prints its table and (re)writes its PNG plots into DIR. Exit
status 1 if a file is invalid or DIR holds no result file.

Scenarios call `format_tables` to print their table and `render_plots` to draw their
plots, so what a run prints and what this command prints are the same text, and the
PNGs it rewrites are the same pictures.

matplotlib is optional (the ``bench`` and ``dev`` extras install it): without it
`render_plots` says so once on stderr and draws nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .common import TABLE_ALIGN, TABLE_COLUMNS, format_table
from .schema import validate

SUITE_FILE = "suite.json"

FIG_SIZE = (9.0, 5.6)  # inches; at DPI this is 900 x 560 pixels
DPI = 100
BAR_LABEL_MAX = 24  # value labels on bars only when there are at most this many bars

_warned_no_matplotlib = False


# -- numbers -------------------------------------------------------------------------------

def display_unit(unit: str) -> str:
    """The unit a table shows: latencies (ns) in µs, everything else as recorded."""
    return "µs" if unit == "ns" else unit


def format_number(x: float) -> str:
    """Thousands separators from 100 up, two decimals below, 3 significant digits below 1."""
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 100:
        return f"{x:,.0f}"
    if a >= 1:
        return f"{x:,.2f}"
    return f"{x:.3g}"


def format_value(x: float, unit: str) -> str:
    """`x` (in `unit`) as a table shows it: ns as µs with two decimals."""
    if unit == "ns":
        return f"{x / 1000:,.2f}"
    return format_number(x)


def compact(x: float) -> str:
    """A short label for a bar: 3 significant digits with k/M/G suffixes."""
    a = abs(x)
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


# -- tables --------------------------------------------------------------------------------

def _title(payload: Mapping[str, Any]) -> str:
    params = payload.get("parameters", {})
    quick = params.get("quick") if isinstance(params, Mapping) else None
    run = "quick run" if quick is True else "full run" if quick is False else "run"
    date = payload.get("machine", {}).get("date", "")
    return f"rotorshm bench {payload['benchmark']}: {run}" + (f", {date}" if date else "")


def table_rows(payload: Mapping[str, Any]) -> list[dict[str, object]]:
    """One row per result, in the payload's order, with its targets."""
    targets: dict[str, list[Mapping[str, Any]]] = {}
    for t in payload["targets"]:
        targets.setdefault(t["measurement"], []).append(t)
    rows: list[dict[str, object]] = []
    for name, r in payload["results"].items():
        s, unit = r["summary"], r["unit"]
        row: dict[str, object] = {
            "measurement": name,
            "unit": display_unit(unit),
            "median": format_value(s["median"], unit),
            # a throughput has a few runs: its tail is the worst run (min), not a p99
            "p99": "-" if r["kind"] == "throughput" else format_value(s["p99"], unit),
            "min": format_value(s["min"], unit),
            "n": int(s["n"]),
        }
        ts = targets.get(name, [])
        row["target"] = "; ".join(
            ("" if t["metric"] == "median" else f"{t['metric']} ")
            + f"{t['op']} {format_value(t['target'], unit)}"
            for t in ts
        )
        row["result"] = "" if not ts else "pass" if all(t["pass"] for t in ts) else "MISS"
        rows.append(row)
    return rows


def format_tables(payload: Mapping[str, Any]) -> str:
    """The scenario's table, from a (valid) payload alone.

    One row per measurement: median, p99 and min (latencies per call in µs; for a
    throughput p99 is "-": its worst run is the min), the sample count n, and the
    informational target with pass/MISS; then a line counting targets and the runtime.
    """
    rows = table_rows(payload)
    table = format_table(_title(payload), rows, TABLE_COLUMNS, TABLE_ALIGN)
    passed = sum(1 for t in payload["targets"] if t["pass"])
    missed = len(payload["targets"]) - passed
    footer = (f"targets (informational): {passed} passed, {missed} missed; "
              f"runtime {payload['runtime_s']:.1f} s")
    return table + "\n" + footer


def target_counts(payload: Mapping[str, Any]) -> tuple[int, int]:
    """(passed, missed) targets of a payload."""
    passed = sum(1 for t in payload.get("targets", []) if t.get("pass") is True)
    return passed, len(payload.get("targets", [])) - passed


# -- plots ---------------------------------------------------------------------------------

def _matplotlib_available() -> bool:
    global _warned_no_matplotlib
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if not _warned_no_matplotlib:
            print("bench.report: matplotlib is not installed, so no plots are drawn "
                  "(pip install -e '.[bench]' or '.[dev]' installs it)", file=sys.stderr,
                  flush=True)
            _warned_no_matplotlib = True
        return False
    return True


def render_plot(spec: Mapping[str, Any], path: Path) -> Path:
    """Draw one plot spec (see bench.schema) into the PNG `path`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter, MaxNLocator

    fig = Figure(figsize=FIG_SIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    series: Sequence[Mapping[str, Any]] = spec["series"]
    if spec["kind"] == "bar":
        categories: list[str] = []
        for s in series:
            for x in s["x"]:
                if str(x) not in categories:
                    categories.append(str(x))
        index = {c: i for i, c in enumerate(categories)}
        k = len(series)
        width = 0.8 / k
        n_bars = sum(len(s["y"]) for s in series)
        for i, s in enumerate(series):
            pos = [index[str(x)] + (i - (k - 1) / 2) * width for x in s["x"]]
            bars = ax.bar(pos, s["y"], width, label=s["label"])
            if n_bars <= BAR_LABEL_MAX:
                ax.bar_label(bars, labels=[compact(v) for v in s["y"]], fontsize=7,
                             padding=2)
        long_labels = sum(len(c) + 2 for c in categories) > 90
        ax.set_xticks(range(len(categories)), categories,
                      rotation=30 if long_labels else 0, ha="right" if long_labels else "center",
                      fontsize=8 if long_labels else 10)
        ax.set_xlim(-0.6, len(categories) - 0.4)
        ax.grid(True, axis="y", which="major", alpha=0.35)
        if spec["yscale"] == "log":
            ax.set_yscale("log")
            ax.grid(True, axis="y", which="minor", alpha=0.12)
            ax.margins(y=0.15)
        else:
            ax.margins(y=0.1)
    else:
        many = max(len(s["x"]) for s in series) > 40
        for s in series:
            ax.plot(s["x"], s["y"], label=s["label"], linewidth=1.6,
                    marker=None if many else "o", markersize=3.5)
        ax.set_xscale(spec["xscale"])
        ax.set_yscale(spec["yscale"])
        ax.grid(True, which="major", alpha=0.35)
        if "log" in (spec["xscale"], spec["yscale"]):
            ax.grid(True, which="minor", alpha=0.12)
        if spec["yscale"] == "linear" and min(v for s in series for v in s["y"]) >= 0:
            ax.set_ylim(bottom=0)
    ys = [abs(v) for s in series for v in s["y"]]
    if spec["yscale"] == "linear" and ys and max(ys) >= 1e4:
        ax.yaxis.set_major_formatter(EngFormatter(sep=""))
    if spec["kind"] == "line" and spec["xscale"] == "linear":
        xs = [abs(v) for s in series for v in s["x"]]
        if xs and max(xs) >= 1e4:
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        if all(float(v).is_integer() for v in xs):  # counts: no ticks at 1.25 readers
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("\n".join(textwrap.wrap(spec["title"], 95)), fontsize=11)
    ax.set_xlabel(spec["xlabel"])
    ax.set_ylabel(spec["ylabel"])
    if len(series) > 1:
        ax.legend(fontsize=8, loc="best", framealpha=0.85)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=DPI)
    tmp.replace(path)
    return path


def render_plots(payload: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Render every plot spec of `payload` to `out_dir/<file>`; return the PNGs written.

    Returns [] (after a message on stderr) when matplotlib is not installed.
    """
    if not payload.get("plots") or not _matplotlib_available():
        return []
    out = Path(out_dir)
    return [render_plot(spec, out / spec["file"]) for spec in payload["plots"]]


# -- command line --------------------------------------------------------------------------

def result_files(directory: Path) -> list[Path]:
    """The scenario result files of a results directory (every *.json but suite.json)."""
    return sorted(p for p in directory.glob("*.json") if p.name != SUITE_FILE)


def load(path: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """The payload in `path` and its problems (None and the reason if it is not JSON)."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, [f"cannot read JSON: {e}"]
    problems = validate(payload)
    if not problems and payload["benchmark"] != path.stem:
        problems.append(f"benchmark {payload['benchmark']!r} does not match the file name")
    return (payload if isinstance(payload, dict) else None), problems


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.report",
        description="Validate benchmark result files, print their tables and redraw their "
                    "plots from the JSON alone.")
    ap.add_argument("dir", type=Path, help="directory holding <scenario>.json result files")
    ap.add_argument("--no-plots", action="store_true", help="only validate and print tables")
    args = ap.parse_args(argv)
    files = result_files(args.dir)
    if not files:
        print(f"bench.report: no result files (*.json) in {args.dir}", file=sys.stderr)
        return 1
    status = 0
    for i, path in enumerate(files):
        payload, problems = load(path)
        if problems or payload is None:
            status = 1
            print(f"bench.report: {path}: INVALID ({len(problems)} problem(s)):",
                  file=sys.stderr)
            for p in problems:
                print(f"  - {p}", file=sys.stderr)
            continue
        if i:
            print()
        print(format_tables(payload), flush=True)
        if not args.no_plots:
            for png in render_plots(payload, args.dir):
                print(f"bench.report: wrote {png}", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
