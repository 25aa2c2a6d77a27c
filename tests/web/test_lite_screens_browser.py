"""The Lite app's money and security screens in headless Chromium, under the CSP (issue #5,
phase 2a): the acceptance journey, all by clicking and typing (sign up, anti-phishing code with
its live preview, 2FA enrolment with the TOTP computed from the secret on the page, a sandbox
top-up, a transfer to a second user in another browser, both histories, signing in again with
the 2FA step), "load more" in the history, and screenshots of every screen of this phase at
phone and desktop size in both languages. Every test checks that no page logged an error or a
CSP violation."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pyotp
import pytest
from sqlalchemy.engine import Engine

from .conftest import Console, WebUser, sandbox_topup, web_user
from .test_lite_browser import LANGUAGES, _shoot, _sign_in, _sign_up, expect

if TYPE_CHECKING:
    from playwright.sync_api import Page

OpenPage = Callable[..., "Page"]
STEP_S = 30
WORDS = {  # what the tests click and look for, per language (the catalogs' translations)
    "en": {
        "security": "Security",
        "top_up": "Top up",
        "send": "Send",
        "history": "History",
        "apc": "Anti-phishing code",
        "save_code": "Save code",
        "two_factor": "Two-step verification",
        "set_up": "Set up two-step verification",
        "turn_on": "Turn on",
        "saved_them": "I have saved them",
        "top_up_now": "Top up now",
        "continue": "Continue",
        "send_to": "Send to {name}",
        "sent_to": "Sent to {name}",
        "received_from": "Received from {name}",
        "top_up_row": "Top-up",
        "load_more": "Load more",
        "password": "Password",
        "change_password": "Change password",
        "devices": "Signed-in devices",
        "events": "Security events",
        "verify": "Verify and sign in",
        "decimals": "HKD amounts have at most 2 decimal places.",
        "format": "Use 1 to 6 letters (A-Z, a-z) or digits, nothing else.",
        "freeze": "withdrawals are paused until",
        "change": "Change",
    },
    "zh_Hant": {
        "security": "安全",
        "top_up": "增值",
        "send": "轉帳",
        "history": "紀錄",
        "apc": "防釣魚碼",
        "save_code": "儲存防釣魚碼",
        "two_factor": "兩步驟驗證",
        "set_up": "設定兩步驟驗證",
        "turn_on": "開啟",
        "saved_them": "我已妥善保存",
        "top_up_now": "立即增值",
        "continue": "繼續",
        "send_to": "轉帳給 {name}",
        "sent_to": "已轉帳給 {name}",
        "received_from": "收到 {name} 的轉帳",
        "top_up_row": "增值",
        "load_more": "載入更多",
        "password": "密碼",
        "change_password": "更改密碼",
        "devices": "已登入的裝置",
        "events": "安全事件",
        "verify": "驗證並登入",
        "decimals": "HKD 金額最多只可有 2 位小數。",
        "format": "只可使用 1 至 6 個英文字母（A-Z、a-z）或數字。",
        "freeze": "提款已暫停至",
        "change": "修改",
    },
}


def _nav(page: Page, label: str) -> None:
    page.locator("nav.tabs").get_by_role("link", name=label, exact=True).click()


def _security_item(page: Page, language: str, key: str) -> None:
    _nav(page, WORDS[language]["security"])
    page.locator(".menu").get_by_role("link", name=re.compile(WORDS[language][key])).click()


def _code_after(secret: str, used_step: int) -> tuple[str, int]:
    """A TOTP code the server has not seen: the current step's, or the next one's (one step
    of drift is allowed) when the current step was used already. Never waits."""
    step = max(int(time.time()) // STEP_S, used_step + 1)
    return pyotp.TOTP(secret).at(step * STEP_S), step


def _set_anti_phishing_code(page: Page, language: str) -> None:
    words = WORDS[language]
    _security_item(page, language, "apc")
    field = page.locator("#code")
    preview = page.locator("#apc-preview")
    with page.expect_request(re.compile(r"/anti-phishing/preview$")) as sent:
        field.press_sequentially("Ab12", delay=40)
    assert sent.value.method == "POST" and sent.value.headers["hx-request"] == "true"
    expect(preview.locator(".mail")).to_have_attribute("data-code", "Ab12")
    expect(preview.locator(".mail-text")).to_contain_text("Anti-phishing code: Ab12")
    banner = page.frame_locator(".mail-frame").locator("#anti-phishing-code")
    expect(banner).to_have_text("Anti-phishing code: Ab12")
    field.press_sequentially("Z9", delay=40)  # the preview follows the typing
    expect(preview.locator(".mail")).to_have_attribute("data-code", "Ab12Z9")
    expect(page.frame_locator(".mail-frame").locator("#anti-phishing-code")).to_have_text(
        "Anti-phishing code: Ab12Z9"
    )
    field.press_sequentially("!", delay=40)  # R-APC-1, live
    expect(preview.locator(".alert")).to_have_text(words["format"])
    expect(preview.locator(".mail")).to_have_count(0)
    field.press("Backspace")
    expect(preview.locator(".mail")).to_have_attribute("data-code", "Ab12Z9")
    page.fill("#password", "a-long-password-1")  # R-SEC-8: the password again
    page.get_by_role("button", name=words["save_code"]).click()
    page.wait_for_url(re.compile(r"/app/security$"))
    expect(page.locator(".success")).to_be_visible()
    expect(page.locator(".freeze")).to_contain_text(words["freeze"])


def _enrol_two_factor(page: Page, language: str) -> tuple[str, int, list[str]]:
    """Turn 2FA on from the page; the secret, the step of the code used, the recovery codes."""
    words = WORDS[language]
    _security_item(page, language, "two_factor")
    page.fill("#password", "a-long-password-1")  # R-SEC-8: the password again
    page.get_by_role("button", name=words["set_up"]).click()
    expect(page.locator(".qr img")).to_be_visible()
    assert page.evaluate("document.querySelector('.qr img').naturalWidth") > 0  # under the CSP
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    code, step = _code_after(secret, -1)
    page.fill("#otp", code)
    page.fill("#password", "a-long-password-1")
    page.get_by_role("button", name=words["turn_on"], exact=True).click()
    codes = page.locator(".recovery-codes code")
    expect(codes).to_have_count(10)
    return secret, step, codes.all_inner_texts()


def _top_up(page: Page, language: str, amount: str) -> None:
    _nav(page, WORDS[language]["top_up"])
    page.select_option("#asset", "HKD")
    page.fill("#amount", amount)
    page.get_by_role("button", name=WORDS[language]["top_up_now"]).click()
    page.wait_for_url(re.compile(r"/app/receipts/"))


def test_the_acceptance_journey(
    open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    ann = open_page("en")
    ann_email = _sign_up(ann, live_url, "en", "Ann", pg_db)
    _set_anti_phishing_code(ann, "en")
    secret, used_step, recovery = _enrol_two_factor(ann, "en")
    assert len(set(recovery)) == 10
    ann.get_by_role("link", name="I have saved them").click()
    expect(ann.locator('.menu-state[data-state="on"]')).to_have_count(2)  # 2FA and the code
    _top_up(ann, "en", "500.00")
    expect(ann.locator(".receipt .figure")).to_have_text("+500.00")
    # Bob signs up in another browser, in Chinese
    bob = open_page("zh_Hant")
    bob_email = _sign_up(bob, live_url, "zh_Hant", "Bob", pg_db)
    # Ann sends to Bob: the form, the confirmation with his name masked, the receipt
    _nav(ann, "Send")
    ann.fill("#to", bob_email)
    ann.select_option("#asset", "HKD")
    ann.fill("#amount", "120.50")
    ann.fill("#note", "Dinner")
    ann.get_by_role("button", name="Continue").click()
    expect(ann.locator(".recipient")).to_have_text("B**")
    expect(ann.locator(".facts .figure")).to_have_text("120.50")
    ann.get_by_role("button", name="Send to B**").click()
    ann.wait_for_url(re.compile(r"/app/receipts/"))
    expect(ann.get_by_role("heading", level=1)).to_have_text("Sent to Bob")
    expect(ann.locator(".receipt .figure")).to_have_text("\u2212120.50")
    # both see it in their history
    _nav(ann, "History")
    expect(ann.locator(".row .row-title").first).to_have_text("Sent to Bob")
    expect(ann.locator(".row .row-amount").first).to_contain_text("\u2212120.50")
    expect(ann.locator(".row .row-note").first).to_have_text("Dinner")
    expect(ann.locator(".row .row-balance").first).to_have_text("Balance 379.50")
    expect(ann.locator(".row .row-title").nth(1)).to_have_text("Top-up")
    _nav(bob, "紀錄")
    expect(bob.locator(".row .row-title").first).to_have_text("收到 Ann 的轉帳")
    expect(bob.locator(".row .row-amount").first).to_contain_text("+120.50")
    _nav(bob, "主頁")
    expect(bob.locator('[data-asset="HKD"] .figure')).to_have_text("120.50")
    # Ann signs out and in again: password, then the 2FA step
    ann.locator("header").get_by_role("button", name="Sign out").click()
    ann.wait_for_url(f"{live_url}/app/signin")
    _sign_in(
        ann, live_url, "en", WebUser(ann_email, "a-long-password-1", "Ann"), "a-long-password-1"
    )
    ann.wait_for_url(f"{live_url}/app/signin/code")
    code, _ = _code_after(secret, used_step)
    ann.fill("#otp", code)
    ann.get_by_role("button", name="Verify and sign in").click()
    ann.wait_for_url(f"{live_url}/app/")
    expect(ann.get_by_role("heading", level=1)).to_have_text("Hello, Ann")
    expect(ann.locator('[data-asset="HKD"] .figure')).to_have_text("379.50")
    assert console.errors == []


def test_load_more_appends_the_next_page(
    open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    user = web_user(pg_db, "Lee")
    for whole in range(1, 26):  # 25 rows: a page of 20, then 5
        sandbox_topup(pg_db, user.email, f"{whole}.00")
    page = open_page("en")
    _sign_in(page, live_url, "en", user, user.password)
    page.wait_for_url(f"{live_url}/app/")
    _nav(page, "History")
    rows = page.locator("#history .row")
    expect(rows).to_have_count(20)
    expect(rows.first.locator(".row-amount")).to_contain_text("+25.00")
    with page.expect_request(re.compile(r"/app/history/rows\?cursor=")) as fetched:
        page.get_by_role("link", name="Load more").click()
    assert fetched.value.headers["hx-request"] == "true"
    expect(rows).to_have_count(25)
    expect(rows.last.locator(".row-amount")).to_contain_text("+1.00")
    expect(page.get_by_role("link", name="Load more")).to_have_count(0)
    assert page.url == f"{live_url}/app/history"  # appended in place, no navigation
    ids = page.eval_on_selector_all("#history .row", "rows => rows.map(r => r.dataset.transfer)")
    assert len(set(ids)) == 25
    assert console.errors == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_screenshots_of_the_money_and_security_screens(
    language: str, open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    """artifacts/screenshots/lite-<screen>-<language>-{mobile,desktop}.png of every screen of
    this phase, each checked to be the one named."""
    words = WORDS[language]
    user = web_user(pg_db, "Wong")
    friend = web_user(pg_db, "Mei")
    for amount in ("1500.00", "88.80", "20.00"):
        sandbox_topup(pg_db, user.email, amount)
    sandbox_topup(pg_db, user.email, "0.01234567", "BTC")
    page = open_page(language)
    _sign_in(page, live_url, language, user, user.password)
    page.wait_for_url(f"{live_url}/app/")
    _shoot(page, "home-nav", language)
    _nav(page, words["top_up"])
    page.fill("#amount", "1.234")
    page.get_by_role("button", name=words["top_up_now"]).click()
    expect(page.locator(".alert")).to_have_text(words["decimals"])
    _shoot(page, "topup-refused", language)
    page.fill("#amount", "200")
    page.get_by_role("button", name=words["top_up_now"]).click()
    page.wait_for_url(re.compile(r"/app/receipts/"))
    _shoot(page, "receipt-topup", language)
    _nav(page, words["top_up"])
    _shoot(page, "topup", language)
    _nav(page, words["send"])
    _shoot(page, "send", language)
    page.fill("#to", friend.email)
    page.fill("#amount", "42.00")
    page.fill("#note", "Dim sum")
    page.get_by_role("button", name=words["continue"]).click()
    expect(page.locator(".recipient")).to_have_text("M**")
    _shoot(page, "send-confirm", language)
    page.get_by_role("button", name=words["send_to"].format(name="M**")).click()
    page.wait_for_url(re.compile(r"/app/receipts/"))
    expect(page.get_by_role("heading", level=1)).to_have_text(words["sent_to"].format(name="Mei"))
    _shoot(page, "receipt-sent", language)
    _nav(page, words["history"])
    expect(page.locator("#history .row")).to_have_count(6)
    _shoot(page, "history", language)
    _nav(page, words["security"])
    _shoot(page, "security", language)
    _security_item(page, language, "password")
    page.fill("#current_password", "not-my-password")
    page.fill("#new_password", "short")
    page.fill("#repeat_password", "short")
    page.get_by_role("button", name=words["change_password"]).click()
    expect(page.locator(".alert")).to_be_visible()
    _shoot(page, "security-password", language)
    _security_item(page, language, "apc")
    page.locator("#code").press_sequentially("Hk88", delay=40)
    expect(page.frame_locator(".mail-frame").locator("#anti-phishing-code")).to_have_text(
        "Anti-phishing code: Hk88"
    )
    _shoot(page, "security-apc", language)
    _security_item(page, language, "two_factor")
    _shoot(page, "security-2fa-off", language)
    page.fill("#password", user.password)
    page.get_by_role("button", name=words["set_up"]).click()
    expect(page.locator(".qr img")).to_be_visible()
    _shoot(page, "security-2fa-qr", language)
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    page.fill("#otp", _code_after(secret, -1)[0])
    page.fill("#password", user.password)
    page.get_by_role("button", name=words["turn_on"], exact=True).click()
    expect(page.locator(".recovery-codes code")).to_have_count(10)
    _shoot(page, "security-2fa-codes", language)
    _security_item(page, language, "two_factor")
    expect(page.locator(".state.on")).to_be_visible()
    _shoot(page, "security-2fa-on", language)
    _security_item(page, language, "devices")
    expect(page.locator(".session.current")).to_have_count(1)
    _shoot(page, "security-sessions", language)
    _security_item(page, language, "events")
    expect(page.locator(".event").first).to_be_visible()
    _shoot(page, "security-events", language)
    expected = ("status of 401", "status of 422")  # the refused forms above
    assert not [e for e in console.errors if not any(text in e for text in expected)]
