"""Ledger benchmark (SPEC §14): HTTP transfers on PostgreSQL against a pgbench anchor.

Every figure is printed next to an anchor measured in the same run, and as a ratio:

* single transfers through ``POST /v1/transfers``   vs  pgbench TPC-B-like TPS  (target >= 0.5)
* batched transfers through the raw ledger API     vs  pgbench TPC-B-like TPS  (target >= 5)
* hot account (every transfer credits one merchant) vs  the spread-out figure   (target >= 0.5)

The run creates two throw-away databases on the given server (one for Strongroom, one for
pgbench), starts the real server (``strongroom serve``) as a subprocess, seeds users and accounts
through the API and the CLI (accounts and batches with a ledger service key, as an integration
calls them: ``strongroom admin create-api-key --scope ledger``), measures, then runs
``strongroom ledger check`` and checks that every acknowledged transfer is in the journal. Both
databases are dropped at the end, also on Ctrl-C or failure. Exit status: 0 when the run is
correct (targets missed are reported, not fatal); 1 when the ledger check fails, an acknowledged
transfer is missing, or any request failed; 130 when interrupted.

    .venv/bin/python bench/ledger.py [--clients 16] [--seconds 20] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import URL, Engine, create_engine, make_url
from sqlalchemy.exc import DBAPIError

from strongroom.db import make_engine, upgrade

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PASSWORD = "bench-password-" + "x" * 8
ASSET = "HKD"
ERROR_SAMPLES = 5
PHASES = ("floor", "single", "hot", "batch")

# --------------------------------------------------------------------------- arguments


@dataclass(frozen=True, slots=True)
class Options:
    clients: int
    seconds: float
    pg_url: str
    workers: int
    users: int
    accounts: int
    batch_size: int
    keep_logs: bool
    phases: tuple[str, ...] = PHASES


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--clients", type=int, default=16, help="concurrent clients (and pgbench -c)"
    )
    parser.add_argument("--seconds", type=float, default=20, help="length of each measured phase")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="a database on the server to use")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="strongroom serve --workers (default 1, as serve's: on two cores the server and "
        "PostgreSQL each get one; two workers measured slower, see bench/README.md)",
    )
    parser.add_argument(
        "--users",
        type=int,
        default=0,
        help="users for the single/hot phases (default: 2 x clients)",
    )
    parser.add_argument("--accounts", type=int, default=1000, help="accounts for the batch phase")
    parser.add_argument("--batch-size", type=int, default=8000, help="transfers per batch request")
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the server log in bench/results/ even when the run succeeds",
    )
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help="the load phases to run, comma-separated (pgbench, the anchor, always runs)",
    )
    ns = parser.parse_args(argv)
    phases = tuple(name for name in PHASES if name in ns.phases.split(","))
    unknown = set(ns.phases.split(",")) - set(PHASES)
    if unknown or not phases:
        parser.error(f"--phases takes some of {','.join(PHASES)}")
    if ns.clients < 1 or ns.seconds <= 0 or ns.workers < 1 or ns.batch_size < 1:
        parser.error("--clients, --seconds, --workers and --batch-size must be positive")
    if ns.accounts < 2:
        parser.error("--accounts must be at least 2")
    users = ns.users or 2 * ns.clients
    if users < 3:
        parser.error("--users must be at least 3")
    return Options(
        clients=ns.clients,
        seconds=ns.seconds,
        pg_url=ns.pg_url,
        workers=ns.workers,
        users=users,
        accounts=ns.accounts,
        batch_size=ns.batch_size,
        keep_logs=ns.keep_logs,
        phases=phases,
    )


# --------------------------------------------------------------------------- small helpers


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (nan when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def ratio(figure: float, anchor: float) -> float:
    return figure / anchor if anchor > 0 else math.nan


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def strongroom_executable() -> str:
    for candidate in (
        Path(sys.executable).parent / "strongroom",
        ROOT / ".venv" / "bin" / "strongroom",
    ):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("strongroom")
    if found is None:
        raise SystemExit("cannot find the `strongroom` command: install the package first")
    return found


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM / SIGHUP unwind like Ctrl-C, so the databases are dropped."""
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------- CPU accounting


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


CLIENT_BACKEND = re.compile(r"\(\d+\)|\[local\]")


@dataclass(frozen=True, slots=True)
class CpuSample:
    at: float
    machine_busy_s: float
    processes: dict[int, tuple[str, float]]  # pid -> (category, cpu seconds so far)


