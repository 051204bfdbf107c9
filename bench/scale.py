"""Scale benchmark: rotortree's headline workload, 1B leaves in 1M chunks, on disk.

    python -m bench scale [--leaves N] [--chunk C] [--tiering default|pinned|both]
                          [--pin LEVEL] [--memory-budget BYTES] [--dir DIR] [--quick]

One in-process `RotorTree` of arity 4 (flush policy manual, checkpoint policy manual)
takes N leaves (default 1,000,000,000; --quick 2,000,000) in chunks of C (1,000,000;
--quick 100,000): `insert_many`, `flush()` and `checkpoint()` after every chunk, as
rotortree's own headline does. It runs once with the default tiering (every level in
mmap'd shard files) and once with `pin_above_level` set (default: the lowest level whose
upper levels fit in --memory-budget, half the machine's RAM unless given; see
`rotorshm.suggest_pin_above_level`), each on a fresh directory, the first deleted before
the second starts.

At every 10% of N it records: the ingest rate since the last point (insert + flush) and
the checkpoint time per chunk; `generate_proof` and `verify_against` latency (p50/p99)
over random indices of a fresh snapshot, with the major and minor page faults per proof
(getrusage); one leaf's proof repeated (its nodes cache-hot: the proof's own cost, so
random minus repeated is what caches, TLB and disk add); the disk's own random 4 KiB read
latency (O_DIRECT preads at random offsets of the level-0 shard files: the floor a proof
that faults one page cannot beat); the process's anonymous and file-backed resident
memory (/proc/self/smaps_rollup); and the tree's disk use, real (allocated blocks) and
apparent (file sizes). At the end: reopen time with `verify_checkpoint` off and on.

The leaves are a 32 MiB random pool, rotated by a random number of leaves for each chunk
(distinct within a chunk, misaligned between chunks; made outside the timed ingest).
Before it starts the run checks that DIR has room for the tree (~43 bytes a leaf at
arity 4) and says so clearly if it does not. Targets are informational.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import mmap
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rotorshm import (
    CheckpointPolicy,
    FlushPolicy,
    RotorTree,
    RotorTreeConfig,
    TieringConfig,
    level_bytes,
    suggest_pin_above_level,
)
from rotorshm.checkpoint import level_dir
from rotorshm.config import mem_total
from rotorshm.levels import shard_name

from . import common

SCENARIO = "scale"
ARITY = 4
MAX_DEPTH = 32
POINTS = 10  # measurement points: every 10% of the leaves
FLOOR_READS = 400  # random O_DIRECT 4 KiB reads per point
PAGE = 4096
POOL_LEAVES = 1 << 20  # 32 MiB of random leaves, rotated per chunk


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, dict[str, Any]]:
    ap = common.base_parser(__doc__ or "")
    ap.add_argument("--leaves", type=int, default=None,
                    help="leaves in all (default 1,000,000,000; quick 2,000,000)")
    ap.add_argument("--chunk", type=int, default=None,
                    help="leaves per insert_many + flush + checkpoint (default 1M; quick 100k)")
    ap.add_argument("--tiering", choices=("default", "pinned", "both"), default="both",
                    help="which tiering to run (default both, one after the other)")
    ap.add_argument("--pin", type=int, default=None,
                    help="pin_above_level of the pinned run (default: suggested for the "
                         "memory budget)")
    ap.add_argument("--memory-budget", type=int, default=None,
                    help="bytes of RAM the pinned levels may take (default: half of RAM)")
    ap.add_argument("--proofs", type=int, default=None,
                    help="random proofs per point (default 2,000; quick 300)")
    ap.add_argument("--dir", type=Path, default=None,
                    help="where the trees are built (default: a folder inside --out)")
    ap.add_argument("--no-verify-reopen", action="store_true",
                    help="skip the reopen with verify_checkpoint=True (it rehashes the tree)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    leaves = common.quick_or_full(ap, "--leaves", args.leaves, args.quick, 2_000_000,
                                  1_000_000_000, 1_000)
    chunk = common.quick_or_full(ap, "--chunk", args.chunk, args.quick, 100_000,
                                 1_000_000, 1)
    if chunk > leaves:
        ap.error("--chunk must not exceed --leaves")
    # A quick run's tree fits anywhere: its budget mimics a big tree's (the leaves on disk,
    # the levels above them pinned).
    budget = (args.memory_budget if args.memory_budget is not None
              else tree_bytes(leaves) // 2 if args.quick else mem_total() // 2)
    if budget < 0:
        ap.error("--memory-budget must be >= 0")
    pin = args.pin if args.pin is not None else suggest_pin_above_level(leaves, ARITY, budget)
    if pin < 0:
        ap.error("--pin must be >= 0")
    p = {
        "leaves": leaves,
        "chunk": chunk,
        "tierings": ["default", "pinned"] if args.tiering == "both" else [args.tiering],
        "pin_above_level": pin,
        "memory_budget": budget,
        "proofs": common.quick_or_full(ap, "--proofs", args.proofs, args.quick, 300, 2_000, 10),
        "floor_reads": 100 if args.quick else FLOOR_READS,
        "verify_reopen": not args.no_verify_reopen,
    }
    return args, p


# -- what the machine says -----------------------------------------------------------------------

def resident_memory() -> dict[str, int]:
    """Resident bytes of this process: all, anonymous, file-backed (shared memory included)."""
    roll = common.smaps_rollup()
    rss, anon = roll.get("Rss", 0), roll.get("Anonymous", 0)
    return {"rss": rss, "anonymous": anon, "shmem": roll.get("Pss_Shmem", 0),
            "file": rss - anon}


def disk_use(path: Path) -> tuple[int, int]:
    """(real bytes allocated, apparent bytes) of every file under `path`."""
    real = apparent = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(os.path.join(dirpath, name))
                real += st.st_blocks * 512
                apparent += st.st_size
    return real, apparent


def tree_bytes(leaves: int) -> int:
    """Bytes of level data a tree of `leaves` holds on disk (all levels, arity ARITY)."""
    return sum(level_bytes(leaves, ARITY))


def random_read_floor(files: list[Path], reads: int, rng: random.Random) -> list[int]:
    """ns of each random 4 KiB O_DIRECT pread over the written part of `files` (no cache).

    The offsets are page-aligned and drawn from the allocated part of each file; the
    buffer is an anonymous mapping (page-aligned, as O_DIRECT needs).
    """
    if not files or not hasattr(os, "O_DIRECT"):
        return []
    fds = []
    try:
        for f in files:
            with contextlib.suppress(OSError):
                fds.append((os.open(f, os.O_RDONLY | os.O_DIRECT), os.stat(f).st_blocks * 512))
        fds = [(fd, n) for fd, n in fds if n >= PAGE]
        if not fds:
            return []
        buf = mmap.mmap(-1, PAGE)
        out = []
        clock = time.perf_counter_ns
        for _ in range(reads):
            fd, n = fds[rng.randrange(len(fds))]
            off = rng.randrange(n // PAGE) * PAGE
            t0 = clock()
            os.preadv(fd, [buf], off)
            out.append(clock() - t0)
        buf.close()
        return out
    except OSError:  # a filesystem without O_DIRECT (tmpfs): no floor to measure
        return []
    finally:
        for fd, _ in fds:
            os.close(fd)


def level0_shards(tree_dir: Path) -> list[Path]:
    """The level-0 shard files of a tree directory (the leaves: most of its bytes)."""
    folder = Path(level_dir(str(tree_dir / "data"), 0))
    out = []
    for i in range(1 << 20):
        path = folder / shard_name(i)
        if not path.is_file():
            break
        out.append(path)
    return out


# -- one run -------------------------------------------------------------------------------------

def _faults() -> tuple[int, int]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_majflt, ru.ru_minflt


def measure_point(tree: RotorTree, tree_dir: Path, p: dict[str, Any], rng: random.Random
                  ) -> dict[str, Any]:
    """Proof and verify latency, faults, memory and disk at the tree's current size."""
    snap = tree.snapshot()
    size, root = snap.size, snap.root
    assert root is not None
    idx = [rng.randrange(size) for _ in range(p["proofs"])]
    n = len(idx)
    # Samples go into preallocated int64 arrays and timed proofs are dropped at once: a
    # loop that keeps thousands of objects grows the heap, and the fresh pages it touches
    # fault inside the timed calls (the p99 of a 5 µs call is 1% of them).
    lat, hot, vlat = (array("q", bytes(8 * n)) for _ in range(3))
    clock = time.perf_counter_ns
    gen = snap.generate_proof
    for i in idx[:50]:
        gen(i)  # warm the code paths (not the nodes: those are what is measured)
    gc.collect()
    gc.freeze()
    try:
        maj0, min0 = _faults()
        for k, i in enumerate(idx):
            t0 = clock()
            gen(i)
            lat[k] = clock() - t0
        maj1, min1 = _faults()
        # The same leaf again and again: every node it reads is in the CPU caches, so this
        # is the proof's own cost; random minus hot is what the memory hierarchy adds.
        one = idx[0]
        for k in range(n):
            t0 = clock()
            gen(one)
            hot[k] = clock() - t0
        proofs = [gen(i) for i in idx]
        for k, proof in enumerate(proofs):
            t0 = clock()
            ok = proof.verify_against(root, size)
            vlat[k] = clock() - t0
            if not ok:
                raise AssertionError(f"proof of leaf {proof.leaf_index} failed to verify")
    finally:
        gc.unfreeze()
    floor = random_read_floor(level0_shards(tree_dir), p["floor_reads"], rng)
    real, apparent = disk_use(tree_dir)
    mem = resident_memory()
    del snap, proofs
    return {
        "size": size,
        "proof": lat.tolist(),
        "proof_hot": hot.tolist(),
        "verify": vlat.tolist(),
        "major_faults_per_proof": (maj1 - maj0) / len(idx),
        "minor_faults_per_proof": (min1 - min0) / len(idx),
        "floor": floor,
        "disk_real": real,
        "disk_apparent": apparent,
        "memory": mem,
    }


