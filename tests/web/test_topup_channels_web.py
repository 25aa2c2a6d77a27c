"""The Lite app's top-up channels (issue #12): the form offers the installation's channels; FPS
shows its reference, store cash its barcode with a 15-minute countdown, and the pending page
the status as the connector moves it. Over HTTP (idempotency, refusals, other users) and in
Chromium in both languages, with screenshots
(``artifacts/screenshots/lite-topup-{fps,store-cash,completed}-<language>-*.png``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import Engine

from strongroom.app import create_app
from strongroom.settings import Settings
from tests.api.connector_support import connector_settings, notification, send_webhook, settled
from tests.api.service_keys import make_key

from .conftest import (
    Console,
    csrf_token,
    fingerprint,
    new_client,
    web_sign_in,
    web_user,
)
from .test_lite_browser import _shoot, _sign_in, expect

if TYPE_CHECKING:
    from playwright.sync_api import Page

OpenPage = Callable[..., "Page"]
PENDING_PATH = re.compile(r"^/app/topup/(tu_[0-9a-f]+)$")
KEY = re.compile(r'name="idempotency_key" value="([^"]+)"')
WORDS = {
    "en": {
        "top_up_now": "Top up now",
        "fps": "Bank transfer (FPS)",
        "store": "Cash at a convenience store",
        "waiting": "Waiting for your payment",
        "completed": "Completed: the money is in your wallet",
        "hello": "Hello, {name}",
    },
    "zh_Hant": {
        "top_up_now": "立即增值",
        "fps": "銀行轉賬（轉數快）",
        "store": "便利店現金增值",
        "waiting": "正在等待你的付款",
        "completed": "已完成：款項已存入你的錢包",
        "hello": "{name}，你好",
    },
}


@pytest.fixture
def settings(pg_db: Engine) -> Settings:
    return connector_settings(pg_db)


@pytest.fixture
def app(pg_db: Engine, settings: Settings) -> FastAPI:
    return create_app(settings, pg_db)


def _form(http: httpx.Client) -> dict[str, str]:
    page = http.get("/app/topup")
    assert page.status_code == 200
    key = KEY.search(page.text)
    assert key is not None
    return {"csrf_token": csrf_token(page.text), "idempotency_key": key.group(1)}


def test_the_form_offers_every_channel_and_a_pending_topup_has_its_page(
    http: httpx.Client, live_url: str, pg_db: Engine, settings: Settings
) -> None:
    web_sign_in(http, web_user(pg_db, "Ann"))
    page = http.get("/app/topup").text
    offered = re.findall(r'<option value="(sandbox|fps|card|store_cash)"', page)
    assert offered == ["sandbox", "fps", "card", "store_cash"]
    form = {**_form(http), "channel": "fps", "asset": "HKD", "amount": "120.00"}
    first = http.post("/app/topup", data=form)
    assert first.status_code == 303, first.text
    found = PENDING_PATH.match(first.headers["location"])
    assert found is not None
    topup_id = found.group(1)
    again = http.post("/app/topup", data=form)  # a double click: the same top-up
    assert again.status_code == 303 and again.headers["location"] == first.headers["location"]
    shown = http.get(first.headers["location"])
    assert shown.status_code == 200
    reference = re.search(r'id="topup-reference">(SR[A-Z0-9]{10})<', shown.text)
    assert reference is not None
    assert "Waiting for your payment" in shown.text and 'hx-trigger="every 5s"' in shown.text

    with new_client(live_url) as other:  # another user's top-up is not found
        web_sign_in(other, web_user(pg_db, "Bea"))
        assert other.get(f"/app/topup/{topup_id}").status_code == 404
    assert http.get("/app/topup/tu_0000").status_code == 404

    with httpx.Client(base_url=live_url) as bank:
        done = send_webhook(bank, "fps", notification(reference.group(1), amount="120.00"))
        assert done.status_code == 200
    completed = http.get(first.headers["location"]).text
    assert "Completed: the money is in your wallet" in completed
    assert "hx-trigger" not in completed  # nothing left to wait for
    receipt = f"/app/receipts/topup%3A{topup_id}"
    assert receipt in http.get("/app/history").text  # in the history, with its receipt
    assert http.get(receipt).status_code == 200
    settled(pg_db, settings)


def test_a_store_topup_shows_its_barcode_and_an_unknown_channel_writes_nothing(
    http: httpx.Client, pg_db: Engine, settings: Settings
) -> None:
    web_sign_in(http, web_user(pg_db, "Cat"))
    before = fingerprint(pg_db)
    bad = {**_form(http), "channel": "paypal", "asset": "HKD", "amount": "1.00"}
    refused = http.post("/app/topup", data=bad)
    assert refused.status_code == 422
    assert "Choose a top-up channel from the list." in refused.text
    bad_amount = {**_form(http), "channel": "store_cash", "asset": "HKD", "amount": "1.001"}
    assert http.post("/app/topup", data=bad_amount).status_code == 422
    assert fingerprint(pg_db) == before
    form = {**_form(http), "channel": "store_cash", "asset": "HKD", "amount": "200.00"}
    opened = http.post("/app/topup", data=form)
    assert opened.status_code == 303
    shown = http.get(opened.headers["location"]).text
    assert re.search(r'<img src="data:image/svg\+xml', shown)
    assert re.search(r'id="topup-reference">99[0-9]{16}<', shown)
    assert re.search(r'data-countdown="[0-9T:+.-]+"', shown)
    settled(pg_db, settings)


@pytest.mark.parametrize("language", ["en", "zh_Hant"])
def test_top_up_by_fps_and_at_a_store_in_the_browser(
    language: str,
    open_page: OpenPage,
    live_url: str,
    pg_db: Engine,
    settings: Settings,
    console: Console,
) -> None:
    words = WORDS[language]
    user = web_user(pg_db, "Dan")
    page = open_page(language)
    _sign_in(page, live_url, language, user, user.password)
    expect(page.get_by_role("heading", level=1)).to_have_text(words["hello"].format(name="Dan"))

    page.goto(f"{live_url}/app/topup")
    page.select_option("#channel", label=words["fps"])
    page.fill("#amount", "150.00")
    page.get_by_role("button", name=words["top_up_now"]).click()
    expect(page.locator("#topup-state")).to_have_text(words["waiting"])
    expect(page.locator("#topup-reference")).to_have_text(re.compile(r"^SR[A-Z0-9]{10}$"))
    _shoot(page, "topup-fps", language)

    page.goto(f"{live_url}/app/topup")
    page.select_option("#channel", label=words["store"])
    page.fill("#amount", "80.00")
    page.get_by_role("button", name=words["top_up_now"]).click()
    expect(page.locator("#topup-barcode")).to_be_visible()
    expect(page.locator("#topup-countdown")).to_have_text(re.compile(r"^1[45]:[0-5][0-9]$"))
    barcode = page.locator("#topup-reference").inner_text().strip()
    _shoot(page, "topup-store-cash", language)

    terminal = {"X-Api-Key": make_key(pg_db, scope="store_cash")}
    with httpx.Client(base_url=live_url) as store:
        taken = store.post(
            "/v1/topups/store-cash/confirmations",
            json={"barcode": barcode, "amount": "80.00"},
            headers=terminal,
        )
        assert taken.status_code == 200, taken.text
    # htmx reloads the status part while it is pending: no reload by the test
    expect(page.locator("#topup-state")).to_have_text(words["completed"], timeout=20_000)
    _shoot(page, "topup-completed", language)
    assert console.errors == []
    settled(pg_db, settings)