class CpuMeter:
    """Who used the CPU during a phase: the server process tree, PostgreSQL working for this run
    (backends of our databases and the shared background processes), this load generator, and
    everything else on the machine (other users' tests, other databases' backends)."""

    def __init__(self) -> None:
        self.server_pid: int | None = None
        self.databases: set[str] = set()

    def sample(self) -> CpuSample:
        busy = 0.0
        with suppress(OSError, ValueError, IndexError):
            ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
            busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLOCK_TICKS  # minus idle, iowait
        stats = list(self._proc_stats())
        children: dict[int, list[int]] = {}
        for pid, ppid, _comm, _cpu in stats:
            children.setdefault(ppid, []).append(pid)
        tree: set[int] = set()
        stack = [self.server_pid] if self.server_pid is not None else []
        while stack:
            pid = stack.pop()
            tree.add(pid)
            stack.extend(children.get(pid, []))
        processes: dict[int, tuple[str, float]] = {}
        for pid, ppid, comm, cpu in stats:
            if pid in tree:
                processes[pid] = ("server", cpu)
            elif pid == os.getpid() or ppid == os.getpid():  # this process, pgbench
                processes[pid] = ("bench", cpu)
            elif comm == "postgres":
                processes[pid] = (self._postgres_category(pid), cpu)
        return CpuSample(time.monotonic(), busy, processes)

    def _postgres_category(self, pid: int) -> str:
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return "other"
        if not CLIENT_BACKEND.search(title) or any(f" {d} " in title for d in self.databases):
            return "postgres"
        return "other"

    @staticmethod
    def _proc_stats() -> Iterator[tuple[int, int, str, float]]:
        """(pid, ppid, comm, cpu seconds) for every process we can read (Linux)."""
        if not Path("/proc").is_dir():
            return
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                raw = (entry / "stat").read_text()
            except OSError:
                continue
            comm = raw[raw.index("(") + 1 : raw.rindex(")")]
            rest = raw[raw.rindex(")") + 2 :].split()
            yield int(entry.name), int(rest[1]), comm, (int(rest[11]) + int(rest[12])) / CLOCK_TICKS


@dataclass(frozen=True, slots=True)
class CpuShare:
    """CPU used during a phase, in cores (1.0 = one core busy the whole phase)."""

    machine: float
    server: float
    postgres: float
    load_generator: float
    other: float

    @staticmethod
    def between(start: CpuSample, end: CpuSample) -> CpuShare:
        wall = max(end.at - start.at, 1e-9)
        used = {"server": 0.0, "postgres": 0.0, "bench": 0.0}
        for pid, (category, cpu) in end.processes.items():
            if category in used:
                before = start.processes.get(pid)
                used[category] += cpu - (before[1] if before is not None else 0.0)
        machine = (end.machine_busy_s - start.machine_busy_s) / wall
        ours = sum(used.values()) / wall
        return CpuShare(
            machine=machine,
            server=used["server"] / wall,
            postgres=used["postgres"] / wall,
            load_generator=used["bench"] / wall,
            other=max(0.0, machine - ours),
        )

    def describe(self) -> str:
        return (
            f"{self.machine:.2f} of {os.cpu_count()} busy: server {self.server:.2f}, "
            f"postgres {self.postgres:.2f}, load generator {self.load_generator:.2f}, "
            f"other {self.other:.2f}"
        )


# --------------------------------------------------------------------------- databases


class Databases:
    """The throw-away databases of one run; ``drop_all`` is safe to call more than once."""

    def __init__(self, pg_url: str) -> None:
        self.base = make_url(pg_url)
        self.admin = create_engine(
            self.base, isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=0
        )
        self.created: list[str] = []
        self.checkpoint_refused = False

    def create(self, prefix: str) -> str:
        name = f"{prefix}_{secrets.token_hex(4)}"
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return name

    def url(self, name: str) -> URL:
        return self.base.set(database=name)

    def drop(self, name: str) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in list(self.created):
            try:
                self.drop(name)
                say(f"dropped database {name}")
            except Exception as error:  # keep dropping the others
                say(f"could not drop database {name}: {error}")
        self.admin.dispose()

    def checkpoint(self) -> None:
        """Start each phase without a checkpoint of the previous one's writes pending (needs a
        superuser or pg_checkpoint; skipped with a note otherwise)."""
        try:
            with self.admin.connect() as connection:
                connection.execute(text("CHECKPOINT"))
        except DBAPIError as error:
            if not self.checkpoint_refused:
                say(f"CHECKPOINT refused, phases start without one: {error.orig}")
            self.checkpoint_refused = True

    def server_version(self) -> str:
        with self.admin.connect() as connection:
            return str(connection.execute(text("SHOW server_version")).scalar_one())


# --------------------------------------------------------------------------- pgbench anchor


@dataclass(frozen=True, slots=True)
class PgbenchResult:
    tps: float
    latency_avg_ms: float
    transactions: int
    scale: int
    command: str
    cpu: CpuShare


def _pg_command_env(url: URL) -> tuple[list[str], dict[str, str]]:
    args = [
        "-h",
        url.host or "127.0.0.1",
        "-p",
        str(url.port or 5432),
        "-U",
        url.username or "postgres",
    ]
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return args, env


