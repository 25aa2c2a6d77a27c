"""The withdrawal lifecycle on both databases (SQLite is the embedded default): a paid and a
failed payout through the API and the payout sweep, the books and the payout reconciliation
clean afterwards."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.ledger import reports
from strongroom.withdrawals import service as withdrawals
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
