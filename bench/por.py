"""Proof-of-reserves benchmark (SPEC §14): build, serve and verify, against an OpenSSL anchor.

Builds a strongroom-por-v1 tree for N synthetic accounts x 4 assets with the local engine (every
core), then prints each figure next to its anchor measured in the same run:

* build: tree hashes per second (leaves + nodes) ÷ (this machine's OpenSSL SHA-256 rate for the
  same message sizes, one core, x the cores used)                               (target >= 0.5)
  Also shown, because `openssl speed` divides by CPU time while the figure is wall-clock: the
  same ratio from the build's CPU seconds (user + system, all threads and workers), which does
  not move when other work shares the machine; and the load average around the build.
* peak memory (getrusage: this process, the largest worker, and their sum)       (< 8 GiB at 10M)
* proof serving from the tree file: p99 over 10,000 random users                 (<= 1 ms)
* verification with strongroom_verify: per proof                                (<= 1 ms)

    .venv/bin/python bench/por.py [--accounts 200000] [--pieces 2] [--workers 0] [--keep DIR]

Exit status 0 when every proof verified (targets missed are reported, not fatal), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from strongroom.reserves.builder import BuildOptions, build
from strongroom.reserves.merkle import record_bytes
from strongroom.reserves.proofs import ProofServer
from strongroom.reserves.snapshot import AccountIds, Snapshot, _totals
from strongroom_verify import por_v1
from strongroom_verify.por_v1 import Asset

ASSETS = (Asset("BTC", 8), Asset("ETH", 18), Asset("HKD", 2), Asset("USDT", 6))
SAMPLES = 10_000
SECRET = bytes(range(32))


class PhaseClock:
    """The builder's progress, timed per phase."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, float]] = []
        self._name: str | None = None
        self._started = 0.0

    def phase(self, name: str, total: int) -> None:
        self._close()
        self._name, self._started = name, time.perf_counter()

    def advance(self, amount: int) -> None:
        return None

    def _close(self) -> None:
        if self._name is not None:
            self.phases.append((self._name, time.perf_counter() - self._started))
            self._name = None

    def finish(self) -> None:
        self._close()


def synthetic_snapshot(accounts: int, seed: int) -> Snapshot:
    """Balances like an exchange's: most accounts hold a little of some assets. Generated in
    chunks so the generator's temporaries do not dominate the measured peak memory."""
    rng = np.random.default_rng(seed)
    width = 16 * len(ASSETS)
    rows = np.empty((accounts, width), dtype=np.uint8)
    id_parts = []
    totals = [0] * len(ASSETS)
    chunk = 1 << 20
    for start in range(0, accounts, chunk):
        count = min(chunk, accounts - start)
        grid = np.zeros((count, len(ASSETS), 2), dtype=np.uint64)
        held = rng.random((count, len(ASSETS))) < 0.6
        magnitude = rng.integers(1, 52, size=(count, len(ASSETS))).astype(np.uint64)
        low = rng.integers(0, 2**62, size=(count, len(ASSETS)), dtype=np.uint64)
        low >>= np.uint64(62) - magnitude
        grid[:, :, 1] = np.where(held, low + np.uint64(1), np.uint64(0))
        nothing = ~grid[:, :, 1].any(axis=1)
        grid[nothing, 2, 1] = 100  # everyone holds something (zero accounts are left out)
        rows[start : start + count] = grid.astype(">u8").view(np.uint8).reshape(count, width)
        totals = [a + b for a, b in zip(totals, _totals(grid, ASSETS), strict=True)]
        id_parts.append(
            pa.array([f"acct-{n:09d}" for n in range(start, start + count)], pa.string())
        )
    ids = pa.concat_arrays(id_parts) if id_parts else pa.array([], pa.string())
    return Snapshot(ASSETS, AccountIds(ids), rows, tuple(totals))