def run_pgbench(dbs: Databases, opts: Options, meter: CpuMeter) -> PgbenchResult:
    pgbench = shutil.which("pgbench") or "/usr/bin/pgbench"
    name = dbs.create("strongroom_pgbench")
    meter.databases.add(name)
    connection_args, env = _pg_command_env(dbs.base)
    scale = max(opts.clients, 1)
    say(f"pgbench: initialising {name} at scale {scale}")
    subprocess.run(
        [pgbench, "-i", "-q", "-s", str(scale), *connection_args, name],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    dbs.checkpoint()
    command = [
        pgbench,
        "-c",
        str(opts.clients),
        "-j",
        str(min(2, opts.clients)),
        "-T",
        str(max(1, round(opts.seconds))),
        "-M",
        "prepared",
        *connection_args,
        name,
    ]
    say(f"pgbench: {' '.join(command[1:])}")
    # CPU is sampled inside the run (its backends and pgbench itself are gone once it ends).
    seconds = max(1, round(opts.seconds))
    settle = min(1.0, seconds / 4)
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:  # on any exception (Ctrl-C included) Popen.__exit__ waits: kill first
        try:
            time.sleep(settle)
            start = meter.sample()
            time.sleep(max(0.1, seconds - settle - 0.3))
            end = meter.sample()
            stdout, stderr = process.communicate()
        except BaseException:
            process.kill()
            raise
    if process.returncode != 0:
        raise RuntimeError(f"pgbench failed ({process.returncode}):\n{stdout}\n{stderr}")
    done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    dbs.drop(name)
    tps = re.search(r"^tps = ([0-9.]+) \(without initial connection time\)", done.stdout, re.M)
    latency = re.search(r"^latency average = ([0-9.]+) ms", done.stdout, re.M)
    processed = re.search(r"number of transactions actually processed: (\d+)", done.stdout)
    if tps is None:
        raise RuntimeError(f"cannot read pgbench's tps line:\n{done.stdout}\n{done.stderr}")
    return PgbenchResult(
        tps=float(tps.group(1)),
        latency_avg_ms=float(latency.group(1)) if latency else math.nan,
        transactions=int(processed.group(1)) if processed else 0,
        scale=scale,
        command="pgbench " + " ".join(command[1:]),
        cpu=CpuShare.between(start, end),
    )


# --------------------------------------------------------------------------- the server


class Server:
    """``strongroom serve`` in its own session, its output in a log file."""

    def __init__(self, *, database_url: str, workers: int) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "STRONGROOM_DATABASE_URL": database_url,
            "STRONGROOM_ENV": "development",
            "STRONGROOM_SECRET_KEY": secrets.token_hex(16),
            # a load test from one address: R-SEC-9's limits are off for local benchmarks
            # (production refuses this setting)
            "STRONGROOM_RATE_LIMITS_ENABLED": "false",
            # no SMTP server here: every transfer still writes both receipts to the outbox in
            # its own transaction (checked after the run), but the server does not try to
            # deliver them (a failing SMTP retry loop is not a state to measure; a deployment
            # delivers with the same thread or with `strongroom worker`)
            "STRONGROOM_MAIL__DELIVER": "false",
            # its unverified users top up 50,000 HKD each and send millions of 0.01: a tier
            # table for the bench without the spending windows and the max balance (the
            # guard then reads no window; the limits' own cost is tests/integration/test_limits*)
            **{
                f"STRONGROOM_LIMITS__TIERS__UNVERIFIED__{column}": "none"
                for column in ("PER_TRANSACTION", "PER_DAY", "PER_YEAR", "MAX_BALANCE")
            },
        }
        self.database_url = database_url
        self.workers = workers
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix="strongroom-bench-server-", suffix=".log", delete=False
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, timeout_s: float = 180.0) -> None:  # a loaded machine starts slowly
        command = [
            strongroom_executable(),
            "serve",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--no-access-log",
        ]
        say(f"server: {' '.join(command[1:])}  (log: {self.log.name})")
        self.process = subprocess.Popen(
            command, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"server exited with {self.process.returncode}:\n{self.log_tail()}"
                    )
                with suppress(httpx.HTTPError):
                    if client.get("/health").status_code == 200:
                        return
                time.sleep(0.2)
        raise RuntimeError(
            f"server did not answer /health in {timeout_s:.0f} s:\n{self.log_tail()}"
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [strongroom_executable(), *args, "--database-url", self.database_url],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )

    def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)  # the group we started, by its id
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self.log.close()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.closed:
            self.log.flush()
        return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-lines:])


# --------------------------------------------------------------------------- seeding


@dataclass(frozen=True, slots=True)
class BenchUser:
    email: str
    token: str


@dataclass(slots=True)
class Seed:
    ledger_key: str = ""  # X-Api-Key of the raw ledger API (accounts, batches)
    users: list[BenchUser] = field(default_factory=list)
    merchant: BenchUser | None = None
    account_ids: list[int] = field(default_factory=list)


def _ok(response: httpx.Response, *expected: int) -> dict[str, Any]:
    if response.status_code not in expected:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path} -> "
            f"{response.status_code}: {response.text[:500]}"
        )
    body: dict[str, Any] = response.json()
    return body


