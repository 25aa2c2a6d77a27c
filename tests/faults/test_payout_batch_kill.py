"""A payout batch interrupted by ``kill -9`` and re-run pays every row exactly once (issue #13
item 6 acceptance, R-MERCH-3).

A good file of 40 rows (some accounts ending in 8: the connector times out, the re-run polls;
one ending in 7: refused, voided) is executed by a real ``strongroom merchants
run-payout-batch`` process, throttled (``--pause``) so that it is mid-batch when the test
``kill -9``s it, twice, at different points; a third run finishes it. Afterwards every paid
row has exactly one hold and one post in the journal (no second hold, no void), the failed
row one hold and one void, the merchant's wallet lost exactly the paid rows' total, and
``strongroom ledger check`` passes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

import strongroom
from strongroom import db
from strongroom.app import create_app
from strongroom.ledger.models import Transfer
from strongroom.settlement.models import PayoutRow
from tests.api.conftest import make_settings, operator, signup
from tests.api.merchant_support import code_of, merchant_balance, onboard, terminal

ROWS = 40
HEADER = "reference,holder_name,bank_code,account_number,asset,amount\r\n"


def _account(index: int) -> str:
    if index == 13:
        return "77700007"  # refused by the sandbox
    return f"5550{index:03d}" + ("8" if index % 5 == 0 else "1")


def _cli(pg_db: Engine, *args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(strongroom.__file__).parent.parent),
        "STRONGROOM_ENV": "test",
        "STRONGROOM_SECRET_KEY": "test-secret-key-0123456789",
        "STRONGROOM_DATABASE_URL": pg_db.url.render_as_string(hide_password=False),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "strongroom.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _paid(pg_db: Engine, batch_id: str) -> int:
    with pg_db.connect() as connection:
        return connection.execute(
            select(func.count()).where(
                PayoutRow.batch_id == batch_id, PayoutRow.status.in_(("paid", "failed"))
            )
        ).scalar_one()


def _kill_after(pg_db: Engine, batch_id: str, rows_done: int) -> None:
    process = _cli(pg_db, "merchants", "run-payout-batch", batch_id, "--pause", "0.1")
    deadline = time.monotonic() + 120
    while _paid(pg_db, batch_id) < rows_done:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        assert time.monotonic() < deadline, "the batch did not progress"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


def _batch_uploaded(client: TestClient, pg_db: Engine) -> tuple[str, str, int]:
    """A merchant with HK$992.00 and an accepted batch of ROWS rows."""
    admin = operator(client, pg_db)
    merchant_id = onboard(admin)
    till = terminal(admin, merchant_id)
    alice = signup(client, "Alice")
    alice.topup("1000.00")
    charged = till.charge({"payment_code": code_of(alice), "amount": "1000.00", "asset": "HKD"})
    assert charged.status_code == 201, charged.text
    start = merchant_balance(pg_db, merchant_id)
    assert start == 99200
    lines = [f"R{i:03d},Payee {i},004,{_account(i)},HKD,{i + 1}.25\r\n" for i in range(ROWS)]
    finance = terminal(admin, merchant_id, "finance")
    uploaded = finance.client.post(
        "/v1/merchant/payout-batches",
        content=(HEADER + "".join(lines)).encode(),
        headers={**finance.headers(), "Content-Type": "text/csv"},
    )
    assert uploaded.status_code == 201, uploaded.text
    batch_id = uploaded.json()["id"]
    return batch_id, merchant_id, start


def test_a_batch_killed_twice_and_rerun_pays_every_row_once(pg_db):
    with TestClient(create_app(make_settings(pg_db), pg_db)) as client:
        batch_id, merchant_id, start = _batch_uploaded(client, pg_db)

    _kill_after(pg_db, batch_id, 8)
    _kill_after(pg_db, batch_id, 22)
    assert _paid(pg_db, batch_id) < ROWS
    final = _cli(pg_db, "merchants", "run-payout-batch", batch_id)
    output = final.communicate(timeout=120)[0].decode()
    assert final.returncode == 0, output
    assert "completed" in output, output

    with db.make_session_factory(pg_db)() as session:
        rows = list(session.scalars(select(PayoutRow).where(PayoutRow.batch_id == batch_id)))
        transfers = list(
            session.execute(
                select(Transfer.id, Transfer.pending_id).where(
                    Transfer.id.like(f"payout.{batch_id}.%")
                    | Transfer.pending_id.like(f"payout.{batch_id}.%")
                )
            )
        )
    assert len(rows) == ROWS
    by_row: dict[str, list[str]] = {row.payout_id: [] for row in rows}
    for transfer_id, pending_id in transfers:
        owner = pending_id or transfer_id
        by_row[owner].append(transfer_id.removeprefix(owner) or "hold")
    paid_total = 0
    for row in rows:
        expected = ["hold", ".void"] if row.reference == "R013" else ["hold", ".post"]
        assert sorted(by_row[row.payout_id]) == sorted(expected), (row.reference, by_row)
        assert row.status == ("failed" if row.reference == "R013" else "paid")
        if row.status == "paid":
            paid_total += row.amount_minor
    assert paid_total == sum((i + 1) * 100 + 25 for i in range(ROWS) if i != 13)
    assert merchant_balance(pg_db, merchant_id) == start - paid_total

    check = _cli(pg_db, "ledger", "check")
    checked = check.communicate(timeout=120)[0].decode()
    assert check.returncode == 0, checked
    assert "ledger OK" in checked
