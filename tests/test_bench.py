"""The benchmark suite: every scenario runs (quick), writes valid JSON and real PNG plots, and
`python -m bench.report` regenerates the same tables and the same PNGs from the JSON alone.

The scenarios are discovered from the bench package (`bench.__main__.available()`), so a
scenario module added later is covered without editing this file. Nothing here asserts
anything about speed.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import report  # noqa: E402
from bench.__main__ import available  # noqa: E402
from bench.schema import validate  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Scenarios that print their table with report.format_tables, so a run's stdout holds
# exactly the table bench.report regenerates. (Others print their own table; for them the
# regenerated table is compared with format_tables of the JSON only.)
PRINTS_FORMAT_TABLES = {"tree"}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return env


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=_env(), cwd=REPO)


# -- the quick suite end to end ------------------------------------------------------------

def _check_png(path: Path) -> None:
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    img = imread(path)
    height, width = img.shape[0], img.shape[1]
    assert width > 100 and height > 100, (path.name, width, height)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path: scenarios may put their trees (and so the
    daemon's AF_UNIX socket, limited to 107 bytes) under the out dir, and pytest's
    tmp_path is long."""
    with tempfile.TemporaryDirectory(prefix="rsb-") as d:
        yield Path(d)


def test_quick_suite_and_report(short_tmp: Path) -> None:
    pytest.importorskip("matplotlib", reason="the dev extra installs matplotlib")
    scenarios = available()
    assert "tree" in scenarios
    out = short_tmp / "out"
    res = _run("-m", "bench", *scenarios, "--quick", "--out", str(out), timeout=900)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-6000:]

    suite = json.loads((out / "suite.json").read_text())
    assert suite["ok"] is True and suite["quick"] is True
    assert [s["name"] for s in suite["scenarios"]] == scenarios
    assert all(s["status"] == "ok" for s in suite["scenarios"]), suite["scenarios"]

    tables: dict[str, str] = {}
    pngs: dict[str, bytes] = {}
    for name in scenarios:
        path = out / f"{name}.json"
        payload = json.loads(path.read_text())
        assert validate(payload) == [], (name, validate(payload))
        assert payload["benchmark"] == name
        assert payload["plots"], f"{name} draws no plot"
        for spec in payload["plots"]:
            png = out / spec["file"]
            assert png.is_file(), f"{name}: {spec['file']} missing"
            _check_png(png)
            pngs[spec["file"]] = png.read_bytes()
        tables[name] = report.format_tables(payload)
        if name == "durable":  # the WAL torn-tail scan rate over each kind of garbage
            for garbage in ("random", "0xff"):
                entry = payload["results"][f"WAL torn-tail scan, {garbage} garbage"]
                assert entry["unit"] == "MB/s" and entry["summary"]["median"] > 0, entry
        if name in PRINTS_FORMAT_TABLES:
            assert tables[name] in res.stdout, (name, tables[name], res.stdout)
    listed = {f for s in suite["scenarios"] for f in s["plots"]}
    assert listed == set(pngs)
    assert {p.name for p in out.glob("*.png")} == set(pngs)

    # Regenerate from the JSON alone: same tables, same PNG files, byte for byte.
    for png in out.glob("*.png"):
        png.unlink()
    res = _run("-m", "bench.report", str(out), timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    want = "\n\n".join(tables[p.stem] for p in report.result_files(out)) + "\n"
    assert res.stdout == want
    assert {p.name for p in out.glob("*.png")} == set(pngs)
    for f, data in pngs.items():
        assert (out / f).read_bytes() == data, f"{f} differs when redrawn from the JSON"


def test_suite_reports_missing_and_unknown_scenarios(tmp_path: Path) -> None:
    # An unknown name is a usage error and runs nothing.
    res = _run("-m", "bench", "no_such_scenario", "--quick", "--out", str(tmp_path),
               timeout=120)
    assert res.returncode == 2 and "unknown scenario" in res.stderr
    assert not (tmp_path / "suite.json").exists()


_FAKE_GOOD = """
import json, sys
from pathlib import Path
from bench import common, report

def run(argv=None):
    args = common.base_parser("good").parse_args(argv)
    payload = json.loads(Path(__file__).with_name("toy.json").read_text())
    payload["benchmark"] = "good"
    for spec in payload["plots"]:
        spec["file"] = spec["file"].replace("toy_", "good_")
    print(report.format_tables(payload))
    common.write_json(args.out / "good.json", payload)
    report.render_plots(payload, args.out)
    return payload
"""
_FAKE_BOOM = """
def run(argv=None):
    raise RuntimeError("boom")
"""
_FAKE_BAD = """
from bench import common

def run(argv=None):
    args = common.base_parser("bad").parse_args(argv)
    common.write_json(args.out / "bad.json", {"benchmark": "bad", "schema": 1})
    return {}
"""


def test_suite_exit_status(tmp_path: Path) -> None:
    """A copy of the framework with three fake scenarios: one good, one that raises, one
    that writes invalid JSON; the known scenarios are all missing there."""
    pkg = tmp_path / "bench"
    pkg.mkdir()
    for f in ("__init__.py", "__main__.py", "common.py", "report.py", "schema.py"):
        (pkg / f).write_bytes((REPO / "bench" / f).read_bytes())
    (pkg / "toy.json").write_text(json.dumps(minimal_payload()))
    (pkg / "good.py").write_text(_FAKE_GOOD)
    (pkg / "boom.py").write_text(_FAKE_BOOM)
    (pkg / "bad.py").write_text(_FAKE_BAD)
    (pkg / "helper.py").write_text("X = 1\n")  # no run(): not a scenario
    out = tmp_path / "out"
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO)])
    res = subprocess.run([sys.executable, "-m", "bench", "--quick", "--quiet", "--out",
                          str(out)], capture_output=True, text=True, timeout=300, env=env,
                         cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    lines = {line.split()[0]: line for line in res.stdout.splitlines()[-16:]
             if line.startswith("  ")}
    assert "missing" in lines["tree"] and "missing" in lines["peers"]
    assert " ok " in lines["good"] and "targets 1 passed, 1 missed" in lines["good"]
    assert "failed" in lines["boom"] and "exit code 1" in lines["boom"]
    assert "failed" in lines["bad"] and "missing key 'machine'" in lines["bad"]
    assert "helper" not in lines
    assert "RuntimeError: boom" in res.stderr
    suite = json.loads((out / "suite.json").read_text())
    assert suite["ok"] is False
    status = {s["name"]: s["status"] for s in suite["scenarios"]}
    assert status == {"tree": "missing", "durable": "missing", "daemon": "missing",
                      "readers": "missing", "peers": "missing", "http": "missing",
                      "tiles": "missing", "scale": "missing", "bad": "failed",
                      "boom": "failed", "good": "ok"}
    # only missing scenarios: nothing failed
    res = subprocess.run([sys.executable, "-m", "bench", "tree", "peers", "--quiet", "--out",
                          str(out)], capture_output=True, text=True, timeout=300, env=env,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "missing (no module bench/tree.py yet), skipped" in res.stderr


# -- the validator -------------------------------------------------------------------------

def minimal_payload() -> dict[str, Any]:
    """A small valid payload: one throughput, one latency (strided), one value, two plots."""
    lat = [1000, 1200, 900, 5000, 1100]
    return {
        "benchmark": "toy",
        "schema": 1,
        "machine": {"date": "2026-01-01T00:00:00+00:00"},
        "parameters": {"quick": True},
        "results": {
            "insert": {"kind": "throughput", "unit": "leaves/s",
                       "summary": {"median": 2_000_000.0, "p99": 2_400_000.0, "mean": 2e6,
                                   "min": 1_500_000.0, "max": 2_500_000.0, "n": 3},
                       "samples": [1_500_000.0, 2_000_000.0, 2_500_000.0]},
            "proof": {"kind": "latency", "unit": "ns",
                      "summary": {"median": 1100.0, "p99": 4848.0, "mean": 1840.0,
                                  "min": 900.0, "max": 5000.0, "n": 5},
                      "samples": lat[::2], "samples_stride": 2, "arity": 4},
            "size": {"kind": "value", "unit": "bytes",
                     "summary": {"median": 868.0, "p99": 868.0, "mean": 868.0,
                                 "min": 868.0, "max": 868.0, "n": 1},
                     "samples": [868]},
        },
        "targets": [
            {"measurement": "insert", "metric": "median", "op": ">=", "target": 1_000_000,
             "unit": "leaves/s", "observed": 2_000_000.0, "pass": True},
            {"measurement": "proof", "metric": "p99", "op": "<=", "target": 3000,
             "unit": "ns", "observed": 4848.0, "pass": False},
        ],
        "plots": [
            {"file": "toy_lat.png", "title": "Latency", "xlabel": "operation",
             "ylabel": "latency (µs)", "xscale": "linear", "yscale": "log", "kind": "bar",
             "series": [{"label": "median", "x": ["proof"], "y": [1.1]},
                        {"label": "p99", "x": ["proof"], "y": [4.848]}]},
            {"file": "toy_curve.png", "title": "Throughput vs size", "xlabel": "size (leaves)",
             "ylabel": "throughput (leaves/s)", "xscale": "log", "yscale": "linear",
             "kind": "line", "series": [{"label": "a=4", "x": [10, 100, 1000],
                                         "y": [1e6, 2e6, 2.5e6]}]},
        ],
        "runtime_s": 1.5,
    }


def test_validator_accepts_minimal_payload() -> None:
    assert validate(minimal_payload()) == []


def _broken(path: str, value: object = None, *, delete: bool = False) -> dict[str, Any]:
    """minimal_payload() with the item at dotted `path` replaced (or deleted)."""
    payload = minimal_payload()
    *parents, last = path.split(".")
    node: Any = payload
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    key: Any = int(last) if isinstance(node, list) else last
    if delete:
        del node[key]
    else:
        node[key] = value
    return payload


@pytest.mark.parametrize(("payload", "needle"), [
    (_broken("plots", delete=True), "missing key 'plots'"),
    (_broken("runtime_s", delete=True), "missing key 'runtime_s'"),
    (_broken("extra", {}), "unexpected key 'extra'"),
    (_broken("schema", 2), "payload.schema"),
    (_broken("results", []), "payload.results: expected dict"),
    (_broken("results.insert.summary.p99", delete=True), "missing key 'p99'"),
    (_broken("results.insert.summary.n", "3"), "summary.n: not a finite number"),
    (_broken("results.insert.kind", "speed"), "kind 'speed'"),
    (_broken("results.proof.unit", "us"), "latency's unit must be 'ns'"),
    (_broken("results.insert.samples", [1.5e6, "2e6", 2.5e6]), "non-numeric"),
    (_broken("results.insert.samples", [1.5e6, None, 2.5e6]), "non-numeric"),
    (_broken("results.insert.samples", [1.5e6, True, 2.5e6]), "non-numeric"),
    (_broken("results.insert.samples", [1.5e6, math.nan, 2.5e6]), "non-numeric"),
    (_broken("results.insert.samples", "1,2,3"), "samples: not a list"),
    (_broken("results.insert.samples", [1.5e6, 2.5e6]), "2 samples, but summary.n=3"),
    (_broken("results.proof.samples_stride", delete=True), "stride 1 means 5"),
    (_broken("results.insert.summary.max", 3e6), "not those of the samples"),
    (_broken("targets.0.measurement", "nope"), "'nope' is not in results"),
    (_broken("targets.0.pass", False), "pass=False but"),
    (_broken("targets.0.op", ">"), "targets[0].op"),
    (_broken("targets.1.unit", "us"), "differs from the result's unit"),
    (_broken("targets.1.observed", 1100.0), "pass=False but"),
    (_broken("targets.0.observed", 2_100_000.0), "differs from the result's median"),
    (_broken("plots.0.series.1.y", [4.8, 5.0]), "x has 1 values but y has 2"),
    (_broken("plots.1.series.0.x", [10, 100]), "x has 2 values but y has 3"),
    (_broken("plots.1.series.0.x", ["a", "b", "c"]), "needs numeric x"),
    (_broken("plots.0.series.0.y", [0.0]), "<= 0 on a log axis"),
    (_broken("plots.0.xscale", "log"), "categorical"),
    (_broken("plots.0.kind", "pie"), "kind: 'pie'"),
    (_broken("plots.0.file", "../toy.png"), "bare"),
    (_broken("plots.0.file", "other_lat.png"), "does not start with 'toy_'"),
    (_broken("plots.1.file", "toy_lat.png"), "used by an earlier plot"),
    (_broken("plots.1.series", []), "non-empty list"),
    (_broken("plots.1.title", delete=True), "missing key 'title'"),
])
def test_validator_rejects(payload: dict[str, Any], needle: str) -> None:
    problems = validate(payload)
    assert problems, "accepted a broken payload"
    assert any(needle in p for p in problems), problems


def test_validator_rejects_non_objects() -> None:
    assert validate([]) != []
    assert validate(None) != []
    p = minimal_payload()
    p["results"]["insert"] = [1, 2]
    assert any("not an object" in x for x in validate(p))


def test_validator_survives_json_round_trip() -> None:
    p = minimal_payload()
    assert validate(json.loads(json.dumps(p))) == []
    assert validate(copy.deepcopy(p)) == []


# -- tables and plots from a payload -------------------------------------------------------

def test_format_tables() -> None:
    text = report.format_tables(minimal_payload())
    lines = text.splitlines()
    assert lines[0] == "rotorshm bench toy: quick run, 2026-01-01T00:00:00+00:00"
    row = {line.split()[0]: line.split() for line in lines[4:7]}
    assert row["insert"] == ["insert", "leaves/s", "2,000,000", "-", "1,500,000", "3", ">=",
                             "1,000,000", "pass"]
    # ns latencies shown in µs; a p99 target is labelled with its metric
    assert row["proof"] == ["proof", "µs", "1.10", "4.85", "0.90", "5", "p99", "<=", "3.00",
                            "MISS"]
    assert row["size"] == ["size", "bytes", "868", "868", "868", "1"]
    assert lines[-1] == "targets (informational): 1 passed, 1 missed; runtime 1.5 s"


def test_render_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the dev extra installs matplotlib")
    written = report.render_plots(minimal_payload(), tmp_path)
    assert [p.name for p in written] == ["toy_lat.png", "toy_curve.png"]
    for p in written:
        _check_png(p)


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import raises ImportError
    monkeypatch.setattr(report, "_warned_no_matplotlib", False)
    yield


def test_render_plots_without_matplotlib(
    no_matplotlib: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert report.render_plots(minimal_payload(), tmp_path) == []
    assert "matplotlib is not installed" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_report_cli_flags_invalid_files(tmp_path: Path) -> None:
    (tmp_path / "toy.json").write_text(json.dumps(_broken("plots", delete=True)))
    res = _run("-m", "bench.report", str(tmp_path), "--no-plots", timeout=120)
    assert res.returncode == 1 and "missing key 'plots'" in res.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    res = _run("-m", "bench.report", str(empty), timeout=120)
    assert res.returncode == 1 and "no result files" in res.stderr


def test_scenario_without_its_extra_is_skipped_not_failed(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A base install has no granian/httpx/cryptography: http and tiles say so and skip."""
    import importlib

    bench_main = importlib.import_module("bench.__main__")
    monkeypatch.setitem(bench_main.REQUIRES, "tree", ("nosuchextra", ("no_such_module_x",)))
    assert bench_main.missing_extra("tree") == (
        "needs no_such_module_x: pip install 'rotorshm[nosuchextra]'")
    o = bench_main.run_scenario("tree", ["--quick", "--out", str(tmp_path)], tmp_path)
    assert o.status == "skipped" and "rotorshm[nosuchextra]" in o.line()
    assert not (tmp_path / "tree.json").exists()  # nothing ran
    assert bench_main.missing_extra("durable") is None


# -- the scale scenario's own options and its space check ----------------------------------

def test_scenario_options_pass_through_to_one_scenario(tmp_path: Path) -> None:
    res = _run("-m", "bench", "tree", "scale", "--leaves", "5000", "--out", str(tmp_path),
               timeout=60)
    assert res.returncode == 2 and "name exactly one scenario" in res.stderr
    # a billion billion leaves cannot fit: refused before anything is built, saying why
    res = _run("-m", "bench", "scale", "--leaves", str(10**18), "--quiet", "--out",
               str(tmp_path), timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "bench.scale: cannot run: the tree needs about" in res.stderr
    assert "GB are free" in res.stderr
    assert not list(tmp_path.glob("scale-*")), "a tree directory was left behind"


def test_scale_is_run_only_when_named() -> None:
    from bench.__main__ import ON_DEMAND, parse_args

    assert "scale" in ON_DEMAND
    assert parse_args(["scale", "--leaves", "100"]).extra == ["--leaves", "100"]