def _login(client: httpx.Client, email: str) -> str:
    body = _ok(client.post("/v1/auth/login", json={"email": email, "password": PASSWORD}), 200)
    return str(body["token"])


VERIFY_LINK = re.compile(r"/app/verify-email#token=([A-Za-z0-9_-]+)")


def _verify_email(client: httpx.Client, engine: Engine, email: str) -> None:
    """Open the emailed verification link as its owner would (R-SEC-11: no money moves from an
    unverified address): the token from the outbox's email, posted to the API."""
    with engine.connect() as connection:
        body = connection.execute(
            text(
                "SELECT body_text FROM mail_outbox WHERE to_address = :email"
                " AND template_id = 'account.verify_email' ORDER BY id DESC LIMIT 1"
            ),
            {"email": email},
        ).scalar_one()
    found = VERIFY_LINK.search(body)
    if found is None:
        raise RuntimeError(f"no verification link in the email to {email}")
    verified = client.post("/v1/auth/verify-email", json={"token": found.group(1)})
    if verified.status_code != 204:
        raise RuntimeError(f"verify-email -> {verified.status_code}: {verified.text[:500]}")


def _make_user(base_url: str, engine: Engine, email: str) -> BenchUser:
    with httpx.Client(base_url=base_url, timeout=60.0) as client:
        _ok(
            client.post(
                "/v1/auth/register",
                json={
                    "email": email,
                    "password": PASSWORD,
                    "name": email.split("@")[0],
                    "region": "HK",
                },
            ),
            201,
        )
        _verify_email(client, engine, email)
        token = _login(client, email)
        _ok(
            client.post(
                "/v1/topups",
                headers={
                    "Authorization": f"Bearer {token}",
                    "Idempotency-Key": f"seed-{uuid.uuid4().hex}",
                },
                # the sandbox's per-request cap (funding.sandbox_max_topup): 5 million 0.01 sends
                json={"asset": ASSET, "amount": "50000.00", "channel": "sandbox"},
            ),
            201,
        )
        return BenchUser(email=email, token=token)


def _make_account(client: httpx.Client, index: int) -> int:
    body = _ok(
        client.post(
            "/v1/admin/ledger/accounts",
            json={
                "owner_type": "operator",
                "owner_id": "bench",
                "kind": f"bench_{index}",
                "asset": ASSET,
                "allow_negative": True,
            },
        ),
        201,
    )
    return int(body["id"])


def ledger_key(server: Server, name: str) -> str:
    """A service key with the ``ledger`` scope, made with the CLI: the raw ledger API's writes
    serve integrations and take no person's token (R-SEC-10)."""
    done = server.cli("admin", "create-api-key", "--scope", "ledger", "--name", name)
    found = re.search(r"^api_key: (\S+)$", done.stdout, re.M)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"create-api-key failed:\n{done.stdout}\n{done.stderr}")
    return found.group(1)


def seed(server: Server, opts: Options) -> Seed:
    run_id = secrets.token_hex(3)
    result = Seed(ledger_key=ledger_key(server, f"bench-{run_id}"))
    if "single" in opts.phases or "hot" in opts.phases:
        _seed_users(server, opts, run_id, result)
    if "batch" in opts.phases:
        _seed_accounts(server, opts, result)
    return result


def _seed_users(server: Server, opts: Options, run_id: str, result: Seed) -> None:
    started = time.monotonic()
    emails = [f"user{i}-{run_id}@bench.example" for i in range(opts.users)]
    emails.append(f"merchant-{run_id}@bench.example")
    engine = make_engine(server.database_url, pool_size=opts.clients)
    try:
        with ThreadPoolExecutor(max_workers=opts.clients) as pool:
            made = list(pool.map(lambda email: _make_user(server.base_url, engine, email), emails))
    finally:
        engine.dispose()
    result.users, result.merchant = made[:-1], made[-1]
    seconds = time.monotonic() - started
    say(f"seeded {len(made)} users (register, verify, login, top-up) in {seconds:.1f} s")


def _seed_accounts(server: Server, opts: Options, result: Seed) -> None:
    started = time.monotonic()
    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()

    def account(index: int) -> int:
        client = getattr(local, "client", None)
        if client is None:
            client = httpx.Client(
                base_url=server.base_url,
                timeout=60.0,
                headers={"X-Api-Key": result.ledger_key},
            )
            local.client = client
            with lock:
                clients.append(client)
        return _make_account(client, index)

    try:
        with ThreadPoolExecutor(max_workers=opts.clients) as pool:
            result.account_ids = list(pool.map(account, range(opts.accounts)))
    finally:
        for client in clients:
            client.close()
    say(f"seeded {opts.accounts} operator accounts in {time.monotonic() - started:.1f} s")


# --------------------------------------------------------------------------- load phases


@dataclass(slots=True)
class Outcome:
    ok: bool
    transfers: int = 0
    error: str | None = None


