"""Peer comparison: rotorshm against pymerkle and a naive pure-Python tree, same workloads.

    python -m bench.peers [--quick] [--out DIR] [--leaves N] [--sqlite-leaves N] ...

Engines, each run in its own fresh process (multiprocessing, spawn) pinned to one CPU, on
the same random 32-byte leaves:

* ``rotorshm``: the in-memory ``LeanIMT`` (arity 4), appending with ``insert_many`` in
  10,000-leaf batches and, separately, with single ``insert`` calls; proofs from a
  snapshot (``generate_proof``) verified with ``verify_against(root, size)``;
* ``naive``: the reference tree of this module - a list of levels, the path recomputed
  per append, the same hash rules (blake3(0x01 || k || children), single children
  lifted, arity 4), so its root must equal rotorshm's;
* ``pymerkle-inmemory`` and ``pymerkle-sqlite`` (pymerkle's ``InmemoryTree`` and
  ``SqliteTree`` in a temporary file): binary RFC 9162-style trees with SHA-256, so a
  different tree - the comparison is of speed only. Appends with ``append_entry`` (and
  for SQLite also the bulk ``append_entries`` in 10,000-leaf chunks, and a limited number
  of single ``append_entry`` calls, each its own committed transaction); proofs with
  ``prove_inclusion`` verified with ``verify_inclusion(leaf hash, root, proof)``. Skipped
  with the reason if pymerkle is not importable.

Each engine appends up to its N (default 1,000,000 for all; a peer whose appends exceed
the time budget stops where it got to, and that N is recorded), pausing at the largest
size every engine reaches (the common size) and at its own N to time proof generation
and verification (random indices, per call). Ratios rotorshm / peer are reported at
every size both measured. Targets (>= 10x pymerkle) are informational.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import multiprocessing as mp
import os
import queue
import random
import resource
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blake3 import blake3

from . import common
from .common import size_label

ARITY = 4
LEAF = 32
BATCH = 10_000  # rotorshm insert_many batch and pymerkle-sqlite append_entries chunk
CHUNK = 10_000  # single appends between two looks at the clock
CHILD_SLACK_S = 600.0  # guard on one engine process beyond its build budget (not a speed limit)

CTX = mp.get_context("spawn")

ROTORSHM = "rotorshm"
NAIVE = "naive"
PM_MEM = "pymerkle-inmemory"
PM_SQL = "pymerkle-sqlite"
ENGINES = (ROTORSHM, NAIVE, PM_MEM, PM_SQL)
PEERS = (NAIVE, PM_MEM, PM_SQL)


@dataclass(frozen=True)
class Params:
    leaves: dict[str, int]  # target N per engine
    common: int  # the size every engine is asked to reach, where proofs are compared
    samples: dict[str, int]  # timed proofs per size per engine
    warmup: dict[str, int]  # untimed proofs first (pymerkle-sqlite: fills its subroot cache)
    insert_many_runs: int
    sqlite_singles: int
    budget_s: float
    seed: int
    quick: bool


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Params]:
    ap = common.base_parser(__doc__.splitlines()[0] if __doc__ else "peers benchmark")
    ap.add_argument("--leaves", type=int, default=None,
                    help="N for rotorshm and naive (default 1,000,000; quick 20,000)")
    ap.add_argument("--inmemory-leaves", type=int, default=None,
                    help="N for pymerkle-inmemory (default: --leaves)")
    ap.add_argument("--sqlite-leaves", type=int, default=None,
                    help="N for pymerkle-sqlite (default: --leaves)")
    ap.add_argument("--samples", type=int, default=None,
                    help="timed proofs per size (default 20,000; quick 2,000; "
                         "pymerkle-sqlite a tenth)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of appending after which a peer stops where it got to "
                         "(default 120; quick 20)")
    ap.add_argument("--sqlite-singles", type=int, default=None,
                    help="single committed append_entry calls timed on pymerkle-sqlite "
                         "(default 1,000; quick 100)")
    ap.add_argument("--seed", type=int, default=1, help="seed of leaves and random indices")
    args = ap.parse_args(argv)
    quick = bool(args.quick)
    n = common.quick_or_full(ap, "--leaves", args.leaves, quick, 20_000, 1_000_000)
    leaves = {
        ROTORSHM: n,
        NAIVE: n,
        PM_MEM: args.inmemory_leaves if args.inmemory_leaves is not None else n,
        PM_SQL: args.sqlite_leaves if args.sqlite_leaves is not None else n,
    }
    if min(leaves.values()) < 2:
        ap.error("every engine needs at least 2 leaves")
    samples = common.quick_or_full(ap, "--samples", args.samples, quick, 2_000, 20_000, 1)
    budget = common.quick_or_full(ap, "--budget", args.budget, quick, 20.0, 120.0)
    singles = common.quick_or_full(ap, "--sqlite-singles", args.sqlite_singles, quick, 100,
                                   1_000, 1)
    params = Params(
        leaves=leaves,
        common=min(leaves.values()),
        samples={ROTORSHM: samples, NAIVE: samples, PM_MEM: samples,
                 PM_SQL: max(1, samples // 10)},
        warmup={ROTORSHM: 200, NAIVE: 200, PM_MEM: 200, PM_SQL: 100 if quick else 1_000},
        insert_many_runs=1 if quick else 3,
        sqlite_singles=singles,
        budget_s=budget,
        seed=args.seed,
        quick=quick,
    )
    return args, params


# -- the naive reference tree --------------------------------------------------------------

_PREFIX = [bytes((1, k)) for k in range(256)]

NaiveProof = tuple[bytes, int, int, bytes, tuple[tuple[int, tuple[bytes, ...]], ...]]
"""(root, size, index, leaf, ((position, siblings), ...) from the leaves up)."""


def naive_level_lengths(size: int, arity: int) -> list[int]:
    """Node count of every level 0..depth of a tree of `size` leaves."""
    out = [size]
    while out[-1] > 1:
        out.append(-(-out[-1] // arity))
    return out


class NaiveTree:
    """A list of levels (lists of 32-byte nodes); each append recomputes its path.

    Same rules as rotorshm: a group of k >= 2 children hashes to
    blake3(0x01 || k || children), a single child is lifted, and the root is the one
    node of the top level.
    """

    def __init__(self, arity: int = ARITY) -> None:
        self.arity = arity
        self.levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        return len(self.levels[0])

    @property
    def root(self) -> bytes | None:
        top = self.levels[-1]
        return top[0] if top else None

    def append(self, leaf: bytes) -> None:
        levels = self.levels
        n = self.arity
        level = levels[0]
        level.append(leaf)
        idx = len(level) - 1
        lvl = 0
        while len(level) > 1:
            g = idx - idx % n
            group = level[g : g + n]
            parent = group[0] if len(group) == 1 else blake3(
                _PREFIX[len(group)] + b"".join(group)).digest()
            idx //= n
            lvl += 1
            if lvl == len(levels):
                levels.append([])
            level = levels[lvl]
            if idx == len(level):
                level.append(parent)
            else:
                level[idx] = parent

    def prove(self, index: int) -> NaiveProof:
        size = self.size
        if not 0 <= index < size:
            raise IndexError(f"leaf {index} not in a tree of {size} leaves")
        n = self.arity
        path = []
        idx = index
        for level in self.levels[:-1]:
            pos = idx % n
            g = idx - pos
            group = level[g : g + n]
            path.append((pos, tuple(group[:pos] + group[pos + 1 :])))
            idx //= n
        root = self.root
        assert root is not None
        return root, size, index, self.levels[0][index], tuple(path)


def naive_verify(proof: NaiveProof, root: bytes, size: int) -> bool:
    """Recompute the root from the path, checking every structural field."""
    p_root, p_size, index, leaf, path = proof
    if p_root != root or p_size != size or not 0 <= index < size or len(leaf) != LEAF:
        return False
    n = ARITY
    lengths = naive_level_lengths(size, n)
    if len(path) != len(lengths) - 1:
        return False
    node = leaf
    idx = index
    for (pos, sibs), length in zip(path, lengths, strict=False):
        g = idx - idx % n
        if pos != idx - g or len(sibs) + 1 != min(n, length - g):
            return False
        children = sibs[:pos] + (node,) + sibs[pos:]
        node = children[0] if len(children) == 1 else blake3(
            _PREFIX[len(children)] + b"".join(children)).digest()
        idx //= n
    return node == root


# -- engines (each runs in its own process) ------------------------------------------------

def _leaves(seed: int, n: int) -> tuple[bytes, list[bytes]]:
    blob = random.Random(seed).randbytes(n * LEAF)
    return blob, [blob[i : i + LEAF] for i in range(0, len(blob), LEAF)]


def _build(append_range: Callable[[int, int], None], n: int, checkpoints: Sequence[int],
           chunk: int, budget_s: float | None,
           at_checkpoint: Callable[[int], None]) -> dict[str, Any]:
    """Append leaves 0..n-1 in chunks, timing only the appends; pause at each checkpoint.

    With a budget, stop after the chunk that crosses it and treat the size reached as the
    last checkpoint.
    """
    clock = time.perf_counter_ns
    done = 0
    total = 0
    truncated = False
    gc.collect()
    for target in sorted({c for c in checkpoints if 0 < c <= n} | {n}):
        while done < target:
            hi = min(done + chunk, target)
            t0 = clock()
            append_range(done, hi)
            total += clock() - t0
            done = hi
            if budget_s is not None and total / 1e9 > budget_s and done < n:
                truncated = True
                break
        at_checkpoint(done)
        if truncated:
            break
    seconds = total / 1e9
    return {"leaves": done, "seconds": seconds, "leaves_per_s": common.rate(done, seconds),
            "truncated": truncated}


def _measure_proofs(gen: Callable[[int], Any], verify: Callable[[Any], object],
                    check: Callable[[Any], bool], verify_input: Callable[[int, Any], Any],
                    size: int, samples: int, warmup: int, rng: random.Random,
                    one_based: bool = False) -> dict[str, Any]:
    """Per-call ns of gen(random index) and of verify(input built from each proof)."""
    base = 1 if one_based else 0
    warm = [rng.randrange(size) + base for _ in range(warmup)]
    indices = [rng.randrange(size) + base for _ in range(samples)]
    clock = time.perf_counter_ns
    t0 = clock()
    first_ns = None
    for i in warm:
        gen(i)
        if first_ns is None:
            first_ns = clock() - t0
    warmup_s = (clock() - t0) / 1e9
    gen_ns: list[int] = []
    proofs: list[Any] = []
    append_ns, append_p = gen_ns.append, proofs.append
    with common.frozen_heap():
        for i in indices:
            t0 = clock()
            p = gen(i)
            append_ns(clock() - t0)
            append_p(p)
    inputs = [verify_input(i, p) for i, p in zip(indices, proofs, strict=True)]
    bad = sum(1 for x in inputs[:1_000] if not check(x))
    if bad:
        raise RuntimeError(f"{bad} of the first {min(1_000, len(inputs))} proofs do not verify")
    del proofs
    verify_ns = common.time_ns_each(verify, inputs, warmup=min(100, len(inputs)))
    return {"size": size, "generate_ns": gen_ns, "verify_ns": verify_ns,
            "warmup_proofs": warmup, "warmup_s": warmup_s, "first_proof_ns": first_ns}


def _engine_rotorshm(cfg: dict[str, Any]) -> dict[str, Any]:
    from rotorshm import LeanIMT, depth_for

    n = cfg["leaves"]
    blob, leaves = _leaves(cfg["seed"], n)
    max_depth = max(depth_for(n, ARITY), 1)
    # insert_many in 10,000-leaf batches (one bytes buffer each), several runs
    many = []
    many_root: bytes | None = None
    for _ in range(cfg["insert_many_runs"]):
        tree = LeanIMT(ARITY, max_depth)
        ins_many = tree.insert_many

        def batch(lo: int, hi: int, f: Callable[[bytes], object] = ins_many) -> None:
            f(blob[lo * LEAF : hi * LEAF])

        many.append(_build(batch, n, (), BATCH, None, lambda _s: None))
        many_root = tree.root
        del tree, ins_many
    # single insert, pausing at the checkpoints for proofs
    tree = LeanIMT(ARITY, max_depth)
    ins = tree.insert
    rng = random.Random(cfg["seed"] + 1)
    proofs: list[dict[str, Any]] = []
    roots: dict[int, str] = {}

    def singles(lo: int, hi: int) -> None:
        for leaf in leaves[lo:hi]:
            ins(leaf)

    def at(size: int) -> None:
        snap = tree.snapshot()
        root, sz = snap.root, snap.size
        assert root is not None and sz == size
        roots[size] = root.hex()
        if size in cfg["proof_sizes"]:
            proofs.append(_measure_proofs(
                snap.generate_proof, lambda p: p.verify_against(root, sz),
                lambda p: bool(p.verify_against(root, sz)), lambda _i, p: p,
                size, cfg["samples"], cfg["warmup"], rng))

    single = _build(singles, n, cfg["proof_sizes"], CHUNK, None, at)
    if many_root is None or many_root.hex() != roots[n]:
        raise RuntimeError("insert_many and insert give different roots")
    return {
        "appends": {
            "insert_many": {"runs": many, "what": f"LeanIMT.insert_many, {BATCH:,}-leaf "
                                                  "batches as one bytes buffer"},
            "insert": {"runs": [single], "what": "LeanIMT.insert, one leaf per call"},
        },
        "proofs": proofs, "roots": roots, "leaves": single["leaves"],
        "truncated": single["truncated"],
        "generate": "tree.snapshot().generate_proof(index)",
        "verify": "proof.verify_against(root, size)",
    }


def _engine_naive(cfg: dict[str, Any]) -> dict[str, Any]:
    n = cfg["leaves"]
    _, leaves = _leaves(cfg["seed"], n)
    tree = NaiveTree(ARITY)
    app = tree.append
    rng = random.Random(cfg["seed"] + 1)
    proofs: list[dict[str, Any]] = []
    roots: dict[int, str] = {}

    def singles(lo: int, hi: int) -> None:
        for leaf in leaves[lo:hi]:
            app(leaf)

    def at(size: int) -> None:
        root = tree.root
        assert root is not None and tree.size == size
        roots[size] = root.hex()
        if size in cfg["proof_sizes"]:
            proofs.append(_measure_proofs(
                tree.prove, lambda p: naive_verify(p, root, size),
                lambda p: naive_verify(p, root, size), lambda _i, p: p,
                size, cfg["samples"], cfg["warmup"], rng))

    build = _build(singles, n, cfg["proof_sizes"], CHUNK, cfg["budget_s"], at)
    return {
        "appends": {"append": {"runs": [build], "what": "NaiveTree.append, one leaf per call"}},
        "proofs": proofs, "roots": roots, "leaves": build["leaves"],
        "truncated": build["truncated"],
        "generate": "tree.prove(index)", "verify": "naive_verify(proof, root, size)",
    }


def _pymerkle_proofs(pm: Any, tree: Any, size: int, cfg: dict[str, Any],
                     rng: random.Random) -> dict[str, Any]:
    get_root = getattr(tree, "get_root", None) or tree.get_state  # get_state before 7.0
    root = get_root()
    verify_inclusion = pm.verify_inclusion

    def verify(x: tuple[bytes, bytes, Any]) -> None:
        verify_inclusion(x[0], x[1], x[2])

    def check(x: tuple[bytes, bytes, Any]) -> bool:
        try:
            verify_inclusion(x[0], x[1], x[2])
        except pm.InvalidProof:
            return False
        return True

    cache0 = tree.get_cache_info() if hasattr(tree, "get_cache_info") else None
    out = _measure_proofs(
        tree.prove_inclusion, verify, check,
        lambda i, p: (tree.get_leaf(i), root, p),
        size, cfg["samples"], cfg["warmup"], rng, one_based=True)
    if cache0 is not None:
        cache1 = tree.get_cache_info()
        out["subroot_cache"] = {"entries": cache1.size, "hits_total": cache1.hits,
                                "misses_total": cache1.misses,
                                "hits_before_warmup": cache0.hits,
                                "misses_before_warmup": cache0.misses}
    return out


def _engine_pymerkle(cfg: dict[str, Any]) -> dict[str, Any]:
    pm = importlib.import_module("pymerkle")
    sqlite = cfg["engine"] == PM_SQL
    n = cfg["leaves"]
    _, leaves = _leaves(cfg["seed"], n)
    tree = pm.SqliteTree(cfg["db"]) if sqlite else pm.InmemoryTree()
    rng = random.Random(cfg["seed"] + 1)
    proofs: list[dict[str, Any]] = []
    roots: dict[int, str] = {}
    get_root = getattr(tree, "get_root", None) or tree.get_state

    if sqlite:
        bulk = tree.append_entries

        def append_range(lo: int, hi: int) -> None:
            bulk(leaves[lo:hi])
        method, what = "append_entries", (f"SqliteTree.append_entries, {BATCH:,}-leaf chunks "
                                          "(one transaction each)")
    else:
        app = tree.append_entry

        def append_range(lo: int, hi: int) -> None:
            for leaf in leaves[lo:hi]:
                app(leaf)
        method, what = "append_entry", "InmemoryTree.append_entry, one leaf per call"

    def at(size: int) -> None:
        if tree.get_size() != size:
            raise RuntimeError(f"pymerkle reports {tree.get_size()} leaves, expected {size}")
        roots[size] = get_root().hex()
        if size in cfg["proof_sizes"]:
            proofs.append(_pymerkle_proofs(pm, tree, size, cfg, rng))

    build = _build(append_range, n, cfg["proof_sizes"], BATCH if sqlite else CHUNK,
                   cfg["budget_s"], at)
    appends: dict[str, Any] = {method: {"runs": [build], "what": what}}
    if sqlite:
        extra = random.Random(cfg["seed"] + 2).randbytes(cfg["sqlite_singles"] * LEAF)
        more = [extra[i : i + LEAF] for i in range(0, len(extra), LEAF)]
        app1 = tree.append_entry
        t0 = time.perf_counter_ns()
        for leaf in more:
            app1(leaf)
        seconds = (time.perf_counter_ns() - t0) / 1e9
        appends["append_entry"] = {
            "runs": [{"leaves": len(more), "seconds": seconds,
                      "leaves_per_s": common.rate(len(more), seconds), "truncated": False,
                      "on_top_of": build["leaves"]}],
            "what": "SqliteTree.append_entry, one leaf per call, each its own committed "
                    f"transaction, on top of the {build['leaves']:,}-leaf tree"}
        tree.close()
    return {
        "appends": appends, "proofs": proofs, "roots": roots, "leaves": build["leaves"],
        "truncated": build["truncated"],
        "generate": "tree.prove_inclusion(index)",
        "verify": "verify_inclusion(tree.get_leaf(index), root, proof)",
        "pymerkle": str(getattr(pm, "__version__", "unknown")),
    }


_ENGINE_FNS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    ROTORSHM: _engine_rotorshm,
    NAIVE: _engine_naive,
    PM_MEM: _engine_pymerkle,
    PM_SQL: _engine_pymerkle,
}


def _engine_child(cfg: dict[str, Any], out: Any) -> None:
    """Body of an engine process: pin, run, send ("ok", result) or ("error", traceback)."""
    try:
        if cfg["cpu"] is not None:
            with contextlib.suppress(AttributeError, OSError):
                os.sched_setaffinity(0, {cfg["cpu"]})
        nivcsw = common.preemptions()
        cpus0 = common.cpu_times()
        res = _ENGINE_FNS[cfg["engine"]](cfg)
        res["preemptions"] = common.preemptions() - nivcsw
        res["other_cpus_busy"] = common.others_busy(cpus0, common.cpu_times(), cfg["cpu"])
        res["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out.put(("ok", res))
    except BaseException:  # noqa: BLE001 - reported to the parent
        out.put(("error", traceback.format_exc(limit=12)))


def run_engine(cfg: dict[str, Any], timeout: float) -> tuple[dict[str, Any] | None, str | None]:
    """Run one engine in a fresh spawn process: (result, None) or (None, why it failed)."""
    out = CTX.Queue()
    proc = CTX.Process(target=_engine_child, args=(cfg, out), name=f"bench-peers-{cfg['engine']}",
                       daemon=True)
    proc.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                kind, value = out.get(timeout=0.5)
                break
            except queue.Empty:
                if not proc.is_alive():
                    try:
                        kind, value = out.get(timeout=1.0)
                        break
                    except queue.Empty:
                        return None, f"engine process died with exit code {proc.exitcode}"
                if time.monotonic() > deadline:
                    return None, f"engine process gave no result within {timeout:.0f} s"
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    if kind != "ok":
        return None, str(value)
    return value, None


# -- report ---------------------------------------------------------------------------------

def append_key(engine: str, method: str) -> str:
    return f"append {engine} {method}"


def proof_key(what: str, engine: str, size: int) -> str:
    return f"{what} {engine} @{size_label(size)}"


SINGLE = {ROTORSHM: "insert", NAIVE: "append", PM_MEM: "append_entry", PM_SQL: "append_entry"}


def build_results(p: Params, got: dict[str, dict[str, Any]]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for engine, res in got.items():
        for method, a in res["appends"].items():
            rates = [float(r["leaves_per_s"]) for r in a["runs"]]
            results[append_key(engine, method)] = {
                "kind": "throughput", "unit": "leaves/s",
                "summary": common.summarize(rates), "samples": rates,
                "engine": engine, "method": method, "what": a["what"],
                "leaves": a["runs"][0]["leaves"], "truncated": a["runs"][0]["truncated"],
                "runs": a["runs"], **({"arity": ARITY} if engine in (ROTORSHM, NAIVE) else {}),
            }
        for pr in res["proofs"]:
            size = pr["size"]
            extra = {"engine": engine, "tree_size": size, "warmup_proofs": pr["warmup_proofs"],
                     "warmup_s": pr["warmup_s"], "first_proof_ns": pr["first_proof_ns"]}
            if "subroot_cache" in pr:
                extra["subroot_cache"] = pr["subroot_cache"]
            results[proof_key("generate_proof", engine, size)] = common.latency_entry(
                pr["generate_ns"], what=res["generate"], **extra)
            results[proof_key("verify", engine, size)] = common.latency_entry(
                pr["verify_ns"], what=res["verify"], **extra)
    if ROTORSHM not in got:
        return results
    # ratios: how many times rotorshm is faster (> 1: rotorshm wins)
    r_app = got[ROTORSHM]["appends"]
    r_single = results[append_key(ROTORSHM, "insert")]["summary"]["median"]
    r_best = max(results[append_key(ROTORSHM, m)]["summary"]["median"] for m in r_app)
    r_sizes = {pr["size"] for pr in got[ROTORSHM]["proofs"]}
    for peer in PEERS:
        if peer not in got:
            continue
        single = results[append_key(peer, SINGLE[peer])]
        key = f"append speedup rotorshm insert / {peer} {SINGLE[peer]}"
        results[key] = common.single_value_entry(
            r_single / single["summary"]["median"], "x", peer=peer,
            what=f"rotorshm LeanIMT.insert leaves/s / {peer} {SINGLE[peer]} leaves/s "
                 "(one leaf per call on both sides)",
            leaves={ROTORSHM: got[ROTORSHM]["leaves"], peer: single["leaves"]})
        best_m = max(got[peer]["appends"],
                     key=lambda m: results[append_key(peer, m)]["summary"]["median"])
        best = results[append_key(peer, best_m)]
        results[f"append speedup rotorshm best / {peer} best"] = common.single_value_entry(
            r_best / best["summary"]["median"], "x", peer=peer,
            what=f"fastest rotorshm append (insert_many) / fastest {peer} append ({best_m})",
            peer_method=best_m)
        for pr in got[peer]["proofs"]:
            size = pr["size"]
            if size not in r_sizes:
                continue
            for what in ("generate_proof", "verify"):
                peer_med = results[proof_key(what, peer, size)]["summary"]["median"]
                ours = results[proof_key(what, ROTORSHM, size)]["summary"]["median"]
                key = f"{what} speedup {peer}/rotorshm @{size_label(size)}"
                results[key] = common.single_value_entry(
                    peer_med / ours, "x", peer=peer, tree_size=size,
                    what=f"median {what} latency of {peer} / of rotorshm at {size:,} leaves")
    return results


def targets_for(results: dict[str, Any]) -> list[common.Target]:
    out = []
    for peer in (PM_MEM, PM_SQL):
        for key in (f"append speedup rotorshm best / {peer} best",
                    f"append speedup rotorshm insert / {peer} {SINGLE[peer]}"):
            if key in results:
                out.append(common.Target(key, "median", ">=", 10.0, "x"))
        sizes = sorted(int(v["tree_size"]) for k, v in results.items()
                       if k.startswith(f"generate_proof speedup {peer}/rotorshm @"))
        if sizes:
            # the 1M comparison where measured, else the largest size both reached
            size = 1_000_000 if 1_000_000 in sizes else sizes[-1]
            out.append(common.Target(
                f"generate_proof speedup {peer}/rotorshm @{size_label(size)}",
                "median", ">=", 10.0, "x"))
    return out


def table_rows(results: dict[str, Any], verdicts: list[dict[str, Any]]) -> list[dict[str, object]]:
    """The common table rows, plus the tree size each result was measured at."""
    rows = common.table_rows(results, verdicts, show_metric=True)
    for row, entry in zip(rows, results.values(), strict=True):
        n_leaves = entry.get("leaves", entry.get("tree_size"))
        row["leaves"] = f"{n_leaves:,}" if isinstance(n_leaves, int) else ""
    return rows


COLUMNS = (*common.TABLE_COLUMNS[:-2], "leaves", *common.TABLE_COLUMNS[-2:])
ALIGN = {**common.TABLE_ALIGN, "leaves": ">"}


def make_plots(p: Params, results: dict[str, Any]) -> list[dict[str, Any]]:
    plots: list[dict[str, Any]] = []
    app = [(f"{v['engine']} {v['method']} ({size_label(v['leaves'])})",
            v["summary"]["median"]) for k, v in results.items() if k.startswith("append ")
           and v["kind"] == "throughput"]
    if app:
        plots.append({
            "file": "peers_append.png",
            "title": "Append rate per engine (leaves appended from an empty tree; "
                     "N in parentheses)",
            "xlabel": "engine and method", "ylabel": "append rate (leaves/s)",
            "xscale": "linear", "yscale": "log", "kind": "bar",
            "series": [{"label": "median leaves/s", "x": [a for a, _ in app],
                        "y": [b for _, b in app]}],
        })
    size = p.common
    engines = [e for e in ENGINES if proof_key("generate_proof", e, size) in results]
    if engines:
        def series(what: str, metric: str, label: str) -> dict[str, Any]:
            return {"label": label, "x": engines,
                    "y": [results[proof_key(what, e, size)]["summary"][metric] / 1000
                          for e in engines]}
        plots.append({
            "file": "peers_proof.png",
            "title": f"Inclusion proof latency per engine at {size:,} leaves",
            "xlabel": "engine", "ylabel": "latency per call (µs)",
            "xscale": "linear", "yscale": "log", "kind": "bar",
            "series": [series("generate_proof", "median", "generate median"),
                       series("generate_proof", "p99", "generate p99"),
                       series("verify", "median", "verify median")],
        })
    return plots


def pymerkle_status() -> tuple[str | None, str | None]:
    """(version, None) if pymerkle imports with the API used here, else (None, reason)."""
    try:
        pm = importlib.import_module("pymerkle")
    except Exception as exc:  # noqa: BLE001 - any import failure means "skipped"
        return None, f"pymerkle is not importable ({exc!r}); pip install -e '.[bench]'"
    missing = [a for a in ("InmemoryTree", "SqliteTree", "verify_inclusion", "InvalidProof")
               if not hasattr(pm, a)]
    if missing:
        return None, f"pymerkle {getattr(pm, '__version__', '?')} lacks {', '.join(missing)}"
    return str(getattr(pm, "__version__", "unknown")), None


# -- main ------------------------------------------------------------------------------------

def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args, p = parse_args(argv)
    common.set_quiet(args.quiet)
    started = time.perf_counter()
    machine = common.machine_info()
    cpu = common.default_cpu(args.cpu)
    pm_version, pm_reason = pymerkle_status()
    skipped: dict[str, str] = {}
    if pm_reason is not None:
        skipped[PM_MEM] = skipped[PM_SQL] = pm_reason
    tmp = Path(tempfile.mkdtemp(prefix="rotorshm-bench-peers-"))
    got: dict[str, dict[str, Any]] = {}
    order = [e for e in ENGINES if e not in skipped]
    try:
        with common.Steps(len(order), desc="bench.peers") as bar:
            for engine in order:
                n = p.leaves[engine]
                bar.advance(f"{engine}: {n:,} leaves")
                common.log(f"peers: {engine}, {n:,} leaves")
                cfg = {
                    "engine": engine, "leaves": n, "seed": p.seed, "cpu": cpu,
                    "proof_sizes": sorted({p.common, n}), "samples": p.samples[engine],
                    "warmup": p.warmup[engine], "insert_many_runs": p.insert_many_runs,
                    "budget_s": p.budget_s, "sqlite_singles": p.sqlite_singles,
                    "db": str(tmp / f"{engine}.sqlite3"),
                }
                res, why = run_engine(cfg, p.budget_s + CHILD_SLACK_S)
                if res is None:
                    assert why is not None
                    if engine == ROTORSHM:
                        raise RuntimeError(f"the rotorshm engine failed:\n{why}")
                    common.log(f"peers: {engine} skipped: {why.strip().splitlines()[-1]}")
                    skipped[engine] = why
                    continue
                got[engine] = res
                with contextlib.suppress(OSError):
                    for f in tmp.iterdir():
                        f.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # the naive tree follows the same rules as rotorshm: same leaves, same roots
    root_check = "naive tree not run"
    if NAIVE in got:
        r_roots, n_roots = got[ROTORSHM]["roots"], got[NAIVE]["roots"]
        both = sorted(set(r_roots) & set(n_roots))
        diff = [s for s in both if r_roots[s] != n_roots[s]]
        if diff:
            raise RuntimeError(f"naive and rotorshm roots differ at sizes {diff}")
        root_check = f"naive root == rotorshm root at {', '.join(f'{s:,}' for s in both)} leaves"

    results = build_results(p, got)
    verdicts = common.evaluate_targets(results, targets_for(results))
    elapsed = time.perf_counter() - started
    title = (f"rotorshm vs peers: arity {ARITY} (rotorshm, naive) vs pymerkle "
             f"{pm_version or '(skipped)'}, proofs compared at {p.common:,} leaves, 1 core "
             f"(cpu {cpu}), {'quick' if p.quick else 'full'} run")
    common.print_table(title, table_rows(results, verdicts), COLUMNS, ALIGN)
    print("speedup = rotorshm rate / peer rate, or peer latency / rotorshm latency "
          "(> 1: rotorshm is faster); pymerkle builds a different (binary, SHA-256) tree")
    reached = [f"{e} {got[e]['leaves']:,}" + (" (truncated by the budget)" if got[e]["truncated"]
                                              else "") for e in got]
    print(f"leaves appended per engine: {', '.join(reached)}")
    print("peak RSS per engine process: "
          + ", ".join(f"{e} {got[e]['max_rss_bytes'] / 2**20:,.0f} MiB" for e in got))
    print("contention per engine process (preemptions / other CPUs busy): " + ", ".join(
        f"{e} {got[e]['preemptions']:,} / {common.fmt_pct(got[e]['other_cpus_busy'])}" for e in got)
        + f"; 1-min load average at start {machine['loadavg_1_5_15'][0]:.2f}")
    print(f"check: {root_check}")
    for e, why in skipped.items():
        print(f"skipped {e}: {why.strip().splitlines()[-1]}")
    print(f"runtime {elapsed:.1f} s")

    payload = common.result_payload(
        benchmark="peers",
        machine={**machine, "pymerkle": pm_version or "not installed"},
        parameters={
            "arity": ARITY,
            "leaves": p.leaves,
            "leaves_reached": {e: got[e]["leaves"] for e in got},
            "truncated": {e: got[e]["truncated"] for e in got},
            "common_size": p.common,
            "proof_samples": p.samples,
            "proof_warmup": p.warmup,
            "insert_many_batch": BATCH,
            "insert_many_runs": p.insert_many_runs,
            "sqlite_chunk": BATCH,
            "sqlite_singles": p.sqlite_singles,
            "append_budget_s": p.budget_s,
            "seed": p.seed,
            "quick": p.quick,
            "pinned_cpu": cpu,
            "skipped": skipped,
            "root_check": root_check,
            "per_engine": {e: {"max_rss_bytes": got[e]["max_rss_bytes"],
                               "preemptions": got[e]["preemptions"],
                               "other_cpus_busy": got[e]["other_cpus_busy"],
                               "roots": got[e]["roots"]} for e in got},
            "sample_cap": common.SAMPLE_CAP,
            "timing": "each engine in its own fresh spawn process pinned to one CPU; append "
                      "rate = leaves / summed time of the append calls (checked every "
                      f"{CHUNK:,} leaves, proofs measured in pauses); proof latencies per "
                      "call on random indices with perf_counter_ns, nothing subtracted, gc "
                      "enabled, heap frozen during timed loops; p99 by linear interpolation",
        },
        results=results,
        targets=verdicts,
        plots=make_plots(p, results),
        runtime_s=elapsed,
    )
    common.write_results(payload, args.out, plot_errors_fatal=False)
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
