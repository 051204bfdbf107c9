"""Shared harness of the benchmark scenarios: machine info, timing, statistics, output.

Timing conventions, the same in every scenario:

* every call is timed on its own with ``time.perf_counter_ns`` and nothing is subtracted,
  so a per-call sample includes the two timer reads (``timer_overhead_ns`` measures them);
* inputs (random indices, proofs to verify, ...) are prepared before the loop, so neither
  the RNG nor the preparation is timed;
* the garbage collector stays enabled (its pauses are part of what a user sees), but
  before a timed loop everything already alive is collected and frozen, so a collection
  inside the loop does not rescan the benchmark's own input pools;
* ``time_interleaved`` measures several latencies in interleaved rounds, so a slow phase
  of a shared machine is spread over all of them rather than biasing one;
* ``summarize`` gives the median (mean of the two middle values for an even count) and
  percentiles by linear interpolation between closest ranks (numpy's default).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import importlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from rotorshm.segments import SHM_DIR as SHM_DIR
from rotorshm.segments import tree_segments
from rotorshm.spawn import python_argv, rotorshm_argv

T = TypeVar("T")
N = TypeVar("N", int, float)

# No tqdm monitor thread: nothing of ours should wake up inside a timed loop.
tqdm.monitor_interval = 0

_quiet = False


# -- progress ------------------------------------------------------------------------------

def set_quiet(quiet: bool) -> None:
    """Turn progress bars (and `log` lines) off for the rest of the run."""
    global _quiet
    _quiet = quiet


def progress_enabled() -> bool:
    """Progress goes to stderr, only when it is a terminal and --quiet was not given."""
    return not _quiet and sys.stderr.isatty()


def progress(
    iterable: Iterable[T], *, total: int | None = None, desc: str = "", leave: bool = False
) -> Iterator[T]:
    """`iterable` wrapped in a tqdm bar on stderr (a plain iterator when progress is off).

    Keep bars outside timed regions: wrap the loop over runs or measurements, not the
    loop of calls being timed.
    """
    if not progress_enabled():
        yield from iterable
        return
    bar = tqdm(iterable, total=total, desc=desc, leave=leave, file=sys.stderr,
               dynamic_ncols=True)
    try:
        yield from bar
    finally:
        bar.close()


class Steps:
    """A bar over a known number of named steps: call `advance(label)` as each one starts.

    Use it as a context manager; it shows nothing when progress is off.
    """

    def __init__(self, total: int, desc: str = "") -> None:
        self._bar: Any = None
        if progress_enabled():
            self._bar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr,
                             dynamic_ncols=True)
        self._started = False

    def advance(self, label: str) -> None:
        """Mark the previous step done and name the one starting now."""
        if self._bar is None:
            return
        if self._started:
            self._bar.update(1)
        self._started = True
        self._bar.set_postfix_str(label, refresh=True)

    def __enter__(self) -> Steps:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            if self._started:
                self._bar.update(1)
            self._bar.close()


def log(message: str) -> None:
    """A status line on stderr, unless --quiet."""
    if not _quiet:
        sys.stdout.flush()
        print(message, file=sys.stderr, flush=True)


# -- machine -------------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str, module: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        pass
    try:
        mod = __import__(module)
    except ImportError:
        return "not installed"
    return str(getattr(mod, "__version__", "unknown"))


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True, text=True, timeout=5, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    """Where and when the benchmark ran: enough to tell two result files apart."""
    try:
        affinity: list[int] | None = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = None
    rotorshm_version = _version("rotorshm", "rotorshm")
    kernel: dict[str, Any] | None = None
    try:
        import rotorshm

        rotorshm_version = rotorshm.__version__
        kernel = dict(rotorshm.native_info())
    except ImportError:
        pass
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "rotorshm": rotorshm_version,
        "rotorshm_git": _git_commit(),
        "blake3": _version("blake3", "blake3"),
        "kernel": kernel,
        "loadavg_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def preemptions() -> int:
    """Involuntary context switches of this process so far (0 where unsupported).

    The difference over a measurement says how often another task took the CPU away:
    a large number means the machine was busy and the latencies are contaminated.
    """
    try:
        import resource
    except ImportError:
        return 0
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw)


def cpu_times() -> dict[int, tuple[int, int]]:
    """(busy, total) jiffies of every CPU from /proc/stat; empty where unavailable."""
    out: dict[int, tuple[int, int]] = {}
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                name, *fields = line.split()
                if not name.startswith("cpu") or name == "cpu":
                    continue
                v = [int(x) for x in fields[:8]]
                idle = v[3] + v[4]  # idle + iowait
                out[int(name[3:])] = (sum(v) - idle, sum(v))
    except (OSError, ValueError, IndexError):
        return {}
    return out


def others_busy(
    before: Mapping[int, tuple[int, int]], after: Mapping[int, tuple[int, int]], cpu: int | None
) -> float | None:
    """Fraction of time the CPUs other than `cpu` were busy between two `cpu_times()`.

    Work on the other CPUs is invisible to this process's preemption count but still
    slows it (shared caches and memory bandwidth, SMT siblings on the host): a value
    well above 0 means the machine was not quiet.
    """
    busy = total = 0
    for c, (b1, t1) in after.items():
        if c == cpu or c not in before:
            continue
        b0, t0 = before[c]
        busy += b1 - b0
        total += t1 - t0
    return busy / total if total > 0 else None


def default_cpu(cpu: int | None) -> int | None:
    """`cpu`, else the highest CPU this process may run on (None where affinity is unsupported)."""
    if cpu is not None:
        return cpu
    try:
        return max(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None


def pin_to_cpu(cpu: int | None = None) -> int | None:
    """Pin this process to one CPU (default: the highest allowed); return it, None if unsupported.

    The scenarios measure one core; pinning keeps the scheduler from migrating the
    process mid-measurement.
    """
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:
        return None
    target = max(allowed) if cpu is None else cpu
    if target not in allowed:
        raise SystemExit(f"cpu {target} is not in this process's affinity set {sorted(allowed)}")
    os.sched_setaffinity(0, {target})
    return target


def serve_argv(*args: str) -> list[str]:
    """argv of a `rotorshm serve` child that runs the rotorshm this process imported."""
    return rotorshm_argv("serve", *args)


def scenario_argv(name: str, *args: str) -> list[str]:
    """argv of a child calling scenario `name`'s ``run(ARGS)`` from this very bench package
    and rotorshm, whatever the working directory."""
    package = sys.modules[__package__ or "bench"]
    return python_argv(f"{package.__name__}.{name}:run", *args, pin=(package,))


def shm_segments(name: str) -> list[str]:
    """Entries of /dev/shm belonging to tree `name` (control block and pinned levels)."""
    return tree_segments(name)


def remove_shm_segments(name: str) -> list[str]:
    """Unlink every /dev/shm entry still named after tree `name`; return the entries found."""
    found = shm_segments(name)
    for entry in found:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(SHM_DIR, entry))
    return found


def smaps_rollup() -> dict[str, int]:
    """/proc/self/smaps_rollup as bytes per field (empty where unavailable)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/smaps_rollup", encoding="ascii") as f:
            for line in f:
                key, sep, rest = line.partition(":")
                parts = rest.split()
                if sep and len(parts) == 2 and parts[1] == "kB":
                    out[key] = int(parts[0]) * 1024
    except (OSError, ValueError):
        return {}
    return out