@dataclass(slots=True)
class PhaseResult:
    name: str
    clients: int
    seconds_asked: float
    elapsed_s: float = 0.0
    requests: int = 0
    errors: int = 0
    transfers: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    cpu: CpuShare | None = None

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else math.nan

    @property
    def transfers_per_s(self) -> float:
        return self.transfers / self.elapsed_s if self.elapsed_s > 0 else math.nan

    def latency_ms(self, q: float) -> float:
        return percentile(sorted(self.latencies_ms), q)

    def summary(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "seconds_asked": self.seconds_asked,
            "elapsed_s": round(self.elapsed_s, 3),
            "requests": self.requests,
            "errors": self.errors,
            "transfers": self.transfers,
            "requests_per_s": round(self.requests_per_s, 2),
            "transfers_per_s": round(self.transfers_per_s, 2),
            "latency_ms": {
                name: round(self.latency_ms(q), 2)
                for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0))
            },
            "error_samples": self.error_samples,
            "cpu_cores": asdict(self.cpu) if self.cpu else None,
        }


class HttpClient:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams, for the load phases.

    The load generator shares the machine with the server and PostgreSQL, so it must be cheap:
    httpx costs about 1 ms of CPU per request here, this about a tenth of that. It speaks only
    what the server answers (status line, headers, ``Content-Length`` body).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        await self.close()
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()

    async def request(
        self, method: str, path: str, *, body: bytes = b"", headers: str = ""
    ) -> tuple[int, bytes]:
        """``headers``: ready-made ``Name: value\\r\\n`` lines. Returns (status, body)."""
        if self.writer is None or self.reader is None:
            await self.connect()
        assert self.writer is not None and self.reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{headers}"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode("latin-1") + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        lowered = raw.lower()
        start = lowered.find(b"\r\ncontent-length:")
        if start < 0:
            await self.close()
            raise ValueError(f"response without Content-Length: {raw[:200]!r}")
        end = lowered.index(b"\r\n", start + 2)
        content = await self.reader.readexactly(int(raw[start + 17 : end]))
        if b"\r\nconnection: close" in lowered:
            await self.close()
        return status, content


Request = Callable[[HttpClient, random.Random], Awaitable[Outcome]]


def run_phase(
    name: str,
    *,
    base_url: str,
    clients: int,
    seconds: float,
    make_request: Callable[[int], Request],
    meter: CpuMeter,
    read_timeout_s: float = 60.0,
) -> PhaseResult:
    """``clients`` concurrent clients, one keep-alive connection each, issue requests one after
    another for ``seconds`` (closed loop).

    No request starts after the deadline; the ones in flight are waited for and counted, and the
    elapsed time runs to the last completion, so long (batch) requests are measured fully.
    """
    url = httpx.URL(base_url)
    host, port = url.host, url.port or 80
    senders = [make_request(i) for i in range(clients)]  # prebuilt outside the clock
    result = PhaseResult(name=name, clients=clients, seconds_asked=seconds)

    async def client_loop(index: int, deadline: float) -> float:
        send, rng = senders[index], random.Random(f"{name}-{index}")
        client = HttpClient(host, port)
        latencies = result.latencies_ms
        last = time.perf_counter()
        try:
            while (began := time.perf_counter()) < deadline:
                try:
                    async with asyncio.timeout(read_timeout_s):
                        outcome = await send(client, rng)
                except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as error:
                    outcome = Outcome(ok=False, error=f"{type(error).__name__}: {error}")
                    await client.close()
                last = time.perf_counter()
                latencies.append((last - began) * 1000)
                result.requests += 1
                result.transfers += outcome.transfers
                if not outcome.ok:
                    result.errors += 1
                    if len(result.error_samples) < ERROR_SAMPLES:
                        result.error_samples.append(outcome.error or "?")
        finally:
            await client.close()
        return last

    async def main() -> None:
        warm = [HttpClient(host, port) for _ in range(clients)]
        for client in warm:  # the server's first answers after start-up are slower
            await client.request("GET", "/health")
            await client.close()
        cpu_start = meter.sample()
        start = time.perf_counter()
        ends = await asyncio.gather(*(client_loop(i, start + seconds) for i in range(clients)))
        result.cpu = CpuShare.between(cpu_start, meter.sample())
        result.elapsed_s = max(ends) - start

    runner = asyncio.Runner(loop_factory=_loop_factory())
    with runner:
        runner.run(main())
    return result


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # installed with uvicorn[standard]
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _error_text(status: int, body: bytes) -> str:
    return f"HTTP {status}: {body[:300].decode(errors='replace')}"


@dataclass(frozen=True, slots=True)
class PhasePlan:
    key: str
    title: str
    make_request: Callable[[int], Request]
    read_timeout_s: float = 60.0
    seconds: float | None = None  # None: --seconds


def health_checks() -> Callable[[int], Request]:
    """``GET /health``: no database, no auth. The ceiling of HTTP + framework + this load
    generator on this machine, for reading the other figures (not a target)."""

    def make(_index: int) -> Request:
        async def send(client: HttpClient, _rng: random.Random) -> Outcome:
            status, body = await client.request("GET", "/health")
            return (
                Outcome(ok=True) if status == 200 else Outcome(False, 0, _error_text(status, body))
            )

        return send

    return make


