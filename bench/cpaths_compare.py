"""Before/after of the C path walks in one run: python -m bench.cpaths_compare [N] [--kernel K].

The same tree, the same random inputs, interleaved rounds: every path timed through the C
helper (csrc/tree_ops.c) and through the Python reference algorithms
(``rotorshm._cpaths.python_paths()``, node hashes still on the kernel in use). Prints per-call
p50 / p10 in µs and single-insert and proof_bytes throughput. Not a suite scenario (no
``run``): a quick side-by-side for reports; ``python -m bench tree`` carries the same rows.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import rotorshm
from rotorshm import ConsistencyProof, InclusionProof, LeanIMT, _cpaths, verify_proof_bytes


def _mode(mode: str) -> contextlib.AbstractContextManager[None]:
    return _cpaths.python_paths() if mode == "python" else contextlib.nullcontext()


def _pct(xs: list[int], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] / 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("leaves", type=int, nargs="?", default=1_000_000)
    ap.add_argument("--samples", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    n = args.leaves
    rng = random.Random(1)
    t = LeanIMT(4, max(rotorshm.depth_for(n + 1_000_000, 4), 1))
    step = 320_000
    for off in range(0, n * 32, step):
        t.insert_many(rng.randbytes(min(step, n * 32 - off)))
    snap = t.snapshot()
    root = snap.root
    assert root is not None
    k = args.samples
    idx = [rng.randrange(n) for _ in range(k)]
    olds = [rng.randint(1, n) for _ in range(k)]
    pairs = []
    for _ in range(k // 4):
        o = rng.randint(1, n)
        pairs.append((o, rng.randrange(o)))
    inputs: dict[str, dict[str, list[Any]]] = {}
    for mode in ("C", "python"):
        with _mode(mode):
            inputs[mode] = {
                "incl": [snap.generate_proof(i) for i in idx],
                "cons": [snap.generate_consistency_proof(o) for o in olds],
                "upd": [(snap.generate_consistency_proof(o), snap.generate_proof(i, o))
                        for o, i in pairs],
            }
    blobs = [snap.proof_bytes(i) for i in idx]
    cases: list[tuple[str, Callable[[Any], Any], Callable[[str], list[Any]]]] = [
        ("generate_proof", snap.generate_proof, lambda m: idx),
        ("proof_bytes", snap.proof_bytes, lambda m: idx),
        ("InclusionProof.verify", InclusionProof.verify, lambda m: inputs[m]["incl"]),
        ("verify_proof_bytes", lambda b: verify_proof_bytes(b, root, n), lambda m: blobs),
        ("from_bytes + verify", lambda b: InclusionProof.from_bytes(b).verify(),
         lambda m: blobs),
        ("generate_consistency_proof", snap.generate_consistency_proof, lambda m: olds),
        ("consistency_proof_bytes", snap.consistency_proof_bytes, lambda m: olds),
        ("ConsistencyProof.verify", ConsistencyProof.verify, lambda m: inputs[m]["cons"]),
        ("update_inclusion_proof", lambda p: p[0].update_inclusion_proof(p[1]),
         lambda m: inputs[m]["upd"]),
    ]
    samples: dict[tuple[str, str], list[int]] = {}
    clock = time.perf_counter_ns
    for _ in range(args.rounds):
        for name, fn, data in cases:
            for mode in ("C", "python"):
                out = samples.setdefault((name, mode), [])
                with _mode(mode):
                    for x in data(mode)[: k if mode == "C" else k // 4]:
                        t0 = clock()
                        fn(x)
                        out.append(clock() - t0)
    info = rotorshm.native_info()
    print(f"kernel {info['kernel']} ({info['lanes']} lanes), N={n:,} arity 4, "
          f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'per call, µs':32s} {'C p50':>8s} {'C p10':>8s} {'py p50':>8s} {'py p10':>8s}")
    for name, _, _ in cases:
        c, p = samples[(name, "C")], samples[(name, "python")]
        print(f"{name:32s} {_pct(c, .5):8.2f} {_pct(c, .1):8.2f} {_pct(p, .5):8.2f} "
              f"{_pct(p, .1):8.2f}")
    for mode in ("C", "python"):
        with _mode(mode):
            rate = _insert_rate(t, rng, 30_000 if mode == "C" else 3_000)
            print(f"{mode:7s} single insert/s: {rate}")
            print(f"{mode:7s} proof_bytes/s, one process, snapshot per 100: "
                  f"{_proof_rate(t, idx)}")


def _chunks(xs: list[bytes], size: int) -> Iterator[list[bytes]]:
    for i in range(0, len(xs), size):
        yield xs[i : i + size]


def _insert_rate(t: LeanIMT, rng: random.Random, count: int) -> str:
    leaves = [rng.randbytes(32) for _ in range(count)]
    rates = []
    ins = t.insert
    for chunk in _chunks(leaves, 500):
        t0 = time.perf_counter()
        for x in chunk:
            ins(x)
        rates.append(len(chunk) / (time.perf_counter() - t0))
    return f"median {statistics.median(rates):,.0f}, best 500-insert chunk {max(rates):,.0f}"


def _proof_rate(t: LeanIMT, idx: list[int]) -> str:
    rates = []
    for _ in range(20):
        t0 = time.perf_counter()
        done = 0
        while done < 2000:
            snap = t.snapshot()
            pb = snap.proof_bytes
            size = snap.size
            for i in idx[done : done + 100]:
                pb(i % size)
            done += 100
        rates.append(done / (time.perf_counter() - t0))
    return f"median {statistics.median(rates):,.0f}, best {max(rates):,.0f}"


if __name__ == "__main__":
    main()