# -- timing --------------------------------------------------------------------------------

@contextmanager
def frozen_heap() -> Iterator[None]:
    """Collect, then freeze everything alive for the duration of a timed loop."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _loop_n(fn: Callable[[], object], n: int, out: list[int]) -> None:
    clock = time.perf_counter_ns
    append = out.append
    for _ in range(n):
        t0 = clock()
        fn()
        append(clock() - t0)


def _loop_each(fn: Callable[[T], object], inputs: Sequence[T], out: list[int]) -> None:
    clock = time.perf_counter_ns
    append = out.append
    for x in inputs:
        t0 = clock()
        fn(x)
        append(clock() - t0)


def time_ns_samples(fn: Callable[[], object], n: int, warmup: int = 100) -> list[int]:
    """Call `fn()` `warmup` times untimed, then `n` times; return each timed call's ns."""
    if n < 1:
        raise ValueError(f"need at least one sample, got n={n}")
    for _ in range(warmup):
        fn()
    out: list[int] = []
    with frozen_heap():
        _loop_n(fn, n, out)
    return out


def time_ns_each(fn: Callable[[T], object], inputs: Sequence[T], warmup: int = 100) -> list[int]:
    """Call `fn(x)` for the first `warmup` inputs untimed, then for every input; return ns each.

    Use it when each call needs its own argument (a random index, a proof to verify):
    the arguments are drawn before the loop, so drawing them is not timed.
    """
    if not inputs:
        raise ValueError("need at least one input")
    for i in range(min(warmup, len(inputs))):
        fn(inputs[i])
    out: list[int] = []
    with frozen_heap():
        _loop_each(fn, inputs, out)
    return out