def single_transfers(
    users: list[BenchUser], clients: int, merchant: BenchUser | None = None
) -> Callable[[int], Request]:
    """Each client sends as the users it owns (disjoint sets), to a random other user, or to
    ``merchant`` when given (the hot account). Amount 0.01 HKD, a fresh Idempotency-Key each."""
    emails = [u.email for u in users]

    def make(index: int) -> Request:
        own = users[index::clients] or [users[index % len(users)]]
        auth = {u.email: f"Authorization: Bearer {u.token}\r\n" for u in own}

        async def send(client: HttpClient, rng: random.Random) -> Outcome:
            sender = rng.choice(own)
            if merchant is not None:
                to = merchant.email
            else:
                to = sender.email
                while to == sender.email:
                    to = rng.choice(emails)
            body = b'{"to":"%s","asset":"%s","amount":"0.01"}' % (to.encode(), ASSET.encode())
            headers = (
                f"{auth[sender.email]}Idempotency-Key: {uuid.uuid4().hex}\r\n"
                "Content-Type: application/json\r\n"
            )
            status, answer = await client.request(
                "POST", "/v1/transfers", body=body, headers=headers
            )
            if status == 201:
                return Outcome(ok=True, transfers=1)
            return Outcome(ok=False, error=_error_text(status, answer))

        return send

    return make


def batch_transfers(
    key: str, account_ids: list[int], batch_size: int, bodies_per_client: int = 3
) -> Callable[[int], Request]:
    """Prebuilt request bodies of ``batch_size`` random transfers among ``account_ids`` (no
    client ids: every replay of a body creates new transfers), so building JSON costs the load
    generator nothing while the clock runs."""
    headers = f"X-Api-Key: {key}\r\nContent-Type: application/json\r\n"

    def make(index: int) -> Request:
        rng = random.Random(f"batch-bodies-{index}")
        bodies = []
        for _ in range(bodies_per_client):
            transfers = []
            for _ in range(batch_size):
                debit, credit = rng.sample(account_ids, 2)
                transfers.append(
                    {
                        "debit_account_id": debit,
                        "credit_account_id": credit,
                        "asset": ASSET,
                        "amount": "0.01",
                        "code": "bench",
                    }
                )
            bodies.append(json.dumps({"transfers": transfers}).encode())
        turn = [0]

        async def send(client: HttpClient, _rng: random.Random) -> Outcome:
            body = bodies[turn[0] % len(bodies)]
            turn[0] += 1
            status, answer = await client.request(
                "POST", "/v1/admin/ledger/transfers", body=body, headers=headers
            )
            if status != 200:
                return Outcome(ok=False, error=_error_text(status, answer))
            out = json.loads(answer)
            if out.get("failed"):
                first = next((r for r in out["results"] if r.get("error")), None)
                return Outcome(
                    ok=False,
                    transfers=int(out.get("created", 0)),
                    error=f"{out['failed']} of the batch failed, first: {first}",
                )
            return Outcome(ok=True, transfers=int(out["created"]))

        return send

    return make


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True, slots=True)
class Verification:
    check_ok: bool
    check_output: str
    journal_ok: bool
    journal: dict[str, dict[str, int]]
    receipts: int = 0
    receipts_ok: bool = True


def verify(server: Server, engine: Engine, acknowledged: dict[str, int]) -> Verification:
    done = server.cli("ledger", "check")
    output = (done.stdout + done.stderr).strip()
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT code, count(*) FROM ledger_transfers GROUP BY code")
        ).all()
        receipts = int(
            connection.execute(
                text(
                    "SELECT count(*) FROM mail_outbox"
                    " WHERE template_id IN ('payments.p2p_sent', 'payments.p2p_received')"
                )
            ).scalar_one()
        )
    in_journal = {str(code): int(count) for code, count in rows}
    journal = {
        code: {"acknowledged": count, "in_journal": in_journal.get(code, 0)}
        for code, count in acknowledged.items()
    }
    journal_ok = all(v["in_journal"] >= v["acknowledged"] for v in journal.values())
    return Verification(
        check_ok=done.returncode == 0,
        check_output=output,
        journal_ok=journal_ok,
        journal=journal,
        receipts=receipts,
        receipts_ok=receipts == 2 * in_journal.get("p2p", 0),  # both receipts of each, once
    )


# --------------------------------------------------------------------------- report


