"""The Lite crypto address book in headless Chromium under the CSP (issue #12), in both
languages, with screenshots (artifacts/screenshots/lite-addresses*-<language>-*.png): from the
withdraw page to the book, a bad address refused in the form, an address added and one
whitelisted (the withdrawal freeze shows), whitelist mode switched on with the password, an
address removed, and the withdraw page offering the saved address."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.withdrawals.models import WithdrawalAddress

from .conftest import Console, WebUser, web_user
from .test_lite_browser import LANGUAGES, _shoot, _sign_in, expect

if TYPE_CHECKING:
    from playwright.sync_api import Page

OpenPage = Callable[..., "Page"]
BTC_ADDRESS = "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wl3"
ETH_ADDRESS = "0x52908400098527886E0F7030069857D2E4169EE7"
WORDS = {
    "en": {
        "withdraw": "Withdraw",
        "book": "Crypto addresses",
        "add": "Add address",
        "bad_address": "An address is 8 to 128 letters and digits.",
        "added": "The address was added.",
        "whitelisted": "The address was added to your whitelist.",
        "badge": "Whitelisted",
        "mode_on": "Turn whitelist mode on",
        "is_on": "Whitelist mode is on",
        "remove": "Remove this address",
        "removed": "The address was removed.",
        "wrong_password": "Your password is wrong.",
    },
    "zh_Hant": {
        "withdraw": "提款",
        "book": "加密貨幣地址",
        "add": "加入地址",
        "bad_address": "地址由 8 至 128 個英文字母及數字組成。",
        "added": "地址已加入。",
        "whitelisted": "地址已加入你的白名單。",
        "badge": "白名單",
        "mode_on": "開啟白名單模式",
        "is_on": "白名單模式已開啟",
        "remove": "移除此地址",
        "removed": "地址已移除。",
        "wrong_password": "你的密碼不正確。",
    },
}


def _signed_in(page: Page, live_url: str, language: str, user: WebUser) -> None:
    _sign_in(page, live_url, language, user, user.password)
    page.wait_for_url(f"{live_url}/app/")


def _add(page: Page, words: dict[str, str], password: str, asset: str, address: str) -> None:
    form = page.locator("#add-form")
    form.locator("#asset").select_option(asset)
    form.locator("#address").fill(address)
    form.locator("#password").fill(password)
    form.get_by_role("button", name=words["add"]).click()


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_address_book_in_the_browser(
    language: str, open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    words = WORDS[language]
    user = web_user(pg_db, "Chan")
    page = open_page(language)
    _signed_in(page, live_url, language, user)
    page.locator("nav.tabs").get_by_role("link", name=words["withdraw"], exact=True).click()
    page.wait_for_url(f"{live_url}/app/withdraw")
    page.locator("#withdraw-addresses").click()
    page.wait_for_url(f"{live_url}/app/addresses")
    expect(page.locator(".whitelist-mode")).to_have_attribute("data-whitelist-only", "off")
    _shoot(page, "addresses-empty", language)

    _add(page, words, user.password, "BTC", "not an address")
    expect(page.locator(".address-add .alert")).to_have_text(words["bad_address"])
    expect(page.locator("#address")).to_have_value("not an address")  # kept as typed
    expect(page.locator("#password")).to_have_value("")  # never sent back
    _shoot(page, "addresses-refused", language)
    page.fill("#label", "Cold wallet")
    _add(page, words, user.password, "BTC", BTC_ADDRESS)
    page.wait_for_url(f"{live_url}/app/addresses")
    expect(page.locator(".success")).to_have_text(words["added"])
    expect(page.locator(".freeze")).to_have_count(0)  # a plain address: no freeze

    page.locator("#whitelisted").check()
    _add(page, words, user.password, "ETH", ETH_ADDRESS)
    page.wait_for_url(f"{live_url}/app/addresses")
    expect(page.locator(".success")).to_have_text(words["whitelisted"])
    expect(page.locator(".freeze")).to_be_visible()  # R-SEC-5: withdrawals paused
    rows = page.locator(".address")
    expect(rows).to_have_count(2)
    expect(rows.nth(1).locator(".badge.whitelisted")).to_have_text(words["badge"])
    expect(rows.nth(0).locator(".address-text")).to_have_text(BTC_ADDRESS)
    _shoot(page, "addresses", language)

    mode = page.locator("#mode-form")
    mode.locator("input[name=password]").fill("not-the-password")
    mode.get_by_role("button", name=words["mode_on"]).click()
    expect(page.locator(".whitelist-mode .alert")).to_have_text(words["wrong_password"])
    page.locator("#mode-form input[name=password]").fill(user.password)
    page.locator("#mode-form").get_by_role("button", name=words["mode_on"]).click()
    page.wait_for_url(f"{live_url}/app/addresses")
    expect(page.locator(".success")).to_contain_text(words["is_on"])
    expect(page.locator(".whitelist-mode")).to_have_attribute("data-whitelist-only", "on")
    _shoot(page, "addresses-whitelist-on", language)

    first = page.locator(".address").nth(0)
    first.locator("input[name=password]").fill(user.password)
    first.get_by_role("button", name=words["remove"]).click()
    page.wait_for_url(f"{live_url}/app/addresses")
    expect(page.locator(".success")).to_have_text(words["removed"])
    expect(page.locator(".address")).to_have_count(1)

    with db.make_session_factory(pg_db)() as session:
        rows_now = session.scalars(select(WithdrawalAddress).order_by(WithdrawalAddress.id)).all()
        kept = [row.id for row in rows_now if row.removed_at is None]
    assert len(rows_now) == 2 and len(kept) == 1
    page.goto(f"{live_url}/app/withdraw")
    expect(page.locator(f'#destination option[value="address:{kept[0]}"]')).to_have_count(1)
    refusals = ("status of 401", "status of 422")  # the refused forms' answers
    assert not [e for e in console.errors if not any(text in e for text in refusals)]
