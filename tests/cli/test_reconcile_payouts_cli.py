"""``strongroom ledger reconcile`` for payouts (issue #12 item 8, withdrawals): no break after
real withdrawals (paid, failed, pending); planted breaks reported (exit 1) as a table and JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, update
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from strongroom import db
from strongroom.app import create_app
from strongroom.cli import app
from strongroom.ledger import reports
from strongroom.withdrawals import service as withdrawals
from strongroom.withdrawals.models import Withdrawal
from tests.api.conftest import make_settings, signup
from tests.api.test_withdrawals import link, primary, withdraw

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from strongroom.settings import get_settings

    for name in ("STRONGROOM_DATABASE_URL", "STRONGROOM_ENV"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("STRONGROOM_ENV", "test")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _reconcile(engine: Engine, *extra: str) -> tuple[int, str, str]:
    url = engine.url.render_as_string(hide_password=False)
    result = runner.invoke(app, ["ledger", "reconcile", "--database-url", url, *extra])
    return result.exit_code, result.stdout, result.stderr


def _withdrawals(engine: Engine) -> list[str]:
    """Paid (digit 1), failed (7) and pending (8, timed out once)."""
    fastapi_app = create_app(make_settings(engine), engine)
    with TestClient(fastapi_app) as client:
        alice = primary(engine, signup(client, "Alice"))
        alice.topup("1000.00")
        ids = []
        for digit in (1, 7, 8):
            made = withdraw(alice, link(alice, f"5555000{digit}"), "10.00")
            assert made.status_code == 201, made.text
            ids.append(made.json()["id"])
        withdrawals.process_payouts(fastapi_app.state.session_factory, make_settings(engine))
    return ids


def test_payouts_reconcile_and_planted_breaks_are_reported(pg_db: Engine) -> None:
    paid, failed, pending = _withdrawals(pg_db)
    code, out, _ = _reconcile(pg_db)
    assert code == 0, out
    assert "withdrawals 3 (completed 1, failed 1, pending 1), withdrawal transfers 3" in out
    assert "no break" in out
    code, out, _ = _reconcile(pg_db, "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["payouts"]["breaks"] == []
    # planted: a paid payout whose record says pending; a withdrawal transfer with no record
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        session.execute(update(Withdrawal).where(Withdrawal.id == paid).values(status="pending"))
        session.execute(delete(Withdrawal).where(Withdrawal.id == pending))
    code, out, err = _reconcile(pg_db)
    assert code == 1
    assert "2 payout break(s)" in err
    code, out, _ = _reconcile(pg_db, "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    kinds = {(b["kind"], b["withdrawal_id"]) for b in report["payouts"]["breaks"]}
    assert kinds == {
        ("pending_but_post_pending", paid),
        ("transfer_without_withdrawal", None),
    }
    del failed
    with db.make_session_factory(pg_db)() as session:
        assert reports.check(session=session).ok
