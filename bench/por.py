"""Proof-of-reserves benchmark (SPEC §14): build, serve and verify, against an OpenSSL anchor.

Builds a strongroom-por-v1 tree for N synthetic accounts x 4 assets with the local engine (every
core), then prints each figure next to its anchor measured in the same run:

* build: tree hashes per second (leaves + nodes) ÷ (this machine's OpenSSL SHA-256 rate for the
  same message sizes, one core, x the cores used)                               (target >= 0.5)
  Also shown, because `openssl speed` divides by CPU time while the figure is wall-clock: the
  same ratio from the build's CPU seconds (user + system, all threads and workers), which does
  not move when other work shares the machine; the load average around the build; and each
  phase's wall and CPU seconds.
* peak memory (getrusage: this process, the largest worker, and their sum)       (< 8 GiB at 10M)
* proof serving from the tree file: what a server does per request (find the user, read a
  sibling per level from the memory-mapped file, build the proof, json.dumps), p50/p99 over
  10,000 random users, wall-clock and the thread's CPU time. Twice: first as the build left
  the file (written with O_DIRECT, so mostly not in the page cache: the first requests read the
  disk), then, after reading the file once, for 10,000 other users (a server in its steady
  state, its tree in memory). The target applies to the second.                 (p99 <= 1 ms)
* verification with strongroom_verify (json.loads + verify_proof): per proof    (<= 1 ms)
* side by side (SPEC §14), with ``--bitmex-generator``: BitMEX's open-source generator
  (github.com/BitMEX/proof-of-reserves-liabilities, ``generate_liabilities.py``, a checkout kept
  outside this repository) and our build on the same single-asset input, each from its CSV file
  to its written tree: wall times and the speed-up                              (target >= 10x)

    .venv/bin/python bench/por.py [--accounts 200000] [--pieces 2] [--workers 0] [--keep DIR]
        [--json FILE] [--leaves auto|keep|derive]
        [--bitmex-generator PATH [--bitmex-accounts 200000] [--bitmex-python PYTHON]]

Exit status 0 when every proof verified and both trees of the side by side hold the input's
total (targets missed are reported, not fatal), 1 otherwise.
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

from strongroom.reserves.audit import Audit
from strongroom.reserves.builder import BuildOptions, Plan, build
from strongroom.reserves.merkle import Shape, leaf_count_for, record_bytes
from strongroom.reserves.proofs import ProofServer
from strongroom.reserves.snapshot import AccountIds, Snapshot, _totals, read_file
from strongroom_verify import por_v1
from strongroom_verify.por_v1 import Asset

ASSETS = (Asset("BTC", 8), Asset("ETH", 18), Asset("HKD", 2), Asset("USDT", 6))
SAMPLES = 10_000
VERIFIED = 2_000
SECRET = bytes(range(32))
BITMEX_URL = "https://github.com/BitMEX/proof-of-reserves-liabilities"


class PhaseClock:
    """The builder's progress, timed per phase: wall seconds, and the CPU seconds (user and
    system, all threads) this process spent in it."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, float]] = []
        self.cpu: list[tuple[str, float, float]] = []
        self._name: str | None = None
        self._started = 0.0
        self._cpu_started = (0.0, 0.0)

    def phase(self, name: str, total: int) -> None:
        self._close()
        self._name, self._started = name, time.perf_counter()
        self._cpu_started = _own_cpu()

    def advance(self, amount: int) -> None:
        return None

    def _close(self) -> None:
        if self._name is not None:
            self.phases.append((self._name, time.perf_counter() - self._started))
            user, system = _own_cpu()
            self.cpu.append(
                (self._name, user - self._cpu_started[0], system - self._cpu_started[1])
            )
            self._name = None

    def finish(self) -> None:
        self._close()