def run_tiering(tier: str, work: Path, p: dict[str, Any], seed: int) -> dict[str, Any]:
    """Build the tree with one tiering, measuring at every 10%; then reopen it twice."""
    tree_dir = work / f"tree-{tier}"
    pin = p["pin_above_level"] if tier == "pinned" else TieringConfig().pin_above_level
    name = f"bench-scale-{os.getpid()}-{tier}"
    cfg = RotorTreeConfig(tree_dir, arity=ARITY, max_depth=MAX_DEPTH, name=name,
                          flush_policy=FlushPolicy.manual(),
                          checkpoint_policy=CheckpointPolicy.manual(),
                          tiering=TieringConfig(pin), verify_checkpoint=False)
    rng = random.Random(f"{seed}/{tier}")
    ring = memoryview(rng.randbytes(32 * POOL_LEAVES) * 2)  # a rotation is one slice, no copy
    n, chunk = p["leaves"], p["chunk"]
    marks = sorted({max(chunk, (n * k // POINTS) // chunk * chunk) for k in range(1, POINTS + 1)}
                   | {n})
    points: list[dict[str, Any]] = []
    ingest_s = 0.0
    ckpt_s: list[float] = []
    since = 0
    started = time.perf_counter()
    counts = [min(chunk, n - start) for start in range(0, n, chunk)]
    with RotorTree.open(cfg) as tree:
        for count in common.progress(counts, total=len(counts), desc=f"scale {tier} chunks"):
            rot = rng.randrange(POOL_LEAVES) * 32
            data = ring[rot: rot + 32 * count] if count <= POOL_LEAVES else \
                ring[:32 * POOL_LEAVES].tobytes() * (count // POOL_LEAVES) + \
                ring[:32 * (count % POOL_LEAVES)].tobytes()
            t0 = time.perf_counter()
            tree.insert_many(data)
            tree.flush()
            t1 = time.perf_counter()
            tree.checkpoint()
            t2 = time.perf_counter()
            ingest_s += t1 - t0
            ckpt_s.append(t2 - t1)
            if tree.size >= marks[len(points)]:
                point = measure_point(tree, tree_dir, p, rng)
                point["ingest_rate"] = (tree.size - since) / ingest_s
                point["checkpoint_s"] = ckpt_s
                points.append(point)
                common.log(
                    f"{tier} {tree.size:,}: ingest {point['ingest_rate'] / 1e6:.2f}M/s, "
                    f"checkpoint {1e3 * sorted(ckpt_s)[len(ckpt_s) // 2]:.0f} ms, proof p50 "
                    f"{sorted(point['proof'])[len(point['proof']) // 2] / 1e3:.1f} µs, "
                    f"{point['major_faults_per_proof']:.2f} major faults/proof")
                ingest_s, ckpt_s, since = 0.0, [], tree.size
        build_s = time.perf_counter() - started
    reopen: dict[str, float] = {}
    for verify in ((False, True) if p["verify_reopen"] else (False,)):
        t0 = time.perf_counter()
        with RotorTree.open(RotorTreeConfig(
                tree_dir, arity=ARITY, max_depth=MAX_DEPTH, name=name,
                flush_policy=FlushPolicy.manual(), tiering=TieringConfig(pin),
                verify_checkpoint=verify)) as tree:
            reopen["verify on" if verify else "verify off"] = time.perf_counter() - t0
            assert tree.size == n
    return {"points": points, "reopen": reopen, "build_s": build_s}


# -- the scenario ----------------------------------------------------------------------------

def check_space(work: Path, p: dict[str, Any]) -> str | None:
    """Why the run cannot fit in `work` (disk) or /dev/shm (pinned levels), or None."""
    need = int(tree_bytes(p["leaves"]) * 1.1) + (64 << 20)
    free = shutil.disk_usage(work).free
    if free < need:
        return (f"the tree needs about {need / 1e9:.1f} GB of disk in {work}, and only "
                f"{free / 1e9:.1f} GB are free: free space, pick another --dir, or ask for "
                f"fewer --leaves")
    if "pinned" in p["tierings"]:
        pinned = sum(level_bytes(p["leaves"], ARITY)[p["pin_above_level"]:])
        shm_free = shutil.disk_usage("/dev/shm").free if os.path.isdir("/dev/shm") else 0
        if shm_free < pinned * 1.05:
            return (f"the pinned levels (pin_above_level={p['pin_above_level']}) need "
                    f"{pinned / 1e9:.1f} GB in /dev/shm and {shm_free / 1e9:.1f} GB are free: "
                    f"choose a higher --pin or a smaller --memory-budget")
    return None


def _label(n: int) -> str:
    return common.size_label(n) if n % 1_000_000 == 0 else f"{n / 1e6:g}M"


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args, p = parse_args(argv)
    common.set_quiet(args.quiet)
    started = time.perf_counter()
    machine = common.machine_info()
    machine["mem_total"] = mem_total()
    machine["pinned_cpu"] = common.pin_to_cpu(args.cpu)
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.dir if args.dir is not None else args.out
    base.mkdir(parents=True, exist_ok=True)
    why = check_space(base, p)
    if why is not None:
        print(f"bench.scale: cannot run: {why}", file=sys.stderr)
        raise SystemExit(2)
    common.log(f"{p['leaves']:,} leaves in chunks of {p['chunk']:,}; tree ~"
               f"{tree_bytes(p['leaves']) / 1e9:.1f} GB; pinned run: pin_above_level="
               f"{p['pin_above_level']}; RAM {machine['mem_total'] / 2**30:.1f} GiB")
    results: dict[str, Any] = {}
    runs: dict[str, dict[str, Any]] = {}
    for tier in p["tierings"]:
        work = Path(tempfile.mkdtemp(prefix="scale-", dir=base))
        try:
            runs[tier] = run_tiering(tier, work, p, args.seed)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            common.remove_shm_segments(f"bench-scale-{os.getpid()}-{tier}")

    ram = machine["mem_total"] or 1 << 62
    targets: list[common.Target] = []
    for tier, r in runs.items():
        pts = r["points"]
        for pt in pts:
            lab = _label(pt["size"])
            results[f"{tier} {lab}: generate_proof"] = common.latency_entry(
                pt["proof"], major_faults_per_proof=pt["major_faults_per_proof"],
                minor_faults_per_proof=pt["minor_faults_per_proof"])
            results[f"{tier} {lab}: generate_proof, one leaf repeated"] = \
                common.latency_entry(pt["proof_hot"])
            results[f"{tier} {lab}: verify"] = common.latency_entry(pt["verify"])
            if pt["floor"]:
                results[f"{tier} {lab}: disk random 4 KiB read"] = common.latency_entry(
                    pt["floor"])
            results[f"{tier} {lab}: ingest"] = common.single_value_entry(
                pt["ingest_rate"], "leaves/s")
            results[f"{tier} {lab}: checkpoint per chunk"] = common.runs_entry(
                "value", pt["checkpoint_s"], "s")
        last = pts[-1]
        lab = _label(last["size"])
        results[f"{tier}: major faults per proof at {lab}"] = common.single_value_entry(
            last["major_faults_per_proof"], "faults")
        results[f"{tier}: anonymous memory at {lab}"] = common.single_value_entry(
            float(last["memory"]["anonymous"]), "bytes")
        results[f"{tier}: file-backed memory at {lab}"] = common.single_value_entry(
            float(last["memory"]["file"]), "bytes")
        results[f"{tier}: disk use at {lab}, real"] = common.single_value_entry(
            float(last["disk_real"]), "bytes")
        results[f"{tier}: disk use at {lab}, apparent"] = common.single_value_entry(
            float(last["disk_apparent"]), "bytes")
        for what, secs in r["reopen"].items():
            results[f"{tier}: reopen at {lab}, {what}"] = common.single_value_entry(secs, "s")
        # While the tree fits in RAM: drift of the proof p50 and the p99/p50 spread.
        in_ram = [pt for pt in pts if pt["disk_real"] <= 0.9 * ram] or pts[:1]
        p50 = [common.summarize(pt["proof"])["median"] for pt in in_ram]
        spread = [common.summarize(pt["proof"])["p99"] / common.summarize(pt["proof"])["median"]
                  for pt in in_ram]
        results[f"{tier}: proof p50 drift while in RAM"] = common.single_value_entry(
            max(p50) / min(p50), "ratio", sizes=[pt["size"] for pt in in_ram])
        # The same drift with each point's random p50 divided by its repeated-leaf p50:
        # what the tree's growth adds, apart from the machine's own speed at that moment.
        rel = [common.summarize(pt["proof"])["median"] / common.summarize(pt["proof_hot"])["median"]
               for pt in in_ram]
        results[f"{tier}: proof p50 / repeated-leaf p50, drift while in RAM"] = \
            common.single_value_entry(max(rel) / min(rel), "ratio", ratios=rel)
        results[f"{tier}: worst proof p99/p50 while in RAM"] = common.single_value_entry(
            max(spread), "ratio")
        targets += [
            common.Target(f"{tier}: proof p50 drift while in RAM", "median", "<=", 1.5, "ratio"),
            common.Target(f"{tier}: worst proof p99/p50 while in RAM", "median", "<=", 3.0,
                          "ratio"),
        ]
        if last["floor"]:
            over = (common.summarize(last["proof"])["median"]
                    - common.summarize(last["floor"])["median"])
            results[f"{tier}: proof p50 over the disk floor at {lab}"] = \
                common.single_value_entry(over, "ns")
            targets.append(common.Target(f"{tier}: proof p50 over the disk floor at {lab}",
                                         "median", "<=", 50_000, "ns"))
        if tier == "pinned":
            targets.append(common.Target(f"{tier}: major faults per proof at {lab}", "median",
                                         "<=", 1.0, "faults"))
        else:
            targets += [
                common.Target(f"{tier}: anonymous memory at {lab}", "median", "<=",
                              256 * common.MIB, "bytes"),
                common.Target(f"{tier}: reopen at {lab}, verify off", "median", "<=", 0.2, "s"),
            ]
    verdicts = common.evaluate_targets(results, targets)
    elapsed = time.perf_counter() - started
    title = (f"rotorshm at scale: arity {ARITY}, {p['leaves']:,} leaves in chunks of "
             f"{p['chunk']:,} (insert_many + flush + checkpoint each), tierings "
             f"{', '.join(p['tierings'])} (pin_above_level={p['pin_above_level']}), "
             f"{'quick' if args.quick else 'full'} run")
    common.print_table(title, common.table_rows(results, verdicts, show_metric=True),
                       common.TABLE_COLUMNS, common.TABLE_ALIGN)
    print(f"runtime {elapsed:.1f} s")

    def series(metric: str, fn: Any) -> list[dict[str, Any]]:
        return [{"label": f"{tier} {metric}", "x": [pt["size"] for pt in r["points"]],
                 "y": [fn(pt) for pt in r["points"]]} for tier, r in runs.items()]

    def q(samples: list[int], which: str) -> float:
        return common.summarize(samples)[which] / 1e3 if samples else 0.0

    floor = [{"label": f"{tier} disk random 4 KiB read p50",
              "x": [pt["size"] for pt in r["points"] if pt["floor"]],
              "y": [q(pt["floor"], "median") for pt in r["points"] if pt["floor"]]}
             for tier, r in runs.items()]
    floor = [s for s in floor if s["x"]]
    plots: list[dict[str, Any]] = [
        {"file": "scale_proof.png",
         "title": f"generate_proof latency as the tree grows (arity {ARITY}, random leaves)",
         "xlabel": "leaves", "ylabel": "µs", "xscale": "linear", "yscale": "log",
         "kind": "line",
         "series": series("p50", lambda pt: q(pt["proof"], "median"))
         + series("p99", lambda pt: q(pt["proof"], "p99"))
         + series("p50, one leaf repeated", lambda pt: q(pt["proof_hot"], "median")) + floor},
        {"file": "scale_verify.png", "title": "verify_against latency as the tree grows",
         "xlabel": "leaves", "ylabel": "µs", "xscale": "linear", "yscale": "log",
         "kind": "line",
         "series": series("p50", lambda pt: q(pt["verify"], "median"))
         + series("p99", lambda pt: q(pt["verify"], "p99"))},
        {"file": "scale_faults.png", "title": "page faults per proof (getrusage)",
         "xlabel": "leaves", "ylabel": "faults per proof", "xscale": "linear",
         "yscale": "linear", "kind": "line",
         "series": series("major", lambda pt: pt["major_faults_per_proof"])
         + series("minor", lambda pt: pt["minor_faults_per_proof"])},
        {"file": "scale_ingest.png",
         "title": f"ingest (insert_many + flush, chunks of {p['chunk']:,})",
         "xlabel": "leaves", "ylabel": "M leaves/s", "xscale": "linear", "yscale": "linear",
         "kind": "line", "series": series("", lambda pt: pt["ingest_rate"] / 1e6)},
        {"file": "scale_checkpoint.png", "title": "checkpoint per chunk (median since last point)",
         "xlabel": "leaves", "ylabel": "ms", "xscale": "linear", "yscale": "linear",
         "kind": "line",
         "series": series("", lambda pt: 1e3 * common.summarize(pt["checkpoint_s"])["median"])},
        {"file": "scale_memory.png", "title": "resident memory of the writer (smaps_rollup)",
         "xlabel": "leaves", "ylabel": "MiB", "xscale": "linear", "yscale": "log",
         "kind": "line",
         "series": series("anonymous", lambda pt: pt["memory"]["anonymous"] / common.MIB)
         + series("file-backed + shm", lambda pt: max(pt["memory"]["file"], 1) / common.MIB)},
        {"file": "scale_disk.png", "title": "disk use of the tree directory",
         "xlabel": "leaves", "ylabel": "GB", "xscale": "linear", "yscale": "linear",
         "kind": "line",
         "series": series("real", lambda pt: pt["disk_real"] / 1e9)
         + series("apparent", lambda pt: pt["disk_apparent"] / 1e9)},
    ]
    payload = common.result_payload(
        benchmark=SCENARIO,
        machine=machine,
        parameters={"arity": ARITY, "quick": args.quick, "seed": args.seed, **p,
                    "build_s": {t: r["build_s"] for t, r in runs.items()}},
        results=results,
        targets=verdicts,
        plots=plots,
        runtime_s=elapsed,
    )
    common.write_results(payload, args.out, plot_errors_fatal=False)
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
