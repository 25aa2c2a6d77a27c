"""Daily merchant settlement (issue #13 item 6, R-MERCH-3): a day's charges and refunds net
into one payout per merchant through the sandbox payout connector; re-running (also two runs
at once on PostgreSQL) pays nothing twice; a payout the connector refuses (account ending in
7) is voided, the money back on the merchant's wallet, and retried by the next run; the CLI;
the settlement report CSV. Every test ends with the ledger's invariants holding."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from strongroom import db, worker
from strongroom.cli import app as cli_app
from strongroom.errors import ValidationFailed
from strongroom.ledger import reports
from strongroom.ledger import service as ledger
from strongroom.ledger.models import Account, Transfer
from strongroom.merchants.models import Merchant
from strongroom.settlement import service as settlement
from strongroom.settlement.models import Settlement
from tests.api.conftest import make_settings, operator, signup
from tests.api.merchant_support import code_of, merchant_balance, onboard, owned_balance, terminal


@pytest.fixture(autouse=True)
def ledger_checked(pg_db: Engine) -> Iterator[None]:
    yield
    with db.make_session_factory(pg_db)() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


def _day_of_business(client, pg_db):  # type: ignore[no-untyped-def]
    """Two merchants: A takes 100.00 and 50.00 and refunds 40.00 of the first; B takes 20.00."""
    admin = operator(client, pg_db)
    shop_a = onboard(admin)
    shop_b = onboard(admin, name="Second Shop")
    till_a, till_b = terminal(admin, shop_a), terminal(admin, shop_b)
    alice = signup(client, "Alice")
    alice.topup("500.00")
    first = till_a.charge({"payment_code": code_of(alice), "amount": "100.00", "asset": "HKD"})
    assert first.status_code == 201, first.text
    second = till_a.charge({"payment_code": code_of(alice), "amount": "50.00", "asset": "HKD"})
    assert second.status_code == 201, second.text
    assert till_a.refund(first.json()["id"], "40.00").status_code == 201
    assert (
        till_b.charge(
            {"payment_code": code_of(alice), "amount": "20.00", "asset": "HKD"}
        ).status_code
        == 201
    )
    return admin, shop_a, shop_b, till_a


def _settle(pg_db, day=None, **kwargs):  # type: ignore[no-untyped-def]
    settings = make_settings(pg_db)
    now = db.utcnow()
    day = day or settlement.local_day(now, settings.settlement.timezone)
    return settlement.settle(
        db.make_session_factory(pg_db),
        settings.settlement,
        settings.asset_registry(),
        day=day,
        now=now + timedelta(days=2),
        **kwargs,
    )


def _rows(pg_db) -> list[Settlement]:  # type: ignore[no-untyped-def]
    with db.make_session_factory(pg_db)() as session:
        return list(session.scalars(select(Settlement).order_by(Settlement.merchant_id)))


def _available(pg_db, merchant_id: str) -> int:  # type: ignore[no-untyped-def]
    with db.make_session_factory(pg_db)() as session:
        account = session.scalars(
            select(Account.id).where(
                Account.owner_type == "merchant", Account.owner_id == merchant_id
            )
        ).one()
        return ledger.balance(session=session, account_id=account).available_minor


def _clearing(pg_db) -> int:  # type: ignore[no-untyped-def]
    return owned_balance(pg_db, "operator", "operator", "payout_clearing", "HKD")


def test_a_day_nets_into_one_payout_per_merchant_and_rerunning_pays_nothing_twice(client, pg_db):
    _, shop_a, shop_b, _ = _day_of_business(client, pg_db)
    # A: charges 150.00, fees 0.80 + 0.40 - 0.32 = 0.88, refunds 40.00 -> net 109.12
    assert merchant_balance(pg_db, shop_a) == 10912
    done = _settle(pg_db)
    assert (done.opened, done.paid, done.failed) == (2, 2, 0)
    rows = {row.merchant_id: row for row in _rows(pg_db)}
    a = rows[shop_a]
    assert (a.charges_minor, a.refunds_minor, a.fees_minor, a.net_minor) == (15000, 4000, 88, 10912)
    assert (a.amount_minor, a.status, a.attempts, a.charges_count, a.refunds_count) == (
        10912,
        "paid",
        1,
        2,
        1,
    )
    assert (rows[shop_b].net_minor, rows[shop_b].status) == (1984, "paid")
    assert merchant_balance(pg_db, shop_a) == 0 and merchant_balance(pg_db, shop_b) == 0
    assert _clearing(pg_db) == 10912 + 1984

    again = _settle(pg_db)
    assert (again.opened, again.paid, again.failed) == (0, 0, 0)
    assert _clearing(pg_db) == 10912 + 1984
    with pg_db.connect() as connection:
        holds = connection.execute(
            select(func.count()).where(Transfer.code == "merchant_settlement")
        ).scalar_one()
    assert holds == 2

    # the report: every charge and refund of the day, then the totals
    with db.make_session_factory(pg_db)() as session:
        row = session.get_one(Settlement, a.id)
        report = "".join(
            settlement.report_csv(
                session=session,
                row=row,
                assets=make_settings(pg_db).asset_registry(),
                timezone="Asia/Hong_Kong",
            )
        )
    lines = list(csv.reader(io.StringIO(report)))
    assert lines[0] == list(settlement.REPORT_HEADER)
    kinds = [line[0] for line in lines[1:]]
    assert kinds == ["charge", "charge", "refund", "total_charges", "total_refunds",
                     "total_fees", "net", "paid"]  # fmt: skip
    assert lines[-2][-1] == "109.12" and lines[-1][3] == "109.12"


def test_a_day_not_over_is_refused_and_another_day_has_nothing(client, pg_db):
    _day_of_business(client, pg_db)
    settings = make_settings(pg_db)
    today = settlement.local_day(db.utcnow(), settings.settlement.timezone)
    with pytest.raises(ValidationFailed) as refused:
        settlement.settle(
            db.make_session_factory(pg_db),
            settings.settlement,
            settings.asset_registry(),
            day=today,
        )
    assert refused.value.code == "day_not_closed"
    assert _rows(pg_db) == []
    earlier = _settle(pg_db, day=today - timedelta(days=3))
    assert (earlier.opened, earlier.paid) == (0, 0)


def test_a_failed_payout_is_voided_the_money_back_and_retried(client, pg_db):
    _, shop_a, _, _ = _day_of_business(client, pg_db)
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        session.execute(
            update(Merchant).where(Merchant.id == shop_a).values(settlement_account_number="1237")
        )
    done = _settle(pg_db)
    assert (done.paid, done.failed) == (1, 1)
    a = next(row for row in _rows(pg_db) if row.merchant_id == shop_a)
    assert (a.status, a.attempts, a.amount_minor) == ("failed", 1, 10912)
    assert merchant_balance(pg_db, shop_a) == 10912  # voided: the money is back
    assert _clearing(pg_db) == 1984

    still = _settle(pg_db)  # the bank still refuses: a second attempt, voided again
    assert (still.paid, still.failed) == (0, 1)
    assert merchant_balance(pg_db, shop_a) == 10912

    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        session.execute(
            update(Merchant).where(Merchant.id == shop_a).values(settlement_account_number="1238")
        )
    # account ending in 8: the connector times out, the next run's poll confirms
    waiting = _settle(pg_db)
    assert (waiting.paid, waiting.waiting) == (0, 1)
    assert merchant_balance(pg_db, shop_a) == 10912  # held (pending), not posted yet
    assert _available(pg_db, shop_a) == 0
    paid = _settle(pg_db)
    assert paid.paid == 1
    a = next(row for row in _rows(pg_db) if row.merchant_id == shop_a)
    assert (a.status, a.attempts, a.payout_id) == ("paid", 3, f"settle.{a.id}.3")
    assert merchant_balance(pg_db, shop_a) == 0
    assert _clearing(pg_db) == 10912 + 1984
    assert _settle(pg_db).paid == 0


def test_two_runs_at_once_pay_each_merchant_once(client, pg_db):
    _, shop_a, shop_b, _ = _day_of_business(client, pg_db)
    barrier = threading.Barrier(4)
    results = []

    def run() -> None:
        barrier.wait()
        results.append(_settle(pg_db))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.opened for r in results) == 2
    assert sum(r.paid for r in results) == 2
    assert [row.status for row in _rows(pg_db)] == ["paid", "paid"]
    assert merchant_balance(pg_db, shop_a) == 0 and merchant_balance(pg_db, shop_b) == 0
    assert _clearing(pg_db) == 10912 + 1984


def test_the_cli_settles_a_day(client, pg_db, monkeypatch):
    _, shop_a, _, _ = _day_of_business(client, pg_db)
    settings = make_settings(pg_db)
    today = settlement.local_day(db.utcnow(), settings.settlement.timezone)
    # the day's business moved back two days, so the CLI's clock finds that day closed
    with pg_db.begin() as connection:
        for table in ("merchant_charges", "merchant_refunds"):
            connection.execute(
                text(f"UPDATE {table} SET created_at = created_at - interval '2 days'")
            )
    url = pg_db.url.render_as_string(hide_password=False)
    monkeypatch.setenv("STRONGROOM_ENV", "test")
    monkeypatch.setenv("STRONGROOM_SECRET_KEY", "test-secret-key-0123456789")
    day = (today - timedelta(days=2)).isoformat()
    runner = CliRunner()
    first = runner.invoke(cli_app, ["merchants", "settle", "--day", day, "--database-url", url])
    assert first.exit_code == 0, first.output
    assert "opened 2, paid 2" in first.output
    second = runner.invoke(cli_app, ["merchants", "settle", "--day", day, "--database-url", url])
    assert second.exit_code == 0, second.output
    assert "opened 0, paid 0" in second.output
    assert merchant_balance(pg_db, shop_a) == 0
    bad = runner.invoke(
        cli_app, ["merchants", "settle", "--day", "yesterday", "--database-url", url]
    )
    assert bad.exit_code == 2
    open_day = runner.invoke(
        cli_app, ["merchants", "settle", "--day", today.isoformat(), "--database-url", url]
    )
    assert open_day.exit_code == 1 and "not over" in open_day.output


def test_the_worker_settles_yesterday_once_and_runs_payout_batches(client, pg_db):
    _, shop_a, shop_b, _ = _day_of_business(client, pg_db)
    with pg_db.begin() as connection:
        for table in ("merchant_charges", "merchant_refunds"):
            connection.execute(
                text(f"UPDATE {table} SET created_at = created_at - interval '1 day'")
            )
    settings = make_settings(pg_db)
    rules = settings.settlement.model_copy(update={"cutoff_hour": 0})
    factory = db.make_session_factory(pg_db)
    hooks = worker.Hooks(settings.merchants, settings.secret_key, rules, settings.asset_registry())
    swept = worker.sweep_once(factory, settings.idempotency, hooks=hooks)
    assert swept.settlements_paid == 2
    assert [row.status for row in _rows(pg_db)] == ["paid", "paid"]
    assert merchant_balance(pg_db, shop_a) == 0 and merchant_balance(pg_db, shop_b) == 0
    assert worker.sweep_once(factory, settings.idempotency, hooks=hooks).settlements_paid == 0
    assert _clearing(pg_db) == 10912 + 1984


def test_settlements_over_http_roles_and_other_merchants(client, pg_db):
    admin, shop_a, _, _ = _day_of_business(client, pg_db)
    _settle(pg_db)
    finance = terminal(admin, shop_a, "finance")
    listed = finance.get("/v1/merchant/settlements")
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["items"]
    assert (item["charges"], item["refunds"], item["fees"], item["net"]) == (
        "150.00",
        "40.00",
        "0.88",
        "109.12",
    )
    assert (item["status"], item["paid_amount"]) == ("paid", "109.12")
    report = finance.get(f"/v1/merchant/settlements/{item['id']}/report.csv")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
    assert report.text.splitlines()[0] == ",".join(settlement.REPORT_HEADER)
    cashier = terminal(admin, shop_a, "cashier")
    assert cashier.get("/v1/merchant/settlements").status_code == 200
    refused = cashier.get(f"/v1/merchant/settlements/{item['id']}/report.csv")
    assert refused.status_code == 403
    other = terminal(admin, onboard(admin, name="Third Shop"), "owner")
    assert other.get(f"/v1/merchant/settlements/{item['id']}/report.csv").status_code == 404
    assert other.get("/v1/merchant/settlements").json()["items"] == []
