"""The Lite pay screen (R-CODE-1): the current payment code as a QR code, a Code 128 barcode
and its digits, refreshing itself when the next time step begins; over HTTP (headers, the
fragment, the code accepted at the till) and in Chromium in both languages, with screenshots.
The Code 128 encoder is checked against python-barcode's, an independent implementation."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.paycodes import service as paycodes
from strongroom.web import code128
from tests.api.conftest import make_settings

from .conftest import Console, assert_locked_down, serving, web_sign_in, web_user
from .test_lite_browser import LANGUAGES, _shoot, _sign_in, expect

if TYPE_CHECKING:
    from playwright.sync_api import Page

OpenPage = Callable[..., "Page"]
TITLE = {"en": "Pay", "zh_Hant": "付款"}
DIGITS = re.compile(r'id="paycode-digits">([0-9 ]+)<')


@pytest.mark.parametrize(
    "text", ["888800010000042870385432", "000000000000000000000000", "Hello, World!", "A"]
)
def test_code128_matches_python_barcode(text: str) -> None:
    barcode = pytest.importorskip("barcode")
    assert code128.modules(text) == barcode.get("code128", text).build()[0]


def test_code128_svg_draws_the_modules() -> None:
    modules = code128.modules("12345678")
    svg = code128.svg("12345678")
    assert svg.count("<rect ") == 1 + len(re.findall("1+", modules))
    assert "style=" not in svg
    assert code128.data_uri("12").startswith("data:image/svg+xml;base64,")


def test_the_pay_page_shows_a_code_the_till_accepts(http: httpx.Client, pg_db: Engine) -> None:
    user = web_user(pg_db, "Payer")
    web_sign_in(http, user)
    response = http.get("/app/pay")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert_locked_down(http, response)
    found = DIGITS.search(response.text)
    assert found is not None, response.text
    code = found.group(1).replace(" ", "")
    assert len(code) == 24 and code.startswith("88880001")
    assert f'data-code="{code}"' in response.text
    images = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', response.text)
    assert len(images) == 2 and all(b"<svg" in base64.b64decode(i) for i in images)
    fragment = http.get("/app/pay/code")
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert 'hx-get="/app/pay/code"' in fragment.text
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        resolved = paycodes.resolve_and_consume(
            session=session,
            code=code,
            settings=make_settings(pg_db).payment_codes,
            keyring=make_settings(pg_db).auth.vault,
            now=datetime.now(UTC),
        )
    assert resolved.user_id is not None


def test_the_pay_page_needs_a_signed_in_user(http: httpx.Client) -> None:
    for path in ("/app/pay", "/app/pay/code"):
        response = http.get(path)
        assert response.status_code in (303, 401), (path, response.status_code)


@pytest.fixture
def quick_url(pg_db: Engine) -> Iterator[str]:
    """The app with 5-second time steps: the page refreshes its code within seconds."""
    settings = make_settings(pg_db)
    codes = settings.payment_codes.model_copy(update={"step_s": 5})
    app: FastAPI = create_app(settings.model_copy(update={"payment_codes": codes}), pg_db)
    with serving(app) as url:
        yield url


def test_the_code_refreshes_itself(
    open_page: OpenPage, quick_url: str, pg_db: Engine, console: Console
) -> None:
    user = web_user(pg_db, "Refresh")
    page = open_page("en")
    _sign_in(page, quick_url, "en", user, user.password)
    page.goto(f"{quick_url}/app/pay")
    digits = page.locator("#paycode-digits")
    first = digits.inner_text()
    assert len(first.replace(" ", "")) == 24
    expect(digits).not_to_have_text(first, timeout=15_000)  # the next step's code
    assert len(digits.inner_text().replace(" ", "")) == 24
    assert console.errors == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_pay_screen_in_both_languages(
    language: str, open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    user = web_user(pg_db, "Shopper")
    page = open_page(language)
    _sign_in(page, live_url, language, user, user.password)
    page.goto(f"{live_url}/app/")
    page.locator("nav.tabs").get_by_role("link", name=TITLE[language]).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(TITLE[language])
    expect(page.locator('nav.tabs a[aria-current="page"]')).to_have_attribute("href", "/app/pay")
    expect(page.locator(".paycode .qr img")).to_be_visible()
    expect(page.locator(".paycode .barcode img")).to_be_visible()
    assert page.locator(".paycode .qr img").evaluate("img => img.naturalWidth") > 0
    assert page.locator(".paycode .barcode img").evaluate("img => img.naturalWidth") > 0
    expect(page.locator("#paycode-digits")).to_have_text(re.compile(r"^(\d{4} ){5}\d{4}$"))
    _shoot(page, "pay", language)
    assert console.errors == []


def test_the_page_script_computes_the_documented_codes(
    open_page: OpenPage, live_url: str, console: Console
) -> None:
    """paycode.js (the offline pay screen) against docs/payment-codes.md's test vectors."""
    from tests.unit.test_payment_code_design import VECTORS

    page = open_page("en")
    page.goto(f"{live_url}/app/offline")
    page.wait_for_function("typeof StrongroomPaycode !== 'undefined'")
    secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA"
    for unix_time, code in VECTORS:
        computed = page.evaluate(
            "([secret, step]) => StrongroomPaycode.code('88880001', '0000042', secret, step)",
            [secret, unix_time // 30],
        )
        assert computed == code, unix_time
    barcode_uri = page.evaluate("StrongroomPaycode.barcode('888800010000042870385432')")
    assert barcode_uri == code128.data_uri("888800010000042870385432")
    assert console.errors == []


def test_codes_kept_on_the_device_are_shown_offline(
    open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    """Keep codes on this device, lose the network: the offline page computes the code in the
    browser, and the till accepts it (checked by the server's resolve_and_consume)."""
    user = web_user(pg_db, "Offline")
    page = open_page("en")
    _sign_in(page, live_url, "en", user, user.password)
    page.goto(f"{live_url}/app/pay")
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    page.get_by_role("button", name="Keep codes on this device").click()
    expect(page.locator("#paycode-kept")).to_be_visible()
    expect(page.locator("#paycode-keep-form")).to_be_hidden()
    assert page.locator("#paycode-device").count() == 0  # the secret left the page
    stored = page.evaluate("JSON.parse(localStorage.getItem('strongroom.paycode.v1'))")
    assert set(stored) == {"device_id", "secret", "locator", "issuer_id", "step_s"}
    page.reload()  # a GET (no second device), controlled by the service worker from now on
    assert page.evaluate("JSON.parse(localStorage.getItem('strongroom.paycode.v1'))") == stored
    assert page.evaluate("navigator.serviceWorker.controller !== null")
    page.context.set_offline(True)
    page.goto(f"{live_url}/app/pay")
    expect(page.locator("#offline-paycode")).to_be_visible()
    expect(page.locator("#offline-digits")).to_have_text(re.compile(r"^(\d{4} ){5}\d{4}$"))
    assert page.locator("#offline-qr").evaluate("img => img.naturalWidth") > 0
    assert page.locator("#offline-barcode").evaluate("img => img.naturalWidth") > 0
    code = page.locator("#offline-paycode").get_attribute("data-code")
    assert code is not None and code[8:15] == stored["locator"]
    _shoot(page, "pay-offline", "en")
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        resolved = paycodes.resolve_and_consume(
            session=session,
            code=code,
            settings=make_settings(pg_db).payment_codes,
            keyring=make_settings(pg_db).auth.vault,
            now=datetime.now(UTC),
        )
    assert resolved.device_id == stored["device_id"]
    assert not [e for e in console.errors if "ERR_INTERNET_DISCONNECTED" not in e]


def test_keeping_codes_on_a_device_over_http(http: httpx.Client, pg_db: Engine) -> None:
    """The form registers a device and hands its secret over once: in the htmx part it swaps
    in, or in the whole page without JavaScript; at the devices limit, the reason, and nothing
    written."""
    from strongroom.paycodes.models import Device

    from .conftest import csrf_token, fingerprint

    user = web_user(pg_db, "Keeper")
    web_sign_in(http, user)
    page = http.get("/app/pay").text
    assert 'id="paycode-device"' not in page
    token = csrf_token(page)
    part = http.post("/app/pay/device", data={"csrf_token": token}, headers={"HX-Request": "true"})
    assert part.status_code == 200 and "<html" not in part.text
    secret = re.search(r'data-secret="([A-Z2-7]{52})"', part.text)
    assert secret is not None
    whole = http.post("/app/pay/device", data={"csrf_token": token})
    assert whole.status_code == 200 and "<html" in whole.text
    assert whole.headers["cache-control"] == "no-store"
    assert 'data-secret="' in whole.text and secret.group(1) not in whole.text
    with pg_db.connect() as connection:
        names = connection.execute(Device.__table__.select()).fetchall()
    assert len([row for row in names if not row.server_held]) == 2
    limit = make_settings(pg_db).payment_codes.devices_per_user_max
    for _ in range(limit - 3):  # the server-held default device counts too
        http.post("/app/pay/device", data={"csrf_token": token}, headers={"HX-Request": "true"})
    before = fingerprint(pg_db)
    refused = http.post(
        "/app/pay/device", data={"csrf_token": token}, headers={"HX-Request": "true"}
    )
    assert refused.status_code == 200
    assert 'id="paycode-keep-error"' in refused.text and "data-secret" not in refused.text
    assert "too many devices" in refused.text
    assert {k: v for k, v in fingerprint(pg_db).items() if k != "audit_events"} == {
        k: v for k, v in before.items() if k != "audit_events"
    }