@dataclass(frozen=True)
class Case:
    """One latency to measure: `fn()` called `inputs` times, or `fn(x)` for each x of `inputs`."""

    name: str
    fn: Callable[..., object]
    inputs: Sequence[Any] | int


def time_interleaved(
    cases: Sequence[Case],
    rounds: int,
    warmup: int = 100,
    on_round: Callable[[int], None] | None = None,
) -> dict[str, list[int]]:
    """Per-call ns of every case, measured in `rounds` interleaved rounds.

    Round r times the r-th contiguous slice of every case's inputs, case after case, so
    that a slow phase of the machine (a noisy neighbour, a frequency change) is spread
    over all cases instead of landing on whichever one happened to be running. Every case
    is warmed up with `warmup` untimed calls first, and again with a few calls before
    each of its slices. Samples come back in input order (round by round).
    """
    if rounds < 1:
        raise ValueError(f"need at least one round, got {rounds}")

    def count(c: Case) -> int:
        return c.inputs if isinstance(c.inputs, int) else len(c.inputs)

    def run(c: Case, lo: int, hi: int, out: list[int] | None) -> None:
        if isinstance(c.inputs, int):
            if out is None:
                for _ in range(hi - lo):
                    c.fn()
            else:
                _loop_n(c.fn, hi - lo, out)
        elif out is None:
            for x in c.inputs[lo:hi]:
                c.fn(x)
        else:
            _loop_each(c.fn, c.inputs[lo:hi], out)

    for c in cases:
        if count(c) < 1:
            raise ValueError(f"case {c.name!r} has no inputs")
        run(c, 0, min(warmup, count(c)), None)
    results: dict[str, list[int]] = {c.name: [] for c in cases}
    rewarm = min(warmup, 20)
    with frozen_heap():
        for r in range(rounds):
            if on_round is not None:
                on_round(r)
            for c in cases:
                k = count(c)
                lo, hi = k * r // rounds, k * (r + 1) // rounds
                if hi > lo:
                    run(c, lo, min(lo + rewarm, hi), None)
                    run(c, lo, hi, results[c.name])
    return results


def noop() -> None:
    """Does nothing: time it to see the floor every per-call sample includes."""
    return None


def timer_overhead_ns(n: int = 20_000) -> dict[str, float]:
    """Summary of timing an empty call the way `time_ns_samples` times everything."""
    return summarize(time_ns_samples(noop, n, warmup=1_000))


# -- statistics ----------------------------------------------------------------------------