def _fmt(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def _cpu_per_op(cpu: CpuShare, elapsed_s: float, operations: int) -> str:
    if operations <= 0:
        return ""
    scale = elapsed_s * 1000 / operations
    return (
        f"; CPU ms per op: server {cpu.server * scale:.3f}, postgres {cpu.postgres * scale:.3f}, "
        f"load generator {cpu.load_generator * scale:.3f}"
    )


def print_report(
    anchor: PgbenchResult, phases: dict[str, PhaseResult], opts: Options
) -> list[dict[str, Any]]:
    single, hot, batch, floor = (phases.get(key) for key in ("single", "hot", "batch", "floor"))
    rows: list[dict[str, Any]] = []
    if single is not None:
        rows.append(
            {
                "figure": "single transfers, HTTP (TPS)",
                "value": single.transfers_per_s,
                "anchor": "pgbench TPC-B-like (TPS)",
                "anchor_value": anchor.tps,
                "target": 0.5,
            }
        )
    if batch is not None:
        rows.append(
            {
                "figure": "batched transfers (transfers/s)",
                "value": batch.transfers_per_s,
                "anchor": "pgbench TPC-B-like (TPS)",
                "anchor_value": anchor.tps,
                "target": 5.0,
            }
        )
    if hot is not None and single is not None:
        rows.append(
            {
                "figure": "hot account, HTTP (TPS)",
                "value": hot.transfers_per_s,
                "anchor": "single transfers, spread (TPS)",
                "anchor_value": single.transfers_per_s,
                "target": 0.5,
            }
        )
    ran = [phase for phase in (single, hot, batch, floor) if phase is not None]
    for row in rows:
        row["ratio"] = ratio(row["value"], row["anchor_value"])
        row["met"] = bool(row["ratio"] >= row["target"])
    width = 104
    print()
    print("=" * width)
    print(
        f"Ledger benchmark: {opts.clients} clients, {opts.seconds:g} s per phase, "
        f"{opts.workers} server workers, {os.cpu_count()} cores, {opts.users} users, "
        f"batches of {opts.batch_size} among {opts.accounts} accounts"
    )
    print("=" * width)
    print(f"{'figure':<33}{'value':>11}  {'anchor':<31}{'value':>10}{'ratio':>8}{'target':>9}")
    print("-" * width)
    for row in rows:
        verdict = "ok" if row["met"] else "MISSED"
        print(
            f"{row['figure']:<33}{_fmt(row['value']):>11}  {row['anchor']:<31}"
            f"{_fmt(row['anchor_value']):>10}{_fmt(row['ratio'], 2):>8}"
            f"{'>= ' + format(row['target'], 'g'):>9}  {verdict}"
        )
    if floor is not None:
        print(
            f"{'(context) GET /health (req/s)':<33}{_fmt(floor.requests_per_s):>11}  "
            f"{'pgbench TPC-B-like (TPS)':<31}{_fmt(anchor.tps):>10}"
            f"{_fmt(ratio(floor.requests_per_s, anchor.tps), 2):>8}{'-':>9}  "
            "HTTP ceiling, no database"
        )
    print("-" * width)
    print(
        f"{'latency (ms)':<28}{'p50':>11}{'p90':>11}{'p99':>11}{'max':>11}"
        f"{'requests':>10}{'errors':>8}"
    )
    for phase in ran:
        print(
            f"{phase.name:<28}{_fmt(phase.latency_ms(0.5), 2):>11}"
            f"{_fmt(phase.latency_ms(0.9), 2):>11}{_fmt(phase.latency_ms(0.99), 2):>11}"
            f"{_fmt(phase.latency_ms(1.0), 2):>11}{phase.requests:>10}{phase.errors:>8}"
        )
    print(
        f"{'pgbench (average only)':<28}{_fmt(anchor.latency_avg_ms, 2):>11}"
        f"{'':>33}{anchor.transactions:>10}{0:>8}"
    )
    print("-" * width)
    print("CPU during each phase, in cores (1.00 = one core for the whole phase):")
    print(f"  {'pgbench':<24}{anchor.cpu.describe()}")
    print(f"  {'':<24}{_cpu_per_op(anchor.cpu, 1.0, round(anchor.tps))[2:]}")
    for phase in ran:
        if phase.cpu is not None:
            print(f"  {phase.name:<24}{phase.cpu.describe()}")
            operations = phase.transfers or phase.requests
            print(f"  {'':<24}{_cpu_per_op(phase.cpu, phase.elapsed_s, operations)[2:]}")
    print("=" * width)
    noisy = [p.name for p in ran if p.cpu and p.cpu.other > 0.25]
    if anchor.cpu.other > 0.25:
        noisy.insert(0, "pgbench")
    if noisy:
        print(
            f"WARNING: other work on this machine used over 0.25 cores during "
            f"{', '.join(noisy)}: figures and ratios are noisy; rerun on a quiet machine."
        )
    return rows


def report_errors(phase: PhaseResult) -> None:
    if phase.errors:
        say(f"{phase.name}: {phase.errors} of {phase.requests} requests failed; first ones:")
        for sample in phase.error_samples:
            print(f"    {sample}")


# --------------------------------------------------------------------------- main


def run(opts: Options) -> int:
    dbs = Databases(opts.pg_url)
    server: Server | None = None
    engine: Engine | None = None
    meter = CpuMeter()
    started_at = datetime.now(UTC)
    try:
        version = dbs.server_version()
        anchor = run_pgbench(dbs, opts, meter)
        say(f"pgbench: {anchor.tps:,.1f} TPS (latency average {anchor.latency_avg_ms:.2f} ms)")

        name = dbs.create("strongroom_bench")
        meter.databases.add(name)
        url = dbs.url(name).render_as_string(hide_password=False)
        engine = make_engine(url, pool_size=2)
        upgrade(engine)
        say(f"database {name} created and migrated")
        server = Server(database_url=url, workers=opts.workers)
        server.start()
        meter.server_pid = server.pid
        data = seed(server, opts)

        phases: dict[str, PhaseResult] = {}
        floor_seconds = max(2.0, opts.seconds / 4)
        plans: dict[str, Callable[[], PhasePlan]] = {
            "floor": lambda: PhasePlan(
                "floor", "http floor, GET /health", health_checks(), 60.0, floor_seconds
            ),
            "single": lambda: PhasePlan(
                "single", "single, spread", single_transfers(data.users, opts.clients)
            ),
            "hot": lambda: PhasePlan(
                "hot",
                "hot, one merchant",
                single_transfers(data.users, opts.clients, merchant=data.merchant),
            ),
            "batch": lambda: PhasePlan(
                "batch",
                f"batch of {opts.batch_size:,}",
                batch_transfers(data.ledger_key, data.account_ids, opts.batch_size),
                read_timeout_s=900.0,
            ),
        }
        for step in (plans[name]() for name in opts.phases):
            dbs.checkpoint()
            seconds = step.seconds or opts.seconds
            say(f"phase {step.title}: {opts.clients} clients for {seconds:g} s")
            phase = run_phase(
                step.title,
                base_url=server.base_url,
                clients=opts.clients,
                seconds=seconds,
                make_request=step.make_request,
                meter=meter,
                read_timeout_s=step.read_timeout_s,
            )
            phases[step.key] = phase
            say(
                f"  {phase.requests:,} requests, {phase.transfers:,} transfers in "
                f"{phase.elapsed_s:.1f} s: {phase.requests_per_s:,.1f} requests/s, "
                f"{phase.transfers_per_s:,.1f} transfers/s, {phase.errors} errors"
            )
            report_errors(phase)

        server.stop()
        say("verifying: strongroom ledger check, and acknowledged transfers in the journal")
        verification = verify(
            server,
            engine,
            {
                "p2p": sum(phases[k].transfers for k in ("single", "hot") if k in phases),
                "bench": phases["batch"].transfers if "batch" in phases else 0,
            },
        )
        print(verification.check_output)
        for code, counts in verification.journal.items():
            print(
                f"  journal {code}: {counts['acknowledged']:,} acknowledged, "
                f"{counts['in_journal']:,} in the journal"
            )

        print(
            f"  receipts: {verification.receipts:,} in the outbox "
            f"({'two per P2P transfer' if verification.receipts_ok else 'NOT two per transfer'})"
        )

        rows = print_report(anchor, phases, opts)
        errors = sum(p.errors for p in phases.values())
        correct = (
            verification.check_ok
            and verification.journal_ok
            and verification.receipts_ok
            and errors == 0
        )
        print(
            f"correctness: ledger check {'OK' if verification.check_ok else 'FAILED'}, "
            f"journal {'OK' if verification.journal_ok else 'MISSING TRANSFERS'}, "
            f"receipts {'OK' if verification.receipts_ok else 'MISSING'}, "
            f"{errors} failed requests"
        )
        path = write_results(opts, started_at, version, anchor, phases, rows, verification)
        say(f"results written to {path.relative_to(ROOT)}")
        if opts.keep_logs or not correct:
            kept = RESULTS_DIR / f"server-{started_at:%Y%m%d-%H%M%S}.log"
            shutil.copyfile(server.log.name, kept)
            say(f"server log kept in {kept.relative_to(ROOT)}")
        return 0 if correct else 1
    except KeyboardInterrupt:
        say("interrupted: cleaning up")
        return 130
    except Exception:
        if server is not None and server.process is not None:
            print(f"--- server log (tail) ---\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        if server is not None:
            server.stop()
            Path(server.log.name).unlink(missing_ok=True)
        if engine is not None:
            engine.dispose()
        dbs.drop_all()


def write_results(
    opts: Options,
    started_at: datetime,
    version: str,
    anchor: PgbenchResult,
    phases: dict[str, PhaseResult],
    rows: list[dict[str, Any]],
    verification: Verification,
) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"ledger-{started_at:%Y%m%d-%H%M%S}.json"
    document = {
        "benchmark": "ledger",
        "started_at": started_at.isoformat(),
        "options": asdict(opts),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "postgresql": version,
        },
        "anchor": {**asdict(anchor), "cpu": asdict(anchor.cpu)},
        "phases": {key: phase.summary() for key, phase in phases.items()},
        "figures": [
            {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}
            for row in rows
        ],
        "verification": asdict(verification),
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupted)
    return run(opts)


if __name__ == "__main__":
    sys.exit(main())
