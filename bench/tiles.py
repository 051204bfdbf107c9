"""Static tiles benchmark: export, and a verifying client over loopback HTTP.

    python -m bench.tiles [--quick] [--out DIR] [--leaves N] [--proofs K]

One in-process LeanIMT of arity 4 with N leaves (1,000,000; --quick 20,000), exported
with `rotorshm.tiles.export` into a folder inside the --out directory (real fsyncs), which
`python -m http.server` then serves on 127.0.0.1 (a subprocess); `rotorshm.remote.
RemoteTree` fetches from it. Measured:

* export of the N-leaf tree into an empty folder (seconds, tiles written and fsynced,
  checkpoint last), and the incremental export after 10,000 more leaves;
* HTTP requests a remote inclusion proof costs with a cold cache (a fresh RemoteTree:
  checkpoint + tiles) against depth + 1, and with a warm cache (the tiles cached; the
  checkpoint fetched again, unchanged), and the warm proof's latency (tiles cached,
  checkpoint held: proof built from tiles and verified);
* the bytes a client downloads to verify K = 1,000 random proofs from tiles (one
  RemoteTree, cache large enough), against the bytes of the same K binary proofs fetched
  one by one (their encoded size, as `GET /v1/proof` serves them); and the same for
  100,000 proofs (quick 5,000), where proofs share tiles.

Every remote proof is compared with the local Snapshot's. Targets are informational.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rotorshm import LeanIMT
from rotorshm.note import Signer
from rotorshm.remote import RemoteTree
from rotorshm.tiles import export

from . import common

SCENARIO = "tiles"
ARITY = 4
GROW = 10_000


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, dict[str, Any]]:
    ap = common.base_parser(__doc__ or "")
    ap.add_argument("--leaves", type=int, default=None, help="tree size (default 1M; quick 20k)")
    ap.add_argument("--proofs", type=int, default=None, help="random proofs for the bytes "
                                                             "measurement (default 1000)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    p = {
        "leaves": common.quick_or_full(ap, "--leaves", args.leaves, args.quick, 20_000,
                                       1_000_000, 1_000),
        "proofs": common.quick_or_full(ap, "--proofs", args.proofs, args.quick, 200, 1_000, 1),
        "dense": 5_000 if args.quick else 100_000,
        "cold": 5 if args.quick else 20,
        "warm": 200 if args.quick else 2_000,
        "runs": 1 if args.quick else 3,
    }
    return args, p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def static_server(folder: Path) -> Iterator[str]:
    """`python -m http.server` over `folder` on a free loopback port; its URL."""
    import httpx

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                             "127.0.0.1", "--directory", str(folder)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError("python -m http.server exited")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/", timeout=2.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("python -m http.server did not start")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args, p = parse_args(argv)
    common.set_quiet(args.quiet)
    started = time.perf_counter()
    machine = common.machine_info()
    rng = random.Random(args.seed)
    n = p["leaves"]
    results: dict[str, Any] = {}
    signer = Signer.generate("bench.rotorshm.example/tiles")
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tiles-", dir=args.out))
    try:
        common.log(f"building a {n:,}-leaf tree")
        tree = LeanIMT(ARITY, 30)
        tree.insert_many(rng.randbytes(32 * n))
        snap = tree.snapshot()
        depth = snap.depth

        # -- export: full, then +10k incremental --------------------------------------------
        full_s: list[float] = []
        inc_s: list[float] = []
        tree.insert_many(rng.randbytes(32 * GROW))  # `snap` stays as it was
        grown = tree.snapshot()
        files = 0
        for r in range(p["runs"]):
            out = work / f"export{r}"
            t0 = time.perf_counter()
            res = export(snap, str(out), signer)
            full_s.append(time.perf_counter() - t0)
            files = res.full_tiles + res.partial_tiles
            t0 = time.perf_counter()
            export(grown, str(out), signer)
            inc_s.append(time.perf_counter() - t0)
            if r:
                shutil.rmtree(out)
        label = common.size_label(n)
        results[f"export {label} leaves"] = common.runs_entry(
            "value", full_s, "s", tiles=files)
        results[f"incremental export +{GROW // 1000}k leaves"] = common.runs_entry(
            "value", inc_s, "s")

        # -- the client -----------------------------------------------------------------------
        folder = work / "export0"
        with static_server(folder) as url:
            cold: list[float] = []
            for i in rng.sample(range(grown.size), p["cold"]):
                with RemoteTree(url, signer.verifier, arity=ARITY) as remote:
                    proof = remote.generate_proof(i)
                    assert proof == grown.generate_proof(i)
                    cold.append(float(remote.stats.requests))
            results["requests per proof, cold cache"] = common.runs_entry(
                "value", cold, "requests", depth=grown.depth)

            with RemoteTree(url, signer.verifier, arity=ARITY) as remote:
                warm_idx = rng.sample(range(grown.size), min(p["warm"], grown.size))
                for i in warm_idx:
                    assert remote.generate_proof(i) == grown.generate_proof(i)
                warm_req: list[float] = []
                for i in warm_idx[:50]:
                    before = remote.stats.requests
                    remote.checkpoint()
                    remote.generate_proof(i)
                    warm_req.append(float(remote.stats.requests - before))
                results["requests per proof, warm cache (checkpoint refetched)"] = \
                    common.runs_entry("value", warm_req, "requests")
                with common.frozen_heap():
                    lat = common.time_ns_each(remote.generate_proof, warm_idx, warmup=20)
                results["warm proof latency (tiles cached)"] = common.latency_entry(lat)

            with RemoteTree(url, signer.verifier, arity=ARITY, cache_tiles=1 << 20) as remote:
                idx = [rng.randrange(grown.size) for _ in range(p["proofs"])]
                proof_bytes = 0
                for i in idx:
                    proof = remote.generate_proof(i)
                    proof_bytes += len(grown.generate_proof(i).to_bytes())
                tile_bytes = remote.stats.bytes
                results[f"bytes for {p['proofs']} proofs from tiles"] = \
                    common.single_value_entry(float(tile_bytes), "bytes",
                                              requests=remote.stats.requests)
                results[f"bytes for {p['proofs']} fetched proofs"] = \
                    common.single_value_entry(float(proof_bytes), "bytes",
                                              requests=len(idx))
                results["proof bytes / tile bytes"] = common.single_value_entry(
                    proof_bytes / tile_bytes, "ratio")

            # Denser use: many proofs share tiles, while each fetched proof is ~1 KiB.
            with RemoteTree(url, signer.verifier, arity=ARITY, cache_tiles=1 << 20) as remote:
                idx = [rng.randrange(grown.size) for _ in range(p["dense"])]
                proof_bytes = 0
                for k, i in enumerate(idx):
                    proof = remote.generate_proof(i)
                    if k % 16 == 0:
                        assert proof == grown.generate_proof(i)
                    proof_bytes += len(proof.to_bytes())
                results[f"bytes for {p['dense']} proofs from tiles"] = \
                    common.single_value_entry(float(remote.stats.bytes), "bytes",
                                              requests=remote.stats.requests)
                results[f"bytes for {p['dense']} fetched proofs"] = \
                    common.single_value_entry(float(proof_bytes), "bytes", requests=len(idx))
                results[f"proof bytes / tile bytes, {p['dense']} proofs"] = \
                    common.single_value_entry(proof_bytes / remote.stats.bytes, "ratio")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    targets = [
        common.Target("requests per proof, cold cache", "max", "<=", depth + 1, "requests"),
        common.Target("requests per proof, warm cache (checkpoint refetched)", "max", "<=", 2,
                      "requests"),
        common.Target("warm proof latency (tiles cached)", "median", "<=", 1e6, "ns"),
        common.Target(f"incremental export +{GROW // 1000}k leaves", "median", "<=", 0.05, "s"),
    ]
    if n == 1_000_000:
        targets.append(common.Target("export 1M leaves", "median", "<=", 2.0, "s"))
    verdicts = common.evaluate_targets(results, targets)
    elapsed = time.perf_counter() - started
    title = (f"rotorshm static tiles: arity {ARITY}, {n:,} leaves (depth {depth}), export to "
             f"disk, RemoteTree over python -m http.server on 127.0.0.1, "
             f"{'quick' if args.quick else 'full'} run")
    common.print_table(title, common.table_rows(results, verdicts, show_metric=True),
                       common.TABLE_COLUMNS, common.TABLE_ALIGN)
    print(f"runtime {elapsed:.1f} s")
    cold_key, warm_key = ("requests per proof, cold cache",
                          "requests per proof, warm cache (checkpoint refetched)")
    bytes_keys = [k for k in results if k.startswith("bytes for ")]
    plots: list[dict[str, Any]] = [
        {"file": "tiles_requests.png",
         "title": f"HTTP requests per verified remote proof, {n:,} leaves, arity {ARITY} "
                  f"(target: depth + 1 = {depth + 1} cold, 2 warm)",
         "xlabel": "cache", "ylabel": "requests (median; max as second bar)",
         "xscale": "linear", "yscale": "linear", "kind": "bar",
         "series": [{"label": metric, "x": ["cold", "warm"],
                     "y": [results[k]["summary"][metric] for k in (cold_key, warm_key)]}
                    for metric in ("median", "max")]},
        {"file": "tiles_bytes.png",
         "title": "bytes downloaded for random proofs: from tiles vs fetched proofs",
         "xlabel": "how", "ylabel": "MiB", "xscale": "linear", "yscale": "linear",
         "kind": "bar",
         "series": [{"label": "MiB", "x": [k.removeprefix("bytes for ") for k in bytes_keys],
                     "y": [results[k]["summary"]["median"] / 2**20 for k in bytes_keys]}]},
    ]
    payload = common.result_payload(
        benchmark=SCENARIO,
        machine=machine,
        parameters={"arity": ARITY, "quick": args.quick, "seed": args.seed, "grow": GROW,
                    **p},
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
