"""The result-file schema (version 1) of every benchmark scenario, and its validator.

A scenario writes ``<out>/<scenario>.json`` with exactly these top-level keys::

    benchmark   str      the scenario's name (the file is <benchmark>.json)
    schema      int      1
    machine     object   common.machine_info() (a scenario may add keys, e.g. contention);
                         its "kernel", when present, is rotorshm.native_info(): {"kernel":
                         str, "lanes": int, "cpu_features": [str], "available": [str]}
    parameters  object   what was run (sizes, counts, seed, quick, ...)
    results     object   measurement name -> result (below)
    targets     list     informational targets (below)
    plots       list     plot specs (below), rendered by bench.report.render_plots
    runtime_s   number   wall time of the scenario

A result is ``{"kind", "unit", "summary", "samples", ...}`` plus any descriptive keys:
kind is "throughput" (samples: per-run rates), "latency" (unit "ns", samples: per-call
ns, at most 20,000, evenly strided with the stride in "samples_stride") or "value"
(samples: the values); summary is common.summarize(all samples) - median, p99, mean,
min, max, n. A target is ``{"measurement", "metric", "op", "target", "unit", "observed",
"pass"}``; a plot is ``{"file", "title", "xlabel", "ylabel", "xscale", "yscale", "kind",
"series": [{"label", "x", "y"}]}``.

`validate(payload)` lists every problem it finds (an empty list means valid). It only
reads the payload; no third-party dependency.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

SCHEMA_VERSION = 1
SAMPLE_CAP = 20_000

TOP_LEVEL: dict[str, type | tuple[type, ...]] = {
    "benchmark": str,
    "schema": int,
    "machine": dict,
    "parameters": dict,
    "results": dict,
    "targets": list,
    "plots": list,
    "runtime_s": (int, float),
}
KINDS = ("throughput", "latency", "value")
SUMMARY_KEYS = ("median", "p99", "mean", "min", "max", "n")
TARGET_KEYS = ("measurement", "metric", "op", "target", "unit", "observed", "pass")
OPS = (">=", "<=")
PLOT_KEYS = ("file", "title", "xlabel", "ylabel", "xscale", "yscale", "kind", "series")
SERIES_KEYS = ("label", "x", "y")
SCALES = ("linear", "log")
PLOT_KINDS = ("line", "bar")
KERNEL_KEYS = ("kernel", "lanes", "cpu_features", "available")

# relative slack when comparing floats that should be equal (JSON round trips are exact,
# but a summary may come from a differently ordered sum)
_REL = 1e-9


def is_number(x: object) -> TypeGuard[int | float]:
    """A finite int or float (bool is not a number here)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    return math.isfinite(x)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_REL, abs_tol=1e-12)


def _le(a: float, b: float) -> bool:
    return a <= b or _close(a, b)


def _check_keys(
    obj: Mapping[str, Any], required: Sequence[str], where: str, problems: list[str],
    *, allow_extra: bool,
) -> None:
    for k in required:
        if k not in obj:
            problems.append(f"{where}: missing key {k!r}")
    if not allow_extra:
        for k in obj:
            if k not in required:
                problems.append(f"{where}: unexpected key {k!r}")


