"""``strongroom ledger reconcile`` (issue #12 item 8): the ledger against the connectors' records.
No break after real top-ups (exit 0); each planted break reported (exit 1), as a Rich table
and as JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from strongroom import db
from strongroom.app import create_app
from strongroom.cli import app
from strongroom.funding.models import Topup
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from tests.api.conftest import signup
from tests.api.connector_support import connector_settings, ledger_ok, notification, send_webhook

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


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _reconcile(engine: Engine, *extra: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["ledger", "reconcile", "--database-url", _url(engine), *extra])
    return result.exit_code, result.stdout, result.stderr


def _confirmed_topups(engine: Engine) -> list[str]:
    """Three top-ups credited by webhook, a sandbox plain one, a failed and a pending one."""
    settings = connector_settings(engine)
    with TestClient(create_app(settings, engine)) as client:
        alice = signup(client, "Alice")
        ids = []
        for amount in ("10.00", "20.00", "30.00", "40.00", "50.00"):
            opened = alice.post("/v1/topups", {"asset": "HKD", "amount": amount, "channel": "fps"})
            assert opened.status_code == 201, opened.text
            ids.append(opened.json()["id"])
            reference = opened.json()["reference"]
            if amount == "40.00":
                failed = send_webhook(client, "fps", notification(reference, "failed"))
                assert failed.status_code == 200
            elif amount != "50.00":  # 50.00 stays pending
                sent = send_webhook(client, "fps", notification(reference, amount=amount))
                assert sent.json()["outcome"] == "credited"
        alice.topup("5.00")  # the sandbox's plain top-up: no record
    return ids[:3]


def test_no_break_after_real_topups(pg_db: Engine) -> None:
    _confirmed_topups(pg_db)
    code, out, _ = _reconcile(pg_db)
    assert code == 0, out
    assert "confirmed top-ups 3, top-up transfers 3, sandbox top-ups (no record) 1" in out
    assert "no break" in out
    code, out, _ = _reconcile(pg_db, "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["breaks"] == []
    ledger_ok(pg_db)


def test_planted_breaks_are_each_reported_and_exit_1(pg_db: Engine) -> None:
    first, _, third = _confirmed_topups(pg_db)
    factory = db.make_session_factory(pg_db)
    with db.unit_of_work(factory) as session:
        # 1. a top-up transfer without a record (credited from nowhere)
        user_id = session.get_one(Topup, first).user_id
        wallet = ledger.user_wallet_id(session=session, user_id=user_id, asset="HKD")
        omnibus = ledger.operator_account(session=session, kind="bank_omnibus", asset="HKD").id
        ledger.transfer(
            session=session,
            spec=TransferSpec(
                id="topup:tu_ghost",
                debit_account_id=omnibus,
                credit_account_id=wallet,
                asset="HKD",
                amount_minor=777,
                code="topup",
                note="fps top-up",
            ),
        )
        # 2. a confirmed record whose transfer is not in the ledger
        session.execute(
            update(Topup)
            .where(Topup.status == "requested")
            .values(status="confirmed", received_minor=5000)
        )
        # 3. the amount received differs from the amount credited
        session.execute(update(Topup).where(Topup.id == third).values(received_minor=3100))
    code, out, err = _reconcile(pg_db, "--json")
    assert code == 1
    report = json.loads(out)
    kinds = {(b["kind"], b["topup_id"], b["transfer_id"]) for b in report["breaks"]}
    assert ("transfer_without_record", None, "topup:tu_ghost") in kinds
    assert ("amount_mismatch", third, f"topup:{third}") in kinds
    assert any(kind == "missing_transfer" and transfer is None for kind, _, transfer in kinds)
    assert report["break_count"] == 3, report
    code, out, err = _reconcile(pg_db)
    assert code == 1
    assert "3 break(s)" in err and "transfer_without_record" in err and "amount_mismatch" in err
    ledger_ok(pg_db)  # the ledger itself balances: these are breaks against the records


def test_a_sandbox_topup_is_a_break_where_there_is_no_sandbox(
    pg_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _confirmed_topups(pg_db)
    from strongroom.settings import get_settings

    monkeypatch.setenv("STRONGROOM_FUNDING__SANDBOX_ENABLED", "false")
    get_settings.cache_clear()
    code, out, _ = _reconcile(pg_db, "--json")
    assert code == 1
    (found,) = json.loads(out)["breaks"]
    assert found["kind"] == "transfer_without_record"
