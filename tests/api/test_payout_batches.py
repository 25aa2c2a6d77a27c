"""Batch payouts from a CSV (issue #13 item 6, R-MERCH-3) over HTTP: every row validated before
anything is stored or moved (one bad row refuses the file with a per-row report, nothing
changed), a good file executed row by row (a row whose bank refuses is voided, the money back),
re-running pays nothing twice, the result CSV, the roles (owner and finance; cashier and
manager 403; another merchant's batch 404), Idempotency-Key replay."""

from __future__ import annotations

import csv
import io
import threading
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db, worker
from strongroom.ledger import reports
from strongroom.ledger.models import Transfer
from strongroom.settlement import batch_payouts
from strongroom.settlement.models import PayoutRow
from tests.api.conftest import make_settings, operator, signup
from tests.api.merchant_support import (
    Terminal,
    code_of,
    merchant_balance,
    money_rows,
    onboard,
    owned_balance,
    terminal,
)

HEADER = "reference,holder_name,bank_code,account_number,asset,amount\r\n"
GOOD = (
    HEADER
    + "SUP-001,Tea Leaf Supplies,004,123456780,HKD,30.00\r\n"
    + "SUP-002,Cup Makers Ltd,024,998877661,HKD,12.50\r\n"
    + "STAFF-1,Chan Tai Man,004,555000119,HKD,20.00\r\n"
)


@pytest.fixture(autouse=True)
def ledger_checked(pg_db: Engine) -> Iterator[None]:
    yield
    with db.make_session_factory(pg_db)() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


def _shop(client, pg_db, role: str = "finance") -> tuple[Terminal, str]:  # type: ignore[no-untyped-def]
    """A merchant with HK$100.00 of takings (net 99.20) and a key of ``role``."""
    admin = operator(client, pg_db)
    merchant_id = onboard(admin)
    till = terminal(admin, merchant_id)
    alice = signup(client, "Alice")
    alice.topup("100.00")
    charged = till.charge({"payment_code": code_of(alice), "amount": "100.00", "asset": "HKD"})
    assert charged.status_code == 201, charged.text
    return terminal(admin, merchant_id, role), merchant_id


def _upload(key: Terminal, text: str, idempotency: str | None = "auto"):  # type: ignore[no-untyped-def]
    return key.client.post(
        "/v1/merchant/payout-batches",
        content=text.encode(),
        headers={**key.headers(idempotency), "Content-Type": "text/csv"},
    )


def _run(pg_db, batch_id: str):  # type: ignore[no-untyped-def]
    return batch_payouts.run_batch(
        db.make_session_factory(pg_db), make_settings(pg_db).asset_registry(), batch_id=batch_id
    )


def _clearing(pg_db) -> int:  # type: ignore[no-untyped-def]
    return owned_balance(pg_db, "operator", "operator", "payout_clearing", "HKD")


def test_a_good_file_is_paid_row_by_row_once(client, pg_db):
    finance, merchant_id = _shop(client, pg_db)
    text = GOOD + "BAD-BANK,Closed Account,004,111222337,HKD,5.00\r\n"
    uploaded = _upload(finance, text)
    assert uploaded.status_code == 201, uploaded.text
    batch_id = uploaded.json()["id"]
    assert uploaded.json()["status"] == "accepted" and batch_id.startswith("pb_")
    read = finance.get(f"/v1/merchant/payout-batches/{batch_id}").json()
    assert (read["status"], read["rows"], read["total"], read["pending"]) == (
        "accepted",
        4,
        "67.50",
        4,
    )
    assert merchant_balance(pg_db, merchant_id) == 9920  # nothing moved yet

    ran = _run(pg_db, batch_id)
    assert (ran.status, ran.paid, ran.failed, ran.waiting) == ("completed", 3, 1, 0)
    assert merchant_balance(pg_db, merchant_id) == 9920 - 6250  # the failed row came back
    assert _clearing(pg_db) == 6250

    again = _run(pg_db, batch_id)
    assert (again.paid, again.failed) == (3, 1)
    assert merchant_balance(pg_db, merchant_id) == 9920 - 6250
    with pg_db.connect() as connection:
        holds = connection.execute(
            select(func.count()).where(Transfer.code == "merchant_batch_payout")
        ).scalar_one()
    assert holds == 4

    result = finance.get(f"/v1/merchant/payout-batches/{batch_id}/result.csv")
    assert result.status_code == 200 and result.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(result.text)))
    assert [(r["reference"], r["status"], r["error"]) for r in rows] == [
        ("SUP-001", "paid", ""),
        ("SUP-002", "paid", ""),
        ("STAFF-1", "paid", ""),
        ("BAD-BANK", "failed", "payout_failed"),
    ]
    assert rows[0]["payout_id"] == f"payout.{batch_id}.SUP-001"
    done = finance.get(f"/v1/merchant/payout-batches/{batch_id}").json()
    assert (done["status"], done["paid"], done["failed"]) == ("completed", 3, 1)


def test_a_row_with_a_12_digit_cnaps_bank_code_is_accepted_and_paid(client, pg_db):
    """A 12-digit mainland bank code passes the banking rules, so its row is stored whole
    and paid (it used to fail in the database)."""
    finance, merchant_id = _shop(client, pg_db)
    text = HEADER + "CN-001,Shenzhen Tea Co,1021 0009 9996,6222021234567890,HKD,10.00\r\n"
    uploaded = _upload(finance, text)
    assert uploaded.status_code == 201, uploaded.text
    batch_id = uploaded.json()["id"]

    ran = _run(pg_db, batch_id)

    assert (ran.status, ran.paid, ran.failed) == ("completed", 1, 0)
    assert merchant_balance(pg_db, merchant_id) == 9920 - 1000
    with pg_db.connect() as connection:
        stored = connection.execute(
            select(PayoutRow.bank_code).where(PayoutRow.batch_id == batch_id)
        ).scalar_one()
    assert stored == "102100099996"


