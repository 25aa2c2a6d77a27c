"""The FX screens (issue #12 item 9): the Lite convert screen with its live quote countdown and
re-quote, and the console's FX rates screen (finance, admin), over HTTP and in Chromium in both
languages, with screenshots (``artifacts/screenshots/lite-convert-*``, ``console-fx-rates-*``).
Every test ends with the ledger's invariants holding."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.fx import service as fx
from strongroom.fx.models import FxConversion, FxQuote, FxRate
from strongroom.identity import service as identity
from strongroom.ledger import reports
from strongroom.ledger import service as ledger
from tests.api.conftest import make_settings

from .conftest import (
    Console,
    csrf_token,
    fingerprint,
    new_client,
    sandbox_topup,
    screenshot,
    settle,
    web_sign_in,
    web_user,
)
from .console_support import browser_sign_in, console_sign_in, make_operator

if TYPE_CHECKING:
    from playwright.sync_api import Page

OpenPage = Callable[..., "Page"]
QUOTE_TTL_S = 3
"""Short quotes here, so the browser sees one expire and the next arrive."""


@pytest.fixture
def app(pg_db: Engine) -> FastAPI:
    settings = make_settings(pg_db)
    settings = settings.model_copy(
        update={"fx": settings.fx.model_copy(update={"quote_ttl_s": QUOTE_TTL_S})}
    )
    return create_app(settings, pg_db)


@pytest.fixture(autouse=True)
def ledger_checked(pg_db: Engine) -> Iterator[None]:
    yield
    with db.make_session_factory(pg_db)() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


def set_rate(engine: Engine, base: str, quote: str, mid: str, spread_bps: int) -> None:
    registry = make_settings(engine).asset_registry()
    finance = make_operator(engine, "finance")
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        operator = identity.find_user(session=session, reference=finance.email)
        assert operator is not None
        fx.set_rate(
            session=session,
            operator=operator,
            base=registry.get(base),
            quote=registry.get(quote),
            mid=mid,
            spread_bps=spread_bps,
            settings=make_settings(engine).fx,
        )


def wallet_minor(engine: Engine, email: str, asset: str) -> int:
    with db.make_session_factory(engine)() as session:
        user = identity.find_user(session=session, reference=email)
        assert user is not None
        wallet = ledger.user_wallet_id_if_any(session=session, user_id=user.id, asset=asset)
        return (
            0 if wallet is None else ledger.balance(session=session, account_id=wallet).total_minor
        )


QUOTE_ID = re.compile(r'name="quote_id" value="([^"]+)"')
KEY = re.compile(r'name="idempotency_key" value="([^"]+)"')


def _quote_page(http: httpx.Client, amount: str) -> httpx.Response:
    token = csrf_token(http.get("/app/convert").text)
    return http.post(
        "/app/convert",
        data={"csrf_token": token, "from_asset": "HKD", "to_asset": "BTC", "amount": amount},
    )


def _confirm(http: httpx.Client, html: str, amount: str = "100.00") -> httpx.Response:
    quote_id, key = QUOTE_ID.search(html), KEY.search(html)
    assert quote_id and key, html
    return http.post(
        "/app/convert/confirm",
        data={
            "csrf_token": csrf_token(html),
            "quote_id": quote_id.group(1),
            "idempotency_key": key.group(1),
            "from_asset": "HKD",
            "to_asset": "BTC",
            "amount": amount,
        },
    )


def test_convert_over_http_once_per_form_and_a_stale_quote_is_requoted(
    live_url: str, pg_db: Engine
) -> None:
    set_rate(pg_db, "BTC", "HKD", "500000", 100)
    user = web_user(pg_db, "Ivy")
    sandbox_topup(pg_db, user.email, "300.00")
    with new_client(live_url) as http:
        web_sign_in(http, user)
        page = http.get("/app/convert")
        assert page.status_code == 200 and 'action="/app/convert"' in page.text
        quoted = _quote_page(http, "100.00")
        assert quoted.status_code == 200, quoted.text
        assert "0.00019801" in quoted.text and 'data-quote-seconds="' in quoted.text
        done = _confirm(http, quoted.text)
        assert done.status_code == 303, done.text
        location = done.headers["location"]
        assert location.startswith("/app/convert/done/cv_")
        again = _confirm(http, quoted.text)  # the same form sent twice: one conversion
        assert again.status_code == 303 and again.headers["location"] == location
        shown = http.get(location)
        assert shown.status_code == 200 and "0.00019801" in shown.text
        assert wallet_minor(pg_db, user.email, "HKD") == 200_00
        assert wallet_minor(pg_db, user.email, "BTC") == 19801

        stale = _quote_page(http, "50.00")
        quote_id = QUOTE_ID.search(stale.text)
        assert quote_id is not None
        with db.make_session_factory(pg_db).begin() as session:
            session.execute(
                update(FxQuote)
                .where(FxQuote.id == quote_id.group(1))
                .values(expires_at=db.utcnow() - timedelta(seconds=1))
            )
        refused = _confirm(http, stale.text, "50.00")
        assert refused.status_code == 409
        assert "The quote expired before you converted" in refused.text
        fresh = QUOTE_ID.search(refused.text)
        assert fresh is not None and fresh.group(1) != quote_id.group(1)
        assert wallet_minor(pg_db, user.email, "HKD") == 200_00

        before = fingerprint(pg_db)
        bad = _quote_page(http, "1.001")
        assert bad.status_code == 422 and "at most 2 decimal places" in bad.text
        token = csrf_token(bad.text)
        same = http.post(
            "/app/convert",
            data={"csrf_token": token, "from_asset": "HKD", "to_asset": "HKD", "amount": "1"},
        )
        assert same.status_code == 422 and "Choose two different assets." in same.text
        assert fingerprint(pg_db) == before
        other = http.get("/app/convert/done/cv_not_mine")
        assert other.status_code == 404
    with db.make_session_factory(pg_db)() as session:
        assert len(session.scalars(select(FxConversion)).all()) == 1


def test_the_console_fx_screen_sets_and_deletes_rates_for_finance_only(
    live_url: str, pg_db: Engine
) -> None:
    with new_client(live_url) as http:
        console_sign_in(http, make_operator(pg_db, "support"))
        assert http.get("/console/fx").status_code == 403
    with new_client(live_url) as http:
        console_sign_in(http, make_operator(pg_db, "finance"))
        page = http.get("/console/fx")
        assert page.status_code == 200 and "No rate yet" in page.text
        form = {"csrf_token": csrf_token(page.text), "base": "USDT", "quote": "HKD"}
        saved = http.post("/console/fx", data=form | {"mid": "7.8", "spread_bps": "25"})
        assert saved.status_code == 303
        listed = http.get("/console/fx").text
        assert 'data-pair="USDT/HKD"' in listed
        assert "7.7805" in listed and "7.8195" in listed  # bid and ask
        refused = http.post("/console/fx", data=form | {"mid": "0", "spread_bps": "25"})
        assert refused.status_code == 422 and "decimal number over zero" in refused.text
        inverse = form | {"base": "HKD", "quote": "USDT", "mid": "0.128", "spread_bps": "25"}
        refused = http.post("/console/fx", data=inverse)
        assert refused.status_code == 409 and "USDT/HKD" in refused.text
        deleted = http.post(
            "/console/fx/delete",
            data={"csrf_token": form["csrf_token"], "base": "USDT", "quote": "HKD"},
        )
        assert deleted.status_code == 303
    with db.make_session_factory(pg_db)() as session:
        assert session.scalars(select(FxRate)).all() == []


TEXT = {
    "en": {
        "sign_in": "Sign in",
        "quote": "Get a quote",
        "convert": "Convert now",
        "save": "Save the rate",
        "done": "Converted",
    },
    "zh_Hant": {
        "sign_in": "登入",
        "quote": "取得報價",
        "convert": "立即兌換",
        "save": "儲存匯率",
        "done": "已兌換",
    },
}


@pytest.mark.parametrize("language", ["en", "zh_Hant"])
def test_convert_with_a_live_quote_countdown_and_the_console_rates_in_the_browser(
    open_page: OpenPage, live_url: str, pg_db: Engine, console: Console, language: str
) -> None:
    from playwright.sync_api import expect

    words = TEXT[language]
    finance = make_operator(pg_db, "finance")
    desk = open_page(language)
    browser_sign_in(desk, live_url, finance)
    desk.goto(f"{live_url}/console/fx")
    desk.select_option("#base", "BTC")
    desk.select_option("#quote", "HKD")
    desk.fill("#mid", "500000")
    desk.fill("#spread_bps", "100")
    desk.get_by_role("button", name=words["save"]).click()
    desk.wait_for_url(f"{live_url}/console/fx")
    expect(desk.locator('tr[data-pair="BTC/HKD"]')).to_contain_text("505000")
    settle(desk)
    screenshot(desk, f"console-fx-rates-{language}")

    user = web_user(pg_db, "Jade")
    sandbox_topup(pg_db, user.email, "300.00")
    page = open_page(language)
    page.goto(f"{live_url}/app/signin")
    page.fill("#email", user.email)
    page.fill("#password", user.password)
    page.locator("form.form").get_by_role("button", name=words["sign_in"]).click()
    page.wait_for_url(f"{live_url}/app/")
    page.goto(f"{live_url}/app/convert")
    page.select_option("#from_asset", "HKD")
    page.select_option("#to_asset", "BTC")
    page.fill("#amount", "100.00")
    settle(page)
    screenshot(page, f"lite-convert-{language}")
    page.get_by_role("button", name=words["quote"]).click()
    expect(page.locator("#quote-to")).to_have_text("0.00019801")
    first = page.locator('input[name="quote_id"]').get_attribute("value")
    screenshot(page, f"lite-convert-quote-{language}")
    # the countdown runs out and htmx puts a new quote in its place
    expect(page.locator('input[name="quote_id"]')).not_to_have_value(first or "", timeout=15_000)
    expect(page.locator("[data-seconds-left]")).not_to_have_text("0")
    page.get_by_role("button", name=words["convert"]).click()
    page.wait_for_url(re.compile(r".*/app/convert/done/cv_\w+$"))
    expect(page.locator(".success")).to_have_text(words["done"])
    expect(page.locator("#done-title .figure")).to_have_text("0.00019801")
    settle(page)
    screenshot(page, f"lite-convert-done-{language}")
    assert wallet_minor(pg_db, user.email, "BTC") == 19801
    assert wallet_minor(pg_db, user.email, "HKD") == 200_00
    assert console.errors == []