def _own_cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


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
    parser.add_argument(
        "--leaves",
        choices=("auto", "keep", "derive"),
        default="auto",
        help="pass A keeps the piece vectors and padding tags, or pass B derives them again "
        "(BuildOptions.derive_leaves; auto: derive above 1 GiB of them)",
    )
    parser.add_argument(
        "--bitmex-generator",
        type=Path,
        help="BitMEX's generate_liabilities.py (or the checkout holding it), for the side by side",
    )
    parser.add_argument("--bitmex-accounts", type=int, default=200_000)
    parser.add_argument(
        "--bitmex-python", default=sys.executable, help="the interpreter that runs BitMEX's script"
    )
    args = parser.parse_args()
    cores = args.workers or os.cpu_count() or 1
    figures: dict[str, object] = {"accounts": args.accounts, "pieces": args.pieces}
    ok = por_bench(args, cores, figures)
    if args.bitmex_generator is None:
        print(
            "  side by side with BitMEX: skipped. To run it: clone "
            f"{BITMEX_URL} outside this repository and pass --bitmex-generator "
            "PATH/generate_liabilities.py [--bitmex-accounts N]"
        )
    else:
        ok = bitmex_side_by_side(args, cores, figures) and ok
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    if not ok:
        print("FAILED: a proof did not verify or a side-by-side tree is wrong")
        return 1
    return 0


def por_bench(args: argparse.Namespace, cores: int, figures: dict[str, object]) -> bool:
    """The build, serving and verification figures; whether every proof verified."""
    n_assets = len(ASSETS)
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
    derive = {"auto": None, "keep": False, "derive": True}[args.leaves]
    options = BuildOptions(pieces=args.pieces, workers=cores, derive_leaves=derive)
    shape = Shape(n_assets, leaf_count_for(snapshot.count * args.pieces))
    derives = Plan(snapshot, SECRET, args.pieces, shape).derives(options)
    print(f"  leaves: {'derived again in pass B' if derives else 'kept from pass A'}")
    figures["leaves_derived"] = derives
    try:
        load_before = os.getloadavg()[0]
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        audit = build(
            snapshot, out, secret=SECRET, audit_id="bench", options=options, progress=clock
        )
        build_s = time.perf_counter() - started
        build_cpu_s = cpu_seconds() - cpu_before
        load = (load_before, os.getloadavg()[0])
        clock.finish()
        memory = peak_memory()
        del snapshot
        report_build(audit, args, cores, clock, (build_s, build_cpu_s), load, memory, figures)
        tree_bytes = (out / "tree.bin").stat().st_size
        print(
            f"  tree: {audit.leaf_count:,} leaves ({args.accounts * args.pieces:,} real), "
            f"height {audit.height}, {tree_bytes / 2**20:,.0f} MiB"
        )
        return serve_and_verify(out, args.accounts, figures)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


def report_build(
    audit: Audit,
    args: argparse.Namespace,
    cores: int,
    clock: PhaseClock,
    seconds: tuple[float, float],
    load: tuple[float, float],
    memory: dict[str, float],
    figures: dict[str, object],
) -> None:
    build_s, build_cpu_s = seconds
    n_assets = len(ASSETS)
    leaf_message = 1 + 32 + 4 + 16 * n_assets
    node_message = 1 + 2 * record_bytes(n_assets)
    hashes = 2 * audit.leaf_count - 1
    figure = hashes / build_s
    leaf_rate = openssl_rate(leaf_message, args.seconds)
    node_rate = openssl_rate(node_message, args.seconds)
    one_core_s = audit.leaf_count / leaf_rate + (audit.leaf_count - 1) / node_rate
    anchor = hashes / one_core_s * cores
    ratio = figure / anchor
    cpu_ratio = one_core_s / build_cpu_s
    print(
        f"  build: {build_s:.1f} s wall ("
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in clock.phases)
        + ")"
    )
    print(
        "  cpu per phase (user + system s): "
        + ", ".join(f"{name} {user:.1f} + {system:.1f}" for name, user, system in clock.cpu)
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
        f"of one core: cpu ratio {cpu_ratio:.3f}; load average {load[0]:.2f} before, "
        f"{load[1]:.2f} after ({os.cpu_count()} cores)"
    )
    print(
        f"  peak memory: self {memory['self_gib']:.2f} GiB, largest worker "
        f"{memory['largest_child_gib']:.2f} GiB, sum {memory['sum_gib']:.2f} GiB "
        f"(target < 8 GiB at 10M accounts)"
    )
    figures.update(
        assets=n_assets,
        cores=cores,
        build_s=build_s,
        phases=clock.phases,
        phase_cpu=clock.cpu,
        leaf_count=audit.leaf_count,
        tree_hashes=hashes,
        figure_hashes_s=figure,
        anchor_hashes_s=anchor,
        openssl_leaf_s=leaf_rate,
        openssl_node_s=node_rate,
        ratio=ratio,
        build_cpu_s=build_cpu_s,
        cpu_ratio=cpu_ratio,
        load_before=load[0],
        load_after=load[1],
        memory=memory,
    )


