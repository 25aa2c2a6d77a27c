"""Faster must not lose money (issue #14): real processes, real crashes.

16 clients move money through a real ``strongroom serve`` process (top-ups, then transfers
between each other, some of them too large on purpose), each request retried with the SAME
Idempotency-Key until it gets a definite answer (201, or a refusal). Meanwhile the test
``kill -9``s the server three times at random moments (restarting it each time) and restarts
PostgreSQL once (an immediate shutdown: a crash as far as the server is concerned).

Afterwards: every request a client saw succeed is in the journal exactly once (by its transfer
id), the journal holds no other transfer of that kind (so every refused request is absent),
every wallet holds exactly what the successful requests say, and ``strongroom ledger check``
passes. The counts are printed (``-s`` shows them).

The test runs its own throwaway PostgreSQL cluster, so restarting it disturbs no other test.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine, make_url

from strongroom import db
from strongroom.ledger import reports
from strongroom.ledger import service as ledger
from strongroom.ledger.models import Transfer
from tests import pg
from tests.conftest import missing
from tests.web.conftest import web_user

CLIENTS = 16
KILLS = 3
OPS_MAX_PER_CLIENT = 400
OP_DEADLINE_S = 120.0
TRAFFIC_BETWEEN_FAULTS = 40
TOPUP_MINOR = 100_00
SECRET = "fault-test-secret-key-0123456789abcdef"
VAULT = "fault-test-vault-key-0123456789abcdef0123"


@dataclass
class Cluster:
    """A private PostgreSQL cluster that the test may crash and restart."""

    binaries: Path
    workdir: Path
    port: int
    as_user: list[str]

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, str(self.binaries / "pg_ctl"), "-D", str(self.data), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1"
        self.pg_ctl("-l", str(self.workdir / "log"), "-w", "-o", options, "start")

    def crash_restart(self) -> None:
        self.pg_ctl("-m", "immediate", "-w", "stop")
        self.start()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    binaries = pg._binaries()
    if binaries is None:
        missing("PostgreSQL server binaries (initdb, pg_ctl)", pg.INSTALL_HINT)
    workdir = Path(tempfile.mkdtemp(prefix="strongroom-faults-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(workdir, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    found = Cluster(binaries, workdir, pg._free_port(), as_user)
    initdb = [str(binaries / "initdb"), "-D", str(found.data), "-U", "postgres", "--auth=trust"]
    subprocess.run(
        [*as_user, *initdb, "-E", "UTF8"],
        check=True,
        capture_output=True,
        text=True,
    )
    found.start()
    try:
        yield found
    finally:
        found.pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def database(cluster: Cluster) -> Iterator[str]:
    admin_url = f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/postgres"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text('CREATE DATABASE "faults"'))
    admin.dispose()
    url = make_url(admin_url).set(database="faults").render_as_string(hide_password=False)
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    yield url


class Server:
    """``strongroom serve`` in its own process group, so ``kill -9`` takes all of it."""

    def __init__(self, database_url: str, log: Path) -> None:
        self.port = pg._free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = {
            **os.environ,
            "STRONGROOM_DATABASE_URL": database_url,
            "STRONGROOM_ENV": "test",
            "STRONGROOM_SECRET_KEY": SECRET,
            "STRONGROOM_VAULT_KEY": VAULT,
            "STRONGROOM_RUN_WORKER": "false",
            "STRONGROOM_RATE_LIMITS_ENABLED": "false",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        command = [str(Path(sys.executable).parent / "strongroom"), "serve"]
        command += ["--port", str(self.port), "--no-access-log"]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=out, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"the server did not start: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.kills += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


@dataclass
class Client:
    index: int
    email: str
    password: str
    token: str = ""
    succeeded: list[tuple[str, str, str | None, int]] = field(default_factory=list)
    """(kind, transfer id, recipient email, amount_minor) of every request seen to succeed."""
    refused: int = 0
    retries: int = 0
    undecided: int = 0


def _request(base: str, client: Client, path: str, body: dict[str, str], key: str) -> str:
    """Send until a definite answer: ``ok:<id>``, ``refused``, or ``undecided`` at the deadline.
    Connection errors, 5xx and "in progress" answers are retried with the same key."""
    deadline = time.monotonic() + OP_DEADLINE_S
    while time.monotonic() < deadline:
        try:
            if not client.token:
                signed = httpx.post(
                    f"{base()}/v1/auth/login",
                    json={"email": client.email, "password": client.password},
                    timeout=10,
                )
                if signed.status_code != 200:
                    raise httpx.TransportError(f"sign-in answered {signed.status_code}")
                client.token = signed.json()["token"]
            answer = httpx.post(
                f"{base()}{path}",
                json=body,
                headers={"Authorization": f"Bearer {client.token}", "Idempotency-Key": key},
                timeout=15,
            )
        except httpx.HTTPError:
            client.retries += 1
            time.sleep(0.05)
            continue
        if answer.status_code == 201:
            return f"ok:{answer.json()['id']}"
        code = answer.json().get("error", {}).get("code") if answer.content else None
        if answer.status_code >= 500 or code in {"idempotency_key_in_progress", "busy"}:
            client.retries += 1
            time.sleep(0.05)
            continue
        assert answer.status_code == 422 and code == "insufficient_funds", answer.text
        return "refused"
    return "undecided"


def _run_client(base, client: Client, peers: list[Client], stop: threading.Event) -> None:
    chance = random.Random(client.index)
    outcome = _request(
        base,
        client,
        "/v1/topups",
        {"asset": "HKD", "amount": "100.00", "channel": "sandbox"},
        f"topup-{client.index}",
    )
    if outcome.startswith("ok:"):
        client.succeeded.append(("topup", outcome[3:], None, TOPUP_MINOR))
    else:
        client.undecided += 1
    for op in range(OPS_MAX_PER_CLIENT):
        if stop.is_set():
            return
        peer = chance.choice([p for p in peers if p is not client])
        amount_minor = chance.choice([1_00, 2_50, 7_00, 15_00, 60_00, 150_00])
        body = {"to": peer.email, "asset": "HKD", "amount": f"{amount_minor / 100:.2f}"}
        outcome = _request(base, client, "/v1/transfers", body, f"send-{client.index}-{op}")
        if outcome.startswith("ok:"):
            client.succeeded.append(("p2p", outcome[3:], peer.email, amount_minor))
        elif outcome == "refused":
            client.refused += 1
        else:
            client.undecided += 1


def _progress(clients: list[Client]) -> int:
    return sum(len(c.succeeded) + c.refused for c in clients)


def _wait_for_traffic(clients: list[Client], more: int) -> None:
    """Let at least ``more`` requests get their answer first (bounded), so every fault lands
    while money is moving, whatever the machine's speed."""
    target, deadline = _progress(clients) + more, time.monotonic() + 60
    while _progress(clients) < target and time.monotonic() < deadline:
        time.sleep(0.05)


