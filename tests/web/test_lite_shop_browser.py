"""The Lite app's shop screens in headless Chromium, under the CSP (issue #13), in both
languages with screenshots: paste a shop's EMV code, type the amount, confirm, pay and see the
receipt; scan a code with the camera (``scan.js`` over the browser's ``BarcodeDetector``: the
camera and the detector are the world's edge, faked in the page); create a virtual card, see
its number once, suspend it. Every test checks that no page logged an error or a CSP
violation."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.engine import Engine

from .conftest import Console
from .merchant_support import payer, shop
from .test_lite_browser import LANGUAGES, _shoot, _sign_in, expect
from .test_lite_shop_pay_http import shop_code

if TYPE_CHECKING:
    from playwright.sync_api import Page

OpenPage = Callable[..., "Page"]
WORDS = {  # what the tests click and look for, per language (the catalogs' translations)
    "en": {
        "pay": "Pay",
        "shop_code": "Scan or paste a shop's code instead",
        "continue": "Continue",
        "pay_shop": "Pay {name}",
        "paid_to": "Paid to {name}",
        "no_refund": "No refund so far.",
        "cards": "Virtual cards",
        "create": "Create a card",
        "ready": "Your new card is ready",
        "suspend": "Suspend",
        "suspended": "Suspended",
        "resume": "Resume",
        "damaged": "check digits do not match",
    },
    "zh_Hant": {
        "pay": "付款",
        "shop_code": "改為掃描或貼上商戶的二維碼",
        "continue": "繼續",
        "pay_shop": "向 {name} 付款",
        "paid_to": "付款給 {name}",
        "no_refund": "暫時沒有退款。",
        "cards": "虛擬卡",
        "create": "建立卡",
        "ready": "您的新卡已準備好",
        "suspend": "暫停",
        "suspended": "已暫停",
        "resume": "恢復",
        "damaged": "檢查碼不符",
    },
}
FAKE_CAMERA = """
(function () {
  var payload = %s;
  window.BarcodeDetector = function BarcodeDetector() {};
  window.BarcodeDetector.prototype.detect = function () {
    return Promise.resolve([{ rawValue: payload }]);
  };
  var media = navigator.mediaDevices || {};
  media.getUserMedia = function () {
    var canvas = document.createElement("canvas");
    canvas.width = 64;
    canvas.height = 64;
    canvas.getContext("2d").fillRect(0, 0, 64, 64);
    return Promise.resolve(canvas.captureStream(5));
  };
  if (!navigator.mediaDevices) {
    Object.defineProperty(navigator, "mediaDevices", { value: media });
  }
})();
"""


def _nav(page: Page, label: str) -> None:
    page.locator("nav.tabs").get_by_role("link", name=label, exact=True).click()


@pytest.mark.parametrize("language", LANGUAGES)
def test_paste_a_shop_code_confirm_pay_and_see_the_receipt(
    language: str, open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    words = WORDS[language]
    person = payer(pg_db, "300.00")
    merchant_id = shop(pg_db)
    payload = shop_code(pg_db, merchant_id)
    page = open_page(language)
    _sign_in(page, live_url, language, person, person.password)
    _nav(page, words["pay"])
    page.get_by_role("link", name=words["shop_code"]).click()
    expect(page).to_have_url(re.compile(r"/app/pay/emv$"))
    expect(page.locator("[data-scanner]")).to_be_hidden()  # no BarcodeDetector here
    _shoot(page, "pay-emv", language)
    # a damaged code first: the reason, in the page's language
    page.fill("#payload", payload[:-4] + ("0000" if payload[-4:] != "0000" else "1111"))
    page.locator("#emv-form").get_by_role("button", name=words["continue"]).click()
    expect(page.locator(".alert")).to_contain_text(words["damaged"])
    _shoot(page, "pay-emv-error", language)
    page.fill("#payload", payload)
    page.locator("#emv-form").get_by_role("button", name=words["continue"]).click()
    expect(page.locator(".merchant")).to_have_text("Lucky Tea House")
    page.fill("#amount", "42.50")
    page.locator("#emv-amount-form").get_by_role("button", name=words["continue"]).click()
    expect(page.locator(".amount .figure").first).to_have_text("42.50")
    _shoot(page, "pay-emv-confirm", language)
    page.get_by_role("button", name=words["pay_shop"].format(name="Lucky Tea House")).click()
    expect(page).to_have_url(re.compile(r"/app/receipts/ch_"))
    expect(page.locator("#receipt-title")).to_have_text(
        words["paid_to"].format(name="Lucky Tea House")
    )
    expect(page.locator(".receipt .amount .figure")).to_have_text("\u221242.50")
    expect(page.locator("#receipt-refunds")).to_have_text(words["no_refund"])
    _shoot(page, "pay-emv-receipt", language)
    assert not [
        error for error in console.errors if "status of 422" not in error
    ]  # the damaged code


def test_the_camera_reads_a_code_and_sends_it(
    open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    person = payer(pg_db, "50.00")
    payload = shop_code(pg_db, shop(pg_db), "12.00")
    page = open_page("en")
    page.add_init_script(FAKE_CAMERA % json.dumps(payload))
    _sign_in(page, live_url, "en", person, person.password)
    page.goto(f"{live_url}/app/pay/emv")
    scan = page.get_by_role("button", name="Scan with the camera")
    expect(scan).to_be_visible()
    scan.click()
    # the code read is put in the form and checked by the server: the confirmation
    expect(page.locator(".merchant")).to_have_text("Lucky Tea House")
    expect(page.locator(".amount .figure").first).to_have_text("12.00")
    assert console.errors == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_create_a_virtual_card_and_suspend_it(
    language: str, open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    words = WORDS[language]
    person = payer(pg_db, "10.00")
    page = open_page(language)
    _sign_in(page, live_url, language, person, person.password)
    _nav(page, words["cards"])
    expect(page).to_have_url(re.compile(r"/app/cards$"))
    _shoot(page, "cards-empty", language)
    page.get_by_role("button", name=words["create"]).click()
    expect(page.locator("#card-created")).to_contain_text(words["ready"])
    number = page.locator("#card-number").inner_text().replace(" ", "")
    assert re.fullmatch(r"[0-9]{16}", number)
    _shoot(page, "cards-created", language)
    card = page.locator("li.virtual-card")
    expect(card).to_contain_text(f"•••• {number[-4:]}")
    card.get_by_role("button", name=words["suspend"], exact=True).click()
    expect(page).to_have_url(re.compile(r"/app/cards$"))
    expect(page.locator("#card-number")).to_have_count(0)  # shown once only
    expect(card).to_have_attribute("data-status", "suspended")
    expect(card.locator(".badge")).to_have_text(words["suspended"])
    expect(card.get_by_role("button", name=words["resume"])).to_be_visible()
    _shoot(page, "cards-suspended", language)
    assert console.errors == []
