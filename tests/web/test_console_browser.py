"""The operator console in headless Chromium, under its Content-Security-Policy, on
PostgreSQL: an operator signs in with the password and a TOTP code, finds a user who signed up in
the Lite app, sees their security events and the emails sent to them; a support operator has no
audit log; a non-operator cannot sign in; the language switch works here too. Every test checks
that the pages logged no error and no CSP violation (beyond the refusals it asked for)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.identity import service as identity
from tests.api.conftest import emailed_token, make_settings

from .conftest import Console, web_user
from .console_support import browser_sign_in, make_operator

if TYPE_CHECKING:
    from playwright.sync_api import Page

OpenPage = Callable[..., "Page"]
EXPECTED_REFUSALS = ("status of 401", "status of 403", "status of 404")
VERIFY = "account.verify_email"


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def _unexpected(console: Console) -> list[str]:
    return [error for error in console.errors if not any(s in error for s in EXPECTED_REFUSALS)]


def test_an_operator_finds_a_user_their_security_events_and_their_emails(
    open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    # a user signs up in the Lite app; someone tries a wrong password; they set a code
    app = open_page("en")
    app.goto(f"{live_url}/app/signup")
    app.fill("#name", "Mei Ling")
    app.fill("#email", "mei.ling@example.com")
    app.fill("#password", "a-long-password-1")
    app.select_option("#region", "HK")
    app.get_by_role("button", name="Create account").click()
    expect(app.get_by_role("heading", level=1)).to_have_text("Check your email")
    token = emailed_token(db.make_session_factory(pg_db), "mei.ling@example.com", VERIFY)
    app.goto(f"{live_url}/app/verify-email#token={token}")  # the emailed link
    expect(app.locator(".success")).to_have_text("Your email address is confirmed.")
    intruder = open_page("en")
    intruder.goto(f"{live_url}/app/signin")
    intruder.fill("#email", "mei.ling@example.com")
    intruder.fill("#password", "not-her-password")
    intruder.locator("form.form button[type=submit]").click()
    expect(intruder.locator(".alert")).to_have_text("The email or password is wrong.")
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        mei = identity.find_user(session=session, reference="mei.ling@example.com")
        assert mei is not None
        settings = make_settings(pg_db).auth
        signed_in = identity.issue_token(session=session, user=mei, ttl_s=600)
        proof = identity.step_up(  # R-SEC-8: her password again, in a session of hers
            session=session,
            user=mei,
            session_id=signed_in.session_id,
            password="a-long-password-1",
            otp=None,
            settings=settings,
        )
        identity.set_anti_phishing_code(
            session=session, user=mei, code="Mei88", proof=proof, settings=settings
        )
    # the operator: sign in, find her, read her security events and her emails
    page = open_page("en")
    page.goto(f"{live_url}/console/")
    page.wait_for_url(f"{live_url}/console/signin")
    browser_sign_in(page, live_url, make_operator(pg_db, "admin"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    page.get_by_role("link", name="Users").click()
    page.fill("#q", "mei.ling@")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="mei.ling@example.com").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Mei Ling")
    expect(page.locator('[data-fact="anti-phishing"]')).to_have_text("Set")
    events = page.locator("table.events tbody tr")
    actions = [row.get_attribute("data-action") for row in events.all()]
    assert actions[0] == "anti_phishing_code.set"
    assert {"login.failed", "email.verified", "account.registered"} <= set(actions)
    page.get_by_role("link", name="Emails to this user").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Email outbox")
    templates = {
        row.get_attribute("data-template") for row in page.locator("table.outbox tbody tr").all()
    }
    assert templates == {
        "account.verify_email",
        "account.welcome",
        "security.settings_changed",
    }
    expect(page.locator('a[aria-current="page"]')).to_have_text("Email outbox")
    assert page.locator("table.outbox").inner_text().count("mei.ling@example.com") == 3
    assert _unexpected(console) == []


def test_a_support_operator_does_not_see_the_audit_log(
    open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    page = open_page("en")
    browser_sign_in(page, live_url, make_operator(pg_db, "support"))
    menu = page.locator("nav.side a")
    expect(menu).to_have_text(["Dashboard", "Users", "Merchants", "Email outbox"])
    response = page.goto(f"{live_url}/console/audit")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("Not for your role")
    expect(menu).to_have_text(["Dashboard", "Users", "Merchants", "Email outbox"])
    assert _unexpected(console) == []


def test_a_non_operator_cannot_sign_in(
    open_page: OpenPage, live_url: str, pg_db: Engine, console: Console
) -> None:
    user = web_user(pg_db, "Ordinary", two_factor=True)
    page = open_page("zh_Hant")
    page.goto(f"{live_url}/console/signin")
    expect(page.get_by_role("heading", level=1)).to_have_text("營運人員登入")
    page.fill("#email", user.email)
    page.fill("#password", user.password)
    page.locator("form.form button[type=submit]").click()
    expect(page.locator(".alert")).to_have_text("電郵或密碼不正確。")
    assert page.url == f"{live_url}/console/signin"
    assert all(cookie["name"] != "sr_session" for cookie in page.context.cookies())
    page.get_by_role("button", name="English").click()  # the switch comes back here
    page.wait_for_url(f"{live_url}/console/signin")
    expect(page.get_by_role("heading", level=1)).to_have_text("Operator sign in")
    assert _unexpected(console) == []