def _faults(
    server: Server, cluster: Cluster, clients: list[Client], stop: threading.Event
) -> list[str]:
    chance, events = random.Random(20261206), []
    try:
        for kill in range(KILLS):
            _wait_for_traffic(clients, TRAFFIC_BETWEEN_FAULTS)
            time.sleep(chance.uniform(0.0, 0.4))
            server.kill()
            events.append(f"kill -9 server #{kill + 1}")
            if kill == 1:
                cluster.crash_restart()
                events.append("PostgreSQL crash-restart")
            server.start()
        _wait_for_traffic(clients, TRAFFIC_BETWEEN_FAULTS)
    finally:
        stop.set()
    return events


def test_no_money_lost_or_doubled_through_crashes(
    cluster: Cluster, database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = db.make_engine(database)
    people = [web_user(engine, f"Client{i}") for i in range(CLIENTS)]
    clients = [Client(i, p.email, p.password) for i, p in enumerate(people)]
    server = Server(database, tmp_path / "server.log")
    server.start()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_run_client, args=(lambda: server.url, c, clients, stop))
        for c in clients
    ]
    for thread in threads:
        thread.start()
    events = _faults(server, cluster, clients, stop)
    for thread in threads:
        thread.join(timeout=OP_DEADLINE_S + 30)
    server.stop()
    try:
        _verify(engine, clients, events, capsys)
    finally:
        engine.dispose()


def _verify(engine: Engine, clients: list[Client], events: list[str], capsys) -> None:
    succeeded = [s for c in clients for s in c.succeeded]
    refused = sum(c.refused for c in clients)
    with capsys.disabled():
        print(
            f"\nfaults: {', '.join(events)}; requests seen to succeed {len(succeeded)} "
            f"(top-ups {sum(1 for s in succeeded if s[0] == 'topup')}), refused {refused}, "
            f"undecided {sum(c.undecided for c in clients)}, retries "
            f"{sum(c.retries for c in clients)}"
        )
    assert len(events) == KILLS + 1
    assert all(c.undecided == 0 for c in clients)
    assert refused > 0 and len(succeeded) > CLIENTS  # the crashes hit a real mix of requests
    engine.dispose()  # its pooled connections died with the PostgreSQL restart
    factory = db.make_session_factory(engine)
    with factory() as session:
        for kind, transfer_id, _, amount_minor in succeeded:
            rows = session.execute(select(Transfer).where(Transfer.id == transfer_id)).all()
            assert len(rows) == 1, f"{kind} {transfer_id} is in the journal {len(rows)} times"
            assert rows[0][0].amount_minor == amount_minor
        for code, kind in (("topup", "topup"), ("p2p", "p2p")):
            stored = session.scalar(
                select(func.count()).select_from(Transfer).where(Transfer.code == code)
            )
            assert stored == sum(1 for s in succeeded if s[0] == kind), code
        expected = {c.email: 0 for c in clients}
        for client in clients:
            for kind, _, to, amount_minor in client.succeeded:
                expected[client.email] += amount_minor if kind == "topup" else -amount_minor
                if to is not None:
                    expected[to] += amount_minor
        held = {}
        for client in clients:
            user = session.execute(
                text("SELECT id FROM users WHERE email = :email"), {"email": client.email}
            ).scalar_one()
            [balance] = ledger.wallet_balances(session=session, user_id=user)
            held[client.email] = balance.total_minor
        assert held == expected
        report = reports.check(session=session)
        assert report.ok, report.problems
    with capsys.disabled():
        print(f"faults: ledger check OK over {report.transfers} transfers; {len(held)} wallets")