def percentile(sorted_samples: Sequence[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) of already-sorted samples, interpolating between ranks."""
    if not sorted_samples:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} outside 0..1")
    pos = q * (len(sorted_samples) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_samples) - 1)
    frac = pos - lo
    return float(sorted_samples[lo]) + (float(sorted_samples[hi]) - sorted_samples[lo]) * frac


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """median, p99, mean, min (and max) and the count n of `samples`."""
    if not samples:
        raise ValueError("summary of no samples")
    s = sorted(samples)
    n = len(s)
    mid = n // 2
    median = float(s[mid]) if n % 2 else (s[mid - 1] + s[mid]) / 2
    return {
        "median": median,
        "p99": percentile(s, 0.99),
        "mean": math.fsum(s) / n,
        "min": float(s[0]),
        "max": float(s[-1]),
        "n": n,
    }


def rate(count: float, seconds: float) -> float:
    """Operations per second."""
    if seconds <= 0:
        raise ValueError(f"a rate needs a positive duration, got {seconds} s")
    return count / seconds


def cap_samples(samples: Sequence[int], cap: int) -> tuple[list[int], int]:
    """At most `cap` samples, evenly strided over the whole series; returns (kept, stride)."""
    if cap < 1 or len(samples) <= cap:
        return list(samples), 1
    stride = -(-len(samples) // cap)
    return list(samples[::stride]), stride


# -- results ------------------------------------------------------------------------------

SAMPLE_CAP = 20_000  # raw samples stored per result at most (evenly strided beyond)


def capped_entry(kind: str, samples: Sequence[int], unit: str, **extra: Any) -> dict[str, Any]:
    """A result of many samples: their summary and the raw samples (capped, evenly strided)."""
    stored, stride = cap_samples(samples, SAMPLE_CAP)
    return {"kind": kind, "unit": unit, "summary": summarize(samples),
            "samples": stored, "samples_stride": stride, **extra}


def latency_entry(samples: Sequence[int], **extra: Any) -> dict[str, Any]:
    """A latency result: raw per-call ns (capped, evenly strided) and their summary."""
    return capped_entry("latency", samples, "ns", **extra)


def runs_entry(kind: str, values: Sequence[float], unit: str, **extra: Any) -> dict[str, Any]:
    """A throughput or value result with one value (stored as a float) per run."""
    return {"kind": kind, "unit": unit, "summary": summarize(values),
            "samples": [float(x) for x in values], **extra}


def single_value_entry(value: float, unit: str, **extra: Any) -> dict[str, Any]:
    """A value result of one number (a ratio, a size), stored as given."""
    return {"kind": "value", "unit": unit, "summary": summarize([value]),
            "samples": [value], **extra}


@dataclass(frozen=True)
class Target:
    """An informational target on one measurement's summary metric."""

    key: str  # measurement key in the results
    metric: str  # "median", "p99", ...
    op: str  # ">=" or "<="
    value: float
    unit: str


def evaluate_targets(results: Mapping[str, Any], targets: Iterable[Target]) -> list[dict[str, Any]]:
    """The payload's "targets" list: observed value and pass/miss of every measured target."""
    out = []
    for t in targets:
        if t.key not in results:
            continue
        observed = float(results[t.key]["summary"][t.metric])
        ok = observed >= t.value if t.op == ">=" else observed <= t.value
        out.append({
            "measurement": t.key,
            "metric": t.metric,
            "op": t.op,
            "target": t.value,
            "unit": t.unit,
            "observed": observed,
            "pass": ok,
        })
    return out


# -- output --------------------------------------------------------------------------------

def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def format_table(
    title: str,
    rows: Sequence[Mapping[str, object]],
    columns: Sequence[str],
    align: Mapping[str, str] | None = None,
) -> str:
    """A plain aligned text table; see `print_table`."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    aligns = []
    for j, c in enumerate(columns):
        if align and c in align:
            aligns.append(align[c])
        else:
            numeric = all(isinstance(row.get(c), (int, float, type(None))) for row in rows)
            aligns.append(">" if numeric and rows and j else "<")
    widths = [max([len(c)] + [len(r[j]) for r in cells]) for j, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        cells = zip(values, aligns, widths, strict=True)
        return "  ".join(f"{v:{a}{w}}" for v, a, w in cells).rstrip()

    header = line(columns)
    rule = "-" * len(header)
    out = [title, "=" * max(len(title), len(header)), header, rule]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def print_table(
    title: str,
    rows: Sequence[Mapping[str, object]],
    columns: Sequence[str],
    align: Mapping[str, str] | None = None,
) -> None:
    """Print `rows` (mappings keyed by column name) as an aligned table to stdout.

    Numbers are right-aligned (ints with thousands separators, floats with 2 decimals),
    text left-aligned, None shown as "-"; `align` maps a column to "<" or ">" to override.
    """
    print(format_table(title, rows, columns, align), flush=True)


MIB = 1024 * 1024
TABLE_COLUMNS = ("measurement", "unit", "median", "p99", "min", "n", "target", "result")
TABLE_ALIGN = {"measurement": "<", "unit": "<", "median": ">", "p99": ">", "min": ">",
               "n": ">", "target": "<", "result": "<"}


def size_label(n: int) -> str:
    """1,000 -> '1K', 10,000,000 -> '10M' (exact multiples only, else the number)."""
    for unit, div in (("M", 1_000_000), ("K", 1_000)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return f"{n:,}"


def fmt_pct(x: float | None) -> str:
    """A fraction as a whole percentage, "n/a" for None."""
    return "n/a" if x is None else f"{100 * x:.0f}%"


def fmt_value(value: float, unit: str) -> tuple[str, str]:
    """(shown value, shown unit) of a number in `unit` in the scenarios' own tables."""
    if unit == "ns":
        return f"{value / 1000:,.2f}", "us"
    if unit == "bytes":
        return f"{value / MIB:,.2f}", "MiB"
    if unit == "s":
        return f"{value:,.3f}", unit
    if unit.endswith("/s"):
        return f"{value:,.0f}", unit
    return f"{value:,.2f}", unit


def table_rows(results: Mapping[str, Any], verdicts: Sequence[Mapping[str, Any]],
               show_metric: bool = False) -> list[dict[str, object]]:
    """One `TABLE_COLUMNS` row per result (p99 for latencies only), with its target verdict."""
    by_key = {v["measurement"]: v for v in verdicts}
    rows: list[dict[str, object]] = []
    for key, entry in results.items():
        s, unit = entry["summary"], entry["unit"]
        median, shown_unit = fmt_value(s["median"], unit)
        row: dict[str, object] = {
            "measurement": key, "unit": shown_unit, "median": median,
            "p99": fmt_value(s["p99"], unit)[0] if entry["kind"] == "latency" else "-",
            "min": fmt_value(s["min"], unit)[0], "n": int(s["n"]), "target": "", "result": "",
        }
        v = by_key.get(key)
        if v is not None:
            metric = f"{v['metric']} " if show_metric else ""
            row.update(target=f"{metric}{v['op']} {fmt_value(v['target'], v['unit'])[0]}",
                       result="pass" if v["pass"] else "MISS")
        rows.append(row)
    return rows


def _dump(obj: Any, indent: int, level: int) -> str:
    """JSON with nested structure indented but lists of plain numbers kept on one line."""
    pad = " " * (indent * (level + 1))
    end = " " * (indent * level)
    if isinstance(obj, Mapping):
        if not obj:
            return "{}"
        items = [f"{pad}{json.dumps(str(k))}: {_dump(v, indent, level + 1)}"
                 for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(obj, (list, tuple)):
        if all(isinstance(x, (int, float, str, bool, type(None))) for x in obj):
            return json.dumps(list(obj), allow_nan=False)
        items = [pad + _dump(x, indent, level + 1) for x in obj]
        return "[\n" + ",\n".join(items) + "\n" + end + "]"
    return json.dumps(obj, allow_nan=False)


def write_json(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """Write `payload` as JSON (creating parent directories) atomically; return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(_dump(payload, 1, 0) + "\n", encoding="utf-8")
    tmp.replace(p)
    return p


def render_plots(payload: Mapping[str, Any], out_dir: Path, plot_errors_fatal: bool = True
                 ) -> list[Path]:
    """Draw the payload's plots with bench.report (a failure is only logged unless fatal)."""
    report = importlib.import_module(f"{__package__ or 'bench'}.report")
    try:
        pngs: list[Path] = report.render_plots(payload, out_dir)
    except Exception as exc:  # noqa: BLE001 - re-raised unless plotting may fail quietly
        if plot_errors_fatal:
            raise
        log(f"plots failed: {exc!r}")
        return []
    for png in pngs:
        log(f"wrote {png}")
    return pngs


def result_payload(*, benchmark: str, machine: Mapping[str, Any],
                   parameters: Mapping[str, Any], results: Mapping[str, Any],
                   targets: Any, plots: Any, runtime_s: float) -> dict[str, Any]:
    """A scenario's result file, in the shape bench/schema.py checks (schema 1)."""
    return {"benchmark": benchmark, "schema": 1, "machine": machine, "parameters": parameters,
            "results": results, "targets": targets, "plots": plots, "runtime_s": runtime_s}


def write_results(payload: Mapping[str, Any], out_dir: Path, plot_errors_fatal: bool = True
                  ) -> Path:
    """Write `<out_dir>/<benchmark>.json`, then draw its plots; return the JSON path."""
    path = write_json(out_dir / f"{payload['benchmark']}.json", payload)
    log(f"wrote {path}")
    render_plots(payload, out_dir, plot_errors_fatal)
    return path


# -- command line --------------------------------------------------------------------------

# In a source checkout results go to bench/results/; an installed copy (rotorshm.bench) must
# not write into site-packages, so it uses a folder in the working directory.
_HERE = Path(__file__).resolve().parent
DEFAULT_OUT = (_HERE / "results" if (_HERE.parent / "pyproject.toml").is_file()
               else Path.cwd() / "rotorshm-bench-results")


def base_parser(description: str) -> argparse.ArgumentParser:
    """Options every scenario takes: --quick, --out, --quiet, --cpu."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer repetitions")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"directory for the JSON results (default: {DEFAULT_OUT})")
    ap.add_argument("--quiet", action="store_true", help="no progress bars or status lines")
    ap.add_argument("--cpu", type=int, default=None,
                    help="CPU to pin to (default: the highest allowed one)")
    return ap


def quick_or_full(ap: argparse.ArgumentParser, option: str, given: N | None, quick: bool,
                  quick_default: N, full_default: N, minimum: N | None = None) -> N:
    """`given`, else the --quick or full-run default; a usage error if below `minimum`."""
    value = given if given is not None else (quick_default if quick else full_default)
    if minimum is not None and value < minimum:
        ap.error(f"{option} must be at least {minimum}")
    return value
