"""Issue #10 part C in headless Chromium: the emailed reset link opens a real page (finding 6:
it was a 404 with the token in the access log), end to end: ask for a reset from the sign-in
page, read the email in the outbox, open its link, set a new password, sign in with it; with
2FA on, the reset takes a code too. The token travels in the fragment and the POST body only:
no request the browser makes carries it in its URL. And screenshots of the new pages
(``artifacts/screenshots/lite-{signup-sent,verify-email,forgot-password,reset-password}-*``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import pyotp
import pytest
from sqlalchemy.engine import Engine

from strongroom import db
from tests.api.conftest import emailed_token

from .conftest import Console, WebUser, web_user
from .test_lite_browser import LANGUAGES, _shoot, _sign_in, expect

if TYPE_CHECKING:
    from playwright.sync_api import Page

OpenPage = Callable[..., "Page"]
NEW_PASSWORD = "a-fresh-passphrase-8"


def _urls(page: Page) -> list[str]:
    """Every URL the page requests from now on (what an access log would keep)."""
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    return seen


def _reset_by_email(page: Page, url: str, engine: Engine, user: WebUser) -> str:
    """From the sign-in page to the emailed link's page, with the token in the form; the token."""
    page.goto(f"{url}/app/signin")
    page.get_by_role("link", name="Forgot your password?").click()
    page.wait_for_url(f"{url}/app/forgot-password")
    page.fill("#email", user.email)
    page.get_by_role("button", name="Send me a link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    token = emailed_token(db.make_session_factory(engine), user.email, "security.password_reset")
    page.goto(f"{url}/app/reset-password#token={token}")
    expect(page.locator("#token")).to_have_value(token)  # taken from the fragment by app.js
    assert page.url == f"{url}/app/reset-password"  # and dropped from the address bar
    return token


def test_a_forgotten_password_is_reset_from_the_emailed_link(
    open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    user = web_user(pg_db, "Rita")
    page = open_page("en")
    requested = _urls(page)
    token = _reset_by_email(page, live_url, pg_db, user)
    page.fill("#new_password", NEW_PASSWORD)
    page.fill("#repeat_password", NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.locator(".success")).to_have_text("Your password was changed.")
    assert not [u for u in requested if token in u]  # never in a URL a server sees
    page.get_by_role("link", name="Sign in").last.click()
    _sign_in(page, live_url, "en", user, user.password)  # the old password no longer works
    expect(page.locator(".alert")).to_have_text("The email or password is wrong.")
    _sign_in(page, live_url, "en", user, NEW_PASSWORD)
    page.wait_for_url(f"{live_url}/app/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Rita")
    assert not [e for e in console.errors if "status of 401" not in e]


def test_with_two_factor_on_the_reset_takes_a_code(
    open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    user = web_user(pg_db, "Tam", two_factor=True)
    assert user.totp_secret is not None
    page = open_page("en")
    _reset_by_email(page, live_url, pg_db, user)
    page.fill("#new_password", NEW_PASSWORD)
    page.fill("#repeat_password", NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.locator(".alert")).to_have_text(
        "Enter the 6-digit code from your authenticator app."
    )
    page.fill("#new_password", NEW_PASSWORD)
    page.fill("#repeat_password", NEW_PASSWORD)
    page.fill("#otp", pyotp.TOTP(user.totp_secret).now())
    page.get_by_role("button", name="Change password").click()
    expect(page.locator(".success")).to_have_text("Your password was changed.")
    assert not [e for e in console.errors if "status of 401" not in e]


@pytest.mark.parametrize("language", LANGUAGES)
def test_screenshots_of_the_email_link_pages(
    language: str, open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    page = open_page(language)
    email = f"new.{language.lower()}@example.com"
    page.goto(f"{live_url}/app/signup")
    page.fill("#name", "New Person")
    page.fill("#email", email)
    page.fill("#password", "a-long-password-1")
    page.locator("form.form button[type=submit]").click()
    expect(page.locator("#sent-to")).to_contain_text(email)
    _shoot(page, "signup-sent", language)
    page.goto(f"{live_url}/app/verify-email")
    expect(page.locator("#token")).to_be_visible()  # no fragment: the code by hand
    _shoot(page, "verify-email", language)
    token = emailed_token(db.make_session_factory(pg_db), email, "account.verify_email")
    page.goto(f"{live_url}/app/verify-email#token={token}")
    expect(page.locator(".success")).to_be_visible()  # posted at once
    _shoot(page, "verify-email-done", language)
    page.goto(f"{live_url}/app/forgot-password")
    expect(page.locator("#email")).to_be_visible()
    _shoot(page, "forgot-password", language)
    page.goto(f"{live_url}/app/reset-password")
    expect(page.locator("#new_password")).to_be_visible()
    _shoot(page, "reset-password", language)
    assert console.errors == []


def test_the_anti_phishing_page_asks_for_the_password_and_hides_the_code(
    open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    user = web_user(pg_db, "Ivy")
    page = open_page("en")
    _sign_in(page, live_url, "en", user, user.password)
    page.wait_for_url(f"{live_url}/app/")
    page.goto(f"{live_url}/app/security/anti-phishing")
    page.locator("#code").press_sequentially("Iv88", delay=40)
    frame = page.frame_locator(".mail-frame").locator("#anti-phishing-code")
    expect(frame).to_have_text("Anti-phishing code: Iv88")
    source = page.locator(".mail-frame").get_attribute("src") or ""
    assert "Iv88" not in source and re.search(r"\?p=", source)
    page.get_by_role("button", name="Save code").click()  # no password: the browser asks
    assert page.url == f"{live_url}/app/security/anti-phishing"
    page.fill("#password", "not-my-password")
    page.get_by_role("button", name="Save code").click()
    expect(page.locator(".alert")).to_have_text("Your password is wrong.")
    page.locator("#code").fill("Iv88")
    page.fill("#password", user.password)
    page.get_by_role("button", name="Save code").click()
    page.wait_for_url(f"{live_url}/app/security")
    page.goto(f"{live_url}/app/security/anti-phishing")
    expect(page.locator(".state.on")).to_contain_text("You have a code")
    assert "Iv88" not in page.content()
    assert not [e for e in console.errors if "status of 401" not in e]
