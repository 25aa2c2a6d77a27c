"""A payout whose reference the connector does not know (issue #12): the send never reached it.
The sandbox's book (``funding.sandbox_payout_book``) remembers what it received and can be made
to lose sends; the worker sends again under the same payout id (the connector dedupes by it, so
it can never pay twice), and after ``funding.payout_sends_max`` sends leaves the money pending
for an operator, who sees it in the console's pending payouts."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.funding.connectors import (
    LOSE_ALWAYS,
    PayoutAnswer,
    PayoutStatus,
    SandboxPayoutBook,
)
from strongroom.ledger.models import Transfer
from strongroom.money import Money
from strongroom.settings import Settings
from strongroom.settlement import payouts
from strongroom.withdrawals import service as withdrawals
from strongroom.withdrawals.models import Withdrawal
from tests.api.conftest import Caller, make_settings
from tests.api.test_withdrawals import emails, ready, sweep, withdraw
from tests.web.conftest import new_client
from tests.web.console_support import console_sign_in, make_operator

SENDS_MAX = 3


def book_settings(engine: Engine, folder: Path) -> Settings:
    settings = make_settings(engine)
    funding = settings.funding.model_copy(
        update={"sandbox_payout_book": str(folder), "payout_sends_max": SENDS_MAX}
    )
    return settings.model_copy(update={"funding": funding})


@pytest.fixture
def app(pg_db: Engine, tmp_path: Path) -> FastAPI:
    return create_app(book_settings(pg_db, tmp_path / "bank"), pg_db)


@pytest.fixture
def bank(tmp_path: Path) -> SandboxPayoutBook:
    return SandboxPayoutBook(tmp_path / "bank")


def record(engine: Engine, withdrawal_id: str) -> tuple[Withdrawal, list[str]]:
    with db.make_session_factory(engine)() as session:
        row = session.get_one(Withdrawal, withdrawal_id)
        session.expunge(row)
        resolutions = list(
            session.scalars(select(Transfer.kind).where(Transfer.pending_id == row.transfer_id))
        )
    return row, resolutions


def pending_withdrawal(client: TestClient, engine: Engine) -> tuple[Caller, str]:
    alice, account = ready(client, engine, 1)
    made = withdraw(alice, account, "250.00")
    assert made.status_code == 201, made.text
    return alice, str(made.json()["id"])


def test_a_lost_send_is_sent_again_and_paid_once(
    client: TestClient, app: FastAPI, pg_db: Engine, bank: SandboxPayoutBook
) -> None:
    alice, withdrawal_id = pending_withdrawal(client, pg_db)
    bank.lose_sends(withdrawal_id)
    assert sweep(app).waiting == 1  # the send is lost on the way: no answer
    assert not bank.received(withdrawal_id)
    assert sweep(app).waiting == 1  # the poll: "unknown reference"
    row, resolutions = record(pg_db, withdrawal_id)
    assert (row.status, row.payout_state, row.sends, row.polls, resolutions) == (
        "pending",
        "resend",
        1,
        1,
        [],
    )
    assert alice.balance()["available"] == "750.00"  # still owed to the payout, not voided
    assert sweep(app).paid == 1  # sent again under the same payout id
    assert sweep(app) == withdrawals.Processed()
    row, resolutions = record(pg_db, withdrawal_id)
    assert (row.status, row.payout_state, row.sends, row.polls) == ("completed", "paid", 2, 1)
    assert resolutions == ["post_pending"]
    assert bank.sends_of(withdrawal_id) == 1  # the bank received it once
    balance = alice.balance()
    assert (balance["total"], balance["available"]) == ("750.00", "750.00")
    assert len(emails(pg_db, alice.email, "withdrawals.completed")) == 1


def test_a_send_the_bank_already_has_pays_nothing_more(
    bank: SandboxPayoutBook, pg_db: Engine
) -> None:
    """The contract the resend relies on: the connector dedupes by our payout id."""
    hkd = make_settings(pg_db).asset_registry().get("HKD")
    money = Money(25_000, hkd)
    first = bank.send(payout_id="w1", account_number="12345671", amount=money)
    again = bank.send(payout_id="w1", account_number="12345671", amount=money)
    assert (first.status, again.status) == ("paid", "paid")
    assert bank.sends_of("w1") == 2 and bank.received("w1")
    assert bank.poll(payout_id="w2", account_number="12345671", amount=money).status == "unknown"


def test_unknown_forever_stops_after_the_most_sends_and_the_operator_sees_it(
    client: TestClient, app: FastAPI, pg_db: Engine, bank: SandboxPayoutBook, live_url: str
) -> None:
    alice, withdrawal_id = pending_withdrawal(client, pg_db)
    bank.lose_sends(withdrawal_id, LOSE_ALWAYS)
    for _ in range(2 * SENDS_MAX):  # each send is lost, each poll answers unknown
        sweep(app)
    row, resolutions = record(pg_db, withdrawal_id)
    assert (row.status, row.payout_state, row.sends, resolutions) == (
        "pending",
        "stuck",
        SENDS_MAX,
        [],
    )
    assert sweep(app) == withdrawals.Processed()  # left alone: no more sends
    assert record(pg_db, withdrawal_id)[0].sends == SENDS_MAX
    balance = alice.balance()
    assert (balance["total"], balance["available"]) == ("1000.00", "750.00")  # still pending
    assert emails(pg_db, alice.email, "withdrawals.failed") == []  # not voided silently
    operator = make_operator(pg_db, "finance")
    with new_client(live_url) as http:
        console_sign_in(http, operator)
        shown = http.get("/console/payouts")
    assert shown.status_code == 200
    assert f'data-withdrawal="{withdrawal_id}" data-state="stuck"' in shown.text
    assert f"{SENDS_MAX}/{SENDS_MAX}" in shown.text  # sends / polls


def test_settlement_payouts_send_again_on_unknown_and_never_void_on_it(
    bank: SandboxPayoutBook, pg_db: Engine
) -> None:
    """Merchant settlements and payout batches ask through ``settlement.payouts.ask``: a poll
    answered "unknown" is sent again at once under the same id; ``resolve`` never voids on an
    unknown answer."""
    money = Money(25_000, make_settings(pg_db).asset_registry().get("HKD"))
    bank.lose_sends("s1")
    lost = payouts.ask(bank, payout_id="s1", account_number="12345671", amount=money, again=False)
    assert lost.status == "timed_out" and not bank.received("s1")
    again = payouts.ask(bank, payout_id="s1", account_number="12345671", amount=money, again=True)
    assert again.status == "paid" and bank.sends_of("s1") == 1
    with db.make_session_factory(pg_db)() as session:
        unknown = PayoutAnswer(PayoutStatus.UNKNOWN, "sandbox:s2")
        payouts.resolve(session=session, payout_id="s2", answer=unknown)  # no transfer at all
        assert session.scalar(select(func.count()).select_from(Transfer)) == 0
