"""The Lite app in headless Chromium, under its Content-Security-Policy: signing up and seeing
balances, sign-in refusals, the 2FA step, the language switch, htmx, the service worker's offline
page, and screenshots of every screen at phone and desktop size in both languages
(``artifacts/screenshots/lite-*.png``). Every test also checks that the pages logged no error
and no CSP violation."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyotp
import pytest
from sqlalchemy.engine import Engine

from strongroom import db
from tests.api.conftest import emailed_token

from .conftest import Console, WebUser, sandbox_topup, screenshot, settle, web_user

if TYPE_CHECKING:
    from playwright.sync_api import Page

LANGUAGES = ("en", "zh_Hant")
TEXT = {  # what the tests look for, per language (the catalogs' translations)
    "en": {
        "create": "Create account",
        "check_email": "Check your email",
        "confirmed": "Your email address is confirmed.",
        "sign_in": "Sign in",
        "verify": "Verify and sign in",
        "hello": "Hello, {name}",
        "wrong": "The email or password is wrong.",
        "offline": "You are offline",
        "not_found": "Page not found",
        "expired": "This form has expired",
        "refresh": "Refresh",
    },
    "zh_Hant": {
        "create": "建立帳戶",
        "check_email": "請查看你的電郵",
        "confirmed": "你的電郵地址已確認。",
        "sign_in": "登入",
        "verify": "驗證並登入",
        "hello": "{name}，你好",
        "wrong": "電郵或密碼不正確。",
        "offline": "你已離線",
        "not_found": "找不到頁面",
        "expired": "此表格已過期",
        "refresh": "重新整理",
    },
}

OpenPage = Callable[..., "Page"]


def expect(target: Any) -> Any:
    """Playwright's retrying assertions (imported here: without Playwright the browser fixture
    has already skipped the test, or failed it under CI=true)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def _sign_up(page: Page, url: str, language: str, name: str, engine: Engine) -> str:
    """Sign up, open the emailed verification link (its token in the fragment: the page posts
    it), then sign in, as a new user does (R-SEC-11); the email."""
    email = f"{name.lower()}.{abs(hash((name, url))) % 10**6}@example.com"
    page.goto(f"{url}/app/signup")
    page.fill("#name", name)
    page.fill("#email", email)
    page.fill("#password", "a-long-password-1")
    page.select_option("#region", "HK")
    page.get_by_role("button", name=TEXT[language]["create"]).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(TEXT[language]["check_email"])
    token = emailed_token(db.make_session_factory(engine), email, "account.verify_email")
    page.goto(f"{url}/app/verify-email#token={token}")
    expect(page.locator(".success")).to_have_text(TEXT[language]["confirmed"])
    assert "#" not in page.url  # the token left the address bar
    _sign_in(page, url, language, WebUser(email, "a-long-password-1", name), "a-long-password-1")
    page.wait_for_url(f"{url}/app/")
    return email


def _sign_in(page: Page, url: str, language: str, user: WebUser, password: str) -> None:
    page.goto(f"{url}/app/signin")
    page.fill("#email", user.email)
    page.fill("#password", password)
    page.locator("form.form").get_by_role("button", name=TEXT[language]["sign_in"]).click()


