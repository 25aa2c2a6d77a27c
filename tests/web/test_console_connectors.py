"""The console's connector screens (issue #12): webhook deliveries as they arrived and the
reconciliation breaks, for finance and admins only (each visit audited); over HTTP and in
Chromium in both languages, with screenshots
(``artifacts/screenshots/console-{webhooks,reconciliation}-<language>-*.png``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.identity.models import AuditEvent
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.settings import Settings
from tests.api.conftest import signup
from tests.api.connector_support import connector_settings, notification, send_webhook

from .conftest import Console, new_client, screenshot, settle
from .console_support import browser_sign_in, console_sign_in, make_operator
from .test_lite_browser import expect

if TYPE_CHECKING:
    from playwright.sync_api import Page

OpenPage = Callable[..., "Page"]
SCREENS = ("/console/webhooks", "/console/reconciliation")
WORDS = {
    "en": {"webhooks": "Webhook deliveries", "reconciliation": "Reconciliation"},
    "zh_Hant": {"webhooks": "Webhook 通知", "reconciliation": "對帳"},
}


@pytest.fixture
def settings(pg_db: Engine) -> Settings:
    return connector_settings(pg_db)


@pytest.fixture
def app(pg_db: Engine, settings: Settings) -> FastAPI:
    return create_app(settings, pg_db)


def _deliveries(app: FastAPI) -> str:
    """An FPS top-up credited by its webhook, a forged delivery and a duplicate; its id."""
    with TestClient(app) as client:
        user = signup(client, "Ann")
        opened = user.post("/v1/topups", {"asset": "HKD", "amount": "10.00", "channel": "fps"})
        reference = opened.json()["reference"]
        body = notification(reference, amount="10.00")
        assert send_webhook(client, "fps", body).json()["outcome"] == "credited"
        assert send_webhook(client, "fps", body, secret="forged").status_code == 401
        assert send_webhook(client, "fps", body).json()["outcome"] == "duplicate"
        topup_id: str = opened.json()["id"]
        return topup_id


def _plant_break(engine: Engine) -> None:
    """A top-up transfer with no record behind it."""
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        omnibus = ledger.operator_account(session=session, kind="bank_omnibus", asset="HKD").id
        wallet = ledger.operator_account(session=session, kind="suspense", asset="HKD").id
        ledger.transfer(
            session=session,
            spec=TransferSpec(
                id="topup:tu_planted",
                debit_account_id=omnibus,
                credit_account_id=wallet,
                asset="HKD",
                amount_minor=500,
                code="topup",
                note="fps top-up",
            ),
        )


def test_roles_and_contents_of_the_connector_screens(
    app: FastAPI, live_url: str, pg_db: Engine
) -> None:
    topup_id = _deliveries(app)
    for role, allowed in (("admin", True), ("finance", True), ("support", False)):
        operator = make_operator(pg_db, role)
        with new_client(live_url) as http:
            console_sign_in(http, operator)
            for path in SCREENS:
                shown = http.get(path)
                assert shown.status_code == (200 if allowed else 403), (role, path)
            if not allowed:
                continue
            listing = http.get("/console/webhooks").text
            assert listing.count('data-outcome="credited"') == 1
            assert listing.count('data-outcome="duplicate"') == 1
            assert listing.count('data-signature="bad"') == 1
            assert topup_id in listing and "&#34;event_id&#34;" in listing  # the raw body
            only_card = http.get("/console/webhooks", params={"connector": "card"}).text
            assert "data-outcome=" not in only_card
            assert 'id="reconciled"' in http.get("/console/reconciliation").text
    with db.make_session_factory(pg_db)() as session:
        visits = session.scalars(
            select(AuditEvent.details_json).where(AuditEvent.action.like("operator.%"))
        ).all()
    assert any("/console/webhooks" in visit for visit in visits)

    _plant_break(pg_db)
    operator = make_operator(pg_db, "finance")
    with new_client(live_url) as http:
        console_sign_in(http, operator)
        report = http.get("/console/reconciliation").text
        assert 'data-kind="transfer_without_record"' in report and "topup:tu_planted" in report
        assert 'id="break-count">1<' in report


@pytest.mark.parametrize("language", ["en", "zh_Hant"])
def test_connector_screens_in_the_browser(
    language: str,
    app: FastAPI,
    open_page: OpenPage,
    live_url: str,
    pg_db: Engine,
    console: Console,
) -> None:
    _deliveries(app)
    _plant_break(pg_db)
    operator = make_operator(pg_db, "finance")
    page = open_page(language)
    browser_sign_in(page, live_url, operator)
    page.goto(f"{live_url}/console/webhooks")
    expect(page.get_by_role("heading", level=1)).to_have_text(WORDS[language]["webhooks"])
    expect(page.locator("tr[data-outcome]")).to_have_count(3)
    settle(page)
    screenshot(page, f"console-webhooks-{language}")
    page.goto(f"{live_url}/console/reconciliation")
    expect(page.get_by_role("heading", level=1)).to_have_text(WORDS[language]["reconciliation"])
    expect(page.locator("tr[data-kind]")).to_have_count(1)
    settle(page)
    screenshot(page, f"console-reconciliation-{language}")
    assert console.errors == []
