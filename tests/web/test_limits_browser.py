"""The Lite app's limits screen and the T+N lock countdown on Home, in headless Chromium in both
languages (R-LIMIT-1, R-TN-3), with screenshots (``artifacts/screenshots/lite-limits-*.png``,
``lite-home-locks-*.png``); the send form says ``funds_locked`` and a day limit in words, and
nothing is written. The app runs with SPEC's tier table here (other web tests have none)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import FastAPI
from sqlalchemy.engine import Engine

from strongroom.app import create_app
from strongroom.settings import LimitsSettings
from tests.api.conftest import ROOMY_LIMITS, make_settings

from .conftest import Console, fingerprint, sandbox_topup, screenshot, serving, settle, web_user

if TYPE_CHECKING:
    from playwright.sync_api import Page

OpenPage = Callable[..., "Page"]
TEXT = {
    "en": {
        "sign_in": "Sign in",
        "tier": "Your verification level: Unverified",
        "p2p": "Send to people",
        "verify_first": "Verify your identity to use this.",
        "countdown": re.compile(r"^in (23 h 59|24 h 0) min$"),
        "locked": "0.01000000 BTC of your balance is locked after a purchase until",
        "review": "Continue",
    },
    "zh_Hant": {
        "sign_in": "登入",
        "tier": "你的驗證級別：未驗證",
        "p2p": "轉賬給他人",
        "verify_first": "驗證身份後即可使用。",
        "countdown": re.compile(r"^尚餘 (23 小時 59|24 小時 0) 分鐘$"),
        "locked": "你的結餘中有 0.01000000 BTC 因購買而鎖定至",
        "review": "繼續",
    },
}


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


HOLDS_ONLY = ROOMY_LIMITS.model_copy(update={"tn_hours": 24, "tn_high_risk_hours": 72})
"""No tier limits, the default T+N holds: the BTC bought is locked, its amount allowed."""


@pytest.fixture
def live_url(pg_db: Engine) -> Iterator[str]:
    settings = make_settings(pg_db).model_copy(update={"limits": LimitsSettings()})
    app: FastAPI = create_app(settings, pg_db)
    with serving(app) as url:
        yield url


@pytest.mark.parametrize("language", ["en", "zh_Hant"])
def test_limits_screen_and_lock_countdown(
    language: str, open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    words = TEXT[language]
    user = web_user(pg_db, "Lam")
    friend = web_user(pg_db, "Ho")
    sandbox_topup(pg_db, user.email, "1000.00")
    # bought through a fiat channel: locked 24 h (R-TN-1, the default holds)
    sandbox_topup(pg_db, user.email, "0.01", "BTC", limits=HOLDS_ONLY)
    page = open_page(language)
    page.goto(f"{live_url}/app/signin")
    page.fill("#email", user.email)
    page.fill("#password", user.password)
    page.locator("form.form").get_by_role("button", name=words["sign_in"]).click()
    page.wait_for_url(f"{live_url}/app/")
    btc = page.locator('[data-asset="BTC"]')
    expect(btc.locator(".countdown")).to_have_text(words["countdown"])
    expect(btc.locator(".unlock")).to_contain_text("0.01000000")
    settle(page)
    screenshot(page, f"lite-home-locks-{language}")

    page.locator("#limits-link").click()
    page.wait_for_url(f"{live_url}/app/limits")
    expect(page.locator("#tier")).to_have_text(words["tier"])
    p2p = page.locator('[data-operation="p2p_send"]')
    expect(p2p.locator("h2")).to_have_text(words["p2p"])
    expect(p2p.locator('[data-column="day_left"]')).to_have_text("3,000.00 HKD")
    expect(p2p.locator('[data-column="year_left"]')).to_have_text("25,000.00 HKD")
    topup = page.locator('[data-operation="topup"]')
    expect(topup.locator('[data-column="balance_left"]')).to_have_text("2,000.00 HKD")
    withdraw = page.locator('[data-operation="fiat_withdrawal"]')
    expect(withdraw.locator(".needs-verification")).to_have_text(words["verify_first"])
    settle(page)
    screenshot(page, f"lite-limits-{language}")

    before = fingerprint(pg_db)
    page.goto(f"{live_url}/app/send")
    page.fill("#to", friend.email)
    page.select_option("#asset", "BTC")
    page.fill("#amount", "0.005")
    page.get_by_role("button", name=words["review"]).click()
    expect(page.locator(".alert")).to_contain_text(words["locked"])
    settle(page)
    screenshot(page, f"lite-send-locked-{language}")
    assert fingerprint(pg_db) == before
    assert [e for e in console.errors if "status of 422" not in e] == []  # the refused form