# ------------------------------------------------------------------------------------------------
# Serving and verifying


def serve_and_verify(directory: Path, accounts: int, figures: dict[str, object]) -> bool:
    """Proof serving as the build left the file, then warm; verification of some of them."""
    server = ProofServer(directory)
    rng = random.Random(5)
    samples = min(SAMPLES, accounts * 4)
    cold = [f"acct-{rng.randrange(accounts):09d}" for _ in range(samples)]
    warm = [f"acct-{rng.randrange(accounts):09d}" for _ in range(samples)]
    cold_wall, cold_cpu, texts = time_proofs(server, cold)
    started = time.perf_counter()
    read_whole(directory / "tree.bin")
    read_s = time.perf_counter() - started
    warm_wall, warm_cpu, _ = time_proofs(server, warm)
    server.close()
    for name, wall, cpu in (("as built", cold_wall, cold_cpu), ("warm", warm_wall, warm_cpu)):
        print(
            f"  proof serving, {name}: p50 {percentile(wall, 0.5):.3f} ms, p99 "
            f"{percentile(wall, 0.99):.3f} ms wall (cpu p50 {percentile(cpu, 0.5):.3f}, p99 "
            f"{percentile(cpu, 0.99):.3f} ms) over {len(wall):,} random users"
            + (" (target p99 <= 1 ms)" if name == "warm" else "")
        )
    print(f"    (between the two: tree.bin read once in {read_s:.1f} s)")
    verify_ms: list[float] = []
    verify_cpu_ms: list[float] = []
    ok = True
    for text in texts[:VERIFIED]:
        started, cpu_started = time.perf_counter(), time.thread_time()
        result = por_v1.verify_proof(json.loads(text))
        verify_cpu_ms.append((time.thread_time() - cpu_started) * 1000)
        verify_ms.append((time.perf_counter() - started) * 1000)
        ok = ok and result.valid
    print(
        f"  verification: p50 {percentile(verify_ms, 0.5):.3f} ms, p99 "
        f"{percentile(verify_ms, 0.99):.3f} ms, mean {statistics.fmean(verify_ms):.3f} ms "
        f"wall (cpu mean {statistics.fmean(verify_cpu_ms):.3f} ms) per proof (target <= 1 ms)"
    )
    figures.update(
        proof_cold_p50_ms=percentile(cold_wall, 0.5),
        proof_cold_p99_ms=percentile(cold_wall, 0.99),
        proof_p50_ms=percentile(warm_wall, 0.5),
        proof_p99_ms=percentile(warm_wall, 0.99),
        proof_cpu_p99_ms=percentile(warm_cpu, 0.99),
        verify_p50_ms=percentile(verify_ms, 0.5),
        verify_p99_ms=percentile(verify_ms, 0.99),
        verify_mean_ms=statistics.fmean(verify_ms),
        verify_cpu_mean_ms=statistics.fmean(verify_cpu_ms),
    )
    return ok


def time_proofs(
    server: ProofServer, account_ids: list[str]
) -> tuple[list[float], list[float], list[str]]:
    """Per proof: wall ms, thread CPU ms; and the proofs' JSON texts."""
    wall_ms: list[float] = []
    cpu_ms: list[float] = []
    texts: list[str] = []
    for account_id in account_ids:
        started, cpu_started = time.perf_counter(), time.thread_time()
        text = json.dumps(server.proof(account_id))
        cpu_ms.append((time.thread_time() - cpu_started) * 1000)
        wall_ms.append((time.perf_counter() - started) * 1000)
        texts.append(text)
    return wall_ms, cpu_ms, texts


