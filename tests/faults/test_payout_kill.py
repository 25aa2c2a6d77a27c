"""A payout survives a crash of the worker (issue #12, acceptance "Withdrawal lifecycle"): a
real ``strongroom worker`` process is ``kill -9``ed between "payout sent" (the attempt and its
reference committed, the connector asked) and "posted"; a restarted worker asks the connector
about the same reference (a poll, not a second send) and posts once: exactly one outcome.

The pause is the test hook ``STRONGROOM_TEST_PAYOUT_PAUSE_FILE`` (``withdrawals.service``): the
worker writes the file once the connector answered and waits there to be killed. The second
test kills it one step earlier, between recording "sending" and the connector's receipt (hook
``STRONGROOM_TEST_PAYOUT_PAUSE_AT=sending``), against the sandbox with its book: the restarted
worker's poll answers "unknown reference", it sends again under the same payout id, and the
bank receives exactly one payout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.funding.connectors import SandboxPayoutBook
from strongroom.ledger import reports
from strongroom.ledger.models import Transfer
from strongroom.withdrawals import service as withdrawals
from strongroom.withdrawals.models import Withdrawal
from strongroom.withdrawals.reconcile import reconcile_payouts
from tests.api.conftest import make_settings, signup
from tests.api.test_withdrawals import emails, link, primary, withdraw

DEADLINE_S = 90.0


def start_worker(
    engine: Engine, log: Path, pause_file: Path | None, **extra: str
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "STRONGROOM_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "STRONGROOM_ENV": "test",
        "STRONGROOM_SECRET_KEY": "fault-test-secret-key-0123456789abcdef",
        "STRONGROOM_MAIL__DELIVER": "false",
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }
    env.pop(withdrawals.PAUSE_ENV, None)
    env.pop(withdrawals.PAUSE_AT_ENV, None)
    env.update(extra)
    if pause_file is not None:
        env[withdrawals.PAUSE_ENV] = str(pause_file)
    command = [sys.executable, "-c", "from strongroom.cli import app; app()", "worker"]
    with log.open("ab") as out:
        return subprocess.Popen(
            [*command, "--interval", "0.2"],
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )


def kill_9(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def record(engine: Engine, withdrawal_id: str) -> tuple[Withdrawal, list[str]]:
    with db.make_session_factory(engine)() as session:
        row = session.get_one(Withdrawal, withdrawal_id)
        session.expunge(row)
        resolutions = list(
            session.scalars(select(Transfer.kind).where(Transfer.pending_id == row.transfer_id))
        )
    return row, resolutions


def wait_for(what: str, check: object, log: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen: {log.read_text()[-3000:]}")


def test_kill_9_between_payout_sent_and_posted_ends_in_one_outcome(
    pg_db: Engine, tmp_path: Path
) -> None:
    with TestClient(create_app(make_settings(pg_db), pg_db)) as client:
        alice = primary(pg_db, signup(client, "Alice"))
        alice.topup("1000.00")
        made = withdraw(alice, link(alice, "12345671"), "100.00")
        assert made.status_code == 201, made.text
        withdrawal_id = made.json()["id"]
        log = tmp_path / "worker.log"
        paused = tmp_path / "paused"
        worker = start_worker(pg_db, log, paused)
        try:
            wait_for("the payout was sent", paused.exists, log)
            row, resolutions = record(pg_db, withdrawal_id)
            assert (row.status, row.payout_state, row.sends, resolutions) == (
                "pending",
                "sent",
                1,
                [],
            )
        finally:
            kill_9(worker)
        row, resolutions = record(pg_db, withdrawal_id)
        assert (row.status, row.payout_state, resolutions) == ("pending", "sent", [])
        assert alice.balance()["available"] == "900.00"
        restarted = start_worker(pg_db, log, None)
        try:
            wait_for(
                "the payout was posted",
                lambda: record(pg_db, withdrawal_id)[0].status != "pending",
                log,
            )
            time.sleep(1.0)  # a few more sweeps: nothing more may happen
        finally:
            kill_9(restarted)
        row, resolutions = record(pg_db, withdrawal_id)
        assert (row.status, row.payout_state, resolutions) == (
            "completed",
            "paid",
            ["post_pending"],
        )
        assert (row.sends, row.polls) == (1, 1)  # asked about the same reference, not paid again
        assert alice.get(f"/v1/withdrawals/{withdrawal_id}").json()["status"] == "completed"
        row_balance = alice.balance()
        assert (row_balance["total"], row_balance["available"]) == ("900.00", "900.00")
        assert len(emails(pg_db, alice.email, "withdrawals.completed")) == 1
    with db.make_session_factory(pg_db)() as session:
        assert reports.check(session=session).ok
        assert reconcile_payouts(session=session).ok


def test_kill_9_between_recording_the_send_and_the_connectors_receipt_pays_once(
    pg_db: Engine, tmp_path: Path
) -> None:
    bank = SandboxPayoutBook(tmp_path / "bank")
    book = {"STRONGROOM_FUNDING__SANDBOX_PAYOUT_BOOK": str(bank.folder)}
    with TestClient(create_app(make_settings(pg_db), pg_db)) as client:
        alice = primary(pg_db, signup(client, "Alice"))
        alice.topup("1000.00")
        made = withdraw(alice, link(alice, "12345671"), "100.00")
        assert made.status_code == 201, made.text
        withdrawal_id = made.json()["id"]
        log = tmp_path / "worker.log"
        paused = tmp_path / "paused"
        at = {withdrawals.PAUSE_AT_ENV: "sending"}
        worker = start_worker(pg_db, log, paused, **book, **at)
        try:
            wait_for("the send was recorded", paused.exists, log)
        finally:
            kill_9(worker)
        row, resolutions = record(pg_db, withdrawal_id)
        assert (row.status, row.payout_state, row.sends, resolutions) == ("pending", "sent", 1, [])
        assert not bank.received(withdrawal_id)  # the send never reached the bank
        restarted = start_worker(pg_db, log, None, **book)
        try:
            wait_for(
                "the payout was posted",
                lambda: record(pg_db, withdrawal_id)[0].status != "pending",
                log,
            )
            time.sleep(1.0)  # a few more sweeps: nothing more may happen
        finally:
            kill_9(restarted)
        row, resolutions = record(pg_db, withdrawal_id)
        assert (row.status, row.payout_state, resolutions) == (
            "completed",
            "paid",
            ["post_pending"],
        )
        assert (row.sends, row.polls) == (2, 1)  # polled: unknown; sent again under the same id
        assert bank.sends_of(withdrawal_id) == 1  # and the bank received one payout
        balance = alice.balance()
        assert (balance["total"], balance["available"]) == ("900.00", "900.00")
        assert len(emails(pg_db, alice.email, "withdrawals.completed")) == 1
    with db.make_session_factory(pg_db)() as session:
        assert reports.check(session=session).ok
        assert reconcile_payouts(session=session).ok