def test_sign_up_then_home_shows_the_balances(
    open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    page = open_page("en")
    email = _sign_up(page, live_url, "en", "Ann", pg_db)
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Ann")
    expect(page.locator(".balances .empty")).to_be_visible()
    expect(page.locator('nav.tabs a[aria-current="page"]')).to_have_attribute("href", "/app/")
    expect(page.locator("footer a")).to_have_attribute("href", "/reserves/verify")
    # money arrives (the sandbox channel); htmx refreshes the list in place, under the CSP
    sandbox_topup(pg_db, email, "1234.50")
    sandbox_topup(pg_db, email, "0.5", "USDT")
    token = page.locator(".everywhere input[name=csrf_token]").input_value()
    with page.expect_request(re.compile(r"/app/balances$")) as refresh:
        page.get_by_role("button", name="Refresh").click()
    assert refresh.value.headers["hx-request"] == "true"
    assert refresh.value.headers["x-csrf-token"] == token  # from <body hx-headers>
    expect(page.locator('[data-asset="HKD"] .figure')).to_have_text("1,234.50")
    expect(page.locator('[data-asset="USDT"] .figure')).to_have_text("0.500000")
    expect(page.locator('[data-asset="HKD"] .available')).to_have_text("All available")
    assert page.evaluate("document.querySelectorAll('.balances').length") == 1
    assert console.errors == []


def test_a_wrong_password_is_refused_with_a_clear_message(
    open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    user = web_user(pg_db)
    for language in LANGUAGES:
        page = open_page(language)
        _sign_in(page, live_url, language, user, "not-the-password")
        expect(page.locator(".alert")).to_have_text(TEXT[language]["wrong"])
        expect(page.locator("#email")).to_have_value(user.email)
        expect(page.locator("#password")).to_have_value("")
        assert page.context.cookies() and all(
            cookie["name"] != "sr_session" for cookie in page.context.cookies()
        )
    assert not [error for error in console.errors if "status of 401" not in error]


def test_two_factor_sign_in_asks_for_the_code(
    open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    user = web_user(pg_db, "Bob", two_factor=True)
    assert user.totp_secret is not None
    page = open_page("en")
    _sign_in(page, live_url, "en", user, user.password)
    page.wait_for_url(f"{live_url}/app/signin/code")
    page.fill("#otp", "000000")
    page.get_by_role("button", name="Verify and sign in").click()
    expect(page.locator(".alert")).to_contain_text("That code is not right")
    page.fill("#otp", pyotp.TOTP(user.totp_secret).now())
    page.get_by_role("button", name="Verify and sign in").click()
    page.wait_for_url(f"{live_url}/app/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Bob")
    cookie = next(c for c in page.context.cookies() if c["name"] == "sr_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert not any(c["name"] == "sr_pending" for c in page.context.cookies())
    assert not [error for error in console.errors if "status of 401" not in error]


def test_language_follows_the_browser_and_the_switch(
    open_page: OpenPage, live_url: str, console: Console
) -> None:
    page = open_page("zh_Hant")
    page.goto(f"{live_url}/app/signup")
    expect(page.locator("html")).to_have_attribute("lang", "zh-Hant")
    expect(page.get_by_role("heading", level=1)).to_have_text("建立你的帳戶")
    page.get_by_role("button", name="English").click()
    page.wait_for_url(f"{live_url}/app/signup")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", level=1)).to_have_text("Create your account")
    page.goto(f"{live_url}/app/signin")  # the choice stays
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    page.get_by_role("button", name=re.compile("中文")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("登入")
    assert console.errors == []


def _with_service_worker(page: Page, url: str) -> None:
    page.goto(f"{url}/app/signin")
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    page.reload()  # now controlled by the worker
    assert page.evaluate("navigator.serviceWorker.controller !== null")


def test_offline_navigation_shows_the_offline_page(
    open_page: OpenPage, live_url: str, console: Console
) -> None:
    page = open_page("en")
    _with_service_worker(page, live_url)
    scope = page.evaluate("navigator.serviceWorker.ready.then(r => r.scope)")
    assert scope == f"{live_url}/app/"
    page.context.set_offline(True)
    page.goto(f"{live_url}/app/")
    expect(page.get_by_role("heading", level=1)).to_have_text("You are offline")
    # the shell came from the cache: the page is styled, not bare HTML
    colour = page.evaluate("getComputedStyle(document.querySelector('.button')).borderRadius")
    assert colour == "999px"
    page.context.set_offline(False)
    page.get_by_role("link", name="Try again").click()
    page.wait_for_url(re.compile(r"/app/signin"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    assert not [e for e in console.errors if "ERR_INTERNET_DISCONNECTED" not in e]


def _shoot(page: Page, screen: str, language: str) -> None:
    settle(page)
    screenshot(page, f"lite-{screen}-{language}")


@pytest.mark.parametrize("language", LANGUAGES)
def test_screenshots_of_every_screen(
    language: str, open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    """artifacts/screenshots/lite-<screen>-<language>-{mobile,desktop}.png, for people to look
    at after a run; each screen is checked to be the one named."""
    words = TEXT[language]
    page = open_page(language)
    page.goto(f"{live_url}/app/signup")
    _shoot(page, "signup", language)
    page.goto(f"{live_url}/app/signin")
    _shoot(page, "signin", language)
    user = web_user(pg_db, "Chan", two_factor=True)
    assert user.totp_secret is not None
    _sign_in(page, live_url, language, user, "not-the-password")
    expect(page.locator(".alert")).to_have_text(words["wrong"])
    _shoot(page, "signin-refused", language)
    _sign_in(page, live_url, language, user, user.password)
    page.wait_for_url(f"{live_url}/app/signin/code")
    _shoot(page, "signin-code", language)
    sandbox_topup(pg_db, user.email, "12345.67")
    sandbox_topup(pg_db, user.email, "0.01234567", "BTC")
    sandbox_topup(pg_db, user.email, "250", "USDT")
    page.fill("#otp", pyotp.TOTP(user.totp_secret).now())
    page.get_by_role("button", name=words["verify"]).click()
    page.wait_for_url(f"{live_url}/app/")
    expect(page.get_by_role("heading", level=1)).to_have_text(words["hello"].format(name="Chan"))
    expect(page.locator('[data-asset="HKD"] .figure')).to_have_text("12,345.67")
    _shoot(page, "home", language)
    page.goto(f"{live_url}/app/no-such-screen")
    expect(page.get_by_role("heading", level=1)).to_have_text(words["not_found"])
    _shoot(page, "not-found", language)
    page.goto(f"{live_url}/app/")  # a form whose token has gone stale: refused, explained
    page.evaluate("document.querySelector('.everywhere input[name=csrf_token]').value = 'stale'")
    page.locator(".everywhere button").click()
    expect(page.locator("main")).to_contain_text(words["expired"])
    _shoot(page, "forbidden", language)
    page.goto(f"{live_url}/app/offline")
    expect(page.get_by_role("heading", level=1)).to_have_text(words["offline"])
    _shoot(page, "offline", language)
    expected = ("status of 401", "status of 403", "status of 404")
    assert not [e for e in console.errors if not any(text in e for text in expected)]
