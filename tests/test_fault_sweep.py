"""Every I/O call site of a standard workload, failed once with EIO and once with ENOSPC.

The sweep itself lives in fault_sweep.py (also runnable standalone, for the full table
and a JSON report); see its module doc for the workload and the rules checked. Here it
runs with one failed call per site x errno (`ROTORSHM_FAULT_SAMPLES` for more), split
by storage layout and errno so that xdist can spread it.
"""

from __future__ import annotations

import os
from pathlib import Path

import fault_sweep
import pytest

from rotorshm import durable_io

SAMPLES = int(os.environ.get("ROTORSHM_FAULT_SAMPLES", "1"))
#: Distinct call sites of the workload over both layouts when this was written (34). A
#: refactoring may move them; the workload losing many of them would be a lost check.
MIN_SITES = 30


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, int]]:
    base = tmp_path_factory.mktemp("sites")
    return {layout: fault_sweep.trace_sites(base, layout) for layout in fault_sweep.LAYOUTS}


def test_the_workload_reaches_every_kind_of_call_at_many_sites(sites):
    everywhere = {s for per in sites.values() for s in per}
    assert len(everywhere) >= MIN_SITES, sorted(everywhere)
    assert {s.split(" ", 1)[0] for s in everywhere} == set(durable_io.KINDS)
    for layout, per in sites.items():
        kinds = {s.split(" ", 1)[0] for s in per}
        # msync is for shard files mapped by the writer; pin0 has none
        want = set(durable_io.KINDS) - ({"msync"} if layout == "pin0" else set())
        assert kinds == want, (layout, sorted(per))
    # the checkpoint of every policy, the WAL's group commit and recovery's cut of a torn tail
    for needle in ("wal.WriteAheadLog.sync", "wal.WriteAheadLog.reset",
                   "truncate wal.WriteAheadLog.__init__", "write_meta/atomic_write",
                   "write_header/atomic_write", "checkpoint.write_crcs"):
        assert any(needle in s for s in everywhere), needle
    assert any("shm:" in s for s in sites["pin0"])


@pytest.mark.parametrize("err", list(fault_sweep.ERRNOS))
@pytest.mark.parametrize("layout", list(fault_sweep.LAYOUTS))
def test_fault_at_every_call_site(tmp_path: Path, layout: str, err: str,
                                  sites: dict[str, dict[str, int]]):
    """Each site x errno: a RotorError naming the call and file, poisoning by the rule,
    every acknowledged leaf back after a reopen, the reference root."""
    runs = []
    for k, (site, calls) in enumerate(sites[layout].items()):
        for nth in fault_sweep.pick(calls, SAMPLES, k):
            runs.append(fault_sweep.run_one(tmp_path, layout, site, err, nth))
    report = fault_sweep.Report(runs, {layout: sites[layout]}, 0.0)
    missing = [m for m in report.missing() if m[2] == err]
    assert missing == [], f"sites no run managed to fail: {missing}"
    problems = [f"[{r.site}] #{r.nth}: {p}" for r in runs for p in r.problems]
    assert problems == [], "\n".join(problems)
    assert sum(r.lost for r in runs) == 0
    assert sum(r.wrong_roots for r in runs) == 0
    assert all(r.recovered >= r.acked for r in runs)
    assert any(r.acked for r in runs)