def _validate_result(name: str, r: object, problems: list[str]) -> None:
    where = f"results[{name!r}]"
    if not isinstance(r, Mapping):
        problems.append(f"{where}: not an object")
        return
    _check_keys(r, ("kind", "unit", "summary", "samples"), where, problems, allow_extra=True)
    kind = r.get("kind")
    if "kind" in r and kind not in KINDS:
        problems.append(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    unit = r.get("unit")
    if "unit" in r and (not isinstance(unit, str) or not unit):
        problems.append(f"{where}: unit must be a non-empty string, got {unit!r}")
    if kind == "latency" and isinstance(unit, str) and unit != "ns":
        problems.append(f"{where}: a latency's unit must be 'ns', got {unit!r}")

    summary = r.get("summary")
    good_summary = False
    if "summary" in r:
        if not isinstance(summary, Mapping):
            problems.append(f"{where}.summary: not an object")
        else:
            before = len(problems)
            _check_keys(summary, SUMMARY_KEYS, f"{where}.summary", problems, allow_extra=True)
            for k in SUMMARY_KEYS:
                if k in summary and not is_number(summary[k]):
                    problems.append(f"{where}.summary.{k}: not a finite number: {summary[k]!r}")
            n = summary.get("n")
            if is_number(n) and (n < 1 or n != int(n)):
                problems.append(f"{where}.summary.n: must be a positive whole number, got {n}")
            if len(problems) == before:
                good_summary = True
                lo, hi = summary["min"], summary["max"]
                for k in ("median", "p99", "mean"):
                    if not (_le(lo, summary[k]) and _le(summary[k], hi)):
                        problems.append(f"{where}.summary: {k} {summary[k]} outside "
                                        f"min..max {lo}..{hi}")

    samples = r.get("samples")
    good_samples = False
    if "samples" in r:
        if not isinstance(samples, list):
            problems.append(f"{where}.samples: not a list")
        elif not samples:
            problems.append(f"{where}.samples: empty")
        else:
            bad = [i for i, x in enumerate(samples) if not is_number(x)]
            if bad:
                problems.append(f"{where}.samples: {len(bad)} non-numeric value(s), first at "
                                f"index {bad[0]}: {samples[bad[0]]!r}")
            else:
                good_samples = True
            if kind == "latency" and len(samples) > SAMPLE_CAP:
                problems.append(f"{where}.samples: {len(samples):,} samples, more than the cap "
                                f"of {SAMPLE_CAP:,} (stride them and note samples_stride)")

    stride = r.get("samples_stride", 1)
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        problems.append(f"{where}.samples_stride: must be a positive integer, got {stride!r}")
        return
    if good_summary and good_samples:
        assert isinstance(summary, Mapping) and isinstance(samples, list)
        n = int(summary["n"])
        want = -(-n // stride)
        if len(samples) != want:
            problems.append(f"{where}: {len(samples)} samples, but summary.n={n} with stride "
                            f"{stride} means {want}")
        elif stride == 1:
            if not (_close(min(samples), summary["min"]) and _close(max(samples), summary["max"])):
                problems.append(f"{where}: summary min/max {summary['min']}/{summary['max']} are "
                                f"not those of the samples {min(samples)}/{max(samples)}")
        elif not (_le(summary["min"], min(samples)) and _le(max(samples), summary["max"])):
            problems.append(f"{where}: samples outside the summary's min..max")


def _validate_target(
    i: int, t: object, results: Mapping[str, Any], problems: list[str]
) -> None:
    where = f"targets[{i}]"
    if not isinstance(t, Mapping):
        problems.append(f"{where}: not an object")
        return
    before = len(problems)
    _check_keys(t, TARGET_KEYS, where, problems, allow_extra=True)
    for k in ("measurement", "metric", "unit"):
        if k in t and not isinstance(t[k], str):
            problems.append(f"{where}.{k}: not a string: {t[k]!r}")
    if "op" in t and t["op"] not in OPS:
        problems.append(f"{where}.op: {t['op']!r} is not one of {', '.join(OPS)}")
    for k in ("target", "observed"):
        if k in t and not is_number(t[k]):
            problems.append(f"{where}.{k}: not a finite number: {t[k]!r}")
    if "pass" in t and not isinstance(t["pass"], bool):
        problems.append(f"{where}.pass: not a boolean: {t['pass']!r}")
    if len(problems) != before:
        return
    ok = t["observed"] >= t["target"] if t["op"] == ">=" else t["observed"] <= t["target"]
    if ok != t["pass"]:
        problems.append(f"{where}: pass={t['pass']} but observed {t['observed']} {t['op']} "
                        f"{t['target']} is {ok}")
    r = results.get(t["measurement"])
    if not isinstance(r, Mapping):
        problems.append(f"{where}: measurement {t['measurement']!r} is not in results")
        return
    if r.get("unit") != t["unit"]:
        problems.append(f"{where}: unit {t['unit']!r} differs from the result's "
                        f"unit {r.get('unit')!r}")
    summary = r.get("summary")
    if isinstance(summary, Mapping):
        value = summary.get(t["metric"])
        if not is_number(value):
            problems.append(f"{where}: metric {t['metric']!r} is not in the summary of "
                            f"{t['measurement']!r}")
        elif not _close(float(value), float(t["observed"])):
            problems.append(f"{where}: observed {t['observed']} differs from the result's "
                            f"{t['metric']} {value}")


def _validate_plot(i: int, p: object, benchmark: str | None, problems: list[str]) -> str | None:
    where = f"plots[{i}]"
    if not isinstance(p, Mapping):
        problems.append(f"{where}: not an object")
        return None
    _check_keys(p, PLOT_KEYS, where, problems, allow_extra=False)
    f = p.get("file")
    if "file" in p:
        if not isinstance(f, str) or not f.endswith(".png") or "/" in f or "\\" in f:
            problems.append(f"{where}.file: must be a bare '<name>.png' file name, got {f!r}")
            f = None
        elif benchmark is not None and not f.startswith(f"{benchmark}_"):
            problems.append(f"{where}.file: {f!r} does not start with '{benchmark}_'")
    for k in ("title", "xlabel", "ylabel"):
        if k in p and (not isinstance(p[k], str) or not p[k].strip()):
            problems.append(f"{where}.{k}: must be a non-empty string, got {p[k]!r}")
    for k in ("xscale", "yscale"):
        if k in p and p[k] not in SCALES:
            problems.append(f"{where}.{k}: {p[k]!r} is not one of {', '.join(SCALES)}")
    kind = p.get("kind")
    if "kind" in p and kind not in PLOT_KINDS:
        problems.append(f"{where}.kind: {kind!r} is not one of {', '.join(PLOT_KINDS)}")
    if kind == "bar" and p.get("xscale") == "log":
        problems.append(f"{where}: a bar chart's x axis is categorical; xscale must be 'linear'")
    series = p.get("series")
    if "series" not in p:
        return f if isinstance(f, str) else None
    if not isinstance(series, list) or not series:
        problems.append(f"{where}.series: must be a non-empty list")
        return f if isinstance(f, str) else None
    for j, s in enumerate(series):
        sw = f"{where}.series[{j}]"
        if not isinstance(s, Mapping):
            problems.append(f"{sw}: not an object")
            continue
        _check_keys(s, SERIES_KEYS, sw, problems, allow_extra=False)
        if "label" in s and not isinstance(s["label"], str):
            problems.append(f"{sw}.label: not a string: {s['label']!r}")
        x, y = s.get("x"), s.get("y")
        if not isinstance(x, list) or not isinstance(y, list):
            if "x" in s and not isinstance(x, list):
                problems.append(f"{sw}.x: not a list")
            if "y" in s and not isinstance(y, list):
                problems.append(f"{sw}.y: not a list")
            continue
        if len(x) != len(y):
            problems.append(f"{sw}: x has {len(x)} values but y has {len(y)}")
        if not y:
            problems.append(f"{sw}: no points")
        bad_y = [v for v in y if not is_number(v)]
        if bad_y:
            problems.append(f"{sw}.y: non-numeric value(s), e.g. {bad_y[0]!r}")
        elif p.get("yscale") == "log" and any(v <= 0 for v in y):
            problems.append(f"{sw}.y: values <= 0 on a log axis")
        if kind == "bar":
            if any(not (isinstance(v, str) or is_number(v)) for v in x):
                problems.append(f"{sw}.x: bar categories must be strings or numbers")
            elif len({str(v) for v in x}) != len(x):
                problems.append(f"{sw}.x: repeated bar category")
        else:
            bad_x = [v for v in x if not is_number(v)]
            if bad_x:
                problems.append(f"{sw}.x: a line plot needs numeric x, e.g. got {bad_x[0]!r}")
            elif p.get("xscale") == "log" and any(v <= 0 for v in x):
                problems.append(f"{sw}.x: values <= 0 on a log axis")
    return f if isinstance(f, str) else None


def _validate_kernel(k: object, problems: list[str]) -> None:
    """machine.kernel: the hashing kernel the run used (rotorshm.native_info())."""
    where = "payload.machine.kernel"
    if not isinstance(k, Mapping):
        problems.append(f"{where}: expected object, got {type(k).__name__}")
        return
    _check_keys(k, KERNEL_KEYS, where, problems, allow_extra=True)
    if "kernel" in k and not isinstance(k["kernel"], str):
        problems.append(f"{where}.kernel: expected str")
    lanes = k.get("lanes")
    if "lanes" in k and (isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1):
        problems.append(f"{where}.lanes: expected an integer >= 1, got {lanes!r}")
    for key in ("cpu_features", "available"):
        v = k.get(key)
        if key in k and (not isinstance(v, list) or not all(isinstance(x, str) for x in v)):
            problems.append(f"{where}.{key}: expected a list of str")
    avail = k.get("available")
    if isinstance(avail, list) and isinstance(k.get("kernel"), str) and k["kernel"] not in avail:
        problems.append(f"{where}: kernel {k['kernel']!r} is not among the available ones")


def validate(payload: object) -> list[str]:
    """Every way `payload` departs from the result schema; empty when it is valid."""
    problems: list[str] = []
    if not isinstance(payload, Mapping):
        return [f"payload: not an object but {type(payload).__name__}"]
    _check_keys(payload, tuple(TOP_LEVEL), "payload", problems, allow_extra=False)
    for k, types in TOP_LEVEL.items():
        if k not in payload:
            continue
        v = payload[k]
        if isinstance(v, bool) or not isinstance(v, types):
            want = types.__name__ if isinstance(types, type) else "number"
            problems.append(f"payload.{k}: expected {want}, got {type(v).__name__}")
    benchmark = payload.get("benchmark")
    if isinstance(benchmark, str) and not benchmark.isidentifier():
        problems.append(f"payload.benchmark: {benchmark!r} is not a scenario name")
    if payload.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
        problems.append(f"payload.schema: {payload['schema']!r}, this validator knows "
                        f"version {SCHEMA_VERSION}")
    runtime = payload.get("runtime_s")
    if "runtime_s" in payload and (not is_number(runtime) or float(runtime) < 0):
        problems.append(f"payload.runtime_s: must be a finite number >= 0, got {runtime!r}")

    machine = payload.get("machine")
    if isinstance(machine, Mapping) and machine.get("kernel") is not None:
        _validate_kernel(machine["kernel"], problems)

    results = payload.get("results")
    if isinstance(results, Mapping):
        if not results:
            problems.append("payload.results: no results")
        for name, r in results.items():
            _validate_result(str(name), r, problems)
    else:
        results = {}
    targets = payload.get("targets")
    if isinstance(targets, list):
        for i, t in enumerate(targets):
            _validate_target(i, t, results, problems)
    plots = payload.get("plots")
    if isinstance(plots, list):
        files: set[str] = set()
        for i, p in enumerate(plots):
            f = _validate_plot(i, p, benchmark if isinstance(benchmark, str) else None,
                               problems)
            if f is not None:
                if f in files:
                    problems.append(f"plots[{i}].file: {f!r} used by an earlier plot")
                files.add(f)
    return problems
