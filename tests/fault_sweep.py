"""The fault sweep: every I/O call site of a standard workload, failed once with EIO and ENOSPC.

A *call site* is where in rotorshm a call to the durable-I/O door comes from (its kind,
the calling function and the role of the file: `durable_io.call_site`). The sweep

1. runs the workload once under a tracing FaultLayer, per storage layout (levels in
   shard files; every level pinned in shared memory, `pin_above_level=0`), and collects
   every site with its number of calls;
2. for every site and each errno (EIO, ENOSPC), runs the workload again in a fresh
   directory failing the Nth call at that site, for a few N spread over the calls
   (first, last, middle); every site x errno is hit at least once;
3. after each run checks the rules of docs/DESIGN.md "A failed sync is permanent":
   every error the workload sees is a RotorError subclass; the first one after the
   fault names the operation and the file; a failed sync, or any failure that is not a
   full disk, poisons the tree (StorePoisoned from every later insert, flush,
   checkpoint, durability wait and close, `durable_seq` frozen); a full disk on a
   write, rename, truncate or fallocate raises StorageFull and the tree goes on;
   reopening recovers every leaf whose durability was acknowledged, and the root is the
   reference root (tests/reference.py) of exactly the recovered prefix of the leaf stream.

The workload: three opens of one tree, each ending with a close -
  1. interval flush (syncs only when asked), checkpoint every_n_entries(400): batches
     each waited durable (DurabilityToken.wait), insert_durable, an automatic checkpoint;
  2. manual flush, checkpoint memory_threshold(12,000 bytes): batches, flush(), an
     automatic checkpoint, an explicit checkpoint();
  3. interval flush, checkpoint on_close: batches waited durable, close (checkpoint).
Before the second and third opens a torn record is appended to wal.log (a crash in the
middle of a write), so recovery's cut of a torn tail is a site too.

Run standalone for the full table and a JSON report::

    python tests/fault_sweep.py [--samples 3] [--json fault_sweep.json]
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference import leaves, ref_root  # noqa: E402

from rotorshm import (  # noqa: E402
    CheckpointPolicy,
    FlushPolicy,
    RotorError,
    RotorTree,
    RotorTreeConfig,
    StorageFull,
    StorePoisoned,
    TieringConfig,
    durable_io,
)
from rotorshm.segments import tree_segments  # noqa: E402
from rotorshm.store import DurabilityToken, default_name  # noqa: E402

ARITY = 4
LAYOUTS: dict[str, int | None] = {"files": None, "pin0": 0}
ERRNOS = {"EIO": errno.EIO, "ENOSPC": errno.ENOSPC}
WAIT = 30.0  # bound of every durability wait (a failure guard, never reached when correct)


def _config(path: Path, pin: int | None, flush: FlushPolicy,
            ckpt: CheckpointPolicy) -> RotorTreeConfig:
    tiering = TieringConfig() if pin is None else TieringConfig(pin_above_level=pin)
    return RotorTreeConfig(str(path), arity=ARITY, tiering=tiering, flush_policy=flush,
                           checkpoint_policy=ckpt)


# Steps: ("wait", n) insert n and wait for the token; ("insert", n); ("durable",)
# insert_durable one leaf; ("flush",); ("checkpoint",).
PHASES: list[tuple[str, FlushPolicy, CheckpointPolicy, list[tuple]]] = [
    ("interval+every_n", FlushPolicy.interval(3600), CheckpointPolicy.every_n_entries(400),
     [("wait", 300), ("durable",), ("wait", 257), ("wait", 130)]),
    ("manual+memory", FlushPolicy.manual(), CheckpointPolicy.memory_threshold(12_000),
     [("insert", 200), ("insert", 150), ("flush",), ("insert", 200), ("flush",),
      ("insert", 33), ("checkpoint",)]),
    ("interval+on_close", FlushPolicy.interval(3600), CheckpointPolicy.on_close(),
     [("wait", 129), ("wait", 64)]),
]


class _Roots:
    """Reference roots of prefixes of the leaf stream (cached)."""

    def __init__(self) -> None:
        self._cache: dict[int, bytes | None] = {}

    def __call__(self, size: int) -> bytes | None:
        if size not in self._cache:
            self._cache[size] = ref_root(leaves(size), ARITY)
        return self._cache[size]


ROOTS = _Roots()


@dataclass
class Run:
    """What one workload run saw."""

    layout: str
    site: str
    errno: str
    nth: int
    fired: bool = False
    fired_path: str = ""
    first_error: str = ""  # "Class: message" of the first error after the fault
    poisoned: bool = False
    storage_full: bool = False
    acked: int = 0
    recovered: int = -1
    lost: int = 0
    wrong_roots: int = 0
    problems: list[str] = field(default_factory=list)


class Workload:
    """The standard workload, checking the rules as it goes (see the module doc)."""

    def __init__(self, path: Path, pin: int | None, run: Run | None = None,
                 layer: durable_io.FaultLayer | None = None) -> None:
        self.path = path
        self.pin = pin
        self.run = run if run is not None else Run("", "", "", 0)
        self.layer = layer
        self.tree: RotorTree | None = None
        self.frozen_durable = -1

    # -- bookkeeping ------------------------------------------------------------------------

    def problem(self, text: str) -> None:
        self.run.problems.append(text)

    def ack(self, size: int) -> None:
        self.run.acked = max(self.run.acked, size)

    def saw(self, what: str, exc: BaseException) -> None:
        """An error reached the caller: check its type and, if first after the fault, text."""
        run = self.run
        if not isinstance(exc, RotorError):
            self.problem(f"{what}: not a RotorError: {type(exc).__name__}: {exc}")
            return
        if isinstance(exc, StorePoisoned):
            run.poisoned = True
        elif isinstance(exc, StorageFull):
            run.storage_full = True
        else:
            self.problem(f"{what}: unexpected {type(exc).__name__}: {exc}")
        fired = self.layer is not None and self.layer.fired_call is not None
        if fired and not run.first_error:
            call = self.layer.fired_call  # type: ignore[union-attr]
            run.first_error = f"{type(exc).__name__}: {exc}"
            text = str(exc)
            if call.kind not in text:
                self.problem(f"{what}: the error does not name the operation {call.kind!r}: "
                             f"{text}")
            if os.path.basename(call.path.rstrip("/")) not in text:
                self.problem(f"{what}: the error does not name the file {call.path!r}: {text}")

    def check_tree(self, when: str) -> None:
        """Size covers every acknowledged leaf; root is the reference root of the prefix."""
        tree = self.tree
        assert tree is not None
        size = tree.size
        if size < self.run.acked:
            self.run.lost = max(self.run.lost, self.run.acked - size)
            self.problem(f"{when}: acknowledged {self.run.acked} leaves, found {size}")
        if tree.root != ROOTS(size):
            self.run.wrong_roots += 1
            self.problem(f"{when}: root of {size} leaves differs from the reference root")

    # -- steps --------------------------------------------------------------------------------

    def step(self, what: str, fn: Callable[[], object], on_ok: Callable[[], None],
             may_land: int = 0, done_before: Callable[[], bool] | None = None) -> bool:
        """Run one call; True if it returned. Checks refusal once poisoned.

        A call that raises has changed nothing, except `may_land` leaves of an
        insert_durable whose insert landed and whose sync then failed (StorePoisoned).
        A poisoned tree refuses every call, except one whose outcome `done_before` says
        was settled before the poisoning (a wait for a record already durable then: a sync
        started at the WAL write may finish before an automatic checkpoint fails).
        """
        tree = self.tree
        assert tree is not None
        was_poisoned = tree.poisoned is not None
        before = tree.size
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - every error is checked by saw()
            self.saw(what, exc)
            landed = tree.size - before
            if landed and not (landed == may_land and isinstance(exc, StorePoisoned)):
                self.problem(f"{what} raised but changed the size {before} -> {tree.size}")
            if isinstance(exc, StorePoisoned) and tree.poisoned is None:
                self.problem(f"{what} raised StorePoisoned but the tree is not poisoned")
            return False
        if was_poisoned and not (done_before is not None and done_before()):
            self.problem(f"a poisoned tree accepted {what}")
        on_ok()
        return True

    def insert(self, n: int, wait: bool) -> None:
        tree = self.tree
        assert tree is not None
        start = tree.size
        token: list[DurabilityToken] = []

        def call() -> None:
            token.append(tree.insert_many(leaves(n, start))[1])

        if not self.step(f"insert of {n}", call, lambda: None):
            return
        if tree.size != start + n:
            self.problem(f"insert of {n} returned but the size is {tree.size}")
        if wait:
            def waited() -> None:
                if not token[0].wait(WAIT):
                    raise AssertionError("token.wait timed out")

            # durable_seq is frozen once poisoned: a record at or below it was durable before
            self.step("token.wait", waited, lambda: self.ack(start + n),
                      done_before=lambda: token[0].seq <= tree.durable_seq)

    def insert_durable(self) -> None:
        tree = self.tree
        assert tree is not None
        size = tree.size
        self.step("insert_durable", lambda: tree.insert_durable(leaves(1, size)[0]),
                  lambda: self.ack(size + 1), may_land=1)

    def refusals(self) -> None:
        """Once poisoned: every write and wait raises StorePoisoned, durable_seq is frozen."""
        tree = self.tree
        assert tree is not None
        self.frozen_durable = tree.durable_seq
        size = tree.size
        probes: list[tuple[str, Callable[[], object]]] = [
            ("insert", lambda: tree.insert_many(leaves(3, size))),
            ("insert_durable", lambda: tree.insert_durable(leaves(1, size)[0])),
            ("flush", tree.flush),
            ("checkpoint", tree.checkpoint),
        ]
        if tree.written_seq > tree.durable_seq:
            token = DurabilityToken(tree.written_seq, tree)
            probes.append(("token.wait", lambda: token.wait(WAIT)))
        for what, fn in probes:
            try:
                fn()
            except StorePoisoned:
                pass
            except Exception as exc:  # noqa: BLE001
                self.problem(f"poisoned {what} raised {type(exc).__name__}, not StorePoisoned")
            else:
                self.problem(f"a poisoned tree accepted {what}")
        if tree.size != size:
            self.problem("a poisoned tree changed its size")
        if tree.durable_seq != self.frozen_durable:
            self.problem("durable_seq moved after poisoning")

    def phase(self, name: str, flush: FlushPolicy, ckpt: CheckpointPolicy,
              steps: list[tuple]) -> None:
        cfg = _config(self.path, self.pin, flush, ckpt)
        try:
            self.tree = tree = RotorTree.open(cfg)
        except Exception as exc:  # noqa: BLE001 - a failed open holds nothing
            self.saw(f"{name}: open", exc)
            self.check_no_segments(f"{name}: failed open")
            return
        try:
            self.check_tree(f"{name}: open")
            for step in steps:
                if tree.poisoned is not None:
                    break
                op = step[0]
                if op in ("wait", "insert"):
                    self.insert(step[1], op == "wait")
                elif op == "durable":
                    self.insert_durable()
                elif op == "flush":
                    self.step("flush", tree.flush, lambda: self.ack(tree.size))
                elif op == "checkpoint":
                    self.step("checkpoint", tree.checkpoint, lambda: self.ack(tree.size))
            if tree.poisoned is not None:
                self.run.poisoned = True
                self.refusals()
        finally:
            size = tree.size
            poisoned = tree.poisoned is not None
            try:
                tree.close()
            except Exception as exc:  # noqa: BLE001
                self.saw(f"{name}: close", exc)
                if poisoned and not isinstance(exc, StorePoisoned):
                    self.problem(f"close of a poisoned tree raised {type(exc).__name__}")
            else:
                if poisoned:
                    self.problem("close() of a poisoned tree claimed success")
                self.ack(size)
            if not tree.closed:
                self.problem("close() left the tree open")
            self.tree = None
            self.check_no_segments(f"{name}: close")

    def check_no_segments(self, when: str) -> None:
        left = tree_segments(default_name(str(self.path)))
        if left:
            self.problem(f"{when}: segments left in /dev/shm: {left}")
            from rotorshm.segments import unlink_segment

            for seg in left:
                unlink_segment("/" + seg)

    def tear_wal(self) -> None:
        """A crash in the middle of a write: half a record header at the end of wal.log."""
        wal = self.path / "wal.log"
        if wal.exists():
            with open(wal, "ab") as f:
                f.write(b"\x2a" * 7)

    def run_all(self) -> None:
        for k, (name, flush, ckpt, steps) in enumerate(PHASES):
            if k:
                self.tear_wal()
            self.phase(name, flush, ckpt, steps)

    def reopen_check(self) -> None:
        """Reopen without faults: every acknowledged leaf back, the reference root."""
        cfg = _config(self.path, self.pin, FlushPolicy.manual(), CheckpointPolicy.manual())
        try:
            self.tree = RotorTree.open(cfg)
        except Exception as exc:  # noqa: BLE001
            self.problem(f"reopen failed: {type(exc).__name__}: {exc}")
            self.run.wrong_roots += 1
            return
        try:
            self.run.recovered = self.tree.size
            self.check_tree("reopen")
        finally:
            self.tree.close()
            self.tree = None
        self.check_no_segments("reopen")


# -- the sweep --------------------------------------------------------------------------------


def trace_sites(base: Path, layout: str) -> dict[str, int]:
    """Every call site of the workload in `layout`, with its number of calls."""
    path = base / f"trace-{layout}"
    with durable_io.inject() as layer:
        work = Workload(path, LAYOUTS[layout])
        work.run_all()
    if work.run.problems:
        raise AssertionError(f"the workload fails without faults: {work.run.problems}")
    return layer.sites()


def pick(calls: int, samples: int, salt: int) -> list[int]:
    """Which calls to fail: `samples` of them spread over 1..calls (first, last, middle...)."""
    spread = [1, calls, (calls + 1) // 2, max(1, calls // 4), max(1, 3 * calls // 4)]
    out: list[int] = []
    for n in spread[salt % 2:] + spread[: salt % 2]:  # alternate which comes first
        if n not in out:
            out.append(n)
    return sorted(out[:samples])


def run_one(base: Path, layout: str, site: str, err: str, nth: int) -> Run:
    run = Run(layout, site, err, nth)
    path = base / f"run-{layout}-{abs(hash((site, err, nth))):x}"
    with durable_io.inject(site=site, nth=nth, errno=ERRNOS[err]) as layer:
        work = Workload(path, LAYOUTS[layout], run, layer)
        try:
            work.run_all()
        except Exception as exc:  # noqa: BLE001 - the workload itself must not blow up
            run.problems.append(f"workload crashed: {type(exc).__name__}: {exc}")
    run.fired = layer.fired
    if layer.fired_call is not None:
        run.fired_path = layer.fired_call.path
    if run.fired:
        kind = site.split(" ", 1)[0]
        must_poison = kind in durable_io.SYNC_KINDS or err != "ENOSPC"
        if must_poison and not run.poisoned:
            run.problems.append("the fault should have poisoned the tree (StorePoisoned)")
        if not must_poison and run.poisoned:
            run.problems.append("a full disk poisoned the tree (it should raise StorageFull)")
    work.reopen_check()
    return run


@dataclass
class Report:
    runs: list[Run]
    sites: dict[str, dict[str, int]]  # layout -> site -> calls
    seconds: float

    @property
    def pairs(self) -> set[tuple[str, str, str]]:
        """(layout, site, errno) hit by at least one fired run."""
        return {(r.layout, r.site, r.errno) for r in self.runs if r.fired}

    @property
    def distinct_sites(self) -> set[str]:
        return {s for sites in self.sites.values() for s in sites}

    def missing(self) -> list[tuple[str, str, str]]:
        """(layout, site, errno) that no run managed to fail."""
        hit = self.pairs
        return [(lay, s, e) for lay, sites in self.sites.items() for s in sites
                for e in ERRNOS if (lay, s, e) not in hit]

    def summary(self) -> dict[str, object]:
        return {
            "sites": len(self.distinct_sites),
            "site_layout_pairs": sum(len(s) for s in self.sites.values()),
            "errnos": list(ERRNOS),
            "site_x_errno_tried": len({(s, e) for _, s, e in self.pairs}),
            "runs": len(self.runs),
            "fired": sum(r.fired for r in self.runs),
            "missing": self.missing(),
            "leaves_lost": sum(r.lost for r in self.runs),
            "wrong_roots": sum(r.wrong_roots for r in self.runs),
            "runs_with_problems": sum(bool(r.problems) for r in self.runs),
            "seconds": round(self.seconds, 1),
        }

    def table(self) -> str:
        rows = []
        by: dict[tuple[str, str], list[Run]] = {}
        for r in self.runs:
            by.setdefault((r.site, r.errno), []).append(r)
        width = max(len(s) for s in self.distinct_sites)
        rows.append(f"{'call site':<{width}}  {'EIO':<22}  {'ENOSPC':<22}")
        for site in sorted(self.distinct_sites):
            cells = []
            for e in ERRNOS:
                runs = [r for r in by.get((site, e), []) if r.fired]
                seen = sorted({r.first_error.split(":", 1)[0] or "-" for r in runs})
                bad = sum(bool(r.problems) for r in by.get((site, e), []))
                cell = f"{len(runs)}x {'/'.join(seen)}" + (f" {bad} BAD" if bad else "")
                cells.append(f"{cell:<22}")
            rows.append(f"{site:<{width}}  {'  '.join(cells)}")
        s = self.summary()
        rows.append(
            f"{s['sites']} call sites x {len(ERRNOS)} errnos: {s['site_x_errno_tried']} "
            f"site x errno pairs tried in {s['runs']} runs ({s['fired']} fired), "
            f"{s['leaves_lost']} leaves lost, {s['wrong_roots']} wrong roots, "
            f"{s['runs_with_problems']} runs with problems, {s['seconds']} s"
        )
        return "\n".join(rows)

    def to_json(self) -> str:
        return json.dumps({"summary": self.summary(), "sites": self.sites,
                           "runs": [asdict(r) for r in self.runs]}, indent=1)


def sweep(base: Path, samples: int = 1, layouts: tuple[str, ...] = tuple(LAYOUTS)) -> Report:
    """Run the whole sweep under `base`; `samples` failed calls per site x errno at most."""
    t0 = time.monotonic()
    runs: list[Run] = []
    sites: dict[str, dict[str, int]] = {}
    for layout in layouts:
        sites[layout] = trace_sites(base, layout)
        for k, (site, calls) in enumerate(sites[layout].items()):
            for j, err in enumerate(ERRNOS):
                for nth in pick(calls, samples, k + j):
                    runs.append(run_one(base, layout, site, err, nth))
    return Report(runs, sites, time.monotonic() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--samples", type=int, default=3,
                        help="failed calls per site x errno (spread over its calls)")
    parser.add_argument("--json", default="fault_sweep.json", help="where to write the report")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fault-sweep-") as tmp:
        report = sweep(Path(tmp), args.samples)
    print(report.table())
    for r in report.runs:
        for p in r.problems:
            print(f"PROBLEM {r.layout} [{r.site}] {r.errno} #{r.nth}: {p}")
    Path(args.json).write_text(report.to_json())
    s = report.summary()
    ok = not s["missing"] and not s["leaves_lost"] and not s["wrong_roots"] \
        and not s["runs_with_problems"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