def openssl_rate(size: int, seconds: int) -> float:
    """Hashes per second of one core for messages of ``size`` bytes (`openssl speed`)."""
    output = subprocess.run(
        ["openssl", "speed", "-bytes", str(size), "-seconds", str(seconds), "sha256"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"^sha256\s+([0-9.]+)k", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"cannot read `openssl speed` output:\n{output}")
    return float(match.group(1)) * 1000 / size


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads) and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_memory() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return {"self_gib": own, "largest_child_gib": children, "sum_gib": own + children}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=200_000)
    parser.add_argument("--pieces", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="0 = every core")
    parser.add_argument("--seconds", type=int, default=3, help="per openssl speed run")
    parser.add_argument("--keep", type=Path, help="build here and keep the audit")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    cores = args.workers or os.cpu_count() or 1
    n_assets = len(ASSETS)
    leaf_message = 1 + 32 + 4 + 16 * n_assets
    node_message = 1 + 2 * record_bytes(n_assets)

    print(
        f"por bench: {args.accounts:,} accounts x {n_assets} assets, {args.pieces} pieces, "
        f"{cores} processes"
    )
    started = time.perf_counter()
    snapshot = synthetic_snapshot(args.accounts, seed=1)
    print(f"  synthetic snapshot: {time.perf_counter() - started:.1f} s")
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="por-bench-"))
    out = workdir / "audit" if args.keep is None else args.keep
    clock = PhaseClock()
    load_before = os.getloadavg()[0]
    try:
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        audit = build(
            snapshot,
            out,
            secret=SECRET,
            audit_id="bench",
            options=BuildOptions(pieces=args.pieces, workers=cores),
            progress=clock,
        )
        build_s = time.perf_counter() - started
        build_cpu_s = cpu_seconds() - cpu_before
        load_after = os.getloadavg()[0]
        clock.finish()
        memory = peak_memory()
        hashes = 2 * audit.leaf_count - 1
        figure = hashes / build_s

        leaf_rate = openssl_rate(leaf_message, args.seconds)
        node_rate = openssl_rate(node_message, args.seconds)
        one_core_s = audit.leaf_count / leaf_rate + (audit.leaf_count - 1) / node_rate
        anchor = hashes / one_core_s * cores
        ratio = figure / anchor
        cpu_ratio = one_core_s / build_cpu_s

        serve_ms, verify_ms, ok = serve_and_verify(out, args.accounts)
        tree_bytes = (out / "tree.bin").stat().st_size
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"  tree: {audit.leaf_count:,} leaves ({args.accounts * args.pieces:,} real), height "
        f"{audit.height}, {tree_bytes / 2**20:,.0f} MiB"
    )
    print(
        f"  build: {build_s:.1f} s wall ("
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in clock.phases)
        + ")"
    )
    print(f"  figure: {figure:,.0f} tree hashes/s ({hashes:,} hashes)")
    print(
        f"  anchor: OpenSSL SHA-256, one core: {leaf_message} B {leaf_rate:,.0f}/s, "
        f"{node_message} B {node_rate:,.0f}/s; this tree's mix x {cores} cores = "
        f"{anchor:,.0f}/s"
    )
    print(f"  ratio: {ratio:.3f} (target >= 0.5)")
    print(
        f"  cpu time: {build_cpu_s:.1f} s for the build, OpenSSL would take {one_core_s:.1f} s "
        f"of one core: cpu ratio {cpu_ratio:.3f}; load average {load_before:.2f} before, "
        f"{load_after:.2f} after ({os.cpu_count()} cores)"
    )
    print(
        f"  peak memory: self {memory['self_gib']:.2f} GiB, largest worker "
        f"{memory['largest_child_gib']:.2f} GiB, sum {memory['sum_gib']:.2f} GiB "
        f"(target < 8 GiB at 10M accounts)"
    )
    print(
        f"  proof serving: p50 {percentile(serve_ms, 0.5):.3f} ms, p99 "
        f"{percentile(serve_ms, 0.99):.3f} ms over {len(serve_ms):,} random users "
        f"(target p99 <= 1 ms)"
    )
    print(
        f"  verification: p50 {percentile(verify_ms, 0.5):.3f} ms, p99 "
        f"{percentile(verify_ms, 0.99):.3f} ms, mean {statistics.fmean(verify_ms):.3f} ms "
        f"per proof (target <= 1 ms)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "accounts": args.accounts,
                    "assets": n_assets,
                    "pieces": args.pieces,
                    "cores": cores,
                    "build_s": build_s,
                    "phases": clock.phases,
                    "leaf_count": audit.leaf_count,
                    "tree_hashes": hashes,
                    "figure_hashes_s": figure,
                    "anchor_hashes_s": anchor,
                    "openssl_leaf_s": leaf_rate,
                    "openssl_node_s": node_rate,
                    "ratio": ratio,
                    "build_cpu_s": build_cpu_s,
                    "cpu_ratio": cpu_ratio,
                    "load_before": load_before,
                    "load_after": load_after,
                    "memory": memory,
                    "proof_p50_ms": percentile(serve_ms, 0.5),
                    "proof_p99_ms": percentile(serve_ms, 0.99),
                    "verify_p50_ms": percentile(verify_ms, 0.5),
                    "verify_p99_ms": percentile(verify_ms, 0.99),
                },
                indent=2,
            )
        )
    if not ok:
        print("FAILED: a proof did not verify")
        return 1
    return 0


def serve_and_verify(directory: Path, accounts: int) -> tuple[list[float], list[float], bool]:
    server = ProofServer(directory)
    rng = random.Random(5)
    chosen = [f"acct-{rng.randrange(accounts):09d}" for _ in range(min(SAMPLES, accounts * 4))]
    serve_ms: list[float] = []
    texts: list[str] = []
    for account_id in chosen:
        started = time.perf_counter()
        text = json.dumps(server.proof(account_id))
        serve_ms.append((time.perf_counter() - started) * 1000)
        texts.append(text)
    verify_ms: list[float] = []
    ok = True
    for text in texts[:2000]:
        started = time.perf_counter()
        result = por_v1.verify_proof(json.loads(text))
        verify_ms.append((time.perf_counter() - started) * 1000)
        ok = ok and result.valid
    server.close()
    return serve_ms, verify_ms, ok


if __name__ == "__main__":
    sys.exit(main())
