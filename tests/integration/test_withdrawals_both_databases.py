"""The withdrawal lifecycle on both databases (SQLite is the embedded default): a paid and a
failed payout through the API and the payout sweep, the books and the payout reconciliation
clean afterwards."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.funding.connectors import LOSE_ALWAYS, SandboxPayoutBook
from strongroom.ledger import reports
from strongroom.withdrawals import service as withdrawals
from strongroom.withdrawals.models import Withdrawal
from strongroom.withdrawals.reconcile import reconcile_payouts
from tests.api.conftest import make_settings, signup
from tests.api.test_withdrawals import link, primary, withdraw


def test_paid_and_failed_payouts(any_db: Engine) -> None:
    settings = make_settings(any_db)
    app = create_app(settings, any_db)
    with TestClient(app) as client:
        alice = primary(any_db, signup(client, "Alice", engine=any_db), "primary")
        alice.topup("500.00")
        made = [
            withdraw(alice, link(alice, f"2222000{digit}"), "100.00").json()["id"]
            for digit in (4, 7)
        ]
        assert alice.balance()["available"] == "300.00"
        processed = withdrawals.process_payouts(app.state.session_factory, settings)
        assert (processed.paid, processed.failed) == (1, 1)
        statuses = [alice.get(f"/v1/withdrawals/{i}").json()["status"] for i in made]
        assert statuses == ["completed", "failed"]
        row = alice.balance()
        assert (row["total"], row["available"]) == ("400.00", "400.00")
    with db.make_session_factory(any_db)() as session:
        assert reports.check(session=session).ok
        assert reconcile_payouts(session=session).ok


def test_a_lost_send_is_sent_again_and_one_never_known_is_left_stuck(
    any_db: Engine, tmp_path: Path
) -> None:
    """The payout states ``resend`` and ``stuck`` (revision 0037) on both databases."""
    settings = make_settings(any_db)
    funding = settings.funding.model_copy(
        update={"sandbox_payout_book": str(tmp_path), "payout_sends_max": 2}
    )
    settings = settings.model_copy(update={"funding": funding})
    bank = SandboxPayoutBook(tmp_path)
    app = create_app(settings, any_db)
    with TestClient(app) as client:
        alice = primary(any_db, signup(client, "Alice", engine=any_db), "primary")
        alice.topup("500.00")
        lost_once, lost_always = (
            withdraw(alice, link(alice, f"2222000{digit}"), "100.00").json()["id"]
            for digit in (4, 5)
        )
        bank.lose_sends(lost_once)
        bank.lose_sends(lost_always, LOSE_ALWAYS)
        for _ in range(4):  # send (lost), poll (unknown), send again, poll
            withdrawals.process_payouts(app.state.session_factory, settings)
        with db.make_session_factory(any_db)() as session:
            states = [session.get_one(Withdrawal, i).payout_state for i in (lost_once, lost_always)]
        assert states == ["paid", "stuck"]
        assert bank.sends_of(lost_once) == 1 and not bank.received(lost_always)
        row = alice.balance()
        assert (row["total"], row["available"]) == ("400.00", "300.00")  # one still pending
    with db.make_session_factory(any_db)() as session:
        assert reports.check(session=session).ok
        assert reconcile_payouts(session=session).ok
