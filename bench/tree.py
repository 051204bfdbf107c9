"""In-memory tree benchmark: insert throughput and snapshot / proof latencies on one core.

    python -m bench.tree [--quick] [--out DIR] [--quiet] [--cpu N] [--leaves N] [--samples K]

Measures LeanIMT (no disk, no shared memory):

* ``insert_many`` of N leaves in 10,000-leaf batches for arity 2, 4, 8, 16 with each batch
  as one bytes buffer, and for arity 4 also as a list of 32-byte bytes (median of runs);
* the same (arity 2, 4, 16) under every hashing kernel this CPU runs (python = the blake3
  package, portable, sse41, avx2, avx512), each also as leaves per CPU-second (process
  time, which a busy shared machine distorts less than wall time);
* ``insert_many`` of N leaves in 100,000-leaf batches, arity 4, hash_threads 1 and 2 (the
  only measurement not pinned to one core), and the 2-thread speedup;
* single ``insert`` into an empty tree (rtbench's workload) and on top of an N-leaf arity-4
  tree (rate, and per-call latency);
* at N leaves, arity 4: snapshot, generate_proof, InclusionProof.verify,
  generate_consistency_proof, ConsistencyProof.verify, update_inclusion_proof and the
  to_bytes/from_bytes round trip of both proof kinds (per-call median and p99).

Prints one table, writes ``tree.json`` and four plots (``tree_*.png``, see
bench/README.md) to the out dir. Targets are informational: a miss is reported, never
an error.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rotorshm import (
    ConsistencyProof,
    InclusionProof,
    LeanIMT,
    Snapshot,
    _cpaths,
    depth_for,
    verify_proof_bytes,
)
from rotorshm import kernel as rkernel

from . import common, report

BATCH = 10_000
ARITIES = (2, 4, 8, 16)
KERNEL_ARITIES = (2, 4, 16)
THREAD_BATCH = 100_000
THREADS = (1, 2)
LEAF = 32
WARMUP_BATCHES = 10


@dataclass(frozen=True)
class Params:
    leaves: int
    batch: int
    runs: int
    inserts: int
    samples: int
    warmup: int
    rounds: int
    seed: int
    quick: bool


TARGETS = (
    common.Target("insert_many a=2 buffer", "median", ">=", 8_000_000, "leaves/s"),
    common.Target("insert_many a=4 buffer", "median", ">=", 20_000_000, "leaves/s"),
    common.Target("insert_many a=16 buffer", "median", ">=", 40_000_000, "leaves/s"),
    common.Target("hash_threads=2 speedup", "median", ">=", 1.7, "x"),
    common.Target("insert a=4", "median", ">=", 400_000, "inserts/s"),
    common.Target("insert a=4 from empty", "median", ">=", 400_000, "inserts/s"),
    common.Target("snapshot", "median", "<=", 5_000, "ns"),
    common.Target("generate_proof", "median", "<=", 3_000, "ns"),
    common.Target("proof_bytes", "median", "<=", 1_500, "ns"),
    common.Target("InclusionProof.verify", "median", "<=", 2_500, "ns"),
    common.Target("verify_proof_bytes", "median", "<=", 2_500, "ns"),
    common.Target("generate_consistency_proof", "median", "<=", 5_000, "ns"),
    common.Target("ConsistencyProof.verify", "median", "<=", 5_000, "ns"),
)


def _reference(fn: Callable[[Any], Any], x: Any) -> Any:
    """fn(x) through the Python reference algorithms (node hashes still on the kernel)."""
    with _cpaths.python_paths():
        return fn(x)


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Params]:
    ap = common.base_parser(__doc__.splitlines()[0] if __doc__ else "tree benchmark")
    ap.add_argument("--leaves", type=int, default=None,
                    help="tree size N (default 1,000,000; 50,000 with --quick)")
    ap.add_argument("--samples", type=int, default=None,
                    help="timed calls per latency (default 20,000; 2,000 with --quick)")
    ap.add_argument("--seed", type=int, default=1, help="seed of leaves and random inputs")
    args = ap.parse_args(argv)
    quick = bool(args.quick)
    leaves = common.quick_or_full(ap, "--leaves", args.leaves, quick, 50_000, 1_000_000, 2)
    samples = common.quick_or_full(ap, "--samples", args.samples, quick, 2_000, 20_000, 1)
    params = Params(
        leaves=leaves,
        batch=BATCH,
        runs=3,
        inserts=10_000 if quick else 100_000,
        samples=samples,
        warmup=200 if quick else 1_000,
        rounds=4 if quick else 10,
        seed=args.seed,
        quick=quick,
    )
    return args, params


# -- helpers -------------------------------------------------------------------------------

def max_depth_for(size: int, arity: int) -> int:
    return max(depth_for(size, arity), 1)


def build_tree(data: bytes, arity: int, extra: int = 0) -> LeanIMT:
    """A tree holding `data` (leaves back to back), with room for `extra` more leaves."""
    n = len(data) // LEAF
    tree = LeanIMT(arity, max_depth_for(n + extra, arity))
    step = BATCH * LEAF
    for off in range(0, len(data), step):
        tree.insert_many(data[off : off + step])
    return tree


# -- insert throughput ---------------------------------------------------------------------

def bench_insert_many(
    p: Params, data: bytes, results: dict[str, Any], step: Callable[[str], None]
) -> None:
    """Runs go round-robin over the configurations (run 1 of each, then run 2, ...), so a
    slow phase of the machine does not land on one configuration only."""
    n = p.leaves
    step_bytes = p.batch * LEAF
    buffers = [data[off : off + step_bytes] for off in range(0, len(data), step_bytes)]
    lists = [[b[i : i + LEAF] for i in range(0, len(b), LEAF)] for b in buffers]
    configs: list[tuple[str, int, str, Sequence[Any]]] = [
        (f"insert_many a={a} buffer", a, "buffer", buffers) for a in ARITIES
    ]
    configs.insert(2, ("insert_many a=4 list", 4, "list", lists))
    for _, arity, _, batches in configs:  # untimed: warm the code paths and the allocator
        tree = LeanIMT(arity, max_depth_for(n, arity))
        for b in batches[:WARMUP_BATCHES]:
            tree.insert_many(b)
        del tree
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, *_ in configs}
    roots: dict[str, set[bytes | None]] = {key: set() for key, *_ in configs}
    clock = time.perf_counter_ns
    for r in range(p.runs):
        for key, arity, _, batches in configs:
            step(f"{key} run {r + 1}/{p.runs}")
            tree = LeanIMT(arity, max_depth_for(n, arity))
            batch_ns = []
            with common.frozen_heap():
                start = clock()
                for b in batches:
                    t0 = clock()
                    tree.insert_many(b)
                    batch_ns.append(clock() - t0)
                total = clock() - start
            assert tree.size == n
            roots[key].add(tree.root)
            runs[key].append({
                "seconds": total / 1e9,
                "leaves_per_s": common.rate(n, total / 1e9),
                "batch_ns": batch_ns,
            })
            del tree
    for key, arity, form, _ in configs:
        assert len(roots[key]) == 1, f"{key}: runs disagree on the root"
        root = next(iter(roots[key]))
        assert root is not None
        results[key] = {
            "kind": "throughput",
            "unit": "leaves/s",
            "arity": arity,
            "leaf_form": form,
            "leaves": n,
            "batch": p.batch,
            "root": root.hex(),
            "summary": common.summarize([float(x["leaves_per_s"]) for x in runs[key]]),
            "samples": [x["leaves_per_s"] for x in runs[key]],
            "run_seconds": [x["seconds"] for x in runs[key]],
            "batch_ns": [x["batch_ns"] for x in runs[key]],
        }
    a4 = {results[f"insert_many a=4 {f}"]["root"] for f in ("buffer", "list")}
    assert len(a4) == 1, "buffer and list forms give different roots"


def _timed_build(arity: int, batches: Sequence[bytes], n: int, threads: int = 1
                 ) -> tuple[float, float, bytes | None]:
    """(wall seconds, process CPU seconds, root) of inserting `batches` into a new tree."""
    tree = LeanIMT(arity, max_depth_for(n, arity), hash_threads=threads)
    with common.frozen_heap():
        c0, w0 = time.process_time(), time.perf_counter()
        for b in batches:
            tree.insert_many(b)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    assert tree.size == n
    return wall, cpu, tree.root


def _throughput(n: int, walls: list[float], cpus: list[float], **extra: Any) -> dict[str, Any]:
    rates = [common.rate(n, w) for w in walls]
    return {
        "kind": "throughput",
        "unit": "leaves/s",
        "leaves": n,
        **extra,
        "summary": common.summarize(rates),
        "samples": rates,
        "run_seconds": walls,
        "cpu_seconds": cpus,
        "leaves_per_cpu_s": [common.rate(n, c) for c in cpus],
    }


def bench_kernels(
    p: Params, data: bytes, results: dict[str, Any], step: Callable[[str], None]
) -> None:
    """insert_many under every kernel this CPU runs, runs round-robin over (kernel, arity)."""
    n = p.leaves
    step_bytes = p.batch * LEAF
    buffers = [data[off : off + step_bytes] for off in range(0, len(data), step_bytes)]
    configs = [(k, a) for k in rkernel.available() for a in KERNEL_ARITIES]
    walls: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    cpus: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    roots: dict[int, set[bytes | None]] = {a: set() for a in KERNEL_ARITIES}
    for r in range(p.runs):
        for k, a in configs:
            step(f"kernel {k} a={a} run {r + 1}/{p.runs}")
            with rkernel._use(k):
                wall, cpu, root = _timed_build(a, buffers, n)
            walls[(k, a)].append(wall)
            cpus[(k, a)].append(cpu)
            roots[a].add(root)
    for a, rs in roots.items():
        assert len(rs) == 1, f"arity {a}: kernels disagree on the root"
    for k, a in configs:
        results[f"insert_many a={a} kernel={k}"] = _throughput(
            n, walls[(k, a)], cpus[(k, a)], arity=a, batch=p.batch, kernel=k,
            what=f"insert_many of {p.batch:,}-leaf bytes batches with ROTORSHM_KERNEL={k}")


def bench_threads(
    p: Params, data: bytes, results: dict[str, Any], step: Callable[[str], None]
) -> None:
    """hash_threads 1 and 2 on 100k-leaf batches (unpinned for the duration: 2 threads)."""
    n = p.leaves
    step_bytes = THREAD_BATCH * LEAF
    buffers = [data[off : off + step_bytes] for off in range(0, len(data), step_bytes)]
    pinned = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    walls: dict[int, list[float]] = {t: [] for t in THREADS}
    cpus: dict[int, list[float]] = {t: [] for t in THREADS}
    roots = set()
    try:
        if pinned is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, range(os.cpu_count() or 1))
        for r in range(p.runs):
            for t in THREADS:
                step(f"hash_threads={t} run {r + 1}/{p.runs}")
                wall, cpu, root = _timed_build(4, buffers, n, threads=t)
                walls[t].append(wall)
                cpus[t].append(cpu)
                roots.add(root)
    finally:
        if pinned is not None:
            os.sched_setaffinity(0, pinned)
    assert len(roots) == 1, "hash_threads changed the root"
    for t in THREADS:
        results[f"insert_many a=4 {THREAD_BATCH // 1000}k batches hash_threads={t}"] = \
            _throughput(n, walls[t], cpus[t], arity=4, batch=THREAD_BATCH, hash_threads=t,
                        kernel=rkernel.active(),
                        what=f"insert_many of {THREAD_BATCH:,}-leaf batches, hash_threads={t}, "
                             "not pinned to one CPU")
    speedups = [one / two for one, two in zip(walls[1], walls[2], strict=True)]
    results["hash_threads=2 speedup"] = {
        "kind": "value",
        "unit": "x",
        "summary": common.summarize(speedups),
        "samples": speedups,
        "what": "wall time with hash_threads=1 / with hash_threads=2, run by run",
    }


def bench_insert(
    p: Params, data: bytes, results: dict[str, Any], step: Callable[[str], None]
) -> None:
    rng = random.Random(p.seed + 1)
    blob = rng.randbytes(p.inserts * LEAF)
    leaves = [blob[i : i + LEAF] for i in range(0, len(blob), LEAF)]
    runs = []
    ref_runs = []
    empty_runs = []

    def timed(tree: LeanIMT, items: Sequence[bytes]) -> float:
        """Seconds for tree.insert of every item, one call each, heap frozen."""
        ins = tree.insert
        with common.frozen_heap():
            t0 = time.perf_counter_ns()
            for leaf in items:
                ins(leaf)
            return (time.perf_counter_ns() - t0) / 1e9

    for r in range(p.runs):
        step(f"insert run {r + 1}/{p.runs}")
        # rotortree's own single-insert workload (rtbench): the same leaves into an empty tree
        seconds = timed(LeanIMT(4, max_depth_for(p.inserts, 4)), leaves)
        empty_runs.append(common.rate(p.inserts, seconds))
        tree = build_tree(data, 4, extra=p.inserts)
        seconds = timed(tree, leaves)
        runs.append({"seconds": seconds, "inserts_per_s": common.rate(p.inserts, seconds)})
        # the same on the Python reference path (the "before"), a tenth of the leaves
        few = leaves[: max(len(leaves) // 10, 1)]
        with _cpaths.python_paths():
            ref_runs.append(common.rate(len(few), timed(tree, few)))
        del tree
    results["insert a=4 [python reference]"] = {
        "kind": "throughput",
        "unit": "inserts/s",
        "arity": 4,
        "prefill": p.leaves,
        "inserts": max(p.inserts // 10, 1),
        "summary": common.summarize(ref_runs),
        "samples": ref_runs,
    }
    results["insert a=4 from empty"] = {
        "kind": "throughput",
        "unit": "inserts/s",
        "arity": 4,
        "prefill": 0,
        "inserts": p.inserts,
        "summary": common.summarize(empty_runs),
        "samples": empty_runs,
        "what": "tree.insert(leaf) of the inserts into an empty tree (rtbench's workload)",
    }
    results["insert a=4"] = {
        "kind": "throughput",
        "unit": "inserts/s",
        "arity": 4,
        "prefill": p.leaves,
        "inserts": p.inserts,
        "summary": common.summarize([r["inserts_per_s"] for r in runs]),
        "samples": [r["inserts_per_s"] for r in runs],
        "run_seconds": [r["seconds"] for r in runs],
    }
    step("insert per-call latency")
    tree = build_tree(data, 4, extra=p.inserts)
    results["insert (per call)"] = common.latency_entry(
        common.time_ns_each(tree.insert, leaves, warmup=0),
        arity=4, prefill=p.leaves, what="tree.insert(leaf), one call at a time")


# -- latencies at N leaves -----------------------------------------------------------------

def bench_latencies(
    p: Params, data: bytes, results: dict[str, Any], step: Callable[[str], None]
) -> None:
    n, k, w = p.leaves, p.samples, p.warmup
    step("build tree and inputs")
    tree = build_tree(data, 4)
    snap = tree.snapshot()
    rng = random.Random(p.seed + 2)
    indices = [rng.randrange(n) for _ in range(k)]
    old_sizes = [rng.randint(1, n) for _ in range(k)]
    pairs = []
    for _ in range(k):
        old = rng.randint(1, n)
        pairs.append((old, rng.randrange(old)))

    incl = [snap.generate_proof(i) for i in common.progress(indices, desc="inclusion proofs")]
    cons = [snap.generate_consistency_proof(s)
            for s in common.progress(old_sizes, desc="consistency proofs")]
    upd = [(snap.generate_consistency_proof(old), snap.generate_proof(i, size=old))
           for old, i in common.progress(pairs, desc="update inputs")]
    assert all(x.verify() for x in incl[:1000]) and all(x.verify() for x in cons[:1000])
    incl_bytes = [x.to_bytes() for x in incl]
    cons_bytes = [x.to_bytes() for x in cons]
    assert InclusionProof.from_bytes(incl_bytes[0]) == incl[0]
    assert ConsistencyProof.from_bytes(cons_bytes[0]) == cons[0]
    updated = upd[0][0].update_inclusion_proof(upd[0][1])
    assert updated.root == snap.root and updated.verify()

    def update(pair: tuple[ConsistencyProof, InclusionProof]) -> InclusionProof:
        return pair[0].update_inclusion_proof(pair[1])

    root = snap.root
    assert root is not None
    assert all(verify_proof_bytes(b, root, n) for b in incl_bytes[:1000])

    def verify_blob(blob: bytes) -> bool:
        return verify_proof_bytes(blob, root, n)

    # The Python reference algorithms, measured in the same rounds (the "before" figures):
    # each call enters _cpaths.python_paths(), which adds well under a microsecond.
    ref_incl = [_reference(snap.generate_proof, i) for i in indices]
    ref_cons = [_reference(snap.generate_consistency_proof, s) for s in old_sizes]

    def ref(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return lambda x: _reference(fn, x)

    def inc_round_trip(x: InclusionProof) -> InclusionProof:
        return InclusionProof.from_bytes(x.to_bytes())

    def con_round_trip(x: ConsistencyProof) -> ConsistencyProof:
        return ConsistencyProof.from_bytes(x.to_bytes())

    C = common.Case
    cases: list[tuple[common.Case, str]] = [
        (C("timer overhead (empty call)", common.noop, k), "nothing: the floor of every row"),
        (C("snapshot", tree.snapshot, k), "tree.snapshot()"),
        (C("generate_proof", snap.generate_proof, indices), "snap.generate_proof(random index)"),
        (C("InclusionProof.verify", InclusionProof.verify, incl),
         "proof.verify() on proofs of random indices"),
        (C("generate_consistency_proof", snap.generate_consistency_proof, old_sizes),
         "snap.generate_consistency_proof(random old size in 1..N)"),
        (C("ConsistencyProof.verify", ConsistencyProof.verify, cons),
         "proof.verify() on proofs from random old sizes"),
        (C("update_inclusion_proof", update, upd),
         "cons(old->N).update_inclusion_proof(incl(random index < old, at old)); "
         "includes its verification of both inputs and of the result"),
        (C("inclusion to_bytes+from_bytes", inc_round_trip, incl),
         "InclusionProof.from_bytes(p.to_bytes())"),
        (C("consistency to_bytes+from_bytes", con_round_trip, cons),
         "ConsistencyProof.from_bytes(p.to_bytes())"),
        (C("proof_bytes", snap.proof_bytes, indices),
         "snap.proof_bytes(random index): the binary encoding, gathered in one C call"),
        (C("verify_proof_bytes", verify_blob, incl_bytes),
         "verify_proof_bytes(blob, root, N) on encodings of random indices"),
        (C("consistency_proof_bytes", snap.consistency_proof_bytes, old_sizes),
         "snap.consistency_proof_bytes(random old size in 1..N)"),
        (C("generate_proof [python reference]", ref(snap.generate_proof), indices),
         "the Python reference algorithm (rotorshm._cpaths.python_paths()), same rounds"),
        (C("InclusionProof.verify [python reference]", ref(InclusionProof.verify), ref_incl),
         "the Python reference verifier on proofs it built"),
        (C("generate_consistency_proof [python reference]",
           ref(snap.generate_consistency_proof), old_sizes),
         "the Python reference algorithm, same rounds"),
        (C("ConsistencyProof.verify [python reference]", ref(ConsistencyProof.verify), ref_cons),
         "the Python reference verifier on proofs it built"),
    ]
    samples = common.time_interleaved(
        [c for c, _ in cases], p.rounds, w,
        on_round=lambda r: step(f"latencies round {r + 1}/{p.rounds}"),
    )
    for c, what in cases:
        results[c.name] = common.latency_entry(samples[c.name], arity=4, tree_size=n, what=what)
    for name, blobs in (("inclusion proof size", incl_bytes),
                        ("consistency proof size", cons_bytes)):
        results[name] = common.capped_entry(
            "value", [len(b) for b in blobs], "bytes",
            arity=4, tree_size=n, what="len(proof.to_bytes()) of the proofs verified")
    # the snapshot taken before the timed loops still answers for the same tree
    check: Snapshot = tree.snapshot()
    assert check.root == snap.root and check.size == n


# -- report --------------------------------------------------------------------------------

def ccdf(samples_ns: Sequence[float], points: int = 120) -> tuple[list[float], list[float]]:
    """(latency in µs, fraction of calls slower) at `points` tail levels from 1 to 1/n."""
    s = sorted(samples_ns)
    n = len(s)
    if n == 1:
        return [max(s[0] / 1000, 1e-3)], [1.0]
    span = math.log10(n)
    xs: list[float] = []
    ys: list[float] = []
    for k in range(points):
        exceed = 10 ** (-span * k / (points - 1))
        xs.append(max(common.percentile(s, 1 - exceed) / 1000, 1e-3))
        ys.append(exceed)
    return xs, ys


def build_plots(p: Params, results: dict[str, Any]) -> list[dict[str, Any]]:
    """The plot specs of the tree scenario, computed from `results` alone."""
    a4 = "arity 4, " if len(ARITIES) > 1 else ""
    many = [(f"insert_many a={a} buffer", str(a)) for a in ARITIES]
    throughput = {
        "file": "tree_insert_throughput.png",
        "title": f"In-memory insert throughput by arity (N={p.leaves:,} leaves, median of "
                 f"{p.runs} runs)",
        "xlabel": "arity (children per node)",
        "ylabel": "throughput (leaves/s)",
        "xscale": "linear",
        "yscale": "log",
        "kind": "bar",
        "series": [
            {"label": f"insert_many, one bytes buffer per {p.batch:,}-leaf batch",
             "x": [a for _, a in many],
             "y": [results[k]["summary"]["median"] for k, _ in many]},
            {"label": "insert_many, list of 32-byte bytes per batch",
             "x": ["4"], "y": [results["insert_many a=4 list"]["summary"]["median"]]},
            {"label": "insert, one leaf per call",
             "x": ["4"], "y": [results["insert a=4"]["summary"]["median"]]},
        ],
    }

    batch_series = []
    for key in [k for k, _ in many] + ["insert_many a=4 list"]:
        per_run: list[list[int]] = results[key]["batch_ns"]
        sizes: list[int] = []
        rates: list[float] = []
        done = 0
        for i in range(len(per_run[0])):
            count = min(p.batch, p.leaves - done)
            done += count
            ns = common.summarize([run[i] for run in per_run])["median"]
            sizes.append(done)
            rates.append(common.rate(count, ns / 1e9))
        label = key.removeprefix("insert_many ").replace("buffer", "bytes buffer")
        batch_series.append({"label": label.replace("list", "list of bytes"),
                             "x": sizes, "y": rates})
    batches = {
        "file": "tree_insert_batches.png",
        "title": f"insert_many throughput of each {p.batch:,}-leaf batch as the tree grows "
                 f"(median of {p.runs} runs)",
        "xlabel": "tree size after the batch (leaves)",
        "ylabel": "batch throughput (leaves/s)",
        "xscale": "linear",
        "yscale": "linear",
        "kind": "line",
        "series": batch_series,
    }

    lat = [k for k, r in results.items() if r["kind"] == "latency"]
    latency = {
        "file": "tree_latency.png",
        "title": f"Per-call latency, {a4}N={p.leaves:,} leaves (timer included)",
        "xlabel": "operation",
        "ylabel": "latency per call (µs)",
        "xscale": "linear",
        "yscale": "log",
        "kind": "bar",
        "series": [
            {"label": m, "x": lat, "y": [results[k]["summary"][m] / 1000 for k in lat]}
            for m in ("median", "p99")
        ],
    }

    tails = []
    for k in lat:
        xs, ys = ccdf(results[k]["samples"])
        tails.append({"label": k, "x": xs, "y": ys})
    tail = {
        "file": "tree_latency_tail.png",
        "title": f"Latency distribution: fraction of calls slower than x ({a4}"
                 f"N={p.leaves:,} leaves)",
        "xlabel": "latency per call (µs)",
        "ylabel": "fraction of calls slower",
        "xscale": "log",
        "yscale": "log",
        "kind": "line",
        "series": tails,
    }
    return [throughput, batches, latency, tail]


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the tree scenario: print its table, write tree.json and its plots; return the payload."""
    args, p = parse_args(argv)
    common.set_quiet(args.quiet)
    cpu = common.pin_to_cpu(args.cpu)
    started = time.perf_counter()
    machine = common.machine_info()
    load_before = list(os.getloadavg())

    data = random.Random(p.seed).randbytes(p.leaves * LEAF)
    results: dict[str, Any] = {}
    kernel_steps = p.runs * len(rkernel.available()) * len(KERNEL_ARITIES)
    steps = (p.runs * (len(ARITIES) + 1) + kernel_steps + p.runs * len(THREADS) + p.runs + 1
             + 1 + p.rounds)
    preempted: dict[str, int] = {}
    others: dict[str, float | None] = {}
    with common.Steps(steps, desc="bench.tree") as bar:
        for phase, fn in (("insert_many", bench_insert_many), ("kernels", bench_kernels),
                          ("threads", bench_threads), ("insert", bench_insert),
                          ("latencies", bench_latencies)):
            before, cpus_before = common.preemptions(), common.cpu_times()
            fn(p, data, results, bar.advance)
            preempted[phase] = common.preemptions() - before
            others[phase] = common.others_busy(cpus_before, common.cpu_times(), cpu)
    load_after = list(os.getloadavg())
    del data

    machine["contention"] = {
        "preemptions_per_phase": preempted,
        "other_cpus_busy_per_phase": others,
        "loadavg_1_5_15_before": load_before,
        "loadavg_1_5_15_after": load_after,
    }
    payload = common.result_payload(
        benchmark="tree",
        machine=machine,
        parameters={
            "leaves": p.leaves,
            "batch": p.batch,
            "arities": list(ARITIES),
            "runs": p.runs,
            "inserts": p.inserts,
            "latency_samples": p.samples,
            "warmup": p.warmup,
            "latency_rounds": p.rounds,
            "seed": p.seed,
            "quick": p.quick,
            "pinned_cpu": cpu,
            "sample_cap": common.SAMPLE_CAP,
            "timing": "perf_counter_ns around each call, nothing subtracted; gc enabled, "
                      "heap frozen before each timed loop; latencies measured in "
                      "interleaved rounds (samples in round order); p99 by linear "
                      "interpolation",
        },
        results=results,
        targets=common.evaluate_targets(results, TARGETS),
        plots=build_plots(p, results),
        runtime_s=time.perf_counter() - started,
    )
    print(report.format_tables(payload))
    print(f"N={p.leaves:,} leaves, batches of {p.batch:,}, 1 core (cpu {cpu}); latencies are "
          "per call, timer included, nothing subtracted; targets are informational")
    print("contention per phase (preemptions of this process / other CPUs busy): "
          + ", ".join(f"{k} {v:,} / {common.fmt_pct(others[k])}" for k, v in preempted.items())
          + f"; 1-min load average before {load_before[0]:.2f}, after {load_after[0]:.2f}",
          flush=True)
    common.write_results(payload, args.out)
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
