"""The Lite "Buy crypto" screens (issue #12): a quote with its countdown, the paying channel,
the purchase's page (pending with the FPS reference, then bought and locked), over HTTP and in
Chromium in both languages, with screenshots (``artifacts/screenshots/lite-buy-*``). Every
test ends with the ledger's invariants holding."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.funding.models import Purchase
from strongroom.ledger import reports
from tests.api.conftest import ROOMY_LIMITS
from tests.api.connector_support import connector_settings, notification, send_webhook

from .conftest import (
    Console,
    csrf_token,
    fingerprint,
    new_client,
    screenshot,
    settle,
    web_sign_in,
    web_user,
)
from .test_fx_screens import set_rate, wallet_minor

if TYPE_CHECKING:
    from playwright.sync_api import Page

OpenPage = Callable[..., "Page"]
QUOTE_ID = re.compile(r'name="quote_id" value="([^"]+)"')
KEY = re.compile(r'name="idempotency_key" value="([^"]+)"')


@pytest.fixture
def app(pg_db: Engine) -> FastAPI:
    settings = connector_settings(pg_db)
    settings = settings.model_copy(
        update={"limits": ROOMY_LIMITS.model_copy(update={"tn_hours": 24})}
    )
    return create_app(settings, pg_db)


@pytest.fixture(autouse=True)
def ledger_checked(pg_db: Engine) -> Iterator[None]:
    yield
    with db.make_session_factory(pg_db)() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


def _quote_page(http: httpx.Client, amount: str, channel: str) -> httpx.Response:
    token = csrf_token(http.get("/app/buy").text)
    return http.post(
        "/app/buy",
        data={
            "csrf_token": token,
            "pay_asset": "HKD",
            "asset": "BTC",
            "amount": amount,
            "channel": channel,
        },
    )


def _confirm(http: httpx.Client, html: str, channel: str) -> httpx.Response:
    quote_id, key = QUOTE_ID.search(html), KEY.search(html)
    assert quote_id and key, html
    return http.post(
        "/app/buy/confirm",
        data={
            "csrf_token": csrf_token(html),
            "quote_id": quote_id.group(1),
            "idempotency_key": key.group(1),
            "pay_asset": "HKD",
            "asset": "BTC",
            "amount": "1000.00",
            "channel": channel,
        },
    )


def test_buy_over_http_once_per_form_then_the_webhook_buys(
    live_url: str, pg_db: Engine, app: FastAPI
) -> None:
    set_rate(pg_db, "BTC", "HKD", "500000", 100)
    user = web_user(pg_db, "Ivy")
    with new_client(live_url) as http:
        web_sign_in(http, user)
        page = http.get("/app/buy")
        assert page.status_code == 200 and 'action="/app/buy"' in page.text
        assert 'value="store_cash"' not in page.text  # cash cannot carry a purchase
        quoted = _quote_page(http, "1000.00", "fps")
        assert quoted.status_code == 200, quoted.text
        assert "0.00198019" in quoted.text and 'data-quote-seconds="' in quoted.text
        done = _confirm(http, quoted.text, "fps")
        assert done.status_code == 303, done.text
        location = done.headers["location"]
        assert location.startswith("/app/buy/pu_")
        again = _confirm(http, quoted.text, "fps")  # the same form sent twice: one purchase
        assert again.status_code == 303 and again.headers["location"] == location
        pending = http.get(location)
        assert pending.status_code == 200 and 'data-status="pending"' in pending.text
        reference = re.search(r'id="buy-reference">([A-Z0-9]+)<', pending.text)
        assert reference is not None
        assert wallet_minor(pg_db, user.email, "BTC") == 0

        with httpx.Client(base_url=live_url) as bank:
            paid = send_webhook(bank, "fps", notification(reference.group(1), amount="1000.00"))
        assert paid.status_code == 200, paid.text
        bought = http.get(location)
        assert 'data-status="completed"' in bought.text and 'id="buy-unlocks"' in bought.text
        assert wallet_minor(pg_db, user.email, "BTC") == 198019

        before = fingerprint(pg_db)
        bad = _quote_page(http, "1.001", "fps")
        assert bad.status_code == 422 and "at most 2 decimal places" in bad.text
        quoted = _quote_page(http, "10.00", "bitcoin")
        refused = _confirm(http, quoted.text, "bitcoin")
        assert refused.status_code == 422 and "Choose how you pay from the list." in refused.text
        assert http.get("/app/buy/pu_not_mine").status_code == 404
        after = fingerprint(pg_db)
        after.pop("fx_quotes"), before.pop("fx_quotes")
        assert after == before
    with db.make_session_factory(pg_db)() as session:
        assert len(session.scalars(select(Purchase)).all()) == 1


TEXT = {
    "en": {"sign_in": "Sign in", "quote": "Get a quote", "buy": "Buy now"},
    "zh_Hant": {"sign_in": "登入", "quote": "取得報價", "buy": "立即購買"},
}


@pytest.mark.parametrize("language", ["en", "zh_Hant"])
def test_buy_crypto_in_the_browser(
    open_page: OpenPage, live_url: str, pg_db: Engine, console: Console, language: str
) -> None:
    from playwright.sync_api import expect

    words = TEXT[language]
    set_rate(pg_db, "BTC", "HKD", "500000", 100)
    user = web_user(pg_db, "Jade")
    page = open_page(language)
    page.goto(f"{live_url}/app/signin")
    page.fill("#email", user.email)
    page.fill("#password", user.password)
    page.locator("form.form").get_by_role("button", name=words["sign_in"]).click()
    page.wait_for_url(f"{live_url}/app/")
    page.goto(f"{live_url}/app/buy")
    page.select_option("#asset", "BTC")
    page.select_option("#pay_asset", "HKD")
    page.fill("#amount", "1000.00")
    page.select_option("#channel", "fps")
    settle(page)
    screenshot(page, f"lite-buy-{language}")
    page.get_by_role("button", name=words["quote"]).click()
    expect(page.locator("#quote-to")).to_have_text("0.00198019")
    expect(page.locator("[data-seconds-left]")).not_to_have_text("0")
    settle(page)
    screenshot(page, f"lite-buy-quote-{language}")
    page.get_by_role("button", name=words["buy"]).click()
    page.wait_for_url(re.compile(r".*/app/buy/pu_\w+$"))
    expect(page.locator("#buy-status")).to_have_attribute("data-status", "pending")
    reference = page.locator("#buy-reference").inner_text()
    settle(page)
    screenshot(page, f"lite-buy-pending-{language}")

    with httpx.Client(base_url=live_url) as bank:
        paid = send_webhook(bank, "fps", notification(reference.strip(), amount="1000.00"))
    assert paid.status_code == 200, paid.text
    # the page polls while pending and shows the purchase bought, and locked
    expect(page.locator("#buy-status")).to_have_attribute(
        "data-status", "completed", timeout=15_000
    )
    expect(page.locator("#buy-unlocks")).to_be_visible()
    settle(page)
    screenshot(page, f"lite-buy-done-{language}")
    assert wallet_minor(pg_db, user.email, "BTC") == 198019
    assert console.errors == []