def test_one_bad_row_refuses_the_whole_file_and_nothing_moves(client, pg_db):
    finance, merchant_id = _shop(client, pg_db)
    before = money_rows(pg_db)
    text = (
        GOOD
        + "SUP-001,Duplicate Ref,004,123456780,HKD,1.00\r\n"
        + "SUP-009,Bad Bank,4x,123456780,HKD,1.00\r\n"
        + "SUP-010,Bad Amount,004,123456780,HKD,-3\r\n"
        + "SUP-011,Wrong Asset,004,123456780,USD,1.00\r\n"
        + "SUP-012,Too Many Decimals,004,123456780,HKD,1.005\r\n"
        + "only,three,columns\r\n"
    )
    refused = _upload(finance, text)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "payout_file_invalid"
    found = {(e["line"], e["code"]) for e in error["details"]["errors"]}
    assert found == {
        (5, "duplicate_reference"),
        (6, "invalid_bank_code"),
        (7, "invalid_amount"),
        (8, "wrong_asset"),
        (9, "invalid_amount"),
        (10, "wrong_column_count"),
    }
    too_much = _upload(finance, HEADER + "BIG,Big Supplier,004,123456780,HKD,99.21\r\n")
    assert too_much.status_code == 422
    assert too_much.json()["error"]["details"]["errors"][0]["code"] == "insufficient_funds"
    for text in ("", "reference,amount\r\nA,1.00\r\n", HEADER):
        bad = _upload(finance, text)
        assert bad.status_code == 422, bad.text
    wrong_type = finance.client.post(
        "/v1/merchant/payout-batches",
        content=b"{}",
        headers={**finance.headers(), "Content-Type": "application/json"},
    )
    assert wrong_type.status_code == 415
    assert money_rows(pg_db) == before
    assert merchant_balance(pg_db, merchant_id) == 9920


def test_multipart_upload_and_idempotent_replay(client, pg_db):
    finance, _ = _shop(client, pg_db)
    key = uuid.uuid4().hex
    sent = finance.client.post(
        "/v1/merchant/payout-batches",
        files={"file": ("payouts.csv", GOOD.encode(), "text/csv")},
        headers=finance.headers(key),
    )
    assert sent.status_code == 201, sent.text
    replay = _upload(finance, GOOD, idempotency=key)
    assert replay.status_code == 201 and replay.json()["id"] == sent.json()["id"]
    assert _upload(finance, GOOD, idempotency=None).status_code == 422  # key required


def test_roles_and_other_merchants(client, pg_db):
    owner, merchant_id = _shop(client, pg_db, "owner")
    uploaded = _upload(owner, GOOD)
    assert uploaded.status_code == 201, uploaded.text
    batch_id = uploaded.json()["id"]
    admin = operator(client, pg_db)
    for role in ("cashier", "manager"):
        key = terminal(admin, merchant_id, role)
        before = money_rows(pg_db)
        refused = _upload(key, GOOD)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "merchant_role_forbidden"
        assert key.get(f"/v1/merchant/payout-batches/{batch_id}").status_code == 403
        assert money_rows(pg_db) == before
    other = terminal(admin, onboard(admin, name="Other Shop"), "owner")
    assert other.get(f"/v1/merchant/payout-batches/{batch_id}").status_code == 404
    assert other.get(f"/v1/merchant/payout-batches/{batch_id}/result.csv").status_code == 404
    assert owner.get("/v1/merchant/payout-batches/pb_0000000000000000").status_code == 404


def test_the_worker_runs_an_accepted_batch(client, pg_db):
    finance, merchant_id = _shop(client, pg_db)
    batch_id = _upload(finance, GOOD).json()["id"]
    settings = make_settings(pg_db)
    hooks = worker.Hooks(
        settings.merchants, settings.secret_key, settings.settlement, settings.asset_registry()
    )
    swept = worker.sweep_once(db.make_session_factory(pg_db), settings.idempotency, hooks=hooks)
    assert swept.payout_rows_done == 3
    assert finance.get(f"/v1/merchant/payout-batches/{batch_id}").json()["status"] == "completed"
    assert merchant_balance(pg_db, merchant_id) == 9920 - 6250


def test_three_runs_at_once_pay_each_row_once(client, pg_db):
    finance, merchant_id = _shop(client, pg_db)
    batch_id = _upload(finance, GOOD).json()["id"]
    barrier = threading.Barrier(3)

    def run() -> None:
        barrier.wait()
        _run(pg_db, batch_id)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = finance.get(f"/v1/merchant/payout-batches/{batch_id}").json()
    assert (done["status"], done["paid"], done["failed"]) == ("completed", 3, 0)
    assert merchant_balance(pg_db, merchant_id) == 9920 - 6250
    assert _clearing(pg_db) == 6250
    with pg_db.connect() as connection:
        posts = connection.execute(
            select(func.count()).where(Transfer.pending_id.like(f"payout.{batch_id}.%"))
        ).scalar_one()
    assert posts == 3