def read_whole(path: Path) -> None:
    """Read a file once, so that its pages are in the page cache."""
    with path.open("rb", buffering=0) as handle:
        chunk = bytearray(1 << 24)
        while handle.readinto(chunk):
            pass


# ------------------------------------------------------------------------------------------------
# Side by side with BitMEX's generator


def bitmex_side_by_side(args: argparse.Namespace, cores: int, figures: dict[str, object]) -> bool:
    """BitMEX's generate_liabilities.py and our build on the same single-asset input (one BTC
    balance in satoshis per account, each at least 2 so that BitMEX can split it), each timed
    from reading its CSV file to its tree written. Returns whether both trees hold the input's
    total."""
    script = args.bitmex_generator
    if script.is_dir():
        script = script / "generate_liabilities.py"
    if not script.is_file():
        print(f"  side by side with BitMEX: {script} is not BitMEX's generate_liabilities.py")
        return False
    accounts = args.bitmex_accounts
    amounts = np.random.default_rng(3).integers(2, 10**10, size=accounts).tolist()
    total = sum(amounts)
    print(f"side by side: BitMEX's generator vs ours, {accounts:,} accounts x 1 asset (BTC)")
    with tempfile.TemporaryDirectory(prefix="por-bitmex-") as work:
        root = Path(work)
        theirs_csv, ours_csv = root / "liabilities.csv", root / "snapshot.csv"
        theirs_csv.write_text(
            "account,amount\n" + "".join(f"{n},{a}\n" for n, a in enumerate(amounts))
        )
        ours_csv.write_text(
            "account_id,asset,balance\n"
            + "".join(f"{n},BTC,{a // 10**8}.{a % 10**8:08d}\n" for n, a in enumerate(amounts))
        )
        (root / "bitmex").mkdir()  # its working directory: it writes nonces.txt there
        command = [args.bitmex_python, str(script.resolve()), "--liabilities", str(theirs_csv)]
        started = time.perf_counter()
        with (root / "bitmex" / "tree.csv").open("w") as output:
            subprocess.run(
                [*command, "--blockheight", "100"],
                cwd=root / "bitmex",
                stdout=output,
                check=True,
            )
        theirs_s = time.perf_counter() - started
        with (root / "bitmex" / "tree.csv").open() as tree:
            tree.readline()
            their_total = int(tree.readline().strip().split(",")[1])
        ours_s, audit = _our_side(ours_csv, root / "ours", cores)
        ours_one_core_s, _ = _our_side(ours_csv, root / "ours-1", 1)
    speed_up = theirs_s / ours_s
    print(f"  BitMEX generate_liabilities.py ({args.bitmex_python}): {theirs_s:.1f} s wall")
    print(f"  ours (CSV snapshot + build, 2 pieces, {cores} processes): {ours_s:.2f} s wall")
    print(f"  speed-up: {speed_up:.1f}x (target >= 10x)")
    print(
        f"  (ours on one core: {ours_one_core_s:.2f} s, {theirs_s / ours_one_core_s:.1f}x; "
        "BitMEX's script uses one)"
    )
    right = their_total == total and audit.totals == (total,)
    if not right:
        print(f"  WRONG: input total {total}, BitMEX root {their_total}, ours {audit.totals}")
    figures["bitmex"] = {
        "accounts": accounts,
        "bitmex_s": theirs_s,
        "ours_s": ours_s,
        "ours_one_core_s": ours_one_core_s,
        "speed_up": speed_up,
        "totals_match": right,
    }
    return right


def _our_side(source: Path, out: Path, workers: int) -> tuple[float, Audit]:
    """Our side of the side by side: the CSV snapshot read and the audit built."""
    started = time.perf_counter()
    snapshot = read_file(source, {"BTC": 8})
    audit = build(
        snapshot,
        out,
        secret=SECRET,
        audit_id="bitmex-side-by-side",
        options=BuildOptions(pieces=2, workers=workers),
    )
    return time.perf_counter() - started, audit


if __name__ == "__main__":
    sys.exit(main())
